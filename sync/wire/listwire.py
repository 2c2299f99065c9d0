"""List records on the wire: a snapshot's chunks and a delta's body, zlib-compressed, columnar.

    u8   format (1)
    u8   key length: 16 for keyed hashes, 0 for text codes (then each key is u16 length + UTF-8)
    u32  n records (big-endian, as every integer here)
    keys
    n bytes of flags: 1 deny, 2 removed (deltas only: the key alone), 4 has extras, 8 changed (deltas only:
                      the key is already on the list; without 2 or 8 a delta's record is new)
    u32  length + JSON array of [label, valid_from, valid_until], one per record with extras, in order

Fixed-size hashed keys decode by slicing, so a 10-million-entry list costs no per-field parsing.
Records are sorted by key: the device appends them in order and its B-tree pages come out full.
"""
from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, cast

from edge.common.payload import has_bad_control
from edge.lists import HASH_BYTES, MAX_LABEL
from sync.wire.errors import RecordsError

FORMAT = 1
DENY, REMOVED, EXTRAS, CHANGED = 1, 2, 4, 8
MAX_RECORDS = 1_000_000
MAX_BODY = 64 << 20
MAX_TEXT_KEY = 8192


Code = str | bytes  # the code as read (a text key), or its keyed hash (HASH_BYTES)
# (code, deny, label, valid_from, valid_until): one list entry as the list store takes it
Record = tuple[Code, bool, str | None, int | None, int | None]


class Changes(NamedTuple):
    """A snapshot chunk is all `added`; a delta says which codes are new, changed or removed, so a device
    holding other contents than the delta's base finds out exactly (and applies nothing)."""
    added: list[Record]
    changed: list[Record]
    removed: list[Code]


def _flags(record: Sequence[object], extra: int) -> tuple[Code, int, Sequence[object]]:
    has_extras = (record[2], record[3], record[4]) != (None, None, None)
    return cast(Code, record[0]), (DENY if record[1] else 0) | (EXTRAS if has_extras else 0) | extra, record[2:]


def encode(records: Iterable[Sequence[object]], *, key_len: int, changed: Iterable[Sequence[object]] = (),
           removals: Iterable[Code] = ()) -> bytes:
    """records (new) and changed: (code, deny, label, valid_from, valid_until); removals: codes."""
    rows = [_flags(r, 0) for r in records] + [_flags(r, CHANGED) for r in changed] + [
        (code, REMOVED, ()) for code in removals]
    rows.sort(key=lambda r: r[0])
    keys = bytearray()
    for code, _, _ in rows:
        raw = code if isinstance(code, bytes) else code.encode("utf-8")
        if key_len:
            if len(raw) != key_len:
                raise ValueError(f"key of {len(raw)} bytes in a list of {key_len}-byte keys")
            keys += raw
        else:
            keys += struct.pack(">H", len(raw)) + raw
    extras = json.dumps([list(r[2]) for r in rows if r[1] & EXTRAS], ensure_ascii=False,
                        separators=(",", ":")).encode()
    body = (struct.pack(">BBI", FORMAT, key_len, len(rows)) + bytes(keys) + bytes(r[1] for r in rows)
            + struct.pack(">I", len(extras)) + extras)
    return zlib.compress(body, 6)


def _inflate(data: bytes) -> bytes:
    d = zlib.decompressobj()
    try:
        body = d.decompress(data, MAX_BODY)
    except zlib.error as exc:
        raise RecordsError(f"not a zlib stream: {exc}") from None
    if d.unconsumed_tail or not d.eof:
        raise RecordsError(f"records larger than {MAX_BODY} bytes, or cut short")
    return body


def decode(data: bytes, *, key_len: int) -> Changes:
    """Keys are bytes when key_len is set, else validated text."""
    body = _inflate(data)
    if len(body) < 6:
        raise RecordsError("records cut short")
    fmt, klen, n = struct.unpack_from(">BBI", body)
    if fmt != FORMAT or klen != key_len:
        raise RecordsError(f"records of format {fmt} with {klen}-byte keys; expected {key_len}-byte keys")
    if n > MAX_RECORDS:
        raise RecordsError(f"{n} records in one message, at most {MAX_RECORDS}")
    pos = 6
    if key_len:
        end = pos + n * key_len
        if end > len(body):
            raise RecordsError("keys cut short")
        keys: list[Code] = [body[i:i + key_len] for i in range(pos, end, key_len)]
        pos = end
    else:
        keys = []  # texts
        for _ in range(n):
            if pos + 2 > len(body):
                raise RecordsError("keys cut short")
            (length,) = struct.unpack_from(">H", body, pos)
            raw = body[pos + 2:pos + 2 + length]
            pos += 2 + length
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise RecordsError("a code is not UTF-8") from None
            if len(raw) != length or not text or length > MAX_TEXT_KEY or has_bad_control(text):
                raise RecordsError(f"bad code {text[:40]!r}")
            keys.append(text)
    flags = body[pos:pos + n]
    pos += n
    if len(flags) != n or pos + 4 > len(body):
        raise RecordsError("flags cut short")
    (length,) = struct.unpack_from(">I", body, pos)
    try:
        extras = json.loads(body[pos + 4:pos + 4 + length].decode("utf-8"))
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, a huge integer, arrays nested too deep
        raise RecordsError("extras are not JSON") from None
    if pos + 4 + length != len(body) or not isinstance(extras, list):
        raise RecordsError("trailing bytes after the records")
    return _records(keys, flags, extras)


def _records(keys: list[Code], flags: bytes, extras: list[object]) -> Changes:
    changes, extra = Changes([], [], []), iter(extras)
    previous: Any = None  # keys are all texts or all hashes: they compare with each other
    for key, flag in zip(keys, flags):
        if previous is not None and key <= previous:
            raise RecordsError("records are not in ascending key order, or repeat a key")
        previous = key
        if flag & REMOVED:
            if flag != REMOVED:
                raise RecordsError("a removed record carries data")
            changes.removed.append(key)
            continue
        if flag & ~(DENY | EXTRAS | CHANGED):
            raise RecordsError(f"unknown flags {flag:#x}")
        label = valid_from = valid_until = None
        if flag & EXTRAS:
            item = next(extra, None)
            if not (isinstance(item, list) and len(item) == 3):
                raise RecordsError("extras do not match the records")
            label, valid_from, valid_until = item
            if not (label is None or (isinstance(label, str) and len(label) <= MAX_LABEL)) or not all(
                    v is None or (type(v) is int and -2**62 < v < 2**62) for v in (valid_from, valid_until)):
                raise RecordsError("bad label or validity window")
        (changes.changed if flag & CHANGED else changes.added).append(
            (key, bool(flag & DENY), label, valid_from, valid_until))
    if next(extra, None) is not None:
        raise RecordsError("more extras than records")
    return changes


def key_len(hash_key: str | None) -> int:
    return HASH_BYTES if hash_key else 0
