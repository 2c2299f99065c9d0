"""EU Digital COVID Certificate ("HC1:"): Base45, zlib, COSE_Sign1, CWT with the hcert claim.

Verification: the signer is found by kid in the trust list (protected header first, the unprotected one
only when the protected has none, as the specification allows); an unknown kid is `untrusted`, never a
reason to try every key. Then the signature (ES256 or PS256), the signer's own validity, its extended key
usage against the certificate type, the CWT's iat and exp at the time of the check, and revocation.
"""
from __future__ import annotations

import base64
import unicodedata
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from edge.common.textsafe import for_log
from edge.credentials import cbor, cose
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
from edge.credentials.revocation import revoked_by

NAME = "dcc"
PREFIX = "HC1:"
MAX_PAYLOAD_CHARS = 8192          # a QR code holds at most 4,296 alphanumeric characters
MAX_INFLATED_BYTES = 64 * 1024    # a deflate bomb in a QR code could otherwise inflate to megabytes
KINDS = {"v": "vaccination", "t": "test", "r": "recovery"}
CWT_ISS, CWT_EXP, CWT_IAT, CWT_HCERT = 1, 4, 6, -260
MAX_TEXT = 256


@dataclass(frozen=True, slots=True)
class DccProof:
    sign1: cose.Sign1
    alg: object
    kid: bytes | None
    country: str        # the CWT's issuer (iss), part of one revocation hash


def recognise(payload: str) -> bool:
    return payload.startswith(PREFIX)


def _parse(payload: str, options: ParseOptions) -> Credential:
    data = prefixed_base45(payload, PREFIX, MAX_PAYLOAD_CHARS)
    if data[:1] == b"\x78":  # a zlib header; the specification also allows the CWT uncompressed
        data = _inflate(data)
    sign1 = cose.decode_sign1(data)
    kid = sign1.kid
    claims = cbor.loads(sign1.payload, "CWT claims")
    if not isinstance(claims, Mapping):
        raise CredentialError("CWT claims: not a map")
    iss = claims.get(CWT_ISS, "")
    if not isinstance(iss, str) or len(iss) > 16:
        raise CredentialError("CWT iss: not a country code")
    if CWT_EXP not in claims or CWT_IAT not in claims:
        raise CredentialError("CWT: no exp or iat")
    exp_ms = cbor.numeric_date(claims[CWT_EXP], "CWT exp")
    iat_ms = cbor.numeric_date(claims[CWT_IAT], "CWT iat")
    hcert = claims.get(CWT_HCERT)
    dcc = hcert.get(1) if isinstance(hcert, Mapping) else None
    if not isinstance(dcc, Mapping):
        raise CredentialError("CWT: no EU DCC (hcert claim -260, key 1)")
    kind_keys = [k for k in KINDS if k in dcc]
    if len(kind_keys) != 1:
        raise CredentialError("EU DCC: not exactly one of v, t, r")
    entries = dcc[kind_keys[0]]
    if not isinstance(entries, (list, tuple)) or len(entries) != 1 or not isinstance(entries[0], Mapping):
        raise CredentialError(f"EU DCC: {kind_keys[0]} does not hold exactly one entry")
    entry = entries[0]
    uci = _text(entry.get("ci"), "ci", required=True)
    nam = dcc.get("nam")
    if not isinstance(nam, Mapping):
        raise CredentialError("EU DCC: no nam")
    given = _text(nam.get("gn"), "nam.gn") or _text(nam.get("gnt"), "nam.gnt")
    family = _text(nam.get("fn"), "nam.fn") or _text(nam.get("fnt"), "nam.fnt")
    if not (given or family):
        raise CredentialError("EU DCC: no name")
    # Family name first, as on Vietnamese documents and as EU verifier apps list it.
    holder = Holder(" ".join(p for p in (family, given) if p), _text(dcc.get("dob"), "dob") or None)
    return Credential(
        format=NAME, subject_id=uci, kind=KINDS[kind_keys[0]], holder=holder, valid_from_ms=iat_ms,
        valid_until_ms=exp_ms, issuer=iss or None,
        claims={"ver": cbor.jsonable(dcc.get("ver")), **{k: cbor.jsonable(v) for k, v in entry.items()
                                                          if isinstance(k, str)}},
        proof=DccProof(sign1, sign1.alg, kid, iss))


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_INFLATED_BYTES)
    except zlib.error as exc:
        raise CredentialError(f"zlib: {exc}") from exc
    if inflater.unconsumed_tail:
        raise CredentialError(f"zlib: inflates past {MAX_INFLATED_BYTES} bytes")
    if not inflater.eof:
        raise CredentialError("zlib: truncated stream")
    if inflater.unused_data:
        raise CredentialError("zlib: bytes after the compressed stream")
    return out


