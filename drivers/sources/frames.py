"""Frame readers: OpenCV captures (cameras and video files, one code path) and lists of image files."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np

from .base import SourceError

log = logging.getLogger("checkpoint.source")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}


def _natural(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class CaptureReader:
    """cv2.VideoCapture over a V4L2 camera (index or /dev/video*) or a video file."""

    def __init__(self, target: int | str, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None):
        self.target = target
        self.is_camera = isinstance(target, int) or str(target).startswith("/dev/")
        self._settings = (width, height, fps)
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        self.close()
        target = self.target
        if not self.is_camera and not Path(str(target)).is_file():
            raise SourceError(f"video file {target} does not exist")
        cap = cv2.VideoCapture(target, cv2.CAP_V4L2) if self.is_camera else cv2.VideoCapture(str(target))
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"OpenCV cannot open {target}")
        if self.is_camera:
            width, height, fps = self._settings
            # MJPG lets a USB 2 webcam deliver 720p at full rate; a 1-frame buffer keeps frames fresh.
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height),
                                (cv2.CAP_PROP_FPS, fps)):
                if value:
                    cap.set(prop, value)
        self._cap = cap

    @property
    def native_fps(self) -> float:
        return float(self._cap.get(cv2.CAP_PROP_FPS) or 0) if self._cap is not None else 0.0

    def read(self) -> np.ndarray | None:
        """The next frame, or None at the end of a file or when the camera gave nothing."""
        if self._cap is None:
            return None
        ok, frame = self._cap.read()
        return frame if ok else None

    def rewind(self) -> None:
        self.open()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFilesReader:
    """Image files read in grayscale (the decoder's input), one per read(); unreadable files are skipped."""

    def __init__(self, paths: list[Path]):
        if not paths:
            raise SourceError("no image files to replay")
        self.paths = paths
        self._next = 0
        self.skipped = 0

    def open(self) -> None:
        self._next = 0

    def read(self) -> np.ndarray | None:
        while self._next < len(self.paths):
            path = self.paths[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if image is not None:
                return image
            self.skipped += 1
            log.warning("replay: cannot read image %s; skipped", path)
        return None

    def rewind(self) -> None:
        self._next = 0

    def close(self) -> None:
        pass


def replay_reader(path: str) -> CaptureReader | ImageFilesReader:
    """A folder of images, a .txt list of image paths (relative to the list), or a video file."""
    target = Path(path)
    if target.is_dir():
        files = sorted((p for p in target.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural)
        if not files:
            raise SourceError(f"{target}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return ImageFilesReader(files)
    if target.suffix.lower() == ".txt":
        try:
            lines = target.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"{target}: cannot read image list: {exc}") from None
        files = [target.parent / line.strip() for line in lines if line.strip() and not line.startswith("#")]
        return ImageFilesReader(files)
    if target.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFilesReader([target])
    return CaptureReader(str(target))
