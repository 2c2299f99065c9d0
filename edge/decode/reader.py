"""Frames in, QR codes out: grayscale, every code in the frame, exact bytes, text where the bytes are text.

zxing-cpp is the default (it reads the most, fastest, inverted dark-mode codes included, and reports a
code only after its error correction passed); pyzbar is selectable as a second opinion.
"""
from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

from edge.common.model import Code
from edge.common.payload import code_from_bytes


class Decoder(Protocol):
    name: str

    def decode(self, image: np.ndarray) -> list[Code]: ...


def gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


class ZxingDecoder:
    name = "zxing"

    def __init__(self) -> None:
        import zxingcpp

        self._zx = zxingcpp
        self._formats = zxingcpp.BarcodeFormat.QRCode

    def decode(self, image: np.ndarray) -> list[Code]:
        return _unique([code for code, _ in self.read(gray(image))])

    def read(self, image: np.ndarray, binarizer=None) -> list[tuple[Code, tuple[float, float]]]:
        """(code, centre in `image`) of every code whose error correction passed."""
        zx = self._zx
        found = zx.read_barcodes(image, formats=self._formats, try_rotate=False, try_invert=True,
                                 text_mode=zx.TextMode.Plain, binarizer=binarizer or zx.Binarizer.LocalAverage)
        codes = []
        for barcode in found:
            if not barcode.valid:  # never report a read whose error correction failed
                continue
            code = code_from_bytes(bytes(barcode.bytes))
            if code.text is None and barcode.content_type in (zx.ContentType.Text, zx.ContentType.Mixed):
                # Not UTF-8 but text in a declared or guessed charset (an ECI, ISO-8859-1, GB2312, Shift_JIS),
                # control characters and all (Mixed): zxing transcoded it. Binary content keeps no text.
                code = Code(code.data, barcode.text)
            p = barcode.position
            corners = (p.top_left, p.top_right, p.bottom_right, p.bottom_left)
            codes.append((code, (sum(c.x for c in corners) / 4, sum(c.y for c in corners) / 4)))
        return codes


class PyzbarDecoder:
    name = "pyzbar"

    def __init__(self) -> None:
        from pyzbar import pyzbar

        self._pyzbar = pyzbar
        self._symbols = [pyzbar.ZBarSymbol.QRCODE]

    def decode(self, image: np.ndarray) -> list[Code]:
        found = self._pyzbar.decode(np.ascontiguousarray(gray(image)), symbols=self._symbols)
        return _unique([code_from_bytes(symbol.data) for symbol in found])


def _unique(codes: list[Code]) -> list[Code]:
    return list(dict.fromkeys(codes))


def make_decoder(name: str, budget_ms: float | None = 20, *, budget: str = "fixed",
                 frame_interval_s=None) -> Decoder:
    """budget_ms: multipass's time for second passes per frame; 0 none, None unlimited (tests of what it reads).
    budget "frame": budget_ms caps what the frame interval leaves after the first pass; frame_interval_s is
    the source's interval in seconds, or a function giving it (None, 0: no interval, budget_ms applies)."""
    if name == "multipass":
        from edge.decode.multipass import MultiPassDecoder  # it builds on ZxingDecoder

        return MultiPassDecoder(budget_s=None if budget_ms is None else budget_ms / 1000,
                                frame_interval_s=frame_interval_s if budget == "frame" else None)
    return {"zxing": ZxingDecoder, "pyzbar": PyzbarDecoder}[name]()
