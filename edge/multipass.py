"""zxing-cpp on the whole frame, then, where it left a code-like region unread, second passes on that region.

Most frames are read by the first pass or hold no code at all: for them the cost over zxing alone is the
region check (under 0.1 ms at 1280x720). Only a region of code-like texture that no read code lies in gets
second passes, cheapest first, until one reads it or the frame's budget is spent. Every pass ends in a
decoder that reports a code only after its error correction passed, so a pass can add reads, never a
wrong text.
"""
from __future__ import annotations

import time
from typing import Callable

import cv2
import numpy as np

from . import deblur, unwarp
from .decode import ZxingDecoder, _unique, gray
from .model import Code
from .regions import Region, busy_regions

SMALL_FRAME = 480  # a frame no larger than a region is searched whole: the region check would save nothing
MIN_MOTION_STRENGTH = 4.0


class MultiPassDecoder(ZxingDecoder):
    name = "multipass"

    def __init__(self, budget_s: float = 0.020) -> None:
        super().__init__()
        self.budget_s = budget_s
        self.passes: list[tuple[str, Callable[[np.ndarray], list[tuple[Code, tuple[float, float]]]]]] = [
            ("rescaled", self._rescaled), ("unwarped", self._unwarped), ("deblurred", self._deblurred)]
        self.recovered = {name: 0 for name, _ in self.passes}  # frames each pass read, for the status report

    def decode(self, image: np.ndarray) -> list[Code]:
        g = gray(image)
        found = self.read(g)
        deadline = time.perf_counter() + self.budget_s
        for region in self._unread(g, [centre for _, centre in found]):
            crop = np.ascontiguousarray(region.crop(g))
            for name, run in self.passes:
                if time.perf_counter() >= deadline:
                    return _unique([code for code, _ in found])
                more = run(crop)
                if more:
                    self.recovered[name] += 1
                    found += more
                    break
        return _unique([code for code, _ in found])

    def _unread(self, g: np.ndarray, centres: list[tuple[float, float]]) -> list[Region]:
        h, w = g.shape
        if max(h, w) <= SMALL_FRAME:
            return [] if centres else [Region(0, 0, w, h, 0.0)]
        return [r for r in busy_regions(g) if not any(r.contains(x, y) for x, y in centres)]

    def _rescaled(self, crop: np.ndarray):
        """Twice the size, one global threshold: small codes, and uneven light that fools a local one."""
        big = cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        return self.read(big, self._zx.Binarizer.GlobalHistogram)

    def _unwarped(self, crop: np.ndarray):
        """Sampled along a fitted cylinder: paper round a bottle or a wrist. Needs sharp finder patterns, so
        it costs little on a blurred code (no three finders, nothing tried)."""
        for clean in unwarp.candidates(crop):
            found = self.read(clean)
            if found:
                return found
        return []

    def _deblurred(self, crop: np.ndarray):
        if min(crop.shape) < 4 * deblur.MAX_LENGTH:
            return []  # too little image to tell a blur from the code's own texture
        motion = deblur.estimate(crop)
        if motion.strength < MIN_MOTION_STRENGTH:
            return []
        return self.read(deblur.wiener(crop, motion))
