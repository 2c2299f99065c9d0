"""Every entry of a list file in key order, with its overlay applied: for the hub's diff, `lists show`,
a fold's check and a repair's count. Memory does not grow with the list."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from edge.lists.keysfile import DENY, DETAILS, KeysError, KeysFile
from edge.lists.listfile import COLUMNS, open_keys, open_list, read_meta
from edge.lists.records import ListError, ListUnreadable, Row

ROWS = (f"SELECT {COLUMNS} FROM (SELECT {COLUMNS} FROM entries WHERE code NOT IN (SELECT code FROM overlay) "
        f"UNION ALL SELECT {COLUMNS} FROM overlay WHERE removed = 0) ORDER BY code")


def file_rows(path: Path) -> Iterator[Row]:
    """Every entry of a list file, (code, deny, label, valid_from, valid_until), in key order, with its
    overlay applied; ListUnreadable when the file cannot be read."""
    try:
        yield from _file_rows(path)
    except ListError:
        raise
    except sqlite3.Error as exc:
        raise ListUnreadable(f"list file {path.name}: {exc}") from exc


def _file_rows(path: Path) -> Iterator[Row]:
    conn = open_list(path, readonly=True)
    try:
        conn.execute("BEGIN")
        keys_name = read_meta(conn)[2]
        if keys_name is None:
            yield from conn.execute(ROWS)
            return
        keys = open_keys(path.parent / keys_name)
        try:
            yield from overlaid(_keyed_rows(conn, keys),
                                conn.execute(f"SELECT {COLUMNS}, removed FROM overlay ORDER BY code"))
        finally:
            keys.close()
    finally:
        conn.close()


def _keyed_rows(conn: sqlite3.Connection, keys: KeysFile) -> Iterator[HashedRow]:
    """The keys file's entries, with the details of those that have some from the SQLite file."""
    details = conn.execute(f"SELECT {COLUMNS} FROM entries")  # in key order: the table is its key's B-tree
    for key, flags in keys:
        if flags & DETAILS:
            row = next(details, None)
            if row is None or row[0] != key:
                raise KeysError("the keys file and the entries with details disagree")
            yield row
        else:
            yield (key, flags & DENY, None, None, None)


# A hashed list's rows, whose codes are keyed hashes, and its overlay's: a row and whether it removes the code.
HashedRow = tuple[bytes, int, str | None, int | None, int | None]
HashedOverlayRow = tuple[bytes, int, str | None, int | None, int | None, int]


def overlaid(rows: Iterator[HashedRow], overlay: Iterator[HashedOverlayRow]) -> Iterator[HashedRow]:
    """Ordered rows with the ordered overlay rows (…, removed) merged in: an overlay row replaces the row
    with its code, or removes it."""
    over = next(overlay, None)
    for row in rows:
        while over is not None and over[0] < row[0]:
            if not over[5]:
                yield over[:5]
            over = next(overlay, None)
        if over is not None and over[0] == row[0]:
            if not over[5]:
                yield over[:5]
            over = next(overlay, None)
        else:
            yield row
    while over is not None:
        if not over[5]:
            yield over[:5]
        over = next(overlay, None)
