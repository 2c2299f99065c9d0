"""Outputs shown as coloured lines on the terminal: the demo's gate. Each time an output switches on,
one line with its name, in its colour when the terminal has colours."""
from __future__ import annotations

import sys
import threading
from typing import TextIO

from drivers.outputs.base import Output, OutputError

COLOURS = {"green": "32", "red": "31", "yellow": "33", "blue": "34", "white": "37"}
_lock = threading.Lock()  # one line at a time, whichever output speaks


class ConsoleOutput(Output):
    def __init__(self, name: str, colour: str = "white", stream: TextIO | None = None):
        super().__init__(name)
        self.colour = colour
        self.stream = stream or sys.stdout
        self.state = False

    def set(self, on: bool) -> None:
        changed, self.state = on != self.state, on
        if not (changed and on):
            return  # only switching on is shown: a terminal full of 'off' lines hides the decisions
        text = f"  ● {self.name}"
        if self.stream.isatty():
            text = f"\x1b[1;{COLOURS[self.colour]}m{text}\x1b[0m"
        with _lock:
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (OSError, ValueError) as exc:  # a closed terminal or pipe (ValueError: a closed file)
                raise OutputError(f"output {self.name}: cannot write to the terminal: {exc}") from exc
