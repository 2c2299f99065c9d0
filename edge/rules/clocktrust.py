"""Whether the wall clock can be believed. A Raspberry Pi has no real-time clock: it may boot with the
time it had at its last shutdown (fake-hwclock) or 1970 until NTP answers, and at an offline
checkpoint NTP may never answer.

States, the worst first: `before-build` (earlier than this software was made), `behind-entries` (earlier
than an entry already recorded), `jumped-back` (the wall clock went backwards against the monotonic
clock, until the kernel reports it synchronised again), `unsynchronised` (the kernel says no time source
disciplines the clock), `ok`. Only the first three are untrusted, unless [clock] require_sync says an
unsynchronised clock is untrusted too.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from functools import lru_cache

from edge.common.build import build_date
from edge.common.clock import parse_instant

log = logging.getLogger("checkpoint.clock")

BUILD_DATE = build_date()  # no entry can truly be older than the software that wrote it
BUILD_FLOOR_MS = parse_instant(BUILD_DATE, "UTC")
JUMP_TOLERANCE_MS = 2000
TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised

UNTRUSTED = ("before-build", "behind-entries", "jumped-back")


@lru_cache(maxsize=1)
def _adjtimex() -> Callable[[ctypes.Array[ctypes.c_char]], int] | None:
    """libc's adjtimex, looked up once: find_library runs ldconfig in a child process, far too slow for
    every scan (half of a text scan's time, tens of milliseconds on a Pi). None where there is none."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None


def kernel_synchronised() -> bool | None:
    """The kernel's NTP state (chrony, ntpd and systemd-timesyncd all set it); None where unknown."""
    adjtimex = _adjtimex()
    if adjtimex is None:
        return None
    timex = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0 only reads
    try:
        state = adjtimex(timex)
    except OSError:
        return None
    if state < 0:
        return None
    return state != TIME_ERROR


class ClockTrust:
    def __init__(self, *, newest_entry_ms: int | None = None, require_sync: bool = False,
                 synchronised: Callable[[], bool | None] = kernel_synchronised, floor_ms: int = BUILD_FLOOR_MS):
        self.newest_entry_ms = newest_entry_ms or 0
        self.require_sync = require_sync
        self.synchronised = synchronised
        self.floor_ms = floor_ms
        self._offset: int | None = None  # highest (wall - monotonic) seen in this process
        self._jumped = False
        self.state = "ok"

    def check(self, now_ms: int, mono_ns: int) -> str:
        synced = self.synchronised()
        offset = now_ms - mono_ns // 1_000_000  # wall minus monotonic: constant while nobody sets the clock
        if synced or self._offset is None:
            self._offset = offset  # a time source vouches for the clock (or this is the first look)
            self._jumped = self._jumped and not synced
        elif offset < self._offset - JUMP_TOLERANCE_MS:
            if not self._jumped:
                log.warning("CLOCK JUMPED BACK by %.1f s; validity windows are not trusted until the clock "
                            "is synchronised", (self._offset - offset) / 1000)
            self._jumped = True
        else:
            self._offset = max(self._offset, offset)
        if now_ms < self.floor_ms:
            state = "before-build"
        elif now_ms < self.newest_entry_ms - JUMP_TOLERANCE_MS:
            state = "behind-entries"
        elif self._jumped:
            state = "jumped-back"
        elif synced is False:
            state = "unsynchronised"
        else:
            state = "ok"
        if state != self.state:
            level = logging.WARNING if state in UNTRUSTED else logging.INFO
            log.log(level, "clock state: %s (was %s)", state, self.state)
        self.state = state
        if state == "ok" or state == "unsynchronised":
            self.newest_entry_ms = max(self.newest_entry_ms, now_ms)
        return state

    def trusted(self, state: str | None = None) -> bool:
        state = state or self.state
        return state not in UNTRUSTED and not (self.require_sync and state == "unsynchronised")
