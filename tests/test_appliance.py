"""Running as an appliance: sd_notify and the watchdog, clock trust, stale lists."""
from __future__ import annotations

import io
import os
import socket
import time

import cv2
import pytest

from edge.app.notify import Notifier
from edge.common.clock import mono_ns, parse_instant
from edge.entries.store import EntryStore
from edge.lists import ListStore
from edge.rules.clocktrust import BUILD_FLOOR_MS, ClockTrust
from edge.rules.policy import Policy
from edge.settings.schema import DecisionSettings

from .conftest import checkpoint_process, qr_image
from .waiting import patience


# ---- sd_notify ----------------------------------------------------------------------------------------
def listen(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    sock.settimeout(0.2)
    return sock


def received(sock: socket.socket, seconds: float, *, after_ready: bool = False, until=None) -> list[str]:
    """Datagrams for `seconds`; with after_ready, counted from READY=1 (a slow machine starts slowly);
    `until(messages)` ends the wait early."""
    messages, deadline = [], time.monotonic() + (patience(60) if after_ready else seconds)
    while time.monotonic() < deadline:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
        if after_ready and messages[-1].startswith("READY=1"):
            deadline, after_ready = time.monotonic() + seconds, False
        if until is not None and not after_ready and until(messages):
            break
    return messages


@pytest.mark.parametrize("abstract", [False, True])
def test_notify_datagrams_on_a_real_socket(tmp_path, abstract):
    address = f"@checkpoint-test-{os.getpid()}-{time.monotonic_ns()}" if abstract else str(tmp_path / "notify")
    sock = listen(address)
    notifier = Notifier(address)
    assert notifier.ready("up") and notifier.watchdog() and notifier.status("degraded: x") and notifier.stopping()
    messages = received(sock, 0.3)
    assert messages[0].split("\n")[:2] == ["READY=1", "STATUS=up"]
    assert messages[1:] == ["WATCHDOG=1", "STATUS=degraded: x", "STOPPING=1"]


def test_notify_without_systemd_is_silent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled and notifier.ready("x") is False and notifier.watchdog_s is None


def test_watchdog_belongs_to_the_pid_systemd_named(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert Notifier("/x").watchdog_s is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier("/x").watchdog_s == 3.0


def _daemon_with_notify(tmp_path, config, watchdog_usec=300_000):
    address = str(tmp_path / "notify.sock")
    sock = listen(address)
    proc = checkpoint_process("run", "--config", config,
                              env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": str(watchdog_usec)})
    return sock, proc


def test_ready_then_watchdog_pings_while_frames_arrive(tmp_path, make_config):
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "a.png"), qr_image("x"))
    config = make_config(f'[source]\ntype = "replay"\npath = "{frames}"\nfps = 20\nloop = true\n')
    sock, proc = _daemon_with_notify(tmp_path, config)
    try:
        # A few per 0.3 s period; a slow machine gets 30 s to send five.
        messages = received(sock, 30.0, after_ready=True, until=lambda m: m.count("WATCHDOG=1") >= 5)
    finally:
        proc.terminate()
        proc.wait(patience(30))
    messages += received(sock, 1.0, until=lambda m: "STOPPING=1" in m)
    ready = [m for m in messages if m.startswith("READY=1")]
    assert ready and "MAINPID=" in ready[0]
    first_ready = messages.index(ready[0])
    assert messages[first_ready + 1:].count("WATCHDOG=1") >= 5
    assert messages[-1] == "STOPPING=1"


def test_no_watchdog_pings_while_the_camera_delivers_nothing(tmp_path, make_config):
    config = make_config('[source]\ntype = "opencv"\ndevice = "/dev/video-unplugged"\nstall_s = 0.5\n')
    sock, proc = _daemon_with_notify(tmp_path, config)
    try:
        messages = received(sock, 3.0, after_ready=True)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=patience(30))
    assert any(m.startswith("READY=1") for m in messages)
    assert "WATCHDOG=1" not in messages  # systemd will restart the daemon after WatchdogSec
    assert any("STATUS=" in m and "source opencv:/dev/video-unplugged is " in m for m in messages)
    assert "UNHEALTHY: source opencv:/dev/video-unplugged is " in err


# ---- clock trust --------------------------------------------------------------------------------------
class FakeNtp:
    def __init__(self, synced):
        self.synced = synced

    def __call__(self):
        return self.synced


