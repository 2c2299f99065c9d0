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
