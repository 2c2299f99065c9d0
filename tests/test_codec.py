"""The batch format: exact round trip, and hostile bytes refused with a reason."""
from __future__ import annotations

import dataclasses
import json
import random
import uuid
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.wire.codec import (
    INT64_MAX,
    MAX_BODY_BYTES,
    BatchError,
    WireEntry,
    decode_batch,
    encode_batch,
    encode_body,
)


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


def _deflated(body: bytes, version: int = 1) -> bytes:
    return bytes([version]) + zlib.compress(body)


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


# ---- properties: bytes from outside give a Batch whose numbers fit the hub's columns, or BatchError ----
def _decoded_or_refused(message: bytes):
    try:
        batch = decode_batch(message)
    except BatchError:
        return None
    assert 0 <= batch.sent_ms <= INT64_MAX
    for e in batch.entries:
        assert 1 <= e.seq <= INT64_MAX and 0 <= e.wall_ms <= INT64_MAX and 0 <= e.mono_ns <= INT64_MAX
        assert e.list_version is None or 0 <= e.list_version <= INT64_MAX
    return batch


@given(st.binary(max_size=4096), st.booleans())
def test_arbitrary_bytes_are_refused_cleanly(data, deflate):
    _decoded_or_refused(_deflated(data) if deflate else data)


GENUINE = encode_body("dev", 1_790_000_100_000, sample(8, seed=3))


@given(st.lists(st.tuples(st.sampled_from(["set", "insert", "delete"]), st.integers(0, len(GENUINE) - 1),
                          st.integers(0, 255)), min_size=1, max_size=12))
def test_mutated_genuine_batches_are_refused_cleanly(edits):
    body = bytearray(GENUINE)
    for op, at, byte in edits:
        at %= max(len(body), 1)
        if op == "set" and body:
            body[at] = byte
        elif op == "insert":
            body[at:at] = bytes([byte]) * (1 + byte % 11)  # runs of 0x80/0xff make long varints
        elif body:
            del body[at]
    _decoded_or_refused(_deflated(bytes(body)))


HUGE = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([INT64_MAX, INT64_MAX + 1, 2**64, -(2**63), 0, 1]))
TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30)  # control characters too


@given(st.lists(st.builds(
    WireEntry, id=st.uuids().map(str), seq=HUGE, wall_ms=HUGE, mono_ns=HUGE, boot_id=TEXT, source=TEXT, code=TEXT,
    decision=st.sampled_from(["allow", "deny", "review"]), reason=TEXT, list_name=st.none() | TEXT,
    list_version=st.none() | HUGE, config_version=st.none() | TEXT, clock=TEXT, ref_id=st.none() | TEXT,
    officer=st.none() | TEXT), max_size=5), HUGE, st.sampled_from([1, 2]))
def test_hand_built_bodies_with_huge_numbers(entries, sent_ms, version):
    try:
        body = encode_body("dev", sent_ms, entries, version)
    except ValueError:
        return  # the encoder refuses what the device can never hold (a negative unsigned field)
    batch = _decoded_or_refused(_deflated(body, version))
    fits = all(1 <= e.seq <= INT64_MAX and 0 <= e.wall_ms <= INT64_MAX and 0 <= e.mono_ns <= INT64_MAX
               and (e.list_version is None or e.list_version < INT64_MAX) for e in entries)
    if version == 1:  # the old format has no room for them
        entries = [dataclasses.replace(e, ref_id=None, officer=None) for e in entries]
    if batch is not None and fits and 0 <= sent_ms <= INT64_MAX:
        assert batch.entries == entries  # what fits comes back exactly


@pytest.mark.parametrize("body, reason", [
    (b"\x01d" + b"\xff" * 9 + b"\x01", "varint over"),                        # sent_ms of 2^63
    (encode_body("d", 1, [WireEntry(str(uuid.uuid4()), 2**63, 1, 1, "b", "s", "c", "allow", "r", None, None,
                                    None)]), "varint over"),
])
def test_numbers_beyond_64_bits_are_refused(body, reason):
    with pytest.raises(BatchError, match=reason):
        decode_batch(_deflated(body))


def test_sums_beyond_64_bits_are_refused():
    first = WireEntry(str(uuid.uuid4()), INT64_MAX - 5, 1, 1, "b", "s", "c", "allow", "r", None, None, None)
    body = encode_body("d", 1, [first, dataclasses.replace(first, id=str(uuid.uuid4()), seq=INT64_MAX + 2**40)])
    with pytest.raises(BatchError, match="seq .* out of range"):
        decode_batch(_deflated(body))
    zero = dataclasses.replace(first, seq=0)
    with pytest.raises(BatchError, match="seq 0 out of range"):
        decode_batch(_deflated(encode_body("d", 1, [zero])))