def test_clock_states():
    ntp = FakeNtp(False)
    now = BUILD_FLOOR_MS + 86_400_000
    mono = 10**12
    clock = ClockTrust(newest_entry_ms=now, synchronised=ntp)
    assert clock.check(now, mono) == "unsynchronised" and clock.trusted()
    assert not ClockTrust(newest_entry_ms=now, synchronised=ntp, require_sync=True).trusted(
        clock.check(now, mono))
    # A Pi that booted with 1970 (or last week's fake-hwclock time) is not believed.
    assert ClockTrust(synchronised=ntp).check(86_400_000, mono) == "before-build"
    assert ClockTrust(newest_entry_ms=now, synchronised=ntp).check(now - 3_600_000, mono) == "behind-entries"
    # Ten seconds later by the monotonic clock, the wall clock says a minute earlier: it jumped back.
    assert clock.check(now + 10_000, mono + 10 * 10**9) == "unsynchronised"
    assert clock.check(now - 60_000, mono + 11 * 10**9) == "behind-entries"
    # Even once the wall clock is past the newest entry again, a clock that jumped back stays untrusted...
    assert clock.check(now + 20_000, mono + 75 * 10**9) == "jumped-back" and not clock.trusted()
    ntp.synced = True
    assert clock.check(now + 21_000, mono + 76 * 10**9) == "ok"  # ...until a time source vouches for it


LIST = "code,action,valid_from,valid_until\nwindowed,allow,2020-01-01,2099-12-31\nplain,allow,,\nban,deny,2020-01-01,\n"


@pytest.fixture
def lists(tmp_path):
    store = ListStore(tmp_path / "lists.db")
    store.import_csv("people", io.BytesIO(LIST.encode()), zone="UTC", max_code_bytes=64)
    return store


def decide(lists, code, *, trusted=True, windows="review", now=None, **settings):
    policy = Policy(DecisionSettings(**settings), lists, lambda c: None, windows)
    now = now or parse_instant("2026-12-01", "UTC")
    d = policy.decide(code, malformed=False, now_ms=now, now_mono_ns=mono_ns(), clock_trusted=trusted)
    return d.outcome.value, d.reason.value


@pytest.mark.parametrize("windows, expected", [("review", ("review", "clock-untrusted")),
                                               ("deny", ("deny", "clock-untrusted")),
                                               ("ignore", ("allow", "listed"))])
def test_untrusted_clock_and_validity_windows(lists, windows, expected):
    assert decide(lists, "windowed", trusted=False, windows=windows) == expected
    # Without a window the clock does not matter; a deny stays a deny.
    assert decide(lists, "plain", trusted=False, windows=windows) == ("allow", "listed")
    assert decide(lists, "ban", trusted=False, windows=windows) == ("deny", "deny-listed")
    # An expired entry cannot be judged either: with 'ignore' its window is not looked at.
    long_ago = parse_instant("2010-01-01", "UTC")
    assert decide(lists, "windowed", trusted=False, windows=windows, now=long_ago) == expected


def test_an_old_database_gains_the_clock_column(tmp_path):
    path = tmp_path / "entries.db"
    store = EntryStore(path)
    store.conn.execute("ALTER TABLE entries DROP COLUMN clock")
    store.close()
    store = EntryStore(path)
    assert "clock" in [row[1] for row in store.conn.execute("PRAGMA table_info(entries)")]


# ---- stale lists --------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy, expected", [("keep", ("allow", "listed")), ("review", ("review", "list-stale")),
                                              ("deny", ("deny", "list-stale"))])
def test_stale_list_under_each_policy(lists, policy, expected):
    lists.conn.execute("UPDATE lists SET imported_ms = imported_ms - 3 * 86400000")
    now = int(time.time() * 1000)
    assert decide(lists, "plain", now=now, list_max_age_h=48, stale_lists=policy) == expected
    assert decide(lists, "plain", now=now, list_max_age_h=96, stale_lists=policy) == ("allow", "listed")
    assert decide(lists, "plain", now=now, list_max_age_h=96, list_max_age_h_for={"people": 1},
                  stale_lists=policy) == expected
    assert decide(lists, "ban", now=now, list_max_age_h=48, stale_lists=policy) == ("deny", "deny-listed")
    # Staleness is not judged by a clock that is not believed.
    assert decide(lists, "plain", trusted=False, now=now, list_max_age_h=48, stale_lists=policy) == ("allow", "listed")
