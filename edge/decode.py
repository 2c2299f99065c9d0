"""Frames in, QR codes out: grayscale, every code in the frame, exact bytes, text where the bytes are text.

zxing-cpp is the default (it reads the most, fastest, inverted dark-mode codes included, and reports a
code only after its error correction passed); pyzbar is selectable as a second opinion.
"""
from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

from .model import Code
from .payload import code_from_bytes


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
        zx = self._zx
        found = zx.read_barcodes(gray(image), formats=self._formats, try_rotate=False, try_invert=True,
                                 text_mode=zx.TextMode.Plain)
        codes = []
        for barcode in found:
            if not barcode.valid:  # never report a read whose error correction failed
                continue
            code = code_from_bytes(bytes(barcode.bytes))
            if code.text is None and barcode.content_type == zx.ContentType.Text:
                # Not UTF-8 but declared or defaulted text (ISO-8859-1, an ECI charset): zxing transcoded it.
                code = Code(code.data, barcode.text)
            codes.append(code)
        return _unique(codes)


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


DECODERS = {"zxing": ZxingDecoder, "pyzbar": PyzbarDecoder}


def make_decoder(name: str) -> Decoder:
    return DECODERS[name]()
