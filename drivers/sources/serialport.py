"""A barcode scanner in serial mode (CDC-ACM /dev/ttyACM*, a USB-serial bridge, or a UART) via pyserial.

Survives unplugging: a read error closes the port, and it is reopened with backoff under the same path
(the udev rule's /dev/checkpoint-scanner-serial keeps that path stable).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from drivers.sources.base import SourceError
from drivers.sources.lines import LineSplitter, TextSource
from edge.common.backoff import Backoff

if TYPE_CHECKING:
    from serial import Serial

log = logging.getLogger("checkpoint.source")

TERMINATORS = {"cr": b"\r", "lf": b"\n", "crlf": b"\r\n", "tab": b"\t"}


class SerialScannerSource(TextSource):
    def __init__(self, port: str, *, baudrate: int = 9600, terminator: str = "crlf", max_line: int,
                 backoff: Backoff | None = None):
        super().__init__(max_line=max_line, name=f"serial:{port}", backoff=backoff)
        self.port, self.baudrate = port, baudrate
        self.terminators = TERMINATORS[terminator]
        self._serial: Serial | None = None

    def _open(self) -> Serial:
        try:
            import serial  # pyserial, imported by the driver that needs it
        except ImportError as exc:
            raise SourceError(f"pyserial is not installed ({exc})") from exc
        try:
            return serial.Serial(self.port, self.baudrate, timeout=0.2)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise SourceError(f"cannot open {self.port}: {exc}") from exc

    def start(self) -> None:
        try:
            self._serial = self._open()
            self.stats.state = "ok"
        except SourceError as exc:
            log.warning("serial scanner: %s; waiting for it", exc)
            self.stats.state = "missing"  # plugged in later: the thread keeps trying
        self._start_thread()

    def _run(self) -> None:
        import serial

        splitter = LineSplitter(self.max_line, self.terminators)
        while not self._stop.is_set():
            if self._serial is None:
                self._serial = self.reconnect(self._open)
                if self._serial is None:
                    continue
                splitter = LineSplitter(self.max_line, self.terminators)  # a half line died with the cable
            try:
                data = self._serial.read(max(1, self._serial.in_waiting or 1))
            except (serial.SerialException, OSError) as exc:
                log.warning("serial scanner %s lost: %s; reconnecting", self.port, exc)
                self.stats.state = "reopening"
                self._close_port()
                continue
            if data:
                self.emit(splitter.feed(data))

    def _close_port(self) -> None:
        if self._serial is not None:
            import serial

            try:
                self._serial.close()
            except (serial.SerialException, OSError) as exc:
                log.debug("closing %s: %s", self.port, exc)  # a vanished port: gone either way
            self._serial = None

    def close(self) -> None:
        super().close()
        self._close_port()
        self.stats.state = "closed"
