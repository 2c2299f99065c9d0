"""EU digital COVID certificates: parsing, signature, trust, key usage, time, revocation and rules."""
from __future__ import annotations

import datetime as dt
import json
import zlib

import cbor2
import pytest
from cryptography import x509

from edge.credentials import (
    Category,
    Trust,
    TrustList,
    TrustListError,
    base45,
    evaluate,
    load_trust_list,
    read,
)
from edge.credentials.revocation import COUNTRYCODEUCI, SIGNATURE, UCI, hashes
from edge.credentials.rules import RuleFailure, dcc_rules
from edge.credentials.settings import DccRules, VaccinationRules
from edge.credentials.trust import signer_from_der

from .credfixtures import (
    AT,
    AT_MS,
    DAY,
    dcc_entry,
    kid_of,
    make_dsc,
    make_hc1,
    signature_of,
    trust_entry,
    with_odd_key_encoding,
    write_trust_list,
)


@pytest.fixture(scope="module")
def signers():
    return {
        "ec": make_dsc("ec"),
        "rsa": make_dsc("rsa"),
        "ec-v": make_dsc("ec", eku=["vaccination"]),
        "rsa-t0": make_dsc("rsa", eku=["test-0", "recovery-0"]),
        "ec-other-eku": make_dsc("ec", eku=["1.3.6.1.5.5.7.3.1"]),     # serverAuth only: may sign all types
        "ec-broken": make_dsc("ec", eku=["vaccination-0"], broken_extension=True),
        "ec-expired": make_dsc("ec", not_before=AT - 400 * DAY, not_after=AT - DAY),
        "ec-future": make_dsc("ec", not_before=AT + DAY, not_after=AT + 400 * DAY),
        "untrusted": make_dsc("ec"),
    }


@pytest.fixture(scope="module")
def trust(signers):
    ders = [der for name, (_, der) in signers.items() if name != "untrusted"]
    return Trust(dsc=load_trust_list(json.dumps([trust_entry(d) for d in ders]).encode()))


def check(payload, trust, at_ms=AT_MS, **kw):
    return evaluate(payload, trust, at_ms, formats=["dcc"], **kw)


@pytest.mark.parametrize("signer", ["ec", "rsa"])
@pytest.mark.parametrize("kind", ["v", "t", "r"])
def test_valid_certificates_of_each_type_and_algorithm(signers, trust, signer, kind):
    key, der = signers[signer]
    verdict = check(make_hc1(key, der, kind=kind), trust)
    assert verdict.category is Category.VALID, verdict.detail
    cred = verdict.credential
    assert cred.kind == {"v": "vaccination", "t": "test", "r": "recovery"}[kind]
    assert cred.subject_id == "URN:UVCI:01:VN:ABC123#X"
    assert cred.holder.name == "Nguyễn Văn An" and cred.holder.date_of_birth == "1990-04-12"
    assert cred.issuer == "VN" and verdict.signer.startswith("VN/")


@pytest.mark.parametrize("variant", [dict(compress=False), dict(tag=False), dict(kid_where="unprotected"),
                                     dict(alg_where="unprotected"),
                                     dict(kid_where="unprotected", alg_where="unprotected", compress=False)])
def test_variants_the_specification_allows(signers, trust, variant):
    key, der = signers["ec"]
    assert check(make_hc1(key, der, **variant), trust).category is Category.VALID


def test_a_kid_in_the_protected_header_wins_over_the_unprotected_one(signers, trust):
    key, der = signers["ec"]
    other_key, other_der = signers["rsa"]
    payload = make_hc1(key, der)
    data = zlib.decompress(base45.decode(payload[4:]))
    tag = cbor2.loads(data)
    protected, _, body, sig = tag.value
    lying = cbor2.dumps(cbor2.CBORTag(18, [protected, {4: kid_of(other_der)}, body, sig]))
    assert check("HC1:" + base45.encode(zlib.compress(lying)), trust).category is Category.VALID


def test_tampered_payload_is_a_signature_failure(signers, trust):
    key, der = signers["ec"]
    verdict = check(make_hc1(key, der, tamper=True), trust)
    assert verdict.category is Category.SIGNATURE


