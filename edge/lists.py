"""Named allow/deny lists cached on the device: a catalog (lists.db) and one SQLite file per list version.

Lists live apart from the entries so that replacing a large list never holds the entries' write lock.
A new version is built in a file of its own, away from the one scanning reads, and swapped in by one
catalog commit. A delta goes into the file's overlay table in one WAL transaction, which a reader sees
whole or not at all, and which writes pages in proportion to the delta, not to the list; the overlay is
folded into the entries once in many deltas. A reader keeps one read snapshot of its list files for up
to HOLD_S and learns of a writer's commit from a stamp in a small shared file (lists.gen), so a lookup
costs no lock or stat system call, only the read of a page that is not cached. A list may hold its codes
as keyed hashes (HMAC-SHA256 cut to 16 bytes): a scanned code is hashed with the same key before lookup,
so the device never stores a readable list of ID numbers. A hashed list keeps its keys in a keys file
beside its SQLite file (edge.keysfile: one 4 KiB read per lookup, 17 bytes per entry); the SQLite file
then holds only the entries with a label or a validity window, and the overlay.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import hmac
import logging
import mmap
import os
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from .clock import parse_instant, wall_ms
from .keysfile import DENY, DETAILS, KeysError, KeysFile, KeysWriter, merge
from .payload import has_bad_control, printable
from .sqlite import connect, transaction

log = logging.getLogger("checkpoint.lists")

CATALOG = """
CREATE TABLE IF NOT EXISTS lists (
    name TEXT PRIMARY KEY, version INTEGER NOT NULL, count INTEGER NOT NULL,
    imported_ms INTEGER NOT NULL, source TEXT, sha256 TEXT NOT NULL, file TEXT, hash_key TEXT);
CREATE TABLE IF NOT EXISTS list_versions (name TEXT PRIMARY KEY, last_version INTEGER NOT NULL);
"""
# One list version. Codes are TEXT, or 16-byte BLOBs in a hashed list. The version sits in the same file,
# so a lookup reads it in the same snapshot as the entry it found. `entries` is written once, in key order,
# when the file is built; deltas go to `overlay`, which shadows entries (removed = 1: the code is gone), so
# a delta writes pages in proportion to its own size, not to the list's: a 100,000-entry delta on a
# 10-million-entry list rewrote most of its 70,000 leaf pages in place.
OVERLAY = """
CREATE TABLE IF NOT EXISTS overlay (code NOT NULL PRIMARY KEY, deny INTEGER NOT NULL, label TEXT,
    valid_from INTEGER, valid_until INTEGER, removed INTEGER NOT NULL) WITHOUT ROWID;
"""
LIST_FILE = """
CREATE TABLE meta (version INTEGER NOT NULL, hash_key TEXT, keys TEXT);
CREATE TABLE entries (code NOT NULL PRIMARY KEY, deny INTEGER NOT NULL, label TEXT,
    valid_from INTEGER, valid_until INTEGER) WITHOUT ROWID;
