"""Credentials verified offline: EU digital COVID certificates, the appliance's signed passes, ID cards.

Every format is a module with the same three functions:

    recognise(payload: str) -> bool
    parse(payload: str) -> Credential | CredentialFailure
    verify(credential, trust: Trust, at_ms: int) -> Verdict

`read` and `evaluate` below pick the format. A payload no enabled format recognises is a plain code:
`read` returns None and the policy looks it up in its lists as before.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from edge.credentials import cccd, dcc, passes, plain
from edge.credentials.context import Trust
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

FORMATS = {dcc.NAME: dcc, passes.NAME: passes, cccd.NAME: cccd}
ALL_FORMATS = tuple(FORMATS)

__all__ = ["ALL_FORMATS", "Category", "Credential", "CredentialFailure", "FORMATS", "Holder", "Trust",
           "TrustList", "TrustListError", "Verdict", "evaluate", "format_of", "load_trust_list", "read",
           "verify"]


def format_of(payload: str, formats: Iterable[str] = ALL_FORMATS):
    """The module of the first enabled format that recognises the payload, or `plain`."""
    for name in formats:
        module = FORMATS[name]
        if module.recognise(payload):
            return module
    return plain


def read(payload: str, formats: Iterable[str] = ALL_FORMATS, *, keep_address: bool = False
         ) -> Credential | CredentialFailure | None:
    """Parse without verifying; None for a plain code."""
    module = format_of(payload, formats)
    if module is cccd:
        return cccd.parse(payload, keep_address=keep_address)
    return module.parse(payload)


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
