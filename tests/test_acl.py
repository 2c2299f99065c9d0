"""The shipped ACL (config/mosquitto/acl) under a real Mosquitto, with credentials made by
scripts/mqtt-credentials: each device receives and applies what is pushed to all, to its groups and to
itself, and nothing of another device's or group's; it writes only its own topics; the collector reads
entries, status and acks and publishes nothing; the administrators publish bundles."""
from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from edge.entries.store import EntryStore
from sync.hub import admin
from sync.hub.hubdb import HubDB
from sync.wire.bundle import new_private, public_text
from sync.wire.mqtt import make_client

from .broker import ROOT, Broker
from .test_remote import Device, csv_rows, lookup
from .test_sync import InProcessCollector, hub_rows, record, unsynced
from .waiting import patience, wait_until

SCRIPT = ROOT / "scripts" / "mqtt-credentials"
NOT_AUTHORISED = 0x87

CONFIG = """
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
status_interval_s = 1
batch_wait_ms = 50
{auth}
[remote]
enabled = true
trusted_keys = ["{key}"]
groups = [{groups}]
"""


def script(*args) -> str:
    done = subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


class FleetDevice(Device):
    """test_remote's device (the real sync agent and receiver) with this fleet's credentials and groups."""

    def __init__(self, folder: Path, key, device: str, groups: list[str], auth: str):
        self.folder, self.device, self.reloads, self.agent = folder, device, 0, None
        self.config = folder / "checkpoint.toml"
        folder.mkdir(parents=True, exist_ok=True)
        self.config.write_text(CONFIG.format(device=device, dir=folder / "state", auth=auth,
                                             key=public_text(key.public_key()),
                                             groups=", ".join(f'"{g}"' for g in groups)))
        EntryStore(folder / "state" / "entries.db").close()

    def version(self) -> str:
        return self.settings().version


class Watcher:
    """A raw MQTT client: what it receives, and the broker's answer to each of its publishes."""

    def __init__(self, port: int, client_id: str, *, username: str, password_file: Path):
        self.topics: list[str] = []
        self.answers: dict[int, int] = {}
        self.subscribed = threading.Event()
        self.client = make_client(client_id=client_id, username=username, password_file=str(password_file))
        self.client.on_message = lambda c, u, m: self.topics.append(m.topic)
        self.client.on_publish = lambda c, u, mid, rc, p: self.answers.__setitem__(mid, rc.value)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(patience(10))

    def publish(self, topic: str, payload: bytes = b"x", retain: bool = False) -> int:
        """The broker's reason code for a QoS 1 publish (0x87: not authorised, and dropped)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(patience(10))
        return wait_until(lambda: self.answers.get(info.mid) is not None and (self.answers[info.mid],), 10,
                          f"PUBACK of {topic}")[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def fleet(tmp_path):
    """Passwords for dev1 and the hub's services, a CA and a client certificate for dev2, and the shipped
    ACL with dev1 granted group north and dev2 group south."""
    creds, passwd, pki = tmp_path / "creds", tmp_path / "passwd", tmp_path / "pki"
    for user in ("dev1", "hub-admin", "hub-collector"):
        script("password", passwd, user, creds, "localhost")
    for args in (("ca", pki), ("server", pki, "localhost"), ("device-cert", pki, "dev2", "localhost")):
        script(*args)
    acl = tmp_path / "acl"
    shutil.copy(ROOT / "config" / "mosquitto" / "acl", acl)
    script("groups", acl, "dev1", "north")
    script("groups", acl, "dev2", "south")
    broker = Broker(tmp_path / "broker", tls=pki, anonymous=False, acl=acl.read_text(),
                    password_file=passwd).start()
    yield {"broker": broker, "creds": creds, "pki": pki, "acl": acl}
    broker.stop()


def devices(tmp_path, fleet, key, dev1_groups=("north", "south")):
    """dev1 by password, listing "south" as well (the broker, not the device, decides what it reads);
    dev2 by client certificate, its username the certificate's CN."""
    broker, creds, certs = fleet["broker"], fleet["creds"], fleet["pki"] / "devices" / "dev2"
    dev1 = FleetDevice(tmp_path / "dev1", key, "dev1", list(dev1_groups),
                       f'port = {broker.port}\npassword_file = "{creds / "dev1" / "password"}"')
    dev2 = FleetDevice(tmp_path / "dev2", key, "dev2", ["south"],
                       f'port = {broker.tls_port}\ntls = true\nca_file = "{certs / "ca.crt"}"\n'
                       f'cert_file = "{certs / "dev2.crt"}"\nkey_file = "{certs / "dev2.key"}"')
    return dev1, dev2


def admin_publisher(fleet, name="admin") -> admin.Publisher:
    client = make_client(client_id=name, username="hub-admin",
                         password_file=str(fleet["creds"] / "hub-admin" / "password"))
    return admin.Publisher(client, "127.0.0.1", fleet["broker"].port)


