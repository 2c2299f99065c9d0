"""A barcode scanner in keyboard (HID) mode, read through evdev.

The device is grabbed exclusively, so its keystrokes never reach a console or a login prompt. Key
presses become text (shift handled, US layout, the only one scanners agree on); the terminator key
(Enter or Tab) ends a scan. Unplugged, the device is looked for again with backoff, by the same stable
path (/dev/input/by-id/…, or the udev rule's /dev/input/checkpoint-scanner) or name/vendor/product.
Keyboard mode carries only what a US keyboard can type: a scanner that must read Vietnamese text should
use serial mode.
"""
from __future__ import annotations

import errno
import logging
import select
from collections.abc import Iterable
from types import ModuleType
from typing import Protocol

from drivers.sources.base import SourceError
from drivers.sources.lines import TextSource
from edge.common.backoff import Backoff

log = logging.getLogger("checkpoint.source")

_ROWS = [("1234567890", "!@#$%^&*()", ["KEY_1", "KEY_2", "KEY_3", "KEY_4", "KEY_5", "KEY_6", "KEY_7", "KEY_8",
                                          "KEY_9", "KEY_0"]),
         ("-=[];'`\\,./", "_+{}:\"~|<>?", ["KEY_MINUS", "KEY_EQUAL", "KEY_LEFTBRACE", "KEY_RIGHTBRACE",
                                             "KEY_SEMICOLON", "KEY_APOSTROPHE", "KEY_GRAVE", "KEY_BACKSLASH",
                                             "KEY_COMMA", "KEY_DOT", "KEY_SLASH"])]
_KEYPAD = {"KEY_KP0": "0", "KEY_KP1": "1", "KEY_KP2": "2", "KEY_KP3": "3", "KEY_KP4": "4", "KEY_KP5": "5",
           "KEY_KP6": "6", "KEY_KP7": "7", "KEY_KP8": "8", "KEY_KP9": "9", "KEY_KPMINUS": "-", "KEY_KPPLUS": "+",
           "KEY_KPDOT": ".", "KEY_KPASTERISK": "*", "KEY_KPSLASH": "/"}
SHIFTS = ("KEY_LEFTSHIFT", "KEY_RIGHTSHIFT")
TERMINATOR_KEYS = {"enter": ("KEY_ENTER", "KEY_KPENTER"), "tab": ("KEY_TAB",)}


# What this driver uses of evdev's classes (evdev ships no types).
class KeyEvent(Protocol):
    type: int
    code: int
    value: int  # 1 down, 0 up, 2 auto-repeat


class DeviceInfo(Protocol):
    vendor: int
    product: int


class InputDevice(Protocol):
    name: str
    info: DeviceInfo
    fd: int

    def read(self) -> Iterable[KeyEvent]: ...

    def grab(self) -> None: ...

    def ungrab(self) -> None: ...

    def close(self) -> None: ...


def keymap(ecodes: ModuleType) -> dict[int, tuple[str, str]]:
    """Key code -> (plain, shifted) character, from the evdev module's own constants."""
    table: dict[str, tuple[str, str]] = {f"KEY_{c.upper()}": (c, c.upper()) for c in "abcdefghijklmnopqrstuvwxyz"}
    for plain, shifted, names in _ROWS:
        table.update({name: (p, s) for name, p, s in zip(names, plain, shifted)})
    table.update({name: (c, c) for name, c in _KEYPAD.items()})
    table["KEY_SPACE"] = (" ", " ")
    return {getattr(ecodes, name): chars for name, chars in table.items() if hasattr(ecodes, name)}


