"""Keyed hashes of codes: a hashed list holds HMAC-SHA256 of each code, cut to HASH_BYTES, so the device
never stores a readable list of ID numbers; a scanned code is hashed with the same key before lookup."""
from __future__ import annotations

import hashlib
import hmac

HASH_BYTES = 16


def key_id(key: bytes) -> str:
    """The public name of a hashing key: lists and devices compare these, never the key."""
    return hashlib.sha256(b"checkpoint list key\0" + key).hexdigest()[:16]


def hash_code(key: bytes, code: str) -> bytes:
    return hmac.digest(key, code.encode("utf-8"), "sha256")[:HASH_BYTES]


class KeyedHash:
    """hash_code with one key, the key's setup done once: each call copies the keyed state (as hmac
    allows) and hashes only the code."""

    def __init__(self, key: bytes):
        self._keyed = hmac.new(key, digestmod="sha256")

    def __call__(self, code: str) -> bytes:
        mac = self._keyed.copy()
        mac.update(code.encode("utf-8"))
        return mac.digest()[:HASH_BYTES]
