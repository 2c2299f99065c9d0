"""`checkpoint run`, `decode`, `check` and `config check`: the gate itself, and what it would do."""
from __future__ import annotations

import argparse
import json
import os
import sys

from edge.app.commands.shared import LISTS_UNREADABLE, daemon_clock, load, open_lists, out, settings_of
from edge.app.errors import CommandFailed
from edge.common.clock import iso_ms, mono_ns, wall_ms
from edge.common.model import Reason
from edge.common.payload import printable
from edge.common.textsafe import for_log
from edge.entries.store import EntryReader, StoreError
from edge.settings.schema import os_reason


def cmd_run(args: argparse.Namespace) -> int:
    from edge.app.daemon import configure_logging, run_daemon

    configure_logging("info")
    return run_daemon(args.config)


def cmd_config_check(args: argparse.Namespace) -> int:
    settings = load(args.file)
    out(f"{for_log(args.file, 500)}: ok (device {settings.device.id}, source {settings.source.type}, "
        f"mode {settings.decision.mode}, version {settings.version})")
    if not (args.lists or args.strict):
        return 0
    # A list named in the config may yet come (imported, or pushed by the hub): a warning, not a config
    # error; --strict makes it a failure, for an installation that must not start without its lists.
    try:
        store = open_lists(settings, readonly=True)
        infos = {info.name: info for info in store.infos()}
    except LISTS_UNREADABLE as exc:
        raise CommandFailed(f"lists database {settings.store.lists_path}: {exc}") from None
    named = settings.decision.lists or list(infos)
    if not named:
        out("lists: none on this device" + (" (every list is consulted)" if not settings.decision.lists else ""))
    missing = [name for name in named if name not in infos]
    for name in named:
        info = infos.get(name)
        if info is not None:
            out(f"list {name}: v{info.version}, {info.count} entries, imported {iso_ms(info.imported_ms)}")
    for name in missing:
        out(f"warning: list {name} is named in [decision] lists but is not on this device; "
            f"scans on no other list get list-missing ({settings.decision.outcome(Reason.LIST_MISSING).value})")
    if missing and args.strict:
        raise CommandFailed(f"{len(missing)} of the lists named in [decision] lists missing: {', '.join(missing)}")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from edge.app.decodefiles import decode_path
    from edge.decode.reader import make_decoder

    decoder = make_decoder(args.decoder)
    failed = 0
    for path in args.paths:
        try:
            for found in decode_path(path, decoder, debounce_ms=args.debounce_ms):
                found = {"path": path, **found}
                if args.json:
                    out(json.dumps(found, ensure_ascii=False))
                else:
                    where = f"#{found['frame']}" if "frame" in found else ""
                    text = found["text"]
                    shown = printable(text) if isinstance(text, str) else f"hex:{found['hex']}"
                    out(f"{path}{where}\t{shown}")
        except OSError as exc:
            failed += 1
            print(f"checkpoint decode: {for_log(path)}: {os_reason(exc)}", file=sys.stderr)
    return 1 if failed else 0


def cmd_check(args: argparse.Namespace) -> int:
    """What the gate would decide for CODE now, through the daemon's own path (policy.judge): its clock
    judgement from the newest entry, its repeat rule, stale and missing lists. Nothing is recorded."""
    from edge.common.payload import code_from_bytes, examine
    from edge.rules.policy import Policy, clock_for, judge

    settings = settings_of(args)
    lists = open_lists(settings, readonly=True)
    reader: EntryReader | None
    try:
        reader = EntryReader(settings.store.entries_path)
    except StoreError:
        reader = None  # no entries yet: nothing can be a repeat, and no entry bounds the clock
    try:
        policy = Policy.for_settings(settings, lists, reader.last_allowed if reader else (lambda code: None))
        clock = clock_for(settings, reader.newest_wall_ms() if reader else None)
        text, malformed = examine(code_from_bytes(os.fsencode(args.code)), settings.decoder.max_payload_bytes)
        decision, state = judge(policy, clock, text, malformed=malformed, now_ms=wall_ms(), now_mono_ns=mono_ns(),
                                reported_state=daemon_clock(settings))
        missing = policy.missing_lists()
        stale = policy.stale_lists(wall_ms()) if clock.trusted(state) else []
    except LISTS_UNREADABLE as exc:
        raise CommandFailed(f"lists database {settings.store.lists_path}: {exc}") from None
    result = {"decision": decision.outcome.value, "reason": decision.reason.value, "list": decision.list_name,
              "list_version": decision.list_version, "label": decision.label, "rule": decision.rule,
              "clock": state, "clock_trusted": clock.trusted(state), "missing_lists": missing, "stale_lists": stale}
    if args.json:
        out(json.dumps(result, ensure_ascii=False))
        return 0
    out(f"{decision.outcome.value} ({decision.reason.value}"
        + (f": {decision.rule})" if decision.rule else ")")
        + (f" by list {decision.list_name}@{decision.list_version}" if decision.list_name else "")
        + (f": {printable(decision.label)}" if decision.label else ""))
    if not clock.trusted(state):
        out(f"note: the clock is not trusted ({state}): validity windows are not judged "
            f"([clock] untrusted_windows = {settings.clock.untrusted_windows})")
    for name in missing:
        out(f"note: list {name} is named in [decision] lists but is not on this device")
    for name in stale:
        out(f"note: list {name} is older than its maximum age ([decision] stale_lists = "
            f"{settings.decision.stale_lists})")
    return 0