class KeyDecoder:
    """Key events in, finished scans out. Key-down events only; auto-repeat and key-up are not typing."""

    def __init__(self, ecodes: ModuleType, terminator: str = "enter", max_line: int = 4096):
        self.ev_key = ecodes.EV_KEY
        self.keys = keymap(ecodes)
        self.shifts = {getattr(ecodes, name) for name in SHIFTS}
        self.ends = {getattr(ecodes, name) for name in TERMINATOR_KEYS[terminator] if hasattr(ecodes, name)}
        self.max_line = max_line
        self.shift = False
        self.text: list[str] = []

    def feed(self, event: KeyEvent) -> bytes | None:
        if event.type != self.ev_key:
            return None
        if event.code in self.shifts:
            self.shift = event.value != 0
            return None
        if event.value != 1:
            return None
        if event.code in self.ends:
            line, self.text = "".join(self.text), []
            return line.encode() if line.strip() else None
        chars = self.keys.get(event.code)
        if chars is not None and len(self.text) < self.max_line:
            self.text.append(chars[1] if self.shift else chars[0])
        return None


class HidScannerSource(TextSource):
    def __init__(self, *, device: str | None = None, name: str | None = None, vendor: int | None = None,
                 product: int | None = None, terminator: str = "enter", grab: bool = True, max_line: int,
                 backoff: Backoff | None = None):
        super().__init__(max_line=max_line, backoff=backoff,
                         name=f"hid:{device or name or f'{vendor or 0:04x}:{product or 0:04x}'}")
        self.match = (device, name, vendor, product)
        self.terminator, self.grab = terminator, grab
        self._evdev: ModuleType | None = None
        self._device: InputDevice | None = None

    def _module(self) -> ModuleType:
        if self._evdev is None:
            try:
                import evdev  # imported by the driver that needs it: Linux input devices
            except ImportError as exc:
                raise SourceError(f"evdev is not installed ({exc}); install the [pi] extra") from exc
            self._evdev = evdev
        return self._evdev

    def _find(self) -> InputDevice:
        evdev = self._module()
        path, name, vendor, product = self.match
        try:
            candidates = [path] if path else evdev.list_devices()
        except OSError as exc:  # /dev/input unreadable
            raise SourceError(f"cannot list input devices: {exc.strerror or exc}") from exc
        for candidate in candidates:
            try:
                device: InputDevice = evdev.InputDevice(candidate)
            except OSError:
                continue
            if path or ((name is None or name.lower() in device.name.lower())
                        and (vendor is None or device.info.vendor == vendor)
                        and (product is None or device.info.product == product)):
                if self.grab:
                    try:
                        device.grab()  # its keystrokes now reach us alone, not a console
                    except OSError as exc:
                        device.close()
                        raise SourceError(f"{candidate} is grabbed by another program ({exc.strerror})") from None
                return device
            device.close()
        raise SourceError(f"no input device matches {self.name}")

    def start(self) -> None:
        self._module()
        try:
            self._device = self._find()
            self.stats.state = "ok"
        except SourceError as exc:
            log.warning("scanner: %s; waiting for it", exc)
            self.stats.state = "missing"
        self._start_thread()

    def _run(self) -> None:
        ecodes = self._module().ecodes
        decoder = KeyDecoder(ecodes, self.terminator, self.max_line)
        while not self._stop.is_set():
            if self._device is None:
                self._device = self.reconnect(self._find)
                if self._device is None:
                    continue
                decoder = KeyDecoder(ecodes, self.terminator, self.max_line)  # no half-typed scan
            try:
                ready, _, _ = select.select([self._device.fd], [], [], 0.2)
                if not ready:
                    continue
                for event in self._device.read():
                    line = decoder.feed(event)
                    if line is not None:
                        self.emit([line])
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.ENODEV, errno.EIO, errno.EBADF):
                    log.error("scanner %s: %s", self.name, exc)
                log.warning("scanner %s unplugged; looking for it again", self.name)
                self.stats.state = "reopening"
                self._release()

    def _release(self) -> None:
        if self._device is not None:
            try:
                if self.grab:
                    self._device.ungrab()
            except OSError:
                pass  # unplugged: nothing left to release
            self._device.close()
            self._device = None

    def close(self) -> None:
        super().close()
        self._release()
        self.stats.state = "closed"
