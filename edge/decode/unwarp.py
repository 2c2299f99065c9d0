"""Codes on curved surfaces (a bottle, a wrist, a card in a bent sleeve): read by sampling along the curve.

zxing-cpp samples a code on a straight grid through its finder patterns; on paper wrapped round a cylinder
the columns crowd together towards the sides and the rows bow, and that grid drifts off the modules. The
three finder patterns stay intact: they fix the code's position, orientation and size. A cylinder seen from
the front (the paper at arc a shows at sin(a s) / sin(s), rows bent by 1 - cos(a s)) is fitted through them
for a few curvatures and code sizes; the fits whose timing patterns alternate best are sampled into clean
synthetic codes for zxing-cpp. A wrong fit gives a code whose error correction fails, never a wrong text.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

CURVATURES = (0.6, 0.9, 1.2)  # radians of cylinder from the code's centre to its quiet zone's edge
BOWS = (0.08, -0.08, 0.0)  # how far rows bend at that edge, as a share of the code's size
MODULE_PX = 4  # pixels per module of the clean code handed to zxing-cpp


@dataclass(frozen=True)
class Finder:
    x: float
    y: float
    module: float  # module size in pixels


def finders(gray: np.ndarray, dark: bool = True, limit: int = 8) -> list[Finder]:
    """Finder-pattern candidates: a ring holding one hole holding one stone, dark on light (or light on
    dark: a phone in dark mode)."""
    block = max(15, (min(gray.shape) // 8) | 1)
    binary = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C,
                                   cv2.THRESH_BINARY_INV if dark else cv2.THRESH_BINARY, block, 5)
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    tree = hierarchy[0]
    hole = tree[:, 2]
    stone = np.where(hole >= 0, tree[np.maximum(hole, 0), 2], -1)
    # one hole with one stone in it: no siblings at either level
    ok = (stone >= 0) & (tree[np.maximum(hole, 0), 0] < 0) & (tree[np.maximum(stone, 0), 0] < 0)
    found: list[Finder] = []
    for i in (int(n) for n in np.nonzero(ok)[0]):
        outer, inner = cv2.contourArea(contours[i]), cv2.contourArea(contours[int(stone[i])])
        if outer < 49 or inner <= 0 or not 2.5 < outer / inner < 12:
            continue
        m = cv2.moments(contours[int(stone[i])])
        if m["m00"] > 0:
            found.append(Finder(m["m10"] / m["m00"], m["m01"] / m["m00"], float(np.sqrt(outer)) / 7))
            if len(found) == limit:
                break
    return found


Triple = tuple[Finder, Finder, Finder]  # (corner, right, below): the finders of one code, if it is one
Points = tuple[np.ndarray, np.ndarray]  # (x, y) coordinates, one array each


def triples(found: list[Finder], limit: int = 3) -> list[Triple]:
    """(corner, right, below) finder triples that could be one code's, the most square first."""
    scored: list[tuple[float, Triple]] = []
    for a, b, c in itertools.permutations(found, 3):
        ab, ac = np.array([b.x - a.x, b.y - a.y]), np.array([c.x - a.x, c.y - a.y])
        lab, lac = float(np.linalg.norm(ab)), float(np.linalg.norm(ac))
        if min(lab, lac) < 10 * a.module or ab[0] * ac[1] - ab[1] * ac[0] <= 0:
            continue
        cos = abs(float(ab @ ac)) / (lab * lac)
        ratio = abs(float(np.log(lab / lac)))
        if cos < 0.5 and ratio < 0.7:
            scored.append((cos + ratio, (a, b, c)))
    scored.sort(key=lambda item: item[0])
    return [t for _, t in scored[:limit]]


def _curve(u: np.ndarray, v: np.ndarray, curvature: float, bow: float) -> Points:
    """Where the flat code's normalised point (u, v in -1..1) shows once wrapped round a cylinder along u."""
    if curvature == 0:
        return u, v
    angle = u * curvature
    return np.sin(angle) / np.sin(curvature), v - 2 * bow * (1 - np.cos(angle))


def _fit(size: int, curvature: float, bow: float, across: bool, cols: np.ndarray, rows: np.ndarray) -> Points:
    """Where the modules (cols, rows) lie in the curved code's normalised plane: x, y."""
    span = size + 8  # the quiet zone is part of the wrapped paper
    u, v = (cols + 4.5) * 2 / span - 1, (rows + 4.5) * 2 / span - 1
    if across:  # the cylinder's axis along the code's rows instead of its columns
        v, u = _curve(v, u, curvature, bow)
        return u, v
    return _curve(u, v, curvature, bow)


def _apply(matrix: np.ndarray, x: np.ndarray, y: np.ndarray) -> Points:
    """(x, y) through a 3x3 perspective matrix."""
    w = matrix[2, 0] * x + matrix[2, 1] * y + matrix[2, 2]
    return ((matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2]) / w,
            (matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]) / w)


