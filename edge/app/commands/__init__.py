"""The `checkpoint` commands, by area; edge/app/cli.py parses the command line and calls them.

    shared   what the commands share: the config loaded, the lists and entries opened, the daemon's state files
    gate     run, decode, check, config check: the gate itself and what it would do
    status   status and entries: what the device holds and how it is
    lists    list import, show, remove
"""
