"""The appliance's own signed passes ("CP1:"): visitor and staff passes verified offline, with no list.

A pass is a compact CBOR array `[1, key id, id, label, valid_from, valid_until, gates]` (times in Unix
seconds or null, gates a list of names or null) followed by its 64-byte Ed25519 signature, in Base45 after
the prefix "CP1:" so the whole pass fits QR alphanumeric mode (a pass with a name, an end date and a gate
is about 190 characters: a version 9 code at error correction Q, 53 modules square). The signature
covers a domain tag and the CBOR bytes, so an administrator's key signs nothing else by accident. The
key id is the first 4 bytes of the SHA-256 of the raw public key: devices look the key up by it and never
try every trusted key. Revocation is a deny list of pass ids.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from edge.common.errors import EXIT_USAGE
from edge.credentials import base45, cbor
from edge.credentials.context import Trust
from edge.credentials.formats import Format, ParseOptions
from edge.credentials.model import (
    Category,
    Credential,
    CredentialError,
    Holder,
    Verdict,
    prefixed_base45,
    refused,
)

NAME = "pass"
PREFIX = "CP1:"
VERSION = 1
DOMAIN = b"checkpoint pass v1\x00"
SIGNATURE_BYTES = 64
KID_BYTES = 4
MAX_ID, MAX_LABEL, MAX_GATES, MAX_GATE = 128, 200, 64, 64
MAX_PAYLOAD_CHARS = 4296


class PassKeyError(CredentialError):
    """A key file or a trusted key that cannot be used."""


class PassError(CredentialError):
    """A pass that cannot be issued as asked (an id, a label, gates or a time out of bounds)."""

    exit_status = EXIT_USAGE


def pass_key_id(public_key: Ed25519PublicKey) -> bytes:
    """The id a pass carries of the key that signed it (not a bundle signer's id: sync.wire.bundle.key_id)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:KID_BYTES]


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """How a device's config names a trusted key: the raw 32-byte public key in base64."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return base64.b64encode(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def trusted_keys(texts: Iterable[str]) -> dict[bytes, Ed25519PublicKey]:
    """The trusted keys of `[credentials.passes] trusted_keys`, by key id."""
    keys: dict[bytes, Ed25519PublicKey] = {}
    for text in texts:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
            key = Ed25519PublicKey.from_public_bytes(raw)
        except (binascii.Error, ValueError) as exc:
            raise PassKeyError(f"not an Ed25519 public key in base64: {text[:60]!r}") from exc
        kid = pass_key_id(key)
        if kid in keys and public_key_text(keys[kid]) != public_key_text(key):
            raise PassKeyError("two trusted keys share a key id; replace one of them")
        keys[kid] = key
    return keys


def generate_key(path: str | Path) -> Ed25519PrivateKey:
    """A new administrator key, written as unencrypted PKCS#8 PEM readable by its owner only."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def load_key(path: str | Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise PassKeyError(f"{path}: not a readable unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise PassKeyError(f"{path}: not an Ed25519 key")
    return key


def _seconds(when: dt.datetime | None) -> int | None:
    if when is None:
        return None
    if when.tzinfo is None:
        raise PassError("pass validity times need a time zone")
    return int(when.timestamp())


def issue_pass(key: Ed25519PrivateKey, id: str, label: str, *, valid_from: dt.datetime | None = None,
               valid_until: dt.datetime | None = None, gates: Iterable[str] = ()) -> str:
    """A signed pass as QR alphanumeric text ("CP1:…")."""
    label = unicodedata.normalize("NFC", label)
    names = list(gates) or None
    if not 0 < len(id) <= MAX_ID or len(label) > MAX_LABEL:
        raise PassError(f"a pass id has 1 to {MAX_ID} characters and a label at most {MAX_LABEL}")
    if names and (len(names) > MAX_GATES or any(not 0 < len(g) <= MAX_GATE for g in names)):
        raise PassError(f"at most {MAX_GATES} gates of 1 to {MAX_GATE} characters")
    body = cbor2.dumps([VERSION, pass_key_id(key.public_key()), id, label, _seconds(valid_from),
                        _seconds(valid_until), names])
    return PREFIX + base45.encode(body + key.sign(DOMAIN + body))


def save_qr(payload: str, path: str | Path, *, scale: int = 8) -> Path:
    """The pass as a printable QR code: PNG or SVG by the file's suffix (segno, error correction Q)."""
    import segno

    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("png", "svg"):
        raise PassError("a pass image is a .png or .svg file")
    segno.make_qr(payload, error="q", mode="alphanumeric").save(str(path), kind=kind, scale=scale, border=4)
    return path


class PassCsvError(CredentialError):
    """A CSV of passes with a bad row: nothing was written."""


def _csv_time(text: str, tz: dt.tzinfo, line: int, column: str) -> dt.datetime | None:
    if not text.strip():
        return None
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise PassCsvError(f"line {line}: {column} is not an ISO 8601 date or time") from exc
    return when if when.tzinfo else when.replace(tzinfo=tz)


def issue_csv(key: Ed25519PrivateKey, csv_path: str | Path, out_dir: str | Path, *, kind: str = "png",
              tz: dt.tzinfo = dt.UTC) -> list[Path]:
    """One printable pass per row of a CSV (`id,label,valid_from,valid_until,gates`; gates separated by
    spaces), written as OUT_DIR/<id>.<kind>. Every row is checked before any image is written."""
    import csv
    import re

    try:
        text = Path(csv_path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise PassCsvError(f"{csv_path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise PassCsvError(f"{csv_path}: not UTF-8") from exc
    rows = csv.DictReader(text.splitlines())
    if not rows.fieldnames or "id" not in rows.fieldnames:
        raise PassCsvError("the header must name at least id (and label, valid_from, valid_until, gates)")
    issued: dict[str, str] = {}
    for row in rows:
        line = rows.line_num
        if None in row:
            raise PassCsvError(f"line {line}: more fields than the header names")
        pass_id = (row.get("id") or "").strip()
        name = re.sub(r"[^A-Za-z0-9._-]", "_", pass_id).lstrip(".") or "_"
        if name in issued:
            raise PassCsvError(f"line {line}: id {pass_id!r} is a second pass for file {name}.{kind}")
        try:
            issued[name] = issue_pass(
                key, pass_id, row.get("label") or "",
                valid_from=_csv_time(row.get("valid_from") or "", tz, line, "valid_from"),
                valid_until=_csv_time(row.get("valid_until") or "", tz, line, "valid_until"),
                gates=(row.get("gates") or "").split())
        except PassCsvError:
            raise
        except (PassError, ValueError) as exc:
            raise PassCsvError(f"line {line}: {exc}") from exc
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [save_qr(payload, out / f"{name}.{kind}") for name, payload in issued.items()]


def recognise(payload: str) -> bool:
    return payload.startswith(PREFIX)


def _parse(payload: str, options: ParseOptions) -> Credential:
    data = prefixed_base45(payload, PREFIX, MAX_PAYLOAD_CHARS)
    if len(data) <= SIGNATURE_BYTES:
        raise CredentialError("too short to hold a signature")
    body, signature = data[:-SIGNATURE_BYTES], data[-SIGNATURE_BYTES:]
    item = cbor.loads(body, "pass")
    if not isinstance(item, list) or len(item) != 7:
        raise CredentialError("pass: not an array of seven")
    version, kid, id_, label, valid_from, valid_until, gates = item
    if version != VERSION or isinstance(version, bool):
        raise CredentialError(f"pass: version {cbor.jsonable(version)!r} is not {VERSION}")
    if not isinstance(kid, bytes) or len(kid) != KID_BYTES:
        raise CredentialError("pass: no key id")
    if not isinstance(id_, str) or not 0 < len(id_) <= MAX_ID:
        raise CredentialError("pass: no id")
    if not isinstance(label, str) or len(label) > MAX_LABEL:
        raise CredentialError("pass: the label is not text")
    if gates is not None and (not isinstance(gates, list) or len(gates) > MAX_GATES or
                              any(not isinstance(g, str) or not 0 < len(g) <= MAX_GATE for g in gates)):
        raise CredentialError("pass: gates is not a list of names")
    from_ms = None if valid_from is None else cbor.numeric_date(valid_from, "pass valid_from")
    until_ms = None if valid_until is None else cbor.numeric_date(valid_until, "pass valid_until")
    label = unicodedata.normalize("NFC", label)
    return Credential(format=NAME, subject_id=id_, kind="pass", holder=Holder(label), valid_from_ms=from_ms,
                      valid_until_ms=until_ms, claims={"gates": gates},
                      proof=(kid, DOMAIN + body, signature))


def verify(credential: Credential, trust: Trust, at_ms: int) -> Verdict:
    kid, signed, signature = credential.proof
    key = trust.pass_keys.get(kid)
    kid_text = kid.hex()
    if key is None:
        return refused(credential, Category.UNTRUSTED, f"no trusted pass key has id {kid_text}")
    try:
        key.verify(signature, signed)
    except InvalidSignature:
        return refused(credential, Category.SIGNATURE, "the signature does not verify (forged or altered)",
                       signer=kid_text)
    if credential.valid_from_ms is not None and at_ms < credential.valid_from_ms:
        return refused(credential, Category.NOT_YET_VALID, "before its valid_from", signer=kid_text)
    if credential.valid_until_ms is not None and at_ms >= credential.valid_until_ms:
        return refused(credential, Category.EXPIRED, "past its valid_until", signer=kid_text)
    if trust.denied(credential.subject_id):
        return refused(credential, Category.REVOKED, "the pass id is deny-listed", signer=kid_text)
    return Verdict(NAME, Category.VALID, "signature and validity checked", credential, signer=kid_text)


FORMAT = Format(NAME, recognise, _parse, verify)
