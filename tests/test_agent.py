"""The device's sync agent: backing off while no collector listens, a clear-text password warned about,
its retained status and last will."""
from __future__ import annotations

import json
import logging

import pytest

from edge.entries.store import EntryStore
from edge.settings.schema import SyncSettings
from sync.device.agent import Backoff, SyncAgent, is_loopback, unrouted_backoff
from sync.wire.mqtt import make_client

from .test_sync import InProcessCollector, hub_rows, record, unsynced
from .waiting import wait_until


def settings(port: int = 1883, **kw) -> SyncSettings:
    return SyncSettings(enabled=True, host=kw.pop("host", "127.0.0.1"), port=port, batch_wait_ms=50,
                        status_interval_s=1, **kw)


# ---- no collector subscribed ----------------------------------------------------------------------
def test_unrouted_batches_back_off_then_drain_when_a_collector_subscribes(tmp_path, broker, caplog):
    caplog.set_level(logging.INFO, logger="checkpoint.sync")
    path = tmp_path / "dev" / "entries.db"
    record(EntryStore(path), 30)
    # No jitter (the top of each step), and small steps so the cap is reached at once.
    backoff = Backoff(initial=0.05, maximum=0.4, rng=lambda: 1.0)
    agent = SyncAgent(settings(broker.port), device_id="dev1", entries_path=path, backoff=backoff)
    agent.start()
    collector = None
    try:
        wait_until(lambda: backoff.attempts >= 7, what="seven unrouted rounds")
        sent = agent.state["sent_batches"]  # read before the attempts: never more than one round ahead
        attempts = backoff.attempts
        # One batch a round (30 entries fit in one), each round after the wait chosen before it: the waits
        # double up to the cap and stay there, and nothing is sent between them.
        assert list(backoff.delays)[:7] == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4, 0.4]
        assert sent <= attempts + 1
        assert unsynced(path) == 30 and agent.state["synced"] == 0
        assert agent.state["last_error"] == "no collector subscribed at the broker; resending"
        # Said once, as a warning, however many rounds.
        sync_logs = [r for r in caplog.records if r.name == "checkpoint.sync"]
        assert [r.levelname for r in sync_logs if "no collector" in r.getMessage()] == ["WARNING"]
        assert not [r for r in sync_logs if r.levelno >= logging.ERROR]
        # The entries waited in the outbox; a collector subscribes, and they go up.
        collector = InProcessCollector(str(tmp_path / "hub.db"), broker.port)
        wait_until(lambda: unsynced(path) == 0, what="outbox drained")
        wait_until(lambda: len(hub_rows(str(tmp_path / "hub.db"))) == 30, what="hub rows")
        assert backoff.attempts == 0 and agent.state["last_error"] is None
        assert sum("subscribed again" in r.getMessage() for r in caplog.records) == 1
    finally:
        agent.stop()
        if collector is not None:
            collector.close()


def test_the_agents_backoff_is_jittered_from_1_to_60_seconds():
    # How a jittered Backoff spreads a fleet is tested in test_backoff; here only the agent's choice.
    b = unrouted_backoff()
    assert (b.initial, b.factor, b.maximum) == (1.0, 2.0, 60.0) and b.rng is not None


# ---- a password in clear text ---------------------------------------------------------------------
@pytest.mark.parametrize("host, tls, with_password, warned", [
    ("hub.example", False, True, True),
    ("10.0.0.5", False, True, True),
    ("fd00::5", False, True, True),
    ("hub.example", True, True, False),       # encrypted
    ("hub.example", False, False, False),     # no password to give away
    ("127.0.0.1", False, True, False),        # never leaves the machine
    ("127.8.9.10", False, True, False),
    ("localhost", False, True, False),
    ("::1", False, True, False),
])
def test_a_password_sent_in_clear_is_warned_about_once(tmp_path, caplog, host, tls, with_password, warned):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    extra = {"password_file": str(secret)} if with_password else {}
    with caplog.at_level(logging.WARNING, logger="checkpoint.sync"):
        SyncAgent(settings(8883, host=host, tls=tls, **extra), device_id="cp-01", entries_path=tmp_path / "e.db")
    said = [r.getMessage() for r in caplog.records if "clear text" in r.getMessage()]
    if warned:
        assert len(said) == 1 and f"{host}:8883" in said[0] and "cp-01" in said[0] and "s3cret" not in said[0]
    else:
        assert said == []


def test_loopback_by_spelling_only():
    assert is_loopback("LOCALHOST") and is_loopback("[::1]") and is_loopback("127.0.0.2")
    assert not is_loopback("localhost.evil.example") and not is_loopback("128.0.0.1") and not is_loopback("")


# ---- status and last will ---------------------------------------------------------------------------
def test_retained_status_says_online_and_offline_like_the_will(tmp_path, broker):
    path = tmp_path / "dev" / "entries.db"
    EntryStore(path).close()
    seen: list[dict] = []
    watcher = make_client(client_id="watcher")
    watcher.on_message = lambda c, u, m: seen.append(json.loads(m.payload))
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe("checkpoint/dev1/status", qos=1)
    watcher.loop_start()
    # The daemon's snapshot has a "state" of its own ("running"): the status on the wire is the connection's.
    agent = SyncAgent(settings(broker.port), device_id="dev1", entries_path=path,
                      status=lambda: {"state": "running", "versions": {"config": "v7"}})
    agent.start()
    running = True
    try:
        wait_until(lambda: seen and seen[-1].get("versions"), what="a status")
        assert seen[-1]["state"] == "online" and seen[-1]["versions"] == {"config": "v7"}
        assert seen[-1]["device"] == "dev1"
        agent.stop()
        running = False
        wait_until(lambda: seen[-1]["state"] == "offline", what="offline on a clean stop")
        assert {s["state"] for s in seen} == {"online", "offline"}
    finally:
        if running:
            agent.stop()
        watcher.loop_stop()
        watcher.disconnect()
