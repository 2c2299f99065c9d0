"""Hostile payloads: whatever follows "HC1:", "CP1:" or an ID number, the answer is a typed verdict.

Invariant: `evaluate` returns a Verdict (or None for a plain code) and never raises; a mutated genuine
payload is never accepted as anything but what was signed.
"""
from __future__ import annotations

import json
import zlib

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.app.credentialcli import verdict_json
from edge.credentials import (
    Category,
    Trust,
    TrustListError,
    Verdict,
    base45,
    evaluate,
    load_trust_list,
    passes,
)
from edge.credentials.trust import signer_from_der

from .credfixtures import AT_MS, kid_of, make_dsc, make_hc1, trust_entry

_EC_KEY, _EC_DER = make_dsc("ec")
_ADMIN = Ed25519PrivateKey.generate()
TRUST = Trust(dsc=load_trust_list(json.dumps([trust_entry(_EC_DER)]).encode()),
              pass_keys=passes.trusted_keys([passes.public_key_text(_ADMIN)]))
GENUINE_DCC = make_hc1(_EC_KEY, _EC_DER)
GENUINE_PASS = passes.issue_pass(_ADMIN, "V-1", "Nguyễn Văn An", gates=["north"])
GENUINE = {p: evaluate(p, TRUST, AT_MS).credential for p in (GENUINE_DCC, GENUINE_PASS)}

text = st.text(st.characters(codec="utf-8"), max_size=600)   # control characters, surrogates excluded
huge_ints = st.one_of(st.integers(), st.integers(min_value=2 ** 63), st.integers(max_value=-(2 ** 64)),
                      st.integers(64, 20_000).map(lambda bits: 2 ** bits))   # past str()'s 4300 digits
leaves = st.one_of(st.none(), st.booleans(), huge_ints, st.floats(), st.binary(max_size=80), text)


def _tagged(children):
    return st.builds(cbor2.CBORTag, st.sampled_from([0, 1, 2, 3, 18, 24, 61, 258, 259, 99999]), children)


cbor_values = st.recursive(
    leaves, lambda children: st.one_of(st.lists(children, max_size=5),
                                       st.dictionaries(st.one_of(huge_ints, text), children, max_size=5),
                                       _tagged(children)),
    max_leaves=40)

# Headers that claim sizes no payload holds, indefinite lengths cut short, deep nesting.
evil_prefixes = st.sampled_from([b"", b"\x5b\x7f\xff\xff\xff\xff\xff\xff\xff", b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff",
                                 b"\xbb\x00\x00\x00\x01\x00\x00\x00\x00", b"\x9f" * 50, b"\x81" * 2000, b"\xd2\x84",
                                 b"\xd8\x3d\xd2\x84\x40\xa0", b"\xc2\x5a\x00\x10\x00\x00", b"\x78\x9c"])


def encode(data: bytes, compress: bool) -> str:
    return base45.encode(zlib.compress(data) if compress else data)


def assert_typed(payload: str) -> Verdict | None:
    verdict = evaluate(payload, TRUST, AT_MS)
    assert verdict is None or isinstance(verdict, Verdict) and isinstance(verdict.category, Category)
    json.dumps(verdict_json(verdict), ensure_ascii=False)   # and it can always be printed
    return verdict


@given(st.sampled_from(["HC1:", "CP1:"]), text)
def test_any_text_after_a_prefix(prefix, rest):
    verdict = assert_typed(prefix + rest)
    assert verdict is not None and not verdict.accepted


@given(st.sampled_from(["HC1:", "CP1:"]), evil_prefixes, st.binary(max_size=600), st.booleans())
def test_any_bytes_after_a_prefix(prefix, head, body, compress):
    verdict = assert_typed(prefix + encode(head + body, compress))
    assert not verdict.accepted


@given(cbor_values, st.sampled_from(["message", "protected", "unprotected", "payload", "pass"]), st.booleans())
def test_any_cbor_where_a_certificate_or_pass_has_cbor(value, where, compress):
    try:
        item = cbor2.dumps(value)
    except (cbor2.CBOREncodeError, ValueError, TypeError, OverflowError):
        return
    if where == "pass":
        payload = "CP1:" + base45.encode(item + b"\x00" * 64)
    else:
        protected, unprotected, body = cbor2.dumps({1: -7, 4: b"12345678"}), {}, item
        if where == "message":
            message = item
        else:
            if where == "protected":
                protected = item
            elif where == "unprotected":
                unprotected = value
            message = cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, body if where == "payload" else b"\xa0",
                                                     b"\x00" * 64]))
        payload = "HC1:" + encode(message, compress)
    assert not assert_typed(payload).accepted


@given(cbor_values, st.sampled_from([1, 4]), st.booleans())
def test_any_value_as_algorithm_or_key_id(value, label, protected_side):
    """Header parameters of any type, beside the trusted kid so verification reaches them."""
    headers = {1: -7, 4: kid_of(_EC_DER)}
    headers[label] = value
    try:
        encoded = cbor2.dumps(headers)
    except (cbor2.CBOREncodeError, ValueError, TypeError, OverflowError):
        return
    protected, unprotected = (encoded, {}) if protected_side else (b"", headers)
    body = base45.decode(GENUINE_DCC[4:])
    signed = cbor2.loads(zlib.decompress(body)).value
    message = cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, signed[2], signed[3]]))
    assert not assert_typed("HC1:" + encode(message, True)).accepted


def test_nesting_far_past_the_limit():
    for depth in (33, 500, 100_000):
        nested = b"\x81" * depth + b"\x00"
        assert assert_typed("HC1:" + encode(nested, True)).category is Category.MALFORMED
        assert assert_typed("CP1:" + base45.encode(nested + b"\x00" * 64)).category is Category.MALFORMED


@settings(max_examples=60)
@given(st.sampled_from(sorted(GENUINE)), st.data())
def test_mutated_genuine_payloads(genuine, data):
    decoded = base45.decode(genuine[4:])
    is_dcc = genuine.startswith("HC1:")
    raw = zlib.decompress(decoded) if is_dcc else decoded
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        i = data.draw(st.integers(0, max(0, len(mutated) - 1)))
        if op == "flip" and mutated:
            mutated[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "insert":
            mutated[i:i] = data.draw(st.binary(min_size=1, max_size=4))
        elif mutated:
            del mutated[i]
    payload = genuine[:4] + (encode(bytes(mutated), data.draw(st.booleans())) if is_dcc
                             else base45.encode(bytes(mutated)))
    verdict = assert_typed(payload)
    if verdict.accepted:  # e.g. a change in the unsigned header: the signed content must be unchanged
        assert verdict.credential == GENUINE[genuine]


@given(st.from_regex(r"[0-9]{12}\|", fullmatch=True), text)
def test_any_id_card_text(number, rest):
    assert assert_typed(number + rest) is not None


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), text),
                           lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(text, c, max_size=4)),
                           max_leaves=30)


@given(st.one_of(json_values, st.lists(st.fixed_dictionaries(
    {"kid": st.one_of(text, st.just("AAAAAAAAAAA=")), "rawData": st.one_of(text, st.binary(max_size=300).map(
        lambda b: __import__("base64").b64encode(b).decode())), "country": text}))))
def test_any_trust_list(doc):
    try:
        trust_list = load_trust_list(json.dumps(doc).encode())
    except TrustListError:
        return
    assert len(trust_list) == 0


@given(st.binary(max_size=400))
def test_any_certificate_bytes(der):
    try:
        signer_from_der(der)
    except TrustListError:
        pass