def push_config(publisher, key, target: str, version: int = 1) -> None:
    publisher.publish(admin.config_topic("checkpoint", target),
                      admin.config_bundle(key, target, version, b"[decision]\nrepeat_window_s = 3\n", expires_s=3600))


def push_list(publisher, key, state: Path, target: str, name: str) -> None:
    path = state / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(csv_rows([f"{name}-{i}" for i in range(50)]))
    lists = admin.HubLists(state, target)
    try:
        push = lists.prepare(key, target, name, path, hash_key=None, zone="UTC", max_code_bytes=256, expires_s=3600)
        lists.publish(publisher, "checkpoint", target, push)
    finally:
        lists.close()


ALLOWED_TO_DEV1 = ("checkpoint/all/", "checkpoint/group/north/", "checkpoint/dev1/")


def test_each_device_receives_and_applies_its_own_targets_and_nothing_else(tmp_path, fleet):
    key = new_private()
    dev1, dev2 = devices(tmp_path, fleet, key)
    password = fleet["creds"] / "dev1" / "password"
    # dev1's credentials from a second connection, asking for everything: what reaches it live...
    live = Watcher(fleet["broker"].port, "dev1-live", username="dev1", password_file=password)
    live.subscribe("checkpoint/#")
    publisher = admin_publisher(fleet)
    hub = tmp_path / "hub-state"
    collector = InProcessCollector(str(tmp_path / "hub.db"), fleet["broker"].port, username="hub-collector",
                                   password_file=str(fleet["creds"] / "hub-collector" / "password"))
    late = None
    try:
        for dev in (dev1, dev2):
            record(EntryStore(dev.folder / "state" / "entries.db"), 20, device=dev.device)
            dev.start()
        # What dev1 must not get is pushed first: on one connection messages keep their order, so once dev1
        # has applied the last of its own, anything of the others would have reached it before.
        for target, name in (("group:south", "south-list"), ("device:dev2", "dev2-list"),
                             ("all", "fleet-list"), ("group:north", "north-list"), ("device:dev1", "dev1-list")):
            push_list(publisher, key, hub, target, name)
            push_config(publisher, key, target)
        wait_until(lambda: dev1.version() == "local-1+all.1+group:north.1+device:dev1.1", 60, "dev1's layers")
        wait_until(lambda: all(dev1.list_version(n) == 1 for n in ("fleet-list", "north-list", "dev1-list")),
                   60, "dev1's lists")
        wait_until(lambda: dev2.version() == "local-1+all.1+group:south.1+device:dev2.1", 60, "dev2's layers")
        wait_until(lambda: all(dev2.list_version(n) == 1 for n in ("fleet-list", "south-list", "dev2-list")),
                   60, "dev2's lists")
        # Applied, and usable: a code of each list is found on the device it was meant for.
        assert dev1.settings().decision.repeat_window_s == 3
        assert lookup(dev1, "north-list-7") == [("north-list", 1, False)] and lookup(dev1, "south-list-7") == []
        assert lookup(dev2, "south-list-7") == [("south-list", 1, False)] and lookup(dev2, "dev1-list-7") == []
        assert dev1.list_version("south-list") is None and dev1.list_version("dev2-list") is None
        assert dev2.list_version("north-list") is None and dev2.list_version("dev1-list") is None
        # dev1 lists "south" in its config, and subscribed to it: the broker delivered nothing of it, so
        # nothing was even refused.
        assert dev1.rejected() is None and dev2.rejected() is None
        # The hub's collector read both devices' entries, statuses and acknowledgements.
        db = HubDB(str(tmp_path / "hub.db"))
        try:
            wait_until(lambda: len(hub_rows(str(tmp_path / "hub.db"))) == 40, 30, "entries of both at the hub")
            # Three configs and three lists accepted by each.
            wait_until(lambda: [sum(a["accepted"] for a in db.acks(device=d)) for d in ("dev1", "dev2")] == [6, 6],
                       30, "acks")
            wait_until(lambda: {r["device"] for r in db.fleet() if r["state"] == "online"} == {"dev1", "dev2"},
                       30, "statuses")
        finally:
            db.close()
        assert unsynced(dev1.folder / "state" / "entries.db") == 0
        # ...and what reaches it from the retained messages of everything pushed.
        late = Watcher(fleet["broker"].port, "dev1-late", username="dev1", password_file=password)
        late.subscribe("checkpoint/#")
        # A last message after everything above: when it arrives, all that came before has been delivered.
        publisher.publish("checkpoint/dev1/lists/end/marker", b"end")
        for watcher in (live, late):
            wait_until(lambda w=watcher: "checkpoint/dev1/lists/end/marker" in w.topics, 30, "end marker")
            assert {t for t in watcher.topics if not t.startswith(ALLOWED_TO_DEV1)} == set()
            assert {"checkpoint/all/config", "checkpoint/group/north/config", "checkpoint/dev1/config",
                    "checkpoint/all/lists/fleet-list/snapshot"} <= set(watcher.topics)
    finally:
        for closing in (live, late, publisher, collector):
            if closing is not None:
                closing.close()
        dev1.stop()
        dev2.stop()


