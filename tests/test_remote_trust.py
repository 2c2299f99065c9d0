"""What applies on a device follows what its local file says now: the groups it is in, the keys it trusts,
and a remote.json it can read. Through a real broker, with the receiver and load_settings as the daemon
uses them (load_settings is what start, SIGHUP and `checkpoint config check` call)."""
from __future__ import annotations

import json
import logging
import stat

from edge.common.clock import wall_ms
from edge.settings.layers import device_targets, layers_in_force, signer_id
from sync.wire.bundle import key_id, new_private, public_text

from .test_remote import Device, Hub, csv_rows, hub, key, lookup, rejects  # noqa: F401 (fixtures)
from .test_remote_hostile import Acks
from .waiting import wait_until


def set_line(device: Device, start: str, line: str) -> None:
    """Edit the device's local file as an administrator would: one line replaced."""
    lines = [line if l.startswith(start) else l for l in device.config.read_text().splitlines()]
    device.config.write_text("\n".join(lines) + "\n")


def keys_line(*keys) -> str:
    return "trusted_keys = [" + ", ".join(f'"{public_text(k.public_key())}"' for k in keys) + "]"


def test_layers_in_force_follow_targets_in_their_order_and_trusted_keys():
    key = new_private()
    kid = key_id(key.public_key())
    assert signer_id(public_text(key.public_key())) == kid  # the core computes ids as bundles do
    layer = lambda target, k=kid: {"target": target, "version": 1, "merge": "override", "settings": {}, "key": k}  # noqa: E731
    stored = [layer("device:d"), layer("group:a"), layer("group:gone"), layer("all"), layer("group:b"),
              layer("group:x", "0" * 16), {**layer("group:c"), "key": None}]
    kept, left_out = layers_in_force(stored, device_targets("d", ["b", "a", "x", "c"]), {kid})
    assert [l["target"] for l in kept] == ["all", "group:b", "group:a", "device:d"]
    assert [(level, why.split(": ", 1)[1]) for level, why in left_out] == [
        (logging.WARNING, "this device no longer answers to group:gone"),
        (logging.ERROR, "signer key 0000000000000000 no longer trusted"),
        (logging.ERROR, "its signer is not recorded (saved by an older version); it applies again once its "
                        "retained copy is verified")]


def test_a_group_left_stops_applying_its_layer_at_reload_and_in_the_receiver(tmp_path, broker, key, hub, caplog):
    dev = Device(tmp_path / "dev1", broker.port, [key])
    set_line(dev, "groups", 'groups = ["north", "vip"]')
    dev.start()
    try:
        hub.config("group:vip", 1, '[decision]\nmode = "record"\n')
        hub.config("all", 1, '[decision]\nrepeat_window_s = 7\n')
        wait_until(lambda: dev.reloads == 2, what="both layers applied")
        assert dev.settings().version == "local-1+all.1+group:vip.1"
        # SIGHUP: the local file no longer names vip; its layer is dropped, not sorted first.
        set_line(dev, "groups", 'groups = ["north"]')
        settings = dev.settings()
        assert settings.version == "local-1+all.1"
        assert (settings.decision.mode, settings.decision.repeat_window_s) == ("allowlist", 7)
        assert "pushed config group:vip v1 left out: this device no longer answers to group:vip" in caplog.text
        # The receiver the daemon starts with the new [remote] settings: the layer is stored, not in force.
        dev.stop()
        dev.start()
        assert dev.receiver.status()["config"]["group:vip"] == {"version": 1, "in_force": False}
        hub.config("device:dev1", 1, '[decision]\nrepeat_window_s = 9\n')
        wait_until(lambda: dev.reloads == 3, what="the device's own layer applied")
        settings = dev.settings()
        assert settings.version == "local-1+all.1+device:dev1.1" and settings.decision.mode == "allowlist"
        assert dev.rejected() is None
        # Put back in the group, the device applies that group's newest layer again.
        set_line(dev, "groups", 'groups = ["north", "vip"]')
        assert dev.settings().version == "local-1+all.1+group:vip.1+device:dev1.1"
    finally:
        dev.stop()


