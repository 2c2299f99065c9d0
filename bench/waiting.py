"""Polling until something is so, for the benches (the tests have tests/waiting.py; a bench does not import
the tests)."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(predicate: Callable[[], T], what: str, *, bench: str, timeout: float, interval: float) -> T:
    """predicate()'s first true value, asked every `interval` seconds; the bench stops when `timeout` passes."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"{bench}: timed out waiting for {what}")
