"""Signed configuration and lists pushed through a real Mosquitto broker to a device's sync agent."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from edge.common.clock import wall_ms
from edge.entries.store import EntryStore
from edge.lists import ListStore, hash_code, read_hash_keys
from edge.settings.layers import load_settings
from sync.device.agent import SyncAgent
from sync.device.remote import Receiver
from sync.hub import admin
from sync.hub.hubdb import HubDB
from sync.wire import listwire
from sync.wire.bundle import (
    BundleError,
    TrustedKeys,
    header,
    key_id,
    new_private,
    public_text,
    sign,
    verify,
)
from sync.wire.mqtt import make_client

from .test_sync import InProcessCollector
from .waiting import patience, wait_until

LOCAL = """
version = "local-1"
[device]
id = "{device}"
[source]
type = "lines"
[store]
dir = "{dir}"
[decision]
mode = "allowlist"
repeat_window_s = 0
[sync]
enabled = true
host = "127.0.0.1"
port = {port}
status_interval_s = 1
batch_wait_ms = 50
[remote]
enabled = true
trusted_keys = [{keys}]
groups = ["north"]
{extra}
"""


@pytest.fixture
def key():
    return new_private()


class Device:
    """A device's sync agent with its receiver, its config file and its store: what the daemon runs."""

    list_options = None  # passed on to the receiver's ListStore (fold_rows, fold_share)

    def __init__(self, folder: Path, port: int, keys: list, device="dev1", extra="", window=4, list_options=None):
        self.folder, self.port, self.device = folder, port, device
        self.list_options = list_options
        self.config = folder / "checkpoint.toml"
        folder.mkdir(parents=True, exist_ok=True)
        self.config.write_text(LOCAL.format(device=device, dir=folder / "state", port=port, extra=extra,
                                            keys=", ".join(f'"{public_text(k.public_key())}"' for k in keys)))
        self.reloads = 0
        self.agent = None

    def start(self) -> Device:
        settings = load_settings(self.config)
        EntryStore(settings.store.entries_path).close()
        self.receiver = Receiver(settings.remote, device_id=self.device, prefix="checkpoint",
                                 config_path=self.config, lists_path=settings.store.lists_path,
                                 on_config=self._reloaded, list_options=self.list_options)
        self.agent = SyncAgent(settings.sync, device_id=self.device, entries_path=settings.store.entries_path,
                               receiver=self.receiver)
        self.agent.start()
        wait_until(self.agent.connected.is_set, 10, "device connected")
        return self

    def _reloaded(self):
        self.reloads += 1

    def stop(self):
        if self.agent is not None:
            self.agent.stop()
            self.agent = None

    def settings(self):
        return load_settings(self.config)

    def lists(self) -> ListStore:
        return ListStore(self.folder / "state" / "lists.db", readonly=True,
                         hash_keys=read_hash_keys(self.settings().remote.hash_key_file))

    def list_version(self, name: str):
        store = self.lists()
        try:
            info = store.info(name)
            return info.version if info else None
        finally:
            store.close()

    def rejected(self):
        return self.receiver.state.get("last_rejected")


class Hub:
    def __init__(self, tmp_path: Path, port: int, key):
        self.tmp, self.port, self.key = tmp_path, port, key
        self.publisher = admin.Publisher(make_client(client_id=f"admin-{time.monotonic_ns()}"), "127.0.0.1", port)
        self.state = tmp_path / "hub-state"

    def config(self, target: str, version: int, toml: str, merge="override", expires_s=3600.0, key=None) -> bytes:
        message = admin.config_bundle(key or self.key, target, version, toml.encode(), merge=merge,
                                      expires_s=expires_s)
        self.publish(admin.config_topic("checkpoint", target), message)
        return message

    def publish(self, topic: str, message: bytes) -> None:
        self.publisher.publish(topic, message)

    def push_list(self, name: str, rows: str, target="all", hash_key=None, publish=True) -> admin.ListPush:
        path = self.tmp / f"{name}-{time.monotonic_ns()}.csv"
        path.write_text(rows)
        lists = admin.HubLists(self.state, target)
        try:
            push = lists.prepare(self.key, target, name, path, hash_key=hash_key, zone="UTC", max_code_bytes=256,
                                 expires_s=3600)
            if publish:
                lists.publish(self.publisher, "checkpoint", target, push)
        finally:
            lists.close()
        return push

    def close(self):
        self.publisher.close()


