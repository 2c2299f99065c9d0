"""Motion blur undone: the blur's length and direction read off the image's cepstrum, then a Wiener filter.

A straight motion blur of length L multiplies the spectrum by a sinc whose zeros repeat every 1/L along
the motion: the log spectrum carries that ripple, and its inverse transform (the cepstrum) a sharp negative
peak at distance L in the motion's direction. Camera and hand shake over one exposure are close to such
a line. JPEG's 8-pixel blocks leave peaks of their own on the axes at multiples of 8; those are ignored.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_LENGTH, MAX_LENGTH = 6, 28  # shorter blurs zxing reads through; longer ones leave too little to restore


@dataclass(frozen=True)
class Motion:
    length: float
    angle: float  # degrees, 0-180, counter-clockwise from the image's x axis
    strength: float  # how far the cepstrum's dip stands out (in standard deviations)


def _ring_mask(radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    r = np.hypot(yy, xx)
    on_axis = ((np.abs(yy) <= 1) & ((xx % 8 <= 1) | (xx % 8 == 7))) | \
              ((np.abs(xx) <= 1) & ((yy % 8 <= 1) | (yy % 8 == 7)))
    excluded = (r < MIN_LENGTH) | (r > MAX_LENGTH) | (on_axis & (r < 18))
    return yy, xx, excluded


_YY, _XX, _EXCLUDED = _ring_mask(MAX_LENGTH)


def estimate(image: np.ndarray) -> Motion:
    """The likeliest straight motion blur in `image` (gray); a weak `strength` says there may be none."""
    f = image.astype(np.float32)
    f -= f.mean()
    f *= _window(f.shape)
    spectrum = np.abs(np.fft.rfft2(f))
    cep = np.fft.irfft2(np.log(spectrum + 1e-3), s=f.shape)
    r = MAX_LENGTH
    around = np.roll(np.roll(cep, r, axis=0), r, axis=1)[:2 * r + 1, :2 * r + 1]  # origin at the centre
    ring = np.where(_EXCLUDED, np.inf, around)
    y, x = np.unravel_index(int(np.argmin(ring)), ring.shape)
    values = around[~_EXCLUDED]
    strength = float((values.mean() - ring[y, x]) / (values.std() + 1e-9))
    dy, dx = int(_YY[y, x]), int(_XX[y, x])
    return Motion(float(np.hypot(dx, dy)), float(np.degrees(np.arctan2(-dy, dx)) % 180), strength)


def _window(shape: tuple[int, int]) -> np.ndarray:
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1])).astype(np.float32)


def psf(length: float, angle: float, shape: tuple[int, int]) -> np.ndarray:
    """A line of `length` pixels at `angle`, centred on the origin of an image of `shape` (wrapped round)."""
    n = int(np.ceil(length)) | 1
    line = np.zeros((n, n), np.float32)
    line[n // 2, :] = 1
    if n > length:  # fractional length: the end pixels weigh what is left
        line[n // 2, 0] = line[n // 2, -1] = (length - (n - 2)) / 2
    rot = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), angle, 1)
    kernel = np.asarray(cv2.warpAffine(line, rot, (n, n), flags=cv2.INTER_LINEAR), np.float32)
    kernel /= kernel.sum()
    out = np.zeros(shape, np.float32)
    out[:n, :n] = kernel
    return np.roll(out, (-(n // 2), -(n // 2)), axis=(0, 1))


def wiener(image: np.ndarray, motion: Motion, nsr: float = 0.01) -> np.ndarray:
    """`image` with `motion` taken out (8-bit gray)."""
    f = image.astype(np.float32)
    g = np.fft.rfft2(f)
    h = np.fft.rfft2(psf(motion.length, motion.angle, f.shape))
    restored = np.fft.irfft2(g * np.conj(h) / (np.abs(h) ** 2 + nsr), s=f.shape)
    return np.clip(restored, 0, 255).astype(np.uint8)
