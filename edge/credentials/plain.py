"""Plain codes: any payload no credential format recognises. Not a credential; the policy goes on as today."""
from __future__ import annotations

NAME = "plain"


def recognise(payload: str) -> bool:
    return True


def parse(payload: str) -> None:
    """None: not a credential (the code is looked up in lists by its text, as always)."""
    return None