""" + OVERLAY
_COLUMNS = "code, deny, label, valid_from, valid_until"
_HAS_DETAILS = "(label IS NOT NULL OR valid_from IS NOT NULL OR valid_until IS NOT NULL)"
# Read once per snapshot: the version, whether the overlay must be looked at as well, and the keys file.
# Files from before overlays or keys files answer the later forms, until a writer opens them.
_SNAPSHOT = ("SELECT version, EXISTS (SELECT 1 FROM overlay), keys FROM meta",
             "SELECT version, EXISTS (SELECT 1 FROM overlay), NULL FROM meta",
             "SELECT version, 0, NULL FROM meta")
_LOOKUP = "SELECT deny, label, valid_from, valid_until, 0 FROM entries WHERE code = ?"
_IN_OVERLAY = "SELECT deny, label, valid_from, valid_until, removed FROM overlay WHERE code = ?"
_LOOKUP_OVERLAID = ("SELECT deny, label, valid_from, valid_until, removed FROM overlay WHERE code = ?1 "
                    "UNION ALL SELECT deny, label, valid_from, valid_until, 0 FROM entries WHERE code = ?1 LIMIT 1")
# Every entry of a list file in key order, with its overlay applied.
ROWS = (f"SELECT {_COLUMNS} FROM (SELECT {_COLUMNS} FROM entries WHERE code NOT IN (SELECT code FROM overlay) "
        f"UNION ALL SELECT {_COLUMNS} FROM overlay WHERE removed = 0) ORDER BY code")
# Whether a delta's code is on the list now: the overlay says so if it holds the code, else `listed`
# (whether the entries or the keys file hold it).
_PRESENT = "coalesce((SELECT NOT removed FROM overlay o WHERE o.code = d.code), d.listed)"
_KEYS_FILE = re.compile(r"(.+\.db)\.k(\d+)")  # the list file it belongs to, and its fold count
ADDED, CHANGED, REMOVED = 0, 1, 2
# The overlay is folded into the entries once it holds FOLD_ROWS rows, or FOLD_SHARE of the list if more:
# a rewrite of the whole B-tree, paid once in many deltas instead of by each.
FOLD_ROWS = 500_000
FOLD_SHARE = 0.125
HASH_BYTES = 16

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
COLUMNS = ("code", "action", "label", "valid_from", "valid_until")
MAX_LABEL = 200
MAX_LINE_BYTES = 1 << 20
# A reader's snapshot of the list files lasts this long at most, so that an idle reader does not keep a
# replaced file on disk, nor stop SQLite from checkpointing a delta's pages, for longer.
HOLD_S = 1.0


class ListError(Exception):
    """A list that cannot be imported or used; nothing was changed."""


@dataclass(frozen=True, slots=True)
class Match:
    list_name: str
    list_version: int
    deny: bool
    label: str | None
    valid_from: int | None
    valid_until: int | None

    def window(self, now_ms: int) -> str:
        """'in force', 'not-yet-valid' or 'expired' at now_ms."""
        if self.valid_from is not None and now_ms < self.valid_from:
            return "not-yet-valid"
        if self.valid_until is not None and now_ms >= self.valid_until:
            return "expired"
        return "in force"


@dataclass(frozen=True, slots=True)
class ListInfo:
    name: str
    version: int
    count: int
    imported_ms: int
    source: str | None
    sha256: str
    file: str | None = None
    hash_key: str | None = None


def key_id(key: bytes) -> str:
    """The public name of a hashing key: lists and devices compare these, never the key."""
    return hashlib.sha256(b"checkpoint list key\0" + key).hexdigest()[:16]


def hash_code(key: bytes, code: str) -> bytes:
    return hmac.digest(key, code.encode("utf-8"), "sha256")[:HASH_BYTES]


class KeyedHash:
    """hash_code with one key, whose two padded blocks are hashed once (RFC 2104): a lookup then hashes
    only the code, 2 µs where hmac.digest takes 4, and 34 µs where it takes 90 when the CPU's caches
    are cold, as they are between scans."""

    def __init__(self, key: bytes):
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self.inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self.outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def __call__(self, code: str) -> bytes:
        inner = self.inner.copy()
        inner.update(code.encode("utf-8"))
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:HASH_BYTES]


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ListError(f"list name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return name


class _Rows:
    """Parses a CSV list lazily, so a 10-million-row file is never held in memory."""

    def __init__(self, name: str, fh: IO[bytes], zone: str, max_code_bytes: int):
        self.name, self.zone, self.max_code_bytes = name, zone, max_code_bytes
        self.fh = fh
        self.digest = hashlib.sha256()
        self.line = 0
        self.count = 0

    def fail(self, message: str) -> ListError:
        return ListError(f"line {self.line}: {message}")

    def _lines(self) -> Iterator[str]:
        """Decoded line by line, so a bad byte is reported on its own line, and no line can be huge."""
        while raw := self.fh.readline(MAX_LINE_BYTES + 1):
            self.digest.update(raw)
            self.line += 1
            if len(raw) > MAX_LINE_BYTES:
                raise self.fail(f"longer than {MAX_LINE_BYTES} bytes")
            if self.line == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # the BOM spreadsheet programs write
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise self.fail(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None

    def __iter__(self) -> Iterator[tuple]:
        reader = csv.reader(self._lines(), strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise self.fail("empty file; the first line must name the columns, e.g. code,action,label")
            header = [h.strip().lower() for h in header]
            unknown = [h for h in header if h not in COLUMNS]
            if unknown or "code" not in header or len(set(header)) != len(header):
                raise self.fail(f"header must name distinct columns among {', '.join(COLUMNS)} and include "
                                f"code (got {', '.join(header)})")
            for record in reader:
                if not record or record == [""]:
                    continue
                if len(record) != len(header):
                    raise self.fail(f"{len(record)} fields, the header has {len(header)}")
                yield self._row(dict(zip(header, record)))
        except csv.Error as exc:
            raise self.fail(str(exc)) from None

    def _row(self, row: dict[str, str]) -> tuple:
        code = row["code"].strip()
        if not code:
            raise self.fail("empty code")
        if len(code.encode("utf-8")) > self.max_code_bytes:
            raise self.fail(f"code longer than {self.max_code_bytes} bytes")
        if has_bad_control(code):
            raise self.fail(f"code holds control characters ({printable(code)[:60]}); no scan could match it")
        action = (row.get("action") or "allow").strip().lower()
        if action not in ("allow", "deny"):
            raise self.fail(f"action must be allow or deny (got {action!r})")
        label = (row.get("label") or "").strip() or None
        if label is not None and len(label) > MAX_LABEL:
            raise self.fail(f"label longer than {MAX_LABEL} characters")
        valid_from = self._instant(row, "valid_from", end_of_day=False)
        valid_until = self._instant(row, "valid_until", end_of_day=True)
        if valid_from is not None and valid_until is not None and valid_until <= valid_from:
            raise self.fail("valid_until is not after valid_from")
        self.count += 1
        return (code, action == "deny", label, valid_from, valid_until)

    def _instant(self, row: dict[str, str], key: str, *, end_of_day: bool) -> int | None:
        text = (row.get(key) or "").strip()
        if not text:
            return None
        try:
            return parse_instant(text, self.zone, end_of_day=end_of_day)
        except (ValueError, OverflowError):
            raise self.fail(f"{key} is not an ISO 8601 date or date-time (got {printable(text[:40])!r})") from None


def _key_flags(deny, label, valid_from, valid_until) -> int:
    """A hashed entry's flags in its keys file; DETAILS: its label or window is in the SQLite file."""
    details = label is not None or valid_from is not None or valid_until is not None
    return (DENY if deny else 0) | (DETAILS if details else 0)


