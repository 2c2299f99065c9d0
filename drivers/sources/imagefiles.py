"""Image files read safely: the size a format's header declares is checked against a pixel cap before
anything is decoded, and a file that is cut short is refused rather than decoded into a half-grey frame.

Every image file, whoever reads it (the replay source, `checkpoint decode`), goes through read_image().
"""
from __future__ import annotations

import errno
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from drivers.sources.base import SourceError
from edge.common.images import MAX_IMAGE_PIXELS
from edge.common.textsafe import for_log

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}


class ImageError(SourceError):
    """An image refused: not a supported format, cut short, corrupt, or larger than the pixel cap."""


@dataclass(frozen=True, slots=True)
class ImageSize:
    format: str
    width: int
    height: int


def max_file_bytes(max_pixels: int) -> int:
    """The largest image file read into memory: four bytes a pixel (an uncompressed 32-bit BMP) and room
    for metadata. Anything larger cannot be an image within the cap."""
    return 4 * max_pixels + (1 << 20)


def os_reason(exc: OSError) -> str:
    """A short reason for a file that cannot be read; a symbolic link loop is not a missing file."""
    reasons = {errno.ENOENT: "no such file", errno.ELOOP: "symbolic link loop"}
    return reasons.get(exc.errno or 0, exc.strerror or str(exc))


def check_pixels(width: int, height: int, max_pixels: int, what: str = "image") -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{what} has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(f"{what} of {width}x{height} ({width * height / 1e6:.0f} MP) is over the "
                         f"{max_pixels / 1e6:g} MP limit; refused without decoding it")


