"""The decoder's second-pass budget follows the frame interval: what the camera's rate leaves after the
first pass, capped, never negative. Time is a clock the test drives, so nothing depends on the machine's load."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.sources.base import Frame, LatestSlot, SourceStats
from drivers.sources.camera import FrameSource
from drivers.sources.frames import CaptureReader, replay_reader
from drivers.sources.lines import LinesSource
from drivers.sources.picamera import PiCameraReader
from edge.decode.multipass import FRAME_MARGIN, MultiPassDecoder
from edge.decode.reader import make_decoder
from edge.settings.schema import parse_settings

from .conftest import qr_image
from .test_decode import blurred_frame, texts

TEXT = "https://tokhaiyte.vn/c/001089012345?h=9f3c2a1b7e6d5c4b"  # read only by the third second pass


@pytest.fixture(scope="module")
def hard_frame():
    return blurred_frame(TEXT)


class FrameClock:
    """Seconds: 0 before the first pass, `first_pass` after it, then one more at each reading. The decoder
    reads its clock before and after the first pass and before each second pass, so a budget of n.5 s
    allows exactly n second passes."""

    def __init__(self, first_pass: float):
        self.first_pass, self.readings = first_pass, 0

    def __call__(self) -> float:
        self.readings += 1
        return 0.0 if self.readings == 1 else self.first_pass + (self.readings - 2)


def decode_once(frame, *, budget_s, interval, first_pass):
    decoder = MultiPassDecoder(budget_s=budget_s, frame_interval_s=interval, clock=FrameClock(first_pass))
    return texts(decoder, frame), decoder


def test_the_budget_is_what_the_interval_leaves_after_the_first_pass(hard_frame):
    usable = 5.0 * (1 - FRAME_MARGIN)  # a 5 s interval leaves 4 s to decode in
    read, quick = decode_once(hard_frame, budget_s=100.0, interval=5.0, first_pass=0.5)
    assert quick.last_budget_s == pytest.approx(usable - 0.5)  # 3.5 s: three second passes, the third reads it
    assert read == [TEXT] and quick.tried == {"rescaled": 1, "unwarped": 1, "deblurred": 1}
    read, slow = decode_once(hard_frame, budget_s=100.0, interval=5.0, first_pass=1.5)
    assert slow.last_budget_s == pytest.approx(usable - 1.5)  # a slower first pass leaves two
    assert read == [] and slow.tried == {"rescaled": 1, "unwarped": 1, "deblurred": 0}


def test_a_first_pass_longer_than_the_interval_leaves_no_budget_never_a_negative_one(hard_frame):
    read, behind = decode_once(hard_frame, budget_s=100.0, interval=5.0, first_pass=7.0)
    assert behind.last_budget_s == 0.0
    assert read == [] and sum(behind.tried.values()) == 0


def test_a_long_interval_is_capped_by_budget_ms(hard_frame):
    read, capped = decode_once(hard_frame, budget_s=2.5, interval=1000.0, first_pass=0.5)
    assert capped.last_budget_s == 2.5
    assert read == [] and capped.tried == {"rescaled": 1, "unwarped": 1, "deblurred": 0}


@pytest.mark.parametrize("interval", [None, 0, 0.0, -1.0, math.nan, lambda: None, lambda: 0])
def test_no_interval_means_the_cap_alone(hard_frame, interval):
    """A scanner or an unpaced replay has no frame interval: the budget is budget_ms, as with 'fixed'."""
    read, fixed = decode_once(hard_frame, budget_s=3.5, interval=interval, first_pass=50.0)
    assert fixed.last_budget_s == 3.5 and read == [TEXT]
    read, unlimited = decode_once(hard_frame, budget_s=None, interval=interval, first_pass=50.0)
    assert unlimited.last_budget_s is None and read == [TEXT]
    read, none = decode_once(hard_frame, budget_s=0, interval=interval, first_pass=0.0)
    assert none.last_budget_s == 0 and read == [] and sum(none.tried.values()) == 0


def test_an_unlimited_cap_takes_all_the_interval_leaves(hard_frame):
    read, decoder = decode_once(hard_frame, budget_s=None, interval=5.0, first_pass=1.5)
    assert decoder.last_budget_s == pytest.approx(5.0 * (1 - FRAME_MARGIN) - 1.5) and read == []


def test_the_interval_is_read_again_for_every_frame(hard_frame):
    """A camera's rate changes (dim light lengthens exposure): a function is asked at each frame."""
    rates = iter([5.0, 2.0, None])
    clock = FrameClock(1.0)
    decoder = MultiPassDecoder(budget_s=10.0, frame_interval_s=lambda: next(rates), clock=clock)
    budgets = []
    for _ in range(3):
        clock.readings = 0
        decoder.decode(hard_frame)
        budgets.append(decoder.last_budget_s)
    assert budgets == pytest.approx([5.0 * (1 - FRAME_MARGIN) - 1.0, 2.0 * (1 - FRAME_MARGIN) - 1.0, 10.0])


