"""When the entries database's files go wrong under the store: a corrupt file set aside at start, and
files deleted under the running daemon (someone cleaning /var) recovered into files that exist."""
from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from edge.common.sqlite import BUSY_TIMEOUT_MS, connect
from edge.entries.errors import describe

log = logging.getLogger("checkpoint.store")


def checkpoint_blocked(conn: sqlite3.Connection, *, wait: bool) -> str | None:
    """Copy the whole WAL into the database file and empty it; None when that completed (the
    pragma's (busy, frames, moved) is (0, 0, 0)), else why not. A reader holding a snapshot blocks
    it: without wait, asked without waiting, so the scan loop is not held up while it lasts."""
    if not wait:
        conn.execute("PRAGMA busy_timeout = 0")
    try:
        result = tuple(conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
    except sqlite3.OperationalError as exc:  # locked: another connection is writing
        return describe(exc)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return None if result == (0, 0, 0) else f"checkpoint (busy, frames, moved) = {result}"


def rescue_database(conn: sqlite3.Connection, path: Path) -> None:
    """The database file itself was deleted: copy it whole (WAL included) from the open connection to
    a new file, synced, and put that in its place. Closes conn."""
    rescue = path.with_name(path.name + ".rescue")
    for name in (rescue, *(Path(f"{rescue}{suffix}") for suffix in ("-wal", "-shm", "-journal"))):
        name.unlink(missing_ok=True)
    target = connect(rescue)
    try:
        conn.backup(target)
        target.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        target.close()
    conn.close()  # its WAL, already in the copy, goes before the copy takes the name
    os.replace(rescue, path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    log.error("entry database %s rescued from the open connection into a new file", path)


def set_aside_if_corrupt(path: Path) -> int | None:
    """Move a corrupt database (and its WAL) aside, loudly; the highest seq it still shows, if any,
    so the new file's sequence numbers carry on rather than start again at 1."""
    if not path.exists():
        return None
    problem = highest = None
    try:
        conn = sqlite3.connect(path)
        try:
            problem = conn.execute("PRAGMA quick_check").fetchone()[0]
            if problem == "ok":
                return None
            highest = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone()[0]
        finally:
            conn.close()
    except (sqlite3.Error, TypeError) as exc:
        problem = problem or str(exc)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(f"{aside}{suffix}")
    log.critical("ENTRY DATABASE %s IS CORRUPT (%s): moved aside to %s and a new one started%s",
                 path, problem, aside,
                 f"; sequence numbers carry on after {highest}" if highest else
                 "; its sequence numbers could not be read, so they start again at 1")
    return highest if isinstance(highest, int) else None
