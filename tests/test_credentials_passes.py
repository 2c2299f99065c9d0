"""The appliance's own signed passes: issued, verified offline, refused when forged, altered, expired, revoked."""
from __future__ import annotations

import datetime as dt
import os

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.common.errors import CheckpointError
from edge.credentials import Category, Trust, base45, evaluate, passes
from edge.credentials.errors import CredentialError
from edge.credentials.rules import gate_rule

from .credfixtures import AT, AT_MS, DAY


@pytest.fixture(scope="module")
def admin():
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def trust(admin):
    return Trust(pass_keys=passes.trusted_keys([passes.public_key_text(admin)]))


def check(payload, trust, at_ms=AT_MS, **kw):
    return evaluate(payload, trust, at_ms, formats=["pass"], **kw)


def resign(payload: str, key, change) -> str:
    """The pass with its CBOR body changed by `change`, signed by `key` (None: keep the old signature)."""
    data = base45.decode(payload[4:])
    body, signature = data[:-64], data[-64:]
    new_body = cbor2.dumps(change(cbor2.loads(body)))
    signature = key.sign(passes.DOMAIN + new_body) if key else signature
    return "CP1:" + base45.encode(new_body + signature)


def test_issued_pass_is_valid_and_small(admin, trust):
    payload = passes.issue_pass(admin, "STAFF-0042", "Nguyễn Văn An", valid_from=AT - DAY, valid_until=AT + DAY,
                                gates=["north", "east"])
    assert payload.startswith("CP1:")
    assert set(payload) <= set(base45.ALPHABET)    # QR alphanumeric mode throughout
    assert len(payload) < 250
    verdict = check(payload, trust)
    assert verdict.category is Category.VALID, verdict.detail
    cred = verdict.credential
    assert (cred.subject_id, cred.holder.name, cred.kind) == ("STAFF-0042", "Nguyễn Văn An", "pass")
    assert cred.claims["gates"] == ["north", "east"]
    assert cred.valid_until_ms == AT_MS + 86_400_000


def test_labels_are_nfc(admin, trust):
    import unicodedata

    nfd = unicodedata.normalize("NFD", "Phạm Thu Hương")
    payload = passes.issue_pass(admin, "V-1", nfd)
    assert check(payload, trust).credential.holder.name == unicodedata.normalize("NFC", nfd)


def test_pass_from_an_unknown_key_is_untrusted(trust):
    other = Ed25519PrivateKey.generate()
    assert check(passes.issue_pass(other, "V-1", "Mallory"), trust).category is Category.UNTRUSTED


def test_forged_pass_under_the_trusted_key_id_is_a_signature_failure(admin, trust):
    forger = Ed25519PrivateKey.generate()
    genuine = passes.issue_pass(admin, "V-1", "Visitor")
    forged = resign(genuine, forger, lambda item: item[:3] + ["VIP"] + item[4:])
    verdict = check(forged, trust)
    assert verdict.category is Category.SIGNATURE


@pytest.mark.parametrize("change", [
    lambda item: item[:2] + ["V-2"] + item[3:],                       # another id
    lambda item: item[:5] + [int(AT.timestamp()) + 10 * 86400] + item[6:],  # a later end
    lambda item: item[:6] + [None],                                   # gates removed
])
def test_altered_pass_is_a_signature_failure(admin, trust, change):
    genuine = passes.issue_pass(admin, "V-1", "Visitor", valid_until=AT + DAY, gates=["north"])
    assert check(resign(genuine, None, change), trust).category is Category.SIGNATURE


def test_altered_signature_bytes(admin, trust):
    data = bytearray(base45.decode(passes.issue_pass(admin, "V-1", "Visitor")[4:]))
    data[-1] ^= 1
    assert check("CP1:" + base45.encode(bytes(data)), trust).category is Category.SIGNATURE


def test_expired_and_not_yet_valid(admin, trust):
    assert check(passes.issue_pass(admin, "V-1", "A", valid_until=AT), trust).category is Category.EXPIRED
    assert check(passes.issue_pass(admin, "V-1", "A", valid_from=AT + dt.timedelta(minutes=1)),
                 trust).category is Category.NOT_YET_VALID


