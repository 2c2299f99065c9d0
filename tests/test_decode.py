"""Decoding real images and a real video with OpenCV and zxing-cpp (and pyzbar), via the library and the CLI."""
from __future__ import annotations

import json
import sys
import unicodedata

import cv2
import numpy as np
import pytest

from edge.common.model import Code
from edge.common.payload import examine, has_bad_control
from edge.decode.reader import make_decoder

from .conftest import qr_image

VIETNAMESE = "001089012345|Phạm Thu Hương|21/07/1992"


@pytest.fixture(scope="module", params=["multipass", "zxing"])
def zxing(request):
    """The default decoder and zxing-cpp alone: every reading behaviour holds for both. What a decoder can
    read must not depend on how busy the machine is: multipass gets no time budget here."""
    return make_decoder(request.param, budget_ms=None)


def texts(decoder, image):
    return [code.text for code in decoder.decode(image)]


def test_vietnamese_utf8_comes_out_exactly(zxing):
    [code] = zxing.decode(qr_image(VIETNAMESE))
    assert code.text == VIETNAMESE
    assert code.data == VIETNAMESE.encode("utf-8")


def test_dark_mode_code_is_read(zxing):
    assert texts(zxing, qr_image("VN-HC-2026-000731", dark=True)) == ["VN-HC-2026-000731"]


def test_colour_image_is_read(zxing):
    colour = cv2.cvtColor(qr_image("colour"), cv2.COLOR_GRAY2BGR)
    colour[..., 2] = 255 - colour[..., 2] // 4  # a reddish tint
    assert texts(zxing, colour) == ["colour"]


def test_every_code_in_a_frame(zxing):
    canvas = np.full((400, 900), 200, np.uint8)
    qr_image("first", canvas=canvas, at=(40, 40))
    qr_image("second", canvas=canvas, at=(40, 500))
    assert sorted(texts(zxing, canvas)) == ["first", "second"]


def test_frame_without_code_gives_nothing(zxing):
    noise = np.random.default_rng(3).integers(0, 255, (720, 1280), dtype=np.uint8)
    assert zxing.decode(noise) == []


def test_binary_payload_keeps_exact_bytes_and_no_text(zxing):
    payload = b"\x00\xff\xfe raw \x1b[2J"
    [code] = zxing.decode(qr_image(payload))
    assert code.data == payload and code.text is None
    text, malformed = examine(code, 2048)
    assert malformed and text == "\\x00\\xff\\xfe raw \\x1b[2J"


def test_latin1_text_is_transcoded(zxing):
    # QR's default charset is ISO-8859-1: bytes that are not UTF-8 but still declared text.
    [code] = zxing.decode(qr_image("café", encoding="iso-8859-1"))
    assert code.data == b"caf\xe9" and code.text == "café"


def test_text_with_control_characters_in_a_guessed_charset_is_transcoded(zxing):
    # Like a China Mobile code: control characters in byte mode, then a kanji-mode segment, whose mode says
    # its charset (Shift_JIS here; GB2312 in a hanzi-mode segment). Its bytes are not UTF-8.
    from segno import consts

    [code] = zxing.decode(qr_image([(b"\x01\x10AD:SUB:", consts.MODE_BYTE), ("阿", consts.MODE_KANJI),
                                    (b";;", consts.MODE_BYTE)]))
    assert code.data == b"\x01\x10AD:SUB:\x88\xa2;;" and code.text == "\x01\x10AD:SUB:阿;;"
    text, malformed = examine(code, 2048)
    assert malformed and text == "\\x01\\x10AD:SUB:\\x88\\xa2;;"  # controls: malformed, recorded as bytes


def blurred_frame(text: str, *, length: int = 13, angle: float = 35, at=(200, 420), rng_seed: int = 5):
    """A 1280x720 frame: a cluttered scene, one code, a straight motion blur over all, JPEG like a USB camera."""
    rng = np.random.default_rng(rng_seed)
    scene = cv2.resize(rng.integers(60, 200, (9, 16), dtype=np.uint8), (1280, 720), interpolation=cv2.INTER_CUBIC)
    frame = qr_image(text, scale=5, at=at, canvas=scene)
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1 / length
    rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), angle, 1)
    frame = cv2.filter2D(frame, -1, cv2.warpAffine(kernel, rot, (length, length)))
    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE)


