"""Time as the appliance sees it: wall clock for people, monotonic time with the boot id for ordering."""
from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

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


def parse_since(text: str, zone: str, now_ms: int | None = None) -> int:
    """--since: an ISO date/date-time, or a span back from now such as 15m, 2h, 7d."""
    match = _RELATIVE.match(text.strip())
    if match:
        span = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return (wall_ms() if now_ms is None else now_ms) - span * 1000
    return parse_instant(text, zone)
