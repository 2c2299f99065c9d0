"""Frames in, QR codes out: the decoder a config names, built here.

Every decoder turns a frame to grayscale, reads every code in it, keeps the exact bytes, and gives text where
the bytes are text; a code is reported only after its error correction passed. The one-pass decoders live in
engines.py (zxing-cpp, pyzbar); multipass.py adds second passes over regions zxing-cpp left unread.
"""
from __future__ import annotations

from edge.decode.engines import Decoder, Image, PyzbarDecoder, ZxingDecoder, gray
from edge.decode.multipass import FrameInterval, MultiPassDecoder

__all__ = ["Decoder", "Image", "MultiPassDecoder", "PyzbarDecoder", "ZxingDecoder", "gray", "make_decoder"]


def make_decoder(name: str, budget_ms: float | None = 20, *, budget: str = "fixed",
                 frame_interval_s: FrameInterval = None) -> Decoder:
    """name: "multipass", "zxing" or "pyzbar" (KeyError for another).
    budget_ms: multipass's time for second passes per frame; 0 none, None unlimited (tests of what it reads).
    budget "frame": budget_ms caps what the frame interval leaves after the first pass; frame_interval_s is
    the source's interval in seconds, or a function giving it (None, 0: no interval, budget_ms applies)."""
    if name == "multipass":
        return MultiPassDecoder(budget_s=None if budget_ms is None else budget_ms / 1000,
                                frame_interval_s=frame_interval_s if budget == "frame" else None)
    engines: dict[str, type[ZxingDecoder] | type[PyzbarDecoder]] = {"zxing": ZxingDecoder, "pyzbar": PyzbarDecoder}
    return engines[name]()
