"""Credentials verified offline: EU digital COVID certificates, the appliance's signed passes, ID cards.

Every format is a module with one FORMAT (formats.Format): its name, and

    recognise(payload: str) -> bool
    a parser (payload, ParseOptions) -> Credential, raising CredentialError (Format.parse turns that into
        a CredentialFailure)
    verify(credential, trust: Trust, at_ms: int) -> Verdict

`read` and `evaluate` below pick the format. A payload no enabled format recognises is a plain code:
`read` returns None and the policy looks it up in its lists as before.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from edge.credentials import cccd, dcc, passes
from edge.credentials.context import Trust
from edge.credentials.formats import Format, ParseOptions
from edge.credentials.model import (
    Category,
    Credential,
    CredentialFailure,
    Holder,
    Verdict,
    failed,
)
from edge.credentials.rules import Rule, check
from edge.credentials.trust import TrustList, TrustListError, load_trust_list

FORMATS = {f.name: f for f in (dcc.FORMAT, passes.FORMAT, cccd.FORMAT)}  # tried in this order
ALL_FORMATS = tuple(FORMATS)

__all__ = ["ALL_FORMATS", "Category", "Credential", "CredentialFailure", "FORMATS", "Format", "Holder", "Trust",
           "TrustList", "TrustListError", "Verdict", "evaluate", "format_of", "load_trust_list", "read",
           "verify"]


def format_of(payload: str, formats: Iterable[str] = ALL_FORMATS) -> Format | None:
    """The first enabled format that recognises the payload; None: a plain code."""
    for name in formats:
        if FORMATS[name].recognise(payload):
            return FORMATS[name]
    return None


def read(payload: str, formats: Iterable[str] = ALL_FORMATS, *, keep_address: bool = False
         ) -> Credential | CredentialFailure | None:
    """Parse without verifying; None for a plain code."""
    found = format_of(payload, formats)
    return None if found is None else found.parse(payload, ParseOptions(keep_address=keep_address))


def verify(credential: Credential, trust: Trust, at_ms: int) -> Verdict:
    return FORMATS[credential.format].verify(credential, trust, at_ms)


def evaluate(payload: str, trust: Trust, at_ms: int, *, formats: Iterable[str] = ALL_FORMATS,
             rules: Sequence[Rule] = (), keep_address: bool = False) -> Verdict | None:
    """Recognise, parse, verify, then apply the rules: the policy's one call per scan. None: a plain code."""
    parsed = read(payload, formats, keep_address=keep_address)
    if parsed is None:
        return None
    if isinstance(parsed, CredentialFailure):
        return failed(parsed)
    verdict = verify(parsed, trust, at_ms)
    if verdict.accepted:
        return check(parsed, at_ms, rules) or verdict
    return verdict
