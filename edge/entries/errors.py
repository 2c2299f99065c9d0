"""The entries layer's errors, and SQLite's errors said in words an operator can act on."""
from __future__ import annotations

from edge.common.errors import CheckpointError


class StoreError(CheckpointError):
    """The entries database cannot be used; the message says why in words an operator can act on."""


def describe(exc: BaseException) -> str:
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return f"database file is corrupt or not a SQLite database ({text})"
    if "readonly" in text or "read-only" in text:
        return f"database is read-only ({text})"
    if "full" in text:
        return f"disk or database is full ({text})"
    return text