def test_revoked_through_the_deny_list(admin, trust):
    denied = Trust(pass_keys=trust.pass_keys, denied={"V-13"}.__contains__)
    assert check(passes.issue_pass(admin, "V-13", "A"), denied).category is Category.REVOKED
    assert check(passes.issue_pass(admin, "V-14", "A"), denied).category is Category.VALID


def test_gates_rule(admin, trust):
    payload = passes.issue_pass(admin, "V-1", "A", gates=["north"])
    assert check(payload, trust, rules=[gate_rule("north")]).category is Category.VALID
    verdict = check(payload, trust, rules=[gate_rule("south")])
    assert verdict.category is Category.RULE and verdict.rule == "gate"
    assert check(passes.issue_pass(admin, "V-2", "A"), trust, rules=[gate_rule("south")]).category is Category.VALID


@pytest.mark.parametrize("item", [[2, b"abcd", "V", "L", None, None, None], [1, b"ab", "V", "L", None, None, None],
                                  [1, b"abcd", "", "L", None, None, None], [1, b"abcd", "V", 5, None, None, None],
                                  [1, b"abcd", "V", "L", "soon", None, None], [1, b"abcd", "V", "L", None, None, [1]],
                                  [True, b"abcd", "V", "L", None, None, None], {"id": "V"}, [1, 2, 3]])
def test_malformed_bodies(item):
    payload = "CP1:" + base45.encode(cbor2.dumps(item) + os.urandom(64))
    assert check(payload, Trust()).category is Category.MALFORMED


def test_key_files_and_trusted_keys(tmp_path):
    path = tmp_path / "admin.key"
    key = passes.generate_key(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    loaded = passes.load_key(path)
    assert passes.public_key_text(loaded) == passes.public_key_text(key)
    with pytest.raises(FileExistsError):
        passes.generate_key(path)
    (tmp_path / "bad.key").write_text("not a key")
    with pytest.raises(passes.PassKeyError):
        passes.load_key(tmp_path / "bad.key")
    with pytest.raises(passes.PassKeyError):
        passes.trusted_keys(["not base64!"])
    with pytest.raises(passes.PassKeyError):
        passes.trusted_keys(["AAAA"])


def test_issue_refuses_what_a_pass_cannot_hold(admin):
    with pytest.raises(passes.PassError):
        passes.issue_pass(admin, "", "A")
    with pytest.raises(passes.PassError):
        passes.issue_pass(admin, "V", "A", valid_until=dt.datetime(2027, 1, 1))   # no zone
    with pytest.raises(passes.PassError):
        passes.issue_pass(admin, "V", "A", gates=[""])
    assert issubclass(passes.PassError, CredentialError) and issubclass(CredentialError, CheckpointError)


def test_issue_many_from_csv(tmp_path, admin, trust):
    import cv2

    from edge.decode.reader import make_decoder

    csv_path = tmp_path / "passes.csv"
    csv_path.write_text("\ufeffid,label,valid_from,valid_until,gates\n"
                        "V-1,Nguyễn Văn An,,2026-12-01,north east\n"
                        "V/2,Trần Thị Bình,2026-11-01T08:00:00+07:00,,\n", encoding="utf-8")
    paths = passes.issue_csv(admin, csv_path, tmp_path / "out")
    assert [p.name for p in paths] == ["V-1.png", "V_2.png"]
    decoder = make_decoder("zxing")
    texts = [decoder.decode(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))[0].text for p in paths]
    first, second = (check(t, trust) for t in texts)
    assert first.category is Category.VALID and first.credential.claims["gates"] == ["north", "east"]
    assert first.credential.valid_until_ms == int(dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp() * 1000)
    assert second.credential.subject_id == "V/2" and second.credential.holder.name == "Trần Thị Bình"


@pytest.mark.parametrize("content,why", [
    ("label\nA\n", "header"),
    ("id,label\nV-1,A\nV-1,B\n", "second pass"),
    ("id,label,valid_until\nV-1,A,someday\n", "line 2"),
    ("id,label\n,A\n", "line 2"),
    ("id,label\nV-1,A,extra\n", "more fields"),
])
def test_a_bad_csv_writes_nothing(tmp_path, admin, content, why):
    csv_path = tmp_path / "passes.csv"
    csv_path.write_text(content, encoding="utf-8")
    with pytest.raises(passes.PassCsvError, match=why):
        passes.issue_csv(admin, csv_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
