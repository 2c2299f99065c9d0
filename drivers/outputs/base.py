"""One gate output (a light, the buzzer, the relay): logically on or off; the driver maps that to a level."""
from __future__ import annotations

from abc import ABC, abstractmethod


class OutputError(Exception):
    """An output that cannot be driven; library exceptions are translated into this."""


class Output(ABC):
    def __init__(self, name: str):
        self.name = name

    @abstractmethod
    def set(self, on: bool) -> None:
        """Drive the output; on means lit, sounding, or gate open, whatever the wiring's polarity."""

    def close(self) -> None:
        """Leave the output in its safe state (off) and release it."""
        self.set(False)
