"""The one interface every source offers the pipeline, and the newest-frame slot cameras share."""
from __future__ import annotations

import statistics
import threading
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass

import numpy as np

from edge.common.errors import CheckpointError


class SourceError(CheckpointError):
    """A source that cannot be opened or read; library exceptions (OpenCV, pyserial, evdev, picamera2, the
    OS's) are translated into this where they are caught, so the pipeline never sees them."""


@dataclass(slots=True)
class Frame:
    image: np.ndarray
    t_ns: int  # monotonic arrival time
    index: int


@dataclass(slots=True)
class TextScan:
    data: bytes
    t_ns: int


Item = Frame | TextScan


@dataclass
class SourceStats:
    delivered: int = 0
    dropped: int = 0
    state: str = "starting"
    last_ns: int = 0  # monotonic time of the newest item


class Source(ABC):
    """get() returns the next item, or None after `timeout` seconds with nothing new.

    `finished` turns true when a finite source (a file played once) has nothing more to give.
    """

    name = "source"

    def __init__(self) -> None:
        self.stats = SourceStats()
        self.finished = False

    def start(self) -> None:  # noqa: B027 -- a hook: a source with nothing to open keeps this one
        """Open the device or file; raises SourceError."""

    @abstractmethod
    def get(self, timeout: float) -> Item | None:
        """The next frame or text scan, or None when nothing came within timeout seconds."""

    def close(self) -> None:  # noqa: B027 -- a hook: a source holding nothing keeps this one
        """Release the device; must return promptly and may be called twice."""

    def problem(self, now_ns: int) -> str | None:
        """Why this source is not healthy now, or None. A scanner waiting for the next traveller is healthy."""
        return None if self.stats.state in ("ok", "finished") else f"source {self.name} is {self.stats.state}"

    @property
    def frame_interval_s(self) -> float | None:
        """Seconds between frames as they come, for the decoder's budget; None when items come only as fast
        as they are taken (a scanner, a replay pulled by the pipeline)."""
        return None


class LatestSlot:
    """Holds only the newest frame. A frame replaced before anyone took it is dropped and counted:
    when decoding falls behind a live camera, stale frames are worthless and a queue only adds lag."""

    ARRIVALS = 16  # the newest arrival times kept to measure the rate: half a second at 30 fps

    def __init__(self, stats: SourceStats):
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False
        self._stats = stats
        self._arrivals: deque[int] = deque(maxlen=self.ARRIVALS)

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None:
                self._stats.dropped += 1
            self._frame = frame
            self._stats.last_ns = frame.t_ns
            self._arrivals.append(frame.t_ns)
            self._cond.notify()

    def interval_s(self, min_gaps: int = 5) -> float | None:
        """The median time between the newest arrivals, or None with fewer than min_gaps gaps: a camera's
        real rate, which drops in dim light when exposure lengthens. The median ignores a reopen's gap."""
        with self._cond:
            times = list(self._arrivals)
        gaps = [b - a for a, b in zip(times, times[1:]) if b > a]
        return statistics.median(gaps) / 1e9 if len(gaps) >= min_gaps else None

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
