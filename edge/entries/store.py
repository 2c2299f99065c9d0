"""Entries: every decision, committed to SQLite before the gate is signalled.

The entries table is also the outbox the sync agent will read (synced_ms stays NULL until the hub has
acknowledged an entry). When the database cannot take a commit (disk full, read-only, corrupt file), the
store keeps the entries in a bounded backlog, says so, and writes them once the database works again.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import MISSING, asdict, dataclass, fields
from operator import attrgetter
from pathlib import Path

import sqlite_utils

from edge.common.clock import iso_ms, wall_ms
from edge.common.sqlite import BUSY_TIMEOUT_MS, connect, lost_files, transaction
from edge.common.textsafe import for_log

log = logging.getLogger("checkpoint.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- per-device sequence: never reused, even after a purge
    id TEXT NOT NULL UNIQUE,
    device_id TEXT NOT NULL,
    wall_ms INTEGER NOT NULL,
    mono_ns INTEGER NOT NULL,
    boot_id TEXT NOT NULL,
    source TEXT NOT NULL,
    code TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    list_name TEXT,
    list_version INTEGER,
    config_version TEXT,
    synced_ms INTEGER,
    clock TEXT NOT NULL DEFAULT 'ok',  -- the wall clock's trust state when the entry was made
    ref_id TEXT,   -- an officer's review answer: the id of the entry it answers
    officer TEXT);  -- the officer who answered a review or typed a code by hand
CREATE INDEX IF NOT EXISTS entries_code ON entries (code, seq);
CREATE INDEX IF NOT EXISTS entries_wall ON entries (wall_ms);
CREATE INDEX IF NOT EXISTS entries_outbox ON entries (seq) WHERE synced_ms IS NULL;
"""

BACKLOG_LIMIT = 100_000
# Room set aside beside the database at start and freed when a held entry cannot be written: on a full
# disk the held-*.jsonl file still takes a few thousand entries (about 400 bytes each).
RESERVE_NAME = "held.reserve"
RESERVE_BYTES = 2 * 2**20
HELD_MODE = 0o600


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    device_id: str
    wall_ms: int
    mono_ns: int
    boot_id: str
    source: str
    code: str
    decision: str
    reason: str
    list_name: str | None
    list_version: int | None
    config_version: str | None
    clock: str = "ok"
    ref_id: str | None = None       # a review answer's reviewed entry (source "review")
    officer: str | None = None      # who answered the review or typed the code (source "review", "manual")

    @staticmethod
    def new_id() -> str:
        return str(uuid.uuid4())


_COLUMNS = ", ".join(f.name for f in fields(Entry))
# The insert's parameters straight from the attributes: dataclasses.astuple deep-copies every value,
# a fifth of a text scan's time for nothing (the fields are all immutable).
_row = attrgetter(*(f.name for f in fields(Entry)))
_INSERT = f"INSERT INTO entries ({_COLUMNS}) VALUES ({', '.join('?' * len(fields(Entry)))})"
_INSERT_IGNORE = _INSERT.replace("INSERT", "INSERT OR IGNORE", 1)  # a saved file replayed twice adds nothing


