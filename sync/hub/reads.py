"""The read commands: `entries`, `gaps`, `devices`, `rejected`, `fleet`, `pushed`, `drift`, `acks` (read-only)."""
from __future__ import annotations

import argparse
import json
import sys

from edge.common.clock import iso_ms, parse_since, wall_ms
from edge.common.textsafe import csv_cell
from edge.entries.export import write_entries
from sync.hub import status as st
from sync.hub.common import cell, open_db, positive, with_db
from sync.hub.hubdb import HubDB
from sync.hub.status import read_status


def add_arguments(sub) -> None:
    p = with_db(sub.add_parser("entries", help="export the collected entries"))
    p.add_argument("--device")
    p.add_argument("--since", type=_since, help="ISO date or date-time (UTC), or a span back from now: 2h, 7d")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.set_defaults(func=cmd_entries)

    p = with_db(sub.add_parser("gaps", help="missing sequence numbers per device"))
    p.add_argument("--device")
    p.set_defaults(func=cmd_gaps)

    p = with_db(sub.add_parser("devices", help="every device that sent entries"))
    p.set_defaults(func=cmd_devices)

    p = with_db(sub.add_parser("fleet", help="every device: state, versions applied, outbox, last refusal"))
    p.add_argument("--json", action="store_true")
    p.add_argument("--wide", action="store_true", help="every column, uncut, with full times")
    p.set_defaults(func=cmd_fleet)

    p = with_db(sub.add_parser("pushed", help="what is pushed per target, as the hub recorded it"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_pushed)

    p = with_db(sub.add_parser("drift", help="devices whose applied versions differ from what is pushed, and why"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_drift)

    p = with_db(sub.add_parser("acks", help="bundle acknowledgements, newest first"))
    p.add_argument("--device")
    p.add_argument("--limit", type=positive, default=50)
    p.set_defaults(func=cmd_acks)

    p = with_db(sub.add_parser("rejected", help="messages the collector refused and kept aside, newest first"))
    p.add_argument("--device")
    p.add_argument("--limit", type=positive, default=50)
    p.add_argument("--json", action="store_true", help="one object a line, with the kept bytes in hex")
    p.set_defaults(func=cmd_rejected)


def print_json(rows) -> int:
    json.dump(rows, sys.stdout, indent=1)
    print()
    return 0


def cmd_entries(args) -> int:
    rows = open_db(args, readonly=True).entries(device=args.device, since_ms=args.since)
    if args.format == "csv":
        # A code such as =HYPERLINK(...) must reach a spreadsheet as text; JSON stays exactly as sent.
        rows = ({key: csv_cell(value) for key, value in row.items()} for row in rows)
    write_entries(rows, args.format)
    return 0


def cmd_gaps(args) -> int:
    for device, first, last in open_db(args, readonly=True).gaps(args.device):
        print(f"{device}\t{first}" + (f"-{last}" if last != first else ""))
    return 0


def cmd_devices(args) -> int:
    for d in open_db(args, readonly=True).devices():
        print(f"{d['device_id']}\tlast seen {iso_ms(d['last_seen_ms'])}\tseq {d['max_seq']}\t"
              f"{d['entries']} entries\t{d['duplicates']} duplicates\t{d['conflicts']} conflicts\t"
              f"clock offset {_offset(d['clock_offset_ms'])}")
    return 0


def cmd_rejected(args) -> int:
    rows = open_db(args, readonly=True).rejected(args.device, args.limit)
    if args.json:
        for row in rows:
            print(json.dumps({**row, "payload": row["payload"].hex()}))
        return 0
    for row in rows:
        print("\t".join((iso_ms(row["last_ms"]), cell(row["device_id"]), cell(row["topic"]),
                         f"{row['size']} bytes", f"{row['times']}x", cell(row["reason"]))))
    return 0



def _what(ack: dict) -> str:
    """What a device answered about, as `acks` and `fleet` show it: fields it did not say are left out; a
    bundle refused before its header could be trusted (e.g. signed by an unknown key) names nothing."""
    named = ack["name"] or ack["target"]
    if named is None and ack["version"] is None:
        return "a bundle it could not read" if ack["kind"] in (None, "unknown") else cell(ack["kind"])
    return " ".join(p for p in (cell(ack["kind"]), cell(named) if named is not None else "",
                                _version(ack) if ack["version"] is not None else "") if p)


def _refusal(ack: dict) -> str:
    """What a device refused, and why."""
    return f"{_what(ack)}: {cell(ack['reason'])}"


def _version(ack: dict) -> str:
    return "-" if ack["version"] is None else f"v{cell(ack['version'])}"


def _offset(ms) -> str:
    """A clock offset, in one unit wherever the hub shows one: seconds, signed (device ahead is +)."""
    if not isinstance(ms, int) or isinstance(ms, bool):
        return "-"
    return f"{ms / 1000:+.1f} s" if abs(ms) < 10**15 else "-"


def _ago(ms, now: int) -> str:
    """How long ago, short: 42s, 7m, 3h, 12d."""
    if not ms:
        return "-"
    seconds = max(0, (now - ms) // 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _short(value, width: int) -> str:
    text = cell(value)
    return text if len(text) <= width else text[:width - 1] + "…"


FLEET_COLUMNS = ("device", "state", "since", "last seen", "config", "lists", "outbox", "oldest unsynced",
                 "clock offset", "source", "problems", "last rejected")
# Narrow (the default): each cell cut to this width, so a row stays near 120 characters; --wide shows all.
FLEET_WIDTHS = {"device": 16, "config": 18, "lists": 18, "source": 14, "problems": 24, "last rejected": 44}


def cmd_fleet(args) -> int:
    rows = open_db(args, readonly=True).fleet()
    if args.json:
        return print_json(rows)
    now = wall_ms()
    columns = FLEET_COLUMNS if args.wide else tuple(c for c in FLEET_COLUMNS if c not in ("oldest unsynced",
                                                                                          "problems"))
    print("\t".join(columns))
    for row in rows:
        status = read_status(row["device"], row["status"])  # what the device sent: escaped for the terminal
        versions, outbox, source = st.versions(status), st.outbox(status), status.source
        sent = status.sent_ms
        offset = row["last_seen_ms"] - sent if sent is not None and row["last_seen_ms"] \
            else row["entries_clock_offset_ms"]
        rejected = row["last_rejected"]
        config = versions.config or ",".join(f"{t} v{v}" for t, v in st.applied_config(status).items())
        lists = ",".join(f"{n}:v{v}" for n, v in (versions.lists or {}).items())
        when = (lambda ms: iso_ms(ms) if ms else None) if args.wide else (lambda ms: _ago(ms, now))
        cells = {"device": row["device"], "state": row["state"], "since": when(row["since_ms"]),
                 "last seen": when(row["last_seen_ms"]), "config": config, "lists": lists,
                 "outbox": outbox.depth, "oldest unsynced": outbox.oldest_unsynced,
                 "clock offset": _offset(offset),
                 "source": f"{source.name}:{source.state}" if source else None,
                 "problems": "; ".join(status.problems or []) or None,
                 "last rejected": _refusal(rejected) if rejected else None}
        if not args.wide and outbox.depth and outbox.oldest_unsynced:
            cells["outbox"] = f"{outbox.depth} since {outbox.oldest_unsynced}"
        print("\t".join(cell(cells[c]) if args.wide else _short(cells[c], FLEET_WIDTHS.get(c, 24))
                        for c in columns))
    return 0


def cmd_pushed(args) -> int:
    rows = open_db(args, readonly=True).pushed()
    if args.json:
        return print_json(rows)
    print("target\tkind\tname\tversion\tpushed\tsha256")
    for row in rows:
        print("\t".join((cell(row["target"]), row["kind"], cell(row["name"]), f"v{row['version']}",
                         iso_ms(row["issued_ms"]), row["sha256"][:16])))
    return 0


def drift(db: HubDB) -> list[dict]:
    """Devices whose applied versions differ from what their targets give them, each with why."""
    pushed = db.pushed()
    rows = []
    for row in db.fleet():
        device = row["device"]
        status = read_status(device, row["status"])
        targets = {"all", f"device:{device}", *(f"group:{g}" for g in st.groups(status))}
        wanted: dict[tuple[str, str, str], dict] = {}
        for bundle in pushed:
            if bundle["target"] not in targets:
                continue
            # Config and trust are layered per target; a list is one per name, whichever target is newest.
            key = (bundle["kind"], bundle["target"] if bundle["kind"] != "list" else "", bundle["name"])
            if key not in wanted or bundle["version"] > wanted[key]["version"]:
                wanted[key] = bundle
        for (kind, _, name), bundle in sorted(wanted.items()):
            applied = st.applied(status, kind, bundle["target"], name)
            if applied == bundle["version"]:
                continue
            refusals = [a for a in db.acks_for(bundle["target"], kind, name, bundle["version"], 0, bundle["sha256"])
                        if a["device_id"] == device and not a["accepted"]]
            if row["state"] == "offline":
                why = f"offline since {iso_ms(row['since_ms'])}" if row["since_ms"] else "offline"
            elif refusals and not (kind == "list" and refusals[-1]["kind"] == "list-delta"):
                why = f"refused: {refusals[-1]['reason']}"
            else:
                why = "behind"
            rows.append({"device": device, "kind": kind, "target": bundle["target"], "name": name or None,
                         "applied": applied, "pushed": bundle["version"], "why": why})
    return rows


def cmd_drift(args) -> int:
    rows = drift(open_db(args, readonly=True))
    if args.json:
        return print_json(rows)
    print("device\twhat\tapplied\tpushed\twhy")
    for r in rows:
        what = f"list {r['name']}" if r["kind"] == "list" else r["kind"]
        print("\t".join((cell(r["device"]), f"{what} {cell(r['target'])}",
                         "-" if r["applied"] is None else f"v{r['applied']}", f"v{r['pushed']}", cell(r["why"]))))
    return 0


def cmd_acks(args) -> int:
    for ack in open_db(args, readonly=True).acks(args.device, args.limit):
        print("\t".join((iso_ms(ack["received_ms"]), cell(ack["device_id"]), _what(ack),
                         "accepted" if ack["accepted"] else "REJECTED: " + cell(ack["reason"]))))
    return 0



def _since(text: str) -> int:
    try:
        return parse_since(text, "UTC")
    except (ValueError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO date or date-time nor a span such as 2h or 7d") from exc

