"""The decision: a scanned code, the cached lists and the recent entries give allow, deny or review."""
from __future__ import annotations

from typing import Callable

from .clock import boot_id
from .config import DecisionSettings
from .lists import ListStore, Match
from .model import Decision, Reason

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


class Policy:
    def __init__(self, settings: DecisionSettings, lists: ListStore, last_allowed: LastAllowed):
        self.settings = settings
        self.lists = lists
        self.last_allowed = last_allowed

    def decide(self, code: str, *, malformed: bool, now_ms: int, now_mono_ns: int) -> Decision:
        if malformed:
            return Decision(self.settings.outcome(Reason.MALFORMED), Reason.MALFORMED)
        reason, match = _list_reason(self.lists.lookup(code, self.settings.lists), now_ms)
        outcome = self.settings.outcome(reason)
        if outcome.value == "allow" and self._repeated(code, now_ms, now_mono_ns):
            reason, outcome = Reason.REPEATED, self.settings.outcome(Reason.REPEATED)
        if match is None:
            return Decision(outcome, reason)
        return Decision(outcome, reason, match.list_name, match.list_version, match.label)

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
