"""Outputs by driver name: `gpio`, `console`, `fake`."""
from __future__ import annotations

from typing import Any

from drivers.outputs.base import Output, OutputError

__all__ = ["Output", "OutputError", "open_output"]


def open_output(name: str, settings: Any) -> Output:
    """Build the output a config's [outputs.<name>] table names.

    settings: the table as edge.settings.schema parsed it (GpioOutput, ConsoleOutput, FakeOutput), validated
    there; typed Any because the settings are a layer above the drivers, which may not import them."""
    driver = settings.driver
    if driver == "gpio":
        from drivers.outputs.gpio import GpioOutput

        return GpioOutput(name, settings.pin, settings.active_low)
    if driver == "console":
        from drivers.outputs.console import ConsoleOutput

        return ConsoleOutput(name, settings.colour)
    if driver == "fake":
        from drivers.outputs.fake import FakeOutput

        return FakeOutput(name, settings.record_to)
    raise OutputError(f"output {name}: unknown driver {driver!r}")
