"""The process: the daemon, its pipeline and threads, health, and the `checkpoint` command.

    cli         `checkpoint`: the parser and the exit statuses; the commands are in commands/
    daemon      the lifecycle: run, reload on SIGHUP, stop on SIGTERM, health, status.json, the watchdog
    parts       what the daemon runs, built from settings (and rebuilt, keeping what did not change)
    pipeline    source → decoder → debounce → policy → store → signals, one code at a time
    signals     the per-decision patterns on the outputs, on a thread of their own
    health      what is wrong right now, in an administrator's words; disk: the free space it measures
    doctor      `checkpoint doctor`, its checks in checks/; sandbox: running it as the service does
    notify      sd_notify (READY, WATCHDOG, STATUS, STOPPING)
    logkey      the device's secret for the code hashes in the log
    errors      AppError, StartError, CommandFailed
"""