def test_a_key_rotated_out_stops_what_it_signed(tmp_path, broker, hub, caplog):
    old, new = new_private(), new_private()
    old_id = key_id(old.public_key())
    dev = Device(tmp_path / "dev1", broker.port, [old, new]).start()
    hub.key = old
    hub.config("all", 100, '[decision]\nmode = "record"\n')  # a stolen key can take a high version
    hub.push_list("people", csv_rows(["a1", "a2"]))
    wait_until(lambda: dev.reloads == 1 and dev.list_version("people") == 1, 30, "applied while trusted")
    dev.stop()
    set_line(dev, "trusted_keys", keys_line(new))
    # At the next load (SIGHUP, start, config check) the layer no longer applies, loudly.
    caplog.set_level(logging.INFO)
    settings = dev.settings()
    assert settings.version == "local-1" and settings.decision.mode == "allowlist"
    assert [r.levelno for r in caplog.records if f"signer key {old_id} no longer trusted" in r.getMessage()] == [
        logging.ERROR]
    acks = Acks(broker.port)
    try:
        dev.start()
        problems = dev.receiver.status()["problems"]
        assert problems == [f"config all v100: signer key {old_id} no longer trusted: left out",
                            f"list people v1: signer key {old_id} no longer trusted: still in use until a "
                            "snapshot signed by a trusted key replaces it"]
        wait_until(lambda: len(acks.seen) == 2, what="both refusals sent to the hub")
        assert [(a["kind"], a["target"], a["name"], a["version"], a["accepted"]) for a in acks.seen] == [
            ("config", "all", None, 100, False), ("list", None, "people", 1, False)]
        assert all(a["reason"].startswith(f"signer key {old_id} no longer trusted") for a in acks.seen)
        # The new key's version 2 applies: the rotated-out key's version 100 does not hold the target.
        hub.key = new
        hub.config("all", 2, '[decision]\nrepeat_window_s = 5\n')
        wait_until(lambda: dev.reloads == 2, what="the new key's config applied")
        assert dev.settings().version == "local-1+all.2"
        # The retained copy of the old bundle, delivered at connection, was neither applied nor refused.
        assert dev.rejected() is None and len(acks.seen) == 3 and acks.seen[2]["accepted"]
        # A delta onto the list the old key signed is refused; the snapshot that comes with it replaces it.
        hub.push_list("people", csv_rows(["a2", "a3"]))
        wait_until(lambda: dev.list_version("people") == 2, 30, "the new key's snapshot installed")
        assert "a delta onto it is refused" in dev.rejected()["reason"]
        wait_until(lambda: dev.receiver.status()["problems"] == [], what="nothing of the old key in force")
    finally:
        acks.close()
        dev.stop()



def test_a_list_version_a_key_rotated_out_pushed_high_does_not_hold_later_snapshots_back(tmp_path, broker, hub):
    stolen, new = new_private(), new_private()
    dev = Device(tmp_path / "dev1", broker.port, [stolen, new]).start()
    try:
        hub.key = new
        hub.push_list("people", csv_rows(["a1", "a2"]))
        wait_until(lambda: dev.list_version("people") == 1, 30, "the administrator's v1")
        # A thief with the stolen key and a hub of its own numbers its version above the administrator's.
        (tmp_path / "thief").mkdir()
        thief = Hub(tmp_path / "thief", broker.port, stolen)
        try:
            for _ in range(4):
                thief.push_list("people", csv_rows(["t1"]), publish=False)
            thief.push_list("people", csv_rows(["thief"]))
        finally:
            thief.close()
        wait_until(lambda: dev.list_version("people") == 5, 30, "the stolen key's v5")
    finally:
        dev.stop()
    set_line(dev, "trusted_keys", keys_line(new))
    dev.start()
    try:
        # The administrator's next version, 2, is below the thief's 5: its snapshot replaces it all the same.
        hub.push_list("people", csv_rows(["a2", "a3"]))
        wait_until(lambda: dev.list_version("people") == 2, 30, "the trusted v2 installed over v5")
        assert lookup(dev, "thief") == [] and lookup(dev, "a3") == [("people", 2, False)]
        wait_until(lambda: dev.receiver.status()["problems"] == [], what="nothing of the stolen key in force")
        # From there on the list moves on as usual: the next version comes as a delta onto v2.
        push = hub.push_list("people", csv_rows(["a3", "a4"]))
        assert push.delta is not None and push.base == 2
        wait_until(lambda: dev.list_version("people") == 3, 30, "v3")
        assert lookup(dev, "a4") == [("people", 3, False)] and lookup(dev, "a2") == []
    finally:
        dev.stop()

