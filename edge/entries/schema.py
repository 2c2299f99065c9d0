"""The device's entries table: created and migrated from the record, and the two queries both the
writer and the reader ask."""
from __future__ import annotations

import sqlite3

from edge.entries.errors import StoreError
from edge.entries.record import CREATE_TABLE, FIELDS, addable

INDEXES = """
CREATE INDEX IF NOT EXISTS entries_code ON entries (code, seq);
CREATE INDEX IF NOT EXISTS entries_wall ON entries (wall_ms);
CREATE INDEX IF NOT EXISTS entries_outbox ON entries (seq) WHERE synced_ms IS NULL;
CREATE INDEX IF NOT EXISTS entries_ref ON entries (ref_id) WHERE ref_id IS NOT NULL;
"""
SCHEMA = CREATE_TABLE + ";\n" + INDEXES


def create(conn: sqlite3.Connection) -> None:
    """The table brought up to the record's columns, then its indexes (an older table has no ref_id
    until migrate() added it); raises sqlite3.Error, or StoreError for a table this version cannot use."""
    conn.executescript(CREATE_TABLE)
    migrate(conn)
    conn.executescript(INDEXES)


def migrate(conn: sqlite3.Connection) -> None:
    """Columns added since a database was created (clock, ref_id, officer so far), from the record."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
    for field in FIELDS:
        if field.name in columns:
            continue
        if not addable(field):
            raise StoreError(f"the entries table lacks its {field.name} column, which cannot be added to an "
                             "existing table: not a database this version can use")
        conn.execute(f"ALTER TABLE entries ADD COLUMN {field.column_sql()}")


def newest_wall_ms(conn: sqlite3.Connection) -> int | None:
    """The newest entry's wall time; None when there is none or the database cannot say."""
    try:
        value = conn.execute("SELECT max(wall_ms) FROM entries").fetchone()[0]
    except sqlite3.Error:
        return None
    return value if isinstance(value, int) else None


def last_allowed(conn: sqlite3.Connection, code: str) -> tuple[int, int, str] | None:
    """(wall_ms, mono_ns, boot_id) of the newest allowed entry for code; raises sqlite3.Error."""
    row = conn.execute("SELECT wall_ms, mono_ns, boot_id FROM entries WHERE code = ? AND decision = 'allow' "
                       "ORDER BY seq DESC LIMIT 1", (code,)).fetchone()
    return None if row is None else (row[0], row[1], row[2])
