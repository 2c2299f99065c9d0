"""No message can stop the hub's collector: every one is stored, or rejected, kept aside and acknowledged.

Real parts only: the hub database (SQLite, and PostgreSQL where the database's own refusals matter), a real
paho client (unconnected where the collector's handler is driven directly), and a real Mosquitto under the
shipped ACL with real device credentials for the corpus test.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import signal
import socket
import struct
import subprocess
import sys
import uuid
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.common.clock import wall_ms
from sync.hub.collector import Collector
from sync.hub.hubdb import HubDB
from sync.wire.codec import INT64_MAX, WireEntry, encode_batch, encode_body
from sync.wire.mqtt import make_client

from .broker import ROOT, Broker
from .waiting import patience, wait_until

ACL = (ROOT / "config" / "mosquitto" / "acl").read_text()


def entry(seq: int = 1, code: str = "079203001234", **kw) -> WireEntry:
    fields = dict(id=str(uuid.uuid4()), seq=seq, wall_ms=wall_ms(), mono_ns=10**12 + seq, boot_id="boot",
                  source="lines:test", code=code, decision="allow", reason="listed", list_name=None,
                  list_version=None, config_version=None)
    fields.update(kw)
    return WireEntry(**fields)


def ack(**kw) -> bytes:
    data = {"device": "devA", "target": "all", "kind": "config", "name": None, "version": 3, "accepted": False,
            "reason": "bad signature", "time_ms": wall_ms()}
    data.update(kw)
    return json.dumps(data).encode()


def collector_on(db: HubDB) -> Collector:
    # A real paho client that never connects: handle() is what every delivered message goes through.
    return Collector(db, make_client(client_id="handler-under-test", manual_ack=True))


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One SQLite hub database and collector for the property tests (Hypothesis runs examples in a loop)."""
    db = HubDB(str(tmp_path_factory.mktemp("hub") / "hub.db"))
    yield collector_on(db)
    db.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def hub_db(request, tmp_path):
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else str(tmp_path / "hub.db")
    db = HubDB(url)
    yield db
    db.close()


# ---- strategies: what a hostile device may send ----------------------------------------------------
SCALARS = (st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=40))  # st.text covers control characters and NUL
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=10), inner, max_size=4), max_leaves=30)
DEEP = st.integers(1, 100_000).flatmap(lambda n: st.sampled_from([b"[" * n, b'{"a":' * n, b"[" * n + b"]" * n]))
RAW = st.one_of(
    DEEP,
    st.binary(max_size=512),
    st.integers(4300, 20_000).map(lambda n: b'{"device": "devA", "n": ' + b"9" * n + b"}"),  # huge ints as text
    st.sampled_from([b'{"device": "devA", "x": NaN}', b'{"device": "devA", "x": -Infinity}',
                     b'{"device": "devA", "x": 1e999}', b'{"device": "devA", "x": "\\ud800"}',
                     b'{"device": "devA", "x": "\\u0000"}', b'{"device": "devA"}\xff', b"\xef\xbb\xbf{}",
                     b"x" * (65 * 1024)]),
)
ACKS = st.fixed_dictionaries(dict.fromkeys(("target", "kind", "name", "version", "accepted", "reason", "time_ms"),
                                           JSON_VALUES),
                             optional={"device": st.just("devA") | JSON_VALUES})
STATUSES = st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=6).map(lambda d: {"device": "devA", **d})


def _handled(collector: Collector, topic: str, payload: bytes) -> None:
    """The invariant: handle() returns (stored or rejected and counted), never raises."""
    before = dict(collector.stats)
    collector.handle(topic, payload)
    assert collector.stats["unexpected"] == before["unexpected"]


@given(RAW, st.sampled_from(["status", "acks", "entries"]))
def test_raw_bytes_on_every_topic_are_handled(shared, payload, kind):
    before = shared.stats["rejected"]
    _handled(shared, f"checkpoint/devA/{kind}", payload)
    cleared = kind == "status" and not payload  # a retained status cleared: nothing to reject
    assert shared.stats["rejected"] == before + (0 if cleared else 1)  # none of the others is valid


@given(st.one_of(ACKS.map(lambda d: ("acks", d)), STATUSES.map(lambda d: ("status", d))))
def test_json_of_any_shape_is_stored_or_rejected(shared, message):
    kind, data = message
    _handled(shared, f"checkpoint/devA/{kind}", json.dumps(data, allow_nan=True).encode())


