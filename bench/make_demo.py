"""Writes the demo's sample frames and list: `python -m bench.make_demo [DIR]` (default config/demo).

Each frame shows one traveller's code the way a phone or a printed pass shows it; list.csv says who is
allowed and who is not, so the demo walks through allow, deny and (on its second loop) review.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from bench.synth import qr_modules

# (file stem, payload, dark-mode screen, list row or None)
SAMPLES = [
    ("01-allow", "079203001234|Nguyễn Văn An|12/03/1989", False, "allow,Nguyễn Văn An,,"),
    ("02-allow-vietnamese", "001089012345|Phạm Thu Hương|21/07/1992", False, "allow,Phạm Thu Hương,,"),
    ("03-allow-dark-mode", "VN-HC-2026-000731", True, "allow,Health declaration 731,,"),
    ("04-deny-listed", "079199004321|Trần Thị Bình|02/11/1979", False, "deny,Trần Thị Bình (turned back),,"),
    ("05-not-listed", "UNKNOWN-VISITOR-42", False, None),
    ("06-expired", "079180005555|Lê Văn Cường|30/01/1980", False, "allow,Lê Văn Cường,2021-01-01,2021-12-31"),
    ("07-not-yet-valid", "VN-HC-2099-000001", True, "allow,Future pass,2099-01-01,"),
    ("08-malformed-binary", b"\x00\xffBIN\x1b[2J", False, None),  # raw bytes, a terminal escape among them
]


def frame(text: str | bytes, dark: bool) -> np.ndarray:
    code = qr_modules(text, error="q")
    if dark:
        code = 255 - code
    scale = max(1, 300 // code.shape[0])
    big = cv2.resize(code, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    canvas = np.full((480, 640), 20 if dark else 150, np.uint8)
    y, x = (480 - big.shape[0]) // 2, (640 - big.shape[1]) // 2
    canvas[y:y + big.shape[0], x:x + big.shape[1]] = big
    return canvas


def main(out: str = "config/demo") -> None:
    folder = Path(out)
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    rows = ["code,action,label,valid_from,valid_until"]
    for stem, text, dark, row in SAMPLES:
        cv2.imwrite(str(folder / "frames" / f"{stem}.png"), frame(text, dark), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if row is not None:
            rows.append(f'"{text}",{row}')
    (folder / "list.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:])
