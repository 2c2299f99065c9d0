"""One way to open the appliance's SQLite files: WAL, full fsync on commit, explicit transactions."""
from __future__ import annotations

import errno
import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Entries and lists are personal data: never readable by everyone, whatever the caller's umask (0644 from
# a shell). SQLite gives the -wal and -shm files the database file's own mode, so setting it on the
# database is enough for all three.
FILE_MODE = 0o640
SIDE_FILES = ("-wal", "-shm")
BUSY_TIMEOUT_MS = 5000  # how long a statement waits for another connection's lock before "locked"


def open_private(path: Path | str, flags: int, mode: int) -> int:
    """os.open(path, flags | O_CREAT, mode) with exactly `mode` whatever the umask, for a regular file only: a
    path that names a device, a FIFO or a symlink (a config's mistake, /dev/null as a sink) is refused with
    OSError before its mode is touched: run as root, a chmod would change the device for every user."""
    fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        os.fchmod(fd, mode)  # os.open's mode passes through the umask; this does not
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_file(path: Path, mode: int = FILE_MODE) -> None:
    """Create path empty with exactly `mode` (an empty file is a new SQLite database), or take the
    world's bits off an existing one and its -wal/-shm (made by an older version, or by hand)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        for name in (str(path), *(f"{path}{suffix}" for suffix in SIDE_FILES)):
            try:
                found = os.lstat(name)
                if stat.S_ISREG(found.st_mode) and found.st_mode & 0o007:  # never a device's or a link's target
                    os.chmod(name, found.st_mode & 0o777 & ~0o007)
            except OSError:
                pass  # not there, or not ours to change: SQLite says what matters when it opens it
        return
    try:
        os.fchmod(fd, mode)  # os.open's mode passes through the umask; this does not
    finally:
        os.close(fd)


def lost_files(path: Path) -> list[str]:
    """The database's files this process still has open but which are gone from the directory: a -wal
    deleted under a running writer keeps taking commits that vanish at the next crash.

    Read from /proc/self/fd (a few dozen readlinks, no stat of the database per scan); [] where /proc
    is not there to ask."""
    base = os.path.realpath(path)
    names = {base + suffix + " (deleted)": base + suffix for suffix in ("", *SIDE_FILES)}
    lost = set()
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return []
    for fd in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed since the listing
        if target in names:
            lost.add(names[target])
    return sorted(lost)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open (and with readonly=False create) a database; raises sqlite3.DatabaseError on a bad file.

    synchronous=FULL makes every commit durable across a power cut before the gate is signalled;
    WAL lets readers (status, export, list lookups) run beside the writer.
    """
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        if str(path) != ":memory:":
            try:
                private_file(Path(path))
            except OSError as exc:  # callers expect SQLite's own error for a file it cannot open
                raise sqlite3.OperationalError(f"unable to open database file {path}: {exc.strerror}") from exc
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA schema_version").fetchone()  # touches the header: a non-database fails here
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
        conn.execute("PRAGMA synchronous = FULL")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any exception. Needed because these connections run in
    autocommit mode (isolation_level=None), where `with conn:` would leave each statement on its own."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
