"""Business rules on a verified credential: the step after verification, kept a seam.

A rule is any `rule(credential, at_ms) -> RuleFailure | None`; `check` runs a list of them in order and
the first failure refuses the credential as `rule` with the rule's name. The EU DCC defaults below come
from `DccRules` (see settings.py); a CertLogic engine, or a rule for a pass's gates, plugs in the same way.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from edge.credentials.model import Category, Credential, Verdict, refused
from edge.credentials.settings import NEGATIVE, DccRules


@dataclass(frozen=True, slots=True)
class RuleFailure:
    rule: str
    detail: str


Rule = Callable[[Credential, int], "RuleFailure | None"]


def check(credential: Credential, at_ms: int, rules: Sequence[Rule]) -> Verdict | None:
    """None when every rule passes; otherwise the `rule` verdict of the first that fails."""
    for rule in rules:
        failure = rule(credential, at_ms)
        if failure is not None:
            return refused(credential, Category.RULE, failure.detail, rule=failure.rule)
    return None


def _day(at_ms: int, tz: dt.tzinfo) -> dt.date:
    return dt.datetime.fromtimestamp(at_ms / 1000, tz).date()


def _date(value: object, what: str) -> dt.date | RuleFailure:
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return RuleFailure(what, f"{what.split('-')[0]} date {str(value)[:40]!r} is not a date")


def dcc_rules(settings: DccRules, tz: dt.tzinfo = ZoneInfo("UTC")) -> list[Rule]:
    """The configured EU DCC rules; dates without a time are days in `tz` (the device's zone)."""

    def applies(credential: Credential) -> bool:
        return credential.format == "dcc"

    def type_accepted(credential: Credential, at_ms: int) -> RuleFailure | None:
        if applies(credential) and credential.kind not in settings.accept:
            return RuleFailure("type-not-accepted", f"{credential.kind} certificates are not accepted here")
        return None

    def disease(credential: Credential, at_ms: int) -> RuleFailure | None:
        if applies(credential) and credential.claims.get("tg") not in settings.diseases:
            return RuleFailure("disease", "the certificate targets another disease")
        return None

    def vaccination(credential: Credential, at_ms: int) -> RuleFailure | None:
        if not applies(credential) or credential.kind != "vaccination":
            return None
        rules, claims = settings.vaccination, credential.claims
        dn, sd = claims.get("dn"), claims.get("sd")
        if not (type(dn) is int and type(sd) is int and dn >= 1 and sd >= 1):
            return RuleFailure("vaccination-data", "dose number or series is missing")
        if rules.require_complete and dn < sd:
            return RuleFailure("vaccination-incomplete", f"dose {dn} of {sd}")
        when = _date(claims.get("dt"), "vaccination-data")
        if isinstance(when, RuleFailure):
            return when
        days = (_day(at_ms, tz) - when).days
        if days < rules.min_days:
            return RuleFailure("vaccination-too-recent", f"{days} days since the last dose, "
                               f"{rules.min_days} needed")
        if rules.max_days is not None and days > rules.max_days:
            return RuleFailure("vaccination-too-old", f"{days} days since the last dose, at most "
                               f"{rules.max_days} accepted")
        return None

    def test(credential: Credential, at_ms: int) -> RuleFailure | None:
        if not applies(credential) or credential.kind != "test":
            return None
        claims = credential.claims
        if claims.get("tr") != NEGATIVE:
            return RuleFailure("test-positive", "the test result is not 'not detected'")
        test_type = claims.get("tt")
        hours = settings.test.max_hours.get(test_type) if isinstance(test_type, str) else None
        if hours is None:
            return RuleFailure("test-type", "this type of test is not accepted")
        try:
            taken = dt.datetime.fromisoformat(str(claims.get("sc")))
            if taken.tzinfo is None:
                taken = taken.replace(tzinfo=tz)
            age_ms = at_ms - int(taken.timestamp() * 1000)
        except (ValueError, OverflowError):
            return RuleFailure("test-data", "the sample time is not a time")
        if age_ms < 0:
            return RuleFailure("test-in-future", "the sample was taken after the time of the check")
        if age_ms > hours * 3_600_000:
            return RuleFailure("test-too-old", f"sample taken {age_ms // 3_600_000} hours ago, at most "
                               f"{hours} accepted")
        return None

    def recovery(credential: Credential, at_ms: int) -> RuleFailure | None:
        if not applies(credential) or credential.kind != "recovery":
            return None
        start, end = _date(credential.claims.get("df"), "recovery-data"), _date(credential.claims.get("du"),
                                                                                 "recovery-data")
        if isinstance(start, RuleFailure):
            return start
        if isinstance(end, RuleFailure):
            return end
        today = _day(at_ms, tz)
        if today < start:
            return RuleFailure("recovery-not-yet-valid", f"valid from {start.isoformat()}")
        if today > end:
            return RuleFailure("recovery-expired", f"valid until {end.isoformat()}")
        return None

    return [type_accepted, disease, vaccination, test, recovery]


def gate_rule(gate: str | None) -> Rule:
    """A pass that names gates is valid only at those gates (a device's gate is its name for itself)."""

    def at_gate(credential: Credential, at_ms: int) -> RuleFailure | None:
        gates = credential.claims.get("gates") if credential.format == "pass" else None
        if gates and gate not in gates:
            return RuleFailure("gate", "the pass is not valid at this gate")
        return None

    return at_gate
