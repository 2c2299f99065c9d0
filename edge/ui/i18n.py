"""The screens' words: one JSON catalogue per language per part, edge/ui/messages/<language>/<part>.json.

A new language is a new folder of JSON files, not code. A key missing from a language's catalogue falls back
to English, then to the key itself, so a half-translated catalogue still shows something readable.
Dates and times are formatted here, in the device's zone, with the patterns the catalogue gives
("date": "{d:02d}/{m:02d}/{y}"; fields d, m, y, H, M, month).
"""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge.ui.errors import CatalogueError

log = logging.getLogger("checkpoint.ui")

MESSAGES = Path(__file__).parent / "messages"
FALLBACK = "en"


def languages() -> list[str]:
    """The languages with a catalogue folder (read once: every page asks, a folder scan each time costs file
    handles and time under load; a new language comes with a new release and a restart)."""
    return list(_languages())


@lru_cache(maxsize=1)
def _languages() -> tuple[str, ...]:
    return tuple(sorted(p.name for p in MESSAGES.iterdir() if p.is_dir() and (p / "common.json").is_file()))


@lru_cache(maxsize=64)
def _load(language: str, part: str) -> dict[str, Any]:
    path = MESSAGES / language / f"{part}.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogueError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CatalogueError(f"{path}: not a JSON object")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def catalogue(language: str, *parts: str) -> dict[str, Any]:
    """The merged words of these parts ("common" always first) in language, English filling the gaps."""
    if language not in languages():
        language = FALLBACK
    words: dict[str, Any] = {}
    for part in ("common", *parts):
        words = _merge(words, _merge(_load(FALLBACK, part), _load(language, part)))
    words["language"] = language
    return words


def zone(name: str) -> ZoneInfo | timezone:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _fields(words: dict[str, Any], ms: int, tz: tzinfo) -> dict[str, Any]:
    try:
        moment = datetime.fromtimestamp(ms / 1000, tz)
    except (OverflowError, OSError, ValueError):  # a list's date beyond what a calendar holds
        moment = datetime.max.replace(tzinfo=UTC) if ms > 0 else datetime.min.replace(tzinfo=UTC)
    months = words.get("months") or []
    return {"d": moment.day, "m": moment.month, "y": moment.year, "H": moment.hour, "M": moment.minute,
            "month": months[moment.month - 1] if len(months) == 12 else str(moment.month)}


def _format(pattern: str, **fields: object) -> str:
    try:
        return pattern.format(**fields)
    except (KeyError, IndexError, ValueError):
        return pattern  # a bad pattern in a catalogue shows as written rather than failing the page


def date(words: dict[str, Any], ms: int, tz: tzinfo) -> str:
    return _format(words.get("date", "{y}-{m:02d}-{d:02d}"), **_fields(words, ms, tz))


def time_of_day(words: dict[str, Any], ms: int, tz: tzinfo) -> str:
    return _format(words.get("time", "{H:02d}:{M:02d}"), **_fields(words, ms, tz))


def date_time(words: dict[str, Any], ms: int, tz: tzinfo) -> str:
    return _format(words.get("datetime", "{date} {time}"), date=date(words, ms, tz), time=time_of_day(words, ms, tz))


def decision_word(words: dict[str, Any], decision: str) -> str:
    return str((words.get("decision") or {}).get(decision, decision))


def reason_text(words: dict[str, Any], event: dict[str, Any], tz: tzinfo, now_ms: int | None = None) -> str:
    """The reason in plain words: with the window's date for expired / not yet valid, and the earlier scan's
    time (its date too when it was on another day) for repeated."""
    reasons = words.get("reason") or {}
    reason = event.get("reason") or "unknown"
    if reason == "expired" and isinstance(event.get("valid_until_ms"), int):
        return _format(reasons.get("expired_since", "{date}"), date=date(words, event["valid_until_ms"], tz))
    if reason == "not-yet-valid" and isinstance(event.get("valid_from_ms"), int):
        return _format(reasons.get("not-yet-valid_from", "{date}"), date=date(words, event["valid_from_ms"], tz))
    if reason == "repeated" and isinstance(event.get("repeated_at_ms"), int):
        at = event["repeated_at_ms"]
        now = now_ms if now_ms is not None else event.get("wall_ms") or at
        same_day = date(words, at, tz) == date(words, now, tz)
        shown = time_of_day(words, at, tz) if same_day else date_time(words, at, tz)
        return _format(reasons.get("repeated_at", "{time}"), time=shown)
    return reasons.get(reason) or reasons.get("unknown") or reason
