"""The largest image ever decoded, and OpenCV told so before it is first imported.

A 12 MP Pi camera still (4056x3040) fits three times, while a decompression bomb (an 875 KB PNG of 30000x30000
wants 900 MB) does not. Image readers check it from the file's header before decoding
(drivers/sources/imagefiles.py); OpenCV's own limit, read from the environment once when cv2 is first imported,
is the second guard, so it is set here and this module is imported by edge/__init__.py and drivers/__init__.py,
before any module of ours can import cv2.
"""
from __future__ import annotations

import os

MAX_IMAGE_PIXELS = 40_000_000
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))