def read_image(path: str | Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """An image file in grayscale (the decoder's input); raises ImageError with a plain reason."""
    limit = max_file_bytes(max_pixels)
    try:
        # Non-blocking: a FIFO named like an image must not hold the reader until someone writes to it.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ImageError("not a file")
            if info.st_size > limit:
                raise ImageError(f"file of {info.st_size} bytes is larger than any image within the "
                                 f"{max_pixels / 1e6:g} MP limit")
            data = f.read(limit + 1)
    except OSError as exc:
        raise ImageError(os_reason(exc)) from None
    if len(data) > limit:  # grew while being read
        raise ImageError("file is larger than any image within the limit")
    return image_from_bytes(data, max_pixels=max_pixels)


def image_from_bytes(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode an image held in memory, after its header passed the checks of image_size()."""
    size = image_size(data)
    check_pixels(size.width, size.height, max_pixels, f"{size.format} image")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    except cv2.error as exc:  # OpenCV's own limits (OPENCV_IO_MAX_IMAGE_PIXELS, tile sizes) are assertions
        raise ImageError(f"{size.format} image refused by OpenCV: {for_log(str(exc).strip())}") from None
    if image is None:
        raise ImageError(f"{size.format} image is corrupt or cut short")
    check_pixels(image.shape[1], image.shape[0], max_pixels, f"{size.format} image")
    return image


# ---- image headers ---------------------------------------------------------------------------------
# OpenCV has no header-only read, so the size is taken from each format's header here. A format that is
# not listed is refused: an image whose size cannot be checked first is never decoded.

def image_size(data: bytes) -> ImageSize:
    """The format and size an image's header declares; raises ImageError when the header is not one of a
    supported format, is inconsistent, or the file is cut short (PNG without IEND, JPEG without EOI)."""
    head = bytes(data[:12])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        fmt, parse = "PNG", _png
    elif head.startswith(b"\xff\xd8"):
        fmt, parse = "JPEG", _jpeg
    elif head.startswith(b"BM"):
        fmt, parse = "BMP", _bmp
    elif head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        fmt, parse = "WebP", _webp
    elif head.startswith((b"II*\x00", b"MM\x00*")):
        fmt, parse = "TIFF", _tiff
    elif len(head) > 2 and head[0:1] == b"P" and head[1:2] in b"123456" and head[2:3] in _NETPBM_SPACE:
        fmt, parse = "PNM", _netpbm
    else:
        raise ImageError("not an image of a supported format (PNG, JPEG, BMP, WebP, TIFF, PGM/PPM)")
    try:
        width, height = parse(data)
    except struct.error:
        raise ImageError(f"{fmt} header is cut short") from None
    return ImageSize(fmt, width, height)


def _need(data: bytes, end: int, fmt: str) -> None:
    if end > len(data):
        raise ImageError(f"{fmt} file is cut short")


def _png(data: bytes) -> tuple[int, int]:
    """IHDR gives the size; the chunks must run, length by length, to an IEND (libpng checks the CRCs and
    the zlib stream, and OpenCV then returns nothing)."""
    length, kind = struct.unpack_from(">I4s", data, 8)
    if kind != b"IHDR" or length != 13:
        raise ImageError("PNG does not start with its IHDR header")
    width, height = struct.unpack_from(">II", data, 16)
    pos = 8
    while True:
        _need(data, pos + 12, "PNG")
        length, kind = struct.unpack_from(">I4s", data, pos)
        pos += 12 + length
        _need(data, pos, "PNG")
        if kind == b"IEND":
            return width, height


# Start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8 and CC are not frames.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(data: bytes) -> tuple[int, int]:
    """The frame header (SOFn) gives the size; after the first scan an end-of-image marker must follow.
    Inside a scan 0xFF is always stuffed, so FF D9 there is the real end; a camera's trailer after it is
    allowed."""
    pos, size = 2, None
    while True:
        _need(data, pos + 2, "JPEG")
        if data[pos] != 0xFF:
            raise ImageError("JPEG is corrupt (a marker was expected)")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in (0xD8, 0xD9):
            raise ImageError("JPEG is corrupt (image ends before its first scan)")
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2:
            raise ImageError("JPEG is corrupt (bad segment length)")
        if marker in _SOF and size is None:
            height, width = struct.unpack_from(">HH", data, pos + 5)
            size = (width, height)
        pos += 2 + length
        if marker == 0xDA:
            break
    if size is None:
        raise ImageError("JPEG has no frame header before its first scan")
    _need(data, pos, "JPEG")
    if data.rfind(b"\xff\xd9", pos) < 0:
        raise ImageError("JPEG is cut short (no end-of-image marker)")
    return size


def _bmp(data: bytes) -> tuple[int, int]:
    (offset, header) = struct.unpack_from("<II", data, 10)
    if header == 12:  # OS/2 core header: 16-bit sizes
        width, height, _, bits = struct.unpack_from("<HHHH", data, 18)
        compression = 0
    elif header >= 40:
        width, height, _, bits, compression = struct.unpack_from("<iiHHI", data, 18)
        height = abs(height)  # negative: rows stored top-down
    else:
        raise ImageError("BMP has an unknown header")
    if width > 0 and height > 0 and compression in (0, 3, 6):  # uncompressed: the rows must all be there
        row = (bits * width + 31) // 32 * 4
        _need(data, offset + row * height, "BMP")
    return width, height


def _webp(data: bytes) -> tuple[int, int]:
    (riff,) = struct.unpack_from("<I", data, 4)
    _need(data, 8 + riff, "WebP")
    kind = bytes(data[12:16])
    if kind == b"VP8 ":
        _need(data, 30, "WebP")
        if bytes(data[23:26]) != b"\x9d\x01\x2a":
            raise ImageError("WebP (VP8) frame header is corrupt")
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L":
        _need(data, 25, "WebP")
        if data[20] != 0x2F:
            raise ImageError("WebP (lossless) header is corrupt")
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":
        _need(data, 30, "WebP")
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise ImageError("WebP holds no image chunk OpenCV reads")


_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_BITS, _TIFF_SAMPLES, _TIFF_TILE_W, _TIFF_TILE_H = 256, 257, 258, 277, 322, 323


def _tiff(data: bytes) -> tuple[int, int]:
    """The first directory's size (the page OpenCV reads). Tiles and samples are bounded too: OpenCV
    allocates a whole tile, in the file's own depth, before converting it."""
    order = "<" if data[:2] == b"II" else ">"
    (where,) = struct.unpack_from(order + "I", data, 4)
    (count,) = struct.unpack_from(order + "H", data, where)
    tags: dict[int, int] = {}
    for i in range(count):
        entry = where + 2 + 12 * i
        tag, kind, n = struct.unpack_from(order + "HHI", data, entry)
        if kind == 3:  # SHORT: for BitsPerSample the first of n values (one a sample, all equal in practice)
            at = entry + 8 if n <= 2 else struct.unpack_from(order + "I", data, entry + 8)[0]
            (value,) = struct.unpack_from(order + "H", data, at)
        elif kind == 4 and n == 1:
            (value,) = struct.unpack_from(order + "I", data, entry + 8)
        else:
            continue
        tags.setdefault(tag, value)
    if _TIFF_WIDTH not in tags or _TIFF_HEIGHT not in tags:
        raise ImageError("TIFF does not say its size")
    width, height = tags[_TIFF_WIDTH], tags[_TIFF_HEIGHT]
    if tags.get(_TIFF_BITS, 8) * tags.get(_TIFF_SAMPLES, 1) > 64:
        raise ImageError("TIFF pixels are deeper than 64 bits")
    tile_w, tile_h = tags.get(_TIFF_TILE_W, 1), tags.get(_TIFF_TILE_H, 1)
    if tile_w * tile_h > max(width * height, 1 << 16):
        raise ImageError(f"TIFF tiles of {tile_w}x{tile_h} are larger than its {width}x{height} image")
    return width, height


_NETPBM_SPACE = b" \t\r\n\x0b\x0c"


def _netpbm(data: bytes) -> tuple[int, int]:
    """P1-P6: width, height and (but for bitmaps) maxval, as decimal text between spaces and # comments."""
    kind = data[1:2]
    fields: list[int] = []
    pos = 2
    while len(fields) < (2 if kind in b"14" else 3):
        while pos < len(data) and (data[pos:pos + 1] in _NETPBM_SPACE or data[pos:pos + 1] == b"#"):
            if data[pos:pos + 1] == b"#":
                end = data.find(b"\n", pos)
                pos = len(data) if end < 0 else end
            pos += 1
        start = pos
        while pos < len(data) and data[pos:pos + 1].isdigit() and pos - start < 10:
            pos += 1
        if pos == start or data[pos:pos + 1] not in _NETPBM_SPACE or pos >= len(data):
            raise ImageError("PNM header is corrupt or cut short")
        fields.append(int(data[start:pos]))
    width, height = fields[0], fields[1]
    if kind in b"2356" and not 0 < fields[2] < 65536:
        raise ImageError("PNM maxval is out of range")
    if kind in b"456":  # binary rasters: every row must be there
        depth = 1 if kind == b"4" else (1 if fields[2] < 256 else 2) * (3 if kind == b"6" else 1)
        row = (width + 7) // 8 if kind == b"4" else width * depth
        _need(data, pos + 1 + row * height, "PNM")
    return width, height