@pytest.fixture
def hub(tmp_path, broker, key):
    h = Hub(tmp_path, broker.port, key)
    yield h
    h.close()


@pytest.fixture
def device(tmp_path, broker, key):
    d = Device(tmp_path / "dev1", broker.port, [new_private(), key]).start()
    yield d
    d.stop()


def lookup(device: Device, code: str):
    store = device.lists()
    try:
        return [(m.list_name, m.list_version, m.deny) for m in store.lookup(code)]
    finally:
        store.close()


# ---- configuration ------------------------------------------------------------------------------
def test_config_override_applies_and_persists(device, hub):
    hub.config("all", 1, '[decision]\nmode = "denylist"\n')
    wait_until(lambda: device.reloads == 1, what="config applied")
    settings = device.settings()
    assert settings.decision.mode == "denylist" and settings.version == "local-1+all.1"
    # The device's own layer beats the fleet's; a group's sits between.
    hub.config("device:dev1", 1, '[decision]\nrepeat_window_s = 30\n')
    hub.config("group:north", 1, '[decision]\nmode = "record"\nrepeat_window_s = 5\n')
    wait_until(lambda: device.reloads == 3, what="three layers")
    settings = device.settings()
    assert (settings.decision.mode, settings.decision.repeat_window_s) == ("record", 30)
    assert settings.version == "local-1+all.1+group:north.1+device:dev1.1"
    # The retained copies come again after a reconnect: identical, so nothing is applied or refused twice.
    device.stop()
    device.start()
    configs = {f"checkpoint/{t}/config" for t in ("all", "group/north", "dev1")}
    wait_until(lambda: configs <= set(device.receiver.handled), what="the three retained configs handled again")
    assert device.reloads == 3 and device.rejected() is None


def rejects(device: Device, before: int = 0):
    return lambda: device.rejected() is not None and device.rejected()["time_ms"] >= before


@pytest.mark.parametrize("case, reason", [
    ("unknown key", "unknown key"),
    ("forged", "bad signature"),
    ("older", "not newer than the applied 2"),
    ("same version", "not newer than the applied 2"),
    ("expired", "expired"),
    ("other device", "addressed to device:dev2"),
    ("invalid value", "invalid config: "),
    ("forbidden section", "may not set sync"),
    ("truncated", "truncated bundle"),
    ("not a bundle", "bad magic"),
    ("bad toml", "not valid TOML"),
])
def test_bad_config_bundles_are_refused_and_change_nothing(device, hub, key, case, reason):
    hub.config("all", 2, '[decision]\nmode = "denylist"\n')
    wait_until(lambda: device.reloads == 1, what="v2 applied")
    start = wall_ms()
    good = admin.config_bundle(key, "all", 3, b'[decision]\nmode = "record"\n', expires_s=3600)
    topic = admin.config_topic("checkpoint", "all")
    if case == "unknown key":
        message = admin.config_bundle(new_private(), "all", 3, b"", expires_s=3600)
    elif case == "forged":
        message = good[:-5] + b'ord"\n'  # body changed after signing... and a header byte flipped:
        i = good.index(b'"version":3')
        message = good[:i] + b'"version":9' + good[i + 11:]
    elif case == "older":
        message = admin.config_bundle(key, "all", 1, b'[decision]\nmode = "record"\n', expires_s=3600)
    elif case == "same version":
        message = admin.config_bundle(key, "all", 2, b'[decision]\nmode = "record"\n', expires_s=3600)
    elif case == "expired":
        message = admin.config_bundle(key, "all", 3, b"", expires_s=-1)
    elif case == "other device":
        message = admin.config_bundle(key, "device:dev2", 3, b"", expires_s=3600)
    elif case == "invalid value":
        message = admin.config_bundle(key, "all", 3, b'[decision]\nrepeat_window_s = -5\n', expires_s=3600)
    elif case == "forbidden section":
        message = admin.config_bundle(key, "all", 3, b'[sync]\nhost = "evil.example"\n', expires_s=3600)
    elif case == "truncated":
        message = good[:40]
    elif case == "not a bundle":
        message = b"hello" * 10
    else:
        message = admin.config_bundle(key, "all", 3, b"[decision\n", expires_s=3600)
    hub.publish(topic, message)
    wait_until(rejects(device, start), what=f"{case} refused")
    assert reason in device.rejected()["reason"]
    assert device.reloads == 1 and device.settings().decision.mode == "denylist"
    # The good bundle still applies afterwards.
    hub.publish(topic, good)
    wait_until(lambda: device.reloads == 2, what="good v3 applied")
    assert device.settings().decision.mode == "record"


