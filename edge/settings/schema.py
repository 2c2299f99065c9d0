"""The appliance's settings: one TOML file validated into typed, frozen models.

Unknown keys, wrong types and out-of-range values are refused with the key's dotted path, so a typo in
a checkpoint's config never silently falls back to a default.

The models live one module per part of the appliance (device, sources, decision, outputs, network,
screens; root ties them together) and loading reads a file into them; this module is the one place the
rest of the project imports them from. `python -m edge.settings.reference` writes docs/config.md from them.
"""
from __future__ import annotations

from edge.settings.base import LIST_NAME, SAFE_NAME, ConfigError, ConfigModel, ListName, SafeName
from edge.settings.decision import (
    DEFAULT_OUTCOMES,
    ClockSettings,
    DecisionSettings,
    Mode,
    OutcomeName,
    OverridableReason,
    UntrustedClockPolicy,
)
from edge.settings.device import DeviceSettings, LogSettings, StoreSettings
from edge.settings.loading import (
    MAX_CONFIG_BYTES,
    MAX_DEPTH,
    MAX_ERRORS,
    SHOWN_VALUE,
    os_reason,
    parse_settings,
    parse_toml,
    read_config,
)
from edge.settings.network import RemoteSettings, SyncSettings
from edge.settings.outputs import ConsoleOutput, FakeOutput, GpioOutput, OutputSettings, Pulse
from edge.settings.root import Settings
from edge.settings.screens import OfficerSettings, UISettings
from edge.settings.sources import (
    DecoderSettings,
    DecoderType,
    HidSource,
    LinesSource,
    OpenCVSource,
    PiCameraSource,
    ReplaySource,
    SerialSource,
    SourceSettings,
)

__all__ = [
    "DEFAULT_OUTCOMES", "LIST_NAME", "MAX_CONFIG_BYTES", "MAX_DEPTH", "MAX_ERRORS", "SAFE_NAME", "SHOWN_VALUE",
    "ClockSettings", "ConfigError", "ConfigModel", "ConsoleOutput", "DecisionSettings", "DecoderSettings",
    "DecoderType", "DeviceSettings", "FakeOutput", "GpioOutput", "HidSource", "LinesSource", "ListName",
    "LogSettings", "Mode", "OfficerSettings", "OpenCVSource", "OutcomeName", "OutputSettings", "OverridableReason",
    "PiCameraSource", "Pulse", "RemoteSettings", "ReplaySource", "SafeName", "SerialSource", "Settings",
    "SourceSettings", "StoreSettings", "SyncSettings", "UISettings", "UntrustedClockPolicy", "os_reason",
    "parse_settings", "parse_toml", "read_config",
]
