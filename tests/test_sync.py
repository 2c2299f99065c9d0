"""MQTT sync against real Mosquitto brokers started here: every committed entry reaches the hub once."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
import zlib
from pathlib import Path

import pytest

from edge.common.clock import boot_id, mono_ns, wall_ms
from edge.entries.store import Entry, EntryReader, EntryStore
from edge.settings.schema import SyncSettings
from sync.device.agent import SyncAgent
from sync.hub.collector import Collector
from sync.hub.hubdb import HubDB
from sync.wire.codec import WireEntry, encode_batch
from sync.wire.mqtt import connect_properties, make_client

from .broker import ROOT, Broker, Proxy
from .conftest import checkpoint_process, run_checkpoint
from .waiting import patience, wait_until

ACL_TEMPLATE = (ROOT / "config" / "mosquitto" / "acl").read_text()


# ---- helpers ------------------------------------------------------------------------------------
def record(store: EntryStore, n: int, device="dev1", prefix="c"):
    for i in range(n):
        assert store.record(Entry(Entry.new_id(), device, wall_ms(), mono_ns(), boot_id(), "lines:test",
                                  f"{prefix}{i:012d}", "allow", "listed", "people", 3, "v1"))


def unsynced(path: Path) -> int:
    reader = EntryReader(path)
    try:
        return reader.outbox()["depth"]
    finally:
        reader.close()


def device_ids(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [row[0] for row in db.execute("SELECT id FROM entries ORDER BY seq")]
    finally:
        db.close()


def agent_for(path: Path, port: int, device="dev1", **settings) -> SyncAgent:
    sync = SyncSettings(enabled=True, host="127.0.0.1", port=port, batch_wait_ms=50, status_interval_s=1, **settings)
    agent = SyncAgent(sync, device_id=device, entries_path=path)
    agent.start()
    return agent


class InProcessCollector:
    def __init__(self, url: str, port: int, client_id="collector-1", share="collectors", **auth):
        self.db = HubDB(url)
        self.client = make_client(client_id=client_id, manual_ack=True, **auth)
        self.collector = Collector(self.db, self.client, share_group=share)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()  # the broker's SUBACK: batches now reach us
        self.client.connect_async("127.0.0.1", port, clean_start=False, properties=connect_properties(3600))
        self.client.loop_start()
        wait_until(subscribed.is_set, 10, "collector subscription")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
        self.db.close()


def hub_rows(url: str, device=None) -> list[dict]:
    db = HubDB(url)
    try:
        return list(db.entries(device=device))
    finally:
        db.close()


def assert_exactly_once(url: str, device_db: Path, device="dev1"):
    rows = hub_rows(url, device)
    ids = device_ids(device_db)
    assert len(rows) == len(ids) and {r["id"] for r in rows} == set(ids)
    assert [r["seq"] for r in rows] == list(range(1, len(ids) + 1))  # no gaps
    db = HubDB(url)
    try:
        assert db.gaps(device) == []
    finally:
        db.close()


@pytest.fixture
def hub_url(tmp_path):
    return str(tmp_path / "hub.db")


# ---- the happy path, both hub databases -----------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_entries_reach_the_hub_once_and_are_marked_synced(tmp_path, broker, backend, request):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else str(tmp_path / "hub.db")
    path = tmp_path / "dev" / "entries.db"
    store = EntryStore(path)
    record(store, 1200)
    collector = InProcessCollector(url, broker.port)
    agent = agent_for(path, broker.port)
    try:
        wait_until(lambda: unsynced(path) == 0, what="outbox drained")
        wait_until(lambda: len(hub_rows(url)) == 1200, what="hub rows")
        assert_exactly_once(url, path)
        row = hub_rows(url)[0]
        assert (row["code"], row["decision"], row["list_name"], row["list_version"]) == (
            "c000000000000", "allow", "people", 3)
        assert abs(row["clock_offset_ms"]) < 5000
        # The agent restarts having lost its memory of what was acknowledged: resent, never stored twice.
        agent.stop()
        db = sqlite3.connect(path)
        db.execute("UPDATE entries SET synced_ms = NULL WHERE seq > 1000")
        db.commit()
        db.close()
        agent = agent_for(path, broker.port)
        wait_until(lambda: unsynced(path) == 0, what="resend")
        wait_until(lambda: collector.collector.stats["duplicates"] == 200, what="duplicates counted")
        assert_exactly_once(url, path)
    finally:
        agent.stop()
        collector.close()


def test_no_collector_subscribed_means_not_synced(tmp_path, broker, hub_url):
    """Mosquitto acknowledges a publish nobody subscribed to with 0x10, a success code: not delivered."""
    path = tmp_path / "dev" / "entries.db"
    record(EntryStore(path), 30)
    agent = agent_for(path, broker.port)
    try:
        wait_until(lambda: agent.state["last_error"] == "no collector subscribed at the broker; resending",
                   what="unrouted noticed")
        assert unsynced(path) == 30
        collector = InProcessCollector(hub_url, broker.port)
        wait_until(lambda: unsynced(path) == 0, what="synced once a collector listens")
        wait_until(lambda: len(hub_rows(hub_url)) == 30, what="hub rows")
        assert agent.state["last_error"] is None
        collector.close()
    finally:
        agent.stop()


def test_retained_status_and_offline_will(tmp_path, broker):
    path = tmp_path / "dev" / "entries.db"
    EntryStore(path)
    seen: dict[str, dict] = {}
    watcher = make_client(client_id="watcher")
    watcher.on_message = lambda c, u, m: seen.__setitem__(m.topic, json.loads(m.payload))
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe("checkpoint/+/status", qos=1)
    watcher.loop_start()
    proc = None
    try:
        proc = subprocess.Popen([sys.executable, "-c", (
            f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from edge.settings.schema import SyncSettings\nfrom sync.device.agent import SyncAgent\n"
            f"a = SyncAgent(SyncSettings(enabled=True, host='127.0.0.1', port={broker.port}, keepalive_s=5), "
            f"device_id='dev9', entries_path={str(path)!r})\na.start()\nsys.stdin.read()")],
            stdin=subprocess.PIPE)  # it runs until killed, or until this test's end closes its stdin
        wait_until(lambda: seen.get("checkpoint/dev9/status", {}).get("state") == "online", 90, "online status")
        status = seen["checkpoint/dev9/status"]
        assert status["outbox"]["depth"] == 0 and status["device"] == "dev9"
        proc.kill()  # no clean disconnect: the broker publishes the last will
        proc.wait()
        wait_until(lambda: seen["checkpoint/dev9/status"].get("state") == "offline", timeout=60, what="last will")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        watcher.loop_stop()
        watcher.disconnect()
    # Retained: a newcomer learns the device's state at once.
    late: list = []
    newcomer = make_client(client_id="late")
    newcomer.on_message = lambda c, u, m: late.append((m.topic, m.retain, json.loads(m.payload)["state"]))
    newcomer.connect("127.0.0.1", broker.port)
    newcomer.subscribe("checkpoint/dev9/status", qos=1)
    newcomer.loop_start()
    wait_until(lambda: late, what="retained status")
    newcomer.loop_stop()
    assert late[0] == ("checkpoint/dev9/status", True, "offline")


# ---- outages ------------------------------------------------------------------------------------
def test_broker_down_while_10000_entries_are_recorded(tmp_path, hub_url):
    broker = Broker(tmp_path / "broker")  # configured, not started: the hotspot has no hub yet
    path = tmp_path / "dev" / "entries.db"
    store = EntryStore(path)
    agent = agent_for(path, broker.port)
    try:
        record(store, 10_000)
        wait_until(lambda: agent.connect_failures >= 1, what="the agent tried the broker, and found none")
        assert unsynced(path) == 10_000 and agent.state["synced"] == 0
        broker.start()
        collector = InProcessCollector(hub_url, broker.port)
        wait_until(lambda: unsynced(path) == 0, timeout=60, what="outbox drained")
        wait_until(lambda: len(hub_rows(hub_url)) == 10_000, what="hub rows")
        assert_exactly_once(hub_url, path)
        collector.close()
    finally:
        agent.stop()
        broker.stop()


def test_broker_restarts_in_the_middle_of_a_stream(tmp_path, broker, hub_url):
    path = tmp_path / "dev" / "entries.db"
    store = EntryStore(path)
    collector = InProcessCollector(hub_url, broker.port)
    agent = agent_for(path, broker.port)

    def scanning():
        for i in range(60):
            record(store, 50, prefix=f"r{i}-")
            time.sleep(0.05)  # the pace of scanning (the scenario): whatever it is, every entry arrives once

    writer = threading.Thread(target=scanning)
    writer.start()
    try:
        wait_until(lambda: hub_rows(hub_url), what="the stream flowing to the hub")
        broker.stop()
        wait_until(lambda: not agent.connected.is_set(), what="the device saw the broker go")
        broker.start()
        writer.join()
        wait_until(lambda: unsynced(path) == 0, timeout=60, what="outbox drained")
        wait_until(lambda: len(hub_rows(hub_url)) == 3000, timeout=30, what="hub rows")
        assert_exactly_once(hub_url, path)
    finally:
        agent.stop()
        collector.close()


def test_network_cut_and_restored(tmp_path, broker, hub_url):
    proxy = Proxy(broker.port)
    path = tmp_path / "dev" / "entries.db"
    store = EntryStore(path)
    collector = InProcessCollector(hub_url, broker.port)
    agent = agent_for(path, proxy.port, keepalive_s=5)
    try:
        for round_ in range(4):
            synced = agent.state["synced"]
            record(store, 500, prefix=f"n{round_}-")
            # Some of the round on its way when the network goes: cut mid-stream.
            wait_until(lambda before=synced: agent.state["synced"] > before, what="some of the round on its way")
            proxy.cut()
            record(store, 250, prefix=f"m{round_}-")
            wait_until(lambda: not agent.connected.is_set(), what="the device saw the network go")
            proxy.restore()
        wait_until(lambda: unsynced(path) == 0, timeout=90, what="outbox drained")
        wait_until(lambda: len(hub_rows(hub_url)) == 3000, timeout=30, what="hub rows")
        assert_exactly_once(hub_url, path)
    finally:
        agent.stop()
        collector.close()
        proxy.close()


# ---- security ---------------------------------------------------------------------------------------
@pytest.fixture
def pki(tmp_path):
    folder = tmp_path / "pki"
    script = ROOT / "scripts" / "mqtt-credentials"
    for args in (["ca", folder], ["server", folder, "localhost"], ["device-cert", folder, "devA", "localhost"]):
        subprocess.run([script, *map(str, args)], check=True, capture_output=True)
    return folder


def test_tls_client_certificates_and_the_acl_template(tmp_path, pki, hub_url):
    broker = Broker(tmp_path / "broker", tls=pki, anonymous=False, acl=ACL_TEMPLATE,
                    passwords={"hub-collector": "collector-secret"}).start()
    secret = tmp_path / "collector.pw"
    secret.write_text("collector-secret\n")
    collector = InProcessCollector(hub_url, broker.port, username="hub-collector", password_file=str(secret))
    device = pki / "devices" / "devA"
    assert "cert_file" in (device / "sync.toml").read_text()
    tls = dict(tls=True, ca_file=str(device / "ca.crt"), cert_file=str(device / "devA.crt"),
               key_file=str(device / "devA.key"))
    path_a = tmp_path / "a" / "entries.db"
    record(EntryStore(path_a), 300, device="devA")
    agent_a = agent_for(path_a, broker.tls_port, device="devA", **tls)
    # Device A's certificate, configured to speak as device B: the ACL refuses every publish.
    path_b = tmp_path / "b" / "entries.db"
    record(EntryStore(path_b), 40, device="devB")
    agent_b = agent_for(path_b, broker.tls_port, device="devB", retry_refused_s=0.5, **tls)
    try:
        wait_until(lambda: unsynced(path_a) == 0, what="device A synced")
        wait_until(lambda: agent_b.state["refused"] > 0, what="device B refused")
        wait_until(lambda: agent_b.state["refused"] >= 80, what="device B refused again after retry_refused_s")
        assert unsynced(path_b) == 40  # nothing marked synced without a successful PUBACK
        assert "refused" in agent_b.state["last_error"] and "authori" in agent_b.state["last_error"].lower()
        assert agent_b.status()["last_error"] == agent_b.state["last_error"]
        wait_until(lambda: len(hub_rows(hub_url)) == 300, what="hub rows")
        assert hub_rows(hub_url, "devB") == []
        assert_exactly_once(hub_url, path_a, "devA")
    finally:
        agent_a.stop()
        agent_b.stop()
        collector.close()
        broker.stop()


def test_wrong_certificate_authority_is_refused(tmp_path, pki, hub_url):
    other = tmp_path / "other-pki"
    script = ROOT / "scripts" / "mqtt-credentials"
    for args in (["ca", other], ["device-cert", other, "devA", "localhost"]):
        subprocess.run([script, *map(str, args)], check=True, capture_output=True)
    broker = Broker(tmp_path / "broker", tls=pki, anonymous=False, acl=ACL_TEMPLATE).start()
    path = tmp_path / "a" / "entries.db"
    record(EntryStore(path), 5, device="devA")
    device = other / "devices" / "devA"
    agent = agent_for(path, broker.tls_port, device="devA", tls=True, ca_file=str(pki / "ca.crt"),
                      cert_file=str(device / "devA.crt"), key_file=str(device / "devA.key"))
    try:
        # TLS 1.3: the broker refuses the client's certificate after the client's side of the handshake, by
        # closing the connection (paho: a disconnect), or during it (paho: a failed connection).
        wait_until(lambda: agent.connect_failures or agent.state["connection"] == "offline",
                   what="the broker refusing the device's certificate")
        assert not agent.connected.is_set() and unsynced(path) == 5
    finally:
        agent.stop()
        broker.stop()


def test_password_from_systemd_credentials_and_a_wrong_password(tmp_path, hub_url, monkeypatch):
    broker = Broker(tmp_path / "broker", anonymous=False, acl=ACL_TEMPLATE,
                    passwords={"devP": "right-password", "hub-collector": "c"}).start()
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt-password").write_text("right-password\n")
    (credentials / "bad-password").write_text("wrong\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    path = tmp_path / "p" / "entries.db"
    record(EntryStore(path), 20, device="devP")
    bad = agent_for(path, broker.port, device="devP", password_file="bad-password")
    try:
        wait_until(lambda: bad.state["connection"] == "refused", what="refused connection")
        assert "connection refused" in bad.state["last_error"]
    finally:
        bad.stop()
    (credentials / "collector-password").write_text("c")
    collector = InProcessCollector(hub_url, broker.port, username="hub-collector", password_file="collector-password")
    good = agent_for(path, broker.port, device="devP", password_file="mqtt-password")
    try:
        wait_until(lambda: unsynced(path) == 0, what="synced with the right password")
        wait_until(lambda: len(hub_rows(hub_url)) == 20, what="hub rows")
    finally:
        good.stop()
        collector.close()
        broker.stop()


def test_credentials_script_password_mode(tmp_path):
    script = ROOT / "scripts" / "mqtt-credentials"
    passwd = tmp_path / "passwd"
    out = tmp_path / "devices"
    subprocess.run([script, "password", passwd, "cp-01", out, "hub.local"], check=True, capture_output=True)
    subprocess.run([script, "password", passwd, "cp-02", out, "hub.local"], check=True, capture_output=True)
    assert [line.split(":")[0] for line in passwd.read_text().splitlines()] == ["cp-01", "cp-02"]
    assert len((out / "cp-01" / "password").read_text().strip()) >= 16
    assert 'username = "cp-01"' in (out / "cp-01" / "sync.toml").read_text()
    bad = subprocess.run([script, "password", passwd, "../evil", out, "h"], capture_output=True, text=True)
    assert bad.returncode == 2 and "name" in bad.stderr


# ---- the hub ------------------------------------------------------------------------------------------
def test_hostile_messages_at_the_collector(tmp_path, broker, hub_url, caplog):
    collector = InProcessCollector(hub_url, broker.port)
    attacker = make_client(client_id="attacker")
    attacker.connect("127.0.0.1", broker.port)
    attacker.loop_start()
    entry = WireEntry(str(uuid.uuid4()), 1, wall_ms(), mono_ns(), boot_id(), "s", "ok", "allow", "listed",
                      None, None, None)
    valid = encode_batch("devX", wall_ms(), [entry])
    bad_decision = encode_batch("devX", wall_ms(), [dataclasses.replace(entry, decision="open-sesame")])
    hostile = [
        ("checkpoint/devX/entries", valid[:len(valid) // 2]),                       # truncated
        ("checkpoint/devX/entries", b"\x01" + os.urandom(900_000)),                  # huge random
        ("checkpoint/devX/entries", b"{\"json\": \"not our format\"}"),             # wrong format
        ("checkpoint/devX/entries", bad_decision),                                  # wrong values
        ("checkpoint/devY/entries", valid),                                         # speaks for another device
        ("checkpoint/dev ice/entries", valid),                                      # not a device name
        ("checkpoint/Phạm/entries", valid),                                          # non-ASCII device id
        ("checkpoint/devX/entries", b"\x01" + zlib.compress(b"\x00" * (64 << 20))),  # zip bomb
        ("checkpoint/devX/entries", b""),
    ]
    try:
        for topic, payload in hostile:
            attacker.publish(topic, payload, qos=1).wait_for_publish(patience(5))
        attacker.publish("checkpoint/devX/entries", valid, qos=1).wait_for_publish(patience(5))
        wait_until(lambda: len(hub_rows(hub_url)) == 1, what="the valid batch stored")
        wait_until(lambda: collector.collector.stats["rejected"] == len(hostile), what="all rejected")
        assert collector.client.is_connected()
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "rejected a batch from device devX on checkpoint/devX/entries: truncated" in logged
        assert "device devY on checkpoint/devY/entries: batch says it is from 'devX'" in logged
        kept = collector.db.rejected(limit=100)
        assert len(kept) == len(hostile) and all(len(r["payload"]) <= 4096 for r in kept)
        assert max(r["size"] for r in kept) > 900_000  # the original size, beside the capped bytes
    finally:
        attacker.loop_stop()
        collector.close()


def _collector_process(url: str, port: int, client_id: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sync.hub.cli", "collect", "--db", url, "--port", str(port),
                             "--host", "127.0.0.1", "--client-id", client_id], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _subscribed(broker: Broker, proc: subprocess.Popen, client_id: str) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"{client_id} exited: {proc.stdout.read()}")
    return f"Received SUBSCRIBE from {client_id}" in broker.log()


def test_two_collectors_on_a_shared_subscription_one_killed(tmp_path, broker, pg_url):
    # Started together on an empty database: both make the hub's tables at once (one at a time, by a lock).
    first = _collector_process(pg_url, broker.port, "collector-a")
    second = _collector_process(pg_url, broker.port, "collector-b")
    wait_until(lambda: _subscribed(broker, first, "collector-a"), what="collector-a subscribed")
    path = tmp_path / "dev" / "entries.db"
    store = EntryStore(path)
    agent = agent_for(path, broker.port, batch_max_entries=50)
    try:
        wait_until(lambda: _subscribed(broker, second, "collector-b"), what="collector-b subscribed")
        wait_until(agent.connected.is_set, what="device connected")
        for i in range(20):
            record(store, 200, prefix=f"s{i}-")
            if i == 8:
                first.kill()  # mid-stream, possibly mid-batch
                first.wait()
            time.sleep(0.05)  # the pace of scanning (the scenario): whatever it is, every entry arrives once
        wait_until(lambda: unsynced(path) == 0, timeout=60, what="outbox drained")
        first = _collector_process(pg_url, broker.port, "collector-a")  # its session's unacked batches return
        wait_until(lambda: len(hub_rows(pg_url)) == 4000, timeout=60, what="hub rows")
        for proc in (first, second):  # stopped: whatever a collector had yet to commit is in (or never will be)
            proc.send_signal(signal.SIGTERM)
            proc.wait(patience(10))
        assert_exactly_once(pg_url, path)
    finally:
        agent.stop()
        for proc in (first, second):
            proc.send_signal(signal.SIGTERM)
            proc.wait(patience(10))


def test_hub_entries_cli(tmp_path, broker, hub_url):
    path = tmp_path / "dev" / "entries.db"
    record(EntryStore(path), 3)
    collector = InProcessCollector(hub_url, broker.port)
    agent = agent_for(path, broker.port)
    try:
        wait_until(lambda: len(hub_rows(hub_url)) == 3, what="hub rows")
    finally:
        agent.stop()
        collector.close()
    result = subprocess.run([sys.executable, "-m", "sync.hub.cli", "entries", "--db", hub_url, "--device", "dev1",
                             "--format", "json"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 3
    result = subprocess.run([sys.executable, "-m", "sync.hub.cli", "entries", "--db", hub_url, "--since", "1h"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.stdout.splitlines()[0].startswith("time,id,device_id,seq")
    result = subprocess.run([sys.executable, "-m", "sync.hub.cli", "devices", "--db", hub_url], cwd=ROOT,
                            capture_output=True, text=True)
    assert "dev1" in result.stdout and "3 entries" in result.stdout


# ---- the daemon, killed again and again while scanning and syncing ----------------------------------
def test_daemon_sigkilled_20_times_while_scanning_and_syncing(tmp_path, broker, hub_url, make_config):
    fifo = tmp_path / "scanner.fifo"
    os.mkfifo(fifo)
    sync = f'[sync]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\nbatch_wait_ms = 20\n'
    config = make_config(f'[source]\ntype = "lines"\npath = "{fifo}"\n', mode="record", debounce_ms=0, extra=sync)
    state = tmp_path / "state"
    collector = InProcessCollector(hub_url, broker.port)
    rng = random.Random(11)
    try:
        for run in range(21):
            proc = checkpoint_process("run", "--config", config)
            fd = os.open(fifo, os.O_WRONLY)
            for i in range(rng.randint(1, 30)):
                os.write(fd, f"run{run}-{i}\n".encode())
                if rng.random() < 0.3:  # jitter that interleaves scans and batches (the scenario, any length)
                    time.sleep(rng.uniform(0, 0.05))
            os.close(fd)
            time.sleep(rng.uniform(0.0, 0.8))  # killed at a random moment (the scenario): any length is correct
            proc.kill()
            proc.wait()
        # One last, undisturbed run sends whatever is left.
        proc = checkpoint_process("run", "--config", config)
        wait_until(lambda: unsynced(state / "entries.db") == 0, timeout=60, what="outbox drained")
        proc.send_signal(signal.SIGTERM)
        proc.wait(patience(10))
        status = run_checkpoint("status", "--config", config)
        assert "outbox 0" in status.stdout, status.stdout
        wait_until(lambda: len(hub_rows(hub_url)) == len(device_ids(state / "entries.db")), what="hub rows")
        assert len(device_ids(state / "entries.db")) > 40
        assert_exactly_once(hub_url, state / "entries.db", "test-01")
    finally:
        collector.close()


# ---- an officer's entries (review answers, manual entries) at the hub: ref_id and officer ------------
OLD_HUB_ENTRIES = """CREATE TABLE hub_entries (
    id TEXT PRIMARY KEY, device_id TEXT NOT NULL, seq BIGINT NOT NULL, wall_ms BIGINT NOT NULL,
    mono_ns BIGINT NOT NULL, boot_id TEXT NOT NULL, source TEXT NOT NULL, code TEXT NOT NULL,
    decision TEXT NOT NULL, reason TEXT NOT NULL, list_name TEXT, list_version BIGINT, config_version TEXT,
    clock TEXT NOT NULL, sent_ms BIGINT NOT NULL, received_ms BIGINT NOT NULL, clock_offset_ms BIGINT NOT NULL)"""


def _officer_batch() -> tuple[WireEntry, WireEntry, WireEntry]:
    now = wall_ms()
    reviewed = WireEntry(str(uuid.uuid4()), 2, now, 10, "boot", "lines:test", "079203001234", "review",
                         "unknown-list", None, None, "v1")
    answer = WireEntry(str(uuid.uuid4()), 3, now + 1, 20, "boot", "review", "079203001234", "allow", "officer",
                       None, None, "v1", ref_id=reviewed.id, officer="Nguyễn Văn An")
    manual = WireEntry(str(uuid.uuid4()), 4, now + 2, 30, "boot", "manual", "PAPER-77", "deny", "unknown",
                       None, None, "v1", officer="Nguyễn Văn An")
    return reviewed, answer, manual


def _old_hub(url: str, pg: bool) -> None:
    """A hub database as the release before officers' entries made it, holding one entry."""
    row = (str(uuid.uuid4()), "dev1", 1, 1, 1, "boot", "lines:test", "c1", "allow", "listed", None, None, None,
           "ok", 1, 1, 0)
    from sync.hub.hubdb import SCHEMA

    schema = [OLD_HUB_ENTRIES if "TABLE IF NOT EXISTS hub_entries" in statement else
              statement.format(blob="BYTEA" if pg else "BLOB") for statement in SCHEMA]
    if pg:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            for statement in schema:
                conn.execute(statement)
            conn.execute(f"INSERT INTO hub_entries VALUES ({', '.join(['%s'] * 17)})", row)
    else:
        conn = sqlite3.connect(url)
        for statement in schema:
            conn.execute(statement)
        conn.execute(f"INSERT INTO hub_entries VALUES ({', '.join('?' * 17)})", row)
        conn.commit()
        conn.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_officer_entries_are_stored_and_an_older_hub_database_migrated(tmp_path, backend, request):
    pg = backend == "postgresql"
    url = request.getfixturevalue("pg_url") if pg else str(tmp_path / "hub.db")
    _old_hub(url, pg)
    reader = HubDB(url, readonly=True)  # read-only, before any migration: the new columns show as empty
    try:
        assert [(r["code"], r["ref_id"], r["officer"]) for r in reader.entries()] == [("c1", None, None)]
    finally:
        reader.close()
    entries = list(_officer_batch())
    from sync.wire.codec import decode_batch

    message = encode_batch("dev1", wall_ms(), entries)
    assert message[0] == 2
    db = HubDB(url)  # opened for writing: migrated
    try:
        stored = db.store(decode_batch(message), wall_ms())
        assert stored.inserted == 3
        again = db.store(decode_batch(message), wall_ms())  # a resend: duplicates, not conflicts
        assert (again.inserted, again.duplicates, again.conflicts) == (0, 3, 0)
        forged = dataclasses.replace(entries[1], officer="someone else")
        assert db.store(decode_batch(encode_batch("dev1", wall_ms(), [forged])), wall_ms()).conflicts == 1
        rows = {r["id"]: r for r in db.entries(device="dev1")}
    finally:
        db.close()
    reviewed, answer, manual = entries
    assert (rows[answer.id]["ref_id"], rows[answer.id]["officer"], rows[answer.id]["source"]) == (
        reviewed.id, "Nguyễn Văn An", "review")
    assert (rows[manual.id]["ref_id"], rows[manual.id]["officer"]) == (None, "Nguyễn Văn An")
    assert (rows[reviewed.id]["ref_id"], rows[reviewed.id]["officer"]) == (None, None)
    assert len(rows) == 4


