"""[device], [store] and [log]: the appliance itself, where it keeps its data, what it logs."""
from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from edge.common.textsafe import for_log
from edge.settings.base import ConfigModel, SafeName


class DeviceSettings(ConfigModel):
    """This appliance: its name in the fleet and its time zone."""

    id: SafeName = Field(default_factory=socket.gethostname, description="Device id, also the MQTT client id "
                         "and part of topics and file names: letters, digits, '.', '_', '-' (not first), "
                         "at most 64, not '.' or '..'.")
    timezone: str = Field("UTC", max_length=200, description="Zone for dates in lists without an offset.")

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in ("all", "group"):
            raise ValueError(f"device id {value!r} is reserved (it names fleet-wide topics)")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # 'America' is a directory: OSError
            raise ValueError(f"unknown time zone {for_log(value, 60)!r}") from exc
        return value


class StoreSettings(ConfigModel):
    """Where entries and lists are kept, for how long, and when free disk space is worth a warning."""

    dir: str = Field("/var/lib/checkpoint", min_length=1, description="Holds entries.db and lists.db.")
    retention_days: int = Field(90, ge=1, le=3650, description="Entries older are purged (once synced).")
    disk_warn_mb: int = Field(200, ge=0, le=10_000_000, description="Warn when less is free.")
    disk_warn_percent: float = Field(10.0, ge=0, le=90, description="Warn when a smaller share is free.")
    retry_s: float = Field(5.0, gt=0, le=3600, description="How often a failed store is retried.")

    @property
    def entries_path(self) -> Path:
        return Path(self.dir) / "entries.db"

    @property
    def lists_path(self) -> Path:
        return Path(self.dir) / "lists.db"


class LogSettings(ConfigModel):
    """What goes to the journal."""

    level: Literal["debug", "info", "warning", "error"] = Field("info", description="The least important "
                                                                "messages logged.")
    codes: bool = Field(False, description="Show scanned codes in the log (personal data); off shows a short hash.")
