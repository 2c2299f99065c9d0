"""Sources by name: `replay`, `opencv`, `picamera2`, `lines`, `hid`, `serial`. Hardware modules
(picamera2, evdev, pyserial) are imported only by the source that needs them."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from drivers.sources.base import Frame, Source, SourceError, TextScan
from drivers.sources.camera import FrameSource
from drivers.sources.frames import CaptureReader, replay_reader
from drivers.sources.lines import LinesSource

__all__ = ["Frame", "Source", "SourceError", "TextScan", "open_source"]


def open_source(settings: Any, *, max_line: int) -> Source:
    """Build (not start) the source a config's [source] table names.

    settings: the table as edge.settings.schema parsed it (ReplaySource, OpenCVSource, ...), validated there;
    typed Any because the settings are a layer above the drivers, which may not import them."""
    kind = settings.type
    if kind == "replay":
        return FrameSource(replay_reader(settings.path), name=f"replay:{Path(settings.path).name}",
                           fps=settings.fps, loop=settings.loop)
    if kind == "opencv":
        reader = CaptureReader(settings.device, width=settings.width, height=settings.height, fps=settings.fps)
        return FrameSource(reader, name=f"opencv:{settings.device}", live=reader.is_camera, stall_s=settings.stall_s)
    if kind == "picamera2":
        from drivers.sources.picamera import PiCameraReader

        camera = PiCameraReader(camera=settings.camera, width=settings.width, height=settings.height,
                                fps=settings.fps, autofocus=settings.autofocus, lens_position=settings.lens_position,
                                exposure_value=settings.exposure_value)
        return FrameSource(camera, name=f"picamera2:{settings.camera}", live=True, stall_s=settings.stall_s)
    if kind == "hid":
        from drivers.sources.hid import HidScannerSource

        return HidScannerSource(device=settings.device, name=settings.name, vendor=settings.vendor,
                                product=settings.product, terminator=settings.terminator, grab=settings.grab,
                                max_line=max_line)
    if kind == "serial":
        from drivers.sources.serialport import SerialScannerSource

        return SerialScannerSource(settings.port, baudrate=settings.baudrate, terminator=settings.terminator,
                                   max_line=max_line)
    if kind == "lines":
        return LinesSource(settings.path, max_line=max_line, follow_fifo=settings.follow_fifo,
                           name=f"lines:{settings.path}")
    raise SourceError(f"unknown source type {kind!r}")
