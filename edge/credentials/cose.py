"""COSE_Sign1 (RFC 8152/9052) as EU certificates use it: read the structure, verify with `cryptography`.

Only the algorithms the EU DCC specification names are verified: ES256 (primary) and PS256 (secondary).
The algorithm may sit in the unprotected header (RFC 9052 allows it); that cannot weaken anything here
because each algorithm is bound to a key type (ES256 to a P-256 key, PS256 to an RSA key of 2048 bits or
more), so a changed header can only make the signature fail.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from edge.credentials import cbor
from edge.credentials.model import CredentialError

ALG_LABEL, KID_LABEL = 1, 4
ES256, PS256 = -7, -37
ALG_NAMES = {ES256: "ES256", PS256: "PS256"}
COSE_SIGN1_TAG, CWT_TAG = 18, 61

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
_ECDSA = ec.ECDSA(hashes.SHA256())


@dataclass(frozen=True, slots=True)
class Sign1:
    protected_bytes: bytes
    protected: Mapping[object, object]
    unprotected: Mapping[object, object]
    payload: bytes
    signature: bytes

    def header(self, label: int) -> object:
        """A header parameter: the protected header first, the unprotected one only when it is absent there."""
        if label in self.protected:
            return self.protected[label]
        return self.unprotected.get(label)

    @property
    def alg(self) -> object:
        return self.header(ALG_LABEL)

    @property
    def kid(self) -> bytes | None:
        kid = self.header(KID_LABEL)
        if kid is not None and not isinstance(kid, bytes):
            raise CredentialError("the key id is not a byte string")
        return kid

    def to_be_signed(self) -> bytes:
        return cbor2.dumps(["Signature1", self.protected_bytes, b"", self.payload])


def decode_sign1(data: bytes) -> Sign1:
    item = cbor.loads(data, "COSE message")
    # A CWT tag (61) may wrap the COSE_Sign1 tag (18); both are optional.
    if isinstance(item, cbor2.CBORTag) and item.tag == CWT_TAG:
        item = item.value
    if isinstance(item, cbor2.CBORTag):
        if item.tag != COSE_SIGN1_TAG:
            raise CredentialError(f"COSE message: tag {cbor.jsonable(item.tag)} is not COSE_Sign1 (18)")
        item = item.value
    # Inside a tag cbor2 gives immutable containers (a tuple, a frozendict).
    if not isinstance(item, (list, tuple)) or len(item) != 4:
        raise CredentialError("COSE message: not a COSE_Sign1 array of four")
    protected_bytes, unprotected, payload, signature = item
    if not isinstance(protected_bytes, bytes):
        raise CredentialError("COSE message: the protected header is not a byte string")
    protected = cbor.loads(protected_bytes, "COSE protected header") if protected_bytes else {}
    if not isinstance(protected, Mapping) or not isinstance(unprotected, Mapping):
        raise CredentialError("COSE message: a header is not a map")
    if not isinstance(payload, bytes):
        raise CredentialError("COSE message: no embedded payload")
    if not isinstance(signature, bytes):
        raise CredentialError("COSE message: the signature is not a byte string")
    return Sign1(protected_bytes, protected, unprotected, payload, signature)


def key_fits(alg: object, key: object) -> bool:
    if alg == ES256:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    if alg == PS256:
        return isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048
    return False


def verify(sign1: Sign1, alg: object, key: object) -> bool:
    """True when `key` signed this message with `alg`; False for a wrong signature or a key that does not fit."""
    if not key_fits(alg, key):
        return False
    data = sign1.to_be_signed()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):  # ES256, as key_fits said
            sig = sign1.signature
            if len(sig) != 64:
                return False
            key.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")),
                       data, _ECDSA)
        elif isinstance(key, rsa.RSAPublicKey):  # PS256
            key.verify(sign1.signature, data, _PSS, hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True
