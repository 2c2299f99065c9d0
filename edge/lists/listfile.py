"""One list version in a SQLite file of its own (and, for a hashed list, a keys file beside it): its
schema, how it is built, and how it is opened.

`entries` is written once, in key order, when the file is built; deltas go to `overlay`, which shadows
entries (removed = 1: the code is gone), so that a delta writes pages in proportion to its own size, not
to the list's. The version sits in the same file, so a lookup reads it in the same snapshot as the entry
it found. A hashed list's codes are 16-byte BLOBs whose keys go to the keys file; its SQLite file then
holds only the entries with a label or a validity window, and the overlay.
"""
from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from edge.common.sqlite import connect, private_file
from edge.lists.hashing import HASH_BYTES
from edge.lists.keysfile import DENY, DETAILS, KeysError, KeysFile, KeysWriter
from edge.lists.records import ListError, Row, translated

OVERLAY = """
CREATE TABLE IF NOT EXISTS overlay (code NOT NULL PRIMARY KEY, deny INTEGER NOT NULL, label TEXT,
    valid_from INTEGER, valid_until INTEGER, removed INTEGER NOT NULL) WITHOUT ROWID;
"""
LIST_FILE = """
CREATE TABLE meta (version INTEGER NOT NULL, hash_key TEXT, keys TEXT);
CREATE TABLE entries (code NOT NULL PRIMARY KEY, deny INTEGER NOT NULL, label TEXT,
    valid_from INTEGER, valid_until INTEGER) WITHOUT ROWID;
""" + OVERLAY
COLUMNS = "code, deny, label, valid_from, valid_until"
HAS_DETAILS = "(label IS NOT NULL OR valid_from IS NOT NULL OR valid_until IS NOT NULL)"
# Read once per snapshot: the version, whether the overlay must be looked at as well, and the keys file.
# Files from before overlays or keys files answer the later forms, until a writer opens them.
_META = ("SELECT version, EXISTS (SELECT 1 FROM overlay), keys FROM meta",
         "SELECT version, EXISTS (SELECT 1 FROM overlay), NULL FROM meta",
         "SELECT version, 0, NULL FROM meta")
KEYS_FILE = re.compile(r"(.+\.db)\.k(\d+)")  # the list file it belongs to, and its fold count


def keys_file_name(file: str, fold: int) -> str:
    """The keys file of list file `file` after `fold` folds (a fold writes a new one)."""
    return f"{file}.k{fold}"


def key_flags(deny: object, label: str | None, valid_from: int | None, valid_until: int | None) -> int:
    """A hashed entry's flags in its keys file; DETAILS: its label or window is in the SQLite file."""
    details = label is not None or valid_from is not None or valid_until is not None
    return (DENY if deny else 0) | (DETAILS if details else 0)


