"""`checkpoint doctor`'s checks by area; edge/app/doctor.py runs them in order and prints the report.

    base      Check (one report line), device-node access, Checker (the settings and the machine looked at)
    access    the user running the checks, and the groups the configured devices need
    devices   the source (camera or scanner) and the output pins, opened through the project's drivers
    services  the database directory and disk, the broker, the clock, the lists
"""
