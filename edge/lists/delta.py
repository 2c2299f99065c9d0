"""Changing a list file in place: a delta goes into its overlay in one WAL transaction, which a reader
sees whole or not at all, and which writes pages in proportion to the delta, not to the list (a
100,000-entry delta on a 10-million-entry B-tree rewrote most of its 70,000 leaf pages). The overlay is
folded into the entries once it holds FOLD_ROWS rows, or FOLD_SHARE of the list if more (the defaults of
a ListStore's fold_rows and fold_share): a rewrite of the whole, paid once in many deltas instead of by each."""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import numpy as np

from edge.common.sqlite import transaction
from edge.lists.hashing import HASH_BYTES
from edge.lists.keysfile import KeysWriter, merge
from edge.lists.listfile import (
    COLUMNS,
    HAS_DETAILS,
    KEYS_FILE,
    key_flags,
    keys_file_name,
    open_keys,
    open_list,
    read_meta,
)
from edge.lists.records import Changes, ListError, ListInfo

log = logging.getLogger("checkpoint.lists")

ADDED, CHANGED, REMOVED = 0, 1, 2
FOLD_ROWS = 500_000
FOLD_SHARE = 0.125
# Whether a delta's code is on the list now: the overlay says so if it holds the code, else `listed`
# (whether the entries or the keys file hold it).
_PRESENT = "coalesce((SELECT NOT removed FROM overlay o WHERE o.code = d.code), d.listed)"


def apply_delta(folder: Path, info: ListInfo, version: int, changes: Changes) -> None:
    """Write `changes` (added, changed, removed) into the overlay of info's file and make it `version`.

    `changes` says which codes the sender believed present: a code added that is here, or changed or
    removed that is not, shows the delta was made against other contents than this device holds, and
    nothing is changed."""
    mismatch = f"list {info.name}: the delta was made against other contents than version {info.version} here"
    conn = open_list(folder / info.file_name(), readonly=False)
    try:
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("CREATE TEMP TABLE delta (code NOT NULL PRIMARY KEY, kind INTEGER NOT NULL, deny INTEGER "
                     "NOT NULL, label TEXT, valid_from INTEGER, valid_until INTEGER, listed INTEGER NOT NULL "
                     "DEFAULT 0) WITHOUT ROWID")
        with transaction(conn):
            try:
                conn.executemany(f"INSERT INTO temp.delta VALUES (?, {ADDED}, ?, ?, ?, ?, 0)", changes.added)
                conn.executemany(f"INSERT INTO temp.delta VALUES (?, {CHANGED}, ?, ?, ?, ?, 0)", changes.changed)
                conn.executemany(f"INSERT INTO temp.delta VALUES (?, {REMOVED}, 0, NULL, NULL, NULL, 0)",
                                 ((code,) for code in changes.removed))
            except sqlite3.IntegrityError:
                raise ListError(f"list {info.name}: the delta names a code twice") from None
            _mark_listed(folder, conn)
            missing, here = conn.execute(
                f"SELECT count(*) FILTER (WHERE kind != {ADDED} AND NOT {_PRESENT}), "
                f"count(*) FILTER (WHERE kind = {ADDED} AND {_PRESENT}) FROM temp.delta d").fetchone()
            if missing:
                raise ListError(f"{mismatch} (codes to change or remove are missing)")
            if here:
                raise ListError(f"{mismatch} (a code to add is already here)")
            conn.execute(f"INSERT OR REPLACE INTO overlay SELECT code, deny, label, valid_from, valid_until, "
                         f"kind = {REMOVED} FROM temp.delta")
            # A code both added and removed since the entries were written leaves no trace.
            conn.execute(f"DELETE FROM overlay WHERE removed AND code IN (SELECT code FROM temp.delta WHERE "
                         f"kind = {REMOVED} AND NOT listed)")
            conn.execute("UPDATE meta SET version = ?", (version,))
    finally:
        conn.close()