def test_unknown_kid_is_untrusted_and_no_other_key_is_tried(signers, trust):
    key, der = signers["untrusted"]
    assert check(make_hc1(key, der), trust).category is Category.UNTRUSTED
    # Signed by a trusted key, but naming a kid nobody has: untrusted, although a listed key would verify it.
    key, der = signers["ec"]
    verdict = check(make_hc1(key, der, kid=b"\x00" * 8), trust)
    assert verdict.category is Category.UNTRUSTED and "AAAAAAAAAAA=" in verdict.detail


def test_no_kid_at_all_is_untrusted(signers, trust):
    key, der = signers["ec"]
    assert check(make_hc1(key, der, kid_where="none"), trust).category is Category.UNTRUSTED


def test_signed_by_another_key_under_a_trusted_kid_is_a_signature_failure(signers, trust):
    key, _ = signers["untrusted"]
    _, der = signers["ec"]
    assert check(make_hc1(key, der), trust).category is Category.SIGNATURE


def test_two_signers_sharing_a_kid_are_both_tried(signers):
    (_, der_a), (key_b, der_b) = signers["ec"], signers["rsa"]
    shared = b"kidkid00"
    trust_list = TrustList()
    trust_list.add(signer_from_der(der_a, country="VN", kid=shared))
    trust_list.add(signer_from_der(der_b, country="VN", kid=shared))
    verdict = check(make_hc1(key_b, der_b, kid=shared), Trust(dsc=trust_list))
    assert verdict.category is Category.VALID


def test_expired_and_not_yet_valid(signers, trust):
    key, der = signers["ec"]
    assert check(make_hc1(key, der, exp=AT - dt.timedelta(seconds=1)), trust).category is Category.EXPIRED
    assert check(make_hc1(key, der, iat=AT + dt.timedelta(hours=1)), trust).category is Category.NOT_YET_VALID
    payload = make_hc1(key, der)
    assert check(payload, trust, at_ms=AT_MS + 340 * 86_400_000).category is Category.EXPIRED


@pytest.mark.parametrize("signer", ["ec-expired", "ec-future"])
def test_a_signer_outside_its_own_validity_is_untrusted(signers, trust, signer):
    key, der = signers[signer]
    verdict = check(make_hc1(key, der), trust)
    assert verdict.category is Category.UNTRUSTED and "signer" in verdict.detail


def test_extended_key_usage_limits_certificate_types_in_both_oid_families(signers, trust):
    key, der = signers["ec-v"]
    assert check(make_hc1(key, der, kind="v"), trust).category is Category.VALID
    for kind in ("t", "r"):
        assert check(make_hc1(key, der, kind=kind), trust).category is Category.KEY_USAGE
    key, der = signers["rsa-t0"]
    assert check(make_hc1(key, der, kind="t"), trust).category is Category.VALID
    assert check(make_hc1(key, der, kind="r"), trust).category is Category.VALID
    assert check(make_hc1(key, der, kind="v"), trust).category is Category.KEY_USAGE
    key, der = signers["ec-other-eku"]
    for kind in ("v", "t", "r"):
        assert check(make_hc1(key, der, kind=kind), trust).category is Category.VALID


def test_a_signer_certificate_cryptography_refuses_still_works(signers, trust):
    key, der = signers["ec-broken"]
    with pytest.raises(ValueError):
        x509.load_der_x509_certificate(der).extensions  # noqa: B018 - the point: cryptography refuses it
    assert check(make_hc1(key, der, kind="v"), trust).category is Category.VALID
    assert check(make_hc1(key, der, kind="t"), trust).category is Category.KEY_USAGE


@pytest.mark.parametrize("kind,how", [("ec", "explicit"), ("rsa", "pss")])
def test_signer_keys_in_other_encodings(kind, how):
    key, der = make_dsc(kind)
    odd = with_odd_key_encoding(der, how)
    trust_list = load_trust_list(json.dumps([trust_entry(odd)]).encode())
    assert len(trust_list) == 1 and not trust_list.skipped
    assert check(make_hc1(key, odd), Trust(dsc=trust_list)).category is Category.VALID


