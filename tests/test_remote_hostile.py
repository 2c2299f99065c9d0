"""What a device receives, made hostile: the bundle and list-record decoders refuse it cleanly, and the
receiver, fed the same through a real broker on every topic it listens to, refuses, reports and goes on."""
from __future__ import annotations

import json
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.common.clock import wall_ms
from sync.hub import admin
from sync.wire import listwire
from sync.wire.bundle import (
    MAGIC,
    BundleError,
    TrustedKeys,
    key_id,
    new_private,
    peek,
    public_text,
    verify,
)
from sync.wire.mqtt import make_client

from .test_remote import Device, rejects
from .waiting import wait_until

KEY = new_private()
TRUSTED = TrustedKeys([public_text(KEY.public_key())])
KID = key_id(KEY.public_key())

# ---- strategies: deep nesting, huge integers, huge sizes, control characters --------------------
CONTROL_TEXT = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["\x00", "\n\x1b[31m", "\u202e", "a\r\nb", "\ud7ff", "all", "group:north", "device:dev1", "x" * 5000])
HUGE_INT = st.sampled_from([2**53 + 1, 2**63, -(2**63) - 1, 2**64, 10**4000, -1, 0]) | st.integers()
SCALAR = st.none() | st.booleans() | HUGE_INT | st.floats() | CONTROL_TEXT
JSONISH = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    CONTROL_TEXT, inner, max_size=4), max_leaves=20)


def deep(depth: int, opener: bytes = b"[") -> bytes:
    closer = {b"[": b"]", b"{": b"}"}[opener]
    if opener == b"{":
        return b'{"a":' * depth + b"1" + closer * depth
    return opener * depth + closer * depth


def raw_bundle(header_bytes: bytes, body: bytes = b"", *, signed_by=KEY) -> bytes:
    """A message with any header bytes at all, signed as a genuine one is (the holder of a trusted key
    who sends nonsense is the hardest case: everything after the signature check is reached)."""
    signed = MAGIC + struct.pack(">I", len(header_bytes)) + header_bytes
    return signed + signed_by.sign(signed) + body


def genuine_config(version=3, body=b'[decision]\nmode = "record"\n') -> bytes:
    return admin.config_bundle(KEY, "all", version, body, expires_s=3600)


def genuine_delta() -> bytes:
    body = listwire.encode([("n", False, None, None, None)], key_len=0, removals=["a"])
    return admin.signed(KEY, body=body, expires_s=60, kind="list", target="all", version=2, name="people", count=1,
                        content_sha256="0" * 64, list_kind="delta", base=1)[1]


def only_refused(message: bytes) -> None:
    try:
        verify(message, TRUSTED)
    except BundleError as exc:
        assert isinstance(str(exc), str)
    peek(message)  # never raises either


# ---- the bundle decoder -------------------------------------------------------------------------
@given(st.binary(max_size=4096))
def test_any_bytes_are_a_bundle_or_refused(data):
    only_refused(data)
    only_refused(MAGIC + data)


@given(JSONISH, st.binary(max_size=64))
def test_any_signed_header_is_a_bundle_or_refused(fields, body):
    try:
        text = json.dumps(fields).encode()
    except ValueError:  # an integer past the text limit: sent as the hostile text it would be
        text = b'{"version": ' + b"9" * 5000 + b"}"
    only_refused(raw_bundle(text, body))
    if isinstance(fields, dict):
        only_refused(raw_bundle(json.dumps({**fields, "key": KID}).encode(), body))


@pytest.mark.parametrize("header_bytes", [deep(100_000), deep(50_000, b"{"), b'{"key": "' + KID.encode() + b'", "x": '
                                          + deep(100_000) + b"}", b'{"version": ' + b"9" * 100_000 + b"}",
                                          b'{"version": 1e999}', b'{"key": NaN}', b"\x00" * 1000])
def test_deep_nesting_and_huge_numbers_in_a_signed_header_are_refused(header_bytes):
    with pytest.raises(BundleError):
        verify(raw_bundle(header_bytes), TRUSTED)


