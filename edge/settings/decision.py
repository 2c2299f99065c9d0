"""[decision] and [clock]: how a reason becomes an outcome."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from edge.common.model import Outcome, Reason
from edge.settings.base import ConfigModel, ListName

Mode = Literal["allowlist", "denylist", "record"]

_A, _D, _R = Outcome.ALLOW, Outcome.DENY, Outcome.REVIEW
DEFAULT_OUTCOMES: dict[str, dict[Reason, Outcome]] = {
    # list-missing: fail closed, truthfully, where only a list lets people in; a person decides where the
    # deny list cannot be checked.
    "allowlist": {Reason.LISTED: _A, Reason.NOT_LISTED: _D, Reason.DENY_LISTED: _D, Reason.EXPIRED: _D,
                  Reason.NOT_YET_VALID: _D, Reason.REPEATED: _R, Reason.MALFORMED: _D, Reason.LIST_MISSING: _D},
    "denylist": {Reason.LISTED: _A, Reason.NOT_LISTED: _A, Reason.DENY_LISTED: _D, Reason.EXPIRED: _A,
                 Reason.NOT_YET_VALID: _A, Reason.REPEATED: _R, Reason.MALFORMED: _D, Reason.LIST_MISSING: _R},
    "record": dict.fromkeys(Reason, _A),
}
# What a decision resting on a list entry's validity window becomes while the clock is untrusted.
UntrustedClockPolicy = Literal["deny", "review", "ignore"]
OutcomeName = Literal["allow", "deny", "review"]
OverridableReason = Literal["listed", "not-listed", "deny-listed", "expired", "not-yet-valid", "repeated", "malformed",
                            "list-missing"]


class DecisionSettings(ConfigModel):
    """How a code becomes allow, deny or review: the mode, the lists consulted, and overrides per reason."""

    mode: Mode = Field("allowlist", description="allowlist: only listed codes pass; denylist: every code "
                       "passes but the deny-listed; record: every code passes and is recorded.")
    lists: list[ListName] = Field(default_factory=list, max_length=1000,
                                  description="Lists consulted; empty means every list on the device.")
    repeat_window_s: int = Field(0, ge=0, le=7 * 86400,
                                 description="An allowed code shown again within this time is 'repeated'; 0 disables.")
    outcomes: dict[OverridableReason, OutcomeName] = Field(default_factory=dict,
                                                           description="Overrides of the mode's outcome per reason.")
    list_max_age_h: float | None = Field(None, gt=0, le=24 * 3650,
                                         description="A list not updated for longer is stale; none: never stale.")
    list_max_age_h_for: dict[ListName, Annotated[float, Field(gt=0, le=24 * 3650)]] = Field(
        default_factory=dict, max_length=1000, description="Per-list maximum ages.")
    stale_lists: Literal["keep", "review", "deny"] = Field(
        "keep", description="What an allow becomes while a consulted list is stale ('keep': still allow).")

    def max_age_h(self, name: str) -> float | None:
        return self.list_max_age_h_for.get(name, self.list_max_age_h)

    def consults(self, name: str) -> bool:
        return not self.lists or name in self.lists

    def outcome(self, reason: Reason) -> Outcome:
        if reason is Reason.STORE_FAILURE:
            return Outcome.DENY  # an entry that cannot be recorded never opens the gate
        if reason is Reason.LIST_STALE:
            return Outcome(self.stale_lists) if self.stale_lists != "keep" else Outcome.ALLOW
        override = self.outcomes.get(reason.value)
        return Outcome(override) if override else DEFAULT_OUTCOMES[self.mode][reason]


class ClockSettings(ConfigModel):
    """Trust in the wall clock: a Pi without a real-time clock starts with a wrong time until it syncs."""

    require_sync: bool = Field(False, description="Count a clock no time source disciplines as untrusted.")
    untrusted_windows: UntrustedClockPolicy = Field("review", description="What a decision resting on a list entry's "
                                       "validity window becomes while the clock is untrusted.")
