"""What makes a module a credential format: one Format, the same for every format.

A format's own parser raises CredentialError for anything it cannot read; Format.parse turns that into a
CredentialFailure of the format, so no format repeats the wrapping and none lets a parse error escape.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge.credentials.context import Trust
from edge.credentials.errors import CredentialError
from edge.credentials.model import Credential, CredentialFailure, Verdict


@dataclass(frozen=True, slots=True)
class ParseOptions:
    """What the settings ask of parsing; a format reads the options that concern it."""

    keep_address: bool = False  # ID cards: keep the holder's address in the claims


@dataclass(frozen=True, slots=True)
class Format:
    name: str
    recognise: Callable[[str], bool]  # cheap and certain: it runs on every scan, before any list lookup
    parser: Callable[[str, ParseOptions], Credential]  # strict; raises CredentialError
    verify: Callable[[Credential, Trust, int], Verdict]  # (credential, trust, at_ms)

    def parse(self, payload: str, options: ParseOptions = ParseOptions()) -> Credential | CredentialFailure:
        """The credential the payload holds, not yet verified, or why it cannot be read."""
        try:
            return self.parser(payload, options)
        except CredentialError as exc:
            return CredentialFailure(self.name, exc.category, str(exc))
