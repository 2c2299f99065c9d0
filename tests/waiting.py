"""Deadlines in tests, stretched by how slow the machine is at the moment.

A shared CI machine has been seen running 10-30 times slower than a quiet core for a whole run. A deadline
only stops a test that would otherwise hang; it is never what a test checks, so it grows with the machine's
measured slowness rather than failing a correct program.
"""
from __future__ import annotations

import os
import time

_LOOP = 200_000
_QUIET_S = 0.010  # that loop on a quiet modern core
_measured = (0.0, 1.0)  # (when, factor)


def slowness() -> float:
    """How many times slower than a quiet core this machine runs now (≥ 1), measured at most every 5 s."""
    global _measured
    now = time.monotonic()
    if now - _measured[0] > 5:
        start = time.perf_counter()
        n = 0
        for i in range(_LOOP):
            n += i
        factor = (time.perf_counter() - start) / _QUIET_S
        _measured = (now, max(1.0, factor, float(os.environ.get("CHECKPOINT_TEST_SLOWNESS", 1))))
    return _measured[1]


def patience(seconds: float) -> float:
    """`seconds` on a quiet machine, as long as it takes here."""
    return seconds * slowness()


def wait_until(predicate, timeout: float = 60.0, what: str = "condition", interval: float = 0.05):
    """predicate()'s first true value, polled until `timeout` (scaled by the worst slowness seen) has passed."""
    start, factor = time.monotonic(), slowness()
    while True:
        value = predicate()
        if value:
            return value
        factor = max(factor, slowness())
        if time.monotonic() - start > timeout * factor:
            raise AssertionError(f"timed out waiting for {what} ({timeout * factor:.0f} s)")
        time.sleep(interval)
