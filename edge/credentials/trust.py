"""Trusted signers of EU certificates: a trust list in the EU DCC Gateway format, read into keys by kid.

The file is a JSON array (or an object with a "certificates" array) of
`{"kid": base64, "country": "VN", "certificateType": "DSC", "rawData": base64 DER, ...}`; entries of other
types (CSCA, UPLOAD, AUTHENTICATION) are ignored. The DSCs are not chained to a CSCA here: the list is
trusted as a whole (imported by an administrator or pushed as a signed bundle by the hub).

Certificates are read with asn1crypto, lazily, and only the parts needed (validity, key, extended key
usage): some real signer certificates carry extensions that `cryptography` refuses to parse, and that
should not cost a country its certificates. Keys given with explicit P-256 parameters, or RSA keys under
the id-RSASSA-PSS OID, are read as the P-256 and RSA keys they are.
A certificate whose key still cannot be used is skipped and reported, never the whole list.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from asn1crypto import x509 as ax
from asn1crypto.core import Void
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from edge.common.textsafe import for_log
from edge.credentials.errors import CredentialError

MAX_FILE_BYTES = 64 * 1024 * 1024
EKU_OID = "2.5.29.37"
# Extended key usage OIDs that limit a DSC to certificate types. The specification gave them first in the
# 1.3.6.1.4.1.0.1847 arc and real signers use the 1.3.6.1.4.1.1847 arc too: both are honoured.
TYPE_OIDS = {
    "test": {"1.3.6.1.4.1.1847.2021.1.1", "1.3.6.1.4.1.0.1847.2021.1.1"},
    "vaccination": {"1.3.6.1.4.1.1847.2021.1.2", "1.3.6.1.4.1.0.1847.2021.1.2"},
    "recovery": {"1.3.6.1.4.1.1847.2021.1.3", "1.3.6.1.4.1.0.1847.2021.1.3"},
}
ALL_TYPES = frozenset(TYPE_OIDS)

# NIST P-256, to recognise a key given with explicit curve parameters instead of the curve's name.
_P256_PRIME = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey  # what a signer certificate may hold (PS256, ES256)


class TrustListError(CredentialError):
    """A trust list file that cannot be used at all (not JSON, not a list of certificates)."""


@dataclass(frozen=True, slots=True)
class Signer:
    kid: bytes
    country: str
    key: PublicKey
    not_before_ms: int | None
    not_after_ms: int | None
    may_sign: frozenset[str]          # certificate types its extended key usage allows

    @property
    def name(self) -> str:
        return f"{self.country}/{base64.b64encode(self.kid).decode()}"


@dataclass
class TrustList:
    by_kid: dict[bytes, list[Signer]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # one line per certificate left out, and why

    def signers(self, kid: bytes | None) -> list[Signer]:
        """Every signer with this kid (kids are truncated hashes: two DSCs may share one), or none."""
        return self.by_kid.get(kid, []) if kid else []

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_kid.values())

    def add(self, signer: Signer) -> None:
        self.by_kid.setdefault(signer.kid, []).append(signer)


def kid_of(der: bytes) -> bytes:
    """The EU DCC key id of a DSC: the first 8 bytes of the SHA-256 of its DER encoding."""
    return hashlib.sha256(der).digest()[:8]


def load_trust_list(source: str | Path | bytes) -> TrustList:
    if isinstance(source, bytes):
        data = source
    else:
        try:
            with open(source, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise TrustListError(f"{for_log(str(source))}: {exc.strerror or exc}") from exc
    if len(data) > MAX_FILE_BYTES:
        raise TrustListError(f"trust list larger than {MAX_FILE_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise TrustListError(f"trust list is not JSON: {for_log(exc)}") from exc
    if isinstance(doc, dict) and isinstance(doc.get("certificates"), list):
        doc = doc["certificates"]
    if not isinstance(doc, list):
        raise TrustListError("trust list is not a JSON array of certificates")
    trust = TrustList()
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict):
            raise TrustListError(f"trust list entry {i} is not an object")
        if entry.get("certificateType", "DSC") != "DSC":
            continue
        try:
            trust.add(signer_from_entry(entry))
        except TrustListError as exc:
            trust.skipped.append(f"entry {i}: {exc}")
    return trust


def signer_from_entry(entry: dict[str, object]) -> Signer:
    kid_text, raw, country = entry.get("kid"), entry.get("rawData"), entry.get("country", "")
    if not isinstance(raw, str) or not isinstance(country, str):
        raise TrustListError("no rawData, or a country that is not text")
    try:
        der = base64.b64decode(raw, validate=True)
        kid = base64.b64decode(kid_text, validate=True) if isinstance(kid_text, str) else kid_of(der)
    except (binascii.Error, ValueError) as exc:
        raise TrustListError("kid or rawData is not base64") from exc
    if kid != kid_of(der):
        raise TrustListError(f"kid {for_log(kid_text)} is not the certificate's (SHA-256 of rawData)")
    return signer_from_der(der, country=for_log(country, 8), kid=kid)


def signer_from_der(der: bytes, *, country: str = "", kid: bytes | None = None) -> Signer:
    try:
        cert = ax.Certificate.load(der, strict=True)
        tbs = cert["tbs_certificate"]
        validity = tbs["validity"]
        not_before = _ms(validity["not_before"].native)
        not_after = _ms(validity["not_after"].native)
        key = _public_key(tbs["subject_public_key_info"])
        may_sign = _may_sign(tbs)
    except TrustListError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError, UnsupportedAlgorithm) as exc:
        raise TrustListError(f"certificate not readable: {for_log(exc, 120)}") from exc
    return Signer(kid if kid is not None else kid_of(der), country, key, not_before, not_after, may_sign)


def _ms(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp() * 1000)


def _public_key(spki: ax.PublicKeyInfo) -> PublicKey:
    algorithm = spki["algorithm"]["algorithm"].native
    if algorithm in ("rsa", "rsassa_pss"):
        # An RSA-PSS key (id-RSASSA-PSS) holds the same modulus and exponent as a plain RSA key.
        numbers = spki["public_key"].parsed
        key = rsa.RSAPublicNumbers(numbers["public_exponent"].native, numbers["modulus"].native).public_key()
        if key.key_size < 2048:
            raise TrustListError(f"RSA key of {key.key_size} bits (PS256 needs 2048 or more)")
        return key
    if algorithm == "ec":
        params = spki["algorithm"]["parameters"]
        if params.name == "named":
            if params.chosen.native != "secp256r1":
                raise TrustListError(f"EC curve {for_log(params.chosen.native)} (ES256 needs P-256)")
        elif params.name == "specified":
            spec = params.chosen
            if (spec["field_id"]["parameters"].native != _P256_PRIME or spec["order"].native != _P256_ORDER):
                raise TrustListError("EC key with explicit parameters of a curve other than P-256")
        else:
            raise TrustListError("EC key without curve parameters")
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(spki["public_key"].native))
    raise TrustListError(f"key algorithm {for_log(algorithm)} is neither EC nor RSA")


def _may_sign(tbs: ax.TbsCertificate) -> frozenset[str]:
    extensions = tbs["extensions"]
    oids: set[str] = set()
    # Never `.native` on the extensions: that would parse every one, the ones nobody needs included.
    for ext in () if isinstance(extensions, Void) else extensions:
        if ext["extn_id"].dotted == EKU_OID:
            oids.update(purpose.dotted for purpose in ext["extn_value"].parsed)
    allowed = frozenset(kind for kind, kind_oids in TYPE_OIDS.items() if oids & kind_oids)
    # The specification: a DSC with none of these OIDs may sign every type.
    return allowed or ALL_TYPES
