"""ListStore: the catalog (lists.db), which names each list's current version and its file, and the
operations on lists: lookup, import, install, delta, fold, remove.

Lists live apart from the entries so that replacing a large list never holds the entries' write lock.
A new version is built in a file of its own, away from the one scanning reads, and swapped in by one
catalog commit; a delta changes the file in place (see delta.py).
"""
from __future__ import annotations

import glob
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from edge.common.clock import wall_ms
from edge.common.sqlite import connect, transaction
from edge.lists import delta
from edge.lists.csvrows import CsvRows
from edge.lists.hashing import KeyedHash, hash_key_id
from edge.lists.listfile import KEYS_FILE, ListFile, read_meta
from edge.lists.records import Changes, ListError, ListInfo, ListUnreadable, Match, Row, check_name, translated
from edge.lists.repair import migrate, reconcile
from edge.lists.rows import file_rows
from edge.lists.snapshot import HOLD_S, CatalogVersion, Snapshot

CATALOG = """
CREATE TABLE IF NOT EXISTS lists (
    name TEXT PRIMARY KEY, version INTEGER NOT NULL, count INTEGER NOT NULL,
    imported_ms INTEGER NOT NULL, source TEXT, sha256 TEXT NOT NULL, file TEXT, hash_key TEXT);
CREATE TABLE IF NOT EXISTS list_versions (name TEXT PRIMARY KEY, last_version INTEGER NOT NULL);
"""


