"""The `[credentials]` section of a checkpoint config, as typed models (unknown keys are refused).

    [credentials]
    formats = ["dcc", "pass", "cccd"]   # which formats are recognised; the others stay plain codes
    accept_unlisted = true              # a verified credential is allowed without being on a list
    [credentials.dcc]
    trust_list = "/var/lib/checkpoint/trust.json"   # default: trust.json beside the database
    trust_max_age_h = 168                           # older: stale (see stale_trust)
    [credentials.dcc.rules]
    accept = ["vaccination", "test", "recovery"]
    [credentials.dcc.rules.vaccination]
    min_days = 14
    max_days = 365
    [credentials.dcc.rules.test.max_hours]
    "LP6464-4" = 72      # NAAT (PCR)
    "LP217198-3" = 48    # rapid antigen
    [credentials.passes]
    trusted_keys = ["base64 of a 32-byte Ed25519 public key"]
    [credentials.cccd]
    keep_address = false
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge.credentials.passes import PassKeyError, trusted_keys

FormatName = Literal["dcc", "pass", "cccd"]
CertificateType = Literal["vaccination", "test", "recovery"]
CERTIFICATE_TYPES: tuple[CertificateType, ...] = ("vaccination", "test", "recovery")
COVID_19 = "840539006"                   # SNOMED CT: COVID-19, the disease every EU DCC so far targets
NEGATIVE = "260415000"                   # SNOMED CT: not detected
NAAT, RAT = "LP6464-4", "LP217198-3"     # LOINC: nucleic acid amplification test, rapid antigen test


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class VaccinationRules(_Model):
    require_complete: bool = Field(True, description="The dose number must reach the series (dn >= sd).")
    min_days: int = Field(14, ge=0, le=3650, description="At least this many days since the last dose.")
    max_days: int | None = Field(365, ge=0, le=36500, description="At most this many days since the last dose; "
                                 "none: no limit.")


class TestRules(_Model):
    max_hours: dict[Annotated[str, Field(min_length=1, max_length=64)], Annotated[int, Field(ge=1, le=8760)]] = Field(
        default_factory=lambda: {NAAT: 72, RAT: 48},
        description="Test types (LOINC) accepted, each with the most hours since the sample was taken.")


class DccRules(_Model):
    accept: list[CertificateType] = Field(
        default_factory=lambda: list(CERTIFICATE_TYPES),
        description="Kinds of EU certificate accepted: vaccination, test, recovery.")
    diseases: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=lambda: [COVID_19], description="Disease or agent targeted (tg) accepted.")
    vaccination: VaccinationRules = VaccinationRules()
    test: TestRules = TestRules()


class DccSettings(_Model):
    trust_list: str | None = Field(None, min_length=1, description="The trust list (EU DCC Gateway JSON).")
    trust_max_age_h: float | None = Field(None, gt=0, le=24 * 3650,
                                          description="A trust list older than this is stale.")
    rules: DccRules = DccRules()


class PassSettings(_Model):
    trusted_keys: list[Annotated[str, Field(min_length=40, max_length=60)]] = Field(
        default_factory=list, max_length=100, description="Ed25519 public keys (base64) whose passes are valid.")
    gate: str | None = Field(None, min_length=1, max_length=64, description="This device's gate, for passes "
                             "that name gates; none: the device id.")

    @field_validator("trusted_keys")
    @classmethod
    def _usable_keys(cls, value: list[str]) -> list[str]:
        try:
            trusted_keys(value)
        except PassKeyError as exc:
            raise ValueError(str(exc)) from None
        return value


class CccdSettings(_Model):
    keep_address: bool = Field(False, description="Keep the card's address in the credential's claims.")


class CredentialsSettings(_Model):
    formats: list[FormatName] = Field(default_factory=list, description="Formats recognised; none by default.")
    accept_unlisted: bool = Field(False, description="A verified credential is allowed without being listed.")
    record: Literal["subject", "holder"] = Field(
        "subject", description="What an entry keeps: the format, subject id and verdict; 'holder' adds the "
        "holder's name and date of birth. Never the payload.")
    refused: Literal["deny", "review"] = Field("deny", description="The outcome for a credential refused "
                                               "(forged, expired, revoked, a rule...), except in record mode.")
    revocation_lists: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]] = Field(
        default_factory=list, max_length=100, description="Lists of EU DCC revocation hashes (32 lowercase "
        "hex digits each); never consulted as allow or deny lists of subjects.")
    stale_trust: Literal["keep", "review", "deny"] = Field(
        "keep", description="What an allow of an EU certificate becomes while the trust list is older than "
        "dcc.trust_max_age_h ('keep': still allow).")
    dcc: DccSettings = DccSettings()
    passes: PassSettings = PassSettings()
    cccd: CccdSettings = CccdSettings()
