"""zxing-cpp on the whole frame, then, where it left a code-like region unread, second passes on that region.

Most frames are read by the first pass or hold no code at all: for them the cost over zxing alone is the
region check (under 0.1 ms at 1280x720). Only a region of code-like texture that no read code lies in gets
second passes, cheapest first, until one reads it or the frame's budget is spent. Every pass ends in a
decoder that reports a code only after its error correction passed, so a pass can add reads, never a
wrong text.

The budget is wall time. Given the camera's frame interval, it is what that interval leaves after the
first pass (less a margin for the rest of the pipeline's step), capped: on a Pi's slower CPU the first
pass takes a larger share of the interval, and a fixed budget would make every hard frame cost the next
frames, which the newest-frame slot then drops.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import numpy as np
import zxingcpp

from edge.common.model import Code
from edge.decode import deblur, unwarp
from edge.decode.engines import Centre, Image, ZxingDecoder, gray, unique
from edge.decode.regions import Region, busy_regions

SMALL_FRAME = 480  # a frame no larger than a region is searched whole: the region check would save nothing
MIN_MOTION_STRENGTH = 4.0
# The share of a frame interval left to the rest of a step (decide, commit, signal), the camera's reader
# thread and the scheduler: a decode that ends at the interval's very end already makes the next frame late.
FRAME_MARGIN = 0.2

# A frame interval in seconds, or a function giving the current one (a source measures its camera's rate);
# None or 0: frames come as fast as they are decoded (a scanner, an unpaced replay).
FrameInterval = float | Callable[[], float | None] | None


class MultiPassDecoder(ZxingDecoder):
    name = "multipass"

    def __init__(self, budget_s: float | None = 0.020, *, frame_interval_s: FrameInterval = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        """budget_s: time for second passes per frame, 0 for none, None for no limit; with frame_interval_s,
        the cap on what the interval leaves. clock: seconds, for the budget; a test passes one that advances
        per reading, so what the budget allows never depends on load."""
        super().__init__()
        self.budget_s, self.frame_interval_s, self.clock = budget_s, frame_interval_s, clock
        self.last_budget_s: float | None = None  # what the newest frame's second passes were given
        self.passes: list[tuple[str, Callable[[Image], list[tuple[Code, Centre]]]]] = [
            ("rescaled", self._rescaled), ("unwarped", self._unwarped), ("deblurred", self._deblurred)]
        self.recovered = {name: 0 for name, _ in self.passes}  # frames each pass read, for the status report
        self.tried = {name: 0 for name, _ in self.passes}  # regions each pass was run on

    def decode(self, image: Image) -> list[Code]:
        start = self.clock()
        g = gray(image)
        found = self.read(g)
        first_done = self.clock()
        self.last_budget_s = self.budget(start, first_done)
        deadline = None if self.last_budget_s is None else first_done + self.last_budget_s
        for region in self._unread(g, [centre for _, centre in found]):
            crop = np.ascontiguousarray(region.crop(g))
            for name, run in self.passes:
                if deadline is not None and self.clock() >= deadline:
                    return unique([code for code, _ in found])
                self.tried[name] += 1
                more = run(crop)
                if more:
                    self.recovered[name] += 1
                    found += more
                    break
        return unique([code for code, _ in found])

    def interval(self) -> float | None:
        value = self.frame_interval_s() if callable(self.frame_interval_s) else self.frame_interval_s
        return value if value and value > 0 else None

    def budget(self, start: float, first_done: float) -> float | None:
        """Seconds for this frame's second passes: the cap, or, when frames come at an interval, what the
        interval leaves after the first pass (started at `start`, done at `first_done`), within the cap."""
        interval = self.interval()
        if interval is None:
            return self.budget_s
        left = max(0.0, interval * (1 - FRAME_MARGIN) - (first_done - start))
        return left if self.budget_s is None else min(self.budget_s, left)

    def _unread(self, g: Image, centres: list[Centre]) -> list[Region]:
        h, w = g.shape
        if max(h, w) <= SMALL_FRAME:
            return [] if centres else [Region(0, 0, w, h, 0.0)]
        return [r for r in busy_regions(g) if not any(r.contains(x, y) for x, y in centres)]

    def _rescaled(self, crop: Image) -> list[tuple[Code, Centre]]:
        """Twice the size, one global threshold: small codes, and uneven light that fools a local one."""
        big = cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        return self.read(big, zxingcpp.Binarizer.GlobalHistogram)

    def _unwarped(self, crop: Image) -> list[tuple[Code, Centre]]:
        """Sampled along a fitted cylinder: paper round a bottle or a wrist. Needs sharp finder patterns, so
        it costs little on a blurred code (no three finders, nothing tried)."""
        for clean in unwarp.candidates(crop):
            found = self.read(clean)
            if found:
                return found
        return []

    def _deblurred(self, crop: Image) -> list[tuple[Code, Centre]]:
        if min(crop.shape) < 4 * deblur.MAX_LENGTH:
            return []  # too little image to tell a blur from the code's own texture
        motion = deblur.estimate(crop)
        if motion.strength < MIN_MOTION_STRENGTH:
            return []
        return self.read(deblur.wiener(crop, motion))
