"""The keys of a hashed list in a file of fixed-width records, sorted, in 4 KiB blocks.

A record is a 16-byte keyed hash and a flag byte: DENY, and DETAILS when the entry has a label or a
validity window, which stay in the list's SQLite file. 17 bytes an entry, where a SQLite B-tree of the
same keys takes 25 (inserted in order) and its lookup walks four pages; here a lookup is one bisect
over the blocks' first keys, held in memory (8 bytes a block, 333 KB for 10 million entries), one read
of a 4 KiB block and a search within it. Plain Python: the lookup in C it replaces saved 1.5 µs
warm and 8-25 µs cold here, and cost a C compiler on every Pi. The file is written once and never
changed: a fold writes a new one.

Layout: a header block (MAGIC, record count), then data blocks of PER_BLOCK keys followed by their
PER_BLOCK flag bytes, then the blocks' first-key prefixes (big-endian, 8 bytes each).
"""
from __future__ import annotations

import os
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edge.common.sqlite import FILE_MODE, open_private
from edge.lists.records import ListUnreadable

KEY = 16
BLOCK = 4096
PER_BLOCK = BLOCK // (KEY + 1)  # 240 records: 3840 bytes of keys, 240 flag bytes, 16 spare
FLAGS_AT = PER_BLOCK * KEY
MAGIC = b"CPKEYS1\n"
HEADER = struct.Struct("<8sQ")
DENY, DETAILS = 1, 2
CHUNK_BLOCKS = 256  # a fold merges this many blocks at a time: about 1 MB, whatever the list's size
# A writer's blocks reach the kernel 1 MiB at a time. Each write lets go of the GIL for a moment; one every
# two 4 KiB blocks (the default buffer) kept restarting the 1 ms a waiting thread counts before it asks for
# the GIL, so the scanner got it back only by winning a race: lookups waited 15-35 ms while a list was built.
WRITE_BUFFER = 1 << 20


class KeysError(ListUnreadable):
    """A keys file that is damaged, was not written whole, or was given keys out of order: unreadable like
    a damaged list file, so that a scan meets it as it meets one."""


def _prefixes(data: bytes) -> array[int]:
    fences = array("Q")
    fences.frombytes(data)
    if sys.byteorder == "little":
        fences.byteswap()
    return fences


