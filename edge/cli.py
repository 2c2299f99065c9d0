"""`checkpoint`: the daemon and the officer's and administrator's tools on the device.

Exit status: 0 done, 1 the work failed (an unreadable file, a rejected list, a broken database),
2 the command line or the config file is wrong.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import get_args

from .clock import boot_id, iso_ms, mono_ns, parse_since, wall_ms
from .config import ConfigError, DecoderType, Settings, load_settings
from .export import write_entries
from .lists import ListError, ListStore
from .payload import printable
from .store import EntryReader, StoreError

DEFAULT_CONFIG = os.environ.get("CHECKPOINT_CONFIG", "/etc/checkpoint/checkpoint.toml")


class Failure(Exception):
    """A command that could not do its work; printed as one line, exit status 1."""


def _settings(args) -> Settings:
    return load_settings(args.config)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


# ---- commands -----------------------------------------------------------------------------------
def cmd_run(args) -> int:
    from .daemon import configure_logging, run_daemon

    configure_logging("info")
    return run_daemon(args.config)


def cmd_config_check(args) -> int:
    settings = load_settings(args.file)
    _out(f"{args.file}: ok (device {settings.device.id}, source {settings.source.type}, "
         f"mode {settings.decision.mode}, version {settings.version})")
    return 0


def cmd_decode(args) -> int:
    from .decode import make_decoder
    from .decodefiles import decode_path

    decoder = make_decoder(args.decoder)
    failed = 0
    for path in args.paths:
        try:
            for found in decode_path(path, decoder, debounce_ms=args.debounce_ms):
                found = {"path": path, **found}
                if args.json:
                    _out(json.dumps(found, ensure_ascii=False))
                else:
                    where = f"#{found['frame']}" if "frame" in found else ""
                    text = found["text"] if found["text"] is not None else "hex:" + found["hex"]
                    _out(f"{path}{where}\t{printable(text)}")
        except OSError as exc:
            failed += 1
            print(f"checkpoint decode: {path}: {exc.strerror or exc}", file=sys.stderr)
    return 1 if failed else 0


def cmd_check(args) -> int:
    from .payload import code_from_bytes, examine
    from .policy import Policy

    settings = _settings(args)
    lists = _lists(settings, readonly=True)
    try:
        reader = EntryReader(settings.store.entries_path)
        last_allowed = reader.last_allowed
    except StoreError:
        last_allowed = lambda code: None  # noqa: E731 - no entries yet, so nothing can be a repeat
    text, malformed = examine(code_from_bytes(os.fsencode(args.code)), settings.decoder.max_payload_bytes)
    decision = Policy(settings.decision, lists, last_allowed).decide(
        text, malformed=malformed, now_ms=wall_ms(), now_mono_ns=mono_ns())
    result = {"decision": decision.outcome.value, "reason": decision.reason.value, "list": decision.list_name,
              "list_version": decision.list_version, "label": decision.label}
    _out(json.dumps(result, ensure_ascii=False) if args.json else
         f"{decision.outcome.value} ({decision.reason.value})"
         + (f" by list {decision.list_name}@{decision.list_version}" if decision.list_name else "")
         + (f": {decision.label}" if decision.label else ""))
    return 0


def cmd_entries(args) -> int:
    settings = _settings(args)
    since = None
    if args.since:
        try:
            since = parse_since(args.since, settings.device.timezone)
        except ValueError:
            raise Failure(f"--since {args.since!r}: use an ISO date or date-time, or a span such as 2h or 7d")
    write_entries(_reader(settings).rows(since_ms=since), args.format)
    return 0


def cmd_status(args) -> int:
    settings = _settings(args)
    status = {"device": settings.device.id, "config_version": settings.version, "boot_id": boot_id(),
              "mode": settings.decision.mode, "store": {"path": str(settings.store.entries_path)}}
    try:
        reader = EntryReader(settings.store.entries_path)
        summary = reader.summary()
        status["store"].update(health="ok" if summary["integrity"] == "ok" else summary["integrity"],
                               entries=summary["entries"], by_decision=summary["by_decision"],
                               unsynced=summary["unsynced"], size_bytes=_size(settings.store.entries_path))
        last = summary["last"]
        status["last_scan"] = None if last is None else {
            "time": iso_ms(last["wall_ms"]), "decision": last["decision"], "reason": last["reason"],
            "source": last["source"]}
    except StoreError as exc:
        status["store"]["health"] = str(exc)
    status["sync"] = _sync_state(settings)
    status["daemon"] = _daemon_state(settings)
    try:
        lists = ListStore(settings.store.lists_path, readonly=True)
        status["lists"] = [{"name": i.name, "version": i.version, "entries": i.count,
                            "imported": iso_ms(i.imported_ms), "sha256": i.sha256} for i in lists.infos()]
    except sqlite3.Error as exc:
        status["lists"] = f"unreadable: {exc}"
    if args.json:
        _out(json.dumps(status, ensure_ascii=False, indent=2))
        return 0
    store = status["store"]
    _out(f"device        {status['device']} (mode {status['mode']}, config {status['config_version']})")
    _out(f"store         {store['path']}: {store['health']}")
    if "entries" in store:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(store["by_decision"].items())) or "none"
        _out(f"entries       {store['entries']} ({counts}); unsynced {store['unsynced']}; "
             f"{store['size_bytes'] // 1024} KiB")
    last = status.get("last_scan")
    _out(f"last scan     {last['time']} {last['decision']} ({last['reason']}) from {last['source']}"
         if last else "last scan     none")
    daemon = status["daemon"]
    if daemon is None:
        _out("daemon        not running (no status.json)")
    else:
        clock, space = daemon.get("clock") or {}, (daemon.get("store") or {}).get("disk") or {}
        source = daemon.get("source") or {}
        _out(f"daemon        {daemon.get('state', '?')} (pid {daemon.get('pid')}, status {daemon['age_s']:.0f} s old); "
             f"{daemon.get('scans', 0)} scans this run")
        _out(f"source        {source.get('name')}: {source.get('state')} ({source.get('delivered')} delivered, "
             f"{source.get('dropped')} dropped)")
        _out(f"clock         {clock.get('state')} ({'trusted' if clock.get('trusted') else 'NOT trusted'})")
        _out(f"disk          {space.get('free_mb')} MiB free ({space.get('free_percent')} %)")
        for name, info in (daemon.get("lists") or {}).items():
            limit = f" of max {info['max_age_h']} h" if info.get("max_age_h") is not None else ""
            stale = " STALE" if name in (daemon.get("stale_lists") or []) else ""
            _out(f"list age      {name}: {info['age_h']:.1f} h{limit}{stale}")
        for problem in daemon.get("problems") or []:
            _out(f"problem       {problem}")
    sync = status["sync"]
    if sync is None:
        _out("sync          off")
    else:
        outbox = sync.get("outbox") or {}
        _out(f"sync          {sync.get('connection', '?')} to {sync.get('broker')}; outbox {outbox.get('depth', '?')}"
             f" (oldest {outbox.get('oldest_unsynced') or '-'}); last sync {sync.get('last_sync') or 'never'}"
             + (f"; last error: {sync['last_error']}" if sync.get("last_error") else ""))
        remote = sync.get("remote") or {}
        for target, applied in (remote.get("config") or {}).items():
            _out(f"pushed config {target} v{applied.get('version')}")
        for name, progress in (remote.get("downloads") or {}).items():
            _out(f"fetching      list {name}: {progress}")
        if remote.get("last_rejected"):
            r = remote["last_rejected"]
            _out(f"last refused  {r.get('kind')} {r.get('name') or r.get('target')} v{r.get('version')}: {r.get('reason')}")
    if isinstance(status["lists"], str):
        _out(f"lists         {status['lists']}")
    for info in status["lists"] if isinstance(status["lists"], list) else []:
        _out(f"list          {info['name']} v{info['version']}: {info['entries']} entries, imported {info['imported']}")
    return 0


def cmd_list_import(args) -> int:
    settings = _settings(args)
    store = _lists(settings)
    try:
        with open(args.file, "rb") as fh:
            info = store.import_csv(args.name, fh, zone=settings.device.timezone,
                                    max_code_bytes=settings.decoder.max_payload_bytes, source=Path(args.file).name)
    except OSError as exc:
        raise Failure(f"list import {args.name}: {args.file}: {exc.strerror or exc}") from None
    except ListError as exc:
        raise Failure(f"list import {args.name}: {args.file}: {exc}; the list is unchanged") from None
    _out(f"list {info.name} v{info.version}: {info.count} entries imported")
    return 0


def cmd_list_show(args) -> int:
    settings = _settings(args)
    store = _lists(settings, readonly=True)
    if args.name is None:
        for info in store.infos():
            _out(f"{info.name}\tv{info.version}\t{info.count} entries\timported {iso_ms(info.imported_ms)}")
        return 0
    info = store.info(args.name)
    if info is None:
        raise Failure(f"no list named {args.name!r}")
    if not args.entries:
        hashed = f", codes hashed with key {info.hash_key}" if info.hash_key else ""
        _out(f"{info.name} v{info.version}: {info.count} entries, imported {iso_ms(info.imported_ms)} "
             f"from {info.source}, sha256 {info.sha256}{hashed}")
        return 0
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["code", "action", "label", "valid_from", "valid_until"])
    for code, deny, label, valid_from, valid_until in store.entries(args.name):
        writer.writerow([code if isinstance(code, str) else "hmac:" + code.hex(), "deny" if deny else "allow",
                         label or "",
                         iso_ms(valid_from) if valid_from is not None else "",
                         iso_ms(valid_until) if valid_until is not None else ""])
    return 0


def cmd_list_remove(args) -> int:
    settings = _settings(args)
    if not _lists(settings).remove(args.name):
        raise Failure(f"no list named {args.name!r}")
    _out(f"list {args.name} removed")
    return 0


# ---- helpers ------------------------------------------------------------------------------------
def _lists(settings: Settings, readonly: bool = False) -> ListStore:
    path = settings.store.lists_path
    if readonly and not path.exists():
        return ListStore(":memory:")  # no list imported yet: an empty view, and nothing created on disk
    try:
        return ListStore(path, readonly=readonly)
    except sqlite3.Error as exc:
        raise Failure(f"lists database {path}: {exc}") from None


def _daemon_state(settings: Settings) -> dict | None:
    """What the running daemon last wrote to status.json: source, clock, list ages, disk, problems."""
    path = settings.store.entries_path.parent / "status.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    state["age_s"] = (wall_ms() - state.get("written_ms", 0)) / 1000
    return state


def _sync_state(settings: Settings) -> dict | None:
    """What the running daemon's sync agent last wrote, with the outbox as the database says now."""
    if not settings.sync.enabled:
        return None
    path = settings.store.entries_path.parent / "sync.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        state = {"connection": "not running", "broker": f"{settings.sync.host}:{settings.sync.port}"}
    try:
        state["outbox"] = EntryReader(settings.store.entries_path).outbox()
    except StoreError as exc:
        state["outbox"] = {"error": str(exc)}
    return state


