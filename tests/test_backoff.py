"""edge.common.backoff: the one growing wait every retry loop uses."""
from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.common.backoff import Backoff


def test_without_jitter_waits_double_up_to_the_maximum():
    backoff = Backoff(initial=0.5, maximum=10.0)
    assert [backoff.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.attempts == 7 and list(backoff.delays) == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_step_is_the_next_wait_without_jitter():
    # What a retry loop logs ("retrying in 2.0 s") is the wait it will take.
    backoff = Backoff(initial=0.5, maximum=30.0)
    backoff.next()
    backoff.next()
    assert backoff.step() == 2.0 == backoff.next()


def test_reset_starts_again_from_the_first_wait():
    backoff = Backoff(initial=0.5, maximum=30.0)
    for _ in range(5):
        backoff.next()
    backoff.reset()
    assert backoff.attempts == 0 and not backoff.delays
    assert backoff.next() == 0.5


def test_factor_other_than_two():
    backoff = Backoff(initial=1.0, factor=3.0, maximum=20.0)
    assert [backoff.next() for _ in range(4)] == [1.0, 3.0, 9.0, 20.0]


def test_equal_jitter_with_the_top_of_each_step_is_the_step():
    backoff = Backoff(initial=0.05, maximum=0.4, rng=lambda: 1.0)
    assert [backoff.next() for _ in range(7)] == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4, 0.4]


def test_equal_jitter_with_the_bottom_of_each_step_is_half_the_step():
    backoff = Backoff(initial=1.0, maximum=60.0, rng=lambda: 0.0)
    assert [backoff.next() for _ in range(3)] == [0.5, 1.0, 2.0]


@given(attempts=st.integers(0, 10_000), draw=st.floats(0, 1), initial=st.floats(0.001, 10),
       maximum=st.floats(0.001, 3600))
def test_waits_stay_between_half_a_step_and_the_maximum(attempts, draw, initial, maximum):
    backoff = Backoff(initial=initial, maximum=maximum, rng=lambda: draw)
    backoff.attempts = attempts
    step = min(maximum, initial * 2 ** min(attempts, 32))
    delay = backoff.next()
    assert step / 2 <= delay <= step <= maximum


def test_jitter_spreads_a_fleet():
    rng = random.Random(13)
    fleet = [Backoff(initial=1.0, maximum=60.0, rng=rng.random) for _ in range(50)]
    first = [b.next() for b in fleet]
    assert all(0.5 <= d <= 1.0 for d in first) and len(set(first)) > 40
    for b in fleet:
        for _ in range(20):
            b.next()
    assert all(30.0 <= b.delays[-1] <= 60.0 for b in fleet)


def test_a_device_away_for_ever_keeps_a_finite_wait():
    backoff = Backoff(initial=0.5, maximum=30.0)
    backoff.attempts = 10**9
    assert backoff.next() == 30.0


@pytest.mark.parametrize("kwargs", [dict(initial=0), dict(factor=0.5), dict(maximum=-1)])
def test_nonsense_is_refused_at_once(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)
