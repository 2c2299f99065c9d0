"""The entries batch on the wire: compact, versioned, and decoded defensively.

A batch is one MQTT message on `<prefix>/<device>/entries`:

    byte 0        format version (1 or 2)
    bytes 1..     zlib (deflate) stream of the body

The body is a sequence of unsigned LEB128 varints (`uv`), zigzag-signed varints (`sv`) and strings
(`str` = uv length + UTF-8 bytes):

    str  device id                 (must equal the device in the topic)
    uv   sent_ms                   (device wall clock when the batch was sent; gives the clock offset)
    uv   n strings, then n str     (string table: boot ids, sources, decisions, reasons, lists, config versions)
    uv   n entries, then per entry:
         16 bytes  entry id (UUID)
         uv   seq delta            (from the previous entry's seq; the first from 0)
         sv   wall_ms - sent_ms
         sv   mono_ns delta        (from the previous entry's mono_ns; the first from 0)
         uv   boot id, source, decision, reason (string table indexes)
         str  code
         uv   list name (0 none, else index + 1), list version (0 none, else version + 1)
         uv   config version (0 none, else index + 1)
         uv   clock state (string table index: ok, unsynchronised, jumped-back, ...)
      version 2 only, two more per entry (an officer's review answer or manual entry):
         uv   ref id: the reviewed entry's id (0 none, else index + 1)
         uv   officer's name (0 none, else index + 1)

Repeated strings cost one byte each; ids are the only incompressible part. A 12-digit code's entry
comes to about 30 bytes on the wire.

Versions: a batch is written as version 1 whenever none of its entries carries a ref id or an officer
(every scan), so a hub from before version 2 goes on taking them; only a batch holding an officer's entry is
version 2, which such a hub refuses cleanly ("unknown batch format 2") and keeps aside (its first 4 KiB), while
the device, acknowledged by the broker, counts it as sent. So: upgrade the hub before turning on the officer
page. This decoder reads both.
"""
from __future__ import annotations

import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from edge.entries.record import wire_mismatches
from sync.wire.errors import BatchError

VERSION = 2                     # the newest format; encode_batch writes 1 when 2 adds nothing
VERSIONS = (1, 2)
MAX_WIRE_BYTES = 1 << 20        # larger messages are refused before any decompression
MAX_BODY_BYTES = 8 << 20        # decompression stops here: a zip bomb cannot fill memory
MAX_ENTRIES = 20_000
MAX_STRING = 8192
INT64_MAX = (1 << 63) - 1       # every number lands in a signed 64-bit column at the hub


@dataclass(frozen=True, slots=True)
class WireEntry:
    id: str
    seq: int
    wall_ms: int
    mono_ns: int
    boot_id: str
    source: str
    code: str
    decision: str
    reason: str
    list_name: str | None
    list_version: int | None
    config_version: str | None
    clock: str = "ok"
    ref_id: str | None = None
    officer: str | None = None


# The record's wire fields (edge/entries/record.py), in order, with their types: a field added to the entry
# record and not here stops the import, so it cannot be left off the wire by mistake.
if _differs := wire_mismatches((f.name, f.type) for f in fields(WireEntry)):
    raise TypeError(f"sync.wire.codec.WireEntry: {_differs[0]}")


@dataclass(frozen=True, slots=True)
class Batch:
    device_id: str
    sent_ms: int
    entries: list[WireEntry]


# ---- encoding -----------------------------------------------------------------------------------
def _uv(out: bytearray, value: int) -> None:
    if 0 <= value < 0x80:
        out.append(value)  # the common case: one byte
        return
    if value < 0:
        raise ValueError("negative value for an unsigned varint")
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _sv(out: bytearray, value: int) -> None:
    _uv(out, (value << 1) if value >= 0 else ((-value << 1) - 1))


def _str(out: bytearray, text: str) -> None:
    data = text.encode("utf-8")
    _uv(out, len(data))
    out += data


def _needs_v2(entries: Sequence[object]) -> bool:
    return any(getattr(e, "ref_id", None) is not None or getattr(e, "officer", None) is not None for e in entries)