@given(st.data())
def test_mutations_of_genuine_bundles_are_refused_or_unchanged(data):
    message = data.draw(st.sampled_from([genuine_config(), genuine_delta()]))
    mutated = bytearray(message)
    for _ in range(data.draw(st.integers(1, 4))):
        how = data.draw(st.sampled_from(["flip", "cut", "insert", "length"]))
        at = data.draw(st.integers(0, max(len(mutated) - 1, 0)))
        if how == "flip" and mutated:
            mutated[at] ^= data.draw(st.integers(1, 255))
        elif how == "cut":
            del mutated[at:at + data.draw(st.integers(1, 200))]
        elif how == "insert":
            mutated[at:at] = data.draw(st.binary(min_size=1, max_size=50))
        else:
            mutated[4:8] = struct.pack(">I", data.draw(st.sampled_from([0, 1, 2**32 - 1, 256 * 1024, len(mutated)])))
    try:
        bundle = verify(bytes(mutated), TRUSTED)
    except BundleError:
        return
    assert bundle.message == message  # only a mutation that changed nothing passes


def test_a_refusal_after_the_signature_held_keeps_what_was_refused():
    good = genuine_config(version=7)
    with pytest.raises(BundleError, match="body does not match") as refused:
        verify(good + b"#", TRUSTED)
    assert (refused.value.fields["kind"], refused.value.fields["target"], refused.value.fields["version"]) == (
        "config", "all", 7)
    with pytest.raises(BundleError, match="unknown key") as refused:
        verify(admin.config_bundle(new_private(), "all", 1, b"", expires_s=60), TRUSTED)
    assert refused.value.fields is None  # not authentic: nothing is repeated from it


# ---- the list-record decoder --------------------------------------------------------------------
def records_body(fmt=1, klen=0, n=None, keys=b"", flags=b"", extras=b"[]", extra_len=None) -> bytes:
    n = len(flags) if n is None else n
    return (struct.pack(">BBI", fmt, klen, n) + keys + flags
            + struct.pack(">I", len(extras) if extra_len is None else extra_len) + extras)


def only_records_error(data: bytes, key_len: int) -> None:
    try:
        changes = listwire.decode(data, key_len=key_len)
    except listwire.RecordsError:
        return
    for record in changes.added + changes.changed:
        assert isinstance(record[1], bool)


@given(st.binary(max_size=2048), st.sampled_from([0, 16]))
def test_any_bytes_are_records_or_refused(data, key_len):
    only_records_error(data, key_len)
    only_records_error(zlib.compress(data), key_len)


@given(st.integers(0, 255), st.integers(0, 255), HUGE_INT.filter(lambda n: 0 <= n < 2**32) | st.integers(0, 5),
       st.binary(max_size=300), st.binary(max_size=20), JSONISH, st.integers(0, 2**32 - 1) | st.none(),
       st.sampled_from([0, 16]))
def test_any_record_structure_is_records_or_refused(fmt, klen, n, keys, flags, extras, extra_len, key_len):
    try:
        extras_bytes = json.dumps(extras, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except ValueError:
        extras_bytes = b"[" + b"9" * 5000 + b"]"
    body = records_body(fmt, klen, n, keys, flags, extras_bytes, extra_len)
    only_records_error(zlib.compress(body), key_len)
    only_records_error(zlib.compress(records_body(1, key_len, len(flags), keys, flags, extras_bytes)), key_len)


@pytest.mark.parametrize("body", [
    records_body(keys=b"\x00\x01a", flags=b"\x04", extras=deep(200_000)),
    records_body(keys=b"\x00\x01a", flags=b"\x04", extras=b'[["x", ' + b"9" * 10_000 + b", null]]"),
    records_body(keys=b"\x00\x01a", flags=b"\x04", extras=b'[["x", 1e999, null]]'),
    records_body(keys=b"\x00\x01a", flags=b"\x04", extras=b'[["x", 2.5, null]]'),
    records_body(keys=b"\x00\x01a", flags=b"\x04", extras=b'[[' + b'"x' * 10 + b'", 1, 2]]'),
    records_body(keys=b"\x00\x05a\x1b[2J", flags=b"\x00"),
    records_body(keys=b"\x00\x01a", flags=b"\x00", extra_len=2**32 - 1),
    records_body(n=2**32 - 1),
    records_body(klen=16, n=1_000_000, keys=b"k" * 16),
])
def test_hostile_record_bodies_are_refused(body):
    with pytest.raises(listwire.RecordsError):
        listwire.decode(zlib.compress(body), key_len=body[1])


@settings(max_examples=30)
@given(st.data())
def test_mutations_of_genuine_records_are_refused_or_decoded(data):
    rows = [(f"c{i:03d}", i % 2 == 0, "label" if i % 3 else None, None, 10**12 if i % 5 else None)
            for i in range(20)]
    body = bytearray(zlib.decompress(listwire.encode(rows, key_len=0, removals=["zz"])))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body) - 1))
        body[at] = data.draw(st.integers(0, 255))
    only_records_error(zlib.compress(bytes(body)), 0)


