"""Text from outside made safe where people read it: one log line, one spreadsheet cell.

Used wherever a device, a file or a message supplies text that is logged or exported (codes, ack
reasons, device names, topics). Escaping, not dropping: an administrator must still see what was sent.
"""
from __future__ import annotations

import unicodedata

LOG_LIMIT = 200

# Besides the C0/C1 controls (Cc), line and paragraph separators start a new line in some viewers, and
# bidirectional overrides reorder what a reader sees (a reason that shows "accepted" while saying otherwise).
_UNSAFE_CATEGORIES = {"Cc", "Zl", "Zp"}
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escaped(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_log(value: object, limit: int = LOG_LIMIT) -> str:
    """One log line's worth of any outside value: controls, separators and bidi marks escaped, capped."""
    text = value if isinstance(value, str) else repr(value) if isinstance(value, bytes) else str(value)
    cut = len(text) > limit
    text = text[:limit]
    safe = "".join(_escaped(ch) if ch in _BIDI or unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch
                   for ch in text)
    return safe + ("…" if cut else "")


# OWASP's CSV-injection rule: a cell a spreadsheet would run as a formula starts with one of these.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A value for a CSV export: text a spreadsheet would evaluate gets a leading apostrophe.

    Numbers and None pass unchanged (a negative number is data, not a formula); the JSON exports stay
    exact and never go through here.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
