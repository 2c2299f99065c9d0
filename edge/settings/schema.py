"""The appliance's settings: one TOML file validated into typed, frozen models.

Unknown keys, wrong types and out-of-range values are refused with the key's dotted path, so a typo in
a checkpoint's config never silently falls back to a default.
"""
from __future__ import annotations

import errno
import os
import socket
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edge.common.model import Outcome, Reason
from edge.common.textsafe import for_log
from edge.credentials.settings import CredentialsSettings


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and the offending keys."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ---- device -------------------------------------------------------------------------------------
# A device id and a group name become MQTT topic levels and parts of file names: no '.' or '..' (a path
# step), no leading '-' (an option to any command given the name), no wildcard or separator.
SAFE_NAME = r"^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}$"


def _not_dots(value: str) -> str:
    if value in (".", ".."):
        raise ValueError(f"{value!r} is a path step, not a name")
    return value


SafeName = Annotated[str, Field(pattern=SAFE_NAME), AfterValidator(_not_dots)]
# A list's name, as edge.lists.NAME accepts it (a name it refuses could never be imported, so never found).
LIST_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ListName = Annotated[str, Field(pattern=LIST_NAME)]


class DeviceSettings(_Model):
    id: SafeName = Field(default_factory=socket.gethostname, description="Device id, also the MQTT client id "
                         "and part of topics and file names: letters, digits, '.', '_', '-' (not first), "
                         "at most 64, not '.' or '..'.")
    timezone: str = Field("UTC", max_length=200, description="Zone for dates in lists without an offset.")

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in ("all", "group"):
            raise ValueError(f"device id {value!r} is reserved (it names fleet-wide topics)")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # 'America' is a directory: OSError
            raise ValueError(f"unknown time zone {for_log(value, 60)!r}") from exc
        return value


# ---- sources ------------------------------------------------------------------------------------
class ReplaySource(_Model):
    type: Literal["replay"]
    path: str = Field(min_length=1, description="Folder of images, a video file, or a .txt list of images.")
    fps: float = Field(10.0, ge=0, le=240, description="Frames per second; 0 plays as fast as decoding goes, dropping nothing.")
    loop: bool = False


class OpenCVSource(_Model):
    type: Literal["opencv"]
    device: int | str = Field(0, description="Camera index, /dev/video* path, or a video file.")
    width: int | None = Field(None, ge=160, le=4096)
    height: int | None = Field(None, ge=120, le=4096)
    fps: float | None = Field(None, gt=0, le=240)
    stall_s: float = Field(5.0, gt=0, le=600, description="No frame for this long: reopen, and stop the "
                           "watchdog pings until frames come again.")


class LinesSource(_Model):
    type: Literal["lines"]
    path: str = Field("-", min_length=1, description="File, FIFO, or '-' for standard input.")
    follow_fifo: bool = Field(True, description="Reopen a FIFO when its writer closes it.")


class PiCameraSource(_Model):
    type: Literal["picamera2"]
    camera: int = Field(0, ge=0, le=7)
    width: int = Field(1280, ge=160, le=4608)
    height: int = Field(720, ge=120, le=2592)
    fps: float = Field(30.0, gt=0, le=120)
    autofocus: Literal["continuous", "manual"] = "continuous"
    lens_position: float | None = Field(None, ge=0, le=15, description="Dioptres, with autofocus = manual.")
    exposure_value: float = Field(-1.0, ge=-8, le=8, description="Below 0 keeps bright phone screens readable.")
    stall_s: float = Field(5.0, gt=0, le=600)


class HidSource(_Model):
    type: Literal["hid"]
    device: str | None = Field(None, description="A stable path: /dev/input/by-id/... or /dev/input/checkpoint-scanner.")
    name: str | None = Field(None, description="Or: part of the device's name.")
    vendor: int | None = Field(None, ge=0, le=0xFFFF)
    product: int | None = Field(None, ge=0, le=0xFFFF)
    terminator: Literal["enter", "tab"] = "enter"
    grab: bool = True

    @model_validator(mode="after")
    def _chosen(self) -> HidSource:
        if self.device is None and self.name is None and self.vendor is None:
            raise ValueError("source: name the scanner by device, name or vendor (and product)")
        return self