@given(JSON_VALUES, st.integers(0, 40))
def test_parse_small_rejects_cleanly(value, depth):
    for _ in range(depth):
        value = [value]
    from sync.wire.errors import MessageError
    from sync.wire.messages import parse_small  # what the collector checks every status and ack with

    try:
        data = parse_small(json.dumps({"device": "devA", "v": value}, allow_nan=True).encode())
    except MessageError:
        return
    assert isinstance(data, dict) and depth < 16
    json.dumps(data, allow_nan=False).encode("utf-8")  # what is kept can be written and read back anywhere


# ---- the database's own refusals reject a message, they do not stop the collector --------------------
def test_what_the_database_refuses_is_rejected_not_a_stop(hub_db):
    collector = collector_on(hub_db)
    nul = encode_batch("devA", wall_ms(), [entry(code="a\x00b")])  # PostgreSQL's text takes no NUL
    collector.handle("checkpoint/devA/entries", nul)
    genuine = encode_batch("devA", wall_ms(), [entry(seq=2)])
    collector.handle("checkpoint/devA/entries", genuine)
    assert collector.failed is None and collector.stats["unexpected"] == 0
    codes = [row["code"] for row in hub_db.entries(device="devA")]
    if hub_db.pg:
        assert codes == ["079203001234"] and collector.stats["rejected"] == 1
        assert "refused" in hub_db.rejected()[0]["reason"]
    else:
        assert sorted(codes) == ["079203001234", "a\x00b"]  # SQLite keeps it as sent


def test_an_ack_reason_cannot_forge_log_lines(hub_db, caplog):
    collector = collector_on(hub_db)
    forged = "bad\n2026-11-29 12:00:00 INFO checkpoint.hub: all good\x1b[2J"
    with caplog.at_level(logging.WARNING, "checkpoint.hub"):
        collector.handle("checkpoint/devA/acks", ack(reason=forged, name="x\r\ny", kind="con\x1bfig"))
    [record] = [r for r in caplog.records if "REFUSED" in r.getMessage()]
    line = record.getMessage()
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "bad\\x0a2026" in line and "\\x1b[2J" in line and "con\\x1bfig" in line
    assert hub_db.acks()[0]["reason"] == forged  # stored exactly; escaped only where people read it


def test_rejected_messages_are_kept_once_with_their_size(hub_db, caplog):
    collector = collector_on(hub_db)
    payload = b"\x01" + bytes(range(256)) * 40
    with caplog.at_level(logging.DEBUG, "checkpoint.hub"):
        for _ in range(3):
            collector.handle("checkpoint/devA/entries", payload)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "rejected" in r.getMessage()]
    assert len(warnings) == 1  # logged once; the repeats are counted
    [kept] = hub_db.rejected()
    assert (kept["device_id"], kept["topic"], kept["times"], kept["size"]) == (
        "devA", "checkpoint/devA/entries", 3, len(payload))
    assert kept["payload"] == payload[:4096]


def test_rejected_rows_and_warnings_are_limited_per_device(hub_db, caplog):
    """One device sending endless distinct garbage keeps at most rejected_per_device rows (the oldest go)
    and one warning a minute, which then counts what was held back; another device is not affected."""
    hub_db.rejected_per_device = 5
    collector = collector_on(hub_db)
    with caplog.at_level(logging.DEBUG, "checkpoint.hub"):
        for n in range(12):
            collector.handle("checkpoint/devA/entries", b"\x01garbage %d" % n)
        collector.handle("checkpoint/devB/entries", b"\x01other")
        collector.handle("checkpoint/devA/entries", b"\x01garbage 11")  # a repeat: counted, nothing removed
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [("devA" in w, "devB" in w) for w in warnings] == [(True, False), (False, True)]
    kept = hub_db.rejected("devA")
    assert len(kept) == 5 and b"\x01garbage 11" in [r["payload"] for r in kept]
    assert [r["times"] for r in kept if r["payload"] == b"\x01garbage 11"] == [2]
    assert len(hub_db.rejected("devB")) == 1 and collector.stats["rejected"] == 14
    # A minute on, the next rejection warns again, saying how many were held back meanwhile.
    last, held = collector._warned["devA"]
    collector._warned["devA"] = (last - 61, held)
    caplog.clear()
    with caplog.at_level(logging.WARNING, "checkpoint.hub"):
        collector.handle("checkpoint/devA/entries", b"\x01garbage 12")
    [warning] = [r.getMessage() for r in caplog.records]
    assert "11 more rejected from this device" in warning and len(hub_db.rejected("devA")) == 5


