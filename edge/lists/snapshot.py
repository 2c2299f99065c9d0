"""The read side: the list files a store's lookups read, each in one read snapshot held for up to
HOLD_S, so that a lookup costs no lock, only the read of a page (or a keys-file block) that is not cached.

A reader learns of a writer's commit from the catalog's version (SQLite's data_version, which moves with
any other connection's commit, and this connection's own total_changes): one short read transaction of
the catalog per lookup, 4 µs warm and 30 µs cold here (the stamp file mapped into memory it replaces
cost 3 µs cold, and a file, a mapping and its failure modes). A snapshot ends once the catalog moved or
HOLD_S passed, so that an idle reader neither keeps a replaced file on disk nor stops SQLite from
checkpointing a delta's pages.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge.lists.keysfile import DENY, DETAILS, KeysError, KeysFile
from edge.lists.listfile import open_keys, open_list, read_meta
from edge.lists.records import Code, ListInfo, translated

HOLD_S = 1.0
_LOOKUP = "SELECT deny, label, valid_from, valid_until, 0 FROM entries WHERE code = ?"
_IN_OVERLAY = "SELECT deny, label, valid_from, valid_until, removed FROM overlay WHERE code = ?"
_LOOKUP_OVERLAID = ("SELECT deny, label, valid_from, valid_until, removed FROM overlay WHERE code = ?1 "
                    "UNION ALL SELECT deny, label, valid_from, valid_until, 0 FROM entries WHERE code = ?1 LIMIT 1")

# What a lookup finds: (deny, label, valid_from, valid_until, removed).
Found = tuple[int, str | None, int | None, int | None, int]
# A key (the code, or its keyed hash in a hashed list) to what is found for it, or None.
Reader = Callable[[Code], Found | None]


class CatalogVersion:
    """What moves with every commit to the catalog, by this connection or another."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    @translated
    def read(self) -> tuple[int, int]:
        return self.conn.execute("PRAGMA data_version").fetchone()[0], self.conn.total_changes


def close_aside(file: sqlite3.Connection | KeysFile) -> None:
    """Close a replaced list or keys file on a thread of its own: the last close of a file already
    unlinked frees its page cache there and then (180 ms for a 170 MB keys file), which a lookup must
    not wait for."""
    threading.Thread(target=file.close, name="list-close", daemon=True).start()


def _reader(conn: sqlite3.Connection, overlaid: bool, keys: KeysFile | None) -> Reader:
    """How to look a key up in the snapshot `conn` holds."""
    if keys is None:
        query = _LOOKUP_OVERLAID if overlaid else _LOOKUP
        return lambda key: conn.execute(query, (key,)).fetchone()

    def read(key: Code) -> Found | None:
        row: Found | None
        if overlaid:
            row = conn.execute(_IN_OVERLAY, (key,)).fetchone()
            if row is not None:
                return row
        flags = keys.find(key)
        if flags is None:
            return None
        if flags & DETAILS:
            row = conn.execute(_LOOKUP, (key,)).fetchone()
            return row
        return (flags & DENY, None, None, None, 0)
    return read


class Snapshot:
    """The open list and keys files, and per list what the held snapshot reads it with."""

    def __init__(self, folder: Path, catalog: CatalogVersion, infos: Callable[[], list[ListInfo]],
                 hold_s: float = HOLD_S):
        self.folder, self.catalog, self.infos, self.hold_s = folder, catalog, infos, hold_s
        self._seen: tuple[int, int] | None = None  # the catalog's version when the files were opened
        self._open: dict[str, tuple[ListInfo, sqlite3.Connection]] = {}
        self._keys: dict[str, KeysFile] = {}  # the keys files open, by name
        self._reading: dict[str, tuple[ListInfo, Reader, int]] = {}  # per list: info, reader, version
        self._held_since: float | None = None  # when the snapshot began; None: none held

    def current(self) -> dict[str, tuple[ListInfo, Reader, int]]:
        self.release_if_old()
        if self._held_since is None:
            self._renew()
        return self._reading

    def release_if_old(self) -> None:
        if self._held_since is not None and (time.monotonic() - self._held_since > self.hold_s
                                             or self.catalog.read() != self._seen):
            self.release()

    def release(self) -> None:
        for _, conn in self._open.values():
            if conn.in_transaction:
                conn.execute("COMMIT")
        self._held_since = None

    def close(self) -> None:
        for _, conn in self._open.values():
            conn.close()
        self._open.clear()
        self._reading.clear()
        for keys in self._keys.values():
            keys.close()
        self._keys.clear()
        self._held_since = None

    def _renew(self) -> None:
        seen = self.catalog.read()  # before the catalog is read: a commit in between is seen next time
        if seen != self._seen:
            self._seen = seen
            self._reopen({i.name: i for i in self.infos()})
        for _ in range(3):
            try:
                self._begin()
                return
            except FileNotFoundError:
                # A fold replaced a keys file between this snapshot's first read and its opening: the
                # next snapshot names the new one.
                self.release()
            except BaseException:
                self.release()  # no half-begun snapshot: the next lookup tries afresh
                raise
        raise KeysError("a list's keys file keeps disappearing")

    def _reopen(self, infos: dict[str, ListInfo]) -> None:
        for name, (info, conn) in list(self._open.items()):
            new = infos.get(name)
            if new is not None and new.file == info.file:
                self._open[name] = (new, conn)  # a delta changed the file in place: keep its cache
            else:
                close_aside(conn)
                del self._open[name]
        for name, info in infos.items():
            if name not in self._open and info.file:
                self._open[name] = (info, open_list(self.folder / info.file, readonly=True))

    def _begin(self) -> None:
        self._reading = {}
        used = {}
        for name, (info, conn) in self._open.items():
            conn.execute("BEGIN")
            version, overlaid, keys_name = read_meta(conn)  # this first read begins the snapshot
            keys = None
            if keys_name is not None:
                keys = self._keys.get(keys_name) or open_keys(self.folder / keys_name)
                used[keys_name] = self._keys[keys_name] = keys
            self._reading[name] = (info, _reader(conn, overlaid, keys), version)
        for keys_name in self._keys.keys() - used.keys():
            close_aside(self._keys.pop(keys_name))
        self._held_since = time.monotonic()
