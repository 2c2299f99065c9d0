"""The fleet as the dashboard shows it: one plain row per device, drift, alerts and counts.

A status is read as the typed model (sync.hub.status.read_status: validated by the collector when it arrived;
an older row of another shape says nothing), then used by attribute."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sync.hub import status as st
from sync.hub.dashboard import reads
from sync.hub.hubdb import HubDB
from sync.hub.status import read_status
from sync.wire.messages import Status


@dataclass(frozen=True)
class Thresholds:
    offline_min: float = 10.0       # a device offline longer than this is an alert
    outbox_min: float = 30.0        # an unsynced entry older than this
    offset_s: float = 5.0           # a clock offset larger than this


def _num(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and abs(value) < 1e15 else None


def targets_of(device: str, groups: list[str]) -> list[str]:
    return ["all", *(f"group:{g}" for g in groups), f"device:{device}"]


def build(db: HubDB, now_ms: int, limits: Thresholds = Thresholds()) -> dict:
    pushes = reads.pushed(db)
    fleet = [{**r, "typed": read_status(r["device"], r["status"])} for r in db.fleet()]
    software = Counter(st.versions(r["typed"]).software or None for r in fleet)
    software.pop(None, None)
    usual_software = software.most_common(1)[0][0] if software else None
    refused = reads.refused_now(db)
    rows = [_row(r, pushes, usual_software, now_ms, limits, r["device"] in refused) for r in fleet]
    counts = {"devices": len(rows), "online": sum(r["state"] == "online" for r in rows),
              "offline": sum(r["state"] == "offline" for r in rows), "behind": sum(bool(r["drift"]) for r in rows),
              "problems": sum(bool(r["problems"]) for r in rows), "alerts": sum(bool(r["alerts"]) for r in rows)}
    return {"rows": rows, "counts": counts, "groups": sorted({g for r in rows for g in r["groups"]})}


def _drift(status: Status, mine: set[str], pushes: list[dict], usual_software: str | None) -> list[str]:
    drift = []
    remote = status.remote
    # A status with nothing about versions says nothing about drift.
    if status.versions is not None or (remote is not None and (remote.model_fields_set or remote.model_extra)):
        applied_config, lists = st.applied_config(status), st.versions(status).lists or {}
        for push in pushes:
            if push["target"] not in mine or push["kind"] not in ("config", "list"):
                continue
            config = push["kind"] == "config"
            have = applied_config.get(push["target"]) if config else lists.get(push["name"])
            if have is None or have < push["version"]:
                what = f"config {push['target']}" if config else f"list {push['name']}"
                drift.append(f"{what} v{have if have is not None else '-'} < v{push['version']}")
    soft = st.versions(status).software
    if soft and usual_software and soft != usual_software:
        drift.append(f"software {soft} (most run {usual_software})")
    return drift


def _row(r: dict, pushes: list[dict], usual_software: str | None, now_ms: int, limits: Thresholds,
         refusing: bool) -> dict:
    device, status = r["device"], r["typed"]
    versions, outbox, source = st.versions(status), st.outbox(status), status.source
    groups = st.groups(status)
    seen = r["last_seen_ms"]
    sent = status.sent_ms
    offset_ms = (seen - sent) if sent is not None and seen and r["state"] == "online" else r["entries_clock_offset_ms"]
    row = {"device": device, "state": r["state"], "since_ms": r["since_ms"], "last_seen_ms": seen,
           "last_seen_age_s": (now_ms - seen) / 1000 if seen else None, "groups": groups,
           "software": versions.software or None, "config": versions.config or None,
           "applied_config": st.applied_config(status), "lists": dict(versions.lists or {}),
           "outbox_depth": outbox.depth, "oldest_unsynced_age_s": _num(outbox.oldest_unsynced_age_s),
           "clock_offset_s": offset_ms / 1000 if isinstance(offset_ms, int) else None,
           "source": f"{source.name or '-'}: {source.state or '-'}" if source else None,
           "source_state": source.state if source else None, "problems": st.problems(status),
           "last_rejected": r["last_rejected"], "refusing": refusing,
           "drift": _drift(status, set(targets_of(device, groups)), pushes, usual_software)}
    row["alerts"] = alerts(row, now_ms, limits)
    return row


def history(changes: list[dict], device: str) -> list[dict]:
    """A device's stored status changes as its page shows them: state, versions, outbox, clock offset."""
    rows = []
    for change in changes:
        status = read_status(device, change["status"])
        versions = st.versions(status)
        offset = change["clock_offset_ms"]
        rows.append({"received_ms": change["received_ms"], "state": change["state"],
                     "software": versions.software, "config": versions.config,
                     "applied_config": st.applied_config(status), "lists": dict(versions.lists or {}),
                     "outbox_depth": st.outbox(status).depth,
                     "clock_offset_s": offset / 1000 if isinstance(offset, int) else None})
    return rows


def alerts(row: dict, now_ms: int, limits: Thresholds) -> list[str]:
    found = []
    if row["state"] == "offline" and row["since_ms"] and now_ms - row["since_ms"] > limits.offline_min * 60_000:
        found.append(f"offline for more than {limits.offline_min:g} min")
    if row["oldest_unsynced_age_s"] is not None and row["oldest_unsynced_age_s"] > limits.outbox_min * 60:
        found.append(f"outbox older than {limits.outbox_min:g} min")
    if row["clock_offset_s"] is not None and abs(row["clock_offset_s"]) > limits.offset_s:
        found.append(f"clock offset over {limits.offset_s:g} s")
    if row["refusing"]:
        found.append("refused a push")
    return found