def test_an_unforeseen_failure_is_contained_and_acknowledged(tmp_path, caplog):
    """The per-message guard: a bug in a handler (here: a topic prefix the code cannot handle as text)
    is logged with its traceback, kept aside, and the message acknowledged."""
    db = HubDB(str(tmp_path / "hub.db"))
    client = make_client(client_id="guard-under-test", manual_ack=True)
    collector = Collector(db, client)
    acked = []
    client.ack = lambda mid, qos: acked.append(mid)  # the broker's side of the acknowledgement, recorded

    class Message:  # what paho hands on_message: a message whose topic fails to decode as paho does
        mid, qos, payload, _topic = 7, 1, b"{}", b"checkpoint/\xffdevA/entries"

        @property
        def topic(self):
            return self._topic.decode("utf-8")

    collector.prefix = None  # a handler bug: str.partition(None + "/") raises TypeError
    with caplog.at_level(logging.ERROR, "checkpoint.hub"):
        collector._on_message(client, None, Message())
    assert acked == [7] and collector.failed is None and collector.stats["unexpected"] == 1
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "unexpected TypeError" in logged and "Traceback" in logged and "\\xff" in logged
    [kept] = db.rejected()
    assert kept["topic"] == "checkpoint/\\xffdevA/entries" and kept["reason"].startswith("unexpected TypeError")
    db.close()


def test_the_hub_database_failing_still_stops_without_acknowledging(tmp_path):
    db = HubDB(str(tmp_path / "hub.db"))
    client = make_client(client_id="outage-under-test", manual_ack=True)
    collector = Collector(db, client)
    acked = []
    client.ack = lambda mid, qos: acked.append(mid)
    db.conn.close()  # every write now fails with sqlite3.ProgrammingError: the database, not the message

    class Message:
        mid, qos, topic = 8, 1, "checkpoint/devA/entries"
        payload = encode_batch("devA", wall_ms(), [entry()])

    collector._on_message(client, None, Message())  # three tries, a few seconds apart
    assert acked == [] and collector.failed and "hub database failed" in collector.failed


