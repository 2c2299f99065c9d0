"""[ui] and its [[ui.officers]]: the kiosk screen and the officer page."""
from __future__ import annotations

from pydantic import Field, model_validator

from edge.settings.base import ConfigModel


class OfficerSettings(ConfigModel):
    """One officer who may sign in to the officer page, answer reviews and enter codes by hand."""

    name: str = Field(min_length=1, max_length=64, description="Shown on the officer page and recorded with "
                      "every review answer and manual entry.")
    password_hash: str | None = Field(None, max_length=512, description="An argon2 hash of the officer's "
                                      "password (`checkpoint ui hash-password`).")
    password_credential: str | None = Field(None, max_length=255, description="Or: a systemd credential (or "
                                            "file) holding that hash.")

    @model_validator(mode="after")
    def _one_password(self) -> OfficerSettings:
        if (self.password_hash is None) == (self.password_credential is None):
            raise ValueError(f"officer {self.name!r}: give exactly one of password_hash, password_credential")
        return self


class UISettings(ConfigModel):
    """The screens the daemon serves itself: the kiosk for travellers, the officer page for staff."""

    enabled: bool = Field(True, description="Serve the kiosk screen and the officer page.")
    listen: str = Field("127.0.0.1:8080", max_length=200, description="host:port. Listening beyond the device "
                        "(e.g. 0.0.0.0 on the hotspot) is the administrator's explicit choice.")
    tls_cert_file: str | None = Field(None, max_length=4096, description="Serve HTTPS with this certificate "
                                      "(PEM) and tls_key_file.")
    tls_key_file: str | None = Field(None, max_length=4096, description="The private key of tls_cert_file "
                                     "(PEM), a file or a systemd credential name.")
    language: str = Field("vi", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", description="The screens' language: "
                          "a catalogue in edge/ui/messages/<language>/.")
    site_name: str = Field("", max_length=120, description="Shown on the kiosk's idle screen.")
    display_s: float = Field(4.0, gt=0, le=120, description="How long the kiosk shows a decision before the "
                             "prompt comes back.")
    review_expiry_s: float = Field(300, gt=0, le=86400, description="A review left unanswered this long is "
                                   "marked expired on the officer page.")
    officers: list[OfficerSettings] = Field(default_factory=list, max_length=200, description="Who may use the "
                                            "officer page ([[ui.officers]] tables).")
