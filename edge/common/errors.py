"""The project's exceptions: one base, a family per layer, and the exit status each family means.

Every error we raise on purpose derives from CheckpointError through its layer's family (ListError for the
lists, CredentialError for credentials, StoreError for entries, ConfigError for settings, SourceError and
OutputError for drivers, WireError for what crosses MQTT, HubError for the hub, UIError for the screens).
A library's error is translated where it is caught (`raise ListError(...) from exc`), so a caller never has
to know which library sits below. Anything else reaching a command line is a bug and keeps its traceback.
"""
from __future__ import annotations

# Exit statuses of `checkpoint` and `checkpoint-hub`, the same for both.
EXIT_OK = 0
EXIT_FAILED = 1  # the work failed: an unreadable file, a refused bundle, a broker that did not answer
EXIT_USAGE = 2  # what was asked cannot be done as asked: bad arguments, a bad config file or name


class CheckpointError(Exception):
    """An error the project raises on purpose, with a message for the person who ran the command."""

    exit_status = EXIT_FAILED


class UsageError(CheckpointError):
    """What was asked is wrong as asked (an argument, a name, a config value): fix the request, not the machine."""

    exit_status = EXIT_USAGE


def exit_status(exc: BaseException) -> int | None:
    """The exit status a command line gives for exc, or None when exc is not ours (a bug: let it show)."""
    return exc.exit_status if isinstance(exc, CheckpointError) else None

