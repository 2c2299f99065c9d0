"""Entries: every decision, committed to SQLite before the gate is signalled.

The entries table is also the outbox the sync agent will read (synced_ms stays NULL until the hub has
acknowledged an entry). When the database cannot take a commit (disk full, read-only, corrupt file), the
store keeps the entries in a bounded backlog, says so, and writes them once the database works again.

The pieces: record (what an entry is), schema (the table), held (held files' lines), recovery (files
deleted under the store), reader (read-only access); this module is the writer. The names other modules
import from here (Entry, EntryReader, StoreError, ...) stay importable from it.
"""
from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

from edge.common.clock import iso_ms, wall_ms
from edge.common.sqlite import connect, lost_files, open_private, transaction
from edge.entries import recovery, schema
from edge.entries.errors import StoreError, describe
from edge.entries.held import HELD_GLOB, HELD_MODE, Reserve, append_synced, held_line, read_held
from edge.entries.reader import EntryReader
from edge.entries.record import ENTRY_COLUMNS, INSERT, INSERT_IGNORE, Entry, row
from edge.entries.schema import SCHEMA

__all__ = ["BACKLOG_LIMIT", "HELD_MODE", "RESERVE_BYTES", "RESERVE_NAME", "SCHEMA", "Entry", "EntryReader",
           "EntryStore", "StoreError", "describe"]

log = logging.getLogger("checkpoint.store")

BACKLOG_LIMIT = 100_000  # entries held in memory while the database fails (the oldest go first)
# Room set aside beside the database at start and freed when a held entry cannot be written: on a full
# disk the held-*.jsonl file still takes a few thousand entries (about 400 bytes each).
RESERVE_NAME = "held.reserve"
RESERVE_BYTES = 2 * 2**20


