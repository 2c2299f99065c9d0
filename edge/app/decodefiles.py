"""`checkpoint decode`: every code in image and video files, with the daemon's decoder."""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from drivers.sources.base import SourceError
from drivers.sources.frames import CaptureReader, file_reader
from drivers.sources.imagefiles import ImageError, os_reason
from edge.common.images import MAX_IMAGE_PIXELS
from edge.common.model import Code
from edge.decode.debounce import Debouncer
from edge.decode.reader import Decoder

Found = dict[str, str | int | float | None]  # one line of output: text, hex, and in a video frame and time_s


def _found(code: Code, **where: int | float) -> Found:
    return {"text": code.text, "hex": code.data.hex(), **where}


def decode_path(path: str, decoder: Decoder, *, debounce_ms: int = 1500,
                max_pixels: int = MAX_IMAGE_PIXELS) -> Iterator[Found]:
    """Codes in one file; raises OSError when it is not a readable image or video (missing, a symbolic link
    loop, cut short, corrupt, over the pixel cap), with the reason as its strerror.

    The file is read by the replay source's own readers (drivers/sources/frames.py), caps and all. In a
    video the same code in consecutive frames is reported once (debounced on the video's own timeline);
    nothing is debounced across files.
    """
    target = Path(path)
    try:
        mode = os.stat(target).st_mode
    except OSError as exc:
        raise OSError(exc.errno, os_reason(exc)) from None
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, "not a file")
    reader = file_reader(target, max_pixels=max_pixels, skip_bad=False)
    try:
        try:
            reader.open()
        except ImageError as exc:
            raise OSError(errno.EINVAL, str(exc)) from None
        except SourceError:
            raise OSError(errno.EINVAL, "not a readable image or video") from None
        if not isinstance(reader, CaptureReader):  # an image: one frame, no timeline
            try:
                image = reader.read()
            except ImageError as exc:
                raise OSError(errno.EINVAL, str(exc)) from None
            for code in decoder.decode(image) if image is not None else ():
                yield _found(code)
            return
        fps = reader.native_fps or 30.0
        debouncer = Debouncer(debounce_ms * 1_000_000)
        index = 0
        while True:
            try:
                frame = reader.read()
            except ImageError as exc:
                raise OSError(errno.EINVAL, f"frame {index}: {exc}") from None
            except SourceError:
                raise OSError(errno.EINVAL, f"frame {index}: not readable") from None
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
