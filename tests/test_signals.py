"""Signal patterns over recording outputs: timing shape, pre-emption, instant shutdown, GPIO polarity."""
from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from drivers.outputs import OutputError, open_output
from drivers.outputs.fake import FakeOutput
from edge.app.signals import Signaller, timeline
from edge.common.model import Outcome
from edge.settings.schema import Pulse, parse_settings

FAKES = Path(__file__).parent / "fakes"


def ons(output):
    return [on for _, on in output.changes]


def test_timeline_shape():
    steps = timeline({"buzzer": Pulse(on_ms=100, off_ms=50, count=3), "relay": Pulse(on_ms=300, delay_ms=20)})
    assert [(round(t, 3), n, on) for t, n, on in steps] == [
        (0.0, "buzzer", True), (0.02, "relay", True), (0.1, "buzzer", False), (0.15, "buzzer", True),
        (0.25, "buzzer", False), (0.3, "buzzer", True), (0.32, "relay", False), (0.4, "buzzer", False)]


def held_until(release: threading.Event, reached: threading.Event):
    """An output hook that stops the signals thread as it switches the output on, until released."""
    def hook(name, on):
        if on:
            reached.set()
            assert release.wait(10)
    return hook


def switched_on(reached: threading.Event):
    return lambda name, on: on and reached.set()


def test_pattern_plays_without_blocking_and_ends_off():
    release, reached = threading.Event(), threading.Event()
    outs = {"red": FakeOutput("red", on_change=held_until(release, reached)), "buzzer": FakeOutput("buzzer")}
    signaller = Signaller(outs, {"deny": {"red": Pulse(on_ms=60), "buzzer": Pulse(on_ms=10, off_ms=10, count=3)}})
    signaller.signal(Outcome.DENY)
    # signal() returned while the pattern's first step is still held on the signals thread: it never waits.
    assert reached.wait(10) and not signaller.wait_idle(0)
    release.set()
    assert signaller.wait_idle(5)
    assert ons(outs["buzzer"]) == [False, True, False, True, False, True, False]
    assert ons(outs["red"]) == [False, True, False]
    # Steps play in the timeline's order: red (60 ms) goes off after the buzzer's last pulse (50 ms) ended.
    assert outs["red"].changes[2][0] >= outs["buzzer"].changes[-1][0]
    signaller.close()


def test_newer_decision_cuts_in_and_outputs_go_off_first():
    green_on = threading.Event()
    outs = {"green": FakeOutput("green", on_change=switched_on(green_on)), "red": FakeOutput("red")}
    signaller = Signaller(outs, {"allow": {"green": Pulse(on_ms=5000)}, "deny": {"red": Pulse(on_ms=30)}})
    signaller.signal(Outcome.ALLOW)
    assert green_on.wait(10)
    signaller.signal(Outcome.DENY)
    assert signaller.wait_idle(2)
    assert ons(outs["green"]) == [False, True, False]
    assert outs["green"].changes[2][0] <= outs["red"].changes[1][0]
    signaller.close()


def test_close_stops_a_long_pattern_at_once_and_leaves_everything_off():
    relay_on = threading.Event()
    relay = FakeOutput("relay", on_change=switched_on(relay_on))
    signaller = Signaller({"relay": relay}, {"allow": {"relay": Pulse(on_ms=60_000)}})
    signaller.signal(Outcome.ALLOW)
    assert relay_on.wait(10)
    signaller.close()
    # close() joins the signals thread for at most 2 s: had it kept waiting out the minute, it would be alive.
    assert not signaller._thread.is_alive()
    assert relay.state is False and relay.closed


def test_decision_without_pattern_is_silent():
    green = FakeOutput("green")
    signaller = Signaller({"green": green}, {})
    signaller.signal(Outcome.REVIEW)
    assert signaller.wait_idle(1)
    assert ons(green) == [False]
    signaller.close()


@pytest.fixture
def fake_gpio(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKES))
    for name in ("RPi", "RPi.GPIO"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import RPi.GPIO as GPIO

    GPIO.reset()
    return GPIO


def test_gpio_outputs_active_high_and_low(fake_gpio):
    settings = parse_settings({
        "source": {"type": "lines"},
        "outputs": {"green": {"driver": "gpio", "pin": 17}, "relay": {"driver": "gpio", "pin": 23, "active_low": True}},
        "signals": {"allow": {"green": {"on_ms": 20}, "relay": {"on_ms": 20}}}})
    outs = {name: open_output(name, s) for name, s in settings.outputs.items()}
    assert fake_gpio.getmode() == fake_gpio.BCM
    # Safe from the first instant: set up already at the 'off' level (low for green, high for the relay).
    assert ("setup", 17, fake_gpio.OUT, fake_gpio.LOW) in fake_gpio.calls
    assert ("setup", 23, fake_gpio.OUT, fake_gpio.HIGH) in fake_gpio.calls
    signaller = Signaller(outs, settings.signals)
    signaller.signal(Outcome.ALLOW)
    assert signaller.wait_idle(2)
    signaller.close()
    relay_levels = [level for _, ch, level in fake_gpio.history if ch == 23]
    green_levels = [level for _, ch, level in fake_gpio.history if ch == 17]
    assert relay_levels[0] == 1 and 0 in relay_levels and relay_levels[-1] == 1
    assert green_levels[0] == 0 and 1 in green_levels and green_levels[-1] == 0
    assert fake_gpio.directions[23] == fake_gpio.OUT  # left driven, not floating


def test_gpio_errors_are_translated(fake_gpio):
    settings = parse_settings({"source": {"type": "lines"}, "outputs": {"g": {"driver": "gpio", "pin": 5}}})
    output = open_output("g", settings.outputs["g"])
    fake_gpio.cleanup()
    with pytest.raises(OutputError, match="BCM pin 5"):
        output.set(True)


def test_gpio_without_the_module_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "RPi", None)
    settings = parse_settings({"source": {"type": "lines"}, "outputs": {"g": {"driver": "gpio", "pin": 5}}})
    with pytest.raises(OutputError, match="rpi-lgpio"):
        open_output("g", settings.outputs["g"])


def test_console_output_shows_switching_on(capsys):
    settings = parse_settings({"source": {"type": "lines"}, "outputs": {"red": {"driver": "console", "colour": "red"}}})
    red = open_output("red", settings.outputs["red"])
    red.set(True), red.set(True), red.set(False), red.close()
    assert capsys.readouterr().out == "  ● red\n"