def test_acks_and_fleet_reach_the_hub(tmp_path, broker, device, hub, key, capsys):
    collector = InProcessCollector(str(tmp_path / "hub.db"), broker.port)
    try:
        hub.config("device:dev1", 1, '[decision]\nmode = "record"\n')
        hub.publish(admin.config_topic("checkpoint", "all"), admin.config_bundle(key, "all", 1, b"[nope]\n",
                                                                                 expires_s=3600))
        db = HubDB(str(tmp_path / "hub.db"))
        try:
            wait_until(lambda: len(db.acks()) == 2, what="two acks stored")
            acks = {a["target"]: a for a in db.acks()}
            assert acks["device:dev1"]["accepted"] and acks["device:dev1"]["version"] == 1
            assert not acks["all"]["accepted"] and "may not set nope" in acks["all"]["reason"]
            wait_until(lambda: db.fleet() and "device:dev1" in (db.fleet()[0]["status"].get("remote") or {}).get(
                "config", {}), what="status with the applied config")
            [row] = db.fleet()
            assert row["device"] == "dev1" and row["state"] == "online"
            assert row["last_rejected"]["target"] == "all"
            assert row["status"]["remote"]["config"]["device:dev1"]["version"] == 1
            from sync.hub.cli import main

            assert main(["fleet", "--db", str(tmp_path / "hub.db")]) == 0
            table = capsys.readouterr().out.splitlines()
            assert table[0].startswith("device\tstate\tsince\tlast seen\tconfig")
            assert table[1].startswith("dev1\tonline") and "invalid config: all v1" in table[1]
            assert "\tdevice:dev1 v1\t" in table[1]  # no daemon here: the receiver's applied versions
            device.stop()
            wait_until(lambda: db.fleet()[0]["state"] == "offline", what="offline seen")
            assert main(["fleet", "--json", "--db", str(tmp_path / "hub.db")]) == 0
            [row] = json.loads(capsys.readouterr().out)
            assert row["state"] == "offline" and row["last_rejected"]["reason"].startswith("invalid config")
        finally:
            db.close()
    finally:
        collector.close()


# ---- lists --------------------------------------------------------------------------------------
def csv_rows(codes, action="allow"):
    return "code,action\n" + "".join(f"{c},{action}\n" for c in codes)


