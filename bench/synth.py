"""Synthetic checkpoint frames: a QR code as a camera at a checkpoint sees it.

Each frame is 1280x720, JPEG-compressed like a USB camera's MJPG, with the code on paper or a phone
screen under one named condition. Deterministic for a seed, so runs compare.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import cv2
import numpy as np
import segno

W, H = 1280, 720
CONDITIONS = ("clean", "perspective", "blur", "motion", "glare", "dark", "small", "moire", "curved", "two",
              "none")

NAMES = ["Nguyễn Văn An", "Phạm Thu Hương", "Trần Thị Bình", "Lê Hoàng Đức", "Võ Thị Ánh Tuyết",
         "Đặng Quốc Khánh", "Bùi Minh Châu", "Hồ Ngọc Hà"]


def payload(rng: random.Random) -> str:
    """Payloads shaped like the ones travellers showed: ids, health declarations, certificate URLs."""
    ident = "".join(rng.choice("0123456789") for _ in range(12))
    kind = rng.randrange(4)
    if kind == 0:
        return ident
    if kind == 1:
        name = rng.choice(NAMES)  # drawn first, as ever: the same seed gives the same payloads
        return f"{ident}|{name}|{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1950, 2010)}"
    if kind == 2:
        return f"https://tokhaiyte.vn/c/{ident}?h={rng.getrandbits(64):016x}"
    name, dose, month, day = rng.choice(NAMES), rng.randint(1, 3), rng.randint(1, 12), rng.randint(1, 28)
    return f'{{"id":"{ident}","name":"{name}","dose":{dose},"date":"2021-{month:02d}-{day:02d}"}}'


def qr_modules(content: str | bytes, error: str = "m") -> np.ndarray:
    """The code's modules with a 4-module quiet zone: 0 dark, 255 light. UTF-8, no ECI (what apps emit)."""
    utf8 = isinstance(content, str) and not content.isascii()
    qr = segno.make_qr(content, error=error, encoding="utf-8" if utf8 else None)
    matrix = np.array([list(row) for row in qr.matrix], dtype=np.uint8)
    return np.pad(np.where(matrix == 1, 0, 255).astype(np.uint8), 4, constant_values=255)


def background(rng: np.random.Generator) -> np.ndarray:
    """A cluttered scene: smooth light variation, blocks of texture, edges that look a little like codes."""
    base = cv2.resize(rng.integers(40, 200, (9, 16), dtype=np.uint8), (W, H), interpolation=cv2.INTER_CUBIC)
    scene = base.astype(np.float32)
    for _ in range(int(rng.integers(4, 10))):
        x, y = int(rng.integers(0, W - 100)), int(rng.integers(0, H - 100))
        w, h = int(rng.integers(40, 300)), int(rng.integers(40, 300))
        scene[y:y + h, x:x + w] = float(rng.integers(20, 235))
    noise = cv2.GaussianBlur(rng.normal(0, 18, (H, W)).astype(np.float32), (0, 0), 1.5)
    return np.clip(scene + noise, 0, 255).astype(np.uint8)


def _quad(rng: np.random.Generator, size: float, tilt: float) -> np.ndarray:
    cx = rng.uniform(size * 0.8, W - size * 0.8)
    cy = rng.uniform(size * 0.8, H - size * 0.8)
    angle = rng.uniform(0, 2 * np.pi)
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32) * size / 2
    corners += rng.uniform(-tilt, tilt, corners.shape).astype(np.float32) * size
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    return corners @ rot.T + np.array([cx, cy], np.float32)