def encode_body(device_id: str, sent_ms: int, entries: Sequence[Any], version: int = 1) -> bytes:
    """Entries are anything with WireEntry's attributes (the device's store rows). Version 1 leaves out
    ref_id and officer."""
    table: dict[str, int] = {}

    def index(text: str) -> int:
        found = table.get(text)
        if found is None:
            found = table[text] = len(table)
        return found

    rows = bytearray()
    _uv(rows, len(entries))
    prev_seq = prev_mono = 0
    for e in entries:
        rows += bytes.fromhex(e.id.replace("-", ""))  # the UUID's 16 bytes, without building a UUID
        _uv(rows, e.seq - prev_seq)
        _sv(rows, e.wall_ms - sent_ms)
        _sv(rows, e.mono_ns - prev_mono)
        prev_seq, prev_mono = e.seq, e.mono_ns
        for text in (e.boot_id, e.source, e.decision, e.reason):
            _uv(rows, index(text))
        _str(rows, e.code)
        _uv(rows, 0 if e.list_name is None else index(e.list_name) + 1)
        _uv(rows, 0 if e.list_version is None else e.list_version + 1)
        _uv(rows, 0 if e.config_version is None else index(e.config_version) + 1)
        _uv(rows, index(e.clock))
        if version >= 2:
            _uv(rows, 0 if e.ref_id is None else index(e.ref_id) + 1)
            _uv(rows, 0 if e.officer is None else index(e.officer) + 1)
    head = bytearray()
    _str(head, device_id)
    _uv(head, sent_ms)
    _uv(head, len(table))
    for text in table:
        _str(head, text)
    return bytes(head + rows)


def encode_batch(device_id: str, sent_ms: int, entries: Sequence[Any]) -> bytes:
    version = 2 if _needs_v2(entries) else 1
    return bytes([version]) + zlib.compress(encode_body(device_id, sent_ms, entries, version), 6)


# ---- decoding -----------------------------------------------------------------------------------
class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def uv(self) -> int:
        value = shift = 0
        while True:
            if self.pos >= len(self.data):
                raise BatchError("truncated")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if value > INT64_MAX:  # the tenth byte may carry only one more bit, and that bit is the sign
                    raise BatchError("varint over 2^63-1")
                return value
            shift += 7
            if shift > 63:
                raise BatchError("varint too long")

    def sv(self) -> int:
        raw = self.uv()
        return (raw >> 1) if not raw & 1 else -((raw + 1) >> 1)

    def raw(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise BatchError("truncated")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def str(self) -> str:
        size = self.uv()
        if size > MAX_STRING:
            raise BatchError(f"string of {size} bytes")
        try:
            return self.raw(size).decode("utf-8")
        except UnicodeDecodeError:
            raise BatchError("string is not UTF-8") from None


def _in_range(name: str, value: int, low: int = 0) -> int:
    # Checked here, not at the database: an OverflowError at the insert would stop the collector.
    if not low <= value <= INT64_MAX:
        raise BatchError(f"{name} {value} out of range")
    return value


def decode_batch(message: bytes) -> Batch:
    if not message:
        raise BatchError("empty message")
    if len(message) > MAX_WIRE_BYTES:
        raise BatchError(f"message of {len(message)} bytes, over {MAX_WIRE_BYTES}")
    version = message[0]
    if version not in VERSIONS:
        raise BatchError(f"unknown batch format {version}")
    inflater = zlib.decompressobj()
    try:
        body = inflater.decompress(message[1:], MAX_BODY_BYTES)
    except zlib.error as exc:
        raise BatchError(f"not a deflate stream ({exc})") from None
    if inflater.unconsumed_tail:
        raise BatchError(f"body larger than {MAX_BODY_BYTES} bytes")
    if not inflater.eof:
        raise BatchError("truncated")
    r = _Reader(body)
    device_id = r.str()
    sent_ms = r.uv()
    n_strings = r.uv()
    if n_strings > 6 * MAX_ENTRIES + 16:  # room for ids and names per entry; the body's cap bounds the rest
        raise BatchError(f"{n_strings} strings")
    table = [r.str() for _ in range(n_strings)]

    def text(index: int) -> str:
        if index >= len(table):
            raise BatchError(f"string index {index} out of range")
        return table[index]

    count = r.uv()
    if count > MAX_ENTRIES:
        raise BatchError(f"{count} entries, over {MAX_ENTRIES}")
    entries = []
    seq = mono = 0
    for _ in range(count):
        entry_id = str(uuid.UUID(bytes=r.raw(16)))
        seq = _in_range("seq", seq + r.uv(), 1)
        wall = _in_range("wall_ms", sent_ms + r.sv())
        mono = _in_range("mono_ns", mono + r.sv())
        boot, source, decision, reason = (text(r.uv()) for _ in range(4))
        code = r.str()
        list_index, list_version, config_index = r.uv(), r.uv(), r.uv()
        clock = text(r.uv())
        ref_index, officer_index = (r.uv(), r.uv()) if version >= 2 else (0, 0)
        entries.append(WireEntry(
            entry_id, seq, wall, mono, boot, source, code, decision, reason,
            text(list_index - 1) if list_index else None, list_version - 1 if list_version else None,
            text(config_index - 1) if config_index else None, clock,
            text(ref_index - 1) if ref_index else None, text(officer_index - 1) if officer_index else None))
    if r.pos != len(body):
        raise BatchError(f"{len(body) - r.pos} bytes after the last entry")
    return Batch(device_id, sent_ms, entries)
