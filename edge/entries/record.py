"""The entry record: the one definition of what an entry is, from which the device's table, the wire
record and the hub's table follow or are checked.

FIELDS lists every column of the device's `entries` table in its on-disk order (columns added by a
migration come last, as ALTER TABLE put them). Each says its Python type, whether it may be NULL, whether
it is an attribute of `Entry` (seq and synced_ms are the store's: a number it hands out, and when the hub
acknowledged the entry) and whether it travels on the wire (device_id does not: the MQTT topic carries it;
synced_ms does not: it is the device's bookkeeping).

To add a field: add it to FIELDS (nullable, or with a default, so older databases can take it by
ALTER TABLE) and to Entry below in the same place; the import-time check says so if one is forgotten.
Then the wire (sync/wire/codec.py WireEntry, a new batch format version) and the hub's table.
"""
from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterable
from dataclasses import MISSING, dataclass, fields
from operator import attrgetter
from typing import Any


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: type[int] | type[str]
    nullable: bool = False
    in_entry: bool = True       # an attribute of Entry (False: seq and synced_ms, the store's own)
    on_wire: bool = True        # sent to the hub in an entries batch
    default: int | str | None = None  # for Entry and as the column's DEFAULT (given: a migration can add it)
    constraint: str = ""        # SQL after the type: PRIMARY KEY, UNIQUE
    note: str = ""              # what the field is, for a person

    @property
    def sql_type(self) -> str:
        """The device's (SQLite) column type."""
        return "INTEGER" if self.type is int else "TEXT"

    def column_sql(self, *, integer: str = "INTEGER") -> str:
        """The column's definition, e.g. `clock TEXT NOT NULL DEFAULT 'ok'`; integer names the integer
        type (the hub's PostgreSQL wants BIGINT for 64-bit values)."""
        kind = integer if self.type is int else "TEXT"
        parts = [self.name, kind, self.constraint]
        if not self.nullable and "PRIMARY KEY" not in self.constraint:
            parts.append("NOT NULL")
        if self.default is not None:
            parts.append(f"DEFAULT {_sql_literal(self.default)}")
        return " ".join(p for p in parts if p)


def _sql_literal(value: int | str) -> str:
    return str(value) if isinstance(value, int) else "'" + value.replace("'", "''") + "'"


FIELDS: tuple[Field, ...] = (
    Field("seq", int, in_entry=False, constraint="PRIMARY KEY AUTOINCREMENT",
          note="the device's sequence number: never reused, even after a purge"),
    Field("id", str, constraint="UNIQUE", note="a UUID, the entry's identity everywhere"),
    Field("device_id", str, on_wire=False, note="the appliance that made it (on the wire: the topic)"),
    Field("wall_ms", int, note="wall-clock time, milliseconds since 1970 UTC"),
    Field("mono_ns", int, note="monotonic clock, nanoseconds since boot: orders entries of one boot"),
    Field("boot_id", str, note="the boot the monotonic time belongs to"),
    Field("source", str, note="where the code came from (a scanner, a camera, review, manual)"),
    Field("code", str, note="the code as read"),
    Field("decision", str, note="allow, deny or review"),
    Field("reason", str, note="why, in one word (listed, unknown, repeat, ...)"),
    Field("list_name", str, nullable=True, note="the list that decided, if any"),
    Field("list_version", int, nullable=True, note="that list's version"),
    Field("config_version", str, nullable=True, note="the configuration in force"),
    Field("synced_ms", int, nullable=True, in_entry=False, on_wire=False,
          note="when the broker acknowledged the entry; NULL: still in the outbox"),
    Field("clock", str, default="ok", note="the wall clock's trust state when the entry was made"),
    Field("ref_id", str, nullable=True, note="an officer's review answer: the id of the entry it answers"),
    Field("officer", str, nullable=True, note="the officer who answered a review or typed a code by hand"),
)
BY_NAME = {f.name: f for f in FIELDS}
ENTRY_FIELDS = tuple(f for f in FIELDS if f.in_entry)  # Entry's attributes, in order
# The wire record: the entry with the topic's device_id replaced by the device's seq, in that place.
WIRE_FIELDS = tuple(BY_NAME["seq"] if f.name == "device_id" else f for f in ENTRY_FIELDS)
WIRE_NAMES = tuple(f.name for f in WIRE_FIELDS)
# What the hub keeps of each entry (it adds its own columns: when sent, received, the clock offset).
HUB_FIELDS = tuple(f for f in FIELDS if f.on_wire or f.name == "device_id")


@dataclass(frozen=True, slots=True)
class Entry:
    """One decision as the store commits it (the attributes are ENTRY_FIELDS)."""

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


