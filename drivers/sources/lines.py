"""Text codes one per line, as a scanner in keyboard or serial mode delivers them: a file, a FIFO or stdin."""
from __future__ import annotations

import logging
import os
import queue
from abc import abstractmethod
import re
import select
import stat
import sys
import threading

from edge.clock import mono_ns

from .base import Source, SourceError, TextScan

log = logging.getLogger("checkpoint.source")

CHUNK = 65536


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
        lines = []
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

    def __init__(self, *, max_line: int, name: str, max_backoff_s: float = 10.0):
        super().__init__()
        self.max_line, self.name, self.max_backoff_s = max_line, name, max_backoff_s
        self._backoff = 0.5
        self._queue: queue.Queue[TextScan | None] = queue.Queue(maxsize=10_000)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"source-{self.name}", daemon=True)
        self._thread.start()

    @abstractmethod
    def _run(self) -> None:
        """Read until stopped, handing whole lines to emit()."""

    def reconnect(self, connect):
        """For a device that went away: wait the current backoff (doubling up to max_backoff_s), try
        connect() once; the device, or None (not there yet, or stopping)."""
        if self._stop.wait(self._backoff):
            return None
        self._backoff = min(self._backoff * 2, self.max_backoff_s)
        try:
            device = connect()
        except SourceError:
            return None
        log.info("%s connected", self.name)
        self.stats.state, self._backoff = "ok", 0.5
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


class LinesSource(TextSource):
    def __init__(self, path: str, *, max_line: int, follow_fifo: bool = True, name: str = "lines"):
        super().__init__(max_line=max_line, name=name)
        self.path, self.follow_fifo = path, follow_fifo
        self._fd: int | None = None

    def _open(self) -> int:
        if self.path == "-":
            return os.dup(sys.stdin.fileno())
        try:
            mode = os.stat(self.path).st_mode
            if stat.S_ISFIFO(mode) and self.follow_fifo:
                # Held open read-write, the FIFO never reports end-of-file when a writer goes away,
                # so a scanner bridge can come and go without the source ending.
                return os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
            return os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise SourceError(f"cannot open {self.path}: {exc.strerror}") from None

    def start(self) -> None:
        self._fd = self._open()
        self.stats.state = "ok"
        self._start_thread()

    def _run(self) -> None:
        splitter = LineSplitter(self.max_line)
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([self._fd], [], [], 0.2)
                if not ready:
                    continue
                try:
                    data = os.read(self._fd, CHUNK)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    log.error("lines source %s: read failed: %s", self.path, exc)
                    self.stats.state = "error"
                    break
                if not data:
                    self.emit(splitter.flush())
                    break
                self.emit(splitter.feed(data))
        finally:
            self.finish()

    def close(self) -> None:
        super().close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
