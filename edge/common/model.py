"""Values that travel through the pipeline."""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(str, enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    REVIEW = "review"


class Reason(str, enum.Enum):
    LISTED = "listed"
    NOT_LISTED = "not-listed"
    DENY_LISTED = "deny-listed"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    REPEATED = "repeated"
    MALFORMED = "malformed"
    STORE_FAILURE = "store-failure"
    CLOCK_UNTRUSTED = "clock-untrusted"  # a validity window cannot be judged: the wall clock is not trusted
    LIST_STALE = "list-stale"            # a consulted list is older than its configured maximum age
    LIST_MISSING = "list-missing"        # a list named in [decision] lists is not on the device, and the code
                                         # is on none of the consulted lists that are
    OFFICER = "officer"                  # an officer's answer to a review: the outcome is the answer itself
    # A credential (edge/credentials): verified, or refused in one of these categories.
    CREDENTIAL_VALID = "credential-valid"
    CREDENTIAL_MALFORMED = "credential-malformed"
    CREDENTIAL_SIGNATURE = "credential-signature"
    CREDENTIAL_UNTRUSTED = "credential-untrusted"
    CREDENTIAL_EXPIRED = "credential-expired"
    CREDENTIAL_NOT_YET_VALID = "credential-not-yet-valid"
    CREDENTIAL_KEY_USAGE = "credential-key-usage"
    CREDENTIAL_REVOKED = "credential-revoked"
    CREDENTIAL_RULE = "credential-rule"  # Decision.rule names the rule that refused
    TRUST_STALE = "trust-stale"          # the EU DCC trust list is older than [credentials.dcc] trust_max_age_h


@dataclass(frozen=True, slots=True)
class Code:
    """One decoded code: the exact bytes, and its text when the bytes are text."""

    data: bytes
    text: str | None

    @property
    def key(self) -> str:
        """What lists, debounce and entries know the code by."""
        return self.text if self.text is not None else self.data.hex()


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    reason: Reason
    list_name: str | None = None
    list_version: int | None = None
    label: str | None = None
    # What the screens say beside the reason: the matching list entry's window ("expired since 30/11") and,
    # for `repeated`, when the earlier allow was (wall ms). Not recorded in the entry.
    valid_from_ms: int | None = None
    valid_until_ms: int | None = None
    repeated_at_ms: int | None = None
    rule: str | None = None    # with credential-rule: the rule that refused (e.g. "vaccination-incomplete")
    record: str | None = None  # what the entry records instead of the payload (a credential's format:subject)
