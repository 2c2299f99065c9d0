"""The devices: the source (camera or scanner), opened through the project's drivers, and the output pins."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from edge.app.checks.base import BUSY_HINT, CAMERA_FIX, Check, Checker, Collect, nodes_check, ok
from edge.common.textsafe import for_log
from edge.settings.schema import HidSource, OpenCVSource, PiCameraSource, SerialSource

if TYPE_CHECKING:
    from drivers.sources.camera import FrameReader


class DeviceChecks(Checker):
    def check_source(self) -> list[Check]:
        source = self.settings.source
        if isinstance(source, PiCameraSource):
            return self._picamera(source)
        if isinstance(source, OpenCVSource):
            return self._opencv(source)
        if isinstance(source, HidSource):
            return self._hid(source)
        if isinstance(source, SerialSource):
            return self._serial(source)
        return [ok("source", f"{source.type}: no device to check")]

    def _picamera(self, source: PiCameraSource) -> list[Check]:
        checks = [
            nodes_check("camera nodes", self._glob("media*", "video*", "v4l-subdev*"), write=True, group="video",
                         missing=f"no camera: no {self.dev}/media* device", missing_fix=CAMERA_FIX),
            nodes_check("dma_heap", self._glob("dma_heap/*"), write=True, group="video",
                         missing=f"no {self.dev}/dma_heap/*: libcamera allocates its frame buffers there",
                         missing_fix="run Raspberry Pi OS bookworm or later with its kernel (sudo apt full-upgrade)"),
        ]
        if any(c.level == "FAIL" for c in checks):
            return checks  # libcamera would only fail the same way, less clearly
        from drivers.sources.picamera import PiCameraReader

        reader = PiCameraReader(camera=source.camera, width=source.width, height=source.height, fps=source.fps,
                                autofocus=source.autofocus, lens_position=source.lens_position,
                                exposure_value=source.exposure_value)
        return checks + [self._frame(reader, f"Pi camera {source.camera}",
                                     "sudo apt install python3-picamera2 python3-libcamera; the venv needs "
                                     "--system-site-packages (scripts/install does both); " + BUSY_HINT)]

    def _opencv(self, source: OpenCVSource) -> list[Check]:
        from drivers.sources.frames import CaptureReader

        checks = []
        device = source.device
        if isinstance(device, int) or str(device).startswith("/dev/"):
            path = Path(f"/dev/video{device}" if isinstance(device, int) else device)
            node = self.dev / path.relative_to("/dev")
            checks.append(nodes_check("camera node", [node] if node.exists() else [], write=True, group="video",
                                       missing=f"no {node}", missing_fix="plug in the USB camera; `ls /dev/video*` "
                                       "lists the cameras; set [source] device"))
            if checks[-1].level == "FAIL":
                return checks
        reader = CaptureReader(device, width=source.width, height=source.height, fps=source.fps)
        return checks + [self._frame(reader, f"camera {device}", BUSY_HINT)]

    def _frame(self, reader: FrameReader, label: str, fix: str) -> Check:
        """Open through the driver and wait for one frame."""
        from drivers.sources.base import SourceError

        try:
            reader.open()
            deadline = time.monotonic() + self.timeout
            image = None
            while image is None and time.monotonic() < deadline:
                image = reader.read()
        except SourceError as exc:
            return Check("camera", "FAIL", for_log(exc), fix)
        finally:
            reader.close()
        if image is None:
            return Check("camera", "FAIL", f"{label} opened but delivered no frame within {self.timeout:g} s", fix)
        return ok("camera", f"{label} delivered a {image.shape[1]}x{image.shape[0]} frame")

    def _text_source(self, name: str, source: HidSource | SerialSource, path: str | None, write: bool, group: str,
                     fix: str) -> list[Check]:
        from drivers.sources import SourceError, open_source

        checks = []
        if path is not None:
            node = Path(path)
            checks.append(nodes_check(f"{name} node", [node] if node.exists() else [], write=write, group=group,
                                       missing=f"no {node}", missing_fix=fix))
            if checks[-1].level == "FAIL":
                return checks
        collect = Collect()
        log = logging.getLogger("checkpoint.source")
        log.addHandler(collect)
        try:
            opened = open_source(source, max_line=self.settings.decoder.max_payload_bytes + 1)
            opened.start()
            state = opened.stats.state
            opened.close()
        except SourceError as exc:
            return checks + [Check(name, "FAIL", for_log(exc), fix)]
        finally:
            log.removeHandler(collect)
        if state != "ok":
            why = collect.messages[0] if collect.messages else f"state {state}"
            return checks + [Check(name, "FAIL", for_log(why), fix + "; " + BUSY_HINT)]
        return checks + [ok(name, f"{opened.name} opened")]

    def _hid(self, source: HidSource) -> list[Check]:
        fix = ("plug in the scanner in keyboard (HID) mode; the udev rule names known scanners "
               "/dev/input/checkpoint-scanner; `ls -l /dev/input/by-id/` shows the others")
        checks = []
        if source.device is None:
            checks.append(nodes_check("input nodes", self._glob("input/event*"), write=False, group="input",
                                       missing=f"no {self.dev}/input/event*", missing_fix=fix))
        return checks + self._text_source("scanner", source, source.device, False, "input",
                                          fix + "; python3-evdev must be installed (scripts/install does it)")

    def _serial(self, source: SerialSource) -> list[Check]:
        fix = ("plug in the scanner in serial (USB CDC) mode; the udev rule names known scanners "
               "/dev/checkpoint-scanner-serial; `ls /dev/ttyACM* /dev/ttyUSB*` shows the others")
        return self._text_source("scanner", source, source.port, True, "dialout", fix)

    def check_outputs(self) -> list[Check]:
        gpio = {name: o for name, o in self.settings.outputs.items() if o.driver == "gpio"}
        if not gpio:
            return [ok("outputs", "no GPIO outputs configured")]
        checks = [nodes_check("gpio nodes", self._glob("gpiochip*", "gpiomem*"), write=True, group="gpio",
                               missing=f"no {self.dev}/gpiochip* or {self.dev}/gpiomem: no GPIO on this machine",
                               missing_fix="run on a Raspberry Pi, or use driver = \"console\" in [outputs]")]
        if checks[0].level == "FAIL":
            return checks
        from drivers.outputs import OutputError, open_output

        for name, settings in gpio.items():
            polarity = "active-low" if settings.active_low else "active-high"
            try:
                output = open_output(name, settings)
                output.close()  # left driven off: a relay board never sees a floating pin
            except OutputError as exc:
                checks.append(Check(f"pin {name}", "FAIL", for_log(exc),
                                    "on a Pi 5: sudo apt install python3-rpi-lgpio; earlier boards: python3-rpi.gpio "
                                    "(scripts/install picks it); " + BUSY_HINT))
                continue
            checks.append(ok(f"pin {name}", f"BCM {settings.pin} claimed and driven off ({polarity})"))
        return checks
