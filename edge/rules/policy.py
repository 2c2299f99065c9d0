"""The decision: a scanned code, the cached lists and the recent entries give allow, deny or review.

`judge` is the one way to decide a code now, clock included: the daemon's pipeline and `checkpoint
check` both go through it, so that the command answers exactly as the gate would.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from edge.common.clock import boot_id
from edge.common.model import Decision, Outcome, Reason
from edge.credentials import trustfile
from edge.credentials.decide import CredentialOutcome, CredentialStep
from edge.lists import ListError, ListInfo, ListStore, Match
from edge.rules.clocktrust import UNTRUSTED, ClockTrust
from edge.settings.schema import DecisionSettings, Settings

log = logging.getLogger("checkpoint.decision")

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


def credential_step(settings: Settings, lists: ListStore) -> CredentialStep | None:
    """The credential step the daemon and `checkpoint check` run with these settings; None when no format
    is enabled."""
    credentials = settings.credentials
    if not credentials.formats:
        return None
    trust_path = Path(credentials.dcc.trust_list) if credentials.dcc.trust_list else \
        trustfile.default_path(settings.store.dir)
    return CredentialStep(credentials, lists=lists, decision=settings.decision,
                          trust_path=trust_path if "dcc" in credentials.formats else None,
                          timezone=settings.device.timezone, gate=credentials.passes.gate or settings.device.id,
                          untrusted_windows=settings.clock.untrusted_windows)


def stale_lists(settings: DecisionSettings, infos: Iterable[ListInfo], now_ms: int) -> list[str]:
    """Names of the consulted lists not updated within their maximum age."""
    return [info.name for info in infos if settings.consults(info.name)
            and (hours := settings.max_age_h(info.name)) is not None
            and now_ms - info.imported_ms > hours * 3_600_000]


def _windowless(match: Match) -> Match:
    return dataclasses.replace(match, valid_from=None, valid_until=None)


class Policy:
    def __init__(self, settings: DecisionSettings, lists: ListStore, last_allowed: LastAllowed,
                 untrusted_windows: str = "review", credentials: CredentialStep | None = None):
        self.settings = settings
        self.credentials = credentials  # None: no credential format enabled, every code is plain
        self.lists = lists
        self.last_allowed = last_allowed
        self.untrusted_windows = untrusted_windows
        self._missing: list[str] = []
        self._missing_stamp: bytes | None = None  # the list store's generation when _missing was found

    @classmethod
    def for_settings(cls, settings: Settings, lists: ListStore, last_allowed: LastAllowed) -> Policy:
        """The policy the daemon runs with these settings."""
        return cls(settings.decision, lists, last_allowed, settings.clock.untrusted_windows,
                   credential_step(settings, lists))

    def missing_lists(self) -> list[str]:
        """Lists named in [decision] lists that the device does not hold. Cheap to call often: the catalog
        is read again only after the list store's generation moved (a commit to its catalog; every time where
        there is no generation to watch). Raises ListError when the catalog cannot be read."""
        if not self.settings.lists:
            return []  # every list on the device is consulted: none can be missing
        generation = getattr(self.lists, "generation", None)
        stamp = generation.read() if generation is not None else None
        if stamp is None or stamp != self._missing_stamp:
            # The stamp is read before the catalog: a change in between is seen again at the next call.
            present = {info.name for info in self.lists.infos()}
            self._missing = [name for name in self.settings.lists if name not in present]
            self._missing_stamp = stamp
        return list(self._missing)

    def decide(self, code: str, *, malformed: bool, now_ms: int, now_mono_ns: int,
               clock_trusted: bool = True) -> Decision:
        if malformed:
            return Decision(self.settings.outcome(Reason.MALFORMED), Reason.MALFORMED)
        if self.credentials is not None:
            step = self.credentials.decide(code, now_ms, clock_trusted=clock_trusted)
            if step is not None:
                return self._credential(step, now_ms, now_mono_ns, clock_trusted)
        matches = self.lists.lookup(code, self.settings.lists)
        if clock_trusted:
            reason, match = _list_reason(matches, now_ms)
        else:
            # Windows cannot be judged by a clock that is not believed: decide as if every entry were in
            # force, then let the configured policy speak where a window would have mattered.
            reason, match = _list_reason([_windowless(m) for m in matches], now_ms)
            match = next((m for m in matches if match and m.list_name == match.list_name), match)
        if not matches and self.missing_lists():
            # Not on any list the device holds, and a list that could have said otherwise is absent.
            reason = Reason.LIST_MISSING
        outcome = self.settings.outcome(reason)
        if outcome is Outcome.ALLOW and not clock_trusted and self.untrusted_windows != "ignore" \
                and match is not None and (match.valid_from is not None or match.valid_until is not None):
            reason, outcome = Reason.CLOCK_UNTRUSTED, Outcome(self.untrusted_windows)
        repeated_at = None
        if outcome is Outcome.ALLOW and (repeated_at := self._repeated(code, now_ms, now_mono_ns)) is not None:
            reason, outcome = Reason.REPEATED, self.settings.outcome(Reason.REPEATED)
        if outcome is Outcome.ALLOW and clock_trusted and self.stale_lists(now_ms):
            reason, outcome = Reason.LIST_STALE, self.settings.outcome(Reason.LIST_STALE)
        if match is None:
            return Decision(outcome, reason, repeated_at_ms=repeated_at)
        return Decision(outcome, reason, match.list_name, match.list_version, match.label,
                        match.valid_from, match.valid_until, repeated_at)

    def _credential(self, step: CredentialOutcome, now_ms: int, now_mono_ns: int, clock_trusted: bool) -> Decision:
        """A credential's decision, then the repeat and stale-list rules a code gets, keyed by what the
        entry records (the subject, not the payload)."""
        reason, outcome, repeated_at = Reason(step.reason), step.outcome, None
        if outcome is Outcome.ALLOW and (repeated_at := self._repeated(step.record, now_ms, now_mono_ns)) is not None:
            reason, outcome = Reason.REPEATED, self.settings.outcome(Reason.REPEATED)
        if outcome is Outcome.ALLOW and clock_trusted and self.stale_lists(now_ms):
            reason, outcome = Reason.LIST_STALE, self.settings.outcome(Reason.LIST_STALE)
        match = step.match
        return Decision(outcome, reason, match.list_name if match else None, match.list_version if match else None,
                        step.label, step.valid_from_ms, step.valid_until_ms, repeated_at, rule=step.rule,
                        record=step.record)

    def stale_lists(self, now_ms: int) -> list[str]:
        """Consulted lists older than their maximum age (only looked up while that changes decisions)."""
        if self.settings.stale_lists == "keep":
            return []
        return stale_lists(self.settings, self.lists.infos(), now_ms)

    def _repeated(self, code: str, now_ms: int, now_mono_ns: int) -> int | None:
        """The earlier allow's wall time when this code was allowed within the repeat window, else None."""
        window = self.settings.repeat_window_s
        if not window:
            return None
        last = self.last_allowed(code)
        if last is None:
            return None
        last_wall, last_mono, last_boot = last
        # Within one boot the monotonic clock cannot be fooled by a wall-clock jump.
        if last_boot == boot_id():
            repeated = now_mono_ns - last_mono < window * 1_000_000_000
        else:
            repeated = 0 <= now_ms - last_wall < window * 1000
        return last_wall if repeated else None


