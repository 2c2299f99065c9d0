"""What can go wrong with what crosses MQTT: one family, WireError, below the project's CheckpointError.

Each kind of message has its own error (a batch, list records, a bundle, a status or ack, the client's
credentials), so a caller catches exactly what it reads, or WireError for all of them.
"""
from __future__ import annotations

from edge.common.errors import CheckpointError


class WireError(CheckpointError):
    """A message that is not what the wire format allows, or a connection that cannot be set up."""


class BatchError(WireError):
    """An entries batch that cannot be decoded; the message says why."""


class RecordsError(WireError):
    """List records (a snapshot chunk or a delta's body) that cannot be decoded."""


class BundleError(WireError):
    """A signed bundle refused. `fields`: what its signature vouched for, when the header was authentic
    but the body or a field did not hold (so that the refusal can name what it refused)."""

    def __init__(self, message: str, fields: dict[str, object] | None = None):
        super().__init__(message)
        self.fields = fields


class MessageError(WireError):
    """A status or an acknowledgement that is not one: too big, too deep, not JSON, or a field of the wrong type."""


class SyncConfigError(WireError):
    """Credentials or certificates that cannot be read."""
