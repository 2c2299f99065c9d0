"""Signed bundles: what administrators send devices (configuration, list snapshots and deltas, trust lists).

One MQTT message:

    "CPB1"        magic and format version
    u32 (big)     header length (at most MAX_HEADER bytes)
    header        JSON, UTF-8: what the bundle is, for whom, its version, validity, and the body's SHA-256
    64 bytes      Ed25519 signature over magic + length + header
    body          the configuration (TOML), a list delta's records, or an EU DCC trust list (Gateway JSON);
                  a snapshot's body is empty and its chunks travel as messages of their own, each checked
                  against the hash the header lists

Everything a device acts on (target, version, expiry, hashes) is inside the signed part, so a broker
can withhold or replay a bundle but never alter one; replays are refused by the version rule.
"""
from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sync.wire.errors import BundleError

MAGIC = b"CPB1"
MAX_HEADER = 256 * 1024
MAX_BUNDLE = 32 << 20
SIGNATURE = 64
TARGET = r"^(all|group:[A-Za-z0-9._-]{1,64}|device:[A-Za-z0-9._-]{1,64})$"
SHA256 = r"^[0-9a-f]{64}$"


class Header(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    format: Literal[1] = 1
    kind: Literal["config", "list", "trust"]
    target: str = Field(pattern=TARGET)
    version: int = Field(ge=1, le=2**53)
    issued_ms: int = Field(ge=0, le=2**53)
    expires_ms: int = Field(ge=0, le=2**53)
    key: str = Field(pattern=r"^[0-9a-f]{16}$", description="Id of the signing key.")
    body_sha256: str = Field(pattern=SHA256)
    body_bytes: int = Field(ge=0, le=MAX_BUNDLE)
    # configuration
    merge: Literal["override", "full"] | None = None
    # lists
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    list_kind: Literal["snapshot", "delta"] | None = None
    base: int | None = Field(None, ge=1, le=2**53, description="A delta's base version.")
    count: int | None = Field(None, ge=0, le=2**40, description="Entries in the list once applied.")
    content_sha256: str | None = Field(None, pattern=SHA256, description="Of the whole list once applied.")
    chunks: list[str] | None = Field(None, max_length=4096)
    hash_key: str | None = Field(None, pattern=r"^[0-9a-f]{16}$", description="Codes are keyed hashes.")



def header(**fields: Any) -> Header:
    try:
        head = Header(**fields)
    except ValidationError as exc:
        raise BundleError(f"bad header: {exc.errors(include_url=False)[0]['msg']}") from None
    if head.kind == "config" and head.merge is None:
        raise BundleError("bad header: a config bundle states merge")
    if head.kind == "trust" and (head.merge is not None or head.name is not None or head.list_kind is not None):
        raise BundleError("bad header: a trust bundle states neither merge nor a list")
    if head.kind == "list":
        if head.name is None or head.list_kind is None or head.count is None or head.content_sha256 is None:
            raise BundleError("bad header: a list bundle states name, list_kind, count and content_sha256")
        if (head.list_kind == "delta") != (head.base is not None) or (head.list_kind == "snapshot") != (
                head.chunks is not None):
            raise BundleError("bad header: a delta states its base, a snapshot its chunks")
        if head.base is not None and head.base >= head.version:
            raise BundleError("bad header: a delta's base must be older than its version")
    return head


# ---- keys ---------------------------------------------------------------------------------------
def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_text(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + base64.b64encode(raw).decode()


def parse_public(text: str) -> Ed25519PublicKey:
    kind, _, b64 = text.strip().partition(":")
    try:
        raw = base64.b64decode(b64, validate=True)
        if kind != "ed25519" or len(raw) != 32:
            raise ValueError
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ValueError(f"not an Ed25519 public key (ed25519:<base64 of 32 bytes>): {text[:60]!r}") from None


def new_private() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_private(data: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


class TrustedKeys:
    def __init__(self, texts: list[str]):
        self.keys = {key_id(k): k for k in map(parse_public, texts)}


# ---- signing and checking -----------------------------------------------------------------------
def sign(key: Ed25519PrivateKey, head: Header, body: bytes = b"") -> bytes:
    if head.body_sha256 != hashlib.sha256(body).hexdigest() or head.body_bytes != len(body):
        raise ValueError("header does not describe this body")
    if head.key != key_id(key.public_key()):
        raise ValueError("header names another signing key")
    text = json.dumps(head.model_dump(exclude_none=True), separators=(",", ":"), sort_keys=True).encode()
    signed = MAGIC + struct.pack(">I", len(text)) + text
    return signed + key.sign(signed) + body


@dataclass(frozen=True)
class Bundle:
    header: Header
    body: bytes
    digest: str  # SHA-256 of the whole message: an identical copy (a retained redelivery) is recognised
    message: bytes


@dataclass(frozen=True)
class ListHeader:
    """A list bundle's header, what header() made sure such a bundle states typed without None: what the
    device's list code reads."""
    target: str
    key: str
    version: int
    expires_ms: int
    name: str
    list_kind: Literal["snapshot", "delta"]
    count: int
    content_sha256: str
    hash_key: str | None
    chunks: list[str]  # a snapshot's chunk hashes ([] for a delta)
    base: int  # a delta's base version (0 for a snapshot)


def list_header(head: Header) -> ListHeader:
    if head.kind != "list" or head.name is None or head.list_kind is None or head.count is None \
            or head.content_sha256 is None:
        raise BundleError("not a list bundle")
    return ListHeader(head.target, head.key, head.version, head.expires_ms, head.name, head.list_kind, head.count,
                      head.content_sha256, head.hash_key, list(head.chunks or []), head.base or 0)


def verify(message: bytes, trusted: TrustedKeys) -> Bundle:
    """Signature and internal consistency; what the device makes of target, version and expiry is its own
    business (sync/device/remote.py)."""
    if len(message) > MAX_BUNDLE:
        raise BundleError(f"bundle of {len(message)} bytes exceeds {MAX_BUNDLE}")
    if len(message) < 8 or message[:4] != MAGIC:
        raise BundleError("not a signed bundle (bad magic)")
    (length,) = struct.unpack(">I", message[4:8])
    if length > MAX_HEADER or 8 + length + SIGNATURE > len(message):
        raise BundleError("truncated bundle")
    signed, signature = message[:8 + length], message[8 + length:8 + length + SIGNATURE]
    body = message[8 + length + SIGNATURE:]
    fields = _fields(signed[8:])
    if fields is None:
        raise BundleError("header is not a JSON object")
    named = fields.get("key")
    key = trusted.keys.get(named) if isinstance(named, str) else None
    if key is None:
        raise BundleError(f"signed by an unknown key {str(fields.get('key'))[:20]!r}")
    try:
        key.verify(signature, signed)
    except InvalidSignature:
        raise BundleError("bad signature") from None
    try:
        head = header(**fields)
    except BundleError as exc:
        raise BundleError(str(exc), fields) from None
    if len(body) != head.body_bytes or hashlib.sha256(body).hexdigest() != head.body_sha256:
        raise BundleError("body does not match the signed hash", fields)
    return Bundle(head, body, hashlib.sha256(message).hexdigest(), message)


def _fields(text: bytes) -> dict[str, Any] | None:
    try:
        fields = json.loads(text.decode("utf-8"))
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, a huge integer, arrays nested 100,000 deep
        return None
    return fields if isinstance(fields, dict) else None


def peek(message: bytes) -> dict[str, Any] | None:
    """The header of a message that looks like a bundle, its signature NOT checked: only to recognise a
    copy of what a device already holds (nothing is applied on its word), never to act on."""
    if len(message) < 8 or message[:4] != MAGIC:
        return None
    (length,) = struct.unpack(">I", message[4:8])
    if length > MAX_HEADER or 8 + length > len(message):
        return None
    return _fields(message[8:8 + length])


def target_topic(target: str) -> str:
    """all → all; group:G → group/G; device:D → D (the device's own subtree)."""
    if target == "all":
        return "all"
    kind, _, name = target.partition(":")
    return f"group/{name}" if kind == "group" else name
