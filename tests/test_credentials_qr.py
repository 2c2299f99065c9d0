"""Real QR images of credentials (segno -> PNG -> the appliance's decoder) decoded and verified."""
from __future__ import annotations

import unicodedata

import cv2
import pytest
import segno
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.credentials import Category, Trust, TrustList, evaluate, passes
from edge.credentials.trust import signer_from_der
from edge.decode.reader import make_decoder

from .credfixtures import AT, AT_MS, DAY, cccd_payload, make_dsc, make_hc1


@pytest.fixture(scope="module")
def decoder():
    return make_decoder("multipass")


def decoded(decoder, path) -> str:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    codes = decoder.decode(image)
    assert len(codes) == 1
    return codes[0].text


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_eu_certificate_from_a_png(tmp_path, decoder, kind):
    key, der = make_dsc(kind)
    trust_list = TrustList()
    trust_list.add(signer_from_der(der, country="VN"))
    payload = make_hc1(key, der, kind="t")
    qr = segno.make_qr(payload, error="q", mode="alphanumeric")   # as the specification recommends
    path = tmp_path / "dcc.png"
    qr.save(str(path), kind="png", scale=4, border=4)
    text = decoded(decoder, path)
    assert text == payload
    assert evaluate(text, Trust(dsc=trust_list), AT_MS).category is Category.VALID


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_pass_images(tmp_path, decoder, suffix):
    admin = Ed25519PrivateKey.generate()
    trust = Trust(pass_keys=passes.trusted_keys([passes.public_key_text(admin)]))
    payload = passes.issue_pass(admin, "STAFF-0042", "Nguyễn Văn An", valid_until=AT + DAY, gates=["north"])
    path = passes.save_qr(payload, tmp_path / f"pass.{suffix}")
    if suffix == "svg":
        assert path.read_text().lstrip().startswith("<?xml") and "<svg" in path.read_text()
        return
    qr = segno.make_qr(payload, error="q", mode="alphanumeric")
    assert qr.mode == "alphanumeric" and qr.version <= 10     # a small, robust code (53x53 modules here)
    verdict = evaluate(decoded(decoder, path), trust, AT_MS)
    assert verdict.category is Category.VALID and verdict.credential.holder.name == "Nguyễn Văn An"


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_id_card_from_a_png(tmp_path, decoder, form):
    payload = cccd_payload(name=unicodedata.normalize(form, "Nguyễn Văn An"))
    path = tmp_path / "cccd.png"
    segno.make_qr(payload, error="m", encoding="utf-8").save(str(path), kind="png", scale=4, border=4)
    verdict = evaluate(decoded(decoder, path), Trust(), AT_MS)
    assert verdict.category is Category.VALID
    assert verdict.credential.holder.name == unicodedata.normalize("NFC", "Nguyễn Văn An")


def test_image_of_an_altered_pass_is_refused(tmp_path, decoder):
    admin = Ed25519PrivateKey.generate()
    trust = Trust(pass_keys=passes.trusted_keys([passes.public_key_text(admin)]))
    payload = passes.issue_pass(admin, "V-1", "Visitor")
    # One character changed inside the Base45 body (kept within the alphabet and a valid triple).
    i = len(payload) - 10
    altered = payload[:i] + ("0" if payload[i] != "0" else "1") + payload[i + 1:]
    path = passes.save_qr(altered, tmp_path / "altered.png")
    verdict = evaluate(decoded(decoder, path), trust, AT_MS)
    assert verdict.category in (Category.SIGNATURE, Category.MALFORMED)
