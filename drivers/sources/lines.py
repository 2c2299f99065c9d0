"""Text codes one per line, as a scanner in keyboard or serial mode delivers them: a file, a FIFO or stdin."""
from __future__ import annotations

import logging
import os
import queue
import re
import select
import stat
import sys
import threading
import time
from abc import abstractmethod
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from drivers.sources.base import Source, SourceError, TextScan
from edge.common.backoff import Backoff
from edge.common.clock import mono_ns
from edge.common.textsafe import for_log

log = logging.getLogger("checkpoint.source")

CHUNK = 65536
Device = TypeVar("Device")


class LineSplitter:
    """Splits a byte stream on CR or LF, never holding more than max_line bytes of one line.

    An over-long line keeps its first max_line bytes (so it is seen, and judged too long) and the rest
    up to the next terminator is discarded: a scanner gone wild or a hostile writer cannot fill memory.
    Blank lines (the LF of a CR LF pair, a stray Enter) are not scans.
    """

    def __init__(self, max_line: int, terminators: bytes = b"\r\n"):
        self.max_line = max_line
        self._terminator = re.compile(b"[" + re.escape(terminators) + b"]")
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        start = 0
        for end in (match.start() for match in self._terminator.finditer(data)):
            self._take(data[start:end])
            lines.append(bytes(self._buf))
            self._buf.clear()
            self._discarding = False
            start = end + 1
        self._take(data[start:])
        return [line for line in lines if line.strip()]

    def flush(self) -> list[bytes]:
        line, self._buf = bytes(self._buf), bytearray()
        return [line] if line.strip() else []

    def _take(self, piece: bytes) -> None:
        if self._discarding:
            return
        room = self.max_line - len(self._buf)
        self._buf += piece[:room]
        if len(piece) > room:
            self._discarding = True


class TextSource(Source):
    """A source of text scans read by a thread of its own: whole lines, queued, never dropped (each one
    is a traveller). A subclass's _run() reads; emit() hands lines over; finish() ends a finite source."""

    def __init__(self, *, max_line: int, name: str, backoff: Backoff | None = None):
        super().__init__()
        self.max_line, self.name = max_line, name
        # between attempts to find a device that went away
        self.backoff = backoff if backoff is not None else Backoff(initial=0.5, maximum=10.0)
        self._queue: queue.Queue[TextScan | None] = queue.Queue(maxsize=10_000)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"source-{self.name}", daemon=True)
        self._thread.start()

    @abstractmethod
    def _run(self) -> None:
        """Read until stopped, handing whole lines to emit()."""

    def reconnect(self, connect: Callable[[], Device]) -> Device | None:
        """For a device that went away: wait the backoff's next wait (growing to its maximum), try
        connect() once; the device, or None (not there yet, or stopping)."""
        if self._stop.wait(self.backoff.next()):
            return None
        try:
            device = connect()
        except SourceError:
            return None
        log.info("%s connected", self.name)
        self.stats.state = "ok"
        self.backoff.reset()
        return device

    def emit(self, lines: list[bytes]) -> None:
        for line in lines:
            while not self._stop.is_set():
                try:
                    self._queue.put(TextScan(line, mono_ns()), timeout=0.2)
                    self.stats.last_ns = mono_ns()
                    break
                except queue.Full:
                    continue

    def finish(self) -> None:
        self._queue.put(None)

    def get(self, timeout: float) -> TextScan | None:
        if self.finished:
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is None:
            self.finished = True
            self.stats.state = "finished"
            return None
        self.stats.delivered += 1
        return item

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)


class LinesSource(Source):
    """Lines from a file, a FIFO or stdin, read in the pipeline's own thread when it asks for the next one.

    Nothing is taken from a FIFO or a pipe before the pipeline can take it: the kernel's pipe buffer is
    the queue, and a stream is read a byte at a time (as a shell's `read` does) so that no line beyond
    the one in hand leaves it. A kill then loses at most the line being handled; the lines behind it are
    still in the pipe for the next start. A regular file is read in chunks: it keeps its lines anyway.
    """

    def __init__(self, path: str, *, max_line: int, follow_fifo: bool = True, name: str = "lines"):
        super().__init__()
        self.path, self.follow_fifo, self.max_line, self.name = path, follow_fifo, max_line, name
        self._fd: int | None = None
        self._splitter = LineSplitter(max_line)
        self._lines: deque[bytes] = deque()  # split off a chunk of a regular file, not yet handed over
        self._read_size = 1
        self._ended = False

    def _open(self) -> int:
        try:
            if self.path == "-":
                return os.dup(sys.stdin.fileno())
            mode = os.stat(self.path).st_mode
            if stat.S_ISFIFO(mode) and self.follow_fifo:
                # Held open read-write, the FIFO never reports end-of-file when a writer goes away,
                # so a scanner bridge can come and go without the source ending.
                return os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
            return os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise SourceError(f"cannot open {self.path}: {exc.strerror or exc}") from None

    def start(self) -> None:
        self._fd = self._open()
        self._read_size = CHUNK if stat.S_ISREG(os.fstat(self._fd).st_mode) else 1
        self.stats.state = "ok"

    def get(self, timeout: float) -> TextScan | None:
        if self.finished or self._fd is None:
            return None
        deadline, first = time.monotonic() + timeout, True
        while not self._lines and not self._ended:
            # A writer streaming bytes without a line end must not hold the pipeline past its timeout:
            # the part read so far waits in the splitter for the next call.
            remaining = deadline - time.monotonic()
            if remaining <= 0 and not first:
                return None
            first = False
            # Readable first, so that a blocking stdin never holds the pipeline either.
            ready, _, _ = select.select([self._fd], [], [], max(0.0, remaining))
            if not ready:
                return None
            try:
                data = os.read(self._fd, self._read_size)
            except BlockingIOError:
                continue
            except OSError as exc:
                log.error("lines source %s: read failed: %s", for_log(self.path), exc)
                self.stats.state, self._ended = "error", True
                break
            if data:
                self._lines.extend(self._splitter.feed(data))
            else:
                self._lines.extend(self._splitter.flush())
                self._ended = True
        if not self._lines:
            self.finished = True
            if self.stats.state == "ok":
                self.stats.state = "finished"
            return None
        now = mono_ns()
        self.stats.delivered += 1
        self.stats.last_ns = now
        return TextScan(self._lines.popleft(), now)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
