"""Frame sources: live cameras and replayed files, both feeding a newest-frame slot from a thread."""
from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

import numpy as np

from drivers.sources.base import Frame, LatestSlot, Source, SourceError
from edge.common.backoff import Backoff
from edge.common.clock import mono_ns

log = logging.getLogger("checkpoint.source")


class FrameReader(Protocol):
    """What FrameSource runs: frames.CaptureReader, frames.ImageFilesReader, picamera.PiCameraReader.
    open() and read() raise SourceError; read() gives None at the end of a file or when a camera gave nothing."""

    def open(self) -> None: ...

    def read(self) -> np.ndarray | None: ...

    def rewind(self) -> None: ...

    def close(self) -> None: ...

    @property
    def frame_interval_s(self) -> float | None:
        """A camera's own frame interval (what it was set to or reports), None for files."""


class FrameSource(Source):
    """Frames from a reader.

    live: a camera; a thread reads as fast as the camera delivers, and a camera that stops delivering is
          closed and reopened with backoff.
    fps > 0: a replay paced like a camera at that rate (frames are dropped when decoding falls behind).
    fps == 0: a replay pulled by the pipeline itself, every frame decoded, none dropped.
    """

    def __init__(self, reader: FrameReader, *, name: str, fps: float = 0.0,
                 loop: bool = False, live: bool = False, backoff: Backoff | None = None, stall_s: float = 5.0):
        super().__init__()
        self.reader, self.name, self.fps, self.loop, self.live = reader, name, fps, loop, live
        # between a lost camera's attempts to reopen it
        self.backoff = backoff if backoff is not None else Backoff(initial=0.5, maximum=30.0)
        self.stall_ns = int(stall_s * 1e9)
        self._started_ns = 0
        self._slot = LatestSlot(self.stats)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._index = 0

    def start(self) -> None:
        self._started_ns = mono_ns()
        try:
            self.reader.open()
        except SourceError:
            if not self.live:
                raise
            self.stats.state = "missing"  # a camera may be plugged in later: the thread keeps trying
        else:
            self.stats.state = "ok"
        if self.live or self.fps > 0:
            self._thread = threading.Thread(target=self._run, name=f"source-{self.name}", daemon=True)
            self._thread.start()

    def get(self, timeout: float) -> Frame | None:
        if self._thread is None:
            return self._pull()
        frame = self._slot.take(timeout)
        if frame is None and self._slot.closed:
            self.finished = True
        return frame

    def _next_image(self) -> np.ndarray | None:
        try:
            image = self.reader.read()
            if image is None and self.loop and not self.live:
                self.reader.rewind()
                image = self.reader.read()
        except SourceError as exc:  # a replayed video that turned unreadable (a frame over the pixel cap)
            log.warning("replay %s stopped: %s", self.name, exc)
            return None
        return image

    def _frame(self, image: np.ndarray) -> Frame:
        self._index += 1
        return Frame(image, mono_ns(), self._index)

    def _pull(self) -> Frame | None:
        image = self._next_image()
        if image is None:
            self.finished = True
            return None
        self.stats.delivered += 1
        frame = self._frame(image)
        self.stats.last_ns = frame.t_ns
        return frame

    @property
    def frame_interval_s(self) -> float | None:
        """A camera: its measured rate once a few frames came, until then the rate it was set to. A replay
        paced at fps: 1/fps. A replay pulled by the pipeline: None, frames come as fast as decoding goes."""
        if self.live:
            measured = self._slot.interval_s()
            return measured if measured is not None else self.reader.frame_interval_s
        return 1.0 / self.fps if self.fps > 0 else None

    def problem(self, now_ns: int) -> str | None:
        since_ns = now_ns - max(self.stats.last_ns, self._started_ns)
        if self.live and self.stats.state == "ok" and since_ns > self.stall_ns:
            return f"camera {self.name} delivered no frame for {(now_ns - self.stats.last_ns) / 1e9:.0f} s"
        return super().problem(now_ns)

    def _run(self) -> None:
        try:
            if self.live:
                self._run_live()
            else:
                self._run_paced()
        finally:
            self._slot.close()

    def _run_paced(self) -> None:
        period = 1.0 / self.fps
        due = time.monotonic()
        while not self._stop.is_set():
            image = self._next_image()
            if image is None:
                return
            self._slot.put(self._frame(image))
            # Deadlines on a fixed grid, like a camera's clock: reading a file late does not slow the rate.
            due = max(due + period, time.monotonic() - period)
            self._stop.wait(max(0.0, due - time.monotonic()))

    def _run_live(self) -> None:
        while not self._stop.is_set():
            try:
                image = self.reader.read() if self.stats.state == "ok" else None
            except SourceError as exc:
                log.warning("camera %s: %s", self.name, exc)
                image = None
            if image is not None:
                self.backoff.reset()
                self._slot.put(self._frame(image))
                continue
            if self.stats.state == "ok":
                log.warning("camera %s delivered no frame; reopening", self.name)
            self.stats.state = "reopening"
            self.reader.close()
            if self._stop.wait(self.backoff.next()):
                return
            try:
                self.reader.open()
            except SourceError as exc:
                self.stats.state = "missing"
                log.warning("camera %s: %s; retrying in %.1f s", self.name, exc, self.backoff.step())
            else:
                self.stats.state = "ok"
                log.info("camera %s reopened", self.name)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.reader.close()
        self.stats.state = "closed"
