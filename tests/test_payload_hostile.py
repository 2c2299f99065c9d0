"""QR payloads are bytes from outside: whatever a code holds, examining it never fails, a bad one is
flagged, and what is recorded or shown holds no control character but tab, CR and LF in good text."""
from __future__ import annotations

import unicodedata

from hypothesis import example, given
from hypothesis import strategies as st

from edge.common.model import Code
from edge.common.payload import (
    code_from_bytes,
    escape,
    examine,
    has_bad_control,
    printable,
)

# Control characters are rare in Hypothesis's default text: ask for them, and for the separators and
# marks that look like nothing, next to ordinary and Vietnamese text.
CONTROLS = "".join(map(chr, [*range(0x20), 0x7F, *range(0x80, 0xA0)]))
hostile_text = st.text(alphabet=st.one_of(st.characters(), st.sampled_from(CONTROLS + "\u2028\u202e\ufeffạươ")),
                       max_size=300)
hostile_bytes = st.one_of(
    st.binary(max_size=300),
    hostile_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.builds(lambda unit, n: unit * n, st.binary(min_size=1, max_size=4), st.integers(1, 5000)),  # huge payloads
)
limits = st.one_of(st.integers(1, 4096), st.integers(1, 2 ** 63))


def no_control(text: str) -> bool:
    return not any(unicodedata.category(ch) == "Cc" for ch in text)


@given(hostile_bytes, limits)
@example(b"\x1b]0;pwned\x07", 2048)
@example(b"\xc2\x9b31m", 2048)  # C1 CSI, valid UTF-8
@example(b"", 1)
@example(b"x" * 10_000, 2048)
def test_any_bytes_are_examined_without_failing(data, max_bytes):
    code = code_from_bytes(data)
    assert code.data == data
    if code.text is not None:
        assert code.text.encode("utf-8") == data
    text, malformed = examine(code, max_bytes)
    assert isinstance(text, str) and isinstance(malformed, bool)
    if malformed:
        assert no_control(text)  # escaped: safe on a terminal, in a log line, in a CSV cell
        assert len(text) <= 4 * min(len(data), max_bytes)  # capped: \xNN at most per byte
    else:
        assert text == code.text and 0 < len(data) <= max_bytes and text.strip()
        assert not has_bad_control(text)
        assert no_control(text.replace("\t", "").replace("\r", "").replace("\n", ""))


@given(st.binary(max_size=300), st.one_of(st.none(), hostile_text), limits)
def test_a_transcoded_text_that_disagrees_with_its_bytes_is_still_judged_safely(data, text, max_bytes):
    """zxing supplies text in another charset than the bytes: examine judges the text it was given."""
    recorded, malformed = examine(Code(data, text), max_bytes)
    assert isinstance(recorded, str)
    if text is not None and has_bad_control(text):
        assert malformed
    if malformed:
        assert no_control(recorded)


@given(hostile_text)
def test_printable_escapes_every_control_character(text):
    shown = printable(text)
    assert no_control(shown)
    assert len(shown) <= 4 * len(text)


@given(hostile_bytes)
def test_escape_renders_any_bytes_without_control_characters(data):
    assert no_control(escape(data))
