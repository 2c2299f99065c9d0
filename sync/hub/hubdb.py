"""The hub's entries database: SQLite by default, PostgreSQL by URL. Idempotent by entry id.

A duplicate delivery (a resend after a lost PUBACK, a redelivery after a collector died) inserts
nothing and is counted; a device's sequence numbers show its gaps.

Longer than 400 lines because it is the hub's SQL, every statement written once for both databases beside
the one connection and transaction they share; the tables themselves are in schema.py, the dashboard's own
queries in dashboard/reads.py.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from sync.hub.errors import MissingDatabase
from sync.hub.schema import ADDED_COLUMNS, ADDED_TABLES, COLUMNS, SCHEMA, TABLES
from sync.hub.status import read_status
from sync.wire.codec import Batch
from sync.wire.messages import Remote

STATUS_LOCK = 0x636B_7073  # with the device's hashtext: the advisory lock a status is stored under
SCHEMA_LOCK = 0x636B_7074_6875_6201  # "ckpthub" + 1: the advisory lock held while the schema is made or moved on
__all__ = ["HubDB", "MissingDatabase", "Stored", "COLUMNS", "SCHEMA"]  # COLUMNS, SCHEMA: kept importable here

ENTRY_FIELDS = COLUMNS[:16]     # what a device said about an entry; a second copy must say the same
REJECTED_PAYLOAD_BYTES = 4096   # of a rejected message, kept; its full size is recorded beside
# Rejected messages kept per device (the oldest go): a device sending endless distinct garbage cannot
# fill the hub's disk. Messages whose topic names no device count as one device.
REJECTED_PER_DEVICE = 1000
# Status changes kept per device. A count, not an age: a device that flaps or sends a changing status every
# few seconds (hostile or broken) cannot grow the table past it, and a quiet device keeps months. At one change
# a minute (an outbox filling) it is the last ~16 hours; a device's page shows them.
STATUS_HISTORY_PER_DEVICE = 1000
# A status bigger than this is kept in the history by the parts the device page shows only.
HISTORY_STATUS_BYTES = 16 * 1024
HISTORY_KEYS = ("device", "state", "sent_ms", "versions", "outbox", "source", "problems")


class Stored(NamedTuple):
    inserted: int
    duplicates: int     # copies of entries already stored, identical
    known: int          # the device's highest sequence number before this batch, 0 for a new device
    conflicts: int      # copies of stored entry ids that say something else: the first copy is kept

ROWS_PER_STATEMENT = 500


class HubDB:
    """One connection; every method is one transaction.

    readonly: for the commands that only read. Nothing is created (a mistyped path is an error, not a new
    empty database) and no write lock is taken, so reading never holds up a collector."""

    rejected_per_device = REJECTED_PER_DEVICE
    status_history_per_device = STATUS_HISTORY_PER_DEVICE
    # How a batch's entries go into PostgreSQL: "copy" (COPY into a temporary table, then INSERT ... SELECT)
    # or "values" (multi-row INSERTs); bench/sync.py measures both.
    pg_insert = "copy"

    def __init__(self, url: str, *, readonly: bool = False):
        self.url, self.readonly = url, readonly
        self.conn: Any  # a psycopg or a sqlite3 connection: the statements are written for both
        self._errors: tuple[type[Exception], ...]
        self._data_errors: tuple[type[Exception], ...]
        if url.startswith(("postgresql://", "postgres://")):
            import psycopg

            self.pg = True
            self.conn = psycopg.connect(url, autocommit=False)
            self.conn.read_only = readonly
            self._errors = (psycopg.Error,)
            # What the database refuses in one message's data (a NUL in a text, a number out of range),
            # as against the database failing: the first rejects that message, the second stops collecting.
            self._data_errors = (psycopg.DataError, psycopg.IntegrityError, UnicodeError, OverflowError)
        else:
            self.pg = False
            path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
            if readonly:
                if not Path(path).is_file():
                    raise MissingDatabase(f"no hub database at {path} (check --db)")
                self.conn = sqlite3.connect(f"file:{quote(str(Path(path).absolute()))}?mode=ro", uri=True,
                                            isolation_level=None, check_same_thread=False)
            else:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                self.conn.execute("PRAGMA journal_mode = WAL")
                self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute("PRAGMA busy_timeout = 10000")
            self._errors = (sqlite3.Error,)
            self._data_errors = (sqlite3.DataError, sqlite3.IntegrityError, UnicodeError, OverflowError)
        try:
            if readonly:
                missing = [t for t in TABLES if not self._columns(t)]
                if missing:
                    raise MissingDatabase(f"{url} is not a hub database (no table {missing[0]})")
            else:
                with self.transaction() as cur:
                    if self.pg:
                        # Collectors started together would each create the tables: PostgreSQL's catalogue
                        # refuses the second CREATE TABLE IF NOT EXISTS mid-race (pg_type's unique index), so
                        # one creates them at a time; the lock ends with this transaction.
                        cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                    for statement in SCHEMA + ADDED_TABLES:
                        cur.execute(statement.format(
                            blob="BYTEA" if self.pg else "BLOB",
                            serial="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY" if self.pg
                            else "INTEGER PRIMARY KEY"))
                    for table, column, kind in ADDED_COLUMNS:
                        if column not in self._columns(table, cur):
                            cur.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        except BaseException:
            self.conn.close()
            raise
        self.has_conflicts = "conflicts" in self._columns("hub_devices")
        self.has_digest = "digest" in self._columns("hub_acks")
        self.has_history = bool(self._columns("hub_status_history"))
        # A database from before officers' entries, opened read-only, has no ref_id or officer: none shown.
        present = set(self._columns("hub_entries"))
        self._entry_select = ", ".join(c if c in present else f"NULL AS {c}" for c in COLUMNS)

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        return self._errors

    @property
    def data_errors(self) -> tuple[type[Exception], ...]:
        """Errors about the data written, not the database: check these before `errors`."""
        return self._data_errors

    def _columns(self, table: str, cur=None) -> list[str]:
        if cur is None:
            with self.transaction() as cur:
                return self._columns(table, cur)
        if self.pg:
            cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                        "AND table_name = %s", (table,))
        else:
            cur.execute("SELECT name FROM pragma_table_info(?)", (table,))
        return [row[0] for row in cur.fetchall()]

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.pg else sql

    def transaction(self):
        return _Transaction(self)

    def store(self, batch: Batch, received_ms: int) -> Stored:
        """Insert a batch's new entries and update its device."""
        offset = received_ms - batch.sent_ms
        rows = [(e.id, batch.device_id, e.seq, e.wall_ms, e.mono_ns, e.boot_id, e.source, e.code, e.decision,
                 e.reason, e.list_name, e.list_version, e.config_version, e.clock, e.ref_id, e.officer,
                 batch.sent_ms, received_ms, offset)
                for e in batch.entries]
        inserted = 0
        greatest = "GREATEST" if self.pg else "MAX"
        with self.transaction() as cur:
            cur.execute(self._sql("SELECT max_seq FROM hub_devices WHERE device_id = ?"), (batch.device_id,))
            known = cur.fetchone()
            new_ids: set[str] = set()
            if self.pg and self.pg_insert == "copy":
                new_ids = self._copy_in(cur, rows)
                rows_left = []
            else:
                rows_left = rows
            for start in range(0, len(rows_left), ROWS_PER_STATEMENT):
                chunk = rows_left[start:start + ROWS_PER_STATEMENT]
                values = ", ".join(["(" + ", ".join("?" * len(COLUMNS)) + ")"] * len(chunk))
                cur.execute(self._sql(f"INSERT INTO hub_entries ({', '.join(COLUMNS)}) VALUES {values} "
                                      "ON CONFLICT (id) DO NOTHING RETURNING id"),
                            [value for row in chunk for value in row])
                new_ids.update(row[0] for row in cur.fetchall())
            inserted = len(new_ids)
            copies = [row for row in rows if row[0] not in new_ids]
            conflicts = self._conflicts(cur, copies)
            duplicates = len(rows) - inserted - conflicts
            max_seq = max((e.seq for e in batch.entries), default=0)
            cur.execute(self._sql(
                "INSERT INTO hub_devices (device_id, last_seen_ms, max_seq, entries, duplicates, clock_offset_ms, "
                "conflicts) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
                f"last_seen_ms = excluded.last_seen_ms, max_seq = {greatest}(hub_devices.max_seq, excluded.max_seq), "
                "entries = hub_devices.entries + excluded.entries, "
                "duplicates = hub_devices.duplicates + excluded.duplicates, "
                "conflicts = hub_devices.conflicts + excluded.conflicts, "
                "clock_offset_ms = excluded.clock_offset_ms"),
                (batch.device_id, received_ms, max_seq, inserted, duplicates, offset, conflicts))
        return Stored(inserted, duplicates, known[0] if known else 0, conflicts)

    def _copy_in(self, cur, rows: list[tuple]) -> set[str]:
        """PostgreSQL: the rows by COPY into a temporary table, then into hub_entries in one INSERT ...
        SELECT that skips ids already stored (as the multi-row INSERT does); the ids inserted."""
        columns = ", ".join(COLUMNS)
        # Per connection; its rows go at commit (each batch is one transaction), or with a rollback.
        cur.execute("CREATE TEMPORARY TABLE IF NOT EXISTS hub_entries_in "
                    "(LIKE hub_entries INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        with cur.copy(f"COPY hub_entries_in ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(f"INSERT INTO hub_entries ({columns}) SELECT {columns} FROM hub_entries_in "
                    "ON CONFLICT (id) DO NOTHING RETURNING id")
        return {row[0] for row in cur.fetchall()}

    def _conflicts(self, cur, copies: list[tuple]) -> int:
        """How many of these rows, whose ids were stored already, differ from the stored entry."""
        conflicts = 0
        width = len(ENTRY_FIELDS)
        for start in range(0, len(copies), ROWS_PER_STATEMENT):
            chunk = copies[start:start + ROWS_PER_STATEMENT]
            cur.execute(self._sql(f"SELECT {', '.join(ENTRY_FIELDS)} FROM hub_entries WHERE id IN "
                                  f"({', '.join('?' * len(chunk))})"), [row[0] for row in chunk])
            stored = {row[0]: tuple(row) for row in cur.fetchall()}
            conflicts += sum(1 for row in chunk if stored.get(row[0]) != tuple(row[:width]))
        return conflicts

    def entries(self, *, device: str | None = None, since_ms: int | None = None) -> Iterator[dict]:
        where: list[str] = []
        params: list[object] = []
        if device is not None:
            where.append("device_id = ?")
            params.append(device)
        if since_ms is not None:
            where.append("wall_ms >= ?")
            params.append(since_ms)
        sql = (f"SELECT {self._entry_select} FROM hub_entries" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY device_id, seq")
        with self.transaction() as cur:
            cur.execute(self._sql(sql), params)
            rows = cur.fetchall()
        for row in rows:
            yield dict(zip(COLUMNS, row))

    def gaps(self, device: str | None = None) -> list[tuple[str, int, int]]:
        """Missing sequence ranges per device: (device, first missing, last missing), from seq 1."""
        sql = ("SELECT device_id, prev + 1, seq - 1 FROM (SELECT device_id, seq, "
               "COALESCE(LAG(seq) OVER (PARTITION BY device_id ORDER BY seq), 0) AS prev FROM hub_entries"
               + (" WHERE device_id = ?" if device else "") + ") t WHERE seq > prev + 1 ORDER BY device_id, prev")
        with self.transaction() as cur:
            cur.execute(self._sql(sql), [device] if device else [])
            return [tuple(row) for row in cur.fetchall()]

    def devices(self) -> list[dict]:
        cols = ("device_id", "last_seen_ms", "max_seq", "entries", "duplicates", "clock_offset_ms", "conflicts")
        # A database from before conflicts were counted, opened read-only, shows none.
        select = ", ".join(cols) if self.has_conflicts else ", ".join(cols[:-1]) + ", 0"
        with self.transaction() as cur:
            cur.execute(f"SELECT {select} FROM hub_devices ORDER BY device_id")
            return [dict(zip(cols, row)) for row in cur.fetchall()]

    def store_status(self, device: str, state: str, status: str, received_ms: int) -> None:
        """The device's newest status, and a row of its history when it changed (its send time aside)."""
        with self.transaction() as cur:
            if self.pg:
                # Every collector receives every status (status topics are not shared): one device's are
                # stored one at a time, so the second sees the first's row (no duplicate insert, no twin
                # history row). SQLite's write transactions are one at a time already.
                cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (STATUS_LOCK, device))
            cur.execute(self._sql("SELECT state, status FROM hub_status WHERE device_id = ?"), (device,))
            known = cur.fetchone()
            if known is not None and state == "offline":
                status = _offline(known[1], status)
            if known is None:
                cur.execute(self._sql("INSERT INTO hub_status VALUES (?, ?, ?, ?, ?)"),
                            (device, state, received_ms, received_ms, status))
            else:
                since = "since_ms" if known[0] == state else "?"
                cur.execute(self._sql(f"UPDATE hub_status SET state = ?, since_ms = {since}, last_seen_ms = ?, "
                                      "status = ? WHERE device_id = ?"),
                            (state, *(() if known[0] == state else (received_ms,)), received_ms, status, device))
            data = _loads(status)  # read once for the comparison, the offset and the history's copy
            if known is None or known[0] != state or _change(_loads(known[1])) != _change(data):
                self._add_history(cur, device, state, status, data, received_ms)

    def _add_history(self, cur, device: str, state: str, status: str, data, received_ms: int) -> None:
        if not self.has_history:
            return  # a database opened read-only never writes; one from before the table got it when opened
        sent = _sent_ms(data)
        offset = received_ms - sent if sent is not None and state == "online" else None
        if offset is not None and not -(2**63) <= offset < 2**63:
            offset = None  # a send time from no real clock: no offset to show, the status is kept
        cur.execute(self._sql("INSERT INTO hub_status_history (device_id, received_ms, state, clock_offset_ms, "
                              "status) VALUES (?, ?, ?, ?, ?)"),
                    (device, received_ms, state, offset, _bounded_status(status, data)))
        cur.execute(self._sql("DELETE FROM hub_status_history WHERE device_id = ? AND n < (SELECT n FROM "
                              "hub_status_history WHERE device_id = ? ORDER BY n DESC LIMIT 1 OFFSET ?)"),
                    (device, device, self.status_history_per_device - 1))

    def status_history(self, device: str, limit: int = 200) -> list[dict]:
        """The device's status changes, newest first: received_ms, state, clock_offset_ms, status (parsed)."""
        if not self.has_history:
            return []  # a database from before the history, opened read-only
        with self.transaction() as cur:
            cur.execute(self._sql("SELECT received_ms, state, clock_offset_ms, status FROM hub_status_history "
                                  "WHERE device_id = ? ORDER BY n DESC LIMIT ?"), (device, limit))
            rows = cur.fetchall()
        return [{"received_ms": row[0], "state": row[1], "clock_offset_ms": row[2], "status": _loads(row[3])}
                for row in rows]

    def store_ack(self, ack: dict, received_ms: int) -> None:
        with self.transaction() as cur:
            cur.execute(self._sql("INSERT INTO hub_acks (device_id, target, kind, name, version, accepted, reason, "
                                  "time_ms, received_ms, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                        (ack["device"], ack["target"], ack["kind"], ack["name"], ack["version"], ack["accepted"],
                         ack["reason"], ack["time_ms"], received_ms, ack.get("digest")))

    def acks(self, device: str | None = None, limit: int = 100) -> list[dict]:
        cols = ("device_id", "target", "kind", "name", "version", "accepted", "reason", "time_ms", "received_ms")
        sql = (f"SELECT {', '.join(cols)} FROM hub_acks" + (" WHERE device_id = ?" if device else "")
               + " ORDER BY received_ms DESC LIMIT ?")
        with self.transaction() as cur:
            cur.execute(self._sql(sql), [device, limit] if device else [limit])
            return [dict(zip(cols, row), accepted=bool(row[5])) for row in cur.fetchall()]

    def fleet(self) -> list[dict]:
        """Every device known by its status or its entries, with its last refused bundle."""
        with self.transaction() as cur:
            cur.execute("SELECT device_id, state, since_ms, last_seen_ms, status FROM hub_status")
            status = {row[0]: row[1:] for row in cur.fetchall()}
            cur.execute("SELECT device_id, last_seen_ms, clock_offset_ms FROM hub_devices")
            entries = {row[0]: row[1:] for row in cur.fetchall()}
            cur.execute("SELECT a.device_id, a.target, a.kind, a.name, a.version, a.reason, a.time_ms FROM hub_acks a "
                        "JOIN (SELECT device_id, MAX(received_ms) AS m FROM hub_acks WHERE NOT accepted "
                        "GROUP BY device_id) b ON a.device_id = b.device_id AND a.received_ms = b.m "
                        "WHERE NOT a.accepted")
            rejected = {row[0]: dict(zip(("target", "kind", "name", "version", "reason", "time_ms"), row[1:]))
                        for row in cur.fetchall()}
        rows = []
        for device in sorted(set(status) | set(entries)):
            state, since, seen, text = status.get(device, ("unknown", None, None, "{}"))
            rows.append({"device": device, "state": state, "since_ms": since,
                         "last_seen_ms": max(filter(None, (seen, entries.get(device, (None,))[0])), default=None),
                         "entries_clock_offset_ms": entries.get(device, (None, None))[1],
                         "status": json.loads(text), "last_rejected": rejected.get(device)})
        return rows

    def store_rejected(self, *, topic: str, device: str | None, reason: str, payload: bytes,
                       received_ms: int) -> bool:
        """Keep a refused message aside (its first REJECTED_PAYLOAD_BYTES); True the first time this topic
        carried this content, False for a repeat (counted, not stored again). At most
        rejected_per_device rows are kept per device: a new one beyond that removes the oldest (by last_ms)."""
        digest = hashlib.sha256(payload).hexdigest()
        with self.transaction() as cur:
            cur.execute(self._sql(
                "INSERT INTO hub_rejected (topic, sha256, device_id, reason, first_ms, last_ms, times, size, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?) ON CONFLICT (topic, sha256) DO UPDATE SET "
                "last_ms = excluded.last_ms, times = hub_rejected.times + 1 RETURNING times"),
                (topic, digest, device, reason, received_ms, received_ms, len(payload),
                 payload[:REJECTED_PAYLOAD_BYTES]))
            first = cur.fetchone()[0] == 1
            if first:
                same = "device_id = ?" if device is not None else "device_id IS NULL"
                args = [device] if device is not None else []
                cur.execute(self._sql(f"SELECT COUNT(*) FROM hub_rejected WHERE {same}"), args)
                excess = cur.fetchone()[0] - self.rejected_per_device
                if excess > 0:
                    cur.execute(self._sql(
                        f"DELETE FROM hub_rejected WHERE (topic, sha256) IN (SELECT topic, sha256 FROM hub_rejected "
                        f"WHERE {same} AND NOT (topic = ? AND sha256 = ?) ORDER BY last_ms, first_ms LIMIT ?)"),
                        [*args, topic, digest, excess])
            return first

    def rejected(self, device: str | None = None, limit: int = 100) -> list[dict]:
        cols = ("device_id", "topic", "reason", "first_ms", "last_ms", "times", "size", "sha256", "payload")
        if "hub_rejected" not in self._tables():
            return []  # a database from before rejected messages were kept, opened read-only
        sql = (f"SELECT {', '.join(cols)} FROM hub_rejected" + (" WHERE device_id = ?" if device else "")
               + " ORDER BY last_ms DESC LIMIT ?")
        with self.transaction() as cur:
            cur.execute(self._sql(sql), [device, limit] if device else [limit])
            return [dict(zip(cols, row[:-1]), payload=bytes(row[-1])) for row in cur.fetchall()]

    def _tables(self) -> set[str]:
        with self.transaction() as cur:
            if self.pg:
                cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
            else:
                cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {row[0] for row in cur.fetchall()}

    def next_version(self, target: str, kind: str, name: str = "") -> int:
        with self.transaction() as cur:
            cur.execute(self._sql("SELECT MAX(version) FROM hub_bundles WHERE target = ? AND kind = ? AND name = ?"),
                        (target, kind, name))
            row = cur.fetchone()
        return (row[0] or 0) + 1

    def record_bundle(self, target: str, kind: str, name: str, version: int, issued_ms: int, sha256: str) -> None:
        with self.transaction() as cur:
            cur.execute(self._sql("INSERT INTO hub_bundles VALUES (?, ?, ?, ?, ?, ?)"),
                        (target, kind, name, version, issued_ms, sha256))

    def acks_for(self, target: str, kind: str, name: str | None, version: int, since_ms: int,
                 digest: str | None = None) -> list[dict]:
        """Acknowledgements of one pushed bundle received since `since_ms`, oldest first: by what the ack names,
        or by the message's SHA-256 (`digest`: a refusal before the header could be trusted names nothing).
        `kind` "list" matches a list's snapshot and delta alike."""
        cols = ("device_id", "kind", "accepted", "reason", "received_ms")
        kinds = "kind IN ('list-snapshot', 'list-delta')" if kind == "list" else "kind = ?"
        by_digest = " OR digest = ?" if digest and self.has_digest else ""
        sql = (f"SELECT {', '.join(cols)} FROM hub_acks WHERE ((target = ? AND {kinds} AND version = ?"
               + (" AND name = ?" if kind == "list" else "") + f"){by_digest}) AND received_ms >= ? "
               "ORDER BY received_ms")
        params = [target, *(() if kind == "list" else (kind,)), version, *((name,) if kind == "list" else ()),
                  *((digest,) if by_digest else ()), since_ms]
        with self.transaction() as cur:
            cur.execute(self._sql(sql), params)
            return [dict(zip(cols, row), accepted=bool(row[2])) for row in cur.fetchall()]

    def members(self, target: str) -> list[str]:
        """The devices a target names, as far as the hub knows them: `all` every device it has heard of, a
        group the devices whose status lists it, a device itself."""
        if target.startswith("device:"):
            return [target.split(":", 1)[1]]
        rows = self.fleet()
        if target == "all":
            return [row["device"] for row in rows]
        group = target.split(":", 1)[1]
        # Only the groups its receiver reads (remote.groups): what the broker's ACL lets it subscribe to.
        return [row["device"] for row in rows
                if group in ((read_status(row["device"], row["status"]).remote or Remote()).groups or ())]

    def pushed(self) -> list[dict]:
        """The newest bundle pushed per target, kind and list name, as the hub recorded it."""
        cols = ("target", "kind", "name", "version", "issued_ms", "sha256")
        with self.transaction() as cur:
            cur.execute(f"SELECT {', '.join('b.' + c for c in cols)} FROM hub_bundles b JOIN (SELECT target, kind, "
                        "name, MAX(version) AS v FROM hub_bundles GROUP BY target, kind, name) m ON "
                        "b.target = m.target AND b.kind = m.kind AND b.name = m.name AND b.version = m.v "
                        "ORDER BY b.target, b.kind, b.name")
            return [dict(zip(cols, row)) for row in cur.fetchall()]

    def close(self) -> None:
        self.conn.close()


class _Transaction:
    def __init__(self, db: HubDB):
        self.db = db

    def __enter__(self):
        self.cur = self.db.conn.cursor()
        if not self.db.pg:
            # A reader takes no write lock: it must never hold up a collector.
            self.cur.execute("BEGIN" if self.db.readonly else "BEGIN IMMEDIATE")
        return self.cur

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.db.conn.commit() if self.db.pg else self.cur.execute("COMMIT")
            else:
                self.db.conn.rollback() if self.db.pg else self.cur.execute("ROLLBACK")
        finally:
            self.cur.close()
        return False


def _offline(before: str, will: str) -> str:
    """An offline message (the last will, or a clean stop) says only that: the device's last status stays
    known under it (its groups, versions, problems), without the send time that dated its clock offset."""
    try:
        old, new = json.loads(before), json.loads(will)
    except ValueError:
        return will
    if not isinstance(old, dict) or not isinstance(new, dict):
        return will
    old.pop("sent_ms", None)
    return json.dumps({**old, **new})


def _loads(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return {}


def _change(data):
    """What a change of status is: the parts the device page shows. A periodic status repeats them while its
    counters and ages (scans, clock, list ages, the outbox's oldest age) move on every time."""
    if not isinstance(data, dict):
        return data
    outbox, source, remote = (_part(data, k) for k in ("outbox", "source", "remote"))
    return {"state": data.get("state"), "versions": data.get("versions"), "problems": data.get("problems"),
            "outbox": outbox.get("depth"), "source": source.get("state"),
            "remote": {k: remote.get(k) for k in ("config", "trust", "problems", "groups")}}


def _part(data: dict, key: str) -> dict:
    part = data.get(key)
    return part if isinstance(part, dict) else {}


def _sent_ms(data) -> int | None:
    sent = data.get("sent_ms") if isinstance(data, dict) else None
    return sent if isinstance(sent, int) and not isinstance(sent, bool) else None


def _bounded_status(text: str, data) -> str:
    """The status as kept in the history: whole up to HISTORY_STATUS_BYTES, else the parts a device page shows
    (a list of thousands of names in `versions` can still make those too big: then only the state)."""
    if len(text) <= HISTORY_STATUS_BYTES:
        return text
    part = json.dumps({k: v for k, v in data.items() if k in HISTORY_KEYS}) if isinstance(data, dict) else "{}"
    return part if len(part) <= HISTORY_STATUS_BYTES else json.dumps({"truncated": True})
