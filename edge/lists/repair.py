"""Start-up work of a writing store: catalogs of older versions brought up to date, and what a power cut
can leave behind put right."""
from __future__ import annotations

import logging
import sqlite3
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from edge.common.sqlite import private_file
from edge.lists.listfile import KEYS_FILE, OVERLAY, ListFile, open_list, read_meta
from edge.lists.records import ListError, ListInfo
from edge.lists.rows import file_rows

log = logging.getLogger("checkpoint.lists")


class Catalog(Protocol):
    """What repair needs of the store (ListStore is one), named here so that repair does not import the
    store that calls it."""

    conn: sqlite3.Connection
    dir: Path

    def infos(self) -> list[ListInfo]: ...

    def new_file(self, name: str, version: int, hash_key: str | None) -> ListFile: ...

    def catalog_commit(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def delete_file(self, file: str) -> None: ...


def migrate(store: Catalog) -> None:
    """Lists.db of version 0.1 held every list in one table: each list moves into a file of its own."""
    conn = store.conn
    columns = [row[1] for row in conn.execute("PRAGMA table_info(lists)")]
    if "file" not in columns:
        conn.execute("ALTER TABLE lists ADD COLUMN file TEXT")
        conn.execute("ALTER TABLE lists ADD COLUMN hash_key TEXT")
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'list_entries'").fetchone():
        return
    for info in store.infos():
        if info.file:
            continue
        building = store.new_file(info.name, info.version, None)
        building.add(conn.execute("SELECT code, deny, label, valid_from, valid_until FROM list_entries "
                                  "WHERE list = ? ORDER BY code", (info.name,)))
        building.finish()
        with store.catalog_commit() as cat:
            cat.execute("UPDATE lists SET file = ? WHERE name = ?", (building.path.name, info.name))
        log.info("list %s moved into %s", info.name, building.path)
    conn.execute("DROP TABLE list_entries")


def reconcile(store: Catalog) -> None:
    """A power cut between a delta's commit in its file and the catalog's update leaves the catalog one
    version behind: the file is right. Files no catalog row names (a build cut short) are removed; those
    made readable by everyone (by an older version) are made private."""
    named = set()
    for info in store.infos():
        if not info.file:
            continue
        named.add(info.file)
        try:
            conn = open_list(store.dir / info.file, readonly=False)
            try:
                conn.executescript(OVERLAY)  # files written before deltas went to an overlay
                if "keys" not in {row[1] for row in conn.execute("PRAGMA table_info(meta)")}:
                    conn.execute("ALTER TABLE meta ADD COLUMN keys TEXT")  # ... or hashed lists to keys files
                version, _, keys_name = read_meta(conn)
                if keys_name:
                    named.add(keys_name)
                if version != info.version:
                    count = sum(1 for _ in file_rows(store.dir / info.file))
                    with store.catalog_commit() as cat:
                        cat.execute("UPDATE lists SET version = ?, count = ? WHERE name = ?",
                                    (version, count, info.name))
                        cat.execute("INSERT OR REPLACE INTO list_versions VALUES (?, ?)", (info.name, version))
                    log.warning("list %s: catalog said version %d, its file holds %d", info.name,
                                info.version, version)
            finally:
                conn.close()
        except (sqlite3.Error, ListError) as exc:  # file_rows and the keys file give ListUnreadable
            log.error("list %s: file %s unreadable: %s", info.name, info.file, exc)
    if store.dir.is_dir():
        for path in store.dir.glob("*.db"):
            if path.name not in named:
                store.delete_file(path.name)
            else:
                private_file(path)  # with its -wal and -shm
        for path in store.dir.glob("*.db.k*"):  # a fold or a build cut short, or a fold's old file
            if not KEYS_FILE.fullmatch(path.name):
                continue
            if path.name in named:
                private_file(path)
            else:
                path.unlink(missing_ok=True)
