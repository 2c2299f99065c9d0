"""What a device says of each bundle on <prefix>/<device>/acks: applied, or refused and why.

What was refused is named whenever it is known: from the bundle, or from the header its signature vouched
for when the body or a field did not hold; a bundle whose signature did not hold names nothing.
"""
from __future__ import annotations

from typing import Any

from edge.common.clock import wall_ms
from sync.wire.bundle import Bundle
from sync.wire.messages import Ack

MAX_REASON = 900  # characters of a refusal's reason in an ack: the hub refuses longer fields


def make_ack(device_id: str, bundle: Bundle | None, *, accepted: bool, reason: str | None = None,
             digest: str | None = None, fields: dict[str, Any] | None = None) -> Ack:
    if bundle is not None:
        head = bundle.header
        what = {"target": head.target, "kind": f"list-{head.list_kind}" if head.kind == "list" else head.kind,
                "name": head.name, "version": head.version}
    else:
        what = described(fields or {})
    if reason is not None and len(reason) > MAX_REASON:
        reason = reason[:MAX_REASON - 1] + "…"
    return Ack.model_validate({"device": device_id, **what, "accepted": accepted, "reason": reason,
                               "time_ms": wall_ms(), "digest": bundle.digest if bundle else digest})


def described(fields: dict[str, Any]) -> dict[str, Any]:
    """target, kind, name and version of a refused bundle from its authentic header fields, each only when it
    has the right type (a field that failed validation may be anything)."""
    def text(key: str) -> str | None:
        value = fields.get(key)
        return value[:100] if isinstance(value, str) else None

    def number(key: str) -> int | None:
        value = fields.get(key)
        return value if type(value) is int and 0 <= value <= 2**53 else None

    kind = text("kind")
    if kind == "list" and text("list_kind") in ("snapshot", "delta"):
        kind = f"list-{text('list_kind')}"
    return {"target": text("target"), "kind": kind or "unknown", "name": text("name"), "version": number("version")}