class ListStore:
    """The catalog and the open list files. Lookups read the list files in one snapshot (snapshot.py),
    renewed when the catalog moved or hold_s passed.

    `generation` moves with every commit to the catalog: compared rather than reading the catalog again
    (Policy.missing_lists does). A list's overlay is folded into its entries once it holds fold_rows rows,
    or fold_share of the list if more (delta.py)."""

    @translated
    def __init__(self, path: str | Path, *, readonly: bool = False, hash_keys: dict[str, bytes] | None = None,
                 hold_s: float = HOLD_S, fold_rows: int = delta.FOLD_ROWS, fold_share: float = delta.FOLD_SHARE):
        self.path = Path(path)
        self.fold_rows, self.fold_share = fold_rows, fold_share
        self.dir = self.path.parent / "lists.d"
        self.readonly = readonly
        self.hash_keys = dict(hash_keys or {})
        self._hashers = {kid: KeyedHash(key) for kid, key in self.hash_keys.items()}
        self.conn = connect(self.path, readonly=readonly)
        self.generation = CatalogVersion(self.conn)
        self._snapshot = Snapshot(self.dir, self.generation, self.infos, hold_s)
        if not readonly:
            self.conn.executescript(CATALOG)
            migrate(self)
            reconcile(self)

    def close(self) -> None:
        self._snapshot.close()
        self.conn.close()

    # -- reading ---------------------------------------------------------------------------------
    @translated
    def release_old_snapshot(self) -> None:
        """End the list files' snapshot once the catalog moved or hold_s passed. The daemon calls this
        while idle too, so that no snapshot outlives a change or hold_s by much."""
        self._snapshot.release_if_old()

    @translated
    def infos(self) -> list[ListInfo]:
        try:
            rows = self.conn.execute("SELECT * FROM lists ORDER BY name").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []  # read-only view of a file no import has created yet
            raise
        return [ListInfo(*row) for row in rows]

    @translated
    def info(self, name: str) -> ListInfo | None:
        try:
            row = self.conn.execute("SELECT * FROM lists WHERE name = ?", (name,)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None  # read-only view of a file no import has created yet
            raise
        return ListInfo(*row) if row else None

    def _key(self, info: ListInfo, code: str) -> str | bytes:
        if info.hash_key is None:
            return code
        hasher = self._hashers.get(info.hash_key)
        if hasher is None:
            raise ListUnreadable(f"list {info.name} is hashed with key {info.hash_key}, which this device "
                                 "does not hold")
        return hasher(code)

    @translated
    def lookup(self, code: str, names: list[str] | None = None) -> list[Match]:
        """Every entry for `code` in the named lists (all lists when names is empty)."""
        matches = []
        for name, (info, read, version) in self._snapshot.current().items():
            if names and name not in names:
                continue
            row = read(self._key(info, code))
            if row is not None and not row[4]:
                matches.append(Match(name, version, bool(row[0]), row[1], row[2], row[3]))
        return matches

    def entries(self, name: str) -> Iterator[Row]:
        info = self.info(name)
        if info is None or not info.file:
            return
        yield from file_rows(self.dir / info.file)  # translates SQLite's errors itself

    @translated
    def files(self, name: str) -> list[Path]:
        """The files that hold the list's current version: its SQLite file and its keys file if any."""
        info = self.info(name)
        if info is None or not info.file:
            return []
        conn = connect(self.dir / info.file, readonly=True)
        try:
            keys_name = read_meta(conn)[2]
        finally:
            conn.close()
        return [self.dir / info.file] + ([self.dir / keys_name] if keys_name else [])

    def has_key(self, key_id: str | None) -> bool:
        """Whether this device holds the hash key of that id (None: a list of readable codes needs none)."""
        return key_id is None or key_id in self.hash_keys

    # -- writing ---------------------------------------------------------------------------------
    @contextmanager
    def catalog_commit(self) -> Iterator[sqlite3.Connection]:
        """A catalog transaction; once committed, readers see the catalog moved at their next lookup."""
        with transaction(self.conn) as conn:
            yield conn

    @translated
    def new_file(self, name: str, version: int, hash_key: str | None) -> ListFile:
        check_name(name)
        file = f"{name}.{version}.db"
        current = self.info(name)
        if current is not None and current.file == file:
            file = f"{name}.{version}.again.db"  # the same version anew (allow_lower): never over the live file
        return ListFile(self.dir / file, version, hash_key)

    @translated
    def import_csv(self, name: str, fh: IO[bytes], *, zone: str, max_code_bytes: int,
                   source: str | None = None, hash_key: bytes | None = None,
                   version: int | None = None) -> ListInfo:
        """Load or replace list `name`; any bad row leaves the old list untouched. With hash_key, codes are
        stored as keyed hashes only (the hub prepares lists for devices this way). Without `version` the
        next one is taken; a given one must be above every version the list had (an admin passes one when
        a device already holds a version the hub never made, e.g. a list imported on the device itself)."""
        check_name(name)
        last = self._last_version(name)
        if version is None:
            version = last + 1
        elif version <= last:
            raise ListError(f"list {name}: version {version} is not newer than {last}")
        rows = CsvRows(fh, zone, max_code_bytes)
        hashed = hash_key_id(hash_key) if hash_key else None
        building = self.new_file(name, version, hashed)
        try:
            hasher = KeyedHash(hash_key) if hash_key else None
            building.add_unsorted(((hasher(r[0]), *r[1:]) for r in rows) if hasher else rows)
            count = building.finish()
        except sqlite3.IntegrityError:
            building.abandon()
            raise rows.fail("code appears earlier in the file") from None
        except BaseException:
            building.abandon()
            raise
        return self.install(name, version, building.path, count=count, sha256=rows.digest.hexdigest(),
                            source=source, hash_key=hashed)

    def _last_version(self, name: str) -> int:
        row = self.conn.execute("SELECT last_version FROM list_versions WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    @translated
    def install(self, name: str, version: int, path: Path, *, count: int, sha256: str, source: str | None,
                hash_key: str | None, allow_lower: bool = False) -> ListInfo:
        """Swap a finished file in as the list's current version: one catalog commit; the old file goes.

        A version must be above every one the list had, so that no replay brings an old one back; with
        allow_lower it need not be (the device's receiver allows it where the current version's signer is
        no longer trusted: a stolen key that pushed a huge version must not block later ones for good)."""
        info = ListInfo(name, version, count, wall_ms(), source, sha256, path.name, hash_key)
        with self.catalog_commit() as conn:
            last = self._last_version(name)
            if version <= last and not allow_lower:
                raise ListError(f"list {name}: version {version} is not newer than {last}")
            old = conn.execute("SELECT file FROM lists WHERE name = ?", (name,)).fetchone()
            conn.execute("INSERT OR REPLACE INTO lists VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (info.name, info.version, info.count, info.imported_ms, info.source, info.sha256,
                          info.file, info.hash_key))
            conn.execute("INSERT OR REPLACE INTO list_versions VALUES (?, ?)", (name, version))
        if old and old[0] and old[0] != info.file:
            self.delete_file(old[0])
        return info

    @translated
    def apply_delta(self, name: str, *, base: int, version: int, changes: Changes, count: int, sha256: str,
                    source: str | None) -> ListInfo:
        """Change version `base` of a list into `version`: first in its file (delta.apply_delta), then in
        the catalog. A resulting count other than the sender's shows the delta was made against other
        contents, and nothing is changed."""
        info = self.info(name)
        if info is None or info.version != base or not info.file:
            raise ListError(f"list {name}: delta applies to version {base}, this device holds "
                            f"{info.version if info else 'none'}")
        if info.count - len(changes.removed) + len(changes.added) != count:
            raise ListError(f"list {name}: the delta was made against other contents than version {base} here "
                            f"(its sender expected {count} entries)")
        delta.apply_delta(self.dir, info, version, changes)
        new = ListInfo(name, version, count, wall_ms(), source, sha256, info.file, info.hash_key)
        with self.catalog_commit() as cat:
            cat.execute("UPDATE lists SET version = ?, count = ?, imported_ms = ?, source = ?, sha256 = ? "
                        "WHERE name = ?", (version, count, new.imported_ms, source, sha256, name))
            cat.execute("INSERT OR REPLACE INTO list_versions VALUES (?, ?)", (name, version))
        return new

    @translated
    def fold(self, name: str, *, at_rows: int | None = None) -> int:
        """Fold the list's overlay into its entries once it holds at_rows rows (default: fold_rows, or
        fold_share of the list if more); returns the rows folded, 0 if it was not due."""
        info = self.info(name)
        if info is None or not info.file:
            return 0
        if at_rows is None:
            at_rows = delta.fold_due(info.count, self.fold_rows, self.fold_share)
        self._snapshot.release()  # this store's own snapshot would hold the fold's checkpoint back
        return delta.fold(self.dir, info, at_rows)

    @translated
    def remove(self, name: str) -> bool:
        with self.catalog_commit() as conn:
            old = conn.execute("SELECT file FROM lists WHERE name = ?", (name,)).fetchone()
            conn.execute("DELETE FROM lists WHERE name = ?", (name,))
        if old and old[0]:
            self.delete_file(old[0])
        return old is not None

    def delete_file(self, file: str) -> None:
        """A list file with its -wal, -shm and keys files; a reader that has them open reads on until its
        snapshot ends."""
        for suffix in ("", "-wal", "-shm"):
            (self.dir / (file + suffix)).unlink(missing_ok=True)
        for path in self.dir.glob(glob.escape(file) + ".k*"):
            if (match := KEYS_FILE.fullmatch(path.name)) and match.group(1) == file:
                path.unlink(missing_ok=True)

