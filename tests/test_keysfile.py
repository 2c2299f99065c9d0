"""The keys file of hashed lists: every key found in whichever block it sits, nothing else found, a fold's
merge equal to the plain set operation, and a damaged file refused at opening."""
from __future__ import annotations

import os
import random

import numpy as np
import pytest

from edge.lists import keysfile
from edge.lists.keysfile import (
    DENY,
    DETAILS,
    KEY,
    PER_BLOCK,
    KeysError,
    KeysFile,
    KeysWriter,
    merge,
)
from edge.lists.records import ListError, ListUnreadable


def write(path, records):
    writer = KeysWriter(path)
    for key, flags in records:
        writer.add(key, flags)
    assert writer.finish() == len(records)
    return KeysFile(path)


def random_keys(n, seed=1):
    rng = random.Random(seed)
    return sorted({rng.randbytes(KEY) for _ in range(n)})


@pytest.mark.parametrize("n", [0, 1, PER_BLOCK - 1, PER_BLOCK, PER_BLOCK + 1, 5 * PER_BLOCK + 7])
def test_every_key_is_found_with_its_flags_and_no_other(tmp_path, n):
    keys = random_keys(n)
    flags = [i % 4 for i in range(n)]
    f = write(tmp_path / "k", list(zip(keys, flags)))
    try:
        assert f.count == n and [f.find(k) for k in keys] == flags
        assert list(f) == list(zip(keys, flags))
        others = [bytes(KEY), b"\xff" * KEY] + random_keys(200, seed=2)
        assert all(f.find(k) is None for k in others if k not in set(keys))
        assert all(f.find(k[:8]) is None for k in keys[:20])  # a short key matches nothing
        # One block per PER_BLOCK records, plus the header and 8 bytes of fence per block.
        blocks = -(-n // PER_BLOCK)
        assert (tmp_path / "k").stat().st_size == keysfile.BLOCK * (1 + blocks) + 8 * blocks
    finally:
        f.close()


def test_keys_that_share_their_first_eight_bytes_across_blocks_are_found(tmp_path):
    # The in-memory fences hold 8-byte prefixes: a run of keys with one prefix spans several blocks.
    prefix = b"\x42" * 8
    keys = sorted({prefix + os.urandom(8) for _ in range(3 * PER_BLOCK)} | set(random_keys(PER_BLOCK)))
    f = write(tmp_path / "k", [(k, DENY) for k in keys])
    try:
        assert all(f.find(k) == DENY for k in keys)
        assert f.find(prefix + b"\x00" * 8) is None or prefix + b"\x00" * 8 in keys
    finally:
        f.close()


def test_a_key_is_never_found_straddling_two_records(tmp_path):
    keys = random_keys(PER_BLOCK)
    f = write(tmp_path / "k", [(k, 0) for k in keys])
    try:
        straddling = [keys[i][8:] + keys[i + 1][:8] for i in range(len(keys) - 1)]
        assert all(f.find(k) is None for k in straddling if k not in set(keys))
    finally:
        f.close()


@pytest.mark.parametrize("bad", [[b"b" * KEY, b"a" * KEY], [b"a" * KEY, b"a" * KEY], [b"short"], ["text" * 4]])
def test_keys_out_of_order_repeated_or_not_sixteen_bytes_are_refused(tmp_path, bad):
    writer = KeysWriter(tmp_path / "k")
    with pytest.raises(KeysError):
        for key in bad:
            writer.add(key, 0)
    writer.abandon()
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize("damage", ["truncated", "magic", "grown", "empty", "missing-header"])
def test_a_damaged_file_is_refused_at_opening(tmp_path, damage):
    path = tmp_path / "k"
    write(path, [(k, 0) for k in random_keys(3 * PER_BLOCK)]).close()
    data = path.read_bytes()
    path.write_bytes({"truncated": data[:-100], "magic": b"X" + data[1:], "grown": data + b"\0",
                      "empty": b"", "missing-header": data[keysfile.BLOCK:]}[damage])
    with pytest.raises(KeysError, match="not a whole keys file"):
        KeysFile(path).close()
    assert issubclass(KeysError, ListUnreadable) and issubclass(KeysError, ListError)  # as a damaged list


def test_a_merge_equals_the_set_operation(tmp_path):
    rng = random.Random(7)
    old = dict(zip(random_keys(20 * PER_BLOCK + 3), [0] * (20 * PER_BLOCK + 3)))
    f = write(tmp_path / "old", sorted(old.items()))
    over = {}
    for key in rng.sample(sorted(old), 700):  # changed or removed
        over[key] = (rng.choice([DENY, DETAILS, 0]), rng.random() < 0.5)
    for key in random_keys(900, seed=8):  # added, some below and above every old key
        over.setdefault(key, (DENY, False))
    over[bytes(KEY)] = (DENY, False)
    over[b"\xff" * KEY] = (0, False)
    keys = sorted(over)
    expected = dict(old)
    for key in keys:
        flags, removed = over[key]
        if removed:
            expected.pop(key, None)
        else:
            expected[key] = flags
    writer = KeysWriter(tmp_path / "new")
    merge(f, writer, np.frombuffer(b"".join(keys), dtype="S16"), np.array([over[k][0] for k in keys], np.uint8),
          np.array([over[k][1] for k in keys], bool), chunk_blocks=2)  # many chunks: overlay keys on their edges
    writer.finish()
    f.close()
    new = KeysFile(tmp_path / "new")
    try:
        assert list(new) == sorted(expected.items())
        assert all(new.find(k) == v for k, v in expected.items())
    finally:
        new.close()


def test_a_merge_into_an_empty_file(tmp_path):
    f = write(tmp_path / "old", [])
    keys = random_keys(10)
    writer = KeysWriter(tmp_path / "new")
    merge(f, writer, np.frombuffer(b"".join(keys), dtype="S16"), np.ones(10, np.uint8), np.zeros(10, bool))
    writer.finish()
    new = KeysFile(tmp_path / "new")
    try:
        assert list(new) == [(k, 1) for k in keys]
    finally:
        new.close()


def test_a_file_cut_short_after_opening_fails_the_lookup_loudly(tmp_path):
    keys = random_keys(3 * PER_BLOCK)
    f = write(tmp_path / "k", [(k, 0) for k in keys])
    try:
        os.truncate(tmp_path / "k", keysfile.BLOCK)  # the card lost the rest
        with pytest.raises(KeysError, match="could not be read"):
            f.find(keys[-1])
    finally:
        f.close()