class KeysFile:
    """An open keys file; safe to share between threads (pread only)."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(self.fd).st_size
            magic, self.count = HEADER.unpack(os.pread(self.fd, HEADER.size, 0).ljust(HEADER.size, b"\0"))
            self.blocks = -(-self.count // PER_BLOCK)
            fences_at = BLOCK * (1 + self.blocks)
            if magic != MAGIC or size != fences_at + 8 * self.blocks:
                raise KeysError(f"{path}: not a whole keys file ({size} bytes)")
            self.fences = _prefixes(os.pread(self.fd, 8 * self.blocks, fences_at))
        except BaseException:
            os.close(self.fd)
            raise

    def close(self) -> None:
        os.close(self.fd)

    def _block(self, b: int) -> tuple[bytes, int]:
        """Block b's bytes and how many records it holds."""
        data = os.pread(self.fd, BLOCK, BLOCK * (1 + b))
        if len(data) != BLOCK:
            raise KeysError(f"{self.path}: a block could not be read")
        return data, min(PER_BLOCK, self.count - b * PER_BLOCK)

    def find(self, key: str | bytes) -> int | None:
        """The flags of `key`, None if it is not in the file (a text code never is)."""
        if not isinstance(key, bytes) or len(key) != KEY:
            return None  # a shorter key would match the start of a record
        prefix = int.from_bytes(key[:8], "big")
        last = bisect_right(self.fences, prefix) - 1
        if last < 0:
            return None  # below every key
        first = last if self.fences[last] != prefix else max(bisect_left(self.fences, prefix) - 1, 0)
        # Blocks whose first key shares the prefix may hold the key, and so may the one before them.
        for b in range(first, last + 1):
            data, n = self._block(b)
            at = data.find(key, 0, n * KEY)
            while at >= 0:
                if at % KEY == 0:
                    return data[FLAGS_AT + at // KEY]
                at = data.find(key, at + 1, n * KEY)
        return None

    def chunks(self, blocks: int = CHUNK_BLOCKS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(keys, flags) arrays of `blocks` blocks at a time, in key order."""
        for first in range(0, self.blocks, blocks):
            last = min(first + blocks, self.blocks)
            data = np.frombuffer(os.pread(self.fd, BLOCK * (last - first), BLOCK * (1 + first)), dtype=np.uint8)
            data = data.reshape(last - first, BLOCK)
            n = min(self.count - first * PER_BLOCK, (last - first) * PER_BLOCK)
            keys = np.ascontiguousarray(data[:, :FLAGS_AT]).view("S16").reshape(-1)[:n]
            flags = data[:, FLAGS_AT:FLAGS_AT + PER_BLOCK].reshape(-1)[:n]
            yield keys, flags

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        for keys, flags in self.chunks():
            raw = keys.tobytes()
            yield from zip((raw[i:i + KEY] for i in range(0, len(raw), KEY)), flags.tolist())


def create_private(path: Path) -> BinaryIO:
    """A new file open for writing with FILE_MODE whatever the umask: a list's keys are personal data."""
    fd = open_private(path, os.O_WRONLY | os.O_TRUNC, FILE_MODE)
    try:
        return os.fdopen(fd, "wb", buffering=WRITE_BUFFER)
    except BaseException:
        os.close(fd)
        raise


class KeysWriter:
    """Writes a keys file from records in strictly ascending key order; nothing names it until finish()."""

    def __init__(self, path: Path):
        self.path = path
        self.fh = create_private(path)
        self.fh.write(bytes(BLOCK))
        self.keys = bytearray()
        self.flags = bytearray()
        self.fences = bytearray()
        self.count = 0
        self.last = b""

    def add(self, key: str | bytes, flags: int) -> None:
        if not isinstance(key, bytes) or len(key) != KEY:
            raise KeysError(f"a key that is not {KEY} bytes ({str(key)[:40]}); a hashed list holds keyed hashes")
        if key <= self.last:
            raise KeysError("keys out of order or repeated")
        self.last = key
        self.keys += key
        self.flags.append(flags)
        self.count += 1
        if len(self.flags) == PER_BLOCK:
            self._flush()

    def add_arrays(self, keys: np.ndarray, flags: np.ndarray) -> None:
        """Many records at once (S16 keys, already sorted and distinct, all above those before)."""
        if not len(keys):
            return
        raw = keys.tobytes()
        if raw[:KEY] <= self.last:
            raise KeysError("keys out of order or repeated")
        at = 0
        while at < len(keys):
            take = min(PER_BLOCK - len(self.flags), len(keys) - at)
            self.keys += raw[at * KEY:(at + take) * KEY]
            self.flags += flags[at:at + take].tobytes()
            at += take
            if len(self.flags) == PER_BLOCK:
                self._flush()
        self.count += len(keys)
        self.last = raw[-KEY:]

    def _flush(self) -> None:
        if not self.flags:
            return
        self.fences += self.keys[:8]
        self.fh.write(bytes(self.keys).ljust(FLAGS_AT, b"\0") + bytes(self.flags).ljust(BLOCK - FLAGS_AT, b"\0"))
        self.keys.clear()
        self.flags.clear()

    def finish(self) -> int:
        """Write the fences and the header and sync the file to disk; returns the record count."""
        self._flush()
        self.fh.write(self.fences)
        self.fh.seek(0)
        self.fh.write(HEADER.pack(MAGIC, self.count))
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        return self.count

    def abandon(self) -> None:
        self.fh.close()
        self.path.unlink(missing_ok=True)


def merge(old: KeysFile, writer: KeysWriter, keys: np.ndarray, flags: np.ndarray, removed: np.ndarray, *,
          chunk_blocks: int = CHUNK_BLOCKS) -> None:
    """Write old's records with an overlay applied: `keys` (sorted S16) replace or remove old records with
    the same key, and add the others; chunk_blocks blocks of old at a time, so memory does not grow with
    the list."""
    taken = 0
    chunks = old.chunks(chunk_blocks)
    current = next(chunks, None)
    while current is not None:
        following = next(chunks, None)
        # Overlay keys below the next chunk's first key belong with this chunk.
        upto = len(keys) if following is None else int(np.searchsorted(keys, following[0][:1], "left")[0])
        _write_merged(writer, *current, keys[taken:upto], flags[taken:upto], removed[taken:upto])
        taken, current = upto, following
    if taken < len(keys):  # an empty old file
        _write_merged(writer, keys[:0], flags[:0], keys[taken:], flags[taken:], removed[taken:])


def _write_merged(writer: KeysWriter, old_keys: np.ndarray, old_flags: np.ndarray, keys: np.ndarray,
                  flags: np.ndarray, removed: np.ndarray) -> None:
    if len(keys):
        at = np.searchsorted(keys, old_keys).clip(max=len(keys) - 1)
        keep = keys[at] != old_keys
        add = ~removed
        all_keys = np.concatenate([old_keys[keep], keys[add]])
        order = np.argsort(all_keys, kind="stable")
        old_keys, old_flags = all_keys[order], np.concatenate([old_flags[keep], flags[add]])[order]
    writer.add_arrays(old_keys, old_flags)
