"""Hostile image files: a decompression bomb, files cut short, arbitrary and mutated bytes.

One invariant: every image either comes out as a frame within the pixel cap or is refused with an
ImageError (a clean, typed rejection) before it is decoded; never another exception, never a huge
allocation. The bomb is a real PNG of 30000x30000, written by the small encoder below.
"""
from __future__ import annotations

import logging
import os
import resource
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from drivers.sources.camera import FrameSource
from drivers.sources.frames import CaptureReader, replay_reader
from drivers.sources.imagefiles import ImageError, image_from_bytes, image_size, read_image
from edge.app.decodefiles import decode_path
from edge.common.images import MAX_IMAGE_PIXELS
from edge.decode.reader import make_decoder

from .conftest import ROOT, qr_image


# ---- a hand-written PNG encoder, for images no library would write ----------------------------------
def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def zeros_zlib(n: int, block: int = 1 << 20) -> bytes:
    """The zlib stream of n zero bytes, built without compressing them all: after a full flush deflate
    starts afresh, so one flushed block of zeros can be repeated as it is. Adler-32 of zeros is known."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    z.compress(b"\0" * block)
    z.flush(zlib.Z_FULL_FLUSH)  # the first block may differ; the second is the steady one
    piece = z.compress(b"\0" * block) + z.flush(zlib.Z_FULL_FLUSH)
    body = piece * (n // block) + z.compress(b"\0" * (n % block)) + z.flush()
    return b"\x78\xda" + body + struct.pack(">I", ((n % 65521) << 16) | 1)


def black_png(width: int, height: int) -> bytes:
    """An 8-bit grayscale PNG, all black: each row a filter byte and `width` zeros."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zeros_zlib((width + 1) * height))
            + png_chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(black_png(30000, 30000))
    return path


def test_the_encoder_writes_real_pngs():
    image = image_from_bytes(black_png(300, 200))
    assert image.shape == (200, 300) and not image.any()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_decompression_bomb_is_refused_from_its_header(bomb):
    assert 800_000 < bomb.stat().st_size < 1_000_000  # 875 KB that would decode into 900 MB
    assert image_size(bomb.read_bytes()).width == 30000
    before = peak_rss_mb()
    with pytest.raises(ImageError, match=r"30000x30000 \(900 MP\) is over the 40 MP limit"):
        read_image(bomb)
    assert peak_rss_mb() - before < 200  # nothing near the 900 MB a decode would take


def test_checkpoint_decode_refuses_the_bomb_and_goes_on(bomb, write_qr, cli):
    good = write_qr("good.png", "AFTER-THE-BOMB")
    status, out, err = cli("decode", bomb, good)
    assert status == 1
    assert out == f"{good}\tAFTER-THE-BOMB\n"
    assert f"{bomb}: PNG image of 30000x30000 (900 MP) is over the 40 MP limit" in err


def test_replay_skips_the_bomb_with_a_warning_and_goes_on(bomb, tmp_path, caplog):
    cv2.imwrite(str(tmp_path / "frame2.png"), qr_image("NEXT"))
    listing = tmp_path / "list.txt"
    listing.write_text(f"{bomb}\nframe2.png\n")
    source = FrameSource(replay_reader(str(listing)), name="r")
    source.start()
    with caplog.at_level(logging.WARNING, logger="checkpoint.source"):
        frames = [source.get(1.0), source.get(1.0)]
    assert frames[1] is None and source.finished and source.reader.skipped == 1
    assert [c.text for c in make_decoder("zxing").decode(frames[0].image)] == ["NEXT"]
    assert any(str(bomb) in r.getMessage() and "over the 40 MP limit" in r.getMessage() for r in caplog.records)


def test_opencv_keeps_its_own_cap_as_a_second_guard(bomb):
    """Whichever of the daemon's modules imports cv2 first sets OpenCV's pixel limit before it does."""
    for module in ("edge.decode.reader", "drivers.sources"):
        code = (f"import {module}, cv2, numpy, os\n"
                f"print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'])\n"
                f"try:\n"
                f"    cv2.imdecode(numpy.fromfile({str(bomb)!r}, numpy.uint8), cv2.IMREAD_GRAYSCALE)\n"
                f"except cv2.error as exc:\n"
                f"    print('refused', 'CV_IO_MAX_IMAGE_PIXELS' in str(exc))\n")
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                env={"PATH": "/usr/bin:/bin"}, timeout=120)
        assert result.stdout.split() == [str(MAX_IMAGE_PIXELS), "refused", "True"], result.stderr


