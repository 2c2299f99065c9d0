"""[outputs.NAME] (one of the drivers' output types, by `driver`) and the pulses of [signals]."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from edge.settings.base import ConfigModel


class GpioOutput(ConfigModel):
    """A light, buzzer or relay on a Raspberry Pi GPIO pin."""

    driver: Literal["gpio"] = Field(description="A GPIO pin.")
    pin: int = Field(ge=0, le=27, description="BCM pin number.")
    active_low: bool = Field(False, description="The device is on when the pin is low (many relay boards).")


class ConsoleOutput(ConfigModel):
    """A coloured mark on the terminal: for trying a configuration without hardware."""

    driver: Literal["console"] = Field(description="A mark on the terminal.")
    colour: Literal["green", "red", "yellow", "blue", "white"] = Field("white", description="The mark's colour.")


class FakeOutput(ConfigModel):
    """Records what it was told to do: for tests."""

    driver: Literal["fake"] = Field(description="A recording stand-in.")
    record_to: str | None = Field(None, description="Append each change as a JSON line to this file.")


OutputSettings = Annotated[GpioOutput | ConsoleOutput | FakeOutput, Field(discriminator="driver")]


class Pulse(ConfigModel):
    """What one output does for one outcome, e.g. [signals.allow.green] on_ms = 1500."""

    on_ms: int = Field(ge=1, le=60_000, description="How long the output is on, each time.")
    off_ms: int = Field(0, ge=0, le=60_000, description="How long it is off between two pulses.")
    count: int = Field(1, ge=1, le=20, description="How many pulses.")
    delay_ms: int = Field(0, ge=0, le=60_000, description="Wait before the first pulse.")
