"""The appliance's screens: the kiosk (public, display only) and the officer page (login), served by the daemon.

The daemon builds a UIContext (context.py) and hands it to the server; the pages know the daemon only through it.
"""