def _text(value: object, what: str, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip() and required:
        raise CredentialError(f"EU DCC: {what} is not text")
    if len(value) > MAX_TEXT:
        raise CredentialError(f"EU DCC: {what} is longer than {MAX_TEXT} characters")
    # The specification: strings SHOULD be NFC, and a verifier behaves as if they were.
    return unicodedata.normalize("NFC", value.strip())


def verify(credential: Credential, trust: Trust, at_ms: int) -> Verdict:
    proof: DccProof = credential.proof
    if proof.kid is None:
        return refused(credential, Category.UNTRUSTED, "no key id (kid) in either header")
    kid_text = base64.b64encode(proof.kid).decode()
    signers = trust.dsc.signers(proof.kid)
    if not signers:
        return refused(credential, Category.UNTRUSTED, f"no trusted signer has kid {kid_text}")
    if type(proof.alg) is not int or proof.alg not in cose.ALG_NAMES:  # any CBOR value may sit there
        return refused(credential, Category.SIGNATURE,
                       f"algorithm {for_log(repr(cbor.jsonable(proof.alg)), 40)} is neither ES256 nor PS256")
    # Kids are truncated hashes, so two trusted DSCs may share one: the specification says to try each.
    signer = next((s for s in signers if cose.verify(proof.sign1, proof.alg, s.key)), None)
    if signer is None:
        return refused(credential, Category.SIGNATURE, f"the signature does not verify with kid {kid_text}")
    if signer.not_after_ms is not None and at_ms > signer.not_after_ms:
        return refused(credential, Category.UNTRUSTED, "the signer's certificate has expired", signer=signer.name)
    if signer.not_before_ms is not None and at_ms < signer.not_before_ms:
        return refused(credential, Category.UNTRUSTED, "the signer's certificate is not valid yet",
                       signer=signer.name)
    if credential.kind not in signer.may_sign:
        return refused(credential, Category.KEY_USAGE, f"the signer may not sign {credential.kind} "
                       f"certificates (it may sign: {', '.join(sorted(signer.may_sign))})", signer=signer.name)
    if credential.valid_from_ms is not None and at_ms < credential.valid_from_ms:  # the parser sets both
        return refused(credential, Category.NOT_YET_VALID, "issued after the time of the check (iat)",
                       signer=signer.name)
    if credential.valid_until_ms is not None and at_ms >= credential.valid_until_ms:
        return refused(credential, Category.EXPIRED, "past its expiry (exp)", signer=signer.name)
    kind = revoked_by(credential.subject_id, proof.country, proof.alg, proof.sign1.signature, trust.revoked)
    if kind is not None:
        return refused(credential, Category.REVOKED, f"on a revocation list ({kind} hash)", signer=signer.name)
    if trust.denied(credential.subject_id):
        return refused(credential, Category.REVOKED, "its certificate identifier is deny-listed", signer=signer.name)
    return Verdict(NAME, Category.VALID, "signature, signer, key usage and validity checked",
                   credential, signer=signer.name)


FORMAT = Format(NAME, recognise, _parse, verify)
