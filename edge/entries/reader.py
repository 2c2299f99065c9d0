"""Read-only access to the entries database for the CLI (export, status) and the sync agent, safe
beside a running daemon."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge.common.clock import iso_ms, wall_ms
from edge.common.sqlite import connect
from edge.entries import schema
from edge.entries.errors import StoreError, describe


def _dicts(cursor: sqlite3.Cursor) -> Iterator[dict[str, Any]]:
    names = [column[0] for column in cursor.description]
    for row in cursor:
        yield dict(zip(names, row, strict=True))


class EntryReader:
    """Every sqlite3 error comes out as StoreError, its message naming the file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"{self.path}: no entries database yet (the daemon creates it on its first run)")
        try:
            self.conn = connect(self.path, readonly=True)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {describe(exc)}") from None
        try:
            self.conn.execute("SELECT 1 FROM entries LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            self.conn.close()
            raise StoreError(f"{self.path}: {describe(exc)}") from None

    def _failed(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"{self.path}: {describe(exc)}")

    def rows(self, since_ms: int | None = None, device: str | None = None) -> Iterator[dict[str, Any]]:
        where: list[str] = []
        params: list[int | str] = []
        if since_ms is not None:
            where.append("wall_ms >= ?")
            params.append(since_ms)
        if device is not None:
            where.append("device_id = ?")
            params.append(device)
        sql = "SELECT * FROM entries" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq"
        try:
            yield from _dicts(self.conn.execute(sql, params))
        except sqlite3.Error as exc:
            raise self._failed(exc) from None

    def newest_wall_ms(self) -> int | None:
        """The newest entry's wall time, which the daemon's clock judge starts from (EntryStore.newest_wall_ms)."""
        try:
            return schema.newest_wall_ms(self.conn)
        except sqlite3.Error as exc:
            raise self._failed(exc) from None

    def last_allowed(self, code: str) -> tuple[int, int, str] | None:
        try:
            return schema.last_allowed(self.conn, code)
        except sqlite3.Error as exc:
            raise self._failed(exc) from None

    def outbox(self) -> dict[str, Any]:
        """Entries not yet acknowledged by the broker: how many, and since when."""
        try:
            depth, oldest = self.conn.execute(
                "SELECT count(*), min(wall_ms) FROM entries WHERE synced_ms IS NULL").fetchone()
        except sqlite3.Error as exc:
            raise self._failed(exc) from None
        return {"depth": depth, "oldest_unsynced": iso_ms(oldest) if oldest else None,
                "oldest_unsynced_age_s": round((wall_ms() - oldest) / 1000, 1) if oldest else None}

    def summary(self) -> dict[str, Any]:
        try:
            counts = dict(self.conn.execute("SELECT decision, count(*) FROM entries GROUP BY decision").fetchall())
            last = next(_dicts(self.conn.execute("SELECT * FROM entries ORDER BY seq DESC LIMIT 1")), None)
            check = self.conn.execute("PRAGMA quick_check").fetchone()[0]
            unsynced = self.conn.execute("SELECT count(*) FROM entries WHERE synced_ms IS NULL").fetchone()[0]
        except sqlite3.Error as exc:
            raise self._failed(exc) from None
        return {"entries": sum(counts.values()), "by_decision": counts, "last": last,
                "integrity": check, "unsynced": unsynced}

    def close(self) -> None:
        self.conn.close()
