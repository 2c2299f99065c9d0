"""What the rest of the appliance sees of a list: its name rule, its catalog row, a match, and its errors."""
from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ParamSpec, Protocol, TypeVar

from edge.common.errors import CheckpointError
from edge.common.textsafe import for_log

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_LABEL = 200
SHOWN = 40  # characters of an outside value quoted in an error message
Code = str | bytes  # the code as read, or its keyed hash (HASH_BYTES) in a hashed list
# (code, deny, label, valid_from, valid_until): a list entry everywhere in this package; deny is a bool,
# or SQLite's 0/1.
Row = tuple[Code, int, str | None, int | None, int | None]


class ListError(CheckpointError):
    """The lists' family: a list that cannot be imported or used; nothing was changed."""


class ListUnreadable(ListError):
    """The catalog, a list file or a keys file cannot be read or written (damaged, missing, locked, a full
    disk): SQLite's error translated where it leaves the lists, so callers catch ListError only."""


_P = ParamSpec("_P")
_T = TypeVar("_T")


def translated(operation: Callable[_P, _T]) -> Callable[_P, _T]:
    """A list operation whose SQLite errors reach its caller as ListUnreadable: a caller catches ListError,
    never needing to know that SQLite sits below."""

    @functools.wraps(operation)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return operation(*args, **kwargs)
        except sqlite3.Error as exc:
            raise ListUnreadable(str(exc)) from exc
    return run


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


class Changes(Protocol):
    """A delta's rows (sync.wire.listwire.Changes is one): codes added, changed (rows as the list holds
    them) and removed."""

    @property
    def added(self) -> Sequence[Row]: ...

    @property
    def changed(self) -> Sequence[Row]: ...

    @property
    def removed(self) -> Sequence[Code]: ...


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

    def file_name(self) -> str:
        """The list's file; a catalog row of version 0.1 has none until repair.migrate moved it."""
        if not self.file:
            raise ListError(f"list {self.name} has no file of its own")
        return self.file


def shown(value: str) -> str:
    """An outside value for an error message: one line, capped after escaping."""
    text = for_log(value, SHOWN)
    return text if len(text) <= SHOWN + 1 else text[:SHOWN] + "…"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ListError(f"list name '{shown(name)}': use 1-64 letters, digits, '.', '_' or '-'")
    return name
