"""Hardware drivers: the Pi camera and HID scanner against fakes of picamera2 and evdev that follow
those libraries' APIs; the serial scanner for real through a pty; the OpenCV camera's reopen path."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivers.sources import SourceError, open_source
from drivers.sources.camera import FrameSource
from drivers.sources.frames import CaptureReader
from edge.common.backoff import Backoff
from edge.decode.reader import make_decoder
from edge.settings.schema import parse_settings

from .conftest import qr_image
from .waiting import patience, wait_until


def source_for(table: dict, max_line: int = 2049):
    return open_source(parse_settings({"source": table}).source, max_line=max_line)


def take(source, count: int, timeout: float = 5.0) -> list:
    items, deadline = [], time.monotonic() + patience(timeout)
    while len(items) < count and time.monotonic() < deadline:
        item = source.get(0.1)
        if item is not None:
            items.append(item)
    return items


def wait_state(source, state: str, timeout: float = 5.0) -> None:
    wait_until(lambda: source.stats.state == state, timeout, what=f"camera state {state}", interval=0.02)


def quick(maximum: float) -> Backoff:
    """Reconnect waits short enough for a test that unplugs a device."""
    return Backoff(initial=0.05, maximum=maximum)


# ---- Pi camera ------------------------------------------------------------------------------------------
def test_pi_camera_configuration_and_y_plane_without_copy(fake_module):
    picamera2 = fake_module("picamera2")
    picamera2.scene = lambda: qr_image("PI-CAM", size=(720, 1280), at=(200, 500))
    source = source_for({"type": "picamera2", "width": 1280, "height": 720, "fps": 30.0})
    source.start()
    frame = take(source, 1)[0]
    source.close()
    create = next(call for call in picamera2.log if call[0] == "create_video_configuration")
    assert create[1] == {"size": (1280, 720), "format": "YUV420"}
    assert create[3] == {"FrameRate": 30.0, "ExposureValue": -1.0, "AfMode": 2}  # continuous autofocus
    assert frame.image.shape == (720, 1280) and frame.image.base is not None  # a view of the YUV buffer
    assert [c.text for c in make_decoder("zxing").decode(frame.image)] == ["PI-CAM"]
    assert ("stop",) in picamera2.log and ("close",) in picamera2.log


def test_pi_camera_fixed_focus(fake_module):
    picamera2 = fake_module("picamera2")
    source = source_for({"type": "picamera2", "autofocus": "manual", "lens_position": 4.0, "exposure_value": -2.0})
    source.start()
    take(source, 1)
    source.close()
    assert picamera2.opened[0].controls == {"FrameRate": 30.0, "ExposureValue": -2.0, "AfMode": 0,
                                            "LensPosition": 4.0}


def test_pi_camera_that_dies_is_reopened(fake_module):
    picamera2 = fake_module("picamera2")
    picamera2.fail_after = 3
    source = FrameSource(source_for({"type": "picamera2"}).reader, name="pi", live=True, backoff=quick(0.2))
    source.start()
    frames = take(source, 8)
    source.close()
    assert len(frames) == 8  # three from each camera session, and on
    assert len(picamera2.opened) >= 3 and all(cam.closed for cam in picamera2.opened)


def test_no_pi_camera_attached(fake_module):
    picamera2 = fake_module("picamera2")
    picamera2.cameras = 0
    source = FrameSource(source_for({"type": "picamera2"}).reader, name="pi", live=True, backoff=quick(0.1))
    source.start()
    assert source.get(0.3) is None and source.stats.state in ("missing", "reopening")
    assert source.problem(time.monotonic_ns()) is not None
    picamera2.cameras = 1  # plugged in
    assert take(source, 1, timeout=5)
    source.close()


# ---- OpenCV camera -----------------------------------------------------------------------------------------
def test_opencv_camera_that_stops_delivering_is_reopened(tmp_path):
    video = tmp_path / "cam.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240), False)
    for _ in range(5):
        writer.write(np.full((240, 320), 90, np.uint8))
    writer.release()
    # A camera that delivers five frames, then nothing (read() fails): the live path reopens it.
    source = FrameSource(CaptureReader(str(video)), name="cam", live=True, backoff=quick(0.1))
    source.start()
    frames = take(source, 12)
    source.close()
    assert len(frames) == 12 and source.stats.state == "closed"


def test_stalled_camera_is_reported(tmp_path):
    source = FrameSource(CaptureReader("/dev/video-none"), name="cam", live=True, stall_s=0.2)
    source._started_ns = time.monotonic_ns() - 10**9
    source.stats.state = "ok"  # as if open, but no frame ever came
    assert "delivered no frame" in source.problem(time.monotonic_ns())


# ---- HID scanner ---------------------------------------------------------------------------------------------
def test_hid_scanner_types_codes_with_shift_and_is_grabbed(fake_module):
    evdev = fake_module("evdev")
    device = evdev.add_device("/dev/input/by-id/usb-Zebra-event-kbd", vendor=0x05E0, product=0x1200)
    evdev.add_device("/dev/input/event0", name="AT Translated Set 2 keyboard", vendor=0x0001, product=0x0001)
    source = source_for({"type": "hid", "vendor": 0x05E0, "product": 0x1200})
    source.start()
    assert device.grabbed_by is not None  # its keys reach no console
    device.type_text("VN-HC-2026-000731")
    device.type_text("https://tokhaiyte.vn/c/0792?h=AbC&x={1}")
    device.press(evdev.ecodes.KEY_ENTER)  # a stray Enter is no scan
    scans = take(source, 2)
    source.close()
    assert [s.data for s in scans] == [b"VN-HC-2026-000731", b"https://tokhaiyte.vn/c/0792?h=AbC&x={1}"]
    assert source.get(0.1) is None


def test_hid_scanner_tab_terminator_and_by_path(fake_module):
    evdev = fake_module("evdev")
    device = evdev.add_device("/dev/input/checkpoint-scanner")
    source = source_for({"type": "hid", "device": "/dev/input/checkpoint-scanner", "terminator": "tab"})
    source.start()
    device.type_text("ABC123", terminator=evdev.ecodes.KEY_TAB)
    device.type_text("ignored-until-tab", terminator=evdev.ecodes.KEY_ENTER)
    assert [s.data for s in take(source, 1)] == [b"ABC123"]
    source.close()


def test_hid_scanner_survives_unplug_and_replug(fake_module):
    evdev = fake_module("evdev")
    path = "/dev/input/checkpoint-scanner"
    device = evdev.add_device(path)
    source = source_for({"type": "hid", "device": path})
    source.backoff = quick(0.2)
    source.start()
    device.type_text("before")
    assert [s.data for s in take(source, 1)] == [b"before"]
    device.unplug()
    wait_state(source, "reopening")
    device = evdev.add_device(path)
    wait_state(source, "ok")
    device.type_text("after")
    assert [s.data for s in take(source, 1)] == [b"after"]
    source.close()


def test_hid_scanner_grabbed_elsewhere_or_absent(fake_module):
    evdev = fake_module("evdev")
    device = evdev.add_device("/dev/input/event5", name="Honeywell Scanner", vendor=0x0C2E, product=0x0B61)
    other = evdev.InputDevice("/dev/input/event5")
    other.grab()
    source = source_for({"type": "hid", "name": "honeywell"})
    source.backoff = quick(0.1)
    source.start()
    assert source.stats.state == "missing"  # grabbed by another program: waits, does not steal keys
    other.ungrab()
    wait_state(source, "ok")
    device.type_text("x1")
    assert [s.data for s in take(source, 1)] == [b"x1"]
    source.close()
    with pytest.raises(Exception, match="device, name or vendor"):
        source_for({"type": "hid"})


# ---- serial scanner, through a real pty ----------------------------------------------------------------
class Pty:
    """A pseudo-terminal whose slave stands in for /dev/ttyACM0; a stable symlink names it."""

    def __init__(self, link: Path):
        self.master, slave = os.openpty()
        self.slave_name = os.ttyname(slave)
        os.close(slave)
        link.unlink(missing_ok=True)
        link.symlink_to(self.slave_name)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def unplug(self) -> None:
        os.close(self.master)


def test_serial_scanner_lines_through_a_pty(tmp_path):
    link = tmp_path / "ttyACM0"
    pty = Pty(link)
    source = source_for({"type": "serial", "port": str(link), "baudrate": 115200, "terminator": "crlf"},
                        max_line=64)
    source.start()
    pty.write("VN-1\r\nPhạm Thu Hương\r\n".encode() + b"\xff\xfebin\r" + b"L" * 500 + b"\r\npartial")
    scans = take(source, 4)
    assert [s.data for s in scans] == [b"VN-1", "Phạm Thu Hương".encode(), b"\xff\xfebin", b"L" * 64]
    source.close()
    pty.unplug()


def test_serial_scanner_reconnects_after_unplug(tmp_path):
    link = tmp_path / "scanner"
    pty = Pty(link)
    source = source_for({"type": "serial", "port": str(link), "terminator": "cr"})
    source.backoff = quick(0.2)
    source.start()
    pty.write(b"one\r")
    assert [s.data for s in take(source, 1)] == [b"one"]
    pty.unplug()
    wait_state(source, "reopening")
    pty = Pty(link)  # plugged in again: the same stable name, a new device behind it
    wait_state(source, "ok")
    pty.write(b"two\r")
    assert [s.data for s in take(source, 1)] == [b"two"]
    source.close()
    pty.unplug()


def test_serial_port_missing_at_start_waits(tmp_path):
    link = tmp_path / "later"
    source = source_for({"type": "serial", "port": str(link), "terminator": "lf"})
    source.backoff = quick(0.2)
    source.start()
    assert source.stats.state == "missing"
    pty = Pty(link)
    wait_state(source, "ok")
    pty.write(b"hello\n")
    assert [s.data for s in take(source, 1)] == [b"hello"]
    source.close()
    pty.unplug()


def test_missing_hardware_libraries_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    monkeypatch.setitem(sys.modules, "evdev", None)
    with pytest.raises(SourceError, match=r"\[pi\] extra"):
        source_for({"type": "picamera2"}).reader.open()
    with pytest.raises(SourceError, match=r"\[pi\] extra"):
        source_for({"type": "hid", "name": "x"}).start()
