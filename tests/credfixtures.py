"""Test credentials made here: signer certificates, trust lists, EU certificates, passes, ID card payloads.

EU certificates are built with cbor2 and cryptography directly, not with the code under test, so a
verifier that misreads the format cannot agree with itself.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import zlib
from pathlib import Path

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from edge.credentials import base45

UTC = dt.UTC
AT = dt.datetime(2026, 11, 29, 12, 0, tzinfo=UTC)   # "now" in every test
AT_MS = int(AT.timestamp() * 1000)
DAY = dt.timedelta(days=1)
EKU = {"test": "1.3.6.1.4.1.1847.2021.1.1", "vaccination": "1.3.6.1.4.1.1847.2021.1.2",
       "recovery": "1.3.6.1.4.1.1847.2021.1.3",
       "test-0": "1.3.6.1.4.1.0.1847.2021.1.1", "vaccination-0": "1.3.6.1.4.1.0.1847.2021.1.2",
       "recovery-0": "1.3.6.1.4.1.0.1847.2021.1.3"}
ES256, PS256 = -7, -37


def _name(cn: str, country: str = "VN") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, country), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


_CSCA = ec.generate_private_key(ec.SECP256R1())


def make_dsc(kind: str = "ec", *, eku: list[str] | None = None, not_before: dt.datetime = AT - 365 * DAY,
             not_after: dt.datetime = AT + 365 * DAY, broken_extension: bool = False,
             country: str = "VN"):
    """(private key, DER) of a document signer certificate issued by a test CSCA."""
    key = (ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else
           ec.generate_private_key(ec.SECP384R1()) if kind == "ec384" else rsa.generate_private_key(65537, 2048))
    builder = (x509.CertificateBuilder().subject_name(_name(f"DSC {kind}", country))
               .issuer_name(_name("CSCA", country)).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(not_before)
               .not_valid_after(not_after))
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier(EKU.get(e, e)) for e in eku]),
                                        critical=False)
    if broken_extension:
        # A basicConstraints whose value is cut short: `cryptography` refuses the certificate's extensions.
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.19"), b"\x30\x03\x01\x01"), critical=False)
    cert = builder.sign(_CSCA, hashes.SHA256())
    return key, cert.public_bytes(serialization.Encoding.DER)


def kid_of(der: bytes) -> bytes:
    return hashlib.sha256(der).digest()[:8]


def trust_entry(der: bytes, country: str = "VN", kid: bytes | None = None) -> dict:
    return {"kid": base64.b64encode(kid if kid is not None else kid_of(der)).decode(), "country": country,
            "certificateType": "DSC", "rawData": base64.b64encode(der).decode(),
            "thumbprint": hashlib.sha256(der).hexdigest(), "timestamp": "2026-01-01T00:00:00Z"}


def write_trust_list(path: Path, *ders: bytes) -> Path:
    path.write_text(json.dumps([trust_entry(d) for d in ders]), encoding="utf-8")
    return path


def dcc_entry(kind: str = "v", ci: str = "URN:UVCI:01:VN:ABC123#X", **overrides) -> dict:
    if kind == "v":
        entry = {"tg": "840539006", "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": 2,
                 "sd": 2, "dt": (AT - 60 * DAY).date().isoformat(), "co": "VN", "is": "Bộ Y tế", "ci": ci}
    elif kind == "t":
        entry = {"tg": "840539006", "tt": "LP6464-4", "nm": "PCR", "sc": (AT - dt.timedelta(hours=20)).isoformat(),
                 "tr": "260415000", "tc": "Test centre", "co": "VN", "is": "Bộ Y tế", "ci": ci}
    else:
        entry = {"tg": "840539006", "fr": (AT - 40 * DAY).date().isoformat(), "co": "VN", "is": "Bộ Y tế",
                 "df": (AT - 30 * DAY).date().isoformat(), "du": (AT + 100 * DAY).date().isoformat(), "ci": ci}
    entry.update(overrides)
    return entry


def make_hc1(key, der: bytes, *, kind: str = "v", entry: dict | None = None, iat: dt.datetime = AT - 30 * DAY,
             exp: dt.datetime = AT + 300 * DAY, iss: str = "VN", name: tuple[str, str] = ("Nguyễn", "Văn An"),
             compress: bool = True, tag: bool = True, kid: bytes | None = None, kid_where: str = "protected",
             alg_where: str = "protected", tamper: bool = False, raw_claims: dict | None = None) -> str:
    """An EU DCC as a QR payload, signed by `key` (ES256 for EC, PS256 for RSA)."""
    alg = ES256 if isinstance(key, ec.EllipticCurvePrivateKey) else PS256
    kid = kid if kid is not None else kid_of(der)
    protected, unprotected = {}, {}
    (protected if alg_where == "protected" else unprotected)[1] = alg
    if kid_where != "none":
        (protected if kid_where == "protected" else unprotected)[4] = kid
    family, given = name
    claims = raw_claims if raw_claims is not None else {
        1: iss, 4: int(exp.timestamp()), 6: int(iat.timestamp()),
        -260: {1: {"ver": "1.3.0", "nam": {"fn": family, "gn": given, "fnt": "NGUYEN", "gnt": "VAN<AN"},
                   "dob": "1990-04-12", kind: [entry or dcc_entry(kind)]}}}
    payload = cbor2.dumps(claims)
    protected_bytes = cbor2.dumps(protected) if protected else b""
    tbs = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    if alg == ES256:
        r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        signature = key.sign(tbs, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    if tamper:
        payload = payload.replace(given.encode(), given.upper().encode()) if given.upper() != given else payload + b""
    message = [protected_bytes, unprotected, payload, signature]
    data = cbor2.dumps(cbor2.CBORTag(18, message) if tag else message)
    if compress:
        data = zlib.compress(data, 9)
    return "HC1:" + base45.encode(data)


def signature_of(payload: str) -> bytes:
    """The COSE signature of an HC1 payload (for revocation hashes)."""
    data = base45.decode(payload[4:])
    if data[:1] == b"\x78":
        data = zlib.decompress(data)
    item = cbor2.loads(data)
    return (item.value if isinstance(item, cbor2.CBORTag) else item)[3]


def cccd_payload(number: str = "001090012345", old_id: str = "123456789", name: str = "Nguyễn Văn An",
                 dob: str = "12041990", sex: str = "Nam", address: str = "Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội",
                 issued: str = "15082021", extra: tuple[str, ...] = ()) -> str:
    return "|".join((number, old_id, name, dob, sex, address, issued, *extra))


_P256 = dict(
    p=0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF,
    b=0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
    g=bytes.fromhex("046B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296"
                    "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5"),
    n=0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551)


def with_odd_key_encoding(der: bytes, how: str) -> bytes:
    """The certificate re-signed with its key encoded as some real DSCs have it: `explicit` EC curve
    parameters instead of the curve's name, or an RSA key under the id-RSASSA-PSS (`pss`) algorithm OID."""
    from asn1crypto import keys as ak
    from asn1crypto import x509 as ax

    cert = ax.Certificate.load(der)
    tbs = cert["tbs_certificate"]
    spki = tbs["subject_public_key_info"]
    if how == "explicit":
        p = _P256["p"]
        domain = ak.SpecifiedECDomain({
            "version": "ecdpVer1", "field_id": {"field_type": "prime_field", "parameters": p},
            "curve": {"a": (p - 3).to_bytes(32, "big"), "b": _P256["b"].to_bytes(32, "big")},
            "base": _P256["g"], "order": _P256["n"], "cofactor": 1})
        algorithm = {"algorithm": "ec", "parameters": ak.ECDomainParameters(name="specified", value=domain)}
        public_key = spki["public_key"].native
    else:
        algorithm = {"algorithm": "rsassa_pss"}
        public_key = spki["public_key"].parsed
    tbs["subject_public_key_info"] = ak.PublicKeyInfo({"algorithm": algorithm, "public_key": public_key})
    tbs_der = tbs.dump(force=True)
    signature = _CSCA.sign(tbs_der, ec.ECDSA(hashes.SHA256()))
    return ax.Certificate({"tbs_certificate": ax.TbsCertificate.load(tbs_der),
                           "signature_algorithm": cert["signature_algorithm"],
                           "signature_value": signature}).dump()
