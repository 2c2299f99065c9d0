"""Entries: every decision, committed to SQLite before the gate is signalled.

The entries table is also the outbox the sync agent will read (synced_ms stays NULL until the hub has
acknowledged an entry). When the database cannot take a commit (disk full, read-only, corrupt file), the
store keeps the entries in a bounded backlog, says so, and writes them once the database works again.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
import uuid
from collections import deque
from dataclasses import asdict, astuple, dataclass, fields
from pathlib import Path
from typing import Iterator

import sqlite_utils

from .clock import iso_ms, wall_ms
from .sqlite import connect, transaction

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
    clock TEXT NOT NULL DEFAULT 'ok');  -- the wall clock's trust state when the entry was made
CREATE INDEX IF NOT EXISTS entries_code ON entries (code, seq);
CREATE INDEX IF NOT EXISTS entries_wall ON entries (wall_ms);
CREATE INDEX IF NOT EXISTS entries_outbox ON entries (seq) WHERE synced_ms IS NULL;
"""

BACKLOG_LIMIT = 100_000


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

    @staticmethod
    def new_id() -> str:
        return str(uuid.uuid4())


_COLUMNS = ", ".join(f.name for f in fields(Entry))
_INSERT = f"INSERT INTO entries ({_COLUMNS}) VALUES ({', '.join('?' * len(fields(Entry)))})"
_INSERT_IGNORE = _INSERT.replace("INSERT", "INSERT OR IGNORE", 1)  # a saved file replayed twice adds nothing


def _migrate(conn: sqlite3.Connection) -> None:
    """Columns added since a database was created."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
    if "clock" not in columns:
        conn.execute("ALTER TABLE entries ADD COLUMN clock TEXT NOT NULL DEFAULT 'ok'")


def _last_allowed(conn: sqlite3.Connection, code: str) -> tuple[int, int, str] | None:
    return conn.execute("SELECT wall_ms, mono_ns, boot_id FROM entries WHERE code = ? AND decision = 'allow' "
                        "ORDER BY seq DESC LIMIT 1", (code,)).fetchone()


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
    def __init__(self, path: str | Path, *, retry_s: float = 5.0, check: bool = False):
        """check: run PRAGMA quick_check first and set a corrupt file aside (the daemon does, at start)."""
        self.path = Path(path)
        self.retry_s = retry_s
        self.conn: sqlite3.Connection | None = None
        self.error: str | None = None
        self.backlog: deque[Entry] = deque()
        self.dropped = 0
        self._next_try = 0.0
        seed = self._set_aside_if_corrupt() if check else None
        if self._open() and seed:
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
        self._load_saved()
        return True

    # -- entries held when the daemon stopped with the database still failing --------------------------
    def save_held(self) -> Path | None:
        """Write held entries to a file beside the database, to be committed at the next start."""
        if not self.backlog:
            return None
        path = self.path.parent / f"held-{int(time.time() * 1000)}.jsonl"
        try:
            with open(path, "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(asdict(e), ensure_ascii=False) + "\n" for e in self.backlog)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            log.critical("%d entries the database never took are LOST: cannot save them to %s: %s",
                         len(self.backlog), path, exc)
            return None
        log.critical("%d entries the database never took saved to %s; committed at the next start",
                     len(self.backlog), path)
        return path

    def _load_saved(self) -> None:
        for path in sorted(self.path.parent.glob("held-*.jsonl")):
            entries = []
            for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                try:
                    entries.append(Entry(**json.loads(line)))
                except (ValueError, TypeError) as exc:
                    log.error("%s line %d: not a held entry (%s); skipped", path, number, exc)
            try:
                self._commit(entries, ignore_known=True)
            except sqlite3.Error as exc:
                self._failed(exc)
                return
            path.unlink()
            log.warning("committed %d held entries from %s", len(entries), path)

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

    # -- writing -----------------------------------------------------------------------------------
    def record(self, entry: Entry) -> bool:
        """Commit entry, after any held ones; False when it could not be committed (the caller decides
        what to hold instead: the entry as it was actually decided after the failure)."""
        if self.conn is None and (time.monotonic() < self._next_try or not self._open()):
            return False
        try:
            self._commit([*self.backlog, entry])
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
        if self.conn is None and not self._open():
            return False
        try:
            self._commit(list(self.backlog))
        except sqlite3.Error as exc:
            self._failed(exc)
            return False
        self._recovered()
        return True

    def _commit(self, entries: list[Entry], *, ignore_known: bool = False) -> None:
        with transaction(self.conn) as conn:
            conn.executemany(_INSERT_IGNORE if ignore_known else _INSERT, [astuple(e) for e in entries])

    def hold(self, entry: Entry) -> None:
        """Keep an entry in memory until the database takes it (bounded; the oldest go first)."""
        if len(self.backlog) >= BACKLOG_LIMIT:
            self.backlog.popleft()
            self.dropped += 1
            log.critical("entry backlog full (%d): oldest held entry lost, %d lost so far",
                         BACKLOG_LIMIT, self.dropped)
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
        if self.conn is None:
            return None
        try:
            return self.conn.execute("SELECT max(wall_ms) FROM entries").fetchone()[0]
        except sqlite3.Error:
            return None

    def close(self) -> None:
        """One last try to write held entries; what still cannot be written is saved beside the file."""
        self.retry(force=True)
        self.save_held()
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