def test_after_a_key_is_rotated_out_an_older_snapshot_of_a_trusted_key_is_still_refused(tmp_path, broker, hub):
    """The floor that a rotated-out key's version leaves is the newest a trusted key signed, not 0: a
    replay of the trusted key's older (unexpired) snapshot cannot roll the list back."""
    from sync.hub import admin

    stolen, trusted = new_private(), new_private()
    dev = Device(tmp_path / "dev1", broker.port, [stolen, trusted]).start()
    try:
        hub.key = trusted
        old = [hub.push_list("people", csv_rows([f"b{v}"]), publish=False) for v in (1, 2, 3, 4)]
        hub.push_list("people", csv_rows(["b5"]))
        wait_until(lambda: dev.list_version("people") == 5, 30, "the trusted key's v5")
        (tmp_path / "thief").mkdir()
        (tmp_path / "thief" / "t.csv").write_text(csv_rows(["thief"]))
        thief = admin.HubLists(tmp_path / "thief", "all")
        try:
            push = thief.prepare(stolen, "all", "people", tmp_path / "thief" / "t.csv", hash_key=None, zone="UTC",
                                 max_code_bytes=256, expires_s=3600, version=100)
            thief.publish(hub.publisher, "checkpoint", "all", push)
        finally:
            thief.close()
        wait_until(lambda: dev.list_version("people") == 100, 30, "the stolen key's v100")
    finally:
        dev.stop()
    set_line(dev, "trusted_keys", keys_line(trusted))
    dev.start()
    try:
        before = wall_ms()
        hub.publish("checkpoint/all/lists/people/snapshot", old[2].manifest)  # the trusted key's v3, replayed
        wait_until(rejects(dev, before), 30, "the replayed v3 refused")
        assert "not newer than the applied 5" in dev.rejected()["reason"]
        assert dev.list_version("people") == 100
        hub.push_list("people", csv_rows(["b6"]))
        wait_until(lambda: dev.list_version("people") == 6, 30, "the trusted key's v6 over v100")
        assert lookup(dev, "b6") == [("people", 6, False)] and lookup(dev, "thief") == []
    finally:
        dev.stop()


def test_unreadable_remote_state_refuses_every_bundle_until_an_administrator_acts(tmp_path, broker, key, hub,
                                                                                  caplog):
    dev = Device(tmp_path / "dev1", broker.port, [key]).start()
    state = tmp_path / "dev1" / "state" / "remote.json"
    hub.config("all", 2, '[decision]\nmode = "record"\n')
    wait_until(lambda: dev.reloads == 1, what="v2 applied")
    assert stat.S_IMODE(state.stat().st_mode) == 0o640
    dev.stop()
    damaged = state.read_bytes()[:40]
    state.write_bytes(damaged)
    assert dev.settings().version == "local-1"
    assert "PUSHED CONFIG LEFT OUT" in caplog.text and "until an administrator acts" in caplog.text
    acks = Acks(broker.port)
    try:
        dev.start()
        assert [r.levelno for r in caplog.records if "REMOTE STATE UNREADABLE" in r.getMessage()] == [logging.ERROR]
        [problem] = dev.receiver.status()["problems"]
        assert problem.startswith("pushed config and lists: every bundle refused until an administrator acts")
        # The retained v2 and anything new are refused, each with the reason; the damaged file stays as it is.
        hub.config("device:dev1", 1, '[decision]\nrepeat_window_s = 3\n')
        # (each at least once: the one published now may come through the kept session and again as retained)
        wait_until(lambda: {a["target"] for a in acks.seen} == {"all", "device:dev1"}, what="both refused")
        assert {(a["target"], a["accepted"]) for a in acks.seen} == {("all", False), ("device:dev1", False)}
        assert all("refused until an administrator acts" in a["reason"] for a in acks.seen)
        assert dev.reloads == 1 and state.read_bytes() == damaged
        # The administrator looked, then removed it: the device starts afresh.
        dev.stop()
        state.unlink()
        dev.start()
        wait_until(lambda: dev.reloads == 3, what="both applied again")
        assert dev.settings().version == "local-1+all.2+device:dev1.1" and dev.receiver.status()["problems"] == []
    finally:
        acks.close()
        dev.stop()


