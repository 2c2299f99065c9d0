"""The fleet as the dashboard shows it: one plain row per device, drift, alerts and counts.

Everything in a status came from a device, in any shape: only ints, strings and dicts of the expected
kind are taken, anything else is shown as nothing."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sync.hub.dashboard import reads
from sync.hub.hubdb import HubDB


@dataclass(frozen=True)
class Thresholds:
    offline_min: float = 10.0       # a device offline longer than this is an alert
    outbox_min: float = 30.0        # an unsynced entry older than this
    offset_s: float = 5.0           # a clock offset larger than this


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and abs(value) < 1e15 else None


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


def targets_of(device: str, groups: list[str]) -> list[str]:
    return ["all", *(f"group:{g}" for g in groups), f"device:{device}"]


def groups_of(device: str, status: dict) -> list[str]:
    """The groups a device reports (its remote receiver's, or its own); failing that, those its applied
    bundles' targets name."""
    said = _dict(status.get("remote")).get("groups")
    said = said if isinstance(said, list) else status.get("groups")
    if isinstance(said, list):
        return sorted({g for g in said if isinstance(g, str) and g})
    applied = _dict(_dict(status.get("remote")).get("config"))
    return sorted({t.removeprefix("group:") for t in applied if isinstance(t, str) and t.startswith("group:")})


def build(db: HubDB, now_ms: int, limits: Thresholds = Thresholds()) -> dict:
    pushes = reads.pushed(db)
    fleet = db.fleet()
    software = Counter(_text(_dict(_dict(r["status"]).get("versions")).get("software")) for r in fleet)
    software.pop(None, None)
    usual_software = software.most_common(1)[0][0] if software else None
    refused = reads.refused_now(db)
    rows = [_row(r, pushes, usual_software, now_ms, limits, r["device"] in refused) for r in fleet]
    counts = {"devices": len(rows), "online": sum(r["state"] == "online" for r in rows),
              "offline": sum(r["state"] == "offline" for r in rows), "behind": sum(bool(r["drift"]) for r in rows),
              "problems": sum(bool(r["problems"]) for r in rows), "alerts": sum(bool(r["alerts"]) for r in rows)}
    return {"rows": rows, "counts": counts, "groups": sorted({g for r in rows for g in r["groups"]})}


def _row(r: dict, pushes: list[dict], usual_software: str | None, now_ms: int, limits: Thresholds,
         refusing: bool) -> dict:
    device, status = r["device"], _dict(r["status"])
    versions, outbox, remote = _dict(status.get("versions")), _dict(status.get("outbox")), _dict(status.get("remote"))
    groups = groups_of(device, status)
    mine = set(targets_of(device, groups))
    applied_config = {t: _int(_dict(v).get("version")) for t, v in _dict(remote.get("config")).items()}
    lists = {n: _int(v) for n, v in _dict(versions.get("lists")).items() if isinstance(n, str)}
    drift = []
    if status.get("versions") is not None or remote:  # a status with nothing about versions says nothing
        for push in pushes:
            if push["target"] not in mine:
                continue
            if push["kind"] == "config":
                have = applied_config.get(push["target"])
                if have is None or have < push["version"]:
                    drift.append(f"config {push['target']} v{have if have is not None else '-'} < v{push['version']}")
            elif push["kind"] == "list":
                have = lists.get(push["name"])
                if have is None or have < push["version"]:
                    drift.append(f"list {push['name']} v{have if have is not None else '-'} < v{push['version']}")
    soft = _text(versions.get("software"))
    if soft and usual_software and soft != usual_software:
        drift.append(f"software {soft} (most run {usual_software})")
    sent = _int(status.get("sent_ms"))
    seen = r["last_seen_ms"]
    offset_ms = (seen - sent) if sent is not None and seen and r["state"] == "online" else r["entries_clock_offset_ms"]
    problems = [p if isinstance(p, str) else repr(p) for key in ("problems",) for src in (status, remote)
                for p in (src.get(key) if isinstance(src.get(key), list) else [])]
    if _text(status.get("last_error")):
        problems.append(status["last_error"])
    source = _dict(status.get("source"))
    oldest_s = _num(outbox.get("oldest_unsynced_age_s"))
    row = {"device": device, "state": r["state"], "since_ms": r["since_ms"], "last_seen_ms": seen,
           "last_seen_age_s": (now_ms - seen) / 1000 if seen else None, "groups": groups,
           "software": soft, "config": _text(versions.get("config")),
           "applied_config": {t: v for t, v in applied_config.items() if isinstance(t, str)},
           "lists": lists, "outbox_depth": _int(outbox.get("depth")), "oldest_unsynced_age_s": oldest_s,
           "clock_offset_s": offset_ms / 1000 if isinstance(offset_ms, int) else None,
           "source": f"{_text(source.get('name')) or '-'}: {_text(source.get('state')) or '-'}" if source else None,
           "source_state": _text(source.get("state")), "problems": problems, "last_rejected": r["last_rejected"],
           "drift": drift, "refusing": refusing}
    row["alerts"] = alerts(row, now_ms, limits)
    return row


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
