"""What a scanned payload may be before it is looked up, and how a bad one is recorded."""
from __future__ import annotations

import re
import unicodedata

from edge.common.model import Code

# Tab, CR and LF appear in real multi-line QR payloads; any other control character (ESC above all)
# would let a hostile code rewrite the officer's terminal or the log, so it makes the payload malformed.
# The other 62 characters of Unicode's category Cc (C0, DEL, C1), as one character class: a list of ten
# million codes is checked in seconds, where asking unicodedata of each character took a minute.
_BAD_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def code_from_bytes(data: bytes) -> Code:
    """A code read as raw bytes (scanner line, pyzbar): text only when the bytes are valid UTF-8."""
    try:
        return Code(data, data.decode("utf-8"))
    except UnicodeDecodeError:
        return Code(data, None)


def has_bad_control(text: str) -> bool:
    return _BAD_CONTROL.search(text) is not None


def printable(text: str) -> str:
    """Text safe for one terminal or log line: every control character as a \\xNN escape."""
    return "".join(f"\\x{ord(ch):02x}" if unicodedata.category(ch) == "Cc" else ch for ch in text)


def escape(data: bytes) -> str:
    """A printable rendering of bytes that are not acceptable text."""
    return printable(data.decode("utf-8", "backslashreplace"))


def examine(code: Code, max_bytes: int) -> tuple[str, bool]:
    """(the text to record, whether the payload is malformed).

    Malformed: empty, longer than max_bytes, not text, or holding control characters. A malformed
    payload is recorded escaped and capped at max_bytes so the entry shows what was presented.
    """
    text = code.text
    ok = bool(code.data) and len(code.data) <= max_bytes and text is not None and text.strip() != ""
    if ok and text is not None and not has_bad_control(text):
        return text, False
    return escape(code.data[:max_bytes]), True