def test_state_saved_before_signers_were_recorded_applies_once_verified(tmp_path, broker, key, hub, caplog):
    dev = Device(tmp_path / "dev1", broker.port, [key]).start()
    state = tmp_path / "dev1" / "state" / "remote.json"
    hub.config("all", 1, '[decision]\nmode = "record"\n')
    wait_until(lambda: dev.reloads == 1, what="applied")
    dev.stop()
    # remote.json as the previous version wrote it: no signer, no versions by key.
    data = json.loads(state.read_text())
    data["config_layers"] = [{k: v for k, v in l.items() if k != "key"} for l in data["config_layers"]]
    data["applied_config"] = {t: {"version": a["version"], "digest": a["digest"], "applied_ms": a["applied_ms"]}
                              for t, a in data["applied_config"].items()}
    state.write_text(json.dumps(data))
    assert dev.settings().version == "local-1" and "its signer is not recorded" in caplog.text
    dev.start()
    try:
        wait_until(lambda: dev.reloads == 2, what="the retained copy verified")
        assert dev.settings().version == "local-1+all.1"
        assert json.loads(state.read_text())["config_layers"][0]["key"] == key_id(key.public_key())
        assert dev.receiver.status()["problems"] == [] and not rejects(dev)()
    finally:
        dev.stop()


def test_a_remote_state_with_a_wrong_type_deep_inside_is_refused_whole(tmp_path):
    """Each value a later step uses is type-checked on reading: a damaged file takes the loud "refuse
    everything" path (ConfigError), never a TypeError in the middle of applying a bundle."""
    import pytest

    from edge.settings.layers import read_remote_state
    from edge.settings.schema import ConfigError

    good = {"config_layers": [],
            "applied_config": {"all": {"version": 2, "digest": "ab", "key": "0" * 16, "versions": {"0" * 16: 2}}},
            "lists": {"people": {"version": 3, "signers": ["0" * 16], "digest": "cd"}}}
    (tmp_path / "remote.json").write_text(json.dumps(good))
    assert read_remote_state(tmp_path) == good
    damaged = [("applied_config", "versions", {"k": "2"}), ("applied_config", "versions", {"k": 2**60}),
               ("applied_config", "versions", {"k": [1]}), ("applied_config", "key", 7),
               ("applied_config", "key", ["k"]), ("lists", "digest", 5), ("lists", "digest", {"a": 1})]
    for table, field, value in damaged:
        state = json.loads(json.dumps(good))
        next(iter(state[table].values()))[field] = value
        (tmp_path / "remote.json").write_text(json.dumps(state))
        with pytest.raises(ConfigError, match="not a remote state file"):
            read_remote_state(tmp_path)


def test_a_full_queue_logs_a_hostile_topic_escaped_and_a_non_utf8_topic_is_named_plainly(tmp_path, caplog):
    """on_message runs in paho's thread: a topic of any bytes is logged escaped when the queue is full,
    and queued as "(not UTF-8)" otherwise, never an exception there."""
    from paho.mqtt.client import MQTTMessage

    from edge.settings.layers import load_settings
    from sync.device import remote
    from sync.device.remote import Receiver

    dev = Device(tmp_path / "dev1", 1, [new_private()])
    settings = load_settings(dev.config)
    receiver = Receiver(settings.remote, device_id="dev1", prefix="checkpoint", config_path=dev.config,
                        lists_path=settings.store.lists_path)
    forged = "checkpoint/all/config\n2026-11-29 12:00:00 INFO all good\x1b[2J\u202e" + "x" * 500
    for topic in (forged.encode(), b"checkpoint/all/\xff\xfe\n"):
        message = MQTTMessage(topic=topic)
        message.payload = b"payload"
        receiver._queued_bytes = remote.MAX_QUEUED_BYTES
        caplog.clear()
        with caplog.at_level(logging.WARNING, "checkpoint.remote"):
            receiver.on_message(None, None, message)
        [line] = [r.getMessage() for r in caplog.records]
        assert "receive queue full" in line and "\n" not in line and "\x1b" not in line and "\u202e" not in line
        assert len(line) < 300
    assert "not UTF-8" in line
    receiver._queued_bytes = 0
    receiver.on_message(None, None, message)
    assert receiver._queue.get_nowait() == ("(not UTF-8)", b"payload")
