"""Keyed hashes of codes: a hashed list holds HMAC-SHA256 of each code, cut to HASH_BYTES, so the device
never stores a readable list of ID numbers; a scanned code is hashed with the same key before lookup."""
from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from edge.common.secrets import secret_path
from edge.lists.records import ListError

HASH_BYTES = 16
KEY_BYTES = 32  # a hashing key, written in its file as 64 hex digits


def hash_key_id(key: bytes) -> str:
    """The public name of a hashing key: lists and devices compare these, never the key."""
    return hashlib.sha256(b"checkpoint list key\0" + key).hexdigest()[:16]




def read_hash_key_file(path: str | Path) -> bytes:
    """The hashing key in a file of 64 hex digits: `path` as given, or the name of a systemd credential.
    ListError when the file cannot be read or holds anything else (the message names the file, never the
    key)."""
    value = str(path)
    try:
        text = secret_path(value).read_text(encoding="ascii").strip()
    except OSError as exc:
        raise ListError(f"hash key {value}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        text = ""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ListError(f"hash key {value}: expected {2 * KEY_BYTES} hex digits")
    return key


def read_hash_keys(path: str | Path | None) -> dict[str, bytes]:
    """{key id: key} for a list store from a hash-key file (or a systemd credential of that name); {} for
    none. ListError as read_hash_key_file."""
    if not path:
        return {}
    key = read_hash_key_file(path)
    return {hash_key_id(key): key}


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
