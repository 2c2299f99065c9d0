"""The device's status and its acknowledgements of bundles: one definition for the device that builds them
and the hub that reads them.

    <prefix>/<device>/status   retained, QoS 1: Status (the last will says {"device", "state": "offline"})
    <prefix>/<device>/acks     QoS 1: one Ack per bundle applied or refused

Both are JSON objects. The hub validates each once, where it arrives (parse_status, parse_ack): the size,
depth and values first (parse_small: what any database can store), then the fields' types. A field of a known
name with the wrong type refuses the message (MessageError): no version of our agent sent one.

Devices and hubs of different versions must keep talking, so:
- a known field that is missing is None (every field but the device, and an ack's kind, accepted, time_ms);
- a Status keeps unknown fields as they came (extra="allow": the daemon's own snapshot, mode, store,
  clock..., and whatever a newer device adds ride along unvalidated beyond parse_small's limits, and
  model_dump gives them back); an Ack ignores them (the hub stores the fields it knows).
The device dumps with `model_dump(mode="json", exclude_unset=True)` (to_json), so what it sends holds only
what it set: the same fields as before these models (the typed ones first, then the rest).
"""
from __future__ import annotations

import json
import math
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sync.wire.errors import MessageError

__all__ = ["INT64_MAX", "MAX_ACK_TEXT", "MAX_JSON_DEPTH", "MAX_SMALL_BYTES", "STATES", "Ack", "AppliedConfig",
           "AppliedTrust", "MessageError", "Outbox", "Remote", "Source", "Status", "Versions", "ack_json",
           "parse_ack", "parse_small", "parse_status"]

MAX_SMALL_BYTES = 64 * 1024
MAX_JSON_DEPTH = 16  # a status is four levels deep; deeper is not from our agent
MAX_ACK_TEXT = 1000  # characters of an ack's string field; the device cuts its reason to 900
INT64_MAX = (1 << 63) - 1  # every number lands in a signed 64-bit column at the hub
STATES = ("online", "offline")

_M = TypeVar("_M", bound=BaseModel)


class _Part(BaseModel):
    """A nested part of a status: unknown fields kept, as at the top."""
    model_config = ConfigDict(extra="allow", strict=True)


class Versions(_Part):
    software: str | None = None
    config: str | None = None  # [device] version of the config in force (None: not set)
    lists: dict[str, int] | None = None  # list name: version held


class Outbox(_Part):
    """Entries not yet acknowledged by the broker; `error` alone when the store could not say."""
    depth: int | None = None
    oldest_unsynced: str | None = None  # ISO 8601
    oldest_unsynced_age_s: float | None = None
    error: str | None = None


class Source(_Part):
    name: str | None = None
    state: str | None = None
    delivered: int | None = None
    dropped: int | None = None


class AppliedConfig(_Part):
    version: int | None = None
    in_force: bool | None = None  # present (False) only for a layer kept but not in force


class AppliedTrust(_Part):
    version: int | None = None


class Ack(BaseModel):
    """A bundle applied (accepted) or refused, on <prefix>/<device>/acks. target, name and version are None
    when the refused bundle could not say them (its signature did not hold)."""
    model_config = ConfigDict(extra="ignore", strict=True)

    device: str = Field(max_length=MAX_ACK_TEXT)
    target: str | None = Field(None, max_length=MAX_ACK_TEXT)  # all, group:<G> or device:<D>
    kind: str = Field(max_length=MAX_ACK_TEXT)  # config, trust, list-snapshot, list-delta, list, unknown
    name: str | None = Field(None, max_length=MAX_ACK_TEXT)  # a list's name
    version: int | None = None
    accepted: bool
    reason: str | None = Field(None, max_length=MAX_ACK_TEXT)  # why refused
    time_ms: int
    digest: str | None = Field(None, max_length=MAX_ACK_TEXT)  # SHA-256 (hex) of the message acknowledged


class Remote(_Part):
    """What was pushed to the device and applied (sync.device.remote.Receiver.status)."""
    config: dict[str, AppliedConfig] | None = None  # target: the layer applied
    downloads: dict[str, str] | None = None  # list name: "<have>/<total> chunks of v<version>"
    trust: dict[str, AppliedTrust] | None = None  # target: the trust list applied
    # The device's own record of its last refusal, kept as it was saved: devices before acks' reasons were
    # cut saved longer ones, and nothing at the hub reads it but the page that shows it.
    last_rejected: dict[str, Any] | None = None
    timings: dict[str, float] | None = None  # seconds the last delta / snapshot took to apply
    problems: list[str] | None = None
    groups: list[str] | None = None  # the groups the device reads ([remote] groups)


