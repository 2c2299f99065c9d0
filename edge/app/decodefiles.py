"""`checkpoint decode`: every code in image and video files, with the daemon's decoder."""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from drivers.sources.base import SourceError
from drivers.sources.frames import (
    IMAGE_SUFFIXES,
    CaptureReader,
    ImageError,
    os_reason,
    read_image,
)
from edge.common.images import MAX_IMAGE_PIXELS
from edge.common.model import Code
from edge.decode.debounce import Debouncer
from edge.decode.reader import Decoder


def _found(code: Code, **extra) -> dict:
    return {"text": code.text, "hex": code.data.hex(), **extra}


def decode_path(path: str, decoder: Decoder, *, debounce_ms: int = 1500,
                max_pixels: int = MAX_IMAGE_PIXELS) -> Iterator[dict]:
    """Codes in one file; raises OSError when it is not a readable image or video (missing, a symbolic link
    loop, cut short, corrupt, over the pixel cap), with the reason as its strerror.

    Images and videos are read as the replay source reads them (drivers/sources/frames.py), caps and all.
    In a video the same code in consecutive frames is reported once (debounced on the video's own
    timeline); nothing is debounced across files.
    """
    target = Path(path)
    try:
        mode = os.stat(target).st_mode
    except OSError as exc:
        raise OSError(exc.errno, os_reason(exc)) from None
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, "not a file")
    if target.suffix.lower() in IMAGE_SUFFIXES:
        try:
            image = read_image(target, max_pixels=max_pixels)
        except ImageError as exc:
            raise OSError(errno.EINVAL, str(exc)) from None
        for code in decoder.decode(image):
            yield _found(code)
        return
    reader = CaptureReader(str(target), max_pixels=max_pixels)
    try:
        try:
            reader.open()
        except ImageError as exc:
            raise OSError(errno.EINVAL, str(exc)) from None
        except SourceError:
            raise OSError(errno.EINVAL, "not a readable image or video") from None
        fps = reader.native_fps or 30.0
        debouncer = Debouncer(debounce_ms * 1_000_000)
        index = 0
        while True:
            try:
                frame = reader.read()
            except ImageError as exc:
                raise OSError(errno.EINVAL, f"frame {index}: {exc}") from None
            if frame is None:
                break
            t_ns = int(index / fps * 1e9)
            for code in decoder.decode(frame):
                if debouncer.fresh(code.data, t_ns):
                    yield _found(code, frame=index, time_s=round(index / fps, 3))
            index += 1
        if index == 0:
            raise OSError(errno.EINVAL, "video holds no readable frame")
    finally:
        reader.close()