def _alignment(gray: np.ndarray, x: float, y: float, module: float) -> tuple[float, float] | None:
    """The alignment pattern (dark centre, light ring, dark ring, 5x5 modules) within 4 modules of (x, y)."""
    inner = int(4 * module)
    reach = inner + int(2.5 * module) + 2
    x0, y0 = int(round(x)) - reach, int(round(y)) - reach
    if x0 < 0 or y0 < 0 or x0 + 2 * reach >= gray.shape[1] or y0 + 2 * reach >= gray.shape[0]:
        return None
    g = gray[y0:y0 + 2 * reach + 1, x0:x0 + 2 * reach + 1].astype(np.float32)
    k1, k3, k5 = (max(1, int(round(n * module))) | 1 for n in (1, 3, 5))
    m1, m3, m5 = (cv2.boxFilter(g, -1, (k, k), borderType=cv2.BORDER_REPLICATE) for k in (k1, k3, k5))
    ring3 = (m3 * k3 * k3 - m1 * k1 * k1) / (k3 * k3 - k1 * k1)
    ring5 = (m5 * k5 * k5 - m3 * k3 * k3) / (k5 * k5 - k3 * k3)
    fit = np.minimum(ring3 - m1, ring3 - ring5)
    core = fit[reach - inner:reach + inner + 1, reach - inner:reach + inner + 1]
    dy, dx = np.unravel_index(int(np.argmax(core)), core.shape)
    if core[dy, dx] < 0.25 * (g.max() - g.min()):
        return None
    return float(x0 + reach - inner + dx), float(y0 + reach - inner + dy)


def anchors(gray: np.ndarray, corner: Finder, right: Finder, below: Finder, size: int) -> np.ndarray:
    """Image points of the finder centres and, found near where a flat code would have it, of the alignment
    pattern by the fourth corner (codes of version 2 and up): four points allow a perspective fit."""
    points = [[corner.x, corner.y], [right.x, right.y], [below.x, below.y]]
    if size > 21:
        d = size - 7  # finder centres are 3.5 modules in, the alignment pattern's 6.5
        x = right.x + below.x - corner.x - (right.x + below.x - 2 * corner.x) * 3 / d
        y = right.y + below.y - corner.y - (right.y + below.y - 2 * corner.y) * 3 / d
        found = _alignment(gray, x, y, (corner.module + right.module + below.module) / 3)
        if found is not None:
            points.append(list(found))
    return np.array(points, np.float32)


def sample(gray: np.ndarray, points: np.ndarray, size: int, curvature: float, bow: float, across: bool,
           cols: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
    """The gray values at the modules (cols, rows) under one fit, or None when it leaves the image."""
    known = np.array(_fit(size, curvature, bow, across, np.array([3, size - 4, 3, size - 7], np.float32),
                          np.array([3, 3, size - 4, size - 7], np.float32)), np.float32).T
    if len(points) == 4:
        matrix = cv2.getPerspectiveTransform(known, points)
    else:  # no alignment pattern (version 1, or not found): an affine fit through the three finders
        matrix = np.vstack([cv2.getAffineTransform(known[:3], points), [0, 0, 1]])
    px, py = _apply(matrix, *_fit(size, curvature, bow, across, cols, rows))
    h, w = gray.shape
    if px.min() < 0 or py.min() < 0 or px.max() > w - 1 or py.max() > h - 1:
        return None
    return cv2.remap(gray, px.astype(np.float32), py.astype(np.float32), cv2.INTER_LINEAR).astype(np.float32)


def _timing(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Modules of row 6 and column 6 between the finders, and the dark (-1) / light (1) each should be."""
    run = np.arange(8, size - 8, dtype=np.float32)
    six = np.full_like(run, 6)
    expected = np.where(run % 2 == 0, -1.0, 1.0).astype(np.float32)
    both = np.concatenate([expected, expected])
    return np.concatenate([run, six])[None, :], np.concatenate([six, run])[None, :], both


def timing_fit(values: np.ndarray, expected: np.ndarray) -> float:
    """How well sampled timing modules alternate as they should (-1..1)."""
    centred = values.ravel() - values.mean()
    return float(centred @ expected / (np.linalg.norm(centred) * np.linalg.norm(expected) + 1e-9))


def render(values: np.ndarray) -> np.ndarray:
    """Module values as a clean code: each against its neighbourhood's mean, quiet zone added, enlarged."""
    local = cv2.blur(values, (9, 9), borderType=cv2.BORDER_REFLECT)
    modules = np.where(values < local, 0, 255).astype(np.uint8)
    clean = np.pad(modules, 4, constant_values=255)
    return cv2.resize(clean, None, fx=MODULE_PX, fy=MODULE_PX, interpolation=cv2.INTER_NEAREST)


def candidates(gray: np.ndarray, tries: int = 4) -> Iterator[np.ndarray]:
    """Clean images of the code under the fits whose timing patterns line up best (a generator: stop early)."""
    for dark in (True, False):
        yield from _candidates(gray if dark else 255 - gray, tries, triples(finders(gray, dark)))


def _candidates(gray: np.ndarray, tries: int, found: list[Triple]) -> Iterator[np.ndarray]:
    for corner, right, below in found:
        module = (corner.module + right.module + below.module) / 3
        reach = (np.hypot(right.x - corner.x, right.y - corner.y)
                 + np.hypot(below.x - corner.x, below.y - corner.y)) / 2
        version = int(round((reach / module - 10) / 4))  # finder centres lie size - 7 modules apart
        fits: list[tuple[float, int, np.ndarray, float, float, bool]] = []
        for v in range(max(1, version - 1), min(40, version + 2) + 1):
            size = 17 + 4 * v
            points = anchors(gray, corner, right, below, size)
            cols, rows, expected = _timing(size)
            for curvature, bow, across in itertools.product(CURVATURES, BOWS, (False, True)):
                values = sample(gray, points, size, curvature, bow, across, cols, rows)
                if values is not None:
                    fits.append((timing_fit(values, expected), size, points, curvature, bow, across))
        fits.sort(key=lambda item: -item[0])
        for _, size, points, curvature, bow, across in fits[:tries]:
            grid = np.arange(size, dtype=np.float32)
            cols, rows = np.meshgrid(grid, grid)
            values = sample(gray, points, size, curvature, bow, across, cols, rows)
            if values is not None:
                yield render(values)