def _migrate(conn: sqlite3.Connection) -> None:
    """Columns added since a database was created."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
    if "clock" not in columns:
        conn.execute("ALTER TABLE entries ADD COLUMN clock TEXT NOT NULL DEFAULT 'ok'")
    for column in ("ref_id", "officer"):
        if column not in columns:
            conn.execute(f"ALTER TABLE entries ADD COLUMN {column} TEXT")
    # Here, not in SCHEMA: an older database has no ref_id column until the lines above ran.
    conn.execute("CREATE INDEX IF NOT EXISTS entries_ref ON entries (ref_id) WHERE ref_id IS NOT NULL")


def _newest_wall_ms(conn: sqlite3.Connection) -> int | None:
    try:
        return conn.execute("SELECT max(wall_ms) FROM entries").fetchone()[0]
    except sqlite3.Error:
        return None


def _last_allowed(conn: sqlite3.Connection, code: str) -> tuple[int, int, str] | None:
    return conn.execute("SELECT wall_ms, mono_ns, boot_id FROM entries WHERE code = ? AND decision = 'allow' "
                        "ORDER BY seq DESC LIMIT 1", (code,)).fetchone()


def _held_line(entry: Entry) -> bytes:
    return (json.dumps(asdict(entry), ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")


_INT64 = range(-2**63, 2**63)
_FIELD_TYPES = {f.name: f.type for f in fields(Entry)}
# A held file written before a field was added lacks it: the field's default stands in.
_REQUIRED = {f.name for f in fields(Entry) if f.default is MISSING}


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")  # a lone surrogate cannot be stored
    except UnicodeEncodeError:
        return False
    return True


def _held_entry(line: str) -> Entry:
    """An Entry from a held file's line, each field checked (a damaged or forged file may hold anything
    JSON can say: nesting too deep to parse, integers SQLite cannot store, fields missing); ValueError."""
    try:
        data = json.loads(line)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(data, dict) or not _REQUIRED <= set(data) <= set(_FIELD_TYPES):
        raise ValueError("not the fields of an entry")
    for name, kind in _FIELD_TYPES.items():
        if name not in data:
            continue
        value = data[name]
        if value is None and "None" in kind:
            continue
        if "int" in kind:
            if type(value) is not int or value not in _INT64:
                raise ValueError(f"{name}: not a 64-bit integer")
        elif type(value) is not str or not value.isascii() and not _utf8(value):
            raise ValueError(f"{name}: not text")
    return Entry(**data)


class StoreError(Exception):
    """The entries database cannot be used; the message says why in words an operator can act on."""


def describe(exc: BaseException) -> str:
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return f"database file is corrupt or not a SQLite database ({text})"
    if "readonly" in text or "read-only" in text:
        return f"database is read-only ({text})"
    if "full" in text:
        return f"disk or database is full ({text})"
    return text


class EntryStore:
    def __init__(self, path: str | Path, *, retry_s: float = 5.0, check: bool = False,
                 reserve_bytes: int = RESERVE_BYTES):
        """check: run PRAGMA quick_check first and set a corrupt file aside (the daemon does, at start).
        reserve_bytes: room kept beside the database for held entries on a full disk (0: none)."""
        self.path = Path(path)
        self.retry_s = retry_s
        self.conn: sqlite3.Connection | None = None
        self.error: str | None = None
        self.backlog: deque[Entry] = deque()
        self.dropped = 0
        self.files_problem: str | None = None  # the database's files were deleted under it (recovered)
        self._next_try = 0.0
        self.reserve = self.path.parent / RESERVE_NAME
        self.reserve_bytes = reserve_bytes
        self._held_path: Path | None = None  # where held entries are written as they are held
        self._held_fd: int | None = None
        self._held_complete = True  # every entry held since the file was opened is in it
        self._reserve_made = False
        self._lost_problem: str | None = None  # files deleted under the store, not yet recovered
        seed = self._set_aside_if_corrupt() if check else None
        if self._reserve_ready() and self._open() and seed:
            with transaction(self.conn) as conn:
                conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('entries', ?)", (seed,))

    def _set_aside_if_corrupt(self) -> int | None:
        """Move a corrupt database (and its WAL) aside, loudly; the highest seq it still shows, if any,
        so the new file's sequence numbers carry on rather than start again at 1."""
        if not self.path.exists():
            return None
        problem = highest = None
        try:
            conn = sqlite3.connect(self.path)
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
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.rename(f"{aside}{suffix}")
        log.critical("ENTRY DATABASE %s IS CORRUPT (%s): moved aside to %s and a new one started%s",
                     self.path, problem, aside,
                     f"; sequence numbers carry on after {highest}" if highest else
                     "; its sequence numbers could not be read, so they start again at 1")
        return highest

    # -- health ------------------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return self.error is None

    def _open(self) -> bool:
        try:
            conn = connect(self.path)
            conn.executescript(SCHEMA)
            _migrate(conn)
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc)
            return False
        self.conn = conn
        self._load_saved()  # a held file the database cannot take yet closes it again (_failed)
        return self.conn is not None

    # -- entries held when the daemon stopped with the database still failing --------------------------
    # Each held entry is also appended (fsynced) to a held-*.jsonl file as it is held, so neither a
    # stop nor a crash loses it; on a full disk the reserve is freed to make room for that file.
    def _make_reserve(self) -> bool:
        if self.reserve_bytes <= 0:
            return True
        try:
            if self.reserve.stat().st_size >= self.reserve_bytes:
                self._reserve_made = True
                return True
        except OSError:
            pass
        try:
            self.reserve.parent.mkdir(parents=True, exist_ok=True)  # a first start: nothing there yet
            fd = os.open(self.reserve, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, HELD_MODE)
            try:
                os.fchmod(fd, HELD_MODE)
                os.posix_fallocate(fd, 0, self.reserve_bytes)  # real blocks, not a sparse promise
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self.reserve.unlink(missing_ok=True)
            self._reserve_made = False
            self._failed(StoreError(f"cannot make the {self.reserve_bytes // 1024} KiB reserve {self.reserve} "
                                    f"for held entries ({exc.strerror or exc}); the database is left alone "
                                    f"until it can be made (on a full disk: free at least that much)"))
            return False
        self._reserve_made = True
        return True

    def _reserve_ready(self) -> bool:
        """Before the database is touched: the reserve is there, or made again, or the database is left
        alone. A database let back in while the reserve is missing grows its WAL into the room freed for
        held entries, and at the next full disk they would have nowhere to go but memory."""
        return self._reserve_made or self._make_reserve()

    def _free_reserve(self) -> bool:
        try:
            self.reserve.unlink()
        except OSError:
            return False
        self._reserve_made = False
        log.critical("disk full: reserve %s freed for held entries; free space and the store recovers",
                     self.reserve)
        return True

    def _write_held(self, lines: bytes) -> None:
        """Append whole lines to the held file, fsynced; on a failure the file is cut back to whole lines
        and the reserve freed for one more try. Raises OSError when even that fails."""
        for attempt in (1, 2):
            offset = None
            try:
                if self._held_fd is None:
                    path = self.path.parent / f"held-{time.time_ns() // 1_000_000}.jsonl"
                    self._held_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                                            HELD_MODE)
                    self._held_path = path
                    os.fchmod(self._held_fd, HELD_MODE)
                offset = os.lseek(self._held_fd, 0, os.SEEK_END)
                view = memoryview(lines)
                while view:
                    view = view[os.write(self._held_fd, view):]
                os.fsync(self._held_fd)
                return
            except OSError as exc:
                if offset is not None:
                    try:
                        os.ftruncate(self._held_fd, offset)  # no half line for the next append to extend
                    except OSError:
                        pass
                if attempt == 2 or exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not self._free_reserve():
                    raise

    def _close_held(self, *, remove: bool) -> None:
        if self._held_fd is not None:
            os.close(self._held_fd)
            self._held_fd = None
        if remove and self._held_path is not None:
            self._held_path.unlink(missing_ok=True)
        self._held_path = None
        self._held_complete = True

    def save_held(self) -> Path | None:
        """At stop: held entries are already in the held file, fsynced; when some could not be written
        there, the whole backlog is written again to a file of its own (duplicates are ignored)."""
        if not self.backlog:
            self._close_held(remove=True)
            return None
        path = self._held_path
        if path is None or not self._held_complete:
            self._close_held(remove=False)
            try:
                self._write_held(b"".join(_held_line(e) for e in self.backlog))
                path = self._held_path
            except OSError as exc:
                log.critical("%d entries the database never took are LOST: cannot save them beside %s: %s",
                             len(self.backlog), self.path, exc)
                self._close_held(remove=False)
                return None
        self._close_held(remove=False)
        log.critical("%d entries the database never took saved to %s; committed at the next start",
                     len(self.backlog), path)
        return path

    def _load_saved(self) -> None:
        """Commit the entries of held files (this run's own stays: its entries are in the backlog)."""
        for path in sorted(self.path.parent.glob("held-*.jsonl")):
            if path != self._held_path and not self._commit_held_file(path):
                return

    def _commit_held_file(self, path: Path) -> bool:
        """False when the database failed (the file stays for the next try)."""
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            log.error("cannot read held entries from %s (%s): left there for an administrator", path, exc)
            return True
        entries = []
        for number, line in enumerate(text.splitlines(), 1):
            try:
                entries.append(_held_entry(line))
            except ValueError as exc:
                log.error("%s line %d: not a held entry (%s); skipped", path, number, for_log(exc))
        try:
            self._commit(entries)
        except sqlite3.Error as exc:
            self._failed(exc)
            return False
        path.unlink()
        log.warning("committed %d held entries from %s", len(entries), path)
        return True

    def _failed(self, exc: BaseException) -> None:
        message = describe(exc)
        if message != self.error:
            log.error("ENTRY STORE FAILURE at %s: %s; scans are denied (store-failure) until it recovers, "
                      "retrying every %.0f s", self.path, message, self.retry_s)
        self.error = message
        self._next_try = time.monotonic() + self.retry_s
        if self.conn is not None:
            try:
                self.conn.close()
            except sqlite3.Error:
                pass
            self.conn = None

    def _recovered(self) -> None:
        if self.error is not None:
            log.warning("entry store at %s recovered; wrote %d held entries", self.path, len(self.backlog))
        self.error = None
        self.backlog.clear()
        if self._held_path is not None:
            # The backlog is in; the file may hold more (entries the bounded backlog let go).
            path = self._held_path
            self._close_held(remove=False)
            self._commit_held_file(path)
            self._make_reserve()

    # -- writing -----------------------------------------------------------------------------------
    def record(self, entry: Entry) -> bool:
        """Commit entry, after any held ones; False when it could not be committed (the caller decides
        what to hold instead: the entry as it was actually decided after the failure)."""
        if self.conn is None and time.monotonic() < self._next_try:
            return False
        if not self._reserve_ready() or self.conn is None and not self._open():
            return False
        try:
            self._commit(self.backlog, entry)
        except sqlite3.Error as exc:
            self._failed(exc)
            return False
        self._recovered()
        return True

    def retry(self, *, force: bool = False) -> bool:
        """Try again to write held entries: periodically, and once more (force) on the way out."""
        if not self.backlog and self.conn is not None:
            return True
        if time.monotonic() < self._next_try and not force:
            return False
        if not self._reserve_ready() or self.conn is None and not self._open():
            return False
        try:
            self._commit(self.backlog)
        except sqlite3.Error as exc:
            self._failed(exc)
            return False
        self._recovered()
        return True

    def _commit(self, held, new: Entry | None = None) -> None:
        """Held entries (INSERT OR IGNORE: a commit that reported an error may still have become durable,
        and its held copy must not fail every retry on the unique id), then the new one, in one transaction."""
        with transaction(self.conn) as conn:
            conn.executemany(_INSERT_IGNORE, [_row(e) for e in held])
            if new is not None:
                conn.execute(_INSERT, _row(new))

    def hold(self, entry: Entry) -> None:
        """Keep an entry until the database takes it: in memory (bounded; the oldest go first) and,
        fsynced before the caller signals, in the held file beside the database."""
        try:
            self._write_held(_held_line(entry))
        except OSError as exc:
            if self._held_complete:  # said once; save_held writes the whole backlog again at stop
                log.critical("cannot write held entries beside %s (%s): they are kept in memory only, "
                             "and lost if the daemon is killed", self.path, exc.strerror or exc)
            self._held_complete = False
        if len(self.backlog) >= BACKLOG_LIMIT:
            self.backlog.popleft()
            self.dropped += 1
            log.critical("entry backlog full (%d): oldest held entry %s, %d so far", BACKLOG_LIMIT,
                         f"left to {self._held_path}" if self._held_complete else "lost", self.dropped)
        self.backlog.append(entry)

    def purge(self, older_than_ms: int, *, synced_only: bool = False) -> int:
        """Delete old entries; with synced_only (sync enabled) never one the hub has not acknowledged."""
        if self.conn is None:
            return 0
        sql = "DELETE FROM entries WHERE wall_ms < ?" + (" AND synced_ms IS NOT NULL" if synced_only else "")
        try:
            with transaction(self.conn) as conn:
                return conn.execute(sql, (older_than_ms,)).rowcount
        except sqlite3.Error as exc:
            self._failed(exc)
            return 0

    # -- reading -----------------------------------------------------------------------------------
    def last_allowed(self, code: str) -> tuple[int, int, str] | None:
        """(wall_ms, mono_ns, boot_id) of the newest allowed entry for code, for the repeat rule."""
        if self.conn is None:
            return None
        try:
            return _last_allowed(self.conn, code)
        except sqlite3.Error as exc:
            self._failed(exc)
            return None

    def newest_wall_ms(self) -> int | None:
        """The newest entry's wall time: a clock earlier than that is not to be believed."""
        return None if self.conn is None else _newest_wall_ms(self.conn)

    # -- the database's files deleted under it (someone cleaning /var) -------------------------------
    @property
    def recovery_pending(self) -> bool:
        """Files deleted under the store and not yet recovered (a reader blocks the checkpoint): no other
        connection to the database may be opened in this process until this is False (a new one would
        make a new -wal beside the -shm of the deleted one)."""
        return self._lost_problem is not None and self.conn is not None

    def lost_files(self) -> list[str]:
        """The database's files deleted while open: cheap (no database access); call it on a timer."""
        return lost_files(self.path) if self.conn is not None else []

    def recover_files(self, lost: list[str]) -> None:
        """Checkpoint what the deleted WAL holds into the database file, then reopen, so later commits go
        to files that exist. Every other connection to the database in this process must be closed
        first (their writes would go on to the deleted file)."""
        if self._lost_problem is None:
            self._lost_problem = f"{', '.join(lost)} deleted while open (at {iso_ms(wall_ms())})"
            log.error("ENTRY DATABASE FILES DELETED under the running daemon: %s; entries committed since "
                      "the last checkpoint would be lost at the next crash: checkpointing and reopening",
                      self._lost_problem)
        problem = self._lost_problem
        try:
            if os.path.realpath(self.path) in lost:
                self._rescue_database()  # every entry is still readable through the open connection
            else:
                blocked = self._checkpoint_blocked(wait=False)
                if blocked:
                    # Reopening now would make a new -wal by name while the shared -shm still describes
                    # the deleted one's frames: a corrupt database. This connection still works (its
                    # commits go on to the deleted WAL, checkpointed at the next try).
                    pending = f"{problem}; recovery pending: a reader holds the database"
                    if self.files_problem != pending:
                        log.warning("entry database %s: %s (%s); retried at the next check", self.path,
                                    pending, blocked)
                    self.files_problem = pending
                    return
            self.conn.close()
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc)
            self.files_problem = f"{problem}; recovery failed: {describe(exc)}"
            self._lost_problem = None
            return
        self.conn = None
        self._lost_problem = None
        if self._open():
            log.error("entry database %s reopened; its entries are safe in the database file", self.path)
            self.files_problem = f"{problem}; recovered (checkpointed and reopened)"
        else:
            self.files_problem = f"{problem}; checkpointed, but the database cannot be reopened: {self.error}"

    def _checkpoint_blocked(self, *, wait: bool) -> str | None:
        """Copy the whole WAL into the database file and empty it; None when that completed (the
        pragma's (busy, frames, moved) is (0, 0, 0)), else why not. A reader holding a snapshot blocks
        it: without wait, asked without waiting, so the scan loop is not held up while it lasts."""
        if not wait:
            self.conn.execute("PRAGMA busy_timeout = 0")
        try:
            result = tuple(self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
        except sqlite3.OperationalError as exc:  # locked: another connection is writing
            return describe(exc)
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return None if result == (0, 0, 0) else f"checkpoint (busy, frames, moved) = {result}"

    def _rescue_database(self) -> None:
        """The database file itself was deleted: copy it whole (WAL included) from the open connection to
        a new file, synced, and put that in its place."""
        rescue = self.path.with_name(self.path.name + ".rescue")
        for name in (rescue, *(Path(f"{rescue}{suffix}") for suffix in ("-wal", "-shm", "-journal"))):
            name.unlink(missing_ok=True)
        target = connect(rescue)
        try:
            self.conn.backup(target)
            target.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            target.close()
        self.conn.close()  # its WAL, already in the copy, goes before the copy takes the name
        os.replace(rescue, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        log.error("entry database %s rescued from the open connection into a new file", self.path)

    def _save_unrecovered(self) -> None:
        """At stop with a deleted WAL still not checkpointed (a reader holds the database): the deleted
        file goes when the last connection to it closes, a read-only one cannot checkpoint it, and which
        entries are only in it cannot be told. So every entry is written to a held file, committed at the
        next start (those the database has are ignored)."""
        if self._checkpoint_blocked(wait=True) is None:
            return
        count = 0
        try:
            rows = self.conn.execute(f"SELECT {_COLUMNS} FROM entries ORDER BY seq")
            while batch := rows.fetchmany(1000):
                self._write_held(b"".join(_held_line(Entry(*row)) for row in batch))
                count += len(batch)
        except (sqlite3.Error, OSError) as exc:
            log.critical("ENTRIES MAY BE LOST: the deleted WAL of %s could not be checkpointed and only %d "
                         "entries were saved beside it (%s)", self.path, count, describe(exc))
        else:
            log.critical("the deleted WAL of %s could not be checkpointed (a reader holds the database): all "
                         "%d entries saved to %s; committed at the next start", self.path, count, self._held_path)
        self._close_held(remove=False)

    def close(self) -> None:
        """One last try to write held entries; what still cannot be written is saved beside the file."""
        try:
            self.retry(force=True)
        finally:  # whatever the last try raised, the backlog goes to disk
            self.save_held()
        if self.conn is not None and self._lost_problem is not None:
            self._save_unrecovered()
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class EntryReader:
    """Read-only access for the CLI (export, status), safe beside a running daemon."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"{self.path}: no entries database yet (the daemon creates it on its first run)")
        try:
            self.conn = connect(self.path, readonly=True)
            self.db = sqlite_utils.Database(self.conn)
            self.db.execute("SELECT 1 FROM entries LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {describe(exc)}") from None

    def rows(self, since_ms: int | None = None, device: str | None = None) -> Iterator[dict]:
        where, params = [], []
        if since_ms is not None:
            where.append("wall_ms >= ?")
            params.append(since_ms)
        if device is not None:
            where.append("device_id = ?")
            params.append(device)
        sql = "SELECT * FROM entries" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq"
        try:
            yield from self.db.query(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {describe(exc)}") from None

    def newest_wall_ms(self) -> int | None:
        """The newest entry's wall time, which the daemon's clock judge starts from (EntryStore.newest_wall_ms)."""
        return _newest_wall_ms(self.conn)

    def last_allowed(self, code: str) -> tuple[int, int, str] | None:
        try:
            return _last_allowed(self.conn, code)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {describe(exc)}") from None

    def outbox(self) -> dict:
        """Entries not yet acknowledged by the broker: how many, and since when."""
        try:
            depth, oldest = self.db.execute(
                "SELECT count(*), min(wall_ms) FROM entries WHERE synced_ms IS NULL").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {describe(exc)}") from None
        return {"depth": depth, "oldest_unsynced": iso_ms(oldest) if oldest else None,
                "oldest_unsynced_age_s": round((wall_ms() - oldest) / 1000, 1) if oldest else None}

    def summary(self) -> dict:
        try:
            counts = dict(self.db.execute("SELECT decision, count(*) FROM entries GROUP BY decision").fetchall())
            last = next(self.db.query("SELECT * FROM entries ORDER BY seq DESC LIMIT 1"), None)
            check = self.db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {describe(exc)}") from None
        return {"entries": sum(counts.values()), "by_decision": counts, "last": last,
                "integrity": check, "unsynced": self.db.execute(
                    "SELECT count(*) FROM entries WHERE synced_ms IS NULL").fetchone()[0]}

    def close(self) -> None:
        self.conn.close()