@pytest.mark.parametrize("signer", ["ec", "rsa"])
@pytest.mark.parametrize("kind", [UCI, COUNTRYCODEUCI, SIGNATURE])
def test_revoked_by_each_hash_type(signers, trust, signer, kind):
    key, der = signers[signer]
    payload = make_hc1(key, der)
    alg = -7 if signer == "ec" else -37
    digest = hashes("URN:UVCI:01:VN:ABC123#X", "VN", alg, signature_of(payload))[kind]
    revoked = Trust(dsc=trust.dsc, revoked={digest}.__contains__)
    verdict = check(payload, revoked)
    assert verdict.category is Category.REVOKED and kind in verdict.detail
    assert check(make_hc1(key, der, entry=dcc_entry(ci="URN:UVCI:01:VN:OTHER#Y")), revoked).category is Category.VALID


def test_revocation_hashes_follow_the_specification():
    import hashlib

    sig = bytes(range(64))
    h = hashes("URN:UVCI:X", "VN", -7, sig)
    assert h[UCI] == hashlib.sha256(b"URN:UVCI:X").digest()[:16]
    assert h[COUNTRYCODEUCI] == hashlib.sha256(b"VNURN:UVCI:X").digest()[:16]
    assert h[SIGNATURE] == hashlib.sha256(sig[:32]).digest()[:16]        # ES256: the r half only
    assert hashes("U", "VN", -37, sig)[SIGNATURE] == hashlib.sha256(sig).digest()[:16]


def test_a_deny_listed_certificate_identifier_is_revoked(signers, trust):
    key, der = signers["ec"]
    denied = Trust(dsc=trust.dsc, denied={"URN:UVCI:01:VN:ABC123#X"}.__contains__)
    assert check(make_hc1(key, der), denied).category is Category.REVOKED


@pytest.mark.parametrize("claims", [
    {1: "VN", 4: 1, 6: 0},                                            # no hcert
    {1: "VN", 6: 0, -260: {1: {}}},                                   # no exp
    {1: "VN", 4: 2**70, 6: 0, -260: {1: {"nam": {"fn": "A"}, "v": [{"ci": "X"}]}}},  # absurd time
    {1: "VN", 4: 10, 6: 0, -260: {1: {"nam": {"fn": "A"}, "v": [{"ci": "X"}], "t": [{"ci": "Y"}]}}},
    {1: "VN", 4: 10, 6: 0, -260: {1: {"nam": {"fn": "A"}, "v": [{"ci": "X"}, {"ci": "Z"}]}}},
    {1: "VN", 4: 10, 6: 0, -260: {1: {"nam": {}, "v": [{"ci": "X"}]}}},
    {1: "VN", 4: 10, 6: 0, -260: {1: {"nam": {"fn": "A"}, "v": [{"ci": 5}]}}},
    {1: 5, 4: 10, 6: 0, -260: {1: {"nam": {"fn": "A"}, "v": [{"ci": "X"}]}}},
])
def test_signed_but_malformed_claims(signers, trust, claims):
    key, der = signers["ec"]
    assert check(make_hc1(key, der, raw_claims=claims), trust).category is Category.MALFORMED


@pytest.mark.parametrize("payload", ["HC1:", "HC1:A", "HC1:abc", "HC1:" + base45.encode(b"\x78\x9c garbage"),
                                     "HC1:" + base45.encode(zlib.compress(b"\xa0" * 2)),
                                     "HC1:" + base45.encode(zlib.compress(b"\x00" * 1_000_000)),
                                     "HC1:" + base45.encode(cbor2.dumps(cbor2.CBORTag(98, [])))])
def test_undecodable_payloads_are_malformed(trust, payload):
    verdict = check(payload, trust)
    assert verdict.category is Category.MALFORMED and verdict.credential is None


def test_disabled_format_is_a_plain_code(signers, trust):
    key, der = signers["ec"]
    assert evaluate(make_hc1(key, der), trust, AT_MS, formats=["pass", "cccd"]) is None
    assert read("GUEST-0001") is None