class SerialSource(_Model):
    type: Literal["serial"]
    port: str = Field("/dev/checkpoint-scanner-serial", min_length=1)
    baudrate: int = Field(9600, ge=300, le=4_000_000)
    terminator: Literal["cr", "lf", "crlf", "tab"] = "crlf"


SourceSettings = Annotated[ReplaySource | OpenCVSource | LinesSource | PiCameraSource | HidSource | SerialSource,
                           Field(discriminator="type")]


DecoderType = Literal["multipass", "zxing", "pyzbar"]


class DecoderSettings(_Model):
    type: DecoderType = Field("multipass", description="multipass: zxing-cpp, then, on a miss, second passes "
                              "where a code could be (deblurring, unwarping, rescaling) within budget_ms; zxing: "
                              "zxing-cpp alone; pyzbar: ZBar alone.")
    budget_ms: float = Field(20, ge=0, le=1000, description="At most this long per frame on second passes.")
    budget: Literal["frame", "fixed"] = Field(
        "frame", description="frame: second passes get what the camera's frame interval leaves after the first "
        "pass (less a fifth for the rest of the step), never more than budget_ms, so a slow CPU does not fall "
        "further behind the camera; scanners and unpaced replays get budget_ms. fixed: always budget_ms.")
    debounce_ms: int = Field(1500, ge=0, le=600_000,
                             description="A code seen again within this time of its last sighting is the same scan.")
    max_payload_bytes: int = Field(2048, ge=16, le=8192, description="Longer payloads are malformed.")


# ---- decision -----------------------------------------------------------------------------------
Mode = Literal["allowlist", "denylist", "record"]

_A, _D, _R = Outcome.ALLOW, Outcome.DENY, Outcome.REVIEW
DEFAULT_OUTCOMES: dict[str, dict[Reason, Outcome]] = {
    # list-missing: fail closed, truthfully, where only a list lets people in; a person decides where the
    # deny list cannot be checked.
    "allowlist": {Reason.LISTED: _A, Reason.NOT_LISTED: _D, Reason.DENY_LISTED: _D, Reason.EXPIRED: _D,
                  Reason.NOT_YET_VALID: _D, Reason.REPEATED: _R, Reason.MALFORMED: _D, Reason.LIST_MISSING: _D},
    "denylist": {Reason.LISTED: _A, Reason.NOT_LISTED: _A, Reason.DENY_LISTED: _D, Reason.EXPIRED: _A,
                 Reason.NOT_YET_VALID: _A, Reason.REPEATED: _R, Reason.MALFORMED: _D, Reason.LIST_MISSING: _R},
    "record": dict.fromkeys(Reason, _A),
}
Policy3 = Literal["deny", "review", "ignore"]
OutcomeName = Literal["allow", "deny", "review"]
OverridableReason = Literal["listed", "not-listed", "deny-listed", "expired", "not-yet-valid", "repeated", "malformed",
                            "list-missing"]


class DecisionSettings(_Model):
    mode: Mode = "allowlist"
    lists: list[ListName] = Field(default_factory=list, max_length=1000,
                                  description="Lists consulted; empty means every list on the device.")
    repeat_window_s: int = Field(0, ge=0, le=7 * 86400,
                                 description="An allowed code shown again within this time is 'repeated'; 0 disables.")
    outcomes: dict[OverridableReason, OutcomeName] = Field(default_factory=dict,
                                                           description="Overrides of the mode's outcome per reason.")
    list_max_age_h: float | None = Field(None, gt=0, le=24 * 3650,
                                         description="A list not updated for longer is stale; none: never stale.")
    list_max_age_h_for: dict[ListName, Annotated[float, Field(gt=0, le=24 * 3650)]] = Field(
        default_factory=dict, max_length=1000, description="Per-list maximum ages.")
    stale_lists: Literal["keep", "review", "deny"] = Field(
        "keep", description="What an allow becomes while a consulted list is stale ('keep': still allow).")

    def max_age_h(self, name: str) -> float | None:
        return self.list_max_age_h_for.get(name, self.list_max_age_h)

    def consults(self, name: str) -> bool:
        return not self.lists or name in self.lists

    def outcome(self, reason: Reason) -> Outcome:
        if reason is Reason.STORE_FAILURE:
            return Outcome.DENY  # an entry that cannot be recorded never opens the gate
        if reason is Reason.LIST_STALE:
            return Outcome(self.stale_lists) if self.stale_lists != "keep" else Outcome.ALLOW
        override = self.outcomes.get(reason.value)
        return Outcome(override) if override else DEFAULT_OUTCOMES[self.mode][reason]


