"""A device's stored status read back as the typed model (sync.wire.messages.Status), for the hub's reads.

The collector validates every status once, where it arrives; what the database holds is then of that shape.
A row stored by an older hub (before the models) may be of any shape: it reads as a status saying nothing
but its device, so the reads use attributes and never dig through dicts of unknown shape."""
from __future__ import annotations

from sync.wire.errors import MessageError
from sync.wire.messages import Outbox, Remote, Source, Status, Versions, lenient_status


def read_status(device: str, data: object) -> Status:
    """The stored status as the model, a part of another shape left out (an older hub's row); failing that, a
    status saying nothing but its device."""
    if isinstance(data, dict):
        try:
            return lenient_status({**data, "device": device})[0]
        except MessageError:
            pass
    return Status(device=device)


def versions(status: Status) -> Versions:
    return status.versions or Versions()


def outbox(status: Status) -> Outbox:
    return status.outbox or Outbox()


def remote(status: Status) -> Remote:
    return status.remote or Remote()


def source(status: Status) -> Source | None:
    return status.source


def groups(status: Status) -> list[str]:
    """The groups a device reports (its remote receiver's, or its own, as older devices said them); failing
    that, those its applied config layers' targets name."""
    said = remote(status).groups if remote(status).groups is not None else status.groups
    if said is not None:
        return sorted({g for g in said if g})
    return sorted({t.removeprefix("group:") for t in remote(status).config or {} if t.startswith("group:")})


def applied_config(status: Status) -> dict[str, int | None]:
    """target: the config layer version applied."""
    return {t: layer.version for t, layer in (remote(status).config or {}).items()}


def applied(status: Status, kind: str, target: str, name: str) -> int | None:
    """The version of a pushed bundle a device's status says it applied, or None when it does not say."""
    if kind == "config":
        layer = (remote(status).config or {}).get(target)
        return layer.version if layer else None
    if kind == "trust":
        trust = (remote(status).trust or {}).get(target)
        return trust.version if trust else None
    return (versions(status).lists or {}).get(name)


def problems(status: Status) -> list[str]:
    """The device's problems and its remote receiver's, and its last error."""
    found = [*(status.problems or []), *(remote(status).problems or [])]
    return found + ([status.last_error] if status.last_error else [])
