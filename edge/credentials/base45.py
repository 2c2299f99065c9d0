"""Base45 (RFC 9285): bytes as QR alphanumeric text, as EU certificates and the appliance's passes use it.

Written here rather than taken from the `base45` package: it is thirty lines, the device then needs no
extra package for it, and it is strict where the package is loose for us (a triple above 65535 or a pair
above 255 is refused, not wrapped), which matters for text that arrives from any camera.
"""
from __future__ import annotations

from edge.credentials.errors import CredentialError

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_INVALID = 0xFF
_VALUES = bytes(ALPHABET.index(chr(c)) if chr(c) in ALPHABET else _INVALID for c in range(256))


class Base45Error(CredentialError):
    """Text that is not Base45."""


def encode(data: bytes) -> str:
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        e, rest = divmod(n, 2025)
        d, c = divmod(rest, 45)
        out.append(ALPHABET[c] + ALPHABET[d] + ALPHABET[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out.append(ALPHABET[c] + ALPHABET[d])
    return "".join(out)


def decode(text: str) -> bytes:
    if not text.isascii():
        raise Base45Error("not Base45: a character outside the alphabet")
    values = text.encode("ascii").translate(_VALUES)
    if _INVALID in values:
        raise Base45Error("not Base45: a character outside the alphabet")
    if len(values) % 3 == 1:
        raise Base45Error("not Base45: a length of 3n+1 characters")
    out = bytearray()
    full = len(values) - len(values) % 3
    for i in range(0, full, 3):
        n = values[i] + values[i + 1] * 45 + values[i + 2] * 2025
        if n > 0xFFFF:
            raise Base45Error("not Base45: a triple above 65535")
        out += n.to_bytes(2, "big")
    if full < len(values):
        n = values[full] + values[full + 1] * 45
        if n > 0xFF:
            raise Base45Error("not Base45: a final pair above 255")
        out.append(n)
    return bytes(out)
