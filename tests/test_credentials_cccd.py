"""The QR code of Vietnam's chip citizen ID card: parsed, its 12-digit number checked against itself."""
from __future__ import annotations

import unicodedata

import pytest

from edge.credentials import Category, Trust, evaluate, read

from .credfixtures import AT_MS, cccd_payload


def check(payload, trust=Trust(), at_ms=AT_MS, **kw):
    return evaluate(payload, trust, at_ms, formats=["cccd"], **kw)


def test_a_valid_card():
    verdict = check(cccd_payload())
    assert verdict.category is Category.VALID
    cred = verdict.credential
    assert (cred.format, cred.subject_id, cred.kind) == ("cccd", "001090012345", "id-card")
    assert cred.holder.name == "Nguyễn Văn An" and cred.holder.date_of_birth == "1990-04-12"
    assert cred.claims["sex"] == "male" and cred.claims["province"] == "Hà Nội"
    assert cred.claims["issued"] == "2021-08-15" and cred.claims["old_id"] == "123456789"
    assert "address" not in cred.claims and "Tràng Tiền" not in repr(cred)


def test_the_address_is_kept_only_when_asked():
    cred = read(cccd_payload(), ["cccd"], keep_address=True)
    assert cred.claims["address"] == "Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội"


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_names_and_sex_in_nfc_or_nfd(form):
    text = cccd_payload(number="079303004567", name=unicodedata.normalize(form, "Phạm Thu Hương"),
                        dob="01022003", sex=unicodedata.normalize(form, "Nữ"), old_id="")
    cred = check(text).credential
    assert cred.holder.name == unicodedata.normalize("NFC", "Phạm Thu Hương")
    assert cred.claims["sex"] == "female" and "old_id" not in cred.claims


@pytest.mark.parametrize("number,dob,sex", [
    ("001090012345", "12041990", "Nam"),     # male, 20th century
    ("001190012345", "12041990", "Nữ"),      # female, 20th century
    ("048200012345", "05062000", "Nam"),     # male, 21st century
    ("096325012345", "31122025", "Nữ"),      # female, 21st century
])
def test_sex_and_century_digits(number, dob, sex):
    assert check(cccd_payload(number=number, dob=dob, sex=sex, issued="01012026")).category is Category.VALID


def test_newer_cards_with_extra_fields_are_tolerated():
    assert check(cccd_payload(extra=("", "something new"))).category is Category.VALID


@pytest.mark.parametrize("payload,why", [
    (cccd_payload(number="001090012345", sex="Nữ"), "sex digit"),
    (cccd_payload(number="001290012345"), "century"),                       # 21st century digit, born 1990
    (cccd_payload(number="001091012345"), "year digits"),
    (cccd_payload(number="003090012345"), "province"),                     # 003 is no province
    (cccd_payload(number="100090012345"), "province"),
    (cccd_payload(dob="31021990"), "not a date"),
    (cccd_payload(dob="1990-04-12"), "DDMMYYYY"),
    (cccd_payload(issued="15082021".replace("2021", "1980")), "before"),
    (cccd_payload(sex="M"), "Nam nor"),
    (cccd_payload(old_id="12345"), "old ID"),
    (cccd_payload(name="  "), "name"),
    (cccd_payload(name="12345"), "name"),
    ("001090012345|123456789|Nguyễn Văn An|12041990|Nam", "fields"),
])
def test_malformed_cards(payload, why):
    verdict = check(payload)
    assert verdict.category is Category.MALFORMED and why in verdict.detail, verdict.detail


@pytest.mark.parametrize("payload", ["00109001234|x|y", "0010900123456|a", "ABC", "001090012345"])
def test_not_recognised_as_a_card_is_a_plain_code(payload):
    assert check(payload) is None


def test_deny_listed_number_and_future_issue_date():
    assert check(cccd_payload(), Trust(denied={"001090012345"}.__contains__)).category is Category.REVOKED
    assert check(cccd_payload(issued="01012030")).category is Category.NOT_YET_VALID