def test_list_snapshot_then_deltas_and_hashed_codes(tmp_path, broker, key, hub, caplog):
    caplog.set_level(logging.INFO, logger="checkpoint.remote")
    hash_key = bytes(range(32))
    (tmp_path / "hk").write_text(hash_key.hex())
    # fold_rows=3: the delta's overlay is folded into the entries after it, too.
    dev = Device(tmp_path / "dev1", broker.port, [key], extra=f'hash_key_file = "{tmp_path / "hk"}"',
                 list_options={"fold_rows": 3, "fold_share": 0}).start()
    try:
        codes = [f"0792{i:08d}" for i in range(100_000)]
        push = hub.push_list("citizens", csv_rows(codes), hash_key=hash_key)
        assert len(push.chunks) >= 3 and push.delta is None
        wait_until(lambda: dev.list_version("citizens") == 1, 60, "snapshot installed")
        assert lookup(dev, codes[5]) == [("citizens", 1, False)] and lookup(dev, "nobody") == []
        # No readable ID number is on the device: only keyed hashes.
        raw = b"".join(p.read_bytes() for p in (tmp_path / "dev1" / "state" / "lists.d").glob("*.db*"))
        assert codes[5].encode() not in raw and hash_code(hash_key, codes[5]) in raw
        # A delta: two removed, one added, one turned to deny.
        new = codes[2:] + ["NEW-1"]
        text = "code,action\n" + "".join(f"{c},{'deny' if c == codes[10] else 'allow'}\n" for c in new)
        push = hub.push_list("citizens", text, hash_key=hash_key)
        assert push.delta is not None and push.base == 1 and len(push.delta) < 1000
        wait_until(lambda: dev.list_version("citizens") == 2, 30, "delta applied")
        # The delta came before the manifest of the same version: no chunk of it was asked for.
        assert not [r for r in caplog.records if "v2: fetching" in r.getMessage()]
        assert lookup(dev, codes[0]) == [] and lookup(dev, "NEW-1") == [("citizens", 2, False)]
        assert lookup(dev, codes[10]) == [("citizens", 2, True)]
        store = dev.lists()
        assert store.info("citizens").count == len(new)
        assert [(row[0], bool(row[1])) for row in store.entries("citizens")] == sorted(
            (hash_code(hash_key, c), c == codes[10]) for c in new)
        store.close()
        assert "fold_s" in dev.receiver.timings
        assert dev.rejected() is None
    finally:
        dev.stop()


def test_list_transfer_cut_in_the_middle_resumes(tmp_path, broker, key, hub):
    dev = Device(tmp_path / "dev1", broker.port, [key], extra="chunk_window = 1").start()
    codes = [f"P{i:07d}" for i in range(150_000)]
    push = hub.push_list("people", csv_rows(codes), publish=False)
    lists = admin.HubLists(hub.state, "all")
    base = "checkpoint/all/lists/people"
    try:
        # Only the manifest and the first chunks are at the broker when the device drops off.
        hub.publish(f"{base}/snapshot", push.manifest)
        for i in range(2):
            hub.publish(f"{base}/chunks/1/{i}", push.chunks[i])
        wait_until(lambda: len(list((tmp_path / "dev1/state/lists.d/staging").glob("*/*.chunk"))) == 2,
                   what="two chunks staged")
        dev.stop()
        for i in range(2, len(push.chunks)):
            hub.publish(f"{base}/chunks/1/{i}", push.chunks[i])
        assert dev.list_version("people") is None
        dev.start()
        wait_until(lambda: dev.list_version("people") == 1, 60, "resumed and installed")
        assert lookup(dev, codes[-1]) == [("people", 1, False)]
        assert not any((tmp_path / "dev1/state/lists.d/staging").glob("*/*.chunk"))
    finally:
        lists.close()
        dev.stop()