def clock_for(settings: Settings, newest_entry_ms: int | None) -> ClockTrust:
    """The clock judge the daemon runs with these settings, given the newest recorded entry's time."""
    return ClockTrust(newest_entry_ms=newest_entry_ms, require_sync=settings.clock.require_sync)


def judge(policy: Policy, clock: ClockTrust, code: str, *, malformed: bool, now_ms: int, now_mono_ns: int,
          reported_state: str | None = None) -> tuple[Decision, str]:
    """The decision for one code at this instant and the clock's state, as the gate takes it.

    reported_state: an untrusted state that another process saw and this one cannot (a running daemon's
    'jumped-back' is known only to the process that watched the clock go back); it stands unless this
    clock is judged worse. Lists that cannot be read give store-failure: nothing opens on a guess."""
    state = clock.check(now_ms, now_mono_ns)
    if reported_state in UNTRUSTED and clock.trusted(state):
        state = reported_state
    try:
        decision = policy.decide(code, malformed=malformed, now_ms=now_ms, now_mono_ns=now_mono_ns,
                                 clock_trusted=clock.trusted(state))
    except ListError as exc:
        log.error("LISTS UNREADABLE (%s): deciding store-failure", exc)
        decision = Decision(Outcome.DENY, Reason.STORE_FAILURE)
    return decision, state