def keys_file_name(file: str, fold: int) -> str:
    """The keys file of list file `file` after `fold` folds (a fold writes a new one)."""
    return f"{file}.k{fold}"


class ListFile:
    """A new list version being built in its own file; nothing reads it until the catalog names it.

    Rows go in with no journal and no fsync per statement (the file is not live yet); finish() makes it
    a WAL database, checks it and syncs it to disk before anything may point at it. A hashed list's keys
    go to its keys file, and only its entries with a label or a window to the SQLite file.
    """

    def __init__(self, path: Path, version: int, hash_key: str | None):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        keys_name = keys_file_name(path.name, 0) if hash_key else None
        self.keys = KeysWriter(path.parent / keys_name) if keys_name else None
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = OFF")
        self.conn.execute("PRAGMA synchronous = OFF")
        self.conn.executescript(LIST_FILE)
        self.conn.execute("INSERT INTO meta VALUES (?, ?, ?)", (version, hash_key, keys_name))
        self.conn.execute("BEGIN")
        self.count = 0

    def add(self, rows) -> None:
        """Rows in ascending code order: a hashed list's keys file takes no other; a B-tree's pages stay full."""
        before = self.conn.total_changes
        if self.keys is None:
            self.conn.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?)", rows)
            self.count += self.conn.total_changes - before
            return
        try:
            self.conn.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?)", self._keyed(rows))
        except KeysError as exc:
            raise ListError(f"hashed list: {exc}") from None
        self.count = self.keys.count

    def _keyed(self, rows):
        """Each row's key into the keys file; the rows with details on to the SQLite file."""
        for row in rows:
            flags = _key_flags(*row[1:])
            self.keys.add(row[0], flags)
            if flags & DETAILS:
                yield row

    def add_unsorted(self, rows) -> None:
        """Rows in any order; a code repeated raises sqlite3.IntegrityError, or ListError in a hashed list,
        whose keys are sorted in memory (about 40 bytes an entry at the peak; the hub imports hashed lists,
        a device receives them sorted): inserting ten million hashes in random order into a B-tree took
        minutes."""
        if self.keys is None:
            return self.add(rows)
        keys, flags = bytearray(), bytearray()

        def collect():
            for row in rows:
                code, *rest = row
                keys.extend(code)
                flags.append(_key_flags(*rest))
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


def _open_list(path: Path, readonly: bool) -> sqlite3.Connection:
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


