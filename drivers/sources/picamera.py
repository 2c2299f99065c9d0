"""The Raspberry Pi camera through picamera2 (libcamera).

A video configuration with a YUV420 main stream: its first `height` rows are the Y (luminance) plane,
which is exactly the grayscale image the decoder wants, handed over as a view without a copy or a colour
conversion. Autofocus (Camera Module 3) continuous or at a fixed lens position; exposure biased down,
because a phone screen is the brightest thing in the frame and a blown-out screen has no code left.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from drivers.sources.base import SourceError

AF_MANUAL, AF_CONTINUOUS = 0, 2  # libcamera's AfModeEnum values


class Camera(Protocol):
    """What this driver uses of an open picamera2.Picamera2 (picamera2 ships no types)."""

    def capture_array(self, name: str) -> np.ndarray: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


class PiCameraReader:
    is_camera = True

    def __init__(self, *, camera: int = 0, width: int = 1280, height: int = 720, fps: float = 30.0,
                 autofocus: str = "continuous", lens_position: float | None = None,
                 exposure_value: float = -1.0):
        self.camera, self.size, self.fps = camera, (width, height), fps
        self.autofocus, self.lens_position, self.exposure_value = autofocus, lens_position, exposure_value
        self._cam: Camera | None = None

    def controls(self) -> dict[str, float]:
        controls: dict[str, float] = {"FrameRate": self.fps, "ExposureValue": self.exposure_value}
        if self.autofocus == "continuous":
            controls["AfMode"] = AF_CONTINUOUS
        elif self.lens_position is not None:
            # Dioptres: 0 is infinity; a pass held 25 cm away wants about 4.
            controls.update(AfMode=AF_MANUAL, LensPosition=self.lens_position)
        return controls

    @property
    def frame_interval_s(self) -> float:
        """libcamera holds the FrameRate control: frames come at this interval unless exposure needs longer."""
        return 1.0 / self.fps

    def open(self) -> None:
        self.close()
        try:
            from picamera2 import (
                Picamera2,  # imported by the driver that needs it: Raspberry Pi only
            )
        except ImportError as exc:
            raise SourceError(f"picamera2 is not available ({exc}); install the [pi] extra on a Raspberry Pi") \
                from exc
        try:
            cam = Picamera2(self.camera)
            config = cam.create_video_configuration(main={"size": self.size, "format": "YUV420"},
                                                    buffer_count=4, controls=self.controls())
            cam.configure(config)
            cam.start()
        except (RuntimeError, IndexError, OSError, ValueError) as exc:
            raise SourceError(f"Pi camera {self.camera}: {exc}") from exc
        self._cam = cam

    def read(self) -> np.ndarray | None:
        if self._cam is None:
            return None
        try:
            frame = self._cam.capture_array("main")
        except (RuntimeError, OSError) as exc:
            raise SourceError(f"Pi camera {self.camera}: {exc}") from exc
        width, height = self.size
        return frame[:height, :width]  # the Y plane: a view, no copy

    def rewind(self) -> None:
        self.open()

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            except (RuntimeError, OSError):
                pass  # a camera that vanished has nothing left to stop
            self._cam = None