# ---- version 2: an officer's review answer and manual entry carry ref_id and officer ----------------
def officer_entries():
    scans = sample(6, seed=4)
    answer = dataclasses.replace(scans[1], id=str(uuid.uuid4()), seq=100, source="review", reason="officer",
                                 ref_id=scans[0].id, officer="Nguyễn Văn An")
    manual = dataclasses.replace(scans[2], id=str(uuid.uuid4()), seq=101, source="manual", officer="Nguyễn Văn An")
    return scans, [*scans, answer, manual]


def test_officer_fields_round_trip_in_version_2():
    _, entries = officer_entries()
    message = encode_batch("cp-01", 1_790_000_100_000, entries)
    assert message[0] == 2
    batch = decode_batch(message)
    assert batch.entries == entries
    assert (batch.entries[-2].ref_id, batch.entries[-2].officer) == (entries[0].id, "Nguyễn Văn An")
    assert (batch.entries[-1].ref_id, batch.entries[-1].officer) == (None, "Nguyễn Văn An")


def test_plain_scans_still_go_as_version_1_for_older_hubs():
    scans, _ = officer_entries()
    message = encode_batch("cp-01", 1_790_000_100_000, scans)
    assert message[0] == 1  # what a hub from before version 2 decodes
    assert decode_batch(message).entries == scans


def test_version_1_batches_from_older_devices_still_decode():
    # Bytes as a device from before version 2 wrote them: no trailing ref id and officer per entry.
    scans, _ = officer_entries()
    old = b"\x01" + zlib.compress(encode_body("cp-old", 1_790_000_100_000, scans, 1))
    batch = decode_batch(old)
    assert batch.entries == scans and all(e.ref_id is None and e.officer is None for e in batch.entries)


@pytest.mark.parametrize("body, version", [
    (encode_body("d", 1, sample(2), 1), 2),                           # a version 1 body said to be 2
    (encode_body("d", 1, officer_entries()[1], 2), 1),               # and the other way round
])
def test_a_body_of_the_other_version_is_refused(body, version):
    with pytest.raises(BatchError):
        decode_batch(_deflated(body, version))


def test_officer_string_index_out_of_range_is_refused():
    _, entries = officer_entries()
    body = bytearray(encode_body("d", 1, entries[-2:-1], 2))
    body[-2] = 0x7F  # the ref id's string index, far past the table
    with pytest.raises(BatchError, match="string index"):
        decode_batch(_deflated(bytes(body), 2))


# ---- one entry record: the wire's fields are the record's --------------------------------------------
def test_the_wire_entry_is_the_records_wire_fields():
    from edge.entries.record import WIRE_NAMES, wire_mismatches

    assert tuple(f.name for f in dataclasses.fields(WireEntry)) == WIRE_NAMES
    assert wire_mismatches((f.name, f.type) for f in dataclasses.fields(WireEntry)) == []
    # What the import-time check would say of a wire record that forgot a field, or changed a type.
    forgot = [(f.name, f.type) for f in dataclasses.fields(WireEntry)][:-1]
    assert wire_mismatches(forgot)
    retyped = [(f.name, "str" if f.name == "seq" else f.type) for f in dataclasses.fields(WireEntry)]
    assert wire_mismatches(retyped)


def test_batch_errors_are_the_projects():
    from edge.common.errors import CheckpointError
    from sync.wire.errors import WireError

    with pytest.raises(BatchError) as refused:
        decode_batch(b"\x09")
    assert isinstance(refused.value, WireError) and isinstance(refused.value, CheckpointError)


# ---- status and ack messages (sync/wire/messages.py): one definition for device and hub --------------
STATUS = {"device": "dev1", "state": "online", "sent_ms": 1_790_000_000_000,
          "versions": {"software": "1.2", "config": "local-1+all.2", "lists": {"people": 3}},
          "outbox": {"depth": 2, "oldest_unsynced": "2026-01-01T00:00:00.000Z", "oldest_unsynced_age_s": 1.5},
          "source": {"name": "lines", "state": "running", "delivered": 10, "dropped": 0},
          "remote": {"config": {"all": {"version": 2}, "group:old": {"version": 1, "in_force": False}},
                     "downloads": {}, "trust": {"all": {"version": 4}}, "timings": {"delta_apply_s": 0.01},
                     "problems": [], "groups": ["north"],
                     "last_rejected": {"device": "dev1", "target": "all", "kind": "config", "name": None,
                                       "version": 1, "accepted": False, "reason": "expired", "time_ms": 5,
                                       "digest": "ab" * 32}},
          "last_sync": None, "last_error": None, "synced": 7, "refused": 0, "problems": ["camera slow"],
          "mode": "allowlist", "clock": {"state": "ok", "trusted": True, "wall_ms": 1}, "scans": 12}