# ---- the receiver, through a real broker ---------------------------------------------------------
class Acks:
    """The acks the device publishes, as the hub receives them."""

    def __init__(self, port: int, device: str = "dev1"):
        self.seen: list[dict] = []
        self.client = make_client(client_id=f"acks-{wall_ms()}")
        self.client.on_message = lambda c, u, m: self.seen.append(json.loads(m.payload))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"checkpoint/{device}/acks", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


HOSTILE = [b"\x00", b"CPB1", b"CPB1\xff\xff\xff\xff", MAGIC + struct.pack(">I", 200_000) + deep(100_000)[:200_000]
           + bytes(64), raw_bundle(deep(100_000)), raw_bundle(b'{"version": ' + b"9" * 6000 + b"}"),
           raw_bundle(json.dumps({"kind": "config", "target": "all\n\x1b[31m", "key": KID}).encode()),
           genuine_config(version=5) + b"x", b"\xff" * 70_000]


def test_hostile_messages_on_every_topic_are_refused_and_the_receiver_goes_on(tmp_path, broker, hub, caplog):
    device = Device(tmp_path / "dev1", broker.port, [KEY]).start()
    acks = Acks(broker.port)
    try:
        topics = ["checkpoint/all/config", "checkpoint/group/north/config", "checkpoint/dev1/config",
                  "checkpoint/all/lists/people/snapshot", "checkpoint/dev1/lists/x/snapshot"]
        for index, message in enumerate(HOSTILE):
            hub.publish(topics[index % len(topics)], message)
        # Chunks nobody asked for, on topics made to confuse the parsing of their names.
        for topic in ["checkpoint/all/lists/people/chunks/1/0", "checkpoint/all/lists/people/chunks/x/y",
                      "checkpoint/all/lists/people/chunks/" + "9" * 5000 + "/0"]:
            hub.publish(topic, b"\x00" * 100)
        wait_until(lambda: len(acks.seen) >= len(HOSTILE), what="every hostile bundle refused")
        assert not any(a["accepted"] for a in acks.seen)
        # The signed header whose body did not match is named in its refusal.
        named = [a for a in acks.seen if a["reason"] == "body does not match the signed hash"]
        assert [(a["kind"], a["target"], a["version"]) for a in named] == [("config", "all", 5)]
        # Every line logged is one line: what came from outside is escaped.
        assert not [r for r in caplog.records if "\n" in r.getMessage() or "\x1b" in r.getMessage()]
        start = wall_ms()
        hub.publish("checkpoint/all/config", genuine_config(version=6))
        wait_until(lambda: device.reloads == 1, what="a genuine bundle still applies")
        assert device.settings().decision.mode == "record" and device.receiver._thread.is_alive()
        assert not rejects(device, start)()
    finally:
        acks.close()
        device.stop()


def test_a_failure_no_check_foresaw_is_logged_acked_and_passed(tmp_path, broker, hub, caplog):
    device = Device(tmp_path / "dev1", broker.port, [KEY]).start()
    acks = Acks(broker.port)
    # The state cannot be written (a directory stands where its temporary file goes): the bundle is not
    # applied, the hub hears so, and the receiver takes the next message once the way is clear.
    blocker = tmp_path / "dev1" / "state" / "remote.json.tmp"
    blocker.mkdir()
    try:
        hub.publish("checkpoint/all/config", genuine_config(version=3))
        wait_until(lambda: acks.seen, what="the failure reported")
        assert acks.seen[0]["accepted"] is False and "could not handle it (OSError)" in acks.seen[0]["reason"]
        assert device.reloads == 0 and "cannot write" in caplog.text
        blocker.rmdir()
        hub.publish("checkpoint/all/config", genuine_config(version=4))
        wait_until(lambda: device.reloads == 1, what="the next bundle applied")
        assert device.receiver._thread.is_alive()
    finally:
        acks.close()
        device.stop()


@pytest.fixture
def hub(tmp_path, broker):
    from .test_remote import Hub

    h = Hub(tmp_path, broker.port, KEY)
    yield h
    h.close()