def _mark_listed(folder: Path, conn: sqlite3.Connection) -> None:
    """Mark the delta's codes that the list's entries or keys file hold (the overlay aside)."""
    keys_name = read_meta(conn)[2]
    if keys_name is None:
        conn.execute("UPDATE temp.delta SET listed = EXISTS (SELECT 1 FROM entries e WHERE e.code = delta.code)")
        return
    keys = open_keys(folder / keys_name)
    try:
        codes = [code for code, in conn.execute("SELECT code FROM temp.delta")]
        conn.executemany("UPDATE temp.delta SET listed = 1 WHERE code = ?",
                         ((code,) for code in codes if isinstance(code, bytes) and keys.find(code) is not None))
    finally:
        keys.close()


def fold_due(count: int, fold_rows: int = FOLD_ROWS, fold_share: float = FOLD_SHARE) -> int:
    """The overlay rows at which a list of `count` entries is folded: fold_rows, or fold_share of the
    list if more."""
    return max(fold_rows, int(count * fold_share))


def fold(folder: Path, info: ListInfo, at_rows: int) -> int:
    """Fold the overlay of info's file into its entries once it holds at_rows rows (see fold_due);
    returns the rows folded, 0 if it was not due. Readers keep their snapshot
    meanwhile; what they find does not change. A hashed list gets a new keys file, written beside the old
    one and named in the same commit that empties the overlay."""
    file = info.file_name()
    conn = open_list(folder / file, readonly=False)
    try:
        rows: int = conn.execute("SELECT count(*) FROM overlay").fetchone()[0]
        if not rows or rows < at_rows:
            return 0
        with transaction(conn):
            old_keys = read_meta(conn)[2]
            if old_keys is not None:
                conn.execute("UPDATE meta SET keys = ?", (_fold_keys(folder, conn, file, old_keys),))
            conn.execute("DELETE FROM entries WHERE code IN (SELECT code FROM overlay)")
            details = f" AND {HAS_DETAILS}" if old_keys is not None else ""
            conn.execute(f"INSERT INTO entries SELECT {COLUMNS} FROM overlay WHERE removed = 0{details}")
            conn.execute("DELETE FROM overlay")
        if old_keys is not None:
            (folder / old_keys).unlink(missing_ok=True)  # a reader that has it open reads on
        # A B-tree's fold rewrites most of its pages: checkpointed here rather than by the next delta's
        # commit. PASSIVE copies what no reader's snapshot still needs and waits for none (TRUNCATE waited
        # up to the busy timeout on a reader whose snapshot predates the fold); pages left go with the
        # next commit's checkpoint. A hashed list's fold writes few pages at all.
        busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if done < frames:
            log.info("list %s: %d of %d folded pages checkpointed; the rest go with the next delta", info.name,
                     done, frames)
    finally:
        conn.close()
    return rows


def _fold_keys(folder: Path, conn: sqlite3.Connection, file: str, old_name: str) -> str:
    """Write the keys file that follows old_name with the overlay merged in; returns its name."""
    over = conn.execute(f"SELECT {COLUMNS}, removed FROM overlay ORDER BY code").fetchall()
    if any(not isinstance(row[0], bytes) or len(row[0]) != HASH_BYTES for row in over):
        raise ListError(f"list file {file}: the overlay of a hashed list holds a code that is not a hash")
    keys = np.frombuffer(b"".join(row[0] for row in over), dtype=f"S{HASH_BYTES}")
    flags = np.array([key_flags(*row[1:5]) for row in over], dtype=np.uint8)
    removed = np.array([bool(row[5]) for row in over], dtype=bool)
    match = KEYS_FILE.fullmatch(old_name)
    new_name = keys_file_name(file, int(match.group(2)) + 1 if match else 1)
    old = open_keys(folder / old_name)
    writer = KeysWriter(folder / new_name)
    try:
        merge(old, writer, keys, flags, removed)
        writer.finish()
    except BaseException:
        writer.abandon()
        raise
    finally:
        old.close()
    return new_name