def test_an_entry_id_reused_with_other_content_is_a_conflict(hub_db, caplog):
    collector = collector_on(hub_db)
    first = entry(seq=1)
    collector.handle("checkpoint/devA/entries", encode_batch("devA", wall_ms(), [first]))
    with caplog.at_level(logging.WARNING, "checkpoint.hub"):
        collector.handle("checkpoint/devA/entries", encode_batch("devA", wall_ms(), [
            dataclasses.replace(first, code="forged"), entry(seq=2)]))
        collector.handle("checkpoint/devA/entries", encode_batch("devA", wall_ms(), [first]))
    assert collector.stats["conflicts"] == 1 and collector.stats["duplicates"] == 1
    assert [r["code"] for r in hub_db.entries(device="devA")] == ["079203001234", "079203001234"]
    [device] = hub_db.devices()
    assert (device["entries"], device["duplicates"], device["conflicts"]) == (2, 1, 1)
    assert any("CONFLICT" in r.getMessage() and "devA" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("way", ["copy", "values"])
def test_both_postgresql_insert_ways_count_the_same(pg_url, way):
    """COPY into a temporary table and the multi-row INSERT (what bench/sync.py compares) store and count
    alike: new, identical copies, conflicts, a repeat inside one batch, and the clock offset."""
    from sync.wire.codec import decode_batch

    db = HubDB(pg_url)
    db.pg_insert = way
    try:
        first = entry(seq=1)
        assert db.store(decode_batch(encode_batch("devA", 1000, [first])), 1500)[:2] == (1, 0)
        again = decode_batch(encode_batch("devA", 2000, [
            first, dataclasses.replace(first, code="forged"), entry(seq=2), entry(seq=3)]))
        stored = db.store(again, 2250)
        assert (stored.inserted, stored.duplicates, stored.known, stored.conflicts) == (2, 1, 1, 1)
        [device] = db.devices()
        assert (device["entries"], device["duplicates"], device["conflicts"], device["max_seq"]) == (3, 1, 1, 3)
        assert device["clock_offset_ms"] == 250
        assert [r["code"] for r in db.entries(device="devA")] == ["079203001234"] * 3
        with pytest.raises(db.data_errors):  # a NUL: refused as the message's data, nothing stored
            db.store(decode_batch(encode_batch("devA", 3000, [entry(seq=4, code="a\x00b")])), 3000)
        assert db.store(decode_batch(encode_batch("devA", 3000, [entry(seq=5)])), 3000).inserted == 1
    finally:
        db.close()


# ---- through a real Mosquitto under the shipped ACL, with real device credentials ---------------------
def raw_publish(port: int, username: str, password: str, topic: bytes, payload: bytes) -> bytes:
    """MQTT 3.1.1 CONNECT and a QoS 0 PUBLISH written by hand, for a topic no client library would send
    (invalid UTF-8). Returns what the broker sent back before closing (or b"" when it cut us off)."""
    def packet(kind: int, body: bytes) -> bytes:
        size, length = len(body), bytearray()
        while True:
            byte, size = size & 0x7F, size >> 7
            length.append(byte | (0x80 if size else 0))
            if not size:
                return bytes([kind]) + bytes(length) + body

    def text(data: bytes) -> bytes:
        return struct.pack("!H", len(data)) + data

    connect = text(b"MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 30) + text(b"raw-" + uuid.uuid4().hex.encode()) \
        + text(username.encode()) + text(password.encode())
    with socket.create_connection(("127.0.0.1", port), timeout=patience(10)) as s:
        s.sendall(packet(0x10, connect))
        connack = s.recv(4)
        s.sendall(packet(0x30, text(topic) + payload) + packet(0xE0, b""))
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
    return connack


def hostile_corpus() -> list[tuple[str, bytes, bool]]:
    """(topic kind, payload, retained) for every topic a device may write."""
    deep = b"[" * 30_000
    huge_seq = encode_body("devA", 1, [entry(seq=INT64_MAX - 1), entry(seq=INT64_MAX + 5)])
    huge_int = b'{"device": "devA", "version": 18446744073709551616, "accepted": false, "kind": "config", ' \
               b'"time_ms": 1}'
    corpus = [
        ("entries", deep, False),
        ("entries", b"\x01" + zlib.compress(huge_seq), False),
        ("entries", b"\x01" + zlib.compress(b"\x00" * (64 << 20)), False),      # a zip bomb
        ("entries", b"\x01" + bytes(range(256)) * 5000, False),                    # oversized (1.2 MB)
        ("entries", encode_batch("devB", wall_ms(), [entry()]), False),            # speaks for another device
        ("entries", b"\x01" + zlib.compress(b"\x04devA\x01\x00\x01" + b"\x1b[2J\n" * 3), False),
        ("entries", b"", False),
        ("acks", deep, False),
        ("acks", huge_int, False),
        ("acks", b'{"device": "devA", "time_ms": 1e999, "accepted": true, "kind": "x"}', False),
        ("acks", b'{"device": "devA", "kind": NaN}', False),
        ("acks", b"\xff\xfe{\x00}", False),                                        # not UTF-8
        ("acks", b'{"device": "devA", "reason": "\\u0000", "accepted": false, "kind": "c", "time_ms": 1}', False),
        ("acks", b'{"device": "devB", "accepted": true, "kind": "config", "time_ms": 1}', False),
        ("acks", b"[" * 10 + b"]" * 10, False),
        ("acks", b"", False),
        ("status", b'{"device": "devA", "n": ' + b"7" * 5000 + b"}", False),      # an int of 5,000 digits
        ("status", b'{"device": "devA", "s": "\\ud800"}', False),
        ("status", b'{"device": "devA", "x": ' + b"[" * 20 + b"]" * 20 + b"}", False),
        ("status", b"x" * 100_000, False),
        ("status", b'{"device": "devA", "\\u001b[31m": "\\n"}', False),             # controls: stored, harmless
        ("status", deep, True),                                                     # retained: stays at the broker
    ]
    return corpus


def test_a_hostile_corpus_cannot_stop_the_collector_process(tmp_path):
    broker = Broker(tmp_path / "broker", anonymous=False, acl=ACL,
                    passwords={"devA": "device-secret", "hub-collector": "collector-secret"}).start()
    secret = tmp_path / "collector.pw"
    secret.write_text("collector-secret\n")
    db_path = tmp_path / "hub.db"
    logs: list[Path] = []

    def start(client_id: str) -> subprocess.Popen:
        logs.append(tmp_path / f"collector-{len(logs)}.log")
        proc = subprocess.Popen(
            [sys.executable, "-m", "sync.hub.cli", "collect", "--db", str(db_path), "--port", str(broker.port),
             "--host", "127.0.0.1", "--client-id", client_id, "--username", "hub-collector",
             "--password-file", str(secret)], cwd=ROOT, stdout=logs[-1].open("w"), stderr=subprocess.STDOUT)
        wait_until(lambda: "subscribed to" in logs[-1].read_text(), 30, "collector subscribed")
        return proc

    def rows(**kw) -> list:
        db = HubDB(str(db_path), readonly=True)
        try:
            return list(db.rejected(limit=1000)) if not kw else list(db.entries(**kw))
        finally:
            db.close()

    device = make_client(client_id="devA-session")
    device.username_pw_set("devA", "device-secret")
    collector = start("collector-one")
    device.connect("127.0.0.1", broker.port)
    device.loop_start()
    try:
        corpus = hostile_corpus()
        for kind, payload, retain in corpus:
            info = device.publish(f"checkpoint/devA/{kind}", payload, qos=1, retain=retain)
            info.wait_for_publish(patience(10))
        # Not UTF-8 in the topic: Mosquitto cuts such a client off; nothing reaches the collector.
        raw_publish(broker.port, "devA", "device-secret", b"checkpoint/devA/\xff\xfe", b"{}")
        # Another device's topic: the ACL refuses it at the broker (MQTT 5 PUBACK 0x87).
        refused = device.publish("checkpoint/devB/entries", encode_batch("devB", wall_ms(), [entry()]), qos=1)
        refused.wait_for_publish(patience(10))
        genuine = entry(seq=1)
        device.publish("checkpoint/devA/entries", encode_batch("devA", wall_ms(), [genuine]), qos=1) \
            .wait_for_publish(patience(10))
        wait_until(lambda: Path(db_path).exists() and rows(device="devA"), what="the genuine batch collected")
        # All but the status with controls in a key, which is valid JSON from this device (stored as such).
        wait_until(lambda: len(rows()) == len(corpus) - 1, what="every hostile message kept aside")
        assert collector.poll() is None, logs[-1].read_text()
        kept = rows()
        assert all(r["device_id"] == "devA" and r["times"] == 1 and len(r["payload"]) <= 4096 for r in kept)
        assert {r["topic"] for r in kept} == {f"checkpoint/devA/{k}" for k in ("entries", "acks", "status")}
        assert max(r["size"] for r in kept) > 1_000_000
        [stored] = rows(device="devA")
        assert stored["id"] == genuine.id
        first_log = logs[-1].read_text()
        # One warning a minute per device (one line): the rest kept aside and counted, not logged.
        assert first_log.count("collector: rejected") == 1 and len(kept) > 1
        assert "\x1b" not in first_log and "Traceback" not in first_log

        # Restarted with the same client id: nothing rejected comes again (acknowledged; the retained
        # status is not resent to a resumed subscription), and collecting goes on.
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(patience(20)) == 0
        collector = start("collector-one")
        second = entry(seq=2)
        device.publish("checkpoint/devA/entries", encode_batch("devA", wall_ms(), [second]), qos=1) \
            .wait_for_publish(patience(10))
        wait_until(lambda: len(rows(device="devA")) == 2, what="the second genuine batch collected")
        assert "rejected" not in logs[-1].read_text()
        assert [r["times"] for r in rows()] == [1] * len(kept)
        assert collector.poll() is None
    finally:
        device.loop_stop()
        device.disconnect()
        collector.send_signal(signal.SIGTERM)
        collector.wait(patience(20))
        broker.stop()


@pytest.mark.parametrize("topic", ["checkpoint/devA\n/entries", "checkpoint/../acks", "checkpoint/./status",
                                   "checkpoint/devA/entries/x", "other/devA/entries",
                                   "checkpoint/" + "d" * 65 + "/acks"])
def test_topics_that_name_no_device_are_rejected(shared, topic):
    before = shared.stats["rejected"]
    _handled(shared, topic, b'{"device": "devA"}')
    assert shared.stats["rejected"] == before + 1


def test_the_collector_process_serves_its_own_metrics(broker, tmp_path):
    """`collect --metrics`: inserts, duplicates, conflicts, rejected messages and batch latency of this process,
    in the Prometheus text format (parsed by prometheus_client's own parser)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from .broker import free_port

    port = free_port()
    log = tmp_path / "collector.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sync.hub.cli", "collect", "--db", str(tmp_path / "hub.db"), "--host", "127.0.0.1",
         "--port", str(broker.port), "--client-id", "metered", "--metrics", f"127.0.0.1:{port}"],
        cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    device = make_client(client_id="devA-metrics")
    try:
        wait_until(lambda: "subscribed to" in log.read_text(), 30, "collector subscribed")
        assert f"collector metrics on http://127.0.0.1:{port}/metrics" in log.read_text()
        device.connect("127.0.0.1", broker.port)
        device.loop_start()
        first, second = entry(seq=1), entry(seq=2)
        changed = dataclasses.replace(first, code="999999999999")
        for batch in ([first, second], [first, second], [changed]):
            device.publish("checkpoint/devA/entries", encode_batch("devA", wall_ms(), batch), qos=1) \
                .wait_for_publish(patience(10))
        device.publish("checkpoint/devA/acks", b"not json", qos=1).wait_for_publish(patience(10))

        def samples() -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                text = response.read().decode()
            return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
                    if not s.labels or s.labels.get("le") == "+Inf"}
        wait_until(lambda: samples().get("checkpoint_collector_rejected_messages_total") == 1, 30,
                   "the rejected ack counted")
        wait_until(lambda: samples().get("checkpoint_collector_batches_total") == 3, 30, "three batches counted")
        got = samples()
        assert got["checkpoint_collector_entries_inserted_total"] == 2
        assert got["checkpoint_collector_duplicates_total"] == 2
        assert got["checkpoint_collector_conflicts_total"] == 1
        assert got["checkpoint_collector_batch_latency_seconds_count"] == 3
        assert got["checkpoint_collector_batch_latency_seconds_bucket"] == 3  # le="+Inf"
        assert got["checkpoint_collector_batch_latency_seconds_sum"] > 0
        assert proc.poll() is None
    finally:
        device.loop_stop()
        device.disconnect()
        proc.send_signal(signal.SIGTERM)
        proc.wait(patience(20))


def test_a_bad_metrics_address_is_a_usage_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "sync.hub.cli", "collect", "--db", str(tmp_path / "hub.db"),
                           "--metrics", "nowhere"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--metrics 'nowhere': expected HOST:PORT" in done.stderr
    assert "Traceback" not in done.stderr


def test_collectors_opening_an_empty_postgresql_database_together_all_start(pg_url):
    """Each opening makes the tables; done at the same moment, PostgreSQL's catalogue would refuse all but
    one (a unique violation in pg_type) without the schema lock. Eight at once, released by a barrier."""
    import threading

    barrier, failures, opened = threading.Barrier(8), [], []

    def open_one():
        barrier.wait()
        try:
            opened.append(HubDB(pg_url))
        except Exception as exc:  # any failure is the finding
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert failures == [] and len(opened) == 8
    finally:
        for db in opened:
            db.close()


def test_two_collectors_storing_a_new_devices_first_status_together_store_it_once(pg_url):
    """Status topics are not shared: each collector stores each status. Two at once on PostgreSQL: no
    duplicate-key refusal, one row of history."""
    import threading

    first, second = HubDB(pg_url), HubDB(pg_url)
    barrier, failures = threading.Barrier(2), []
    status = json.dumps({"device": "cp-new", "state": "online", "sent_ms": 1})

    def store(db):
        barrier.wait()
        try:
            db.store_status("cp-new", "online", status, 1000)
        except Exception as exc:  # any failure is the finding
            failures.append(exc)

    threads = [threading.Thread(target=store, args=(db,)) for db in (first, second)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == [] and len(first.status_history("cp-new")) == 1
    finally:
        first.close()
        second.close()
