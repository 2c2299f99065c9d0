"""`checkpoint decode`: every code in image and video files, with the daemon's decoder."""
from __future__ import annotations

import errno
from pathlib import Path
from typing import Iterator

import cv2

from drivers.sources.frames import IMAGE_SUFFIXES

from .debounce import Debouncer
from .decode import Decoder
from .model import Code


def _found(code: Code, **extra) -> dict:
    return {"text": code.text, "hex": code.data.hex(), **extra}


def decode_path(path: str, decoder: Decoder, *, debounce_ms: int = 1500) -> Iterator[dict]:
    """Codes in one file; raises OSError when it is not a readable image or video.

    In a video the same code in consecutive frames is reported once (debounced on the video's own
    timeline); nothing is debounced across files.
    """
    target = Path(path)
    if not target.is_file():
        raise OSError(errno.ENOENT, "no such file" if not target.exists() else "not a file")
    if target.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(target), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise OSError(errno.EINVAL, "not a readable image")
        for code in decoder.decode(image):
            yield _found(code)
        return
    cap = cv2.VideoCapture(str(target))
    try:
        if not cap.isOpened():
            raise OSError(errno.EINVAL, "not a readable image or video")
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        debouncer = Debouncer(debounce_ms * 1_000_000)
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            t_ns = int(index / fps * 1e9)
            for code in decoder.decode(frame):
                if debouncer.fresh(code.data, t_ns):
                    yield _found(code, frame=index, time_s=round(index / fps, 3))
            index += 1
        if index == 0:
            raise OSError(errno.EINVAL, "video holds no readable frame")
    finally:
        cap.release()