def test_tampered_chunk_wrong_base_and_replays_are_refused(tmp_path, broker, key, hub, device):
    codes = [f"T{i:06d}" for i in range(50_000)]
    first = hub.push_list("people", csv_rows(codes))
    wait_until(lambda: device.list_version("people") == 1, 60, "v1")
    base = "checkpoint/all/lists/people"
    # A tampered chunk of v2: refused, v1 stays in use; the real chunk later completes v2.
    second = hub.push_list("people", csv_rows(codes[:-1]), publish=False)
    start = wall_ms()
    bad = bytearray(second.chunks[0])
    bad[-3] ^= 0xFF
    hub.publish(f"{base}/chunks/2/0", bytes(bad))
    for i in range(1, len(second.chunks)):
        hub.publish(f"{base}/chunks/2/{i}", second.chunks[i])
    hub.publish(f"{base}/snapshot", second.manifest)
    wait_until(rejects(device, start), what="tampered chunk refused")
    assert "chunk 0 does not match" in device.rejected()["reason"]
    assert device.list_version("people") == 1 and lookup(device, codes[-1]) == [("people", 1, False)]
    # A delta on the wrong base (made for v1 while... sent on the topic the device listens to now).
    start = wall_ms()
    wrong = admin.signed(key, body=listwire.encode([], key_len=0, removals=[codes[0]]), expires_s=60,
                         kind="list", target="all", version=7, name="people", count=1, content_sha256="0" * 64,
                         list_kind="delta", base=5)[1]
    hub.publish(f"{base}/delta/1", wrong)
    wait_until(rejects(device, start), what="wrong base refused")
    assert "delta from version 5, this device holds 1" in device.rejected()["reason"]
    # The replayed v1 snapshot once v2 is in: refused.
    hub.publish(f"{base}/chunks/2/0", second.chunks[0])
    device.receiver.settings = device.receiver.settings.model_copy(update={"retry_s": 0.5})
    wait_until(lambda: device.list_version("people") == 2, 60, "v2 once the right chunk came")
    assert lookup(device, codes[-1]) == []
    start = wall_ms()
    hub.publish(f"{base}/snapshot", first.manifest)
    wait_until(rejects(device, start), what="replay refused")
    assert "not newer than the applied 2" in device.rejected()["reason"]
    assert device.list_version("people") == 2


def test_offline_device_catches_up_to_the_newest(tmp_path, broker, key, hub):
    dev = Device(tmp_path / "dev1", broker.port, [key]).start()
    hub.push_list("people", csv_rows(["a1", "a2"]))
    wait_until(lambda: dev.list_version("people") == 1, 30, "v1 before going offline")
    dev.stop()
    for version in (1, 2, 3):
        hub.config("all", version, f'[decision]\nrepeat_window_s = {version * 10}\n')
    assert hub.push_list("people", csv_rows(["a1", "a2", "a3"])).base == 1
    assert hub.push_list("people", csv_rows(["a2", "a3", "a4"])).base == 2
    dev.start()
    try:
        wait_until(lambda: dev.list_version("people") == 3, 30, "lists caught up")
        wait_until(lambda: dev.reloads >= 1, what="config caught up")
        assert dev.settings().decision.repeat_window_s == 30
        assert dev.receiver.state["applied_config"]["all"]["version"] == 3
        assert lookup(dev, "a1") == [] and lookup(dev, "a4") == [("people", 3, False)]
        assert dev.rejected() is None
    finally:
        dev.stop()


# ---- the bundle format itself -------------------------------------------------------------------
def test_bundle_format_refuses_hostile_messages(key):
    trusted = TrustedKeys([public_text(key.public_key())])
    body = b"[decision]\n"
    head = header(kind="config", target="all", version=1, issued_ms=0, expires_ms=1, key=key_id(key.public_key()),
                  body_sha256=__import__("hashlib").sha256(body).hexdigest(), body_bytes=len(body), merge="override")
    message = sign(key, head, body)
    assert verify(message, trusted).body == body
    for bad, reason in [
        (message + b"x", "body does not match"),
        (message[:-1], "body does not match"),
        (b"CPB1" + (10**9).to_bytes(4, "big") + message[8:], "truncated"),
        (b"CPB1\x00\x00\x00\x02{}" + bytes(64), "unknown key"),
        (b"CPB1\x00\x00\x00\x04null" + bytes(64), "not a JSON object"),
        (b"CPB1\x00\x00\x00\x02\xff\xfe" + bytes(64), "not a JSON object"),
        (b"x" * (33 << 20), "exceeds"),
    ]:
        with pytest.raises(BundleError, match=reason):
            verify(bad, trusted)


