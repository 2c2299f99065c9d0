"""`checkpoint status` and `checkpoint entries`: what the device holds, and how it is."""
from __future__ import annotations

import argparse
import json
from typing import Any

from edge.app.commands.shared import (
    LISTS_UNREADABLE,
    daemon_state,
    db_size,
    open_reader,
    out,
    settings_of,
    sync_state,
)
from edge.common.clock import boot_id, iso_ms, parse_since
from edge.common.errors import UsageError
from edge.common.textsafe import for_log
from edge.entries.export import write_entries
from edge.entries.store import EntryReader, StoreError
from edge.lists import ListStore


def cmd_entries(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    since = None
    if args.since:
        try:
            since = parse_since(args.since, settings.device.timezone)  # in SQLite's range, or TimeSpanError
        except (ValueError, OverflowError):
            raise UsageError(f"--since {for_log(args.since, 60)!r}: use an ISO date or date-time, or a span such "
                             "as 2h or 7d") from None
    rows = open_reader(settings).rows(since_ms=since)
    write_entries(rows, args.format)  # CSV cells neutralised there; JSON exact
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    store: dict[str, Any] = {"path": str(settings.store.entries_path)}
    status: dict[str, Any] = {"device": settings.device.id, "config_version": settings.version, "boot_id": boot_id(),
                              "mode": settings.decision.mode, "store": store}
    try:
        summary = EntryReader(settings.store.entries_path).summary()
        store.update(health="ok" if summary["integrity"] == "ok" else summary["integrity"],
                     entries=summary["entries"], by_decision=summary["by_decision"],
                     unsynced=summary["unsynced"], size_bytes=db_size(settings.store.entries_path))
        last = summary["last"]
        status["last_scan"] = None if last is None else {
            "time": iso_ms(last["wall_ms"]), "decision": last["decision"], "reason": last["reason"],
            "source": last["source"]}
    except StoreError as exc:
        store["health"] = str(exc)
    status["sync"] = sync_state(settings)
    status["daemon"] = daemon_state(settings)
    try:
        lists = ListStore(settings.store.lists_path, readonly=True)
        status["lists"] = [{"name": i.name, "version": i.version, "entries": i.count,
                            "imported": iso_ms(i.imported_ms), "sha256": i.sha256} for i in lists.infos()]
    except LISTS_UNREADABLE as exc:
        status["lists"] = f"unreadable: {exc}"
    if args.json:
        out(json.dumps(status, ensure_ascii=False, indent=2))
        return 0
    _show(status)
    return 0


def _show(status: dict[str, Any]) -> None:
    store = status["store"]
    out(f"device        {status['device']} (mode {status['mode']}, config {status['config_version']})")
    out(f"store         {store['path']}: {store['health']}")
    if "entries" in store:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(store["by_decision"].items())) or "none"
        out(f"entries       {store['entries']} ({counts}); unsynced {store['unsynced']}; "
            f"{store['size_bytes'] // 1024} KiB")
    last = status.get("last_scan")
    out(f"last scan     {last['time']} {last['decision']} ({last['reason']}) from {last['source']}"
        if last else "last scan     none")
    _show_daemon(status["daemon"])
    _show_sync(status["sync"])
    if isinstance(status["lists"], str):
        out(f"lists         {status['lists']}")
    for info in status["lists"] if isinstance(status["lists"], list) else []:
        out(f"list          {info['name']} v{info['version']}: {info['entries']} entries, imported {info['imported']}")


def _show_daemon(daemon: dict[str, Any] | None) -> None:
    if daemon is None:
        out("daemon        not running (no status.json)")
        return
    clock, space = daemon.get("clock") or {}, (daemon.get("store") or {}).get("disk") or {}
    source = daemon.get("source") or {}
    out(f"daemon        {daemon.get('state', '?')} (pid {daemon.get('pid')}, status {daemon['age_s']:.0f} s old); "
        f"{daemon.get('scans', 0)} scans this run")
    out(f"source        {source.get('name')}: {source.get('state')} ({source.get('delivered')} delivered, "
        f"{source.get('dropped')} dropped)")
    out(f"clock         {clock.get('state')} ({'trusted' if clock.get('trusted') else 'NOT trusted'})")
    out(f"disk          {space.get('free_mb')} MiB free ({space.get('free_percent')} %)")
    for name, info in (daemon.get("lists") or {}).items():
        limit = f" of max {info['max_age_h']} h" if info.get("max_age_h") is not None else ""
        stale = " STALE" if name in (daemon.get("stale_lists") or []) else ""
        out(f"list age      {name}: {info['age_h']:.1f} h{limit}{stale}")
    for problem in daemon.get("problems") or []:
        out(f"problem       {problem}")


def _show_sync(sync: dict[str, Any] | None) -> None:
    if sync is None:
        out("sync          off")
        return
    outbox = sync.get("outbox") or {}
    out(f"sync          {sync.get('connection', '?')} to {sync.get('broker')}; outbox {outbox.get('depth', '?')}"
        f" (oldest {outbox.get('oldest_unsynced') or '-'}); last sync {sync.get('last_sync') or 'never'}"
        + (f"; last error: {sync['last_error']}" if sync.get("last_error") else ""))
    remote = sync.get("remote") or {}
    for target, applied in (remote.get("config") or {}).items():
        idle = " (not in force)" if isinstance(applied, dict) and applied.get("in_force") is False else ""
        out(f"pushed config {for_log(target)} v{for_log(applied.get('version'))}{idle}")
    for name, progress in (remote.get("downloads") or {}).items():
        out(f"fetching      list {for_log(name)}: {for_log(progress)}")
    for problem in remote.get("problems") or []:
        out(f"problem       {for_log(problem)}")
    if remote.get("last_rejected"):
        r = remote["last_rejected"]
        out(f"last refused  {for_log(r.get('kind') or '-')} {for_log(r.get('name') or r.get('target') or '-')} "
            f"v{for_log(r.get('version') or '-')}: {for_log(r.get('reason'))}")
