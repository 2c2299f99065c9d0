"""What every credential format returns: a typed credential, a typed failure, a verdict.

The policy decides on these and never on a format's internals; a list looks a credential up by its
`subject_id`, as it looks up a plain code by its text.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.credentials import base45
from edge.credentials.errors import Category as Category  # re-exported: the formats import it from here
from edge.credentials.errors import CredentialError as CredentialError


@dataclass(frozen=True, slots=True)
class Holder:
    name: str
    date_of_birth: str | None = None  # ISO 8601, possibly partial ("1964", "1964-08") as EU certificates allow


@dataclass(frozen=True, slots=True)
class Credential:
    """A parsed credential, not yet verified (a parsed credential says nothing about who signed it)."""

    format: str                      # "dcc", "pass", "cccd"
    subject_id: str                  # what lists are looked up by: a UVCI, a pass id, an ID card number
    kind: str                        # "vaccination", "test", "recovery", "pass", "id-card"
    holder: Holder
    valid_from_ms: int | None = None
    valid_until_ms: int | None = None
    issuer: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    # What verification needs (signed bytes, signature, key id): never shown, never recorded.
    proof: Any = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        """What screens show, as a list entry's label: the holder's name."""
        return self.holder.name


@dataclass(frozen=True, slots=True)
class CredentialFailure:
    """A payload of a known format that cannot be read: always `malformed`, with what was wrong."""

    format: str
    category: Category
    detail: str


@dataclass(frozen=True, slots=True)
class Verdict:
    format: str
    category: Category
    detail: str = ""
    credential: Credential | None = None
    rule: str | None = None          # with category RULE: which rule refused (e.g. "vaccination-incomplete")
    signer: str | None = None        # the trusted signer that verified it (a DSC's country and kid, a pass key id)

    @property
    def accepted(self) -> bool:
        return self.category is Category.VALID

    @property
    def reason(self) -> str:
        """The policy's reason word: `credential-valid`, `credential-expired`, …"""
        return f"credential-{self.category.value}"


def refused(credential: Credential, category: Category, detail: str, *, rule: str | None = None,
            signer: str | None = None) -> Verdict:
    return Verdict(credential.format, category, detail, credential, rule, signer)


def failed(failure: CredentialFailure) -> Verdict:
    return Verdict(failure.format, failure.category, failure.detail)


def prefixed_base45(payload: str, prefix: str, max_chars: int) -> bytes:
    """The bytes a Base45 credential carries after its prefix (HC1:, CP1:); CredentialError when it cannot."""
    if len(payload) > max_chars:
        raise CredentialError("longer than any QR code holds")
    try:
        return base45.decode(payload[len(prefix):])
    except base45.Base45Error as exc:
        raise CredentialError(str(exc)) from exc
