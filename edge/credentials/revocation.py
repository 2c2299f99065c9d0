"""EU DCC revocation: the three hashes the DCC revocation specification defines, looked up per scan.

Each is the first 16 bytes of a SHA-256: over the UCI ("ci"), over the issuing country (the CWT's "iss"
claim) followed by the UCI, or over the signature (for ES256 only its r half, since (r, s) and (r, n-s)
are both valid signatures of one certificate). The lookup is any `contains(hash_bytes) -> bool`, so a
set in memory, a hashed list on disk or a Bloom filter all plug in the same way.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable

from edge.credentials.cose import ES256

HASH_BYTES = 16
UCI, COUNTRYCODEUCI, SIGNATURE = "UCI", "COUNTRYCODEUCI", "SIGNATURE"

Contains = Callable[[bytes], bool]


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:HASH_BYTES]


def hashes(uci: str, country: str, alg: object, signature: bytes) -> dict[str, bytes]:
    signed = signature[:len(signature) // 2] if alg == ES256 else signature
    return {
        UCI: _h(uci.encode("utf-8")),
        COUNTRYCODEUCI: _h((country + uci).encode("utf-8")),
        SIGNATURE: _h(signed),
    }


def revoked_by(uci: str, country: str, alg: object, signature: bytes, contains: Contains) -> str | None:
    """The hash type that is on the revocation list, or None."""
    for kind, digest in hashes(uci, country, alg, signature).items():
        if contains(digest):
            return kind
    return None