class ClockSettings(_Model):
    require_sync: bool = Field(False, description="Count a clock no time source disciplines as untrusted.")
    untrusted_windows: Policy3 = Field("review", description="What a decision resting on a list entry's "
                                       "validity window becomes while the clock is untrusted.")


class StoreSettings(_Model):
    dir: str = Field("/var/lib/checkpoint", min_length=1, description="Holds entries.db and lists.db.")
    retention_days: int = Field(90, ge=1, le=3650, description="Entries older are purged (once synced).")
    disk_warn_mb: int = Field(200, ge=0, le=10_000_000, description="Warn when less is free.")
    disk_warn_percent: float = Field(10.0, ge=0, le=90, description="Warn when a smaller share is free.")
    retry_s: float = Field(5.0, gt=0, le=3600, description="How often a failed store is retried.")

    @property
    def entries_path(self) -> Path:
        return Path(self.dir) / "entries.db"

    @property
    def lists_path(self) -> Path:
        return Path(self.dir) / "lists.db"


# ---- outputs and signals ------------------------------------------------------------------------
class GpioOutput(_Model):
    driver: Literal["gpio"]
    pin: int = Field(ge=0, le=27, description="BCM pin number.")
    active_low: bool = False


class ConsoleOutput(_Model):
    driver: Literal["console"]
    colour: Literal["green", "red", "yellow", "blue", "white"] = "white"


class FakeOutput(_Model):
    driver: Literal["fake"]
    record_to: str | None = Field(None, description="Append each change as a JSON line to this file.")


OutputSettings = Annotated[GpioOutput | ConsoleOutput | FakeOutput, Field(discriminator="driver")]


class Pulse(_Model):
    on_ms: int = Field(ge=1, le=60_000)
    off_ms: int = Field(0, ge=0, le=60_000)
    count: int = Field(1, ge=1, le=20)
    delay_ms: int = Field(0, ge=0, le=60_000, description="Wait before the first pulse.")


