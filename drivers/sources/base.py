"""The one interface every source offers the pipeline, and the newest-frame slot cameras share."""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Union

import numpy as np


class SourceError(Exception):
    """A source that cannot be opened or read; library exceptions are translated into this."""


@dataclass(slots=True)
class Frame:
    image: np.ndarray
    t_ns: int  # monotonic arrival time
    index: int


@dataclass(slots=True)
class TextScan:
    data: bytes
    t_ns: int


Item = Union[Frame, TextScan]


@dataclass
class SourceStats:
    delivered: int = 0
    dropped: int = 0
    state: str = "starting"
    last_ns: int = 0  # monotonic time of the newest item
    extra: dict = field(default_factory=dict)


class Source(ABC):
    """get() returns the next item, or None after `timeout` seconds with nothing new.

    `finished` turns true when a finite source (a file played once) has nothing more to give.
    """

    name = "source"

    def __init__(self) -> None:
        self.stats = SourceStats()
        self.finished = False

    def start(self) -> None:
        """Open the device or file; raises SourceError."""

    @abstractmethod
    def get(self, timeout: float) -> Item | None:
        """The next frame or text scan, or None when nothing came within timeout seconds."""

    def close(self) -> None:
        """Release the device; must return promptly and may be called twice."""

    def problem(self, now_ns: int) -> str | None:
        """Why this source is not healthy now, or None. A scanner waiting for the next traveller is healthy."""
        return None if self.stats.state in ("ok", "finished") else f"source {self.name} is {self.stats.state}"


class LatestSlot:
    """Holds only the newest frame. A frame replaced before anyone took it is dropped and counted:
    when decoding falls behind a live camera, stale frames are worthless and a queue only adds lag."""

    def __init__(self, stats: SourceStats):
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False
        self._stats = stats

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None:
                self._stats.dropped += 1
            self._frame = frame
            self._stats.last_ns = frame.t_ns
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, timeout: float) -> Frame | None:
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            if frame is not None:
                self._stats.delivered += 1
            return frame

    @property
    def closed(self) -> bool:
        return self._closed and self._frame is None
