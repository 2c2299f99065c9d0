"""What the rest of the appliance sees of a list: its name rule, its catalog row, a match, and its error."""
from __future__ import annotations

import re
from dataclasses import dataclass

from edge.common.textsafe import for_log

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_LABEL = 200
SHOWN = 40  # characters of an outside value quoted in an error message


class ListError(Exception):
    """A list that cannot be imported or used; nothing was changed."""


@dataclass(frozen=True, slots=True)
class Match:
    list_name: str
    list_version: int
    deny: bool
    label: str | None
    valid_from: int | None
    valid_until: int | None

    def window(self, now_ms: int) -> str:
        """'in force', 'not-yet-valid' or 'expired' at now_ms."""
        if self.valid_from is not None and now_ms < self.valid_from:
            return "not-yet-valid"
        if self.valid_until is not None and now_ms >= self.valid_until:
            return "expired"
        return "in force"


@dataclass(frozen=True, slots=True)
class ListInfo:
    """A row of the catalog: the list's current version and the file that holds it."""
    name: str
    version: int
    count: int
    imported_ms: int
    source: str | None
    sha256: str
    file: str | None = None
    hash_key: str | None = None


def shown(value: str) -> str:
    """An outside value for an error message: one line, capped after escaping."""
    text = for_log(value, SHOWN)
    return text if len(text) <= SHOWN + 1 else text[:SHOWN] + "…"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ListError(f"list name '{shown(name)}': use 1-64 letters, digits, '.', '_' or '-'")
    return name