class EntryStore:
    """The writer. It raises nothing for a failing database: record() says False, the caller holds the
    entry (hold()), and the store retries every retry_s and says what is wrong in `error`."""

    def __init__(self, path: str | Path, *, retry_s: float = 5.0, check: bool = False,
                 reserve_bytes: int = RESERVE_BYTES, backlog_limit: int = BACKLOG_LIMIT,
                 monotonic: Callable[[], float] = time.monotonic):
        """check: run PRAGMA quick_check first and set a corrupt file aside (the daemon does, at start).
        reserve_bytes: room kept beside the database for held entries on a full disk (0: none).
        backlog_limit: held entries kept in memory (the held file keeps them all).
        monotonic: the clock retry_s is measured on (a test passes its own, to let time pass at once)."""
        self.path = Path(path)
        self.retry_s = retry_s
        self.backlog_limit = backlog_limit
        self._monotonic = monotonic
        self.conn: sqlite3.Connection | None = None
        self.error: str | None = None
        self.backlog: deque[Entry] = deque()
        self.dropped = 0
        self.files_problem: str | None = None  # the database's files were deleted under it (recovered)
        self._next_try = 0.0
        self.reserve = Reserve(self.path.parent / RESERVE_NAME, reserve_bytes)
        self._held_path: Path | None = None  # where held entries are written as they are held
        self._held_fd: int | None = None
        self._held_complete = True  # every entry held since the file was opened is in it
        self._lost_problem: str | None = None  # files deleted under the store, not yet recovered
        seed = recovery.set_aside_if_corrupt(self.path) if check else None
        if self._reserve_ready() and self._open() and seed and self.conn is not None:
            try:
                with transaction(self.conn) as conn:
                    conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('entries', ?)", (seed,))
            except sqlite3.Error as exc:
                self._failed(exc)

    # -- health ------------------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return self.error is None

    def _open(self) -> bool:
        try:
            conn = connect(self.path)
            schema.create(conn)
        except (sqlite3.Error, OSError, StoreError) as exc:
            self._failed(exc)
            return False
        self.conn = conn
        self._load_saved()  # a held file the database cannot take yet closes it again (_failed)
        return self.conn is not None

    # -- entries held when the daemon stopped with the database still failing --------------------------
    # Each held entry is also appended (fsynced) to a held-*.jsonl file as it is held, so neither a
    # stop nor a crash loses it; on a full disk the reserve is freed to make room for that file.
    def _reserve_ready(self, *, look: bool = False) -> bool:
        """Before the database is touched: the reserve is there, or made again, or the database is left
        alone. A database let back in while the reserve is missing grows its WAL into the room freed for
        held entries, and at the next full disk they would have nowhere to go but memory. look: check
        the file even when it was made (after a recovery)."""
        if self.reserve.made and not look:
            return True
        try:
            self.reserve.make()
        except OSError as exc:
            self._failed(StoreError(f"cannot make the {self.reserve.size // 1024} KiB reserve {self.reserve.path} "
                                    f"for held entries ({exc.strerror or exc}); the database is left alone "
                                    f"until it can be made (on a full disk: free at least that much)"))
            return False
        return True

    def _write_held(self, lines: bytes) -> None:
        """Append whole lines to the held file, fsynced; on a failure the file is cut back to whole lines
        and the reserve freed for one more try. Raises OSError when even that fails."""
        for attempt in (1, 2):
            offset = fd = None
            try:
                if self._held_fd is None:
                    path = self.path.parent / f"held-{time.time_ns() // 1_000_000}.jsonl"
                    self._held_fd = open_private(path, os.O_WRONLY | os.O_APPEND, HELD_MODE)
                    self._held_path = path
                fd = self._held_fd
                offset = os.lseek(fd, 0, os.SEEK_END)
                append_synced(fd, lines)
                return
            except OSError as exc:
                if fd is not None and offset is not None:
                    try:
                        os.ftruncate(fd, offset)  # no half line for the next append to extend
                    except OSError:
                        pass
                if attempt == 2 or exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not self.reserve.free():
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
                self._write_held(b"".join(held_line(e) for e in self.backlog))
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
        for path in sorted(self.path.parent.glob(HELD_GLOB)):
            if path != self._held_path and not self._commit_held_file(path):
                return

    def _commit_held_file(self, path: Path) -> bool:
        """False when the database failed (the file stays for the next try)."""
        entries = read_held(path)
        if entries is None:
            return True
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
        self._next_try = self._monotonic() + self.retry_s
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
            self._reserve_ready(look=True)

    # -- writing -----------------------------------------------------------------------------------
    def record(self, entry: Entry) -> bool:
        """Commit entry, after any held ones; False when it could not be committed (the caller decides
        what to hold instead: the entry as it was actually decided after the failure)."""
        if self.conn is None and self._monotonic() < self._next_try:
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
        if self._monotonic() < self._next_try and not force:
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

    def _commit(self, held: Iterable[Entry], new: Entry | None = None) -> None:
        """Held entries (INSERT OR IGNORE: a commit that reported an error may still have become durable,
        and its held copy must not fail every retry on the unique id), then the new one, in one transaction."""
        if self.conn is None:
            raise sqlite3.OperationalError("the entries database is not open")
        with transaction(self.conn) as conn:
            conn.executemany(INSERT_IGNORE, [row(e) for e in held])
            if new is not None:
                conn.execute(INSERT, row(new))

    def hold(self, entry: Entry) -> None:
        """Keep an entry until the database takes it: in memory (bounded; the oldest go first) and,
        fsynced before the caller signals, in the held file beside the database."""
        try:
            self._write_held(held_line(entry))
        except OSError as exc:
            if self._held_complete:  # said once; save_held writes the whole backlog again at stop
                log.critical("cannot write held entries beside %s (%s): they are kept in memory only, "
                             "and lost if the daemon is killed", self.path, exc.strerror or exc)
            self._held_complete = False
        if len(self.backlog) >= self.backlog_limit:
            self.backlog.popleft()
            self.dropped += 1
            log.critical("entry backlog full (%d): oldest held entry %s, %d so far", self.backlog_limit,
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
            return schema.last_allowed(self.conn, code)
        except sqlite3.Error as exc:
            self._failed(exc)
            return None

    def newest_wall_ms(self) -> int | None:
        """The newest entry's wall time: a clock earlier than that is not to be believed."""
        return None if self.conn is None else schema.newest_wall_ms(self.conn)

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
        conn = self.conn
        if conn is None:
            return
        try:
            if os.path.realpath(self.path) in lost:
                recovery.rescue_database(conn, self.path)  # every entry is still readable through it
            else:
                blocked = recovery.checkpoint_blocked(conn, wait=False)
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
            conn.close()
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

    def _save_unrecovered(self) -> None:
        """At stop with a deleted WAL still not checkpointed (a reader holds the database): the deleted
        file goes when the last connection to it closes, a read-only one cannot checkpoint it, and which
        entries are only in it cannot be told. So every entry is written to a held file, committed at the
        next start (those the database has are ignored)."""
        conn = self.conn
        if conn is None or recovery.checkpoint_blocked(conn, wait=True) is None:
            return
        count = 0
        try:
            rows = conn.execute(f"SELECT {ENTRY_COLUMNS} FROM entries ORDER BY seq")
            while batch := rows.fetchmany(1000):
                self._write_held(b"".join(held_line(Entry(*values)) for values in batch))
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
