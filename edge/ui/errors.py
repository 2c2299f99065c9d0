"""The screens' exceptions: UIError and the errors that derive from it.

The screens never stop the gate: the daemon logs a UIError and goes on scanning without them. On a command
line (`checkpoint ui hash-password`) an error of this family is one line and its exit status.
"""
from __future__ import annotations

from edge.common.errors import EXIT_USAGE, CheckpointError


class UIError(CheckpointError):
    """The screens cannot be served (bad address, port taken, TLS files unreadable)."""


class ActionRefused(UIError):
    """submit or review cannot be done; reason is a key the officer page puts in words:
    "empty" (no code), "bad-answer", "not-found", "not-review" (the entry is not a review decision),
    "answered" (an answer is already recorded), "expired" (older than [ui] review_expiry_s),
    "busy" (the pipeline did not answer in time), "stopping", "store" (the entry database is unavailable)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


class PasswordError(UIError):
    """A password that cannot be used; the message says why. The request is wrong, not the machine."""

    exit_status = EXIT_USAGE


class CatalogueError(UIError):
    """A catalogue file that cannot be read or is not a JSON object."""


class OfficerError(UIError):
    """An officer's password hash cannot be read or is not an argon2 hash."""


class TooManySubscribers(UIError):
    """The hub has its fill of live pages: the page is answered 503 and its EventSource tries again later."""
