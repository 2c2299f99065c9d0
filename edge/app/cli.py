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

from edge.app import credentialcli as credential_cli
from edge.app import doctor
from edge.common.clock import boot_id, iso_ms, mono_ns, parse_since, wall_ms
from edge.common.model import Reason
from edge.common.payload import printable
from edge.common.textsafe import for_log
from edge.entries.export import write_entries
from edge.entries.store import EntryReader, StoreError
from edge.lists import ListError, ListStore
from edge.settings.layers import load_settings
from edge.settings.schema import ConfigError, DecoderType, Settings, os_reason
from edge.ui import passwords

DEFAULT_CONFIG = os.environ.get("CHECKPOINT_CONFIG", "/etc/checkpoint/checkpoint.toml")


class Failure(Exception):
    """A command that could not do its work; printed as one line, exit status 1."""


class Usage(Exception):
    """A command line that cannot be right (a value argparse could not judge); exit status 2."""


MESSAGE_LIMIT = 2000  # one error line: enough for every key a config gets wrong, not a file's worth


def _settings(args) -> Settings:
    return _load(args.config)


def _load(path) -> Settings:
    """load_settings, with whatever it did not foresee turned into a ConfigError: a config that cannot be
    loaded, for any reason, is exit 2 and one line."""
    try:
        return load_settings(path)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a pushed layer nested past the stack's depth
        raise ConfigError(f"{path}: cannot be loaded ({type(exc).__name__}: {for_log(exc, 120)})") from None


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


# ---- commands -----------------------------------------------------------------------------------
def cmd_run(args) -> int:
    from edge.app.daemon import configure_logging, run_daemon

    configure_logging("info")
    return run_daemon(args.config)


def cmd_config_check(args) -> int:
    settings = _load(args.file)
    _out(f"{for_log(args.file, 500)}: ok (device {settings.device.id}, source {settings.source.type}, "
         f"mode {settings.decision.mode}, version {settings.version})")
    if not (args.lists or args.strict):
        return 0
    # A list named in the config may yet come (imported, or pushed by the hub): a warning, not a config
    # error; --strict makes it a failure, for an installation that must not start without its lists.
    try:
        store = _lists(settings, readonly=True)
        infos = {info.name: info for info in store.infos()}
    except sqlite3.Error as exc:
        raise Failure(f"lists database {settings.store.lists_path}: {exc}") from None
    named = settings.decision.lists or list(infos)
    if not named:
        _out("lists: none on this device" + (" (every list is consulted)" if not settings.decision.lists else ""))
    missing = [name for name in named if name not in infos]
    for name in named:
        info = infos.get(name)
        if info is not None:
            _out(f"list {name}: v{info.version}, {info.count} entries, imported {iso_ms(info.imported_ms)}")
    for name in missing:
        _out(f"warning: list {name} is named in [decision] lists but is not on this device; "
             f"scans on no other list get list-missing ({settings.decision.outcome(Reason.LIST_MISSING).value})")
    if missing and args.strict:
        raise Failure(f"{len(missing)} of the lists named in [decision] lists missing: {', '.join(missing)}")
    return 0


def cmd_decode(args) -> int:
    from edge.app.decodefiles import decode_path
    from edge.decode.reader import make_decoder

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
            print(f"checkpoint decode: {for_log(path)}: {os_reason(exc)}", file=sys.stderr)
    return 1 if failed else 0


def cmd_check(args) -> int:
    """What the gate would decide for CODE now, through the daemon's own path (policy.judge): its clock
    judgement from the newest entry, its repeat rule, stale and missing lists. Nothing is recorded."""
    from edge.common.payload import code_from_bytes, examine
    from edge.rules.policy import Policy, clock_for, judge

    settings = _settings(args)
    lists = _lists(settings, readonly=True)
    try:
        reader = EntryReader(settings.store.entries_path)
    except StoreError:
        reader = None  # no entries yet: nothing can be a repeat, and no entry bounds the clock
    try:
        last_allowed = reader.last_allowed if reader else (lambda code: None)
        newest = reader.newest_wall_ms() if reader else None
        policy = Policy.for_settings(settings, lists, last_allowed)
        clock = clock_for(settings, newest)
        text, malformed = examine(code_from_bytes(os.fsencode(args.code)), settings.decoder.max_payload_bytes)
        decision, state = judge(policy, clock, text, malformed=malformed, now_ms=wall_ms(), now_mono_ns=mono_ns(),
                                reported_state=_daemon_clock(settings))
        missing = policy.missing_lists()
        stale = policy.stale_lists(wall_ms()) if clock.trusted(state) else []
    except sqlite3.Error as exc:
        raise Failure(f"lists database {settings.store.lists_path}: {exc}") from None
    result = {"decision": decision.outcome.value, "reason": decision.reason.value, "list": decision.list_name,
              "list_version": decision.list_version, "label": decision.label, "rule": decision.rule,
              "clock": state, "clock_trusted": clock.trusted(state), "missing_lists": missing, "stale_lists": stale}
    if args.json:
        _out(json.dumps(result, ensure_ascii=False))
        return 0
    _out(f"{decision.outcome.value} ({decision.reason.value}"
         + (f": {decision.rule})" if decision.rule else ")")
         + (f" by list {decision.list_name}@{decision.list_version}" if decision.list_name else "")
         + (f": {printable(decision.label)}" if decision.label else ""))
    if not clock.trusted(state):
        _out(f"note: the clock is not trusted ({state}): validity windows are not judged "
             f"([clock] untrusted_windows = {settings.clock.untrusted_windows})")
    for name in missing:
        _out(f"note: list {name} is named in [decision] lists but is not on this device")
    for name in stale:
        _out(f"note: list {name} is older than its maximum age ([decision] stale_lists = "
             f"{settings.decision.stale_lists})")
    return 0