def test_hub_entries_export_shows_the_officer(tmp_path):
    url = str(tmp_path / "hub.db")
    db = HubDB(url)
    try:
        from sync.wire.codec import decode_batch

        db.store(decode_batch(encode_batch("dev1", wall_ms(), list(_officer_batch()))), wall_ms())
    finally:
        db.close()
    result = subprocess.run([sys.executable, "-m", "sync.hub.cli", "entries", "--db", url, "--format", "json"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["source"], r["officer"]) for r in rows] == [
        ("lines:test", None), ("review", "Nguyễn Văn An"), ("manual", "Nguyễn Văn An")]
    assert rows[1]["ref_id"] == rows[0]["id"]
    result = subprocess.run([sys.executable, "-m", "sync.hub.cli", "entries", "--db", url], cwd=ROOT,
                            capture_output=True, text=True)
    header = result.stdout.splitlines()[0].split(",")
    assert "ref_id" in header and "officer" in header


def test_an_officers_entry_reaches_the_hub_with_its_reference_and_name(tmp_path, broker, hub_url):
    """The outbox reads every field of the wire record: a review answer keeps what it answers and who answered."""
    path = tmp_path / "dev" / "entries.db"
    store = EntryStore(path)
    record(store, 1)
    reviewed = device_ids(path)[0]
    assert store.record(Entry(Entry.new_id(), "dev1", wall_ms(), mono_ns(), boot_id(), "review", "c000000000000",
                              "allow", "officer", None, None, "v1", ref_id=reviewed, officer="Nguyễn Văn An"))
    collector = InProcessCollector(hub_url, broker.port)
    agent = agent_for(path, broker.port)
    try:
        wait_until(lambda: len(hub_rows(hub_url)) == 2, what="hub rows")
        answer = hub_rows(hub_url)[1]
        assert (answer["source"], answer["ref_id"], answer["officer"]) == ("review", reviewed, "Nguyễn Văn An")
        assert hub_rows(hub_url)[0]["ref_id"] is None
    finally:
        agent.stop()
        collector.close()
