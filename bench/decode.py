"""Decoding benchmark: our decoder beside raw zxing-cpp and raw pyzbar, in one run.

    python -m bench.decode [--per-condition 30] [--photos ../shared/datasets/qr-photos]

Synthetic 1280x720 JPEG checkpoint frames (bench/synth.py) per condition, and the real photos at 0, 90,
180 and 270 degrees. A frame counts as read when every code in it was read; a text that is not in the
frame is a wrong text; a code reported on a frame with none is a false positive.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from bench.synth import CONDITIONS, frames
from edge.decode.reader import make_decoder

DEFAULT_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "qr-photos"


# The raw libraries as a user building a QR checkpoint would call them: QR codes only, defaults otherwise.
def raw_zxing():
    import zxingcpp

    qr = zxingcpp.BarcodeFormat.QRCode
    return lambda image: [b.text for b in zxingcpp.read_barcodes(image, formats=qr)]


def raw_pyzbar():
    from pyzbar import pyzbar

    qr = [pyzbar.ZBarSymbol.QRCODE]
    return lambda image: [s.data.decode("utf-8", "replace") for s in pyzbar.decode(image, symbols=qr)]


def ours():
    decoder = make_decoder("multipass")
    return lambda image: [c.text for c in decoder.decode(image) if c.text is not None]


DECODERS = {"ours": ours, "zxing-cpp": raw_zxing, "pyzbar": raw_pyzbar}


def loose(text: str) -> str:
    """The photo set's comparison: CRLF folded to LF, trailing spaces at line ends dropped."""
    return "\n".join(line.rstrip(" ") for line in text.replace("\r\n", "\n").split("\n")).strip("\n")


@dataclass
class Tally:
    cases: int = 0
    read: int = 0
    wrong: int = 0
    false_pos: int = 0
    ms_code: list[float] = field(default_factory=list)
    ms_empty: list[float] = field(default_factory=list)

    def rate(self) -> float:
        return 100.0 * self.read / self.cases if self.cases else 0.0


def run(decode, image, expected: list[str], tally: Tally, *, any_of: bool = False, compare=lambda t: t) -> None:
    started = time.perf_counter()
    got = decode(image)
    elapsed = (time.perf_counter() - started) * 1000
    got_set = {compare(t) for t in got}
    want = {compare(t) for t in expected}
    tally.cases += 1
    if want:
        tally.ms_code.append(elapsed)
        tally.read += bool(got_set & want) if any_of else want <= got_set
        if not any_of:
            tally.wrong += len(got_set - want)
    else:
        tally.ms_empty.append(elapsed)
        tally.read += not got_set
        tally.false_pos += len(got_set)


def photos(folder: Path):
    for text_file in sorted(folder.glob("*/*.txt")):
        image_file = next((p for p in text_file.parent.glob(text_file.stem + ".*") if p.suffix != ".txt"), None)
        image = cv2.imread(str(image_file), cv2.IMREAD_GRAYSCALE) if image_file else None
        if image is None:
            continue
        text = text_file.read_text(encoding="utf-8")
        for turn in (None, cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_COUNTERCLOCKWISE):
            yield (image if turn is None else cv2.rotate(image, turn)), text


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-condition", type=int, default=30)
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    args = parser.parse_args(argv)

    decoders = {name: make() for name, make in DECODERS.items()}
    samples = frames(args.per_condition)
    by_condition = {name: {c: Tally() for c in CONDITIONS} for name in decoders}
    names = list(decoders)
    for i, sample in enumerate(samples):
        # Each decoder goes first on an equal share of frames: the first to touch a frame pays its cache misses.
        for name in names[i % len(names):] + names[:i % len(names)]:
            run(decoders[name], sample.image, sample.texts, by_condition[name][sample.condition])

    print(f"Synthetic 1280x720 JPEG checkpoint frames, {args.per_condition} per condition "
          f"({len(samples)} frames); read % (wrong texts / false positives)")
    print(f"{'condition':<12}" + "".join(f"{n:>22}" for n in names))
    for cond in CONDITIONS:
        cells = []
        for n in names:
            t = by_condition[n][cond]
            extra = t.false_pos if cond == "none" else t.wrong
            cells.append(f"{t.rate():6.1f} % ({extra})")
        print(f"{cond:<12}" + "".join(f"{c:>22}" for c in cells))
    totals = {}
    for n in names:
        total = Tally()
        for t in by_condition[n].values():
            total.cases += t.cases
            total.read += t.read
            total.wrong += t.wrong
            total.false_pos += t.false_pos
            total.ms_code += t.ms_code
            total.ms_empty += t.ms_empty
        totals[n] = total
    print(f"{'overall':<12}" + "".join(f"{totals[n].rate():6.1f} %{'':>12}" for n in names))
    print(f"{'wrong texts':<12}" + "".join(f"{totals[n].wrong:>22}" for n in names))
    print(f"{'false pos.':<12}" + "".join(f"{totals[n].false_pos:>22}" for n in names))
    print(f"{'ms, code':<12}" + "".join(f"{median(totals[n].ms_code):>19.2f} ms" for n in names))
    print(f"{'ms, no code':<12}" + "".join(f"{median(totals[n].ms_empty):>19.2f} ms" for n in names))
    for label, times in (("x, code", lambda t: t.ms_code), ("x, no code", lambda t: t.ms_empty)):
        base = median(times(totals["zxing-cpp"]))
        print(f"{label:<12}" + "".join(f"{median(times(totals[n])) / base:>21.2f}x" for n in names))

    if not args.photos.is_dir():
        print(f"\nReal photos: {args.photos} not found, skipped")
        return
    photo_tally = {n: Tally() for n in names}
    any_tally = Tally()
    for i, (image, text) in enumerate(photos(args.photos)):
        for n in names[i % len(names):] + names[:i % len(names)]:
            run(decoders[n], image, [text], photo_tally[n], any_of=True, compare=loose)
        got_any = {loose(t) for n in names if n != "ours" for t in decoders[n](image)}
        any_tally.cases += 1
        any_tally.read += loose(text) in got_any
    print(f"\nReal photos ({args.photos}), each at 0/90/180/270 degrees: {any_tally.cases} cases")
    print(f"{'':<12}" + "".join(f"{n:>22}" for n in names) + f"{'any raw library':>22}")
    print(f"{'read':<12}" + "".join(f"{photo_tally[n].rate():>20.1f} %" for n in names)
          + f"{any_tally.rate():>20.1f} %")
    print(f"{'ms/image':<12}" + "".join(f"{median(photo_tally[n].ms_code):>19.2f} ms" for n in names))


if __name__ == "__main__":
    main()
