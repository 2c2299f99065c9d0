"""A stand-in for python-evdev (InputDevice, list_devices, ecodes, InputEvent), following its documented
API. Devices are created by the test; each has a real pipe behind its fd, so select() works as on a real
/dev/input/event*. It records grabs, and an unplugged device raises ENODEV as the kernel does."""
import errno
import os
from collections import namedtuple

from . import ecodes

DeviceInfo = namedtuple("DeviceInfo", "bustype vendor product version")
_devices: dict[str, "Device"] = {}


class InputEvent:
    def __init__(self, sec, usec, type, code, value):
        self.sec, self.usec, self.type, self.code, self.value = sec, usec, type, code, value


class Device:
    """The hardware side, driven by the test."""

    def __init__(self, path, name, vendor, product):
        self.path, self.name, self.info = path, name, DeviceInfo(3, vendor, product, 0x110)
        self.events: list[InputEvent] = []
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.grabbed_by = None
        self.plugged = True

    def press(self, code, value=1):
        self.events.append(InputEvent(0, 0, ecodes.EV_KEY, code, value))
        os.write(self.write_fd, b"x")

    def type_text(self, text, terminator=ecodes.KEY_ENTER):
        """Key events as a keyboard-mode scanner sends them: shift around capitals and symbols."""
        from drivers.sources.hid import keymap  # the same US layout, read backwards

        reverse = {}
        for code, (plain, shifted) in keymap(ecodes).items():
            reverse.setdefault(plain, (code, False))
            reverse.setdefault(shifted, (code, True))
        for ch in text:
            code, shift = reverse[ch]
            if shift:
                self.press(ecodes.KEY_LEFTSHIFT, 1)
            self.press(code, 1)
            self.press(code, 0)
            if shift:
                self.press(ecodes.KEY_LEFTSHIFT, 0)
            self.events.append(InputEvent(0, 0, ecodes.EV_SYN, 0, 0))
        self.press(terminator, 1)
        self.press(terminator, 0)

    def unplug(self):
        self.plugged = False
        del _devices[self.path]
        os.write(self.write_fd, b"x")  # wakes the reader, which then finds the device gone


def add_device(path, name="Barcode Scanner", vendor=0x05E0, product=0x1200):
    device = Device(path, name, vendor, product)
    _devices[path] = device
    return device


def reset():
    _devices.clear()


def list_devices(input_device_dir="/dev/input"):
    return list(_devices)


class InputDevice:
    def __init__(self, dev):
        if dev not in _devices:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", dev)
        self._device = _devices[dev]
        self.path, self.name, self.info = dev, self._device.name, self._device.info
        self.fd = self._device.read_fd

    def grab(self):
        if self._device.grabbed_by not in (None, self):
            raise OSError(errno.EBUSY, "Device or resource busy")
        self._device.grabbed_by = self

    def ungrab(self):
        if not self._device.plugged:
            raise OSError(errno.ENODEV, "No such device")
        self._device.grabbed_by = None

    def read(self):
        if not self._device.plugged:
            raise OSError(errno.ENODEV, "No such device")
        try:
            os.read(self.fd, 4096)
        except BlockingIOError:
            pass
        if not self._device.events:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        events, self._device.events = self._device.events, []
        return iter(events)

    def close(self):
        pass
