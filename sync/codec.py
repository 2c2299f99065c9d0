"""The entries batch on the wire: compact, versioned, and decoded defensively.

A batch is one MQTT message on `<prefix>/<device>/entries`:

    byte 0        format version (1)
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

Repeated strings cost one byte each; ids are the only incompressible part. A 12-digit code's entry
comes to about 30 bytes on the wire.
"""
from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass

VERSION = 1
MAX_WIRE_BYTES = 1 << 20        # larger messages are refused before any decompression
MAX_BODY_BYTES = 8 << 20        # decompression stops here: a zip bomb cannot fill memory
MAX_ENTRIES = 20_000
MAX_STRING = 8192


class BatchError(ValueError):
    """A batch that cannot be decoded; the message says why."""


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


def encode_body(device_id: str, sent_ms: int, entries) -> bytes:
    """Entries are anything with WireEntry's attributes (the device's store rows)."""
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
    head = bytearray()
    _str(head, device_id)
    _uv(head, sent_ms)
    _uv(head, len(table))
    for text in table:
        _str(head, text)
    return bytes(head + rows)


def encode_batch(device_id: str, sent_ms: int, entries) -> bytes:
    return bytes([VERSION]) + zlib.compress(encode_body(device_id, sent_ms, entries), 6)


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


def decode_batch(message: bytes) -> Batch:
    if not message:
        raise BatchError("empty message")
    if len(message) > MAX_WIRE_BYTES:
        raise BatchError(f"message of {len(message)} bytes, over {MAX_WIRE_BYTES}")
    if message[0] != VERSION:
        raise BatchError(f"unknown batch format {message[0]}")
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
    if n_strings > 4 * MAX_ENTRIES + 16:
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
        seq += r.uv()
        wall = sent_ms + r.sv()
        mono += r.sv()
        boot, source, decision, reason = (text(r.uv()) for _ in range(4))
        code = r.str()
        list_index, list_version, config_index = r.uv(), r.uv(), r.uv()
        entries.append(WireEntry(
            entry_id, seq, wall, mono, boot, source, code, decision, reason,
            text(list_index - 1) if list_index else None, list_version - 1 if list_version else None,
            text(config_index - 1) if config_index else None, text(r.uv())))
    if r.pos != len(body):
        raise BatchError(f"{len(body) - r.pos} bytes after the last entry")
    return Batch(device_id, sent_ms, entries)