def test_writes_are_confined_and_a_granted_group_arrives_after_a_reload(tmp_path, fleet):
    key = new_private()
    broker, creds = fleet["broker"], fleet["creds"]
    dev1, dev2 = devices(tmp_path, fleet, key)
    as_dev1 = Watcher(broker.port, "dev1-raw", username="dev1", password_file=creds / "dev1" / "password")
    as_collector = Watcher(broker.port, "collector-raw", username="hub-collector",
                           password_file=creds / "hub-collector" / "password")
    publisher = admin_publisher(fleet)
    try:
        # A device writes only its own entries, status and acks; it publishes no bundle, not even its own.
        for topic in ("checkpoint/dev2/entries", "checkpoint/dev2/status", "checkpoint/dev2/acks",
                      "checkpoint/all/config", "checkpoint/group/north/config", "checkpoint/dev1/config",
                      "checkpoint/all/lists/x/snapshot", "checkpoint/dev1/lists/x/snapshot"):
            assert as_dev1.publish(topic, retain=True) == NOT_AUTHORISED, topic
        assert as_dev1.publish("checkpoint/dev1/status", b"{}") < 0x80
        # The collector publishes nothing at all.
        for topic in ("checkpoint/all/config", "checkpoint/dev1/config", "checkpoint/group/south/config",
                      "checkpoint/dev1/entries", "checkpoint/dev1/acks", "checkpoint/hub-collector/entries"):
            assert as_collector.publish(topic, retain=True) == NOT_AUTHORISED, topic
        # The administrator grants dev1 group south as well; the broker reloads its ACL; a push to south
        # now reaches dev1, which already listed it, with no restart of the device.
        dev1.start()
        push_config(publisher, key, "group:south")
        push_config(publisher, key, "device:dev1")
        wait_until(lambda: dev1.version() == "local-1+device:dev1.1", 30, "dev1's own layer")
        assert "south" in script("groups", fleet["acl"], "dev1", "north", "south")
        broker.reload(fleet["acl"].read_text())
        push_config(publisher, key, "group:south", version=2)
        wait_until(lambda: dev1.version() == "local-1+group:south.2+device:dev1.1", 30, "south after the grant")
        # And revoked again: the next south push does not reach it (it keeps what it applied: a device
        # drops a group's layers when its own [remote] groups stop naming it).
        script("groups", fleet["acl"], "dev1", "north")
        broker.reload(fleet["acl"].read_text())
        push_config(publisher, key, "group:south", version=3)
        push_config(publisher, key, "device:dev1", version=2)
        wait_until(lambda: dev1.version() == "local-1+group:south.2+device:dev1.2", 30, "dev1's own v2")
    finally:
        for closing in (as_dev1, as_collector, publisher):
            closing.close()
        dev1.stop()
        dev2.stop()


def test_credentials_script_groups_stanzas(tmp_path):
    acl = tmp_path / "acl"
    shipped = (ROOT / "config" / "mosquitto" / "acl").read_text()
    acl.write_text(shipped)
    acl.chmod(0o640)
    script("groups", acl, "cp-01", "north", "vip")
    script("groups", acl, "cp-02", "south")
    script("groups", acl, "cp-01", "east")  # replaces cp-01's groups
    text = acl.read_text()
    assert text.startswith(shipped) and acl.stat().st_mode & 0o777 == 0o640
    assert text[len(shipped):] == (
        "# groups of cp-02\nuser cp-02\ntopic read checkpoint/group/south/config\n"
        "topic read checkpoint/group/south/lists/#\ntopic read checkpoint/group/south/trust\n\n"
        "# groups of cp-01\nuser cp-01\ntopic read checkpoint/group/east/config\n"
        "topic read checkpoint/group/east/lists/#\ntopic read checkpoint/group/east/trust\n\n")
    script("groups", acl, "cp-01")
    script("groups", acl, "cp-02")
    assert acl.read_text() == shipped
    for bad in (["all", "north"], ["group"], ["..", "north"], ["cp-01", "no/slash"], ["cp-01", "a b"],
                ["hub-admin", "north"]):
        done = subprocess.run([str(SCRIPT), "groups", str(acl), *bad], capture_output=True, text=True)
        assert done.returncode == 2 and done.stderr.startswith("mqtt-credentials: "), bad
    assert acl.read_text() == shipped
    for name, why in (("group", "reserved"), ("hub-admin", "hub service"), ("..", "dots")):
        done = subprocess.run([str(SCRIPT), "device-cert", str(tmp_path), name, "h"], capture_output=True, text=True)
        assert done.returncode == 2 and why in done.stderr, name