class Status(_Part):
    """A device's state, retained on <prefix>/<device>/status. `state` is the connection's: "online", or
    "offline" (the last will, or a clean stop with since_ms)."""
    device: str
    state: str | None = None
    since_ms: int | None = None  # offline since (a clean stop)
    sent_ms: int | None = None  # the device's wall clock when sent: the hub's clock offset
    versions: Versions | None = None
    outbox: Outbox | None = None
    source: Source | None = None
    remote: Remote | None = None
    last_sync: str | None = None  # ISO 8601 of the last batch acknowledged
    last_error: str | None = None
    synced: int | None = None  # entries acknowledged since the agent started
    refused: int | None = None  # entries the broker refused since the agent started
    problems: list[str] | None = None
    missing_lists: list[str] | None = None
    stale_lists: list[str] | None = None
    groups: list[str] | None = None  # where devices before remote.groups said their groups

    def to_json(self) -> bytes:
        """The bytes to publish: what was set, nothing added."""
        return json.dumps(self.model_dump(mode="json", exclude_unset=True)).encode()


def ack_json(ack: Ack) -> bytes:
    return json.dumps(ack.model_dump(mode="json")).encode()


def parse_status(payload: bytes) -> Status:
    """A status as the hub receives it. Raises MessageError with the reason when its top level is wrong; a
    part inside that does not fit (an older or newer device's shape of one field) is left out, not the status."""
    status, _ = lenient_status(parse_small(payload))
    return status


# At most this many parts left out of one status before it is refused whole.
MAX_PARTS_LEFT_OUT = 16


def lenient_status(data: dict[str, Any]) -> tuple[Status, list[str]]:
    """The status with each part that does not fit the model left out (at its second level: `remote.last_rejected`,
    `versions.lists`, `problems[3]`), and what was left out, why. MessageError when the top level is wrong
    (the device, the state, the send time...) or too much is wrong."""
    left_out: list[str] = []
    for _ in range(MAX_PARTS_LEFT_OUT + 1):
        try:
            return Status.model_validate(data), left_out
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            loc, where = first["loc"], ".".join(str(part) for part in first["loc"]) or "(top)"
            if len(loc) < 2 or len(left_out) == MAX_PARTS_LEFT_OUT:
                raise MessageError(f"malformed status: {where}: {first['msg']}") from None
            data = _without(data, loc[0], loc[1])
            left_out.append(f"{where}: {first['msg']}")
    raise AssertionError("unreachable")  # the loop returns or raises by its last turn


def _without(data: dict[str, Any], key: str | int, part: str | int) -> dict[str, Any]:
    """data with data[key][part] taken out (a copy: the caller's dict is left as it was)."""
    inner = data.get(key) if isinstance(key, str) else None
    if isinstance(inner, dict):
        inner = {k: v for k, v in inner.items() if k != part}
    elif isinstance(inner, list) and isinstance(part, int):
        inner = inner[:part] + inner[part + 1:]
    else:
        return {k: v for k, v in data.items() if k != key}
    return {**data, str(key): inner}


def parse_ack(payload: bytes) -> Ack:
    """An acknowledgement as the hub receives it. Raises MessageError with the reason."""
    return _model(Ack, parse_small(payload), "acknowledgement")


def _model(model: type[_M], data: dict[str, Any], what: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top)"
        raise MessageError(f"malformed {what}: {where}: {first['msg']}") from None


def parse_small(payload: bytes) -> dict[str, Any]:
    """A status or ack: a JSON object of bounded size and depth, whose numbers fit 64 bits and whose
    strings any database takes. Raises MessageError."""
    if len(payload) > MAX_SMALL_BYTES:
        raise MessageError(f"{len(payload)} bytes, over {MAX_SMALL_BYTES}")
    try:
        data = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise MessageError("JSON nested too deep") from None
    except ValueError as exc:  # not UTF-8, not JSON, or an integer of thousands of digits
        raise MessageError(f"not JSON: {_describe(exc)}") from None
    if not isinstance(data, dict):
        raise MessageError("not a JSON object")
    _check_values(data)
    return data


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - str() of some values raises; the type is enough then
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number")


def _check_values(data: dict[str, Any]) -> None:
    # Iterative, so that its own depth is no risk.
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise MessageError(f"JSON nested deeper than {MAX_JSON_DEPTH}")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _check_text(key)
                stack.append((item, depth + 1))
        elif isinstance(value, str):
            _check_text(value)
        elif isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, int):
            if not -INT64_MAX - 1 <= value <= INT64_MAX:
                raise MessageError("an integer beyond 64 bits")
        elif isinstance(value, float) and not math.isfinite(value):
            raise MessageError("a number beyond the range of a double")


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise MessageError("a NUL character in a string")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MessageError("a lone surrogate in a string") from None
