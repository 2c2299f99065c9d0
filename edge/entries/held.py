"""Held entries on disk: one JSON object a line in held-*.jsonl beside the database, written while the
database cannot take them and committed when it can. A held file may have been damaged or forged, so
every line read back is checked field by field against the record."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any

from edge.common.sqlite import open_private
from edge.common.textsafe import for_log
from edge.entries.record import ENTRY_FIELDS, Entry

log = logging.getLogger("checkpoint.store")

HELD_GLOB = "held-*.jsonl"
HELD_MODE = 0o600

_INT64 = range(-2**63, 2**63)
# A held file written before a field was added lacks it: the field's default stands in.
_REQUIRED = {f.name for f in fields(Entry) if f.default is MISSING}
_KNOWN = {f.name for f in ENTRY_FIELDS}


def held_line(entry: Entry) -> bytes:
    return (json.dumps(asdict(entry), ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")  # a lone surrogate cannot be stored
    except UnicodeEncodeError:
        return False
    return True


def held_entry(line: str) -> Entry:
    """An Entry from a held file's line, each field checked (a damaged or forged file may hold anything
    JSON can say: nesting too deep to parse, integers SQLite cannot store, fields missing); ValueError."""
    try:
        data: Any = json.loads(line)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(data, dict) or not _REQUIRED <= set(data) <= _KNOWN:
        raise ValueError("not the fields of an entry")
    for field in ENTRY_FIELDS:
        if field.name not in data:
            continue
        value = data[field.name]
        if value is None and field.nullable:
            continue
        if field.type is int:
            if type(value) is not int or value not in _INT64:
                raise ValueError(f"{field.name}: not a 64-bit integer")
        elif type(value) is not str or not value.isascii() and not _utf8(value):
            raise ValueError(f"{field.name}: not text")
    return Entry(**data)


def read_held(path: Path) -> list[Entry] | None:
    """The entries of a held file, each bad line said and skipped; None when it cannot be read (left
    there for an administrator)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        log.error("cannot read held entries from %s (%s): left there for an administrator", path, exc)
        return None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            entries.append(held_entry(line))
        except ValueError as exc:
            log.error("%s line %d: not a held entry (%s); skipped", path, number, for_log(exc))
    return entries


def append_synced(fd: int, lines: bytes) -> None:
    """Write all of lines at fd and fsync; OSError as the system says it."""
    view = memoryview(lines)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


class Reserve:
    """Room set aside beside the database at start and freed when a held entry cannot be written: on a
    full disk the held file still takes a few thousand entries (about 400 bytes each). Size 0: none."""

    def __init__(self, path: Path, size: int):
        self.path, self.size = path, size
        self.made = False

    def make(self) -> None:
        """Make it, of real blocks (not a sparse promise), unless it is there; OSError when it cannot be."""
        if self.size <= 0:
            return
        try:
            if self.path.stat().st_size >= self.size:
                self.made = True
                return
        except OSError:
            pass
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # a first start: nothing there yet
            fd = open_private(self.path, os.O_WRONLY, HELD_MODE)
            try:
                os.posix_fallocate(fd, 0, self.size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            self.path.unlink(missing_ok=True)
            self.made = False
            raise
        self.made = True

    def free(self) -> bool:
        """Give its room to the held file; False when there was none to give."""
        try:
            self.path.unlink()
        except OSError:
            return False
        self.made = False
        log.critical("disk full: reserve %s freed for held entries; free space and the store recovers", self.path)
        return True
