"""One gate output (a light, the buzzer, the relay): logically on or off; the driver maps that to a level."""
from __future__ import annotations

from abc import ABC, abstractmethod

from edge.common.errors import CheckpointError


class OutputError(CheckpointError):
    """An output that cannot be driven; library exceptions (RPi.GPIO's, the OS's) are translated into this
    where they are caught, so the signals never see them."""


class Output(ABC):
    def __init__(self, name: str):
        self.name = name

    @abstractmethod
    def set(self, on: bool) -> None:
        """Drive the output; on means lit, sounding, or gate open, whatever the wiring's polarity."""

    def close(self) -> None:
        """Leave the output in its safe state (off) and release it."""
        self.set(False)