def test_list_records_refuse_hostile_bodies():
    import zlib

    good = listwire.encode([("a", False, "x", None, None), ("b", True, None, 1, 2)], key_len=0)
    assert listwire.decode(good, key_len=0).added[1] == ("b", True, None, 1, 2)
    delta = listwire.decode(listwire.encode([("n", False, None, None, None)], key_len=0, removals=["a"],
                                            changed=[("b", False, "y", None, None)]), key_len=0)
    assert delta == ([("n", False, None, None, None)], [("b", False, "y", None, None)], ["a"])
    for bad, reason in [
        (b"not zlib", "not a zlib"),
        (zlib.compress(b"\x00" * (65 << 20)), "larger than"),
        (zlib.compress(b"\x01\x00"), "cut short"),
        (zlib.compress(b"\x01\x10\x00\x00\x00\x01"), "expected 0-byte keys"),
        (zlib.compress(b"\x01\x00\x00\x00\x00\x02\x00\x01b\x00\x01a\x00\x00\x00\x00\x00\x02[]"), "ascending"),
        (zlib.compress(b"\x01\x00\x00\x00\x00\x01\x00\x02a\x01\x00\x00\x00\x00\x02[]"), "bad code"),
        (zlib.compress(b"\x01\x00\x00\x00\x00\x01\x00\x01a\x04\x00\x00\x00\x02[]"), "extras do not match"),
        (zlib.compress(b"\x01\x00\x00\x00\x00\x01\x00\x01a\x80\x00\x00\x00\x02[]"), "unknown flags"),
        (zlib.compress(b"\x01\x00\xff\xff\xff\xff"), "at most"),
    ]:
        with pytest.raises(listwire.RecordsError, match=reason):
            listwire.decode(bad, key_len=0)


def test_hub_cli_keygen_push_and_fleet(tmp_path, broker):
    from sync.hub.cli import main

    assert main(["keygen", "--out", str(tmp_path / "admin.key")]) == 0
    assert main(["keygen", "--out", str(tmp_path / "admin.key")]) == 2  # never overwritten
    assert (tmp_path / "admin.key").stat().st_mode & 0o777 == 0o600
    (tmp_path / "c.toml").write_text('[decision]\nmode = "denylist"\n')
    common = ["--port", str(broker.port), "--host", "127.0.0.1", "--db", str(tmp_path / "hub.db"),
              "--key", str(tmp_path / "admin.key")]
    assert main(["config", "push", "--to", "all", str(tmp_path / "c.toml"), *common]) == 0
    assert main(["config", "push", "--to", "dev1", str(tmp_path / "c.toml"), *common]) == 0
    db = HubDB(str(tmp_path / "hub.db"))
    assert db.next_version("all", "config") == 2 and db.next_version("device:dev1", "config") == 2
    db.close()
    (tmp_path / "bad.toml").write_text('[decision]\nmode = "sometimes"\n')
    assert main(["config", "push", "--to", "all", str(tmp_path / "bad.toml"), *common]) == 2
    (tmp_path / "bad.toml").write_text('[store]\ndir = "/tmp"\n')
    assert main(["config", "push", "--to", "all", str(tmp_path / "bad.toml"), *common]) == 2
    for target in ("group:", "a b", "device:all"):
        assert main(["config", "push", "--to", target, str(tmp_path / "c.toml"), *common]) == 2
    (tmp_path / "l.csv").write_text("code\nx1\nx2\n")
    assert main(["list", "push", "people", str(tmp_path / "l.csv"), "--to", "all",
                 "--state", str(tmp_path / "st"), *common]) == 0
    (tmp_path / "l.csv").write_text("code,action\nx1,maybe\n")
    assert main(["list", "push", "people", str(tmp_path / "l.csv"), "--to", "all",
                 "--state", str(tmp_path / "st"), *common]) == 2
    assert main(["fleet", "--db", str(tmp_path / "hub.db")]) == 0