def test_make_decoder_follows_the_budget_setting():
    frame_budget = make_decoder("multipass", 20, budget="frame", frame_interval_s=lambda: 0.1)
    assert frame_budget.interval() == 0.1 and frame_budget.budget(0.0, 0.075) == pytest.approx(0.005)
    fixed = make_decoder("multipass", 20, budget="fixed", frame_interval_s=lambda: 0.1)
    assert fixed.interval() is None and fixed.budget(0.0, 0.075) == pytest.approx(0.020)
    assert make_decoder("zxing", budget="frame", frame_interval_s=0.1).name == "zxing"  # one pass: no budget


finite = st.floats(min_value=0, max_value=1e6, allow_nan=False)
any_float = st.one_of(st.floats(), st.integers(min_value=-(10 ** 30), max_value=10 ** 30), st.none())


@given(cap=st.one_of(st.none(), finite), interval=any_float, start=finite, spent=finite)
def test_the_budget_is_never_negative_never_over_the_cap_never_past_the_frame(cap, interval, start, spent):
    decoder = MultiPassDecoder.__new__(MultiPassDecoder)  # the arithmetic alone: no zxing needed
    decoder.budget_s, decoder.frame_interval_s = cap, interval
    first_done = start + spent
    spent = first_done - start  # what the clock's two readings say, rounding and all
    budget = decoder.budget(start, first_done)
    has_interval = interval is not None and interval > 0
    if cap is None and not has_interval:
        assert budget is None
        return
    assert budget is not None and budget >= 0
    if cap is not None:
        assert budget <= cap
    if has_interval and math.isfinite(interval):
        assert budget <= max(0.0, interval * (1 - FRAME_MARGIN) - spent) + 1e-9 * interval


# ---- what sources say of their rate ---------------------------------------------------------------------
def test_a_paced_replay_has_its_interval_and_a_pulled_one_none(tmp_path):
    image = tmp_path / "a.png"
    import cv2

    cv2.imwrite(str(image), qr_image("A"))
    assert FrameSource(replay_reader(str(image)), name="r", fps=20.0).frame_interval_s == pytest.approx(0.05)
    assert FrameSource(replay_reader(str(image)), name="r", fps=0).frame_interval_s is None
    assert LinesSource(str(tmp_path / "x.txt"), max_line=10).frame_interval_s is None  # a scanner


def test_a_camera_says_the_rate_it_was_set_to_until_frames_come():
    assert PiCameraReader(fps=15.0).frame_interval_s == pytest.approx(1 / 15)
    assert FrameSource(PiCameraReader(fps=15.0), name="pi", live=True).frame_interval_s == pytest.approx(1 / 15)
    assert CaptureReader("/dev/video99", fps=25.0).frame_interval_s == pytest.approx(0.04)  # not opened
    assert CaptureReader("/dev/video99").frame_interval_s is None  # no rate asked, none reported yet
    assert CaptureReader("clip.mp4", fps=25.0).frame_interval_s is None  # a file is not a camera


def test_a_camera_s_measured_rate_is_the_median_of_its_newest_arrivals():
    slot = LatestSlot(SourceStats())
    ms = 1_000_000
    for i, t in enumerate([0, 66, 133, 200]):
        slot.put(Frame(None, t * ms, i))
    assert slot.interval_s() is None  # three gaps: too few to tell
    for i, t in enumerate([5200, 5266, 5333, 5400, 5466]):  # a reopen's 5 s gap among 15 fps frames
        slot.put(Frame(None, t * ms, i))
    assert slot.interval_s() == pytest.approx(0.0665, abs=0.001)
    for i in range(LatestSlot.ARRIVALS):  # dim light: the camera slows to 10 fps, and the newest count
        slot.put(Frame(None, (6000 + 100 * i) * ms, i))
    assert slot.interval_s() == pytest.approx(0.1)


# ---- config -------------------------------------------------------------------------------------------
BASE = {"source": {"type": "lines", "path": "-"}}


def test_the_budget_setting_defaults_to_the_frame_and_old_configs_stay_valid():
    default = parse_settings(BASE).decoder
    assert default.budget == "frame" and default.budget_ms == 20
    old = parse_settings({**BASE, "decoder": {"budget_ms": 35}}).decoder
    assert old.budget == "frame" and old.budget_ms == 35  # budget_ms is now the cap it always said it was
    assert parse_settings({**BASE, "decoder": {"budget": "fixed"}}).decoder.budget == "fixed"


@pytest.mark.parametrize("value", ["auto", "", 20, None, ["frame"]])
def test_an_unknown_budget_is_refused_with_its_key(value):
    from edge.settings.schema import ConfigError

    with pytest.raises(ConfigError, match="decoder.budget"):
        parse_settings({**BASE, "decoder": {"budget": value}})