class ListFile:
    """A new list version being built in its own file; nothing reads it until the catalog names it.

    Rows go in with no journal and no fsync per statement (the file is not live yet); finish() makes it
    a WAL database and syncs it to disk before anything may point at it.
    """

    @translated
    def __init__(self, path: Path, version: int, hash_key: str | None):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        private_file(path)
        keys_name = keys_file_name(path.name, 0) if hash_key else None
        self.keys = KeysWriter(path.parent / keys_name) if keys_name else None
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = OFF")
        self.conn.execute("PRAGMA synchronous = OFF")
        self.conn.executescript(LIST_FILE)
        self.conn.execute("INSERT INTO meta VALUES (?, ?, ?)", (version, hash_key, keys_name))
        self.conn.execute("BEGIN")
        self.count = 0

    @translated
    def add(self, rows: Iterable[Row]) -> None:
        """Rows in ascending code order: a hashed list's keys file takes no other; a B-tree's pages stay full."""
        try:
            self._add(rows)
        except sqlite3.IntegrityError:
            raise ListError(f"list file {self.path.name}: a code appears twice") from None

    def _add(self, rows: Iterable[Row]) -> None:
        before = self.conn.total_changes
        if self.keys is None:
            self.conn.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?)", rows)
            self.count += self.conn.total_changes - before
            return
        try:
            self.conn.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?)", self._keyed(self.keys, rows))
        except KeysError as exc:
            raise ListError(f"hashed list: {exc}") from None
        self.count = self.keys.count

    def _keyed(self, keys: KeysWriter, rows: Iterable[Row]) -> Iterator[Row]:
        """Each row's key into the keys file; the rows with details on to the SQLite file."""
        for row in rows:
            flags = key_flags(*row[1:])
            keys.add(row[0], flags)
            if flags & DETAILS:
                yield row

    def add_unsorted(self, rows: Iterable[Row]) -> None:
        """Rows in any order; a code repeated raises sqlite3.IntegrityError, or ListError in a hashed list,
        whose keys are sorted in memory (about 40 bytes an entry at the peak; the hub imports hashed lists,
        a device receives them sorted): inserting ten million hashes in random order into a B-tree took
        minutes."""
        if self.keys is None:
            return self._add(rows)
        keys, flags = bytearray(), bytearray()

        def collect() -> Iterator[Row]:
            for row in rows:
                code, deny, label, valid_from, valid_until = row
                keys.extend(code if isinstance(code, bytes) else code.encode())  # a text code: a wrong length
                flags.append(key_flags(deny, label, valid_from, valid_until))
                if flags[-1] & DETAILS:
                    yield row
        self.conn.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?)", collect())
        if len(keys) != HASH_BYTES * len(flags):
            raise ListError(f"hashed list: a key that is not {HASH_BYTES} bytes")
        hashes = np.frombuffer(keys, dtype=f"S{HASH_BYTES}")
        order = np.argsort(hashes, kind="stable")
        hashes = hashes[order]
        twice = np.flatnonzero(hashes[1:] == hashes[:-1])
        if len(twice):
            first, second = sorted(int(i) for i in order[twice[0]:twice[0] + 2])
            raise ListError(f"entries {first + 1} and {second + 1} (counted in file order) have the same code")
        try:
            self.keys.add_arrays(hashes, np.frombuffer(flags, dtype=np.uint8)[order])
        except KeysError as exc:
            raise ListError(f"hashed list: {exc}") from None
        self.count = self.keys.count

    @translated
    def finish(self) -> int:
        self.conn.execute("COMMIT")
        self.conn.execute("PRAGMA journal_mode = WAL").fetchone()
        self.conn.close()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if self.keys is not None:
            self.keys.finish()
        return self.count

    def abandon(self) -> None:
        self.conn.close()
        self.path.unlink(missing_ok=True)
        if self.keys is not None:
            self.keys.abandon()


def open_list(path: Path, readonly: bool) -> sqlite3.Connection:
    conn = connect(path, readonly=readonly)
    conn.execute("PRAGMA cache_size = -4096")  # 4 MiB per list: the B-tree's interior pages of 10M entries fit
    if readonly:  # lookups and scans; a writer applying a delta touches only the pages it changes
        threading.Thread(target=_prefetch, args=(path,), name="list-prefetch", daemon=True).start()
    return conn


def _prefetch(path: Path) -> None:
    """Ask the kernel to read the file ahead: a lookup in a list just swapped in would otherwise wait for
    the card at each of its B-tree pages. Run on a thread of its own, as the advice itself can take a
    while to queue the reads of a large file (0.3 s for 287 MB here)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    except (OSError, AttributeError):
        pass  # advice only
    finally:
        os.close(fd)


def read_meta(conn: sqlite3.Connection) -> tuple[int, bool, str | None]:
    """(version, overlaid, keys file name) of a list file; in a transaction, its first read begins the
    snapshot."""
    for query in _META[:-1]:
        try:
            row = conn.execute(query).fetchone()
            break
        except sqlite3.OperationalError:  # an older file that no writer has brought up to date yet
            pass
    else:
        row = conn.execute(_META[-1]).fetchone()
    version, overlaid, keys = row
    return int(version), bool(overlaid), keys


def open_keys(path: Path) -> KeysFile:
    try:
        return KeysFile(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:  # ValueError: a header that struct cannot read
        raise KeysError(f"keys file {path.name} unreadable: {exc}") from None
