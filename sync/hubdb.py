"""The hub's entries database: SQLite by default, PostgreSQL by URL. Idempotent by entry id.

A duplicate delivery (a resend after a lost PUBACK, a redelivery after a collector died) inserts
nothing and is counted; a device's sequence numbers show its gaps.
"""
from __future__ import annotations

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