def _snapshot(conn: sqlite3.Connection) -> tuple[int, bool, str | None]:
    """(version, overlaid, keys file name) of a list file."""
    for query in _SNAPSHOT[:-1]:
        try:
            return conn.execute(query).fetchone()
        except sqlite3.OperationalError:  # an older file that no writer has brought up to date yet
            pass
    return conn.execute(_SNAPSHOT[-1]).fetchone()


def _open_keys(path: Path) -> KeysFile:
    try:
        return KeysFile(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:  # ValueError: a header that struct cannot read
        raise KeysError(f"keys file {path.name} unreadable: {exc}") from None


def _close_aside(file) -> None:
    """Close a replaced list or keys file on a thread of its own: the last close of a file already
    unlinked frees its page cache there and then (180 ms for a 170 MB keys file), which a lookup must
    not wait for."""
    threading.Thread(target=file.close, name="list-close", daemon=True).start()


def _reader(conn: sqlite3.Connection, overlaid: bool, keys: KeysFile | None):
    """A function from a key to its row (deny, label, valid_from, valid_until, removed) or None, in the
    snapshot `conn` holds."""
    if keys is None:
        query = _LOOKUP_OVERLAID if overlaid else _LOOKUP
        return lambda key: conn.execute(query, (key,)).fetchone()

    def read(key):
        if overlaid and (row := conn.execute(_IN_OVERLAY, (key,)).fetchone()) is not None:
            return row
        flags = keys.find(key)
        if flags is None:
            return None
        if flags & DETAILS:
            return conn.execute(_LOOKUP, (key,)).fetchone()
        return (flags & DENY, None, None, None, 0)
    return read


def file_rows(path: Path) -> Iterator[tuple]:
    """Every entry of a list file, (code, deny, label, valid_from, valid_until), in key order, with its
    overlay applied."""
    conn = _open_list(path, readonly=True)
    try:
        conn.execute("BEGIN")
        keys_name = _snapshot(conn)[2]
        if keys_name is None:
            yield from conn.execute(ROWS)
            return
        keys = _open_keys(path.parent / keys_name)
        try:
            yield from _overlaid(_keyed_rows(conn, keys),
                                 conn.execute(f"SELECT {_COLUMNS}, removed FROM overlay ORDER BY code"))
        finally:
            keys.close()
    finally:
        conn.close()


def _keyed_rows(conn: sqlite3.Connection, keys: KeysFile) -> Iterator[tuple]:
    """The keys file's entries, with the details of those that have some from the SQLite file."""
    details = conn.execute(f"SELECT {_COLUMNS} FROM entries")  # in key order: the table is its key's B-tree
    for key, flags in keys:
        if flags & DETAILS:
            row = next(details, None)
            if row is None or row[0] != key:
                raise KeysError("the keys file and the entries with details disagree")
            yield row
        else:
            yield (key, flags & DENY, None, None, None)


def _overlaid(rows: Iterator[tuple], overlay: Iterator[tuple]) -> Iterator[tuple]:
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


class Generation:
    """A stamp that every writer replaces after each catalog commit, in a file each process maps into
    memory: a reader learns of another process's swap or delta by one memory read per lookup, where
    asking the catalog would take a read transaction (four system calls) each time."""

    SIZE = 8

    def __init__(self, path: Path, *, writer: bool):
        fd = os.open(path, os.O_RDWR | os.O_CREAT if writer else os.O_RDONLY, 0o644)
        try:
            if writer and os.fstat(fd).st_size < self.SIZE:
                os.ftruncate(fd, self.SIZE)
            self.map = mmap.mmap(fd, self.SIZE, access=mmap.ACCESS_WRITE if writer else mmap.ACCESS_READ)
        finally:
            os.close(fd)

    @classmethod
    def open(cls, path: Path, *, writer: bool) -> Generation | None:
        """None where there is no stamp (a read-only view before any writer made one, or a file that cannot
        be one): readers then ask the catalog, on every lookup or every HOLD_S."""
        try:
            return cls(path, writer=writer)
        except (OSError, ValueError) as exc:
            if writer:
                log.warning("list stamp %s unusable (%s): other processes see list changes up to %.0f s late",
                            path, exc, HOLD_S)
            return None

    def read(self) -> bytes:
        return self.map[:self.SIZE]

    def bump(self) -> None:
        # Random rather than counted: two writers that bump at once still leave a stamp no reader has
        # seen, and the last one written follows both commits.
        self.map[:self.SIZE] = os.urandom(self.SIZE)

    def close(self) -> None:
        self.map.close()


class ListStore:
    """The catalog and the open list files. Lookups read the list files in one snapshot, renewed when the
    generation stamp moves or HOLD_S has passed; without a stamp, on every lookup."""

    def __init__(self, path: str | Path, *, readonly: bool = False, hash_keys: dict[str, bytes] | None = None):
        self.path = Path(path)
        self.dir = self.path.parent / "lists.d"
        self.readonly = readonly
        self.hash_keys = dict(hash_keys or {})
        self._hashers = {kid: KeyedHash(key) for kid, key in self.hash_keys.items()}
        in_memory = str(path) == ":memory:"
        self.conn = connect(self.path, readonly=readonly)
        self.generation = None if in_memory else Generation.open(self.path.with_suffix(".gen"),
                                                                  writer=not readonly)
        self._seen: tuple | None = None
        self._open: dict[str, tuple[ListInfo, sqlite3.Connection]] = {}
        self._keys: dict[str, KeysFile] = {}  # the keys files open, by name
        # Per list, what the held snapshot reads it with: (info, reader, version); see _reader.
        self._reading: dict[str, tuple] = {}
        self._stamp: bytes | None = None
        self._held_since: float | None = None  # when the list files' snapshot began; None: none held
        if not readonly:
            self.conn.executescript(CATALOG)
            self._migrate()
            self._reconcile()

    def close(self) -> None:
        for _, conn in self._open.values():
            conn.close()
        self._open.clear()
        self._reading.clear()
        for keys in self._keys.values():
            keys.close()
        self._keys.clear()
        self._held_since = None
        self.conn.close()
        if self.generation:
            self.generation.close()

    # -- reading ---------------------------------------------------------------------------------
    def _current(self) -> dict[str, tuple]:
        self.release_old_snapshot()
        if self._held_since is None:
            self._renew(self.generation.read() if self.generation else None)
        return self._reading

    def release_old_snapshot(self) -> None:
        """End the list files' snapshot once a writer moved the stamp or HOLD_S passed (at once without a
        stamp to watch). The daemon calls this while idle too, so that no snapshot outlives a change
        or HOLD_S by much."""
        if self._held_since is not None and (
                self.generation is None or self.generation.read() != self._stamp
                or time.monotonic() - self._held_since > HOLD_S):
            self._release()

    def _release(self) -> None:
        for _, conn in self._open.values():
            if conn.in_transaction:
                conn.execute("COMMIT")
        self._held_since = None

    def _renew(self, stamp: bytes | None) -> None:
        # The stamp moves with writers that use this class; data_version with any other connection's
        # commit to the catalog, total_changes with this one's.
        self._stamp = stamp
        seen = (stamp, self.conn.execute("PRAGMA data_version").fetchone()[0], self.conn.total_changes)
        if seen != self._seen:
            self._seen = seen
            infos = {i.name: i for i in self.infos()}
            for name, (info, conn) in list(self._open.items()):
                new = infos.get(name)
                if new is not None and new.file == info.file:
                    self._open[name] = (new, conn)  # a delta changed the file in place: keep its cache
                else:
                    _close_aside(conn)
                    del self._open[name]
            for name, info in infos.items():
                if name not in self._open and info.file:
                    self._open[name] = (info, _open_list(self.dir / info.file, readonly=True))
        for _ in range(3):
            try:
                self._begin()
                return
            except FileNotFoundError:
                # A fold replaced a keys file between this snapshot's first read and its opening: the
                # next snapshot names the new one.
                self._release()
            except BaseException:
                self._release()  # no half-begun snapshot: the next lookup tries afresh
                raise
        raise KeysError("a list's keys file keeps disappearing")

    def _begin(self) -> None:
        self._reading = {}
        used = {}
        for name, (info, conn) in self._open.items():
            conn.execute("BEGIN")
            version, overlaid, keys_name = _snapshot(conn)  # this first read begins the snapshot
            keys = None
            if keys_name is not None:
                keys = self._keys.get(keys_name) or _open_keys(self.dir / keys_name)
                used[keys_name] = self._keys[keys_name] = keys
            self._reading[name] = (info, _reader(conn, overlaid, keys), version)
        for keys_name in self._keys.keys() - used.keys():
            _close_aside(self._keys.pop(keys_name))
        self._held_since = time.monotonic()

    def infos(self) -> list[ListInfo]:
        try:
            rows = self.conn.execute("SELECT * FROM lists ORDER BY name").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []  # read-only view of a file no import has created yet
            raise
        return [ListInfo(*row) for row in rows]

    def info(self, name: str) -> ListInfo | None:
        try:
            row = self.conn.execute("SELECT * FROM lists WHERE name = ?", (name,)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None  # read-only view of a file no import has created yet
            raise
        return ListInfo(*row) if row else None

    def _key(self, info: ListInfo, code: str):
        if info.hash_key is None:
            return code
        hasher = self._hashers.get(info.hash_key)
        if hasher is None:
            raise sqlite3.DatabaseError(f"list {info.name} is hashed with key {info.hash_key}, which this "
                                        "device does not hold")
        return hasher(code)

    def lookup(self, code: str, names: list[str] | None = None) -> list[Match]:
        """Every entry for `code` in the named lists (all lists when names is empty)."""
        matches = []
        for name, (info, read, version) in self._current().items():
            if names and name not in names:
                continue
            row = read(self._key(info, code))
            if row is not None and not row[4]:
                matches.append(Match(name, version, bool(row[0]), row[1], row[2], row[3]))
        return matches

    def entries(self, name: str) -> Iterator[tuple]:
        info = self.info(name)
        if info is None or not info.file:
            return
        yield from file_rows(self.dir / info.file)

    def files(self, name: str) -> list[Path]:
        """The files that hold the list's current version: its SQLite file and its keys file if any."""
        info = self.info(name)
        if info is None or not info.file:
            return []
        conn = connect(self.dir / info.file, readonly=True)
        try:
            keys_name = _snapshot(conn)[2]
        finally:
            conn.close()
        return [self.dir / info.file] + ([self.dir / keys_name] if keys_name else [])

    def has_key(self, key_id: str | None) -> bool:
        return key_id is None or key_id in self.hash_keys

    # -- writing ---------------------------------------------------------------------------------
    @contextmanager
    def _catalog_commit(self):
        """A catalog transaction; once committed, readers are told by the generation stamp."""
        with transaction(self.conn) as conn:
            yield conn
        if self.generation:
            self.generation.bump()

    def new_file(self, name: str, version: int, hash_key: str | None) -> ListFile:
        check_name(name)
        return ListFile(self.dir / f"{name}.{version}.db", version, hash_key)

    def import_csv(self, name: str, fh: IO[bytes], *, zone: str, max_code_bytes: int,
                   source: str | None = None, hash_key: bytes | None = None) -> ListInfo:
        """Load or replace list `name`; any bad row leaves the old list untouched. With hash_key, codes are
        stored as keyed hashes only (the hub prepares lists for devices this way)."""
        check_name(name)
        rows = _Rows(name, fh, zone, max_code_bytes)
        version = self._last_version(name) + 1
        hashed = key_id(hash_key) if hash_key else None
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

    def install(self, name: str, version: int, path: Path, *, count: int, sha256: str, source: str | None,
                hash_key: str | None) -> ListInfo:
        """Swap a finished file in as the list's current version: one catalog commit; the old file goes."""
        info = ListInfo(name, version, count, wall_ms(), source, sha256, path.name, hash_key)
        with self._catalog_commit() as conn:
            if version <= self._last_version(name):
                raise ListError(f"list {name}: version {version} is not newer than {self._last_version(name)}")
            old = conn.execute("SELECT file FROM lists WHERE name = ?", (name,)).fetchone()
            conn.execute("INSERT OR REPLACE INTO lists VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (info.name, info.version, info.count, info.imported_ms, info.source, info.sha256,
                          info.file, info.hash_key))
            conn.execute("INSERT OR REPLACE INTO list_versions VALUES (?, ?)", (name, version))
        if old and old[0] and old[0] != info.file:
            self._delete_file(old[0])
        return info

    def apply_delta(self, name: str, *, base: int, version: int, changes, count: int, sha256: str,
                    source: str | None) -> ListInfo:
        """Change version `base` of a list into `version`, in one transaction of its file's overlay.

        `changes` (added, changed, removed) says which codes the sender believed present: a code added that
        is here, or changed or removed that is not, or another resulting count, shows the delta was made
        against other contents than this device holds, and nothing is changed.
        """
        info = self.info(name)
        if info is None or info.version != base or not info.file:
            raise ListError(f"list {name}: delta applies to version {base}, this device holds "
                            f"{info.version if info else 'none'}")
        mismatch = f"list {name}: the delta was made against other contents than version {base} here"
        if info.count - len(changes.removed) + len(changes.added) != count:
            raise ListError(f"{mismatch} (its sender expected {count} entries)")
        conn = _open_list(self.dir / info.file, readonly=False)
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
                    raise ListError(f"list {name}: the delta names a code twice") from None
                self._mark_listed(conn)
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
        new = ListInfo(name, version, count, wall_ms(), source, sha256, info.file, info.hash_key)
        with self._catalog_commit() as cat:
            cat.execute("UPDATE lists SET version = ?, count = ?, imported_ms = ?, source = ?, sha256 = ? "
                        "WHERE name = ?", (version, count, new.imported_ms, source, sha256, name))
            cat.execute("INSERT OR REPLACE INTO list_versions VALUES (?, ?)", (name, version))
        return new

    def _mark_listed(self, conn: sqlite3.Connection) -> None:
        """Mark the delta's codes that the list's entries or keys file hold (the overlay aside)."""
        keys_name = _snapshot(conn)[2]
        if keys_name is None:
            conn.execute("UPDATE temp.delta SET listed = EXISTS (SELECT 1 FROM entries e WHERE e.code = delta.code)")
            return
        keys = _open_keys(self.dir / keys_name)
        try:
            codes = [code for code, in conn.execute("SELECT code FROM temp.delta")]
            conn.executemany("UPDATE temp.delta SET listed = 1 WHERE code = ?",
                             ((code,) for code in codes if isinstance(code, bytes) and keys.find(code) is not None))
        finally:
            keys.close()

    def fold(self, name: str, *, at_rows: int | None = None) -> int:
        """Fold the list's overlay into its entries once it holds at_rows rows (default: FOLD_ROWS, or
        FOLD_SHARE of the list); returns the rows folded, 0 if it was not due. Readers keep their snapshot
        meanwhile; what they find does not change. A hashed list gets a new keys file, written beside the
        old one and named in the same commit that empties the overlay. A B-tree's fold rewrites most of its
        pages: they are checkpointed into the file here, once readers moved on, rather than by the next
        delta's commit."""
        info = self.info(name)
        if info is None or not info.file:
            return 0
        conn = _open_list(self.dir / info.file, readonly=False)
        old_keys = None
        try:
            rows = conn.execute("SELECT count(*) FROM overlay").fetchone()[0]
            if not rows or rows < (max(FOLD_ROWS, int(info.count * FOLD_SHARE)) if at_rows is None else at_rows):
                return 0
            self._release()  # this store's own snapshot would hold the checkpoint below back
            with transaction(conn):
                old_keys = _snapshot(conn)[2]
                if old_keys is not None:
                    conn.execute("UPDATE meta SET keys = ?", (self._fold_keys(conn, info.file, old_keys),))
                conn.execute("DELETE FROM entries WHERE code IN (SELECT code FROM overlay)")
                details = f" AND {_HAS_DETAILS}" if old_keys is not None else ""
                conn.execute(f"INSERT INTO entries SELECT {_COLUMNS} FROM overlay WHERE removed = 0{details}")
                conn.execute("DELETE FROM overlay")
            if self.generation:
                self.generation.bump()  # readers renew their snapshot now, not after HOLD_S
            if old_keys is not None:
                (self.dir / old_keys).unlink(missing_ok=True)  # a reader that has it open reads on
            # PASSIVE: copies what no reader's snapshot still needs, and waits for none (TRUNCATE waited up to
            # the busy timeout, 5 s, on a reader whose snapshot predates the fold). Pages left go with the
            # next commit's checkpoint; a hashed list's fold writes few pages at all.
            busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if done < frames:
                log.info("list %s: %d of %d folded pages checkpointed; the rest go with the next delta", name,
                         done, frames)
        finally:
            conn.close()
        return rows

    def _fold_keys(self, conn: sqlite3.Connection, file: str, old_name: str) -> str:
        """Write the keys file that follows old_name with the overlay merged in; returns its name."""
        over = conn.execute(f"SELECT {_COLUMNS}, removed FROM overlay ORDER BY code").fetchall()
        if any(not isinstance(row[0], bytes) or len(row[0]) != HASH_BYTES for row in over):
            raise ListError(f"list file {file}: the overlay of a hashed list holds a code that is not a hash")
        keys = np.frombuffer(b"".join(row[0] for row in over), dtype=f"S{HASH_BYTES}")
        flags = np.array([_key_flags(*row[1:5]) for row in over], dtype=np.uint8)
        removed = np.array([bool(row[5]) for row in over], dtype=bool)
        match = _KEYS_FILE.fullmatch(old_name)
        new_name = keys_file_name(file, int(match.group(2)) + 1 if match else 1)
        old = _open_keys(self.dir / old_name)
        writer = KeysWriter(self.dir / new_name)
        try:
            merge(old, writer, keys, flags, removed)
            writer.finish()
        except BaseException:
            writer.abandon()
            raise
        finally:
            old.close()
        return new_name

    def remove(self, name: str) -> bool:
        with self._catalog_commit() as conn:
            old = conn.execute("SELECT file FROM lists WHERE name = ?", (name,)).fetchone()
            conn.execute("DELETE FROM lists WHERE name = ?", (name,))
        if old and old[0]:
            self._delete_file(old[0])
        return old is not None

    def _delete_file(self, file: str) -> None:
        # A reader that still has it open reads the old version until the stamp tells it, or HOLD_S passed.
        for suffix in ("", "-wal", "-shm"):
            (self.dir / (file + suffix)).unlink(missing_ok=True)
        for path in self.dir.glob(glob.escape(file) + ".k*"):
            if (match := _KEYS_FILE.fullmatch(path.name)) and match.group(1) == file:
                path.unlink(missing_ok=True)

    # -- start-up repairs --------------------------------------------------------------------------
    def _migrate(self) -> None:
        """Lists.db of version 0.1 held every list in one table: each list moves into a file of its own."""
        columns = [row[1] for row in self.conn.execute("PRAGMA table_info(lists)")]
        if "file" not in columns:
            self.conn.execute("ALTER TABLE lists ADD COLUMN file TEXT")
            self.conn.execute("ALTER TABLE lists ADD COLUMN hash_key TEXT")
        if not self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'list_entries'").fetchone():
            return
        for info in self.infos():
            if info.file:
                continue
            building = self.new_file(info.name, info.version, None)
            building.add(self.conn.execute("SELECT code, deny, label, valid_from, valid_until FROM list_entries "
                                           "WHERE list = ? ORDER BY code", (info.name,)))
            building.finish()
            with self._catalog_commit() as conn:
                conn.execute("UPDATE lists SET file = ? WHERE name = ?", (building.path.name, info.name))
            log.info("list %s moved into %s", info.name, building.path)
        self.conn.execute("DROP TABLE list_entries")

    def _reconcile(self) -> None:
        """A power cut between a delta's commit in its file and the catalog's update leaves the catalog one
        version behind: the file is right. Files no catalog row names (a build cut short) are removed."""
        named = set()
        for info in self.infos():
            if not info.file:
                continue
            named.add(info.file)
            try:
                conn = _open_list(self.dir / info.file, readonly=False)
                try:
                    conn.executescript(OVERLAY)  # files written before deltas went to an overlay
                    if "keys" not in {row[1] for row in conn.execute("PRAGMA table_info(meta)")}:
                        conn.execute("ALTER TABLE meta ADD COLUMN keys TEXT")  # ... or hashed lists to keys files
                    version, _, keys_name = _snapshot(conn)
                    if keys_name:
                        named.add(keys_name)
                    if version != info.version:
                        count = sum(1 for _ in file_rows(self.dir / info.file))
                        with self._catalog_commit() as cat:
                            cat.execute("UPDATE lists SET version = ?, count = ? WHERE name = ?",
                                        (version, count, info.name))
                            cat.execute("INSERT OR REPLACE INTO list_versions VALUES (?, ?)", (info.name, version))
                        log.warning("list %s: catalog said version %d, its file holds %d", info.name,
                                    info.version, version)
                finally:
                    conn.close()
            except sqlite3.Error as exc:
                log.error("list %s: file %s unreadable: %s", info.name, info.file, exc)
        if self.dir.is_dir():
            for path in self.dir.glob("*.db"):
                if path.name not in named:
                    self._delete_file(path.name)
            for path in self.dir.glob("*.db.k*"):  # a fold or a build cut short, or a fold's old file
                if _KEYS_FILE.fullmatch(path.name) and path.name not in named:
                    path.unlink(missing_ok=True)
