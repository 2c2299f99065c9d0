"""The one-pass decoders: zxing-cpp (the default, and the first pass of multipass) and pyzbar.

zxing-cpp reads the most, fastest, inverted dark-mode codes included, and reports a code only after its
error correction passed; pyzbar is selectable as a second opinion. Both take grayscale: gray() makes it.
"""
from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np
import zxingcpp

from edge.common.model import Code
from edge.common.payload import code_from_bytes

# A frame as a source hands it over: 8-bit grayscale (h, w), or BGR / BGRA (h, w, 3 or 4).
Image = np.ndarray
# Where a read code's centre lies in the image it was read from: (x, y) in pixels.
Centre = tuple[float, float]


class Decoder(Protocol):
    name: str

    def decode(self, image: Image) -> list[Code]: ...


def gray(image: Image) -> Image:
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def unique(codes: list[Code]) -> list[Code]:
    """Each code once, in the order first read (a frame can show the same pass twice)."""
    return list(dict.fromkeys(codes))


class ZxingDecoder:
    name = "zxing"

    def __init__(self) -> None:
        self._formats = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)

    def decode(self, image: Image) -> list[Code]:
        return unique([code for code, _ in self.read(gray(image))])

    def read(self, image: Image, binarizer: zxingcpp.Binarizer = zxingcpp.Binarizer.LocalAverage,
             ) -> list[tuple[Code, Centre]]:
        """(code, centre in `image`) of every code whose error correction passed."""
        zx = zxingcpp
        found = zx.read_barcodes(image, formats=self._formats, try_rotate=False, try_invert=True,
                                 text_mode=zx.TextMode.Plain, binarizer=binarizer)
        codes: list[tuple[Code, Centre]] = []
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
        from pyzbar import pyzbar  # imported by the decoder that needs it: libzbar0 may be missing

        self._pyzbar = pyzbar
        self._symbols = [pyzbar.ZBarSymbol.QRCODE]

    def decode(self, image: Image) -> list[Code]:
        found = self._pyzbar.decode(np.ascontiguousarray(gray(image)), symbols=self._symbols)
        return unique([code_from_bytes(symbol.data) for symbol in found])
