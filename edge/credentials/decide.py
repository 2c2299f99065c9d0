"""The policy's credential step: a decoded payload that is a credential is decided here, before lists.

`CredentialStep.decide(text, now_ms)` returns None for a plain code (the policy goes on as before) and a
`CredentialOutcome` for anything an enabled format recognises, verified or not. Lists keep their roles:

- allow and deny lists are looked up by the credential's subject id (a UVCI, a pass id, an ID number)
  through the same ListStore and the same [decision] lists as plain codes; an entry in force on a deny
  list makes the credential `revoked`;
- revocation lists ([credentials] revocation_lists) hold EU DCC revocation hashes as 32 lowercase hex
  digits, one an entry: the three hashes of a certificate are looked up per scan. They are ordinary lists
  on purpose: pushed, versioned, hashed with the device's hash key or not, and replaced by deltas like
  every other list, with no second format and no second transport to keep.

What an entry records is `CredentialOutcome.record`: "<format>:<subject id>" (and with record = "holder",
the holder's name and date of birth), never the payload, which for an EU certificate is health data.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from edge.common.clock import wall_ms
from edge.common.model import Outcome, Reason
from edge.common.textsafe import for_log
from edge.credentials import read, trustfile, verify
from edge.credentials.context import Trust
from edge.credentials.model import CredentialFailure, Verdict, failed
from edge.credentials.passes import trusted_keys
from edge.credentials.rules import Rule, check, dcc_rules, gate_rule
from edge.credentials.settings import CredentialsSettings
from edge.credentials.trust import TrustList, TrustListError, load_trust_list

log = logging.getLogger("checkpoint.credentials")

MAX_RECORDED = 256  # characters of a subject id or a name kept in an entry
TRUST_STALE = "trust-stale"


# What the step needs of the lists and of the [decision] settings, named here: the credentials import
# neither the lists (beside them) nor the settings (above them). edge.lists.Match, edge.lists.ListStore
# and edge.settings.decision.DecisionSettings are what the policy passes.
class ListEntry(Protocol):
    @property
    def list_name(self) -> str: ...

    @property
    def list_version(self) -> int: ...

    @property
    def deny(self) -> bool: ...

    def window(self, now_ms: int) -> str: ...


class Lists(Protocol):
    def lookup(self, code: str, names: list[str] | None = None) -> Sequence[ListEntry]: ...


class DecisionRules(Protocol):
    @property
    def mode(self) -> str: ...

    @property
    def lists(self) -> list[str]: ...

    def outcome(self, reason: Reason) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class CredentialOutcome:
    outcome: Outcome
    reason: str                      # "credential-valid", "credential-expired", ..., "not-listed", "trust-stale"
    verdict: Verdict
    record: str                      # what the entry stores in place of the payload
    rule: str | None = None          # with credential-rule: the rule that refused
    match: ListEntry | None = None   # the list entry (edge.lists.Match) the decision rests on, if any
    label: str | None = None         # the holder's name, for the screens

    @property
    def format(self) -> str:
        return self.verdict.format

    @property
    def subject(self) -> str | None:
        return self.verdict.credential.subject_id if self.verdict.credential else None

    @property
    def valid_from_ms(self) -> int | None:
        return self.verdict.credential.valid_from_ms if self.verdict.credential else None

    @property
    def valid_until_ms(self) -> int | None:
        return self.verdict.credential.valid_until_ms if self.verdict.credential else None


def _in_force(matches: Sequence[ListEntry], now_ms: int, *, deny: bool) -> list[ListEntry]:
    return [m for m in matches if m.deny is deny and m.window(now_ms) == "in force"]


class CredentialStep:
    def __init__(self, settings: CredentialsSettings, *, lists: Lists, decision: DecisionRules,
                 trust_path: Path | None, timezone: str = "UTC", gate: str | None = None,
                 untrusted_windows: str = "review"):
        """decision: the [decision] settings (mode, lists, outcomes); lists: the ListStore (or anything
        with its `lookup(code, names)`). edge.rules.policy.credential_step builds one from Settings."""
        self.settings, self.lists, self.decision = settings, lists, decision
        self.formats = tuple(dict.fromkeys(settings.formats))
        self.untrusted_windows = untrusted_windows
        self.rules: Sequence[Rule] = [*dcc_rules(settings.dcc.rules, ZoneInfo(timezone)), gate_rule(gate)]
        self.pass_keys = trusted_keys(settings.passes.trusted_keys)
        self.revocation_names = list(settings.revocation_lists)
        self._revocation = frozenset(self.revocation_names)
        # Subjects are looked up in the consulted lists, never in revocation lists (whose codes are hashes).
        self.subject_names = [n for n in decision.lists if n not in self._revocation] if decision.lists else None
        self.trust_path = trust_path
        self.trust_meta: trustfile.TrustMeta | None = None
        self.trust_error: str | None = None
        self.dsc = TrustList()
        self._stamp: trustfile.Stamp | None = None
        self.refresh(force=True)

    # -- the trust list ----------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> bool:
        """Read the trust list again when its file was replaced (an import, a push). Cheap: one stat.
        A file that cannot be used leaves no signer trusted (every EU certificate is `untrusted`)."""
        if self.trust_path is None:
            return False
        stamp = trustfile.stamp(self.trust_path)
        if not force and stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            self.trust_meta = trustfile.read_meta(self.trust_path) if stamp is not None else None
            self.dsc = load_trust_list(self.trust_path) if stamp is not None else TrustList()
            self.trust_error = None if stamp is not None else "no trust list"
            if stamp is not None:
                log.info("trust list %s: %d signers%s", for_log(str(self.trust_path)), len(self.dsc),
                         f" (version {self.trust_meta.version})" if self.trust_meta else "")
        except TrustListError as exc:
            self.dsc, self.trust_meta, self.trust_error = TrustList(), None, str(exc)
            log.error("TRUST LIST UNUSABLE: %s; every EU certificate is untrusted until it is replaced",
                      for_log(exc))
        return True

    def trust_age_h(self, now_ms: int) -> float | None:
        if self.trust_meta is None:
            return None
        return (now_ms - self.trust_meta.imported_ms) / 3_600_000

    def trust_stale(self, now_ms: int) -> bool:
        max_age, age = self.settings.dcc.trust_max_age_h, self.trust_age_h(now_ms)
        return max_age is not None and age is not None and age > max_age

    def trust_status(self, now_ms: int | None = None) -> dict[str, object] | None:
        """For the daemon's status (status.json, the hub): the trust list's version, age and state."""
        if self.trust_path is None:
            return None
        now_ms = wall_ms() if now_ms is None else now_ms
        meta, age = self.trust_meta, self.trust_age_h(now_ms)
        return {"path": str(self.trust_path), "version": meta.version if meta else None,
                "source": meta.source if meta else None, "signers": len(self.dsc),
                "skipped": len(self.dsc.skipped), "age_h": round(age, 2) if age is not None else None,
                "max_age_h": self.settings.dcc.trust_max_age_h, "stale": self.trust_stale(now_ms),
                "error": self.trust_error}

    def problems(self, now_ms: int) -> list[str]:
        """What an administrator must hear about, for the health report."""
        if self.trust_path is None:
            return []
        if self.trust_error is not None:
            return [f"trust list: {self.trust_error}"]
        if self.trust_stale(now_ms):
            return [f"trust list stale: {self.trust_age_h(now_ms):.1f} h old, at most "
                    f"{self.settings.dcc.trust_max_age_h} h"]
        return []

    # -- one scan ----------------------------------------------------------------------------------
    def _revoked_at(self, now_ms: int) -> Callable[[bytes], bool]:
        if not self.revocation_names:
            return lambda _digest: False

        def revoked(digest: bytes) -> bool:
            return any(m.window(now_ms) == "in force" for m in self.lists.lookup(digest.hex(), self.revocation_names))
        return revoked

    def decide(self, text: str, now_ms: int, *, clock_trusted: bool = True) -> CredentialOutcome | None:
        """None for a plain code. Raises ListError when the lists cannot be read (the caller's
        store-failure)."""
        parsed = read(text, self.formats, keep_address=self.settings.cccd.keep_address)
        if parsed is None:
            return None
        matches: list[ListEntry] = []
        if isinstance(parsed, CredentialFailure):
            verdict = failed(parsed)
        else:
            matches = [m for m in self.lists.lookup(parsed.subject_id, self.subject_names)
                       if m.list_name not in self._revocation]
            denied = bool(_in_force(matches, now_ms, deny=True))
            trust = Trust(dsc=self.dsc, pass_keys=self.pass_keys, revoked=self._revoked_at(now_ms),
                          denied=lambda _subject: denied)
            verdict = verify(parsed, trust, now_ms)
            if verdict.accepted:
                verdict = check(parsed, now_ms, self.rules) or verdict
        return self._outcome(verdict, matches, now_ms, clock_trusted)

    def _outcome(self, verdict: Verdict, matches: Sequence[ListEntry], now_ms: int,
                 clock_trusted: bool) -> CredentialOutcome:
        record = self.record(verdict)
        label = verdict.credential.label if verdict.credential else None
        rule = verdict.rule
        mode = self.decision.mode
        if not verdict.accepted:
            outcome = Outcome.ALLOW if mode == "record" else Outcome(self.settings.refused)
            deny = next(iter(_in_force(matches, now_ms, deny=True)), None)
            return CredentialOutcome(outcome, verdict.reason, verdict, record, rule, deny, label)
        allow = next(iter(_in_force(matches, now_ms, deny=False)), None)
        if allow is not None or self.settings.accept_unlisted or mode == "record":
            reason, outcome, match = verdict.reason, Outcome.ALLOW, allow
        else:
            # Verified but not on a list in force, where a list is required (staff passes, say).
            match = matches[0] if matches else None
            reason = Reason(match.window(now_ms)) if match else Reason.NOT_LISTED
            outcome, reason = self.decision.outcome(reason), reason.value
        if outcome is Outcome.ALLOW and mode != "record":
            if not clock_trusted and self.untrusted_windows != "ignore":
                # Every credential's validity rests on the clock: one not believed cannot open the gate.
                reason, outcome = Reason.CLOCK_UNTRUSTED.value, Outcome(self.untrusted_windows)
            elif verdict.format == "dcc" and self.settings.stale_trust != "keep" and self.trust_stale(now_ms):
                reason, outcome = TRUST_STALE, Outcome(self.settings.stale_trust)
        return CredentialOutcome(outcome, reason, verdict, record, rule, match, label)

    def record(self, verdict: Verdict) -> str:
        """What the entry stores instead of the payload: format and subject id (and the holder)."""
        credential = verdict.credential
        if credential is None:
            return f"{verdict.format}:"
        text = f"{verdict.format}:{credential.subject_id[:MAX_RECORDED]}"
        if self.settings.record == "holder":
            holder = credential.holder
            text += f"|{holder.name[:MAX_RECORDED]}|{holder.date_of_birth or ''}"
        return text


def with_rule(reason: str, rule: str | None) -> str:
    """A reason as `checkpoint check` and the log say it: the failed rule after a credential-rule."""
    return f"{reason} ({rule})" if rule else reason