def test_a_video_over_the_cap_is_refused_before_its_first_frame(tmp_path):
    from .test_sources import write_video

    video = tmp_path / "clip.avi"
    write_video(video, ["V1", "V2"], size=(320, 320))
    with pytest.raises(ImageError, match=r"video frame of 320x320 .* over the 0.1 MP limit"):
        CaptureReader(str(video), max_pixels=100_000).open()
    with pytest.raises(OSError, match="over the 0.1 MP limit"):
        list(decode_path(str(video), make_decoder("zxing"), max_pixels=100_000))
    reader = CaptureReader(str(video))
    reader.open()
    assert reader.read().shape[:2] == (320, 320)  # within the cap, as before
    reader.close()


def test_an_image_named_like_a_video_is_held_to_the_cap(bomb, tmp_path):
    """FFmpeg opens an image of any name as a one-frame video: its size is checked all the same."""
    big = tmp_path / "big.mp4"
    big.write_bytes(black_png(8000, 6000))
    disguised = tmp_path / "bomb.mp4"
    disguised.write_bytes(bomb.read_bytes())  # too large for FFmpeg to probe: it says 0x0
    decoder = make_decoder("zxing")
    with pytest.raises(OSError, match=r"8000x6000 \(48 MP\) is over the 40 MP limit"):
        list(decode_path(str(big), decoder))
    with pytest.raises(OSError, match="video does not say its frame size"):
        list(decode_path(str(disguised), decoder))
    with pytest.raises(ImageError, match="over the 40 MP limit"):
        FrameSource(replay_reader(str(big)), name="v").start()


def test_a_replayed_video_stops_at_a_frame_over_the_cap(tmp_path, caplog):
    """A stream whose frames outgrow what its header said: the replay ends there, with a warning."""
    from .test_sources import write_video

    video = tmp_path / "clip.avi"
    write_video(video, ["V1", "V2"], size=(320, 320))
    source = FrameSource(CaptureReader(str(video)), name="v")
    source.start()
    source.reader.max_pixels = 100_000  # as if the next frame were larger than the header said
    with caplog.at_level(logging.WARNING, logger="checkpoint.source"):
        assert source.get(1.0) is None
    assert source.finished
    assert any("replay v stopped: video frame of 320x320" in r.getMessage() for r in caplog.records)


def test_an_image_over_a_small_cap_is_refused_in_both_paths(tmp_path, write_qr):
    path = write_qr("big.png", "BIG", size=(400, 400))
    with pytest.raises(OSError, match=r"400x400 .* over the 0.1 MP limit"):
        list(decode_path(str(path), make_decoder("zxing"), max_pixels=100_000))
    reader = replay_reader(str(path))
    reader.max_pixels = 100_000
    assert reader.read() is None and reader.skipped == 1


def test_what_is_not_an_image_file_is_refused_at_once(tmp_path):
    fifo = tmp_path / "frame.png"
    os.mkfifo(fifo)  # no writer: opening it for a blocking read would wait forever
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    cases = [(fifo, "not a file"), (loop, "symbolic link loop"), (tmp_path / "gone.png", "no such file"),
             (tmp_path, "Is a directory")]
    for path, reason in cases:
        with pytest.raises(ImageError, match=reason):
            read_image(path)


