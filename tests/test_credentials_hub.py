"""The hub's credential commands: `checkpoint-hub pass keygen|issue|issue-csv` make printable passes that
`checkpoint decode` reads and `checkpoint credential verify` accepts; `checkpoint-hub trust push` sends a
checked, signed trust list through a real Mosquitto to a real receiver, which writes trust.json."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.credentials import passes, trustfile
from edge.credentials.trust import load_trust_list
from sync.hub import admin
from sync.hub.cli import main as hub
from sync.wire.bundle import BundleError, TrustedKeys, new_private, verify

from .conftest import run_checkpoint
from .credfixtures import DAY, make_dsc, trust_entry
from .test_acl import fleet  # noqa: F401 - the fixture: a broker under the shipped ACL
from .test_remote import Device, Hub, rejects
from .waiting import wait_until

NOW = dt.datetime.now(dt.UTC)


def decoded(*paths) -> list[str]:
    result = run_checkpoint("decode", "--json", *paths)
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["text"] for line in result.stdout.splitlines()]


def verify_pass(payload: str, key_text: str) -> dict:
    result = run_checkpoint("credential", "verify", "--pass-key", key_text, "--json", payload)
    return json.loads(result.stdout)


def test_pass_keygen_issue_decode_and_verify(tmp_path, capsys):
    key_path = tmp_path / "pass.key"
    assert hub(["pass", "keygen", "--out", str(key_path)]) == 0
    public = capsys.readouterr().out.strip().splitlines()[-1]
    assert key_path.stat().st_mode & 0o777 == 0o600
    assert hub(["pass", "keygen", "--out", str(key_path)]) == 2  # never overwritten
    until = (NOW + 30 * DAY).strftime("%Y-%m-%dT%H:%M")
    assert hub(["pass", "issue", "--key", str(key_path), "--id", "STAFF-0042", "--label", "Nguyễn Văn An",
                "--valid-until", until, "--timezone", "Asia/Ho_Chi_Minh", "--gates", "north", "east",
                "--png", str(tmp_path / "staff.png")]) == 0
    assert hub(["pass", "issue", "--key", str(key_path), "--id", "V-1", "--label", "Trần Thị Bình",
                "--svg", str(tmp_path / "v1.svg")]) == 0
    [text] = decoded(tmp_path / "staff.png")
    out = verify_pass(text, public)
    assert (out["verdict"], out["id"], out["holder"]["name"]) == ("accept", "STAFF-0042", "Nguyễn Văn An")
    assert out["valid_until"].startswith((NOW + 30 * DAY).strftime("%Y-%m-%d")[:8])
    assert "<svg" in (tmp_path / "v1.svg").read_text()
    # Another key's pass is untrusted; a bad command line is refused without a traceback.
    other = passes.generate_key(tmp_path / "other.key")
    assert verify_pass(passes.issue_pass(other, "X", "Y"), public)["reason"] == "untrusted"
    for bad in (["--valid-until", "tomorrow"], ["--timezone", "Mars/Olympus"], ["--id", ""], ["--png", "x.gif"]):
        args = ["pass", "issue", "--key", str(key_path), "--id", "A", "--png", str(tmp_path / "a.png"), *bad]
        assert hub(args) == 2, bad
    assert hub(["pass", "issue", "--key", str(tmp_path / "missing.key"), "--id", "A", "--png",
                str(tmp_path / "a.png")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_pass_issue_csv_writes_one_image_per_row(tmp_path, capsys):
    key_path = tmp_path / "admin.key"
    assert hub(["keygen", "--out", str(key_path)]) == 0  # the administrators' key signs passes too
    public = passes.public_key_text(passes.load_key(key_path))
    (tmp_path / "visitors.csv").write_text(
        "id,label,valid_from,valid_until,gates\n"
        f"V-1,Lê Văn Cường,,{(NOW + DAY).date()},\n"
        "V-2,Phạm Thu Hương,,,north south\n", encoding="utf-8")
    assert hub(["pass", "issue-csv", str(tmp_path / "visitors.csv"), "--key", str(key_path),
                "--out", str(tmp_path / "out")]) == 0
    images = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in images] == ["V-1.png", "V-2.png"]
    texts = decoded(*images)
    assert [verify_pass(t, public)["id"] for t in texts] == ["V-1", "V-2"]
    (tmp_path / "bad.csv").write_text("id,label,valid_until\nV-3,Ok,\nV-4,Bad,someday\n")
    assert hub(["pass", "issue-csv", str(tmp_path / "bad.csv"), "--key", str(key_path),
                "--out", str(tmp_path / "bad-out")]) == 2
    assert not (tmp_path / "bad-out").exists()  # nothing written when a row is bad


@pytest.fixture(scope="module")
def dsc():
    return make_dsc("ec", not_before=NOW - 365 * DAY, not_after=NOW + 365 * DAY)


def test_trust_push_reaches_a_real_receiver_and_is_versioned(tmp_path, broker, dsc, capsys):
    assert hub(["keygen", "--out", str(tmp_path / "admin.key")]) == 0
    key = admin.read_private(tmp_path / "admin.key")
    device = Device(tmp_path / "dev1", broker.port, [key]).start()
    try:
        gateway = tmp_path / "gateway.json"
        gateway.write_text(json.dumps([trust_entry(dsc[1]), {"kid": "AAAA", "certificateType": "CSCA"}]))
        common = ["--port", str(broker.port), "--host", "127.0.0.1", "--db", str(tmp_path / "hub.db"),
                  "--key", str(tmp_path / "admin.key")]
        assert hub(["trust", "push", str(gateway), "--to", "all", *common]) == 0
        stored = device.folder / "state" / "trust.json"
        wait_until(stored.exists, what="trust.json written by the receiver")
        meta = trustfile.read_meta(stored)
        assert (meta.version, meta.signers, meta.source) == (1, 1, "all v1")
        assert len(load_trust_list(stored)) == 1
        # A second push is version 2; a lower --version, a file that is no trust list, are refused at the hub
        # before anything is signed.
        assert hub(["trust", "push", str(gateway), "--to", "all", *common]) == 0
        wait_until(lambda: trustfile.read_meta(stored).version == 2, what="v2")
        assert hub(["trust", "push", str(gateway), "--to", "all", "--version", "2", *common]) == 2
        (tmp_path / "empty.json").write_text("[]")
        assert hub(["trust", "push", str(tmp_path / "empty.json"), "--to", "all", *common]) == 2
        assert "Traceback" not in capsys.readouterr().err
        # A device restarted gets the retained copy again: recognised, neither applied nor refused again.
        device.stop()
        device.start()
        assert device.receiver.state["trust"]["all"]["version"] == 2 and device.rejected() is None
    finally:
        device.stop()


def test_receiver_refuses_bad_trust_bundles(tmp_path, broker, dsc):
    key = new_private()
    device = Device(tmp_path / "dev1", broker.port, [key]).start()
    hub_ = Hub(tmp_path, broker.port, key)
    stored = device.folder / "state" / "trust.json"
    good = json.dumps([trust_entry(dsc[1])]).encode()
    try:
        topic = admin.trust_topic("checkpoint", "all")
        hub_.publish(topic, admin.trust_bundle(key, "all", 3, good, expires_s=3600))
        wait_until(stored.exists, what="v3 applied")
        before = stored.read_bytes()
        cases = [
            (admin.trust_bundle(key, "all", 4, b"[]", expires_s=3600), "invalid trust list"),
            (admin.trust_bundle(key, "all", 2, good, expires_s=3600), "not newer than the applied 3"),
            (admin.trust_bundle(new_private(), "all", 5, good, expires_s=3600), "unknown key"),
            (admin.trust_bundle(key, "device:dev2", 5, good, expires_s=3600), "addressed to device:dev2"),
        ]
        for message, reason in cases:
            since = device.rejected()["time_ms"] + 1 if device.rejected() else 0
            hub_.publish(topic if "dev2" not in reason else admin.trust_topic("checkpoint", "device:dev1"), message)
            wait_until(rejects(device, since), what=reason)
            assert reason in device.rejected()["reason"]
            # What was refused is named when its signature vouches for the header.
            assert device.rejected()["kind"] == ("unknown" if reason == "unknown key" else "trust")
        assert stored.read_bytes() == before
    finally:
        hub_.close()
        device.stop()


@settings(max_examples=40)
@given(st.recursive(st.none() | st.booleans() | st.integers(min_value=-2**80, max_value=2**80) |
                    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=30))
def test_hostile_trust_list_bodies_are_refused_cleanly(doc):
    """Whatever JSON a trust bundle carries, checking it either finds a signer or raises TrustListError."""
    from edge.credentials.trust import TrustListError

    for data in (json.dumps(doc).encode(), json.dumps({"certificates": doc}).encode(), b"[" * 5000):
        try:
            admin.check_trust(data)
        except TrustListError:
            pass


def test_trust_bundle_header_is_typed():
    key = new_private()
    message = admin.trust_bundle(key, "all", 1, b"[]", expires_s=60)
    bundle = verify(message, TrustedKeys([admin.public_text(key.public_key())]))
    assert bundle.header.kind == "trust" and bundle.body == b"[]"
    with pytest.raises(BundleError, match="neither merge nor a list"):
        admin.signed(key, body=b"", expires_s=60, kind="trust", target="all", version=1, merge="full")


def test_acl_lets_a_device_read_its_own_its_groups_and_the_fleets_trust_lists_only(tmp_path, fleet, dsc):
    """Under the shipped ACL and scripts/mqtt-credentials' group stanzas: dev1 (group north) receives the
    trust lists pushed to all, to north and to itself, none of south's or dev2's, and publishes none."""
    from .test_acl import NOT_AUTHORISED, FleetDevice, Watcher, admin_publisher

    assert "topic read checkpoint/group/north/trust" in fleet["acl"].read_text()
    key = new_private()
    broker, creds = fleet["broker"], fleet["creds"]
    dev1 = FleetDevice(tmp_path / "dev1", key, "dev1", ["north", "south"],
                       f'port = {broker.port}\npassword_file = "{creds / "dev1" / "password"}"')
    publisher = admin_publisher(fleet)
    as_dev1 = Watcher(broker.port, "dev1-raw", username="dev1", password_file=creds / "dev1" / "password")
    body = json.dumps([trust_entry(dsc[1])]).encode()
    try:
        dev1.start()
        for target in ("group:south", "device:dev2", "all", "group:north", "device:dev1"):
            publisher.publish(admin.trust_topic("checkpoint", target),
                              admin.trust_bundle(key, target, 1, body, expires_s=3600))
        wait_until(lambda: set(dev1.receiver.state["trust"]) == {"all", "group:north", "device:dev1"},
                   what="the three trust lists dev1 may read")
        assert dev1.rejected() is None  # south's and dev2's never reached it: nothing to refuse
        for topic in ("checkpoint/all/trust", "checkpoint/dev1/trust", "checkpoint/group/north/trust"):
            assert as_dev1.publish(topic, retain=True) == NOT_AUTHORISED, topic
    finally:
        for closing in (as_dev1, publisher):
            closing.close()
        dev1.stop()


def test_a_damaged_trust_table_in_remote_json_refuses_every_bundle(tmp_path, broker, dsc):
    """What refuses a replayed trust list cannot be read: nothing is applied until an administrator acts."""
    key = new_private()
    device = Device(tmp_path / "dev1", broker.port, [key])
    state = device.folder / "state"
    state.mkdir(parents=True)
    (state / "remote.json").write_text(json.dumps({"trust": {"all": {"version": "7", "digest": 3}}}))
    device.start()
    hub_ = Hub(tmp_path, broker.port, key)
    try:
        hub_.publish(admin.trust_topic("checkpoint", "all"),
                     admin.trust_bundle(key, "all", 9, json.dumps([trust_entry(dsc[1])]).encode(), expires_s=3600))
        wait_until(rejects(device), what="refused")
        assert "refused until an administrator acts" in device.rejected()["reason"]
        assert not (state / "trust.json").exists()
    finally:
        hub_.close()
        device.stop()
