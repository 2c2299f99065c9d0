"""The decision: a scanned code, the cached lists and the recent entries give allow, deny or review."""
from __future__ import annotations

import dataclasses
from typing import Callable

from .clock import boot_id
from .config import DecisionSettings
from .lists import ListStore, Match
from .model import Decision, Outcome, Reason

LastAllowed = Callable[[str], "tuple[int, int, str] | None"]


def _list_reason(matches: list[Match], now_ms: int) -> tuple[Reason, Match | None]:
    """Deny entries in force win over allow entries in force; out-of-window entries only explain."""
    in_force = [m for m in matches if m.window(now_ms) == "in force"]
    for deny in (True, False):
        for match in in_force:
            if match.deny is deny:
                return (Reason.DENY_LISTED if deny else Reason.LISTED), match
    for match in matches:
        return Reason(match.window(now_ms)), match
    return Reason.NOT_LISTED, None


def stale_lists(settings: DecisionSettings, infos, now_ms: int) -> list[str]:
    """Names of the consulted lists not updated within their maximum age."""
    return [info.name for info in infos if settings.consults(info.name)
            and (hours := settings.max_age_h(info.name)) is not None
            and now_ms - info.imported_ms > hours * 3_600_000]


def _windowless(match: Match) -> Match:
    return dataclasses.replace(match, valid_from=None, valid_until=None)


class Policy:
    def __init__(self, settings: DecisionSettings, lists: ListStore, last_allowed: LastAllowed,
                 untrusted_windows: str = "review"):
        self.settings = settings
        self.lists = lists
        self.last_allowed = last_allowed
        self.untrusted_windows = untrusted_windows

    def decide(self, code: str, *, malformed: bool, now_ms: int, now_mono_ns: int,
               clock_trusted: bool = True) -> Decision:
        if malformed:
            return Decision(self.settings.outcome(Reason.MALFORMED), Reason.MALFORMED)
        matches = self.lists.lookup(code, self.settings.lists)
        if clock_trusted:
            reason, match = _list_reason(matches, now_ms)
        else:
            # Windows cannot be judged by a clock that is not believed: decide as if every entry were in
            # force, then let the configured policy speak where a window would have mattered.
            reason, match = _list_reason([_windowless(m) for m in matches], now_ms)
            match = next((m for m in matches if match and m.list_name == match.list_name), match)
        outcome = self.settings.outcome(reason)
        if outcome is Outcome.ALLOW and not clock_trusted and self.untrusted_windows != "ignore" \
                and match is not None and (match.valid_from is not None or match.valid_until is not None):
            reason, outcome = Reason.CLOCK_UNTRUSTED, Outcome(self.untrusted_windows)
        if outcome is Outcome.ALLOW and self._repeated(code, now_ms, now_mono_ns):
            reason, outcome = Reason.REPEATED, self.settings.outcome(Reason.REPEATED)
        if outcome is Outcome.ALLOW and clock_trusted and self.stale_lists(now_ms):
            reason, outcome = Reason.LIST_STALE, self.settings.outcome(Reason.LIST_STALE)
        if match is None:
            return Decision(outcome, reason)
        return Decision(outcome, reason, match.list_name, match.list_version, match.label)

    def stale_lists(self, now_ms: int) -> list[str]:
        """Consulted lists older than their maximum age (only looked up while that changes decisions)."""
        if self.settings.stale_lists == "keep":
            return []
        return stale_lists(self.settings, self.lists.infos(), now_ms)

    def _repeated(self, code: str, now_ms: int, now_mono_ns: int) -> bool:
        window = self.settings.repeat_window_s
        if not window:
            return False
        last = self.last_allowed(code)
        if last is None:
            return False
        last_wall, last_mono, last_boot = last
        # Within one boot the monotonic clock cannot be fooled by a wall-clock jump.
        if last_boot == boot_id():
            return now_mono_ns - last_mono < window * 1_000_000_000
        return 0 <= now_ms - last_wall < window * 1000