def _reader(settings: Settings) -> EntryReader:
    try:
        return EntryReader(settings.store.entries_path)
    except StoreError as exc:
        raise Failure(str(exc)) from None


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="checkpoint", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p):
        p.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE",
                       help=f"config file (default {DEFAULT_CONFIG}, or $CHECKPOINT_CONFIG)")
        return p

    with_config(sub.add_parser("run", help="run the appliance")).set_defaults(func=cmd_run)

    p = sub.add_parser("decode", help="decode QR codes in images or videos, as the daemon would")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="one JSON object per code found")
    p.add_argument("--decoder", choices=get_args(DecoderType), default="multipass")
    p.add_argument("--debounce-ms", type=int, default=1500, help="within one video, the same code again "
                   "within this time of its last sighting is not reported again")
    p.set_defaults(func=cmd_decode)

    p = with_config(sub.add_parser("check", help="the decision the daemon would take for CODE, not recorded"))
    p.add_argument("code", metavar="CODE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = with_config(sub.add_parser("entries", help="export recorded entries"))
    p.add_argument("--since", metavar="T", help="ISO date or date-time, or a span back from now: 30m, 2h, 7d")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.set_defaults(func=cmd_entries)

    p = with_config(sub.add_parser("status", help="lists, entries, last scan, store health"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    lists = sub.add_parser("list", help="lists cached on the device").add_subparsers(
        dest="list_command", required=True, metavar="ACTION")
    p = with_config(lists.add_parser("import", help="load or replace a list from CSV, in one transaction"))
    p.add_argument("name")
    p.add_argument("file", metavar="FILE.csv")
    p.set_defaults(func=cmd_list_import)
    p = with_config(lists.add_parser("show", help="every list, or one list's summary or entries"))
    p.add_argument("name", nargs="?")
    p.add_argument("--entries", action="store_true", help="print the list's entries as CSV")
    p.set_defaults(func=cmd_list_show)
    p = with_config(lists.add_parser("remove", help="remove a list"))
    p.add_argument("name")
    p.set_defaults(func=cmd_list_remove)

    config = sub.add_parser("config", help="config files").add_subparsers(
        dest="config_command", required=True, metavar="ACTION")
    p = config.add_parser("check", help="validate a config file")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_config_check)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"checkpoint: config error: {exc}", file=sys.stderr)
        return 2
    except (Failure, StoreError) as exc:
        print(f"checkpoint: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