def cmd_entries(args) -> int:
    settings = _settings(args)
    since = None
    if args.since:
        try:
            since = parse_since(args.since, settings.device.timezone)
            if not -(2**63) <= since < 2**63:  # '99999999999999999999d': more than SQLite can compare
                raise OverflowError(since)
        except (ValueError, OverflowError):
            raise Usage(f"--since {for_log(args.since, 60)!r}: use an ISO date or date-time, or a span such as "
                        "2h or 7d") from None
    rows = _reader(settings).rows(since_ms=since)
    write_entries(rows, args.format)  # CSV cells neutralised there; JSON exact
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
            idle = " (not in force)" if isinstance(applied, dict) and applied.get("in_force") is False else ""
            _out(f"pushed config {for_log(target)} v{for_log(applied.get('version'))}{idle}")
        for name, progress in (remote.get("downloads") or {}).items():
            _out(f"fetching      list {for_log(name)}: {for_log(progress)}")
        for problem in remote.get("problems") or []:
            _out(f"problem       {for_log(problem)}")
        if remote.get("last_rejected"):
            r = remote["last_rejected"]
            _out(f"last refused  {for_log(r.get('kind') or '-')} {for_log(r.get('name') or r.get('target') or '-')} "
                 f"v{for_log(r.get('version') or '-')}: {for_log(r.get('reason'))}")
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
        raise Failure(f"list import {args.name}: {args.file}: {os_reason(exc)}") from None
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
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(state, dict):
        return None
    written = state.get("written_ms")
    state["age_s"] = (wall_ms() - written) / 1000 if isinstance(written, int) else float("nan")
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


def _daemon_clock(settings: Settings) -> str | None:
    """The clock state a running daemon reported: it alone can have seen the clock jump back."""
    state = _daemon_state(settings)
    if not state or state.get("state") != "running" or not isinstance(state.get("clock"), dict):
        return None
    pid = state.get("pid")
    if not isinstance(pid, int) or pid <= 0:  # 0 or less would name a process group, not the daemon
        return None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return None  # not running any more: what it saw has gone with it
    except PermissionError:
        pass  # running as another user
    return state["clock"].get("state")


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
    p.add_argument("--lists", action="store_true", help="also show the consulted lists, and warn of each one "
                   "named in [decision] lists that is not on this device")
    p.add_argument("--strict", action="store_true", help="with --lists: a missing list is a failure (exit 1)")
    p.set_defaults(func=cmd_config_check)

    credential_cli.add_arguments(sub)  # `credential verify|show`

    ui = sub.add_parser("ui", help="the screens").add_subparsers(dest="ui_command", required=True, metavar="ACTION")
    p = ui.add_parser("hash-password", help="an argon2 hash of an officer's password, for [ui] officers")
    passwords.add_arguments(p)
    p.set_defaults(func=passwords.run)

    p = sub.add_parser("doctor", help="check that this machine can run the configured appliance")
    doctor.add_arguments(p)  # adds --config itself
    p.set_defaults(func=doctor.run)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"checkpoint: config error: {for_log(exc, MESSAGE_LIMIT)}", file=sys.stderr)
        return 2
    except Usage as exc:
        print(f"checkpoint: {for_log(exc, MESSAGE_LIMIT)}", file=sys.stderr)
        return 2
    except (Failure, StoreError) as exc:
        # Messages carry file names, list names and rows from outside: one escaped line each.
        print(f"checkpoint: {for_log(exc, MESSAGE_LIMIT)}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
