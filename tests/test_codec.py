"""The batch format: exact round trip, and hostile bytes refused with a reason."""
from __future__ import annotations

import random
import uuid
import zlib

import pytest

from sync.codec import MAX_BODY_BYTES, BatchError, WireEntry, decode_batch, encode_batch, encode_body


def sample(n=50, seed=1):
    rng = random.Random(seed)
    wall, mono, out = 1_790_000_000_000, 5 * 10**12, []
    for i in range(n):
        wall += rng.randint(-2000, 5000)  # wall clocks jump, even backwards
        mono += rng.randint(1, 10**10)
        out.append(WireEntry(str(uuid.uuid4()), 3 * i + 1, wall, mono, rng.choice(["boot-a", "boot-b"]),
                             "opencv:/dev/video0", rng.choice(["079203001234", "Phạm Thu Hương", "x" * 2048]),
                             rng.choice(["allow", "deny", "review"]), "listed",
                             rng.choice([None, "vaccinated"]), rng.choice([None, 0, 7, 2**40]),
                             rng.choice([None, "sha256:abc"])))
    return out


def test_round_trip_is_exact():
    entries = sample()
    batch = decode_batch(encode_batch("cp-01", 1_790_000_100_000, entries))
    assert (batch.device_id, batch.sent_ms, batch.entries) == ("cp-01", 1_790_000_100_000, entries)


def test_twelve_digit_ids_cost_under_40_bytes_each():
    rng = random.Random(2)
    wall, mono, entries = 1_790_000_000_000, 10**12, []
    for i in range(500):
        wall += rng.randint(500, 5000)
        mono += rng.randint(500, 5000) * 10**6 + rng.randint(0, 999_999)
        entries.append(WireEntry(str(uuid.uuid4()), i + 1, wall, mono, "b" * 36, "opencv:/dev/video0",
                                 "".join(rng.choice("0123456789") for _ in range(12)), "allow", "listed",
                                 "vaccinated", 7, "sha256:abcdef123456"))
    assert len(encode_batch("cp-hanoi-01", wall, entries)) / 500 <= 40


def _deflated(body: bytes) -> bytes:
    return b"\x01" + zlib.compress(body)


@pytest.mark.parametrize("message, reason", [
    (b"", "empty"),
    (b"\x07" + zlib.compress(b"x"), "unknown batch format"),
    (b"\x01not deflate at all", "not a deflate stream"),
    (b"\x01" + zlib.compress(encode_body("d", 1, sample(3)))[:-6], "truncated"),
    (_deflated(encode_body("d", 1, sample(3))[:-3]), "truncated"),
    (_deflated(encode_body("d", 1, sample(3)) + b"\x00\x00"), "bytes after the last entry"),
    (_deflated(b"\x01d\x01\x00\xff\xff\xff\xff\x0f"), "entries, over"),
    (_deflated(b"\x01d\x01\x05"), "truncated"),
    (_deflated(b"\x02\xff\xfe"), "not UTF-8"),
    (_deflated(b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"), "varint too long"),
    (_deflated(b"\xff\xff\x03" + b"a" * 10), "string of"),
    (b"\x01" + zlib.compress(b"\x00" * (MAX_BODY_BYTES + 10)), "body larger than"),  # a zip bomb
    (b"\x01" + b"\x00" * (2 << 20), "over"),
])
def test_hostile_batches(message, reason):
    with pytest.raises(BatchError, match=reason):
        decode_batch(message)


def test_string_index_out_of_range():
    entries = sample(1)
    body = bytearray(encode_body("d", 1, entries))
    # the string table count sits right after the device id and sent_ms: claim no strings at all
    body[3] = 0
    with pytest.raises(BatchError):
        decode_batch(_deflated(bytes(body)))


def test_random_garbage_never_crashes():
    rng = random.Random(5)
    good = encode_body("dev", 123, sample(5))
    for _ in range(2000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            decode_batch(_deflated(bytes(data)))
        except BatchError:
            pass
