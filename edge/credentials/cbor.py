"""CBOR from outside, read strictly: one item, no trailing bytes, no duplicate map keys, bounded depth.

A duplicate key or trailing bytes would let two readers of one signed payload see different claims;
cbor2 bounds nesting and refuses lengths the input cannot hold. Any library error becomes `malformed`.
"""
from __future__ import annotations

import datetime as _dt
import io
import math
from collections.abc import Mapping
from typing import Any

import cbor2

from edge.credentials.model import CredentialError

MAX_DEPTH = 32


def loads(data: bytes, what: str) -> Any:
    if not isinstance(data, bytes):
        raise CredentialError(f"{what}: not a byte string")
    fp = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(fp, max_depth=MAX_DEPTH, allow_duplicate_keys=False).decode()
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        raise CredentialError(f"{what}: not CBOR ({type(exc).__name__})") from exc
    if fp.tell() != len(data):
        raise CredentialError(f"{what}: {len(data) - fp.tell()} bytes after the CBOR item")
    return value


def jsonable(value: Any, depth: int = 0) -> Any:
    """A CBOR value as JSON can print it: bytes as hex, tags and other types as text, huge ints as hex."""
    if depth > MAX_DEPTH:
        return "…"
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        # JSON readers lose precision past 2^53 and Python refuses str() of ints over 4300 digits.
        return value if abs(value) < 2 ** 53 else hex(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {(k if isinstance(k, str) else str(jsonable(k, depth + 1))): jsonable(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, cbor2.CBORTag):
        return {"tag": jsonable(value.tag, depth + 1), "value": jsonable(value.value, depth + 1)}
    return type(value).__name__


def numeric_date(value: Any, what: str) -> int:
    """An RFC 8392 NumericDate (seconds, integer or finite float) as milliseconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CredentialError(f"{what} is not a time")
    if isinstance(value, float) and not math.isfinite(value):
        raise CredentialError(f"{what} is not a finite time")
    if not -(2 ** 40) < value < 2 ** 40:  # about ±34,000 years: beyond it no certificate means it
        raise CredentialError(f"{what} is out of range")
    return int(value * 1000)
