"""[sync] (entries up to the hub over MQTT) and [remote] (signed configuration and lists down)."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from edge.settings.base import ConfigModel, SafeName

# MQTT topic levels without wildcards or empty levels: the hub's --topic-prefix takes the same.
TOPIC_PREFIX_PATTERN = r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$"


class SyncSettings(ConfigModel):
    """MQTT sync to the hub. Off unless enabled: the appliance needs no network to work."""

    enabled: bool = Field(False, description="Send entries to the hub and publish the device's status.")
    host: str = Field("localhost", min_length=1, description="The MQTT broker's host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="The broker's port (8883 is usual with TLS).")
    topic_prefix: str = Field("checkpoint", pattern=TOPIC_PREFIX_PATTERN,
                              description="First levels of every topic; the same on the hub and every device.")
    username: str | None = Field(None, description="Defaults to the device id.")
    password_file: str | None = Field(None, description="A file holding the password, or the name of a "
                                      "systemd credential in $CREDENTIALS_DIRECTORY.")
    tls: bool = Field(False, description="Encrypt the connection to the broker (needed to send a password over "
                      "a network).")
    ca_file: str | None = Field(None, description="The certificate authority that signed the broker's "
                                "certificate; not set: the system's.")
    cert_file: str | None = Field(None, description="This device's client certificate (PEM), for a broker that "
                                  "asks for one.")
    key_file: str | None = Field(None, description="The private key of cert_file: a file, or a "
                                 "systemd credential name.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="How often the connection is checked when idle; a "
                             "dead broker is noticed within about one and a half times this.")
    session_expiry_s: int = Field(7 * 86400, ge=0, le=2**32 - 1, description="How long the broker keeps this "
                                  "device's session (pushed bundles waiting for it) while it is away.")
    batch_max_entries: int = Field(500, ge=1, le=10_000, description="Most entries sent in one message.")
    batch_max_bytes: int = Field(64_000, ge=1024, le=512_000, description="Largest message sent, in bytes.")
    batch_wait_ms: int = Field(200, ge=0, le=60_000,
                               description="How long the first entry of a batch waits for company.")
    max_inflight: int = Field(8, ge=1, le=100, description="Batches published and not yet acknowledged.")
    status_interval_s: int = Field(60, ge=1, le=3600, description="How often the device's status is published.")
    retry_refused_s: float = Field(30.0, gt=0, le=3600, description="Wait before resending a refused batch.")


class RemoteSettings(ConfigModel):
    """Configuration and lists pushed by administrators as signed bundles through the [sync] broker."""

    enabled: bool = Field(False, description="Take configuration and lists pushed through the broker (needs "
                          "[sync] enabled and trusted_keys).")
    trusted_keys: list[Annotated[str, Field(pattern=r"^ed25519:[A-Za-z0-9+/]{43}=$")]] = Field(
        default_factory=list, max_length=16, description="Administrators' Ed25519 public keys (several, to rotate).")
    groups: list[SafeName] = Field(
        default_factory=list, max_length=32, description="Groups this device belongs to (group:NAME targets).")
    hash_key_file: str | None = Field(None, description="File or systemd credential holding the key of "
                                      "hashed lists (64 hex digits).")
    chunk_window: int = Field(4, ge=1, le=64, description="List chunks requested at once.")
    retry_s: float = Field(60.0, gt=0, le=86400, description="Ask again for list chunks that did not come.")

    @model_validator(mode="after")
    def _keys_when_enabled(self) -> RemoteSettings:
        if self.enabled and not self.trusted_keys:
            raise ValueError("remote: enabled needs at least one key in trusted_keys")
        return self
