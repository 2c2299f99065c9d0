"""Per-decision patterns over the gate's outputs, played on a thread of their own.

A pattern never holds the pipeline: signal() returns at once. A newer decision cuts the running pattern
short (its outputs go off first), and close() stops everything at once and leaves every output off.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping

from drivers.outputs import Output, OutputError
from edge.common.model import Outcome
from edge.settings.schema import OutcomeName, Pulse

log = logging.getLogger("checkpoint.signals")

Step = tuple[float, str, bool]  # (seconds from start, output name, on)


def timeline(pattern: Mapping[str, Pulse]) -> list[Step]:
    steps: list[Step] = []
    for name, pulse in pattern.items():
        for i in range(pulse.count):
            start = pulse.delay_ms + i * (pulse.on_ms + pulse.off_ms)
            steps.append((start / 1000, name, True))
            steps.append(((start + pulse.on_ms) / 1000, name, False))
    return sorted(steps, key=lambda step: (step[0], step[2]))


class Signaller:
    def __init__(self, outputs: Mapping[str, Output], patterns: Mapping[OutcomeName, Mapping[str, Pulse]]):
        self.outputs = dict(outputs)
        self.timelines = {Outcome(name): timeline(p) for name, p in patterns.items()}
        self._cond = threading.Condition()
        self._pending: list[Step] | None = None
        self._busy = False
        self._stop = False
        self._all_off()
        self._thread = threading.Thread(target=self._run, name="signals", daemon=True)
        self._thread.start()

    def signal(self, outcome: Outcome) -> None:
        with self._cond:
            self._pending = self.timelines.get(outcome, [])
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once no pattern is pending or playing (a finite source's last signal has played)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy or self._pending is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    return False
        return True

    def _set(self, name: str, on: bool) -> None:
        try:
            self.outputs[name].set(on)
        except OutputError as exc:
            log.error("%s", exc)
        except Exception:  # a driver bug must not silence the gate for every later decision
            log.exception("output %s failed", name)

    def _all_off(self, names: Iterable[str] | None = None) -> None:
        for name in names if names is not None else self.outputs:
            self._set(name, False)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._busy = False
                    self._cond.notify_all()
                    self._cond.wait()
                if self._stop or self._pending is None:
                    return
                steps, self._pending, self._busy = self._pending, None, True
            self._play(steps)

    def _play(self, steps: list[Step]) -> None:
        start = time.monotonic()
        for at, name, on in steps:
            with self._cond:
                # Waiting on the condition, not sleeping: a newer decision or close() cuts in at once.
                while not self._stop and self._pending is None:
                    left = start + at - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._stop or self._pending is not None:
                    break
            self._set(name, on)
        self._all_off({name for _, name, _ in steps})

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=2)
        for output in self.outputs.values():
            try:
                output.close()
            except OutputError as exc:
                log.error("%s", exc)
