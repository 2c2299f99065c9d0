"""The hub's errors: one family, HubError, below the project's CheckpointError.

A HubError is the work failing (exit status 1: the broker unreachable, the hub database failing); a
HubUsageError is a request that cannot be done as asked (exit status 2: a bad target, a version not above the
last pushed, a file that is not what it should be). Anything else reaching `checkpoint-hub` is a bug and
keeps its traceback."""
from __future__ import annotations

from edge.common.errors import CheckpointError, UsageError


class HubError(CheckpointError):
    """The hub's work failed: exit status 1."""


class HubUsageError(HubError, UsageError):
    """What was asked of the hub is wrong as asked: exit status 2."""


class MissingDatabase(HubUsageError):
    """A read command named a hub database that does not exist (check --db)."""


class BrokerError(HubError, OSError):
    """The broker unreachable, refusing, or not acknowledging (an OSError too, as it was before)."""


class DashboardError(HubUsageError):
    """The dashboard cannot start as asked: an unreadable admins file, a bad hash, a bad zone, a short key."""
