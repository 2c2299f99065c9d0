"""A fake output for tests: records every change with its time, optionally to a JSON-lines file that
survives the process (a test that SIGKILLs the daemon reads what it signalled from there)."""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable

from drivers.outputs.base import Output, OutputError


class FakeOutput(Output):
    def __init__(self, name: str, record_to: str | None = None,
                 on_change: Callable[[str, bool], None] | None = None):
        super().__init__(name)
        self.changes: list[tuple[float, bool]] = []
        self.state = False
        self.closed = False
        self._record_to = record_to
        self._on_change = on_change
        self._lock = threading.Lock()

    def set(self, on: bool) -> None:
        with self._lock:
            if on == self.state and self.changes:
                return
            if self._on_change is not None:
                self._on_change(self.name, on)
            now = time.monotonic()
            self.state = on
            self.changes.append((now, on))
            if self._record_to:
                line = json.dumps({"t": now, "output": self.name, "on": on}) + "\n"
                try:
                    fd = os.open(self._record_to, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                    try:
                        os.write(fd, line.encode())
                    finally:
                        os.close(fd)
                except OSError as exc:
                    raise OutputError(f"output {self.name}: cannot record to {self._record_to}: {exc}") from exc

    def close(self) -> None:
        super().close()
        self.closed = True
