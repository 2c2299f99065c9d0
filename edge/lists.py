"""Named allow/deny lists cached on the device, in their own SQLite file.

Lists live apart from the entries so that replacing a large list never holds the entries' write lock:
scanning keeps committing entries, and keeps reading the old list version until the new one commits.
"""
from __future__ import annotations

import csv
import hashlib
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from .clock import parse_instant, wall_ms
from .payload import has_bad_control, printable
from .sqlite import connect, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS lists (
    name TEXT PRIMARY KEY, version INTEGER NOT NULL, count INTEGER NOT NULL,
    imported_ms INTEGER NOT NULL, source TEXT, sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS list_versions (name TEXT PRIMARY KEY, last_version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS list_entries (
    list TEXT NOT NULL, code TEXT NOT NULL, deny INTEGER NOT NULL, label TEXT,
    valid_from INTEGER, valid_until INTEGER, PRIMARY KEY (list, code)) WITHOUT ROWID;
"""

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
COLUMNS = ("code", "action", "label", "valid_from", "valid_until")
MAX_LABEL = 200
MAX_LINE_BYTES = 1 << 20


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
        return (self.name, code, action == "deny", label, valid_from, valid_until)

    def _instant(self, row: dict[str, str], key: str, *, end_of_day: bool) -> int | None:
        text = (row.get(key) or "").strip()
        if not text:
            return None
        try:
            return parse_instant(text, self.zone, end_of_day=end_of_day)
        except (ValueError, OverflowError):
            raise self.fail(f"{key} is not an ISO 8601 date or date-time (got {printable(text[:40])!r})") from None


class ListStore:
    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.conn = connect(self.path, readonly=readonly)
        if not readonly:
            self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def import_csv(self, name: str, fh: IO[bytes], *, zone: str, max_code_bytes: int,
                   source: str | None = None) -> ListInfo:
        """Load or replace list `name` in one transaction; any bad row leaves the old list untouched."""
        check_name(name)
        rows = _Rows(name, fh, zone, max_code_bytes)
        with transaction(self.conn) as conn:
            conn.execute("DELETE FROM list_entries WHERE list = ?", (name,))
            try:
                conn.executemany("INSERT INTO list_entries VALUES (?, ?, ?, ?, ?, ?)", rows)
            except sqlite3.IntegrityError:
                raise rows.fail("code appears earlier in the file") from None
            last = conn.execute("SELECT last_version FROM list_versions WHERE name = ?", (name,)).fetchone()
            info = ListInfo(name, (last[0] if last else 0) + 1, rows.count, wall_ms(), source,
                            rows.digest.hexdigest())
            conn.execute("INSERT OR REPLACE INTO lists VALUES (?, ?, ?, ?, ?, ?)",
                         (info.name, info.version, info.count, info.imported_ms, info.source, info.sha256))
            conn.execute("INSERT OR REPLACE INTO list_versions VALUES (?, ?)", (name, info.version))
        return info

    def remove(self, name: str) -> bool:
        with transaction(self.conn) as conn:
            conn.execute("DELETE FROM list_entries WHERE list = ?", (name,))
            return conn.execute("DELETE FROM lists WHERE name = ?", (name,)).rowcount > 0

    def infos(self) -> list[ListInfo]:
        try:
            rows = self.conn.execute("SELECT * FROM lists ORDER BY name").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []  # read-only view of a file no import has created yet
            raise
        return [ListInfo(*row) for row in rows]

    def info(self, name: str) -> ListInfo | None:
        return next((i for i in self.infos() if i.name == name), None)

    def entries(self, name: str) -> Iterator[tuple]:
        yield from self.conn.execute(
            "SELECT code, deny, label, valid_from, valid_until FROM list_entries WHERE list = ? ORDER BY code",
            (name,))

    def lookup(self, code: str, names: list[str] | None = None) -> list[Match]:
        """Every entry for `code` in the named lists (all lists when names is empty), in one snapshot."""
        try:
            rows = self.conn.execute(
                "SELECT l.name, l.version, e.deny, e.label, e.valid_from, e.valid_until "
                "FROM lists l JOIN list_entries e ON e.list = l.name AND e.code = ?", (code,)).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        return [Match(*row[:2], bool(row[2]), *row[3:]) for row in rows if not names or row[0] in names]
