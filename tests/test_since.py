"""edge.common.clock.parse_since/parse_span: --since, the same on the device and at the hub."""
from __future__ import annotations

import pytest

from edge.common.clock import TimeSpanError, parse_instant, parse_since, parse_span
from edge.common.errors import UsageError

NOW = parse_instant("2026-12-01T12:00:00Z", "UTC")


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("15m", 900), ("2h", 7200), (" 7d ", 604800),
                                           ("2026-11-01", None), ("2h30m", None), ("", None)])
def test_spans(text, seconds):
    assert parse_span(text) == seconds


def test_a_span_back_from_now_and_an_instant_in_the_zone():
    assert parse_since("2h", "UTC", NOW) == NOW - 7_200_000
    assert parse_since("2026-12-01", "Asia/Ho_Chi_Minh") == parse_instant("2026-11-30T17:00:00Z", "UTC")


@pytest.mark.parametrize("text", ["yesterday-ish", "2026-13-01", "9" * 30 + "-01-01", "99999999999999999999d"])
def test_anything_else_is_a_usage_error_and_a_value_error(text):
    with pytest.raises(TimeSpanError) as caught:
        parse_since(text, "UTC", NOW)
    assert isinstance(caught.value, UsageError) and isinstance(caught.value, ValueError)
