"""The process's exceptions: AppError and the errors that derive from it.

Exit statuses are not decided here: each error carries its family's (edge.common.errors), and the command
line turns any error of ours into one line and that status (edge/app/cli.py).
"""
from __future__ import annotations

from edge.common.errors import CheckpointError


class AppError(CheckpointError):
    """The daemon or a command could not do its work; exit status 1."""


class StartError(AppError):
    """The daemon cannot start with these settings (source or outputs unavailable)."""


class CommandFailed(AppError):
    """A command that could not do its work (no such list, an unreadable file): one line, exit status 1."""
