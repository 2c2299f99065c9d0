"""Time as the appliance sees it: wall clock for people, monotonic time with the boot id for ordering."""
from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from edge.common.errors import UsageError

_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


@lru_cache(maxsize=1)
def boot_id() -> str:
    """The kernel's id for this boot: monotonic times compare only within one boot."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return "process-" + uuid.uuid4().hex  # not Linux: at least never equal to a past boot


def mono_ns() -> int:
    """Nanoseconds since boot, counting suspend, immune to wall-clock changes."""
    return time.clock_gettime_ns(_BOOTTIME)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RELATIVE = re.compile(r"^(\d{1,6})([smhd])$")


def parse_instant(text: str, zone: str, *, end_of_day: bool = False) -> int:
    """An ISO 8601 date or date-time as epoch milliseconds. No offset means the device's zone.

    A bare date means the start of that day, or (end_of_day) the start of the next one, so a list's
    'valid until 2026-12-31' includes the whole of the 31st.
    """
    text = text.strip()
    tz = ZoneInfo(zone)
    if _DATE_ONLY.match(text):
        day = date.fromisoformat(text)
        if end_of_day:
            day += timedelta(days=1)
        moment = datetime(day.year, day.month, day.day, tzinfo=tz)
    else:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=tz)
    return int(moment.timestamp() * 1000)


class TimeSpanError(UsageError, ValueError):
    """A --since that is neither an instant nor a span (a ValueError too, for argparse type= callers)."""


_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INT64 = range(-2**63, 2**63)  # what SQLite can compare a time with


def parse_span(text: str) -> int | None:
    """A span such as 90s, 15m, 2h or 7d in seconds; None when text is not written as one."""
    match = _RELATIVE.match(text.strip())
    return int(match.group(1)) * _SECONDS[match.group(2)] if match else None


def parse_since(text: str, zone: str, now_ms: int | None = None) -> int:
    """--since for the device and the hub alike: an ISO date/date-time (no offset: zone), or a span back
    from now such as 15m, 2h, 7d, as epoch milliseconds; TimeSpanError for anything else."""
    span = parse_span(text)
    try:
        if span is not None:
            since = (wall_ms() if now_ms is None else now_ms) - span * 1000
        else:
            since = parse_instant(text, zone)
    except (ValueError, OverflowError) as exc:
        raise TimeSpanError(f"{text[:60]!r} is neither an ISO date or date-time nor a span such as 2h or 7d") \
            from exc
    if since not in _INT64:
        raise TimeSpanError(f"{text[:60]!r} is too far back to compare")
    return since
