"""A list in CSV, parsed lazily and strictly: every bad row is a ListError naming its line."""
from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Iterator
from typing import IO

from edge.common.clock import parse_instant
from edge.common.payload import has_bad_control
from edge.lists.records import MAX_LABEL, ListError, shown

COLUMNS = ("code", "action", "label", "valid_from", "valid_until")
MAX_LINE_BYTES = 1 << 20

TextRow = tuple[str, int, str | None, int | None, int | None]  # a row as read, before any hashing


def _quoted(names: list[str], first: int = 3) -> str:
    """A few of a header's names, each capped, and how many more: an error line stays short."""
    listed = ", ".join(f"'{shown(name)}'" for name in names[:first])
    more = f" and {len(names) - first} more" if len(names) > first else ""
    return f"column{'s' if len(names) > 1 else ''} {listed}{more}"


class CsvRows:
    """The rows of a CSV list, one at a time, so a 10-million-row file is never held in memory; `digest`
    is the file's SHA-256 once they are all read."""

    def __init__(self, fh: IO[bytes], zone: str, max_code_bytes: int):
        self.zone, self.max_code_bytes = zone, max_code_bytes
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

    def __iter__(self) -> Iterator[TextRow]:
        reader = csv.reader(self._lines(), strict=True)
        try:
            first = next(reader, None)
            if first is None:
                raise self.fail("empty file; the first line must name the columns, e.g. code,action,label")
            header = [h.strip().lower() for h in first]
            unknown = [h for h in header if h not in COLUMNS]
            if unknown or "code" not in header or len(set(header)) != len(header):
                problem = (f"unknown {_quoted(unknown)}" if unknown else "no code column" if "code" not in header
                           else f"{_quoted(sorted(h for h, n in Counter(header).items() if n > 1))} more than once")
                raise self.fail(f"header must name distinct columns among {', '.join(COLUMNS)} and include "
                                f"code ({problem})")
            for record in reader:
                if not record or record == [""]:
                    continue
                if len(record) != len(header):
                    raise self.fail(f"{len(record)} fields, the header has {len(header)}")
                yield self._row(dict(zip(header, record)))
        except csv.Error as exc:
            raise self.fail(str(exc)) from None

    def _row(self, row: dict[str, str]) -> TextRow:
        code = row["code"].strip()
        if not code:
            raise self.fail("empty code")
        if len(code.encode("utf-8")) > self.max_code_bytes:
            raise self.fail(f"code longer than {self.max_code_bytes} bytes")
        if has_bad_control(code):
            raise self.fail(f"code holds control characters ({shown(code)}); no scan could match it")
        action = (row.get("action") or "allow").strip().lower()
        if action not in ("allow", "deny"):
            raise self.fail(f"action must be allow or deny (got '{shown(action)}')")
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
            raise self.fail(f"{key} is not an ISO 8601 date or date-time (got '{shown(text)}')") from None
