"""The hub's entries database: SQLite by default, PostgreSQL by URL. Idempotent by entry id.

A duplicate delivery (a resend after a lost PUBACK, a redelivery after a collector died) inserts
nothing and is counted; a device's sequence numbers show its gaps.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterator

from .codec import Batch

COLUMNS = ("id", "device_id", "seq", "wall_ms", "mono_ns", "boot_id", "source", "code", "decision", "reason",
           "list_name", "list_version", "config_version", "clock", "sent_ms", "received_ms", "clock_offset_ms")

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS hub_entries (
        id TEXT PRIMARY KEY, device_id TEXT NOT NULL, seq BIGINT NOT NULL, wall_ms BIGINT NOT NULL,
        mono_ns BIGINT NOT NULL, boot_id TEXT NOT NULL, source TEXT NOT NULL, code TEXT NOT NULL,
        decision TEXT NOT NULL, reason TEXT NOT NULL, list_name TEXT, list_version BIGINT, config_version TEXT,
        clock TEXT NOT NULL, sent_ms BIGINT NOT NULL, received_ms BIGINT NOT NULL, clock_offset_ms BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS hub_entries_device_seq ON hub_entries (device_id, seq)",
    "CREATE INDEX IF NOT EXISTS hub_entries_wall ON hub_entries (wall_ms)",
    """CREATE TABLE IF NOT EXISTS hub_devices (
        device_id TEXT PRIMARY KEY, last_seen_ms BIGINT NOT NULL, max_seq BIGINT NOT NULL,
        entries BIGINT NOT NULL, duplicates BIGINT NOT NULL, clock_offset_ms BIGINT NOT NULL)""",
    # The newest status each device published (retained), and when it went on- or offline.
    """CREATE TABLE IF NOT EXISTS hub_status (
        device_id TEXT PRIMARY KEY, state TEXT NOT NULL, since_ms BIGINT NOT NULL, last_seen_ms BIGINT NOT NULL,
        status TEXT NOT NULL)""",
    # Every bundle's acknowledgement: accepted, or refused with the reason.
    """CREATE TABLE IF NOT EXISTS hub_acks (
        device_id TEXT NOT NULL, target TEXT, kind TEXT NOT NULL, name TEXT, version BIGINT,
        accepted BOOLEAN NOT NULL, reason TEXT, time_ms BIGINT NOT NULL, received_ms BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS hub_acks_device ON hub_acks (device_id, received_ms)",
    # What administrators pushed: the next version per target, kind and list name comes from here.
    """CREATE TABLE IF NOT EXISTS hub_bundles (
        target TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, version BIGINT NOT NULL,
        issued_ms BIGINT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (target, kind, name, version))""",
]
ROWS_PER_STATEMENT = 500


class HubDB:
    """One connection; every method is one transaction."""

    def __init__(self, url: str):
        self.url = url
        if url.startswith(("postgresql://", "postgres://")):
            import psycopg

            self.pg = True
            self.conn = psycopg.connect(url, autocommit=False)
            self._errors = (psycopg.Error,)
        else:
            self.pg = False
            path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute("PRAGMA busy_timeout = 10000")
            self._errors = (sqlite3.Error,)
        with self.transaction() as cur:
            for statement in SCHEMA:
                cur.execute(statement)

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        return self._errors

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.pg else sql

    def transaction(self):
        return _Transaction(self)

    def store(self, batch: Batch, received_ms: int) -> tuple[int, int, int]:
        """Insert a batch's new entries and update its device: (inserted, duplicates, the device's highest
        sequence number before this batch, 0 for a new device)."""
        offset = received_ms - batch.sent_ms
        rows = [(e.id, batch.device_id, e.seq, e.wall_ms, e.mono_ns, e.boot_id, e.source, e.code, e.decision,
                 e.reason, e.list_name, e.list_version, e.config_version, e.clock, batch.sent_ms, received_ms,
                 offset)
                for e in batch.entries]
        inserted = 0
        greatest = "GREATEST" if self.pg else "MAX"
        with self.transaction() as cur:
            cur.execute(self._sql("SELECT max_seq FROM hub_devices WHERE device_id = ?"), (batch.device_id,))
            known = cur.fetchone()
            for start in range(0, len(rows), ROWS_PER_STATEMENT):
                chunk = rows[start:start + ROWS_PER_STATEMENT]
                values = ", ".join(["(" + ", ".join("?" * len(COLUMNS)) + ")"] * len(chunk))
                cur.execute(self._sql(f"INSERT INTO hub_entries ({', '.join(COLUMNS)}) VALUES {values} "
                                      "ON CONFLICT (id) DO NOTHING RETURNING id"),
                            [value for row in chunk for value in row])
                inserted += len(cur.fetchall())
            duplicates = len(rows) - inserted
            max_seq = max((e.seq for e in batch.entries), default=0)
            cur.execute(self._sql(
                "INSERT INTO hub_devices (device_id, last_seen_ms, max_seq, entries, duplicates, clock_offset_ms) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
                f"last_seen_ms = excluded.last_seen_ms, max_seq = {greatest}(hub_devices.max_seq, excluded.max_seq), "
                "entries = hub_devices.entries + excluded.entries, "
                "duplicates = hub_devices.duplicates + excluded.duplicates, "
                "clock_offset_ms = excluded.clock_offset_ms"),
                (batch.device_id, received_ms, max_seq, inserted, duplicates, offset))
        return inserted, duplicates, known[0] if known else 0

    def entries(self, *, device: str | None = None, since_ms: int | None = None) -> Iterator[dict]:
        where, params = [], []
        if device is not None:
            where.append("device_id = ?")
            params.append(device)
        if since_ms is not None:
            where.append("wall_ms >= ?")
            params.append(since_ms)
        sql = (f"SELECT {', '.join(COLUMNS)} FROM hub_entries" + (" WHERE " + " AND ".join(where) if where else "")
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
        cols = ("device_id", "last_seen_ms", "max_seq", "entries", "duplicates", "clock_offset_ms")
        with self.transaction() as cur:
            cur.execute(f"SELECT {', '.join(cols)} FROM hub_devices ORDER BY device_id")
            return [dict(zip(cols, row)) for row in cur.fetchall()]

    def store_status(self, device: str, state: str, status: str, received_ms: int) -> None:
        with self.transaction() as cur:
            cur.execute(self._sql("SELECT state FROM hub_status WHERE device_id = ?"), (device,))
            known = cur.fetchone()
            if known is None:
                cur.execute(self._sql("INSERT INTO hub_status VALUES (?, ?, ?, ?, ?)"),
                            (device, state, received_ms, received_ms, status))
            else:
                since = "since_ms" if known[0] == state else "?"
                cur.execute(self._sql(f"UPDATE hub_status SET state = ?, since_ms = {since}, last_seen_ms = ?, "
                                      "status = ? WHERE device_id = ?"),
                            (state, *(() if known[0] == state else (received_ms,)), received_ms, status, device))

    def store_ack(self, ack: dict, received_ms: int) -> None:
        with self.transaction() as cur:
            cur.execute(self._sql("INSERT INTO hub_acks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                        (ack["device"], ack["target"], ack["kind"], ack["name"], ack["version"], ack["accepted"],
                         ack["reason"], ack["time_ms"], received_ms))

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

    def close(self) -> None:
        self.conn.close()


class _Transaction:
    def __init__(self, db: HubDB):
        self.db = db

    def __enter__(self):
        self.cur = self.db.conn.cursor()
        if not self.db.pg:
            self.cur.execute("BEGIN IMMEDIATE")
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