def test_hub_cli_push_to_an_unreachable_or_refusing_broker_fails_cleanly(tmp_path, capsys):
    from sync.hub.cli import main

    from .broker import free_port

    assert main(["keygen", "--out", str(tmp_path / "admin.key")]) == 0
    (tmp_path / "c.toml").write_text('[decision]\nmode = "denylist"\n')
    common = ["--port", str(free_port()), "--host", "127.0.0.1", "--db", str(tmp_path / "hub.db"),
              "--key", str(tmp_path / "admin.key")]
    capsys.readouterr()
    assert main(["config", "push", "--to", "all", str(tmp_path / "c.toml"), *common]) == 1
    err = capsys.readouterr().err
    assert "Connection refused" in err and "Traceback" not in err
    # A broker that lets the hub read but not publish refuses the bundle: reported, nothing recorded.
    from .broker import Broker

    broker = Broker(tmp_path / "broker", acl="topic read #\n").start()
    try:
        common[1] = str(broker.port)
        assert main(["config", "push", "--to", "all", str(tmp_path / "c.toml"), *common]) == 1
        err = capsys.readouterr().err
        assert "refused checkpoint/all/config" in err and "Traceback" not in err
    finally:
        broker.stop()
    db = HubDB(str(tmp_path / "hub.db"))
    assert db.next_version("all", "config") == 1  # nothing recorded as pushed
    db.close()


# ---- the real daemon ----------------------------------------------------------------------------
def test_daemon_applies_pushed_config_and_lists_without_restart(tmp_path, broker, key, hub, make_config):
    import os
    import signal

    from .conftest import checkpoint_process, write_fifo
    from .test_daemon import entries

    fifo = tmp_path / "scanner.fifo"
    os.mkfifo(fifo)
    config = make_config(f'[source]\ntype = "lines"\npath = "{fifo}"\n'
                         f'[sync]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\nstatus_interval_s = 1\n'
                         f'[remote]\nenabled = true\ntrusted_keys = ["{public_text(key.public_key())}"]\n',
                         debounce_ms=0)
    proc = checkpoint_process("run", "--config", config)
    try:
        write_fifo(fifo, b"P-1\n")
        wait_until(lambda: len(entries(config)) == 1, 60, "first scan")
        assert entries(config)[0]["reason"] == "not-listed"
        hub.push_list("people", csv_rows(["P-1", "P-2"]))
        hub.config("device:test-01", 1, '[decision]\nmode = "record"\n')
        status = tmp_path / "state" / "status.json"
        wait_until(lambda: "device:test-01.1" in (json.loads(status.read_text())["versions"]["config"]
                                                  if status.exists() else ""), 60, "config applied")
        write_fifo(fifo, b"P-2\nnobody\n")
        wait_until(lambda: len(entries(config)) == 3, 60, "more scans")
        got = [(e["code"], e["decision"], e["reason"], e["list_version"], e["config_version"])
               for e in entries(config)]
        assert got[1:] == [("P-2", "allow", "listed", 1, "test-1+device:test-01.1"),
                           ("nobody", "allow", "not-listed", None, "test-1+device:test-01.1")]
        assert proc.poll() is None  # no restart
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=patience(60))
    assert "config reloaded" in err and "list people v1 installed" in err


def test_a_delta_made_against_other_contents_changes_nothing(tmp_path):
    import io

    from edge.lists import ListError

    store = ListStore(tmp_path / "lists.db")
    store.import_csv("people", io.BytesIO(b"code\na\nb\n"), zone="UTC", max_code_bytes=64)
    row = lambda code, deny=False: (code, deny, None, None, None)  # noqa: E731
    for changes, reason in [
        (listwire.Changes([row("a")], [], []), "a code to add is already here"),
        (listwire.Changes([], [row("zz", True)], []), "missing"),
        (listwire.Changes([], [], ["zz"]), "missing"),
        (listwire.Changes([row("c")], [], []), "expected 9 entries"),
    ]:
        with pytest.raises(ListError, match=reason):
            store.apply_delta("people", base=1, version=2, changes=changes, count=9 if reason.startswith(
                "expected") else 2 + len(changes.added) - len(changes.removed), sha256="0" * 64, source="t")
        assert store.info("people").version == 1 and [m.deny for m in store.lookup("a")] == [False]
        assert store.lookup("c") == [] and store.lookup("zz") == []
    store.apply_delta("people", base=1, version=2, changes=listwire.Changes([row("c")], [row("a", True)], ["b"]),
                      count=2, sha256="1" * 64, source="t")
    assert [(m.list_version, m.deny) for m in store.lookup("a")] == [(2, True)] and store.lookup("b") == []
    store.close()
