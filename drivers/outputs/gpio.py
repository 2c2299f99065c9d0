"""Outputs on Raspberry Pi pins through the RPi.GPIO API (on a Pi 5, the rpi-lgpio package provides it)."""
from __future__ import annotations

import threading
from types import ModuleType

from drivers.outputs.base import Output, OutputError

_setup_lock = threading.Lock()


def _gpio() -> ModuleType:
    try:
        import RPi.GPIO as GPIO  # imported here only: the rest of the appliance runs anywhere
    except (ImportError, RuntimeError) as exc:
        raise OutputError(f"RPi.GPIO is not available ({exc}); install the [pi] extra, or rpi-lgpio on a "
                          "Raspberry Pi 5, or use driver = \"console\"") from exc
    module: ModuleType = GPIO  # RPi.GPIO ships no types
    return module


class GpioOutput(Output):
    def __init__(self, name: str, pin: int, active_low: bool = False):
        super().__init__(name)
        self.pin, self.active_low = pin, active_low
        self._gpio = GPIO = _gpio()
        self._levels = (GPIO.HIGH, GPIO.LOW) if active_low else (GPIO.LOW, GPIO.HIGH)  # (off, on)
        try:
            with _setup_lock:
                GPIO.setwarnings(False)  # a crashed run leaves pins set up; we drive them to safe anyway
                GPIO.setmode(GPIO.BCM)
                GPIO.setup(pin, GPIO.OUT, initial=self._levels[0])
        except (RuntimeError, ValueError) as exc:
            raise OutputError(f"output {name}: cannot set up BCM pin {pin}: {exc}") from exc

    def set(self, on: bool) -> None:
        try:
            self._gpio.output(self.pin, self._levels[1] if on else self._levels[0])
        except (RuntimeError, ValueError) as exc:
            raise OutputError(f"output {self.name}: BCM pin {self.pin}: {exc}") from exc

    def close(self) -> None:
        # Driven off, and left configured as an output: cleanup() would float the pin, and an
        # active-low relay board reads a floating pin as 'on'.
        self.set(False)