# ---- trust lists --------------------------------------------------------------------------------
def test_trust_list_file_forms_and_skipped_entries(tmp_path, signers):
    (_, ec_der), (_, rsa_der) = signers["ec"], signers["rsa"]
    small_key_cert = make_small_rsa_cert()
    entries = [trust_entry(ec_der), trust_entry(rsa_der, country="DE"),
               {**trust_entry(ec_der), "certificateType": "CSCA"},
               trust_entry(rsa_der, kid=b"12345678"),            # kid that is not the certificate's
               trust_entry(small_key_cert),                       # RSA 1024: unusable for PS256
               trust_entry(make_dsc("ec384")[1]),                 # P-384: not ES256
               {**trust_entry(ec_der), "rawData": "not base64!"}]
    path = tmp_path / "trust.json"
    path.write_text(json.dumps({"certificates": entries}))
    trust_list = load_trust_list(path)
    assert len(trust_list) == 2
    assert len(trust_list.skipped) == 4
    assert any("P-256" in line for line in trust_list.skipped) and any("1024" in line for line in trust_list.skipped)
    assert trust_list.signers(kid_of(rsa_der))[0].country == "DE"
    assert write_trust_list(tmp_path / "plain.json", ec_der).exists()
    assert len(load_trust_list(tmp_path / "plain.json")) == 1


@pytest.mark.parametrize("content", [b"", b"{", b"{}", b"[1]", b"[[]]", b"[" * 100_000, b"[" + b"9" * 5000 + b"]"])
def test_unusable_trust_list_files(tmp_path, content):
    path = tmp_path / "trust.json"
    path.write_bytes(content)
    with pytest.raises(TrustListError):
        load_trust_list(path)
    with pytest.raises(TrustListError):
        load_trust_list(tmp_path / "missing.json")


def make_small_rsa_cert() -> bytes:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(65537, 1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "small")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(AT - DAY).not_valid_after(AT + DAY).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


# ---- rules ----------------------------------------------------------------------------------------
RULES = dcc_rules(DccRules())


@pytest.mark.parametrize("kind,entry,rule", [
    ("v", dcc_entry("v", dn=1, sd=2), "vaccination-incomplete"),
    ("v", dcc_entry("v", dt=(AT - 3 * DAY).date().isoformat()), "vaccination-too-recent"),
    ("v", dcc_entry("v", dt=(AT - 400 * DAY).date().isoformat()), "vaccination-too-old"),
    ("v", dcc_entry("v", dt="yesterday"), "vaccination-data"),
    ("v", dcc_entry("v", tg="12345"), "disease"),
    ("t", dcc_entry("t", tr="260373001"), "test-positive"),
    ("t", dcc_entry("t", tt="LP217198-3", sc=(AT - dt.timedelta(hours=50)).isoformat()), "test-too-old"),
    ("t", dcc_entry("t", tt="XX-1"), "test-type"),
    ("t", dcc_entry("t", sc=(AT + dt.timedelta(hours=2)).isoformat()), "test-in-future"),
    ("t", dcc_entry("t", sc="soon"), "test-data"),
    ("r", dcc_entry("r", du=(AT - DAY).date().isoformat()), "recovery-expired"),
    ("r", dcc_entry("r", df=(AT + DAY).date().isoformat()), "recovery-not-yet-valid"),
])
def test_rules_refuse_with_the_rule_that_failed(signers, trust, kind, entry, rule):
    key, der = signers["ec"]
    payload = make_hc1(key, der, kind=kind, entry=entry)
    assert check(payload, trust).category is Category.VALID     # verification alone accepts it
    verdict = check(payload, trust, rules=RULES)
    assert verdict.category is Category.RULE and verdict.rule == rule, verdict.detail


def test_rules_are_configurable_and_a_seam(signers, trust):
    key, der = signers["ec"]
    payload = make_hc1(key, der, kind="v", entry=dcc_entry("v", dn=1, sd=2))
    lenient = dcc_rules(DccRules(vaccination=VaccinationRules(require_complete=False)))
    assert check(payload, trust, rules=lenient).category is Category.VALID
    tests_only = dcc_rules(DccRules(accept=["test"]))
    assert check(payload, trust, rules=tests_only).rule == "type-not-accepted"

    def country_rule(credential, at_ms):
        return RuleFailure("country", "only VN") if credential.claims.get("co") != "VN" else None

    other = make_hc1(key, der, entry=dcc_entry("v", co="FR"))
    assert check(other, trust, rules=[*RULES, country_rule]).rule == "country"
    assert check(make_hc1(key, der), trust, rules=[*RULES, country_rule]).category is Category.VALID
