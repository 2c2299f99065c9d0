"""A stand-in for the RPi.GPIO module, following its documented API, recording pin levels over time.

Only what needs a Raspberry Pi is faked; it refuses what the real module refuses (no numbering mode,
output on a channel not set up as an output) so a driver that works here works on the Pi.
"""
import time

BOARD, BCM = 10, 11
OUT, IN = 0, 1
LOW, HIGH = 0, 1
PUD_OFF, PUD_DOWN, PUD_UP = 20, 21, 22
RPI_INFO = {"P1_REVISION": 3, "TYPE": "fake"}
VERSION = "fake"

_mode = None
_warnings = True
directions: dict[int, int] = {}
levels: dict[int, int] = {}
history: list[tuple[float, int, int]] = []  # (monotonic time, channel, level)
calls: list[tuple] = []


def reset():
    global _mode, _warnings
    _mode, _warnings = None, True
    directions.clear(), levels.clear(), history.clear(), calls.clear()


def setmode(mode):
    global _mode
    calls.append(("setmode", mode))
    if mode not in (BOARD, BCM):
        raise ValueError("An invalid mode was passed to setmode()")
    if _mode is not None and _mode != mode:
        raise ValueError("A different mode has already been set!")
    _mode = mode


def getmode():
    return _mode


def setwarnings(flag):
    global _warnings
    calls.append(("setwarnings", flag))
    _warnings = bool(flag)


def _check(channel):
    if _mode is None:
        raise RuntimeError("Please set pin numbering mode using GPIO.setmode(GPIO.BOARD) or GPIO.setmode(GPIO.BCM)")
    if _mode == BCM and not 0 <= channel <= 27:
        raise ValueError("The channel sent is invalid on a Raspberry Pi")


def setup(channel, direction, pull_up_down=PUD_OFF, initial=-1):
    calls.append(("setup", channel, direction, initial))
    _check(channel)
    directions[channel] = direction
    if direction == OUT and initial != -1:
        _set(channel, initial)


def _set(channel, state):
    level = HIGH if state else LOW
    levels[channel] = level
    history.append((time.monotonic(), channel, level))


def output(channel, state):
    calls.append(("output", channel, state))
    _check(channel)
    if directions.get(channel) != OUT:
        raise RuntimeError("The GPIO channel has not been set up as an OUTPUT")
    _set(channel, state)


def input(channel):
    _check(channel)
    if channel not in directions:
        raise RuntimeError("You must setup() the GPIO channel first")
    return levels.get(channel, LOW)


def cleanup(channel=None):
    calls.append(("cleanup", channel))
    for ch in [channel] if channel is not None else list(directions):
        directions.pop(ch, None)
