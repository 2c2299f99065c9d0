"""Sources by name: `replay`, `opencv`, `lines`."""
from __future__ import annotations

from pathlib import Path

from .base import Frame, Source, SourceError, TextScan
from .camera import FrameSource
from .frames import CaptureReader, replay_reader
from .lines import LinesSource

__all__ = ["Frame", "Source", "SourceError", "TextScan", "open_source"]


def open_source(settings, *, max_line: int) -> Source:
    """Build (not start) the source a config's [source] table names."""
    kind = settings.type
    if kind == "replay":
        return FrameSource(replay_reader(settings.path), name=f"replay:{Path(settings.path).name}",
                           fps=settings.fps, loop=settings.loop)
    if kind == "opencv":
        reader = CaptureReader(settings.device, width=settings.width, height=settings.height, fps=settings.fps)
        return FrameSource(reader, name=f"opencv:{settings.device}", live=reader.is_camera, stall_s=settings.stall_s)
    if kind == "lines":
        return LinesSource(settings.path, max_line=max_line, follow_fifo=settings.follow_fifo,
                           name=f"lines:{settings.path}")
    raise SourceError(f"unknown source type {kind!r}")
