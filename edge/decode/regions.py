"""Where in a frame a code could be: dense fine texture, found in a fraction of a millisecond.

A QR code is the busiest patch in a checkpoint's view: module edges every few pixels in both directions,
at full contrast. The frame is subsampled to about 320 pixels across (nearest neighbour: the cheapest
resize, and its aliasing keeps fine texture visible), and the mean absolute Laplacian of each 16x16 block
of that is the block's energy. An empty scene, even a cluttered one, stays far below a code: on the
benchmark's frames the busiest empty block scored about 50, the faintest block of a blurred code 95.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BLOCK = 16
THRESHOLD = 75
SMALL_SIDE = 320


@dataclass(frozen=True)
class Region:
    x0: int
    y0: int
    x1: int
    y1: int
    energy: float

    def contains(self, x: float, y: float) -> bool:
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.y0:self.y1, self.x0:self.x1]


def busy_regions(gray: np.ndarray, limit: int = 3, pad: int = 64) -> list[Region]:
    """Up to `limit` regions of code-like texture, the busiest first, in `gray`'s pixel coordinates."""
    h, w = gray.shape
    step = max(1, round(max(h, w) / SMALL_SIDE))
    small = gray[::step, ::step] if step > 1 else gray
    lap = cv2.convertScaleAbs(cv2.Laplacian(np.ascontiguousarray(small), cv2.CV_16S))
    bh, bw = lap.shape[0] // BLOCK, lap.shape[1] // BLOCK
    if bh == 0 or bw == 0:
        energy = np.array([[lap.mean()]], np.float32)
        bh = bw = 1
        cell_h, cell_w = h, w
    else:
        energy = cv2.resize(lap[:bh * BLOCK, :bw * BLOCK], (bw, bh), interpolation=cv2.INTER_AREA).astype(np.float32)
        cell_h = cell_w = BLOCK * step
    hot = (energy >= THRESHOLD).astype(np.uint8)
    if not hot.any():
        return []
    count, labels, stats, _ = cv2.connectedComponentsWithStats(hot, connectivity=8)
    found = []
    for label in range(1, count):
        x, y, bwid, bhgt = (int(v) for v in stats[label, :4])
        found.append(Region(max(0, x * cell_w - pad), max(0, y * cell_h - pad),
                            min(w, (x + bwid) * cell_w + pad), min(h, (y + bhgt) * cell_h + pad),
                            float(energy[labels == label].sum())))
    found.sort(key=lambda r: -r.energy)
    return found[:limit]