def _paste(frame: np.ndarray, code: np.ndarray, quad: np.ndarray, scale: int = 8) -> None:
    big = cv2.resize(code, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    h, w = big.shape
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    matrix = cv2.getPerspectiveTransform(src, quad.astype(np.float32))
    warped = cv2.warpPerspective(big, matrix, (W, H), flags=cv2.INTER_AREA, borderValue=0)
    mask = cv2.warpPerspective(np.full_like(big, 255), matrix, (W, H), flags=cv2.INTER_AREA, borderValue=0)
    alpha = mask.astype(np.float32) / 255
    frame[:] = (frame * (1 - alpha) + warped * alpha).astype(np.uint8)


def _curve(code: np.ndarray, strength: float) -> np.ndarray:
    """Paper wrapped round a cylinder (a bottle, a wrist), seen from the front and a little above: columns
    crowd towards the edges (an image column at x shows the paper at arc asin(x sin s) / s), rows bow, the
    sides darken. Returned at 8 pixels per module, for _paste(scale=1): rendering it back at one pixel per
    module would blend neighbouring modules into grey, which no camera close enough to read it does."""
    big = cv2.resize(code, None, fx=8, fy=8, interpolation=cv2.INTER_NEAREST)
    h, w = big.shape
    xs = np.linspace(-1, 1, w, dtype=np.float32)
    arc = np.arcsin(xs * np.sin(strength)) / strength
    theta = arc * strength
    src_x = (arc + 1) / 2 * (w - 1)
    bow = (1 - np.cos(theta)) * h * 0.08
    map_x = np.tile(src_x, (h, 1)).astype(np.float32)
    map_y = (np.arange(h, dtype=np.float32)[:, None] + bow[None, :]).astype(np.float32)
    shade = (0.75 + 0.25 * np.cos(theta))[None, :]
    curved = cv2.remap(big, map_x, map_y, cv2.INTER_LINEAR, borderValue=255).astype(np.float32) * shade
    return curved.astype(np.uint8)


@dataclass
class Sample:
    condition: str
    image: np.ndarray  # gray, decoded from JPEG
    texts: list[str]


def frame(condition: str, seed: int) -> Sample:
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    img = background(nrng)
    texts: list[str] = []
    size = nrng.uniform(180, 320)
    tilt = 0.04
    count = {"none": 0, "two": 2}.get(condition, 1)
    for i in range(count):
        text = payload(rng)
        texts.append(text)
        code = qr_modules(text)
        if condition == "dark":
            code = 255 - code  # dark-mode app: light modules on a dark screen
        if condition == "curved":
            code = _curve(code, strength=nrng.uniform(0.9, 1.2))
        csize = {"small": nrng.uniform(85, 110), "two": nrng.uniform(150, 220)}.get(condition, size)
        if condition == "two":
            quad = _quad(nrng, csize, tilt)
            quad[:, 0] = quad[:, 0] - quad[:, 0].mean() + (W * (0.27 if i == 0 else 0.73))
        else:
            quad = _quad(nrng, csize, 0.18 if condition == "perspective" else tilt)
        if condition in ("dark", "moire"):
            _screen(img, quad, nrng)
        _paste(img, code, quad, scale=1 if condition == "curved" else 8)
    img = _degrade(img, condition, nrng)
    ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(nrng.integers(70, 90))])
    return Sample(condition, cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE), texts)


def _screen(img: np.ndarray, quad: np.ndarray, nrng: np.random.Generator) -> None:
    """A phone around the code: a dark bezel a little larger than the code."""
    centre = quad.mean(axis=0)
    phone = (quad - centre) * np.array([1.25, 1.6], np.float32) + centre
    cv2.fillConvexPoly(img, phone.astype(np.int32), int(nrng.integers(5, 30)))


def _degrade(img: np.ndarray, condition: str, nrng: np.random.Generator) -> np.ndarray:
    out = img.astype(np.float32)
    if condition == "blur":
        out = cv2.GaussianBlur(out, (0, 0), nrng.uniform(1.8, 2.6))
    elif condition == "motion":
        length = int(nrng.integers(9, 16))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1 / length
        rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), nrng.uniform(0, 180), 1)
        out = cv2.filter2D(out, -1, cv2.warpAffine(kernel, rot, (length, length)))
    elif condition == "glare":
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        cx, cy = nrng.uniform(300, W - 300), nrng.uniform(200, H - 200)
        spot = np.exp(-(((xx - cx) / 160) ** 2 + ((yy - cy) / 110) ** 2)) * nrng.uniform(120, 180)
        out = out * 0.8 + spot + 30
    elif condition == "moire":
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        freq, angle = nrng.uniform(0.6, 1.2), nrng.uniform(0, np.pi)
        out = out * 0.85 + 22 * np.sin(freq * (xx * np.cos(angle) + yy * np.sin(angle))) + 20
    out += nrng.normal(0, 4, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def frames(per_condition: int, seed: int = 1) -> list[Sample]:
    return [frame(cond, seed * 100_003 + i * 97 + k) for k, cond in enumerate(CONDITIONS)
            for i in range(per_condition)]
