"""The QR code on Vietnam's chip citizen ID card (căn cước công dân, CCCD).

It holds `ID|old ID|full name|date of birth DDMMYYYY|sex|address|issue date DDMMYYYY` (the old 9-digit ID
may be empty; newer cards add fields after these, which are tolerated and ignored). The code is not
signed: it tells who a visitor says they are, as the card's face does; it proves nothing on its own.

The 12-digit number is checked as Decree 137/2015/ND-CP lays it out: 3 digits of the province where the
birth was registered (the list of Circular 07/2016/TT-BCA), 1 digit of sex and century (0/1 = male/female
born 1900-1999, 2/3 = 2000-2099, 4/5 = 2100-2199, …), 2 digits of the birth year, 6 digits of sequence.
The sex and century digit must agree with the date of birth and the sex field; the year digits with the
year. The subject id is the 12-digit number; the label the name, in Unicode NFC. The address is kept
only when asked (`keep_address`).
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata

from edge.credentials.context import Trust
from edge.credentials.formats import Format, ParseOptions
from edge.credentials.model import (
    Category,
    Credential,
    CredentialError,
    Holder,
    Verdict,
    refused,
)

NAME = "cccd"
MAX_PAYLOAD_CHARS = 1024
MAX_NAME = 100

# Circular 07/2016/TT-BCA, appendix 1: codes of the 63 provinces and cities where a birth is registered.
PROVINCES = {
    "001": "Hà Nội", "002": "Hà Giang", "004": "Cao Bằng", "006": "Bắc Kạn", "008": "Tuyên Quang",
    "010": "Lào Cai", "011": "Điện Biên", "012": "Lai Châu", "014": "Sơn La", "015": "Yên Bái",
    "017": "Hòa Bình", "019": "Thái Nguyên", "020": "Lạng Sơn", "022": "Quảng Ninh", "024": "Bắc Giang",
    "025": "Phú Thọ", "026": "Vĩnh Phúc", "027": "Bắc Ninh", "030": "Hải Dương", "031": "Hải Phòng",
    "033": "Hưng Yên", "034": "Thái Bình", "035": "Hà Nam", "036": "Nam Định", "037": "Ninh Bình",
    "038": "Thanh Hóa", "040": "Nghệ An", "042": "Hà Tĩnh", "044": "Quảng Bình", "045": "Quảng Trị",
    "046": "Thừa Thiên Huế", "048": "Đà Nẵng", "049": "Quảng Nam", "051": "Quảng Ngãi", "052": "Bình Định",
    "054": "Phú Yên", "056": "Khánh Hòa", "058": "Ninh Thuận", "060": "Bình Thuận", "062": "Kon Tum",
    "064": "Gia Lai", "066": "Đắk Lắk", "067": "Đắk Nông", "068": "Lâm Đồng", "070": "Bình Phước",
    "072": "Tây Ninh", "074": "Bình Dương", "075": "Đồng Nai", "077": "Bà Rịa - Vũng Tàu",
    "079": "Hồ Chí Minh", "080": "Long An", "082": "Tiền Giang", "083": "Bến Tre", "084": "Trà Vinh",
    "086": "Vĩnh Long", "087": "Đồng Tháp", "089": "An Giang", "091": "Kiên Giang", "092": "Cần Thơ",
    "093": "Hậu Giang", "094": "Sóc Trăng", "095": "Bạc Liêu", "096": "Cà Mau",
}
VIETNAM = dt.timezone(dt.timedelta(hours=7), "ICT")  # the issue date is a Vietnamese calendar day
SEXES = {"nam": "male", "nữ": "female"}
_RECOGNISE = re.compile(r"[0-9]{12}\|")
_DIGITS = re.compile(r"[0-9]{12}\Z")
_OLD_ID = re.compile(r"(?:[0-9]{9}|[0-9]{12})?\Z")


def recognise(payload: str) -> bool:
    return _RECOGNISE.match(payload) is not None


def _date(text: str, what: str) -> dt.date:
    if not re.fullmatch(r"[0-9]{8}", text):
        raise CredentialError(f"ID card: {what} is not DDMMYYYY")
    try:
        return dt.date(int(text[4:]), int(text[2:4]), int(text[:2]))
    except ValueError as exc:
        raise CredentialError(f"ID card: {what} is not a date") from exc


def _parse(payload: str, options: ParseOptions) -> Credential:
    if len(payload) > MAX_PAYLOAD_CHARS:
        raise CredentialError("ID card: too long")
    fields = payload.split("|")
    if len(fields) < 7:
        raise CredentialError(f"ID card: {len(fields)} fields, at least 7 expected")
    number, old_id, name, dob_text, sex_text, address, issued_text = fields[:7]
    if not _DIGITS.match(number):
        raise CredentialError("ID card: the number is not 12 digits")
    if not _OLD_ID.match(old_id):
        raise CredentialError("ID card: the old ID is neither empty nor 9 or 12 digits")
    name = unicodedata.normalize("NFC", name).strip()
    if not name or len(name) > MAX_NAME or not any(ch.isalpha() for ch in name) or not name.isprintable():
        raise CredentialError("ID card: the name is not a name")
    sex = SEXES.get(unicodedata.normalize("NFC", sex_text).strip().casefold())
    if sex is None:
        raise CredentialError("ID card: the sex is neither Nam nor Nữ")
    dob = _date(dob_text, "date of birth")
    issued = _date(issued_text, "issue date")
    if issued < dob:
        raise CredentialError("ID card: issued before its holder was born")
    if number[:3] not in PROVINCES:
        raise CredentialError(f"ID card: {number[:3]} is not a province code")
    digit = int(number[3])
    century = 1900 + 100 * (digit // 2)
    if not century <= dob.year < century + 100:
        raise CredentialError("ID card: the century digit does not agree with the date of birth")
    if ("male", "female")[digit % 2] != sex:
        raise CredentialError("ID card: the sex digit does not agree with the sex")
    if number[4:6] != f"{dob.year % 100:02d}":
        raise CredentialError("ID card: the year digits do not agree with the date of birth")
    claims = {"sex": sex, "issued": issued.isoformat(), "province": PROVINCES[number[:3]]}
    if old_id:
        claims["old_id"] = old_id
    if options.keep_address:
        claims["address"] = unicodedata.normalize("NFC", address).strip()
    start = dt.datetime.combine(issued, dt.time(), VIETNAM)
    return Credential(format=NAME, subject_id=number, kind="id-card", holder=Holder(name, dob.isoformat()),
                      valid_from_ms=int(start.timestamp() * 1000), claims=claims)


def verify(credential: Credential, trust: Trust, at_ms: int) -> Verdict:
    """No signature to check: the card's number is well formed; only the deny list can refuse it."""
    if credential.valid_from_ms is not None and at_ms < credential.valid_from_ms:  # the parser sets it
        return refused(credential, Category.NOT_YET_VALID, "issued after the time of the check")
    if trust.denied(credential.subject_id):
        return refused(credential, Category.REVOKED, "the ID number is deny-listed")
    return Verdict(NAME, Category.VALID, "well-formed ID card (not signed: it proves nothing by itself)",
                   credential)


FORMAT = Format(NAME, recognise, _parse, verify)
