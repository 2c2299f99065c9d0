"""Frame readers: OpenCV captures (cameras and video files, one code path) and lists of image files.

A reader opens, reads one grayscale or BGR frame at a time (None at the end), rewinds and closes; FrameSource
(camera.py) runs one. An image or video file is told apart by its suffix, the same way for the replay source
and `checkpoint decode` (file_reader()); image files are read and checked by imagefiles.py.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np

from drivers.sources.base import SourceError
from drivers.sources.imagefiles import IMAGE_SUFFIXES, ImageError, check_pixels, read_image
from edge.common.images import MAX_IMAGE_PIXELS
from edge.common.textsafe import for_log

log = logging.getLogger("checkpoint.source")


def _natural(path: Path) -> list[int | str]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class CaptureReader:
    """cv2.VideoCapture over a V4L2 camera (index or /dev/video*) or a video file."""

    def __init__(self, target: int | str, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None, max_pixels: int = MAX_IMAGE_PIXELS):
        self.target = target
        self.is_camera = isinstance(target, int) or str(target).startswith("/dev/")
        self._settings = (width, height, fps)
        self.max_pixels = max_pixels
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        """Raises ImageError for a video whose frames are over the pixel cap, SourceError for anything else."""
        self.close()
        target = self.target
        if not self.is_camera and not Path(str(target)).is_file():
            raise SourceError(f"video file {target} does not exist")
        try:
            cap = self._capture()
        except cv2.error as exc:  # OpenCV reports a backend's failure as an assertion
            raise SourceError(f"OpenCV cannot open {target}: {for_log(str(exc).strip())}") from exc
        # The container (or the driver) says the frame size before any frame is decoded. A file that does
        # not say it is refused: FFmpeg reads an image of any name as a one-frame video, and when its size
        # is beyond what FFmpeg will probe it reports 0x0 and still decodes up to 268 MP.
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if (width and height) or not self.is_camera:
            try:
                if not (width and height):
                    raise ImageError("video does not say its frame size; refused without decoding it")
                check_pixels(width, height, self.max_pixels, "video frame")
            except ImageError:
                cap.release()
                raise
        self._cap = cap

    def _capture(self) -> cv2.VideoCapture:
        target = self.target
        cap = cv2.VideoCapture(target, cv2.CAP_V4L2) if self.is_camera else cv2.VideoCapture(str(target))
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"OpenCV cannot open {target}")
        if self.is_camera:
            width, height, fps = self._settings
            # MJPG lets a USB 2 webcam deliver 720p at full rate; a 1-frame buffer keeps frames fresh.
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height),
                                (cv2.CAP_PROP_FPS, fps)):
                if value:
                    cap.set(prop, value)
        return cap

    @property
    def native_fps(self) -> float:
        """The rate the open capture reports (a camera's driver, a video's container), 0 when it says none."""
        return float(self._cap.get(cv2.CAP_PROP_FPS) or 0) if self._cap is not None else 0.0

    @property
    def frame_interval_s(self) -> float | None:
        """A camera's frame interval: the rate the driver reports once open, else the one asked for."""
        if not self.is_camera:
            return None
        fps = self.native_fps or self._settings[2] or 0.0
        return 1.0 / fps if fps > 0 else None

    def read(self) -> np.ndarray | None:
        """The next frame, or None at the end of a file or when the camera gave nothing; raises ImageError
        for a frame over the pixel cap (a stream whose size changed after its header), SourceError when
        OpenCV fails."""
        if self._cap is None:
            return None
        try:
            ok, frame = self._cap.read()
        except cv2.error as exc:
            raise SourceError(f"OpenCV cannot read {self.target}: {for_log(str(exc).strip())}") from exc
        if not ok:
            return None
        check_pixels(frame.shape[1], frame.shape[0], self.max_pixels, "video frame")
        return frame

    def rewind(self) -> None:
        self.open()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFilesReader:
    """Image files read in grayscale (the decoder's input), one per read().

    skip_bad (a replay): a file that is unreadable, cut short or over the pixel cap is skipped with a
    warning naming it, and the replay goes on. Otherwise (`checkpoint decode`) read() raises its ImageError.
    """

    def __init__(self, paths: list[Path], *, max_pixels: int = MAX_IMAGE_PIXELS, skip_bad: bool = True):
        if not paths:
            raise SourceError("no image files to replay")
        self.paths = paths
        self.max_pixels, self.skip_bad = max_pixels, skip_bad
        self._next = 0
        self.skipped = 0

    def open(self) -> None:
        self._next = 0

    def read(self) -> np.ndarray | None:
        while self._next < len(self.paths):
            path = self.paths[self._next]
            self._next += 1
            try:
                return read_image(path, max_pixels=self.max_pixels)
            except ImageError as exc:
                if not self.skip_bad:
                    raise
                self.skipped += 1
                log.warning("replay: image %s skipped: %s", for_log(str(path)), exc)
        return None

    @property
    def frame_interval_s(self) -> float | None:
        return None  # files: as fast as they are read

    def rewind(self) -> None:
        self._next = 0

    def close(self) -> None:
        pass


def file_reader(path: str | Path, *, max_pixels: int = MAX_IMAGE_PIXELS,
                skip_bad: bool = True) -> CaptureReader | ImageFilesReader:
    """One file: an image (by its suffix) or else a video. skip_bad: as ImageFilesReader's."""
    target = Path(path)
    if target.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFilesReader([target], max_pixels=max_pixels, skip_bad=skip_bad)
    return CaptureReader(str(target), max_pixels=max_pixels)


def replay_reader(path: str) -> CaptureReader | ImageFilesReader:
    """A folder of images, a .txt list of image paths (relative to the list), or one image or video file."""
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
    return file_reader(target)