def test_a_status_round_trips_with_the_daemons_own_fields():
    import json

    from sync.wire.messages import parse_status

    status = parse_status(json.dumps(STATUS).encode())
    assert status.versions.lists == {"people": 3} and status.remote.config["group:old"].in_force is False
    assert status.remote.last_rejected["reason"] == "expired" and status.outbox.depth == 2
    # Fields no model names (the daemon's snapshot, a newer device's) ride along, as they came.
    assert json.loads(status.to_json()) == STATUS


def test_older_and_newer_devices_interoperate():
    from sync.wire.messages import parse_ack, parse_status

    will = parse_status(b'{"device": "dev1", "state": "offline"}')  # the last will: nothing else
    assert will.state == "offline" and will.outbox is None and will.remote is None
    assert will.to_json() == b'{"device": "dev1", "state": "offline"}'
    ack = parse_ack(b'{"device": "d", "kind": "config", "accepted": true, "time_ms": 5, "from_the_future": 1}')
    assert ack.accepted and ack.target is None and ack.version is None


@pytest.mark.parametrize("payload, reason", [
    (b'{"device": "d", "sent_ms": true}', "sent_ms"),
    (b'{"device": "d", "state": 1}', "state"),
    (b'{"state": "online"}', "device"),
    (b'[1, 2]', "not a JSON object"),
    (b'{"device": "d", "x": NaN}', "not JSON"),
    (b'{"device": "d", "x": "\\u0000"}', "NUL"),
    (b'{"device": "d", "x": "\\ud800"}', "lone surrogate"),
    (b'{"device": "d", "x": ' + b"9" * 30 + b"}", "64 bits"),
    (b'{"device": "d", "x": ' + b"[" * 20 + b"]" * 20 + b"}", "nested deeper"),
    (b"x" * (65 * 1024), "over 65536"),
])
def test_a_malformed_status_is_refused_with_its_reason(payload, reason):
    from sync.wire.errors import WireError
    from sync.wire.messages import parse_status

    with pytest.raises(WireError, match=reason):
        parse_status(payload)


def test_a_part_of_another_shape_is_left_out_not_the_status():
    """Older devices sent shapes the model does not take in a part or two (a refusal's reason longer than acks
    allow now, saved before reasons were cut; `versions.lists` as {"error": ...} when the lists were unreadable;
    a number among the problems): the rest of the status, its groups above all, still counts."""
    from sync.wire.messages import lenient_status, parse_status

    old = {"device": "d", "state": "online", "sent_ms": 5, "outbox": {"depth": "3"},
           "remote": {"groups": ["north"], "last_rejected": {"kind": "config", "reason": "x" * 5000},
                      "config": {"group:north": {"version": "two"}}},
           "versions": {"software": "0.1.0", "lists": {"error": "lists.db unreadable"}}, "problems": ["disk full", 3]}
    status, left_out = lenient_status(old)
    assert status.remote is not None and status.remote.groups == ["north"]
    assert status.remote.last_rejected == {"kind": "config", "reason": "x" * 5000}  # kept as the device saved it
    assert status.remote.config is None and status.versions is not None and status.versions.software == "0.1.0"
    assert status.versions.lists is None and status.problems == ["disk full"] and status.outbox is not None
    assert status.outbox.depth is None
    assert sorted(w.rsplit(": ", 1)[0] for w in left_out) == [
        "outbox.depth", "problems.1", "remote.config.group:north.version", "versions.lists.error"]
    assert parse_status(json.dumps(old).encode()).remote.groups == ["north"]
    assert old["problems"] == ["disk full", 3]  # the caller's dict untouched


def test_a_status_with_everything_wrong_inside_is_refused_whole():
    from sync.wire.errors import WireError
    from sync.wire.messages import MAX_PARTS_LEFT_OUT, parse_status

    bad = {"device": "d", "problems": list(range(MAX_PARTS_LEFT_OUT + 1))}
    with pytest.raises(WireError, match="problems"):
        parse_status(json.dumps(bad).encode())


@pytest.mark.parametrize("payload, reason", [
    (b'{"device": "d", "kind": "config", "accepted": 1, "time_ms": 5}', "accepted"),
    (b'{"device": "d", "kind": "config", "accepted": true, "time_ms": 5, "version": true}', "version"),
    (b'{"device": "d", "kind": "config", "accepted": true, "time_ms": 5, "reason": "' + b"x" * 1001 + b'"}',
     "reason"),
    (b'{"device": "d", "accepted": true, "time_ms": 5}', "kind"),
])
def test_a_malformed_ack_is_refused_with_its_reason(payload, reason):
    from sync.wire.messages import MessageError, parse_ack

    with pytest.raises(MessageError, match=reason):
        parse_ack(payload)