def _check_entry(cls: type = Entry) -> None:
    """Entry is written out (so type checkers and readers see it); it must say what ENTRY_FIELDS say."""
    said = [(f.name, f.default if f.default is not MISSING else None) for f in fields(cls)]
    wanted = [(f.name, f.default) for f in ENTRY_FIELDS]
    if said != wanted:
        raise TypeError(f"Entry's fields {said} differ from the record's {wanted}")
    for f, field in zip(fields(cls), ENTRY_FIELDS, strict=True):
        wanted_type = field.type.__name__ + (" | None" if field.nullable else "")
        if f.type != wanted_type:
            raise TypeError(f"{cls.__name__}.{f.name} is {f.type}, the record says {wanted_type}")


_check_entry()
if {f.name for f in WIRE_FIELDS} != {f.name for f in FIELDS if f.on_wire}:
    raise TypeError("WIRE_FIELDS must be the fields marked on_wire")

# The device's SQL, from the record.
COLUMNS = tuple(f.name for f in FIELDS)
ENTRY_COLUMNS = ", ".join(f.name for f in ENTRY_FIELDS)
CREATE_TABLE = "CREATE TABLE IF NOT EXISTS entries (\n    " + ",\n    ".join(
    f.column_sql() for f in FIELDS) + ")"
INSERT = f"INSERT INTO entries ({ENTRY_COLUMNS}) VALUES ({', '.join('?' * len(ENTRY_FIELDS))})"
INSERT_IGNORE = INSERT.replace("INSERT", "INSERT OR IGNORE", 1)  # a saved file replayed twice adds nothing
# The insert's parameters straight from the attributes: dataclasses.astuple deep-copies every value,
# a fifth of a text scan's time for nothing (the fields are all immutable).
row: Callable[[Entry], tuple[Any, ...]] = attrgetter(*(f.name for f in ENTRY_FIELDS))
OUTBOX_SELECT = ", ".join(WIRE_NAMES)  # the outbox's columns in wire order: WireEntry(*row)


def addable(field: Field) -> bool:
    """Whether ALTER TABLE ADD COLUMN can add the field to an older table (SQLite cannot add a key, nor a
    NOT NULL column without a default)."""
    return not field.constraint and (field.nullable or field.default is not None)


# ---- checking another definition against the record ---------------------------------------------
def _kind(sql_type: str) -> str:
    upper = sql_type.upper()
    if "INT" in upper:
        return "integer"
    if any(word in upper for word in ("TEXT", "CHAR", "CLOB")):
        return "text"
    return upper.lower()


def hub_mismatches(columns: Iterable[tuple[str, str, bool]]) -> list[str]:
    """How a hub table's columns differ from HUB_FIELDS; [] when they agree.

    columns: (name, declared type, nullable) per column, as sqlite_columns() or PostgreSQL's
    information_schema.columns (column_name, data_type, is_nullable == 'YES') give them; INTEGER, BIGINT
    and int8 are alike, TEXT and varchar alike. Columns
    the record does not know (the hub's own) are not looked at."""
    have = {name: (_kind(kind), nullable) for name, kind, nullable in columns}
    problems = []
    for f in HUB_FIELDS:
        wanted = ("integer" if f.type is int else "text", f.nullable)
        if f.name not in have:
            problems.append(f"{f.name}: missing")
        elif have[f.name] != wanted:
            got_kind, got_null = have[f.name]
            problems.append(f"{f.name}: {got_kind}{' NULL' if got_null else ' NOT NULL'}, the record says "
                            f"{wanted[0]}{' NULL' if wanted[1] else ' NOT NULL'}")
    return problems


def sqlite_columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, str, bool]]:
    """(name, declared type, nullable) of a SQLite table's columns, for hub_mismatches (a primary key
    counts as NOT NULL, as in PostgreSQL)."""
    rows = conn.execute("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?)", (table,)).fetchall()
    return [(name, kind, not notnull and not pk) for name, kind, notnull, pk in rows]


def wire_mismatches(names_and_types: Iterable[tuple[str, object]]) -> list[str]:
    """How a wire record's fields (name, annotation) differ from WIRE_FIELDS, e.g. from
    `[(f.name, f.type) for f in dataclasses.fields(WireEntry)]`; [] when they agree."""
    got = [(name, str(kind)) for name, kind in names_and_types]
    wanted = [(f.name, f.type.__name__ + (" | None" if f.nullable else "")) for f in WIRE_FIELDS]
    if got == wanted:
        return []
    return [f"fields {got} differ from the record's wire fields {wanted}"]