def test_multipass_reads_a_motion_blurred_code_that_zxing_misses():
    text = "https://tokhaiyte.vn/c/001089012345?h=9f3c2a1b7e6d5c4b"
    frame = blurred_frame(text)
    assert make_decoder("zxing").decode(frame) == []  # the premise: one pass of zxing-cpp cannot
    multipass = make_decoder("multipass", budget_ms=None)
    assert texts(multipass, frame) == [text]
    assert multipass.recovered == {"rescaled": 0, "unwarped": 0, "deblurred": 1}
    assert make_decoder("multipass", budget_ms=0).decode(frame) == []  # no budget, no second pass


class PassClock:
    """Seconds that advance by one at each reading: the decoder reads its clock before and after the first
    pass and once before each second pass, so a budget of n.5 s allows exactly n second passes, however
    loaded the machine is."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_multipass_stops_its_second_passes_when_the_budget_is_spent():
    from edge.decode.multipass import MultiPassDecoder

    text = "https://tokhaiyte.vn/c/001089012345?h=9f3c2a1b7e6d5c4b"
    frame = blurred_frame(text)  # read only by the third pass (deblurred) on its region
    two = MultiPassDecoder(budget_s=2.5, clock=PassClock())
    assert two.decode(frame) == []
    assert two.tried == {"rescaled": 1, "unwarped": 1, "deblurred": 0}
    three = MultiPassDecoder(budget_s=3.5, clock=PassClock())
    assert texts(three, frame) == [text]
    assert three.tried == {"rescaled": 1, "unwarped": 1, "deblurred": 1}
    none = MultiPassDecoder(budget_s=0, clock=PassClock())
    assert none.decode(frame) == [] and sum(none.tried.values()) == 0


@pytest.mark.parametrize("dark", [False, True])
def test_multipass_reads_codes_on_curved_paper_that_zxing_misses(dark):
    from bench.synth import (
        frame,  # paper round a cylinder, seen from the front: bench and test share it
    )

    zxing, multipass = make_decoder("zxing"), make_decoder("multipass", budget_ms=None)
    for seed in (100, 103, 105):
        sample = frame("curved", seed)
        image = 255 - sample.image if dark else sample.image  # a phone in dark mode shows it inverted
        assert zxing.decode(image) == []
        assert texts(multipass, image) == sample.texts
    assert multipass.recovered["unwarped"] >= 2  # one seed the 2x pass reads first


def test_multipass_looks_again_where_a_second_code_was_left_unread():
    sharp, smeared = "VN-HC-2026-000731", "001089012345|Phạm Thu Hương|21/07/1992"
    frame = blurred_frame(smeared, at=(200, 700))
    qr_image(sharp, scale=5, at=(200, 80), canvas=frame)  # in focus, away from the blurred one
    assert texts(make_decoder("zxing"), frame) == [sharp]
    assert sorted(texts(make_decoder("multipass", budget_ms=None), frame)) == sorted([sharp, smeared])


@pytest.mark.parametrize("case", ["noise", "modules", "stripes", "tiny", "thin", "flat", "colour-noise"])
def test_multipass_never_reports_a_code_where_there_is_none(case):
    """Busy texture sends the second passes to work; they must still find nothing, and never fail."""
    rng = np.random.default_rng(11)
    if case == "noise":
        image = rng.integers(0, 255, (720, 1280), dtype=np.uint8)
    elif case == "modules":  # QR-like squares everywhere, no finder patterns, smeared like a moving camera
        cells = rng.integers(0, 2, (90, 160), dtype=np.uint8) * 255
        image = cv2.blur(cv2.resize(cells, (1280, 720), interpolation=cv2.INTER_NEAREST), (11, 1))
    elif case == "stripes":
        image = np.tile((np.arange(1280) // 3 % 2 * 255).astype(np.uint8), (720, 1))
    elif case == "tiny":
        image = np.zeros((1, 1), np.uint8)
    elif case == "thin":
        image = rng.integers(0, 255, (3, 4000), dtype=np.uint8)
    elif case == "flat":
        image = np.full((720, 1280), 128, np.uint8)
    else:
        image = rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    assert make_decoder("multipass", budget_ms=None).decode(image) == []


def test_pyzbar_is_selectable(zxing):
    pyzbar = make_decoder("pyzbar")
    assert texts(pyzbar, qr_image("ASCII-123")) == ["ASCII-123"]


@pytest.mark.parametrize("code, malformed", [
    (Code(b"ok", "ok"), False),
    (Code(b"", ""), True),
    (Code(b"   ", "   "), True),
    (Code(b"x" * 10_000, "x" * 10_000), True),
    (Code(b"line1\r\nline2\tend", "line1\r\nline2\tend"), False),
    (Code(b"esc\x1b[31m", "esc\x1b[31m"), True),
    (Code(b"nul\x00", "nul\x00"), True),
    (Code(b"\xc3\x28", None), True),
])
def test_payload_rules(code, malformed):
    text, bad = examine(code, 2048)
    assert bad is malformed
    assert len(text.encode()) <= 4 * 2048  # capped (escapes may lengthen it a little)


def test_decode_cli_images_video_and_unreadable(tmp_path, write_qr, cli):
    first = write_qr("one.png", VIETNAMESE)
    second = write_qr("two.jpg", "TWO", dark=True)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (400, 400), False)
    blank = np.full((400, 400), 200, np.uint8)
    frames = [blank] * 3 + [qr_image("IN-VIDEO", size=(400, 400))] * 5 + [blank] * 30 + \
             [qr_image("IN-VIDEO", size=(400, 400))] * 3
    for f in frames:
        writer.write(f)
    writer.release()

    status, out, err = cli("decode", "--json", first, broken, second, tmp_path / "missing.png", video)
    assert status == 1
    assert "broken.png" in err and "missing.png" in err
    found = [json.loads(line) for line in out.splitlines()]
    assert [(f["path"], f["text"]) for f in found] == [
        (str(first), VIETNAMESE), (str(second), "TWO"), (str(video), "IN-VIDEO"), (str(video), "IN-VIDEO")]
    # Consecutive frames are one sighting; the code back after 3 s out of sight is a new one.
    assert [f["frame"] for f in found[2:]] == [3, 38]
    assert found[0]["hex"] == VIETNAMESE.encode().hex()


def test_decode_cli_plain_output_escapes_control_characters(write_qr, cli):
    path = write_qr("multi.png", "a\nb")
    status, out, _ = cli("decode", path)
    assert status == 0 and out == f"{path}\ta\\x0ab\n"


def test_a_bad_control_character_is_any_of_unicode_category_cc_but_tab_cr_lf():
    for point in range(sys.maxunicode + 1):
        ch = chr(point)
        assert has_bad_control(f"a{ch}b") == (unicodedata.category(ch) == "Cc" and ch not in "\t\r\n"), hex(point)


def test_decode_cli_reports_a_cut_short_image_and_a_symbolic_link_loop(tmp_path, write_qr, cli):
    whole = write_qr("whole.jpg", "WHOLE")
    data = whole.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[:len(data) * 3 // 4])  # libjpeg alone would only warn and return a grey-tailed image
    no_iend = tmp_path / "cut.png"
    no_iend.write_bytes(write_qr("whole.png", "WHOLE").read_bytes()[:-12])
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    status, out, err = cli("decode", whole, cut, no_iend, loop)
    assert status == 1
    assert out == f"{whole}\tWHOLE\n"
    assert f"{cut}: JPEG is cut short (no end-of-image marker)" in err
    assert f"{no_iend}: PNG file is cut short" in err
    assert f"{loop}: symbolic link loop" in err
