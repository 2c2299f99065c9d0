"""The whole configuration file: one table per section, checked against each other."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from edge.credentials.settings import CredentialsSettings
from edge.settings.base import ConfigModel
from edge.settings.decision import ClockSettings, DecisionSettings, OutcomeName
from edge.settings.device import DeviceSettings, LogSettings, StoreSettings
from edge.settings.network import RemoteSettings, SyncSettings
from edge.settings.outputs import OutputSettings, Pulse
from edge.settings.screens import UISettings
from edge.settings.sources import DecoderSettings, SourceSettings


class Settings(ConfigModel):
    """Keys outside any table."""

    version: str | None = Field(None, max_length=200, description="Config version recorded on every entry.")
    device: DeviceSettings = Field(default_factory=DeviceSettings)
    source: SourceSettings
    decoder: DecoderSettings = Field(default_factory=DecoderSettings)
    decision: DecisionSettings = Field(default_factory=DecisionSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    outputs: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")], OutputSettings] = Field(
        default_factory=dict, description="Lights, buzzers and relays, each under a name of your choosing.")
    signals: dict[OutcomeName, dict[str, Pulse]] = Field(
        default_factory=dict, description="What each output does for each outcome.")
    sync: SyncSettings = Field(default_factory=SyncSettings)
    clock: ClockSettings = Field(default_factory=ClockSettings)
    remote: RemoteSettings = Field(default_factory=RemoteSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    ui: UISettings = Field(default_factory=UISettings)
    credentials: CredentialsSettings = Field(default_factory=CredentialsSettings)

    @model_validator(mode="after")
    def _signals_name_outputs(self) -> Settings:
        if self.remote.enabled and not self.sync.enabled:
            raise ValueError("remote: enabled needs [sync] enabled (bundles come through the broker)")
        for outcome, pattern in self.signals.items():
            for name in pattern:
                if name not in self.outputs:
                    raise ValueError(f"signals.{outcome}.{name}: no output named {name!r} in [outputs]")
        return self