# ---- headers by hand: formats OpenCV writes differently, or not at all --------------------------------
def webp_vp8x(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (width - 1).to_bytes(3, "little") + \
        (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def tiff(width: int, height: int, *, tile: int | None = None, bits: int = 8) -> bytes:
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, bits)]
    if tile:
        entries += [(322, 4, 1, tile), (323, 4, 1, tile)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0" * 4
    return b"II*\0" + struct.pack("<I", 8) + ifd


@pytest.mark.parametrize("data, message", [
    (webp_vp8x(16_000_000, 16_000_000), "over the 40 MP limit"),
    (tiff(100_000, 100_000), "over the 40 MP limit"),
    (tiff(64, 64, tile=1 << 15), "tiles of 32768x32768 are larger"),
    (tiff(64, 64, bits=128), "deeper than 64 bits"),
    (b"P5 99999 99999 255\n" + b"\0" * 100, "PNM file is cut short"),
    (b"P5 9999999999999999999999 2 255\n", "PNM header is corrupt"),
    (b"P6\n# comment\n40000 40000\n255\n", "PNM file is cut short"),
    (b"BM" + struct.pack("<IHHIIiiHHI", 0, 0, 0, 54, 40, 30000, -30000, 1, 24, 0), "BMP file is cut short"),
    (b"\xff\xd8\xff\xdb\x00\x43" + b"\0" * 65 + b"\xff\xda\x00\x02", "no frame header"),
    (b"\xff\xd8\xff\xc0\x00\x0b\x08\x75\x30\x75\x30\x01\x01\x11\x00\xff\xda\x00\x02abc",
     "no end-of-image marker"),
    (b"GIF89a" + b"\0" * 20, "not an image of a supported format"),
    (b"", "not an image of a supported format"),
])
def test_hand_made_headers(data, message):
    with pytest.raises(ImageError, match=message):
        image_from_bytes(data)


def test_a_jpeg_trailer_after_its_end_is_allowed():
    ok, jpeg = cv2.imencode(".jpg", qr_image("TRAILER"))
    image = image_from_bytes(jpeg.tobytes() + b"\0" * 100 + b"ftypmp42 a phone's motion clip")
    assert [c.text for c in make_decoder("zxing").decode(image)] == ["TRAILER"]


# ---- property-based: arbitrary and mutated bytes -------------------------------------------------------
SMALL_CAP = 250_000  # the property runs the real decoder on what passes: keep it quick


def encoded(ext: str) -> bytes:
    image = qr_image("MUTANT-1", scale=3)
    if ext == ".ppm":
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


SEEDS = {ext: encoded(ext) for ext in (".png", ".jpg", ".bmp", ".webp", ".tiff", ".pgm", ".ppm")}
MAGICS = [b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", b"\xff\xd8", b"\xff\xd8\xff\xc0", b"BM", b"RIFF\0\0\0\0WEBPVP8 ",
          b"RIFF\xff\xff\xff\x7fWEBPVP8L", b"RIFF\0\0\0\0WEBPVP8X", b"II*\0", b"MM\0*", b"P4 ", b"P5\n", b"P6\t"]


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["cut", "flip", "insert", "huge", "delete"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "cut":
            del data[at:]
        elif kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(max_size=64))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif data:  # a huge number where sizes live: header fields are early in every format
            where = draw(st.integers(0, min(len(data), 64)))
            data[where:where + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff",
                                                          b"\x00\x00\x00\x00", b"\x80\x00\x00\x01"]))
    if draw(st.booleans()) and data.startswith(b"\x89PNG") and len(data) >= 33:
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # a valid IHDR CRC, huge sizes and all
    return bytes(data)


hostile_bytes = st.one_of(
    st.binary(max_size=512),
    st.builds(lambda magic, rest: magic + rest, st.sampled_from(MAGICS), st.binary(max_size=512)),
    st.builds(lambda n: b"P5 " + str(n).encode() + b" " + str(n).encode() + b" 255\n",
              st.integers(0, 10 ** 30)),
    mutated(),
)


def check_image(data: bytes, decoder) -> None:
    try:
        image = image_from_bytes(data, max_pixels=SMALL_CAP)
    except ImageError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert image.dtype == np.uint8 and image.ndim == 2 and image.size <= SMALL_CAP
    assert isinstance(decoder.decode(image), list)


@pytest.fixture(scope="module")
def multipass():
    return make_decoder("multipass", budget_ms=None)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(hostile_bytes)
@example(black_png(30000, 30000)[:4096])
@example(SEEDS[".png"][:-12])
@example(SEEDS[".jpg"][:-2])
def test_any_bytes_give_a_frame_within_the_cap_or_an_image_error(multipass, data):
    check_image(data, multipass)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated())
def test_mutated_files_through_read_image(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("mutant") / "mutant.png"
    path.write_bytes(data)
    try:
        image = read_image(path, max_pixels=SMALL_CAP)
    except ImageError:
        return
    assert image.size <= SMALL_CAP