class SyncSettings(_Model):
    """MQTT sync to the hub. Off unless enabled: the appliance needs no network to work."""

    enabled: bool = False
    host: str = Field("localhost", min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = Field("checkpoint", pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
    username: str | None = Field(None, description="Defaults to the device id.")
    password_file: str | None = Field(None, description="A file holding the password, or the name of a "
                                      "systemd credential in $CREDENTIALS_DIRECTORY.")
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = Field(None, description="A file, or a systemd credential name.")
    keepalive_s: int = Field(30, ge=5, le=3600)
    session_expiry_s: int = Field(7 * 86400, ge=0, le=2**32 - 1)
    batch_max_entries: int = Field(500, ge=1, le=10_000)
    batch_max_bytes: int = Field(64_000, ge=1024, le=512_000)
    batch_wait_ms: int = Field(200, ge=0, le=60_000, description="How long the first entry of a batch waits for company.")
    max_inflight: int = Field(8, ge=1, le=100, description="Batches published and not yet acknowledged.")
    status_interval_s: int = Field(60, ge=1, le=3600)
    retry_refused_s: float = Field(30.0, gt=0, le=3600, description="Wait before resending a refused batch.")


class RemoteSettings(_Model):
    """Configuration and lists pushed by administrators as signed bundles through the [sync] broker."""

    enabled: bool = False
    trusted_keys: list[Annotated[str, Field(pattern=r"^ed25519:[A-Za-z0-9+/]{43}=$")]] = Field(
        default_factory=list, max_length=16, description="Administrators' Ed25519 public keys (several, to rotate).")
    groups: list[SafeName] = Field(
        default_factory=list, max_length=32, description="Groups this device belongs to (group:NAME targets).")
    hash_key_file: str | None = Field(None, description="File or systemd credential holding the key of "
                                      "hashed lists (64 hex digits).")
    chunk_window: int = Field(4, ge=1, le=64, description="List chunks requested at once.")
    retry_s: float = Field(60.0, gt=0, le=86400, description="Ask again for list chunks that did not come.")

    @model_validator(mode="after")
    def _keys_when_enabled(self) -> RemoteSettings:
        if self.enabled and not self.trusted_keys:
            raise ValueError("remote: enabled needs at least one key in trusted_keys")
        return self


class LogSettings(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    codes: bool = Field(False, description="Show scanned codes in the log (personal data); off shows a short hash.")


# ---- screens (edge/ui) ---------------------------------------------------------------------------
class OfficerSettings(_Model):
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


class UISettings(_Model):
    enabled: bool = Field(True, description="Serve the kiosk screen and the officer page.")
    listen: str = Field("127.0.0.1:8080", max_length=200, description="host:port. Listening beyond the device "
                        "(e.g. 0.0.0.0 on the hotspot) is the administrator's explicit choice.")
    tls_cert_file: str | None = Field(None, max_length=4096, description="Serve HTTPS with this certificate "
                                      "(PEM) and tls_key_file.")
    tls_key_file: str | None = Field(None, max_length=4096)
    language: str = Field("vi", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", description="The screens' language: "
                          "a catalogue in edge/ui/messages/<language>/.")
    site_name: str = Field("", max_length=120, description="Shown on the kiosk's idle screen.")
    display_s: float = Field(4.0, gt=0, le=120, description="How long the kiosk shows a decision before the "
                             "prompt comes back.")
    review_expiry_s: float = Field(300, gt=0, le=86400, description="A review left unanswered this long is "
                                   "marked expired on the officer page.")
    officers: list[OfficerSettings] = Field(default_factory=list, max_length=200)


class Settings(_Model):
    version: str | None = Field(None, max_length=200, description="Config version recorded on every entry.")
    device: DeviceSettings = Field(default_factory=DeviceSettings)
    source: SourceSettings
    decoder: DecoderSettings = Field(default_factory=DecoderSettings)
    decision: DecisionSettings = Field(default_factory=DecisionSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    outputs: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")], OutputSettings] = Field(default_factory=dict)
    signals: dict[OutcomeName, dict[str, Pulse]] = Field(default_factory=dict)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    clock: ClockSettings = Field(default_factory=ClockSettings)
    remote: RemoteSettings = Field(default_factory=RemoteSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    ui: UISettings = Field(default_factory=UISettings)
    credentials: CredentialsSettings = Field(default_factory=CredentialsSettings)

    @model_validator(mode="after")
    def _signals_name_outputs(self) -> Settings:
        if self.remote.enabled and not self.sync.enabled:
            raise ValueError("remote: enabled needs [sync] enabled (bundles come through the broker)")
        for outcome, pattern in self.signals.items():
            for name in pattern:
                if name not in self.outputs:
                    raise ValueError(f"signals.{outcome}.{name}: no output named {name!r} in [outputs]")
        return self


# ---- loading ------------------------------------------------------------------------------------
MAX_CONFIG_BYTES = 1 << 20
# The deepest a valid config goes is 4 tables (signals.allow.green.on_ms); far deeper is refused before
# anything walks it, since recursive code (pydantic, repr, merging layers) would exhaust the stack.
MAX_DEPTH = 32
MAX_ERRORS = 10      # problems named in one message; the rest are counted
SHOWN_VALUE = 80     # characters of an offending value quoted in a message


def os_reason(exc: OSError) -> str:
    """An OSError in plain words for one line; a symbolic link loop said as such, not as its errno text."""
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    return exc.strerror or type(exc).__name__


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether tables and arrays nest deeper than limit (walked without recursion)."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in node if isinstance(child, (dict, list)))
    return False


def _key_path(raw: Any, loc: tuple[Any, ...]) -> str:
    """Dotted key path as written in the file; pydantic puts union tags in loc, the file does not."""
    parts: list[str] = []
    node = raw
    for item in loc:
        if isinstance(node, dict) and item not in node and item in (node.get("type"), node.get("driver")):
            continue  # a union's tag, not a key
        parts.append(for_log(str(item), SHOWN_VALUE))  # keys are outside text too: one line, capped
        node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def _shown(value: Any) -> str:
    """An offending value, quoted for one line of a message."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int past Python's 4,300-digit limit for text
        text = f"a {type(value).__name__} too large to show"
    return for_log(text, SHOWN_VALUE)


def _problems(raw: Any, exc: ValidationError) -> str:
    lines = []
    errors = exc.errors(include_url=False)
    for err in errors[:MAX_ERRORS]:
        msg = for_log(err["msg"].removeprefix("Value error, "), 300)
        path = _key_path(raw, tuple(err["loc"]))
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and err["type"] not in ("union_tag_invalid",) and not isinstance(err["input"], dict):
            shown = _shown(err["input"])
            if shown not in msg:
                msg += f" (got {shown})"
        lines.append(f"{path}: {msg}" if not msg.startswith(path + ":") else msg)
    if len(errors) > MAX_ERRORS:
        lines.append(f"and {len(errors) - MAX_ERRORS} more")
    return "; ".join(lines)


def parse_settings(raw: dict[str, Any], origin: str = "config") -> Settings:
    """Validated settings, or a ConfigError of one line: whatever was handed in, nothing else escapes."""
    origin = for_log(origin, 500)
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: not a table of settings")
    if _depth_exceeds(raw, MAX_DEPTH):
        raise ConfigError(f"{origin}: tables or arrays nested deeper than {MAX_DEPTH} levels")
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        try:
            problems = _problems(raw, exc)
        except Exception as inner:  # noqa: BLE001 - the report of a bad config must not be what fails
            problems = f"{exc.error_count()} problems ({type(inner).__name__} while naming them)"
        raise ConfigError(f"{origin}: {problems}") from None
    except Exception as exc:  # noqa: BLE001 - a validator's surprise is still a config that cannot be used
        raise ConfigError(f"{origin}: cannot be used ({type(exc).__name__}: {for_log(exc, SHOWN_VALUE)})") from None


def read_config(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """A config file's TOML as a dict, and its bytes. Only a regular file is read: a FIFO would block
    the reader and a device could be endless."""
    path = Path(path)
    shown = for_log(str(path), 300)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {os_reason(exc)}") from None
    try:
        with os.fdopen(fd, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise ConfigError(f"{shown}: cannot read: is a directory")
            if not stat.S_ISREG(mode):
                raise ConfigError(f"{shown}: cannot read: not a regular file")
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {os_reason(exc)}") from None
    return parse_toml(data, str(path)), data


def parse_toml(data: bytes, origin: str) -> dict[str, Any]:
    """TOML text (a config file, or a pushed config's body) as a dict, or a ConfigError of one line."""
    origin = for_log(origin, 500)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{origin}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{origin}: not UTF-8 text (byte {exc.start})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {for_log(exc, 300)}") from None
    except RecursionError:
        raise ConfigError(f"{origin}: not usable TOML: arrays or tables nested too deeply") from None
    except ValueError:  # not a TOMLDecodeError: an integer past Python's 4,300-digit limit for text
        raise ConfigError(f"{origin}: not usable TOML: a number with too many digits") from None
    except Exception as exc:  # noqa: BLE001 - whatever the parser did not foresee, the file is unusable
        raise ConfigError(f"{origin}: not usable TOML ({type(exc).__name__}: {for_log(exc, SHOWN_VALUE)})") from None
    if _depth_exceeds(raw, MAX_DEPTH):
        raise ConfigError(f"{origin}: tables or arrays nested deeper than {MAX_DEPTH} levels")
    return raw
