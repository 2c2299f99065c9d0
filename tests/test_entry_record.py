"""edge.entries.record: the one definition of an entry, and what follows from it."""
from __future__ import annotations

import dataclasses
import sqlite3

import pytest

from edge.entries import record
from edge.entries.record import Entry
from edge.entries.store import EntryStore

# The table as the first releases wrote it, verbatim: a database made then must open and look the same.
RELEASED_TABLE = """
CREATE TABLE entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, device_id TEXT NOT NULL,
    wall_ms INTEGER NOT NULL, mono_ns INTEGER NOT NULL, boot_id TEXT NOT NULL, source TEXT NOT NULL,
    code TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT NOT NULL, list_name TEXT, list_version INTEGER,
    config_version TEXT, synced_ms INTEGER, clock TEXT NOT NULL DEFAULT 'ok', ref_id TEXT, officer TEXT)"""


def table_info(conn):
    return conn.execute("PRAGMA table_info(entries)").fetchall()


def test_the_generated_table_is_the_released_one():
    made, released = sqlite3.connect(":memory:"), sqlite3.connect(":memory:")
    made.execute(record.CREATE_TABLE)
    released.execute(RELEASED_TABLE)
    assert table_info(made) == table_info(released)
    assert [row[1] for row in table_info(made)] == list(record.COLUMNS)


def test_entry_attributes_are_the_record_entry_fields():
    assert [f.name for f in dataclasses.fields(Entry)] == [f.name for f in record.ENTRY_FIELDS]
    assert "seq" not in record.ENTRY_COLUMNS and "synced_ms" not in record.ENTRY_COLUMNS


def test_wire_fields_are_the_entry_with_seq_for_the_topic_device():
    assert record.WIRE_NAMES == ("id", "seq", "wall_ms", "mono_ns", "boot_id", "source", "code", "decision",
                                 "reason", "list_name", "list_version", "config_version", "clock", "ref_id",
                                 "officer")


def test_wire_entry_agrees_with_the_record():
    from sync.wire.codec import WireEntry
    assert record.wire_mismatches((f.name, f.type) for f in dataclasses.fields(WireEntry)) == []
    assert record.wire_mismatches([("id", "str")])  # a short one does not


def test_hub_table_agrees_with_the_record():
    from sync.hub.hubdb import SCHEMA
    conn = sqlite3.connect(":memory:")
    [table] = [s for s in SCHEMA if "CREATE TABLE IF NOT EXISTS hub_entries (" in s]
    conn.execute(table)
    assert record.hub_mismatches(record.sqlite_columns(conn, "hub_entries")) == []
    conn.execute("CREATE TABLE wrong (id TEXT PRIMARY KEY, seq TEXT NOT NULL, wall_ms BIGINT)")
    problems = record.hub_mismatches(record.sqlite_columns(conn, "wrong"))
    assert "seq: text NOT NULL, the record says integer NOT NULL" in problems
    assert "wall_ms: integer NULL, the record says integer NOT NULL" in problems
    assert "device_id: missing" in problems and not any(p.startswith("id:") for p in problems)


def test_column_sql_for_the_hub_integer_type():
    assert record.BY_NAME["wall_ms"].column_sql(integer="BIGINT") == "wall_ms BIGINT NOT NULL"
    assert record.BY_NAME["clock"].column_sql() == "clock TEXT NOT NULL DEFAULT 'ok'"
    assert record.BY_NAME["list_version"].column_sql() == "list_version INTEGER"


def test_a_database_from_before_the_added_columns_is_migrated(tmp_path):
    path = tmp_path / "entries.db"
    conn = sqlite3.connect(path)
    added = [f.name for f in record.FIELDS if record.addable(f)]
    assert added == ["list_name", "list_version", "config_version", "synced_ms", "clock", "ref_id", "officer"]
    first = [f for f in record.FIELDS if f.name not in ("clock", "ref_id", "officer")]
    conn.execute("CREATE TABLE entries (" + ", ".join(f.column_sql() for f in first) + ")")
    conn.execute("INSERT INTO entries (id, device_id, wall_ms, mono_ns, boot_id, source, code, decision, reason)"
                 " VALUES ('a', 'd', 1, 2, 'b', 's', 'c', 'allow', 'listed')")
    conn.commit()
    conn.close()
    store = EntryStore(path, reserve_bytes=0)
    assert store.healthy
    assert [row[1] for row in table_info(store.conn)] == list(record.COLUMNS)
    assert store.conn.execute("SELECT clock, ref_id FROM entries").fetchone() == ("ok", None)
    store.close()


def test_a_table_missing_a_column_that_cannot_be_added_is_a_clear_failure(tmp_path):
    path = tmp_path / "entries.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE entries (seq INTEGER PRIMARY KEY, code TEXT)")
    conn.close()
    store = EntryStore(path, reserve_bytes=0)
    assert not store.healthy and "lacks its id column" in store.error


def test_an_entry_field_forgotten_in_the_record_fails_at_import():
    @dataclasses.dataclass(frozen=True)
    class Longer(Entry):
        extra: str = ""

    with pytest.raises(TypeError, match="differ from the record"):
        record._check_entry(Longer)
