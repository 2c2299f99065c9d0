"""Pushes that report back: a device's status goes up on every change that matters (not only every
status_interval_s), through a real Mosquitto to real receivers."""
from __future__ import annotations

import contextlib
import io
import json
import threading
import unicodedata

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from edge.common.clock import wall_ms
from edge.entries.store import EntryStore
from sync.device.agent import SyncAgent
from sync.hub import admin
from sync.hub.hubdb import HubDB
from sync.wire.bundle import new_private
from sync.wire.mqtt import make_client

from .test_remote import Device, Hub
from .waiting import patience, wait_until


class StatusWatcher:
    """Every status message a device publishes (retained ones included), as the hub's collector sees them."""

    def __init__(self, port: int, device: str):
        self.seen: list[dict] = []
        self._lock = threading.Lock()
        self.client = make_client(client_id=f"watcher-{device}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(f"checkpoint/{device}/status", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, message):
        with self._lock:
            self.seen.append(json.loads(message.payload))

    def statuses(self) -> list[dict]:
        with self._lock:
            return list(self.seen)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def quiet_device(tmp_path, port, keys) -> Device:
    """A device whose periodic status is an hour apart: any status after the first came from a change."""
    d = Device(tmp_path / "dev1", port, keys)
    d.config.write_text(d.config.read_text().replace("status_interval_s = 1", "status_interval_s = 3600"))
    return d


def test_a_refused_bundle_shows_in_the_retained_status_at_once(tmp_path, broker):
    key = new_private()
    device = quiet_device(tmp_path, broker.port, [key]).start()
    watcher = StatusWatcher(broker.port, "dev1")
    hub = Hub(tmp_path, broker.port, key)
    try:
        wait_until(lambda: watcher.statuses(), what="the first status")
        start = wall_ms()
        hub.publish(admin.config_topic("checkpoint", "all"),
                    admin.config_bundle(key, "all", 1, b'[sync]\nhost = "evil.example"\n', expires_s=3600))

        def refused():
            for status in watcher.statuses():
                last = (status.get("remote") or {}).get("last_rejected") or {}
                if last.get("time_ms", 0) >= start:
                    return last
        last = wait_until(refused, what="the refusal in a status well before status_interval_s")
        assert "may not set sync" in last["reason"] and last["target"] == "all" and last["version"] == 1
        # An accepted bundle too: the status names the applied version.
        hub.config("all", 2, '[decision]\nmode = "record"\n')
        wait_until(lambda: any(((s.get("remote") or {}).get("config") or {}).get("all", {}).get("version") == 2
                               for s in watcher.statuses()), what="the applied v2 in a status")
    finally:
        hub.close()
        watcher.close()
        device.stop()


def test_a_change_in_the_daemons_snapshot_goes_up_and_counters_do_not(tmp_path, broker):
    path = tmp_path / "dev" / "entries.db"
    EntryStore(path).close()
    snapshot = {"source": {"name": "cam", "state": "running", "delivered": 0}, "problems": [], "scans": 0}
    from edge.settings.schema import SyncSettings

    settings = SyncSettings(enabled=True, host="127.0.0.1", port=broker.port, batch_wait_ms=50,
                            status_interval_s=3600)
    watcher = StatusWatcher(broker.port, "dev1")
    agent = SyncAgent(settings, device_id="dev1", entries_path=path, status=lambda: snapshot)
    agent.start()
    try:
        wait_until(lambda: watcher.statuses(), what="the first status")
        # A counter moves: not worth a status of its own. Then the source stops: that goes up.
        snapshot = {**snapshot, "scans": 5, "source": {**snapshot["source"], "delivered": 5}}
        snapshot = {**snapshot, "source": {**snapshot["source"], "state": "failed"}, "problems": ["source failed"]}
        wait_until(lambda: any((s.get("source") or {}).get("state") == "failed" for s in watcher.statuses()),
                   what="the source's failure in a status")
        failed = [s for s in watcher.statuses() if (s.get("source") or {}).get("state") == "failed"]
        assert failed[0]["problems"] == ["source failed"]
        # Many changes in a row are folded: each status carries the newest snapshot, none is lost.
        for n in range(20):
            snapshot = {**snapshot, "problems": [f"problem {n}"]}
        wait_until(lambda: any(s.get("problems") == ["problem 19"] for s in watcher.statuses()),
                   what="the newest problem in a status")
        assert len(watcher.statuses()) < 20
    finally:
        agent.stop()
        watcher.close()


# ---- config push --wait, pushed, drift --------------------------------------------------------------
def test_push_wait_reports_accepted_refused_and_silent_and_drift_clears(tmp_path, broker, capsys):
    from sync.hub.cli import main
    from sync.hub.hubdb import HubDB

    from .test_sync import InProcessCollector

    hub_db = str(tmp_path / "hub.db")
    assert main(["keygen", "--out", str(tmp_path / "admin.key")]) == 0
    key = admin.read_private(tmp_path / "admin.key")
    collector = InProcessCollector(hub_db, broker.port)
    good = Device(tmp_path / "good", broker.port, [key], device="cp-good").start()
    wrong = Device(tmp_path / "wrong", broker.port, [new_private()], device="cp-wrong").start()
    silent = Device(tmp_path / "silent", broker.port, [key], device="cp-silent").start()
    db = HubDB(hub_db)
    try:
        # The hub learns of the three and of their group from their statuses; one then goes away.
        wait_until(lambda: len(db.members("group:north")) == 3, what="three members of group:north")
        silent.stop()
        wait_until(lambda: {r["device"]: r["state"] for r in db.fleet()}.get("cp-silent") == "offline",
                   what="cp-silent offline")
        capsys.readouterr()
        (tmp_path / "c.toml").write_text('[decision]\nmode = "record"\n')
        common = ["--port", str(broker.port), "--host", "127.0.0.1", "--db", hub_db,
                  "--key", str(tmp_path / "admin.key")]
        wait_s = f"{patience(4):.1f}"
        assert main(["config", "push", "--to", "group:north", str(tmp_path / "c.toml"), "--wait", wait_s,
                     *common]) == 1
        out = capsys.readouterr().out.splitlines()
        said = dict(line.split("\t", 1) for line in out if "\t" in line)
        assert said["cp-good"] == "accepted"
        assert said["cp-wrong"].startswith("REFUSED: ") and "unknown key" in said["cp-wrong"]
        assert said["cp-silent"].startswith(f"no answer in {float(wait_s):g} s (offline since ")
        # Every device accepted: exit 0. A group the hub knows no member of: nothing to wait for, exit 1.
        assert main(["config", "push", "--to", "cp-good", str(tmp_path / "c.toml"), "--wait", wait_s,
                     *common]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == "cp-good\taccepted"
        assert main(["config", "push", "--to", "group:south", str(tmp_path / "c.toml"), "--wait", *common]) == 1
        assert "no device the hub knows of is in group:south" in capsys.readouterr().err

        assert main(["pushed", "--json", "--db", hub_db]) == 0
        pushed = {(r["target"], r["kind"]): r["version"] for r in json.loads(capsys.readouterr().out)}
        assert pushed == {("group:north", "config"): 1, ("device:cp-good", "config"): 1,
                          ("group:south", "config"): 1}

        def drift():
            assert main(["drift", "--json", "--db", hub_db]) == 0
            return {r["device"]: r for r in json.loads(capsys.readouterr().out)}
        # cp-good's status with both applied versions follows its acks by a moment.
        rows = wait_until(lambda: (r := drift()) and set(r) == {"cp-wrong", "cp-silent"} and r,
                          what="drift of the refusing and the silent device only")
        assert rows["cp-wrong"]["why"].startswith("refused: ") and "unknown key" in rows["cp-wrong"]["why"]
        assert rows["cp-silent"]["why"].startswith("offline since ") and rows["cp-silent"]["applied"] is None
        assert rows["cp-silent"]["pushed"] == 1 and rows["cp-silent"]["target"] == "group:north"
        assert main(["drift", "--db", hub_db]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0] == "device\twhat\tapplied\tpushed\twhy" and len(table) == 3
        # The silent device comes back, takes the retained bundle, and its drift clears.
        silent.start()
        wait_until(lambda: "cp-silent" not in drift(), what="cp-silent caught up")
        assert set(drift()) == {"cp-wrong"}
    finally:
        db.close()
        for d in (good, wrong, silent):
            d.stop()
        collector.close()


# ---- whatever a device says in its status, fleet / drift / --wait's members never fail ----------------
ANY = st.recursive(st.none() | st.booleans() | st.integers(-(10**40), 10**40) | st.floats(allow_nan=False)
                   | st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200),
                   lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                   max_leaves=20)


def nested(depth: int):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


DEEP_LIST = st.integers(1, 14).map(nested)  # the collector keeps up to 16 levels
NAMED = st.sampled_from(["all", "group:north", "device:devA", "\x1b[2J", "x" * 300])
HOSTILE_STATUS = st.fixed_dictionaries({}, optional={
    "remote": st.fixed_dictionaries({}, optional={
        "groups": st.lists(st.text(max_size=20) | ANY, max_size=5) | ANY,
        "config": st.dictionaries(NAMED, st.fixed_dictionaries({"version": ANY}) | ANY, max_size=3) | ANY,
        "trust": st.dictionaries(NAMED, ANY, max_size=3) | ANY}) | ANY,
    "versions": st.fixed_dictionaries({}, optional={"lists": st.dictionaries(st.text(max_size=20), ANY,
                                                                              max_size=3) | ANY,
                                                    "config": ANY}) | ANY,
    "outbox": ANY, "source": ANY, "problems": st.lists(ANY, max_size=4) | DEEP_LIST | ANY,
    "sent_ms": st.integers(-(10**30), 10**30) | ANY})


@pytest.fixture(scope="module")
def hostile_hub(tmp_path_factory):
    from sync.hub.collector import Collector
    from sync.hub.hubdb import HubDB

    db = HubDB(str(tmp_path_factory.mktemp("hub") / "hub.db"))
    for target, kind, name in (("all", "config", ""), ("group:north", "trust", ""), ("all", "list", "people")):
        db.record_bundle(target, kind, name, 3, wall_ms(), "0" * 64)
    yield db, Collector(db, make_client(client_id="handler-under-test", manual_ack=True))
    db.close()


def run_hub(*argv) -> tuple[int, list[str]]:
    """checkpoint-hub in this process: its exit status and its output's lines."""
    from sync.hub.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(list(argv))
    return status, out.getvalue().splitlines()


@hsettings(max_examples=40)
@given(HOSTILE_STATUS)
def test_any_status_leaves_fleet_drift_and_members_working(hostile_hub, status):
    from sync.hub.cli import drift

    db, collector = hostile_hub
    collector.handle("checkpoint/devA/status", json.dumps({"device": "devA", "state": "online", **status}).encode())
    assert db.members("all") == ["devA"] and db.members("device:devA") == ["devA"]
    assert db.members("group:north") in ([], ["devA"])
    for row in drift(db):
        assert row["device"] == "devA" and isinstance(row["why"], str)
    code, rows = run_hub("fleet", "--db", db.url)
    assert code == 0 and len(rows) == 2
    assert not [ch for ch in rows[1] if ch != "\t" and unicodedata.category(ch) == "Cc"]
    assert len(rows[1]) <= 200  # each cell capped: a row is about 120 characters, never the status' size
    assert run_hub("fleet", "--wide", "--db", db.url)[0] == 0
    assert run_hub("drift", "--db", db.url)[0] == 0


@contextlib.contextmanager
def device_holding_a_local_list(tmp_path, broker):
    """cp-01 holding v1 of `people`, imported on the device itself, known to a hub with a running collector:
    (the hub database, the push command's common arguments, the device)."""
    from edge.lists import ListStore
    from sync.hub.cli import main

    from .test_sync import InProcessCollector

    hub_db = str(tmp_path / "hub.db")
    assert main(["keygen", "--out", str(tmp_path / "admin.key")]) == 0
    key = admin.read_private(tmp_path / "admin.key")
    device = Device(tmp_path / "dev", broker.port, [key], device="cp-01")
    (tmp_path / "dev" / "state").mkdir(parents=True)
    (tmp_path / "local.csv").write_text("code\nL-1\n")
    local = ListStore(tmp_path / "dev" / "state" / "lists.db")
    with open(tmp_path / "local.csv", "rb") as fh:
        local.import_csv("people", fh, zone="UTC", max_code_bytes=256)
    local.close()
    collector = InProcessCollector(hub_db, broker.port)
    device.start()
    db = HubDB(hub_db)
    try:
        wait_until(lambda: db.members("all") == ["cp-01"], what="cp-01 known to the hub")
        (tmp_path / "people.csv").write_text("code\nP-1\nP-2\n")
        common = ["--port", str(broker.port), "--host", "127.0.0.1", "--db", hub_db, "--key",
                  str(tmp_path / "admin.key"), "--state", str(tmp_path / "hub-state"), "--to", "all"]
        yield db, common, device
    finally:
        db.close()
        device.stop()
        collector.close()


def test_list_push_wait_reports_a_refusal_then_the_next_version_accepted(tmp_path, broker, capsys):
    """The issue's case: a list imported on the device itself; the hub's v1 is refused, and --wait says so."""
    from sync.hub.cli import main

    with device_holding_a_local_list(tmp_path, broker) as (db, common, device):
        capsys.readouterr()
        assert main(["list", "push", "people", str(tmp_path / "people.csv"), "--wait", f"{patience(30):.0f}",
                     *common]) == 1
        last = capsys.readouterr().out.splitlines()[-1]
        assert last.startswith("cp-01\tREFUSED: ") and "not newer than the applied 1" in last
        assert main(["list", "push", "people", str(tmp_path / "people.csv"), "--wait", f"{patience(30):.0f}",
                     *common]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == "cp-01\taccepted"
        assert device.list_version("people") == 2


def test_list_push_version_goes_past_a_list_imported_on_the_device(tmp_path, broker, capsys):
    """A device holds v1 of a list the hub never pushed: --version 2 is accepted at once; a --version not
    above the last pushed is refused before anything is prepared or published."""
    from sync.hub.cli import main

    with device_holding_a_local_list(tmp_path, broker) as (db, common, device):
        capsys.readouterr()
        assert main(["list", "push", "people", str(tmp_path / "people.csv"), "--version", "2",
                     "--wait", f"{patience(30):.0f}", *common]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == "cp-01\taccepted"
        assert device.list_version("people") == 2
        assert main(["list", "push", "people", str(tmp_path / "people.csv"), "--version", "2", *common]) != 0
        assert "not above v2" in capsys.readouterr().err
        assert db.next_version(admin.parse_target("all"), "list", "people") == 3
