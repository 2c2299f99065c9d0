"""`checkpoint-hub`: the hub side. `collect` stores every device's entries, status and acknowledgements;
`entries`, `gaps`, `devices`, `fleet`, `acks` and `rejected` read them back (read-only); `keygen`,
`hashkey`, `config push`, `list push` and `trust push` sign and publish what devices should run with;
`pass keygen|issue|issue-csv` make the appliance's own signed passes as printable QR codes. `init` sets a hub
up on one machine and `device add` a device's credentials; `pushed` and `drift` show what is pushed and who
differs from it; the pushes' `--wait` prints each device's answer. hub.toml gives every command its defaults.
Exit status: 0 done, 1 the work failed, 2 a wrong command line."""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge.common.clock import iso_ms, parse_since, wall_ms
from edge.common.textsafe import csv_cell, for_log
from edge.credentials import passes
from edge.credentials.trust import TrustListError
from edge.entries.export import write_entries
from edge.lists import ListError, check_name
from edge.settings.schema import ConfigError
from sync.hub import admin
from sync.hub.collector import Collector
from sync.hub.dashboard import cli as dashboard_cli
from sync.hub.hubdb import HubDB, MissingDatabase
from sync.wire.bundle import MAX_BUNDLE
from sync.wire.mqtt import SyncConfigError, connect_properties, make_client

log = logging.getLogger("checkpoint.hub")


def _db(args, *, readonly: bool = False) -> HubDB:
    try:
        return HubDB(args.db, readonly=readonly)
    except MissingDatabase:
        raise  # a usage problem: exit status 2
    except Exception as exc:  # sqlite3 or psycopg, whichever the URL chose: one line, not a traceback
        raise SystemExit(f"checkpoint-hub: cannot open hub database {args.db}: {exc}") from None


def _cell(value) -> str:
    """A table cell from what a device sent: one line, escaped; '-' for nothing."""
    return "-" if value is None or value == "" else for_log(value, 120)


def cmd_collect(args) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        level=logging.DEBUG if args.verbose else logging.INFO, force=True)
    db = _db(args)
    try:
        client = make_client(client_id=args.client_id, username=args.username, password_file=args.password_file,
                             tls=args.tls, ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file,
                             manual_ack=True)
    except SyncConfigError as exc:
        print(f"checkpoint-hub: {exc}", file=sys.stderr)
        return 1
    collector = Collector(db, client, topic_prefix=args.topic_prefix, share_group=args.share_group or None)
    stopping = []

    def stop(*_):
        stopping.append(True)
        client.disconnect()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    client.connect_async(args.host, args.port, keepalive=30, clean_start=False,
                         properties=connect_properties(args.session_expiry_s))
    # loop_forever reconnects with backoff until disconnect() is called.
    client.loop_forever(retry_first_connection=True)
    db.close()
    log.info("collector stopped: %s", collector.stats)
    if collector.failed:
        log.error("collector stopped because %s; unacknowledged batches will be delivered again", collector.failed)
        return 1
    return 0


def cmd_entries(args) -> int:
    rows = _db(args, readonly=True).entries(device=args.device, since_ms=args.since)
    if args.format == "csv":
        # A code such as =HYPERLINK(...) must reach a spreadsheet as text; JSON stays exactly as sent.
        rows = ({key: csv_cell(value) for key, value in row.items()} for row in rows)
    write_entries(rows, args.format)
    return 0


def cmd_gaps(args) -> int:
    for device, first, last in _db(args, readonly=True).gaps(args.device):
        print(f"{device}\t{first}" + (f"-{last}" if last != first else ""))
    return 0


def cmd_devices(args) -> int:
    for d in _db(args, readonly=True).devices():
        print(f"{d['device_id']}\tlast seen {iso_ms(d['last_seen_ms'])}\tseq {d['max_seq']}\t"
              f"{d['entries']} entries\t{d['duplicates']} duplicates\t{d['conflicts']} conflicts\t"
              f"clock offset {_offset(d['clock_offset_ms'])}")
    return 0


def cmd_rejected(args) -> int:
    rows = _db(args, readonly=True).rejected(args.device, args.limit)
    if args.json:
        for row in rows:
            print(json.dumps({**row, "payload": row["payload"].hex()}))
        return 0
    for row in rows:
        print("\t".join((iso_ms(row["last_ms"]), _cell(row["device_id"]), _cell(row["topic"]),
                         f"{row['size']} bytes", f"{row['times']}x", _cell(row["reason"]))))
    return 0


def cmd_keygen(args) -> int:
    public = admin.keygen(Path(args.out))
    print(f"signing key written to {args.out} (keep it off the broker and the devices)")
    print(f"devices trust it with, in [remote] trusted_keys:\n{public}")
    return 0


def cmd_hashkey(args) -> int:
    ident = admin.hashkey(Path(args.out))
    print(f"list hash key {ident} written to {args.out}; install it on each device as [remote] hash_key_file")
    return 0


def _publisher(args) -> admin.Publisher:
    client = make_client(client_id=f"hub-admin-{socket.gethostname()}-{os.getpid()}", username=args.username,
                         password_file=args.password_file, tls=args.tls, ca_file=args.ca_file,
                         cert_file=args.cert_file, key_file=args.key_file)
    try:
        return admin.Publisher(client, args.host, args.port)
    except OSError as exc:
        raise OSError(f"cannot reach the broker {args.host}:{args.port}: {exc.strerror or exc}") from None


def _expires_s(text: str) -> float:
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    try:
        value = float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise ValueError(f"--expires {text!r}: a number with d, h, m or s, e.g. 90d") from None
    if not 60 <= value <= 3650 * 86400:
        raise ValueError("--expires must lie between 1 minute and 10 years")
    return value


def _check_version(db: HubDB, target: str, kind: str, name: str, version: int) -> None:
    """Before anything is signed or published: devices refuse a version not above what they applied,
    and the broker keeps one retained bundle per topic, so a used or lower version must never go out."""
    last = db.next_version(target, kind, name) - 1
    if version <= last:
        what = f"list {name}" if kind == "list" else kind
        raise ValueError(f"{what} for {target}: v{version} is not above v{last}, the last pushed; "
                         f"nothing pushed (leave out --version, or give {last + 1} or more)"
                         if kind == "config" else
                         f"{what} for {target}: v{version} is not above v{last}, the last pushed (is --state the "
                         f"folder used before? or give --version {last + 1} or more); nothing pushed")


def _record(db: HubDB, *args) -> None:
    try:
        db.record_bundle(*args)
    except db.errors as exc:
        raise RuntimeError(f"published, but the hub database did not record it: {exc}") from None


WAIT_DEFAULT_S = 30.0
ACK_POLL_S = 0.2
ACK_SLACK_MS = 300_000  # the collector's clock may trail this machine's: acks that old still count


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 86400 (a day)")
    return value


def _verdicts(acks: list[dict]) -> dict[str, dict]:
    """Per device, its answer so far: an acceptance wins; a refusal is final except a list delta's (the
    device then fetches the snapshot, and answers again)."""
    verdicts: dict[str, dict] = {}
    for ack in acks:
        known = verdicts.get(ack["device_id"])
        if known is None or (not known["accepted"] and (ack["accepted"] or known["kind"] == "list-delta")):
            verdicts[ack["device_id"]] = ack
    return verdicts


def _await_acks(args, db: HubDB, target: str, kind: str, name: str | None, version: int, since_ms: int,
                message: bytes) -> int:
    """With --wait: each device the target names, accepted / refused with the reason / no answer; 1 unless
    all accepted."""
    if args.wait is None:
        return 0
    devices = db.members(target)
    if not devices:
        print(f"no device the hub knows of is in {target}: no answer to wait for", file=sys.stderr)
        return 1
    print(f"waiting up to {args.wait:g} s for {len(devices)} device(s) to answer")
    deadline = time.monotonic() + args.wait
    while True:
        verdicts = _verdicts(db.acks_for(target, kind, name, version, since_ms - ACK_SLACK_MS,
                                         hashlib.sha256(message).hexdigest()))
        final = [d for d in devices if d in verdicts and (verdicts[d]["accepted"] or verdicts[d]["kind"]
                                                          != "list-delta")]
        if len(final) == len(devices) or time.monotonic() >= deadline:
            break
        time.sleep(ACK_POLL_S)
    states = {row["device"]: row for row in db.fleet()}
    failed = 0
    for device in devices:
        ack = verdicts.get(device)
        if ack is not None and ack["accepted"]:
            line = "accepted"
        elif ack is not None:
            line, failed = f"REFUSED: {_cell(ack['reason'])}", failed + 1
        else:
            row = states.get(device) or {}
            offline = f" (offline since {iso_ms(row['since_ms'])})" if row.get("state") == "offline" \
                and row.get("since_ms") else ""
            line, failed = f"no answer in {args.wait:g} s{offline}", failed + 1
        print(f"{_cell(device)}\t{line}")
    if failed:
        print(f"{failed} of {len(devices)} device(s) did not apply it", file=sys.stderr)
    return 1 if failed else 0


def cmd_config_push(args) -> int:
    target = admin.parse_target(args.to)
    key = admin.read_private(args.key)
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise ValueError(f"{args.file}: {exc.strerror or exc}") from None
    merge = "full" if args.full else "override"
    expires_s = _expires_s(args.expires)
    if not args.no_check:
        try:
            admin.check_config(data, merge)
        except ConfigError as exc:
            raise ValueError(f"{exc}; nothing pushed") from None
    db = _db(args)
    version = args.version or db.next_version(target, "config")
    _check_version(db, target, "config", "", version)
    message = admin.config_bundle(key, target, version, data, merge=merge, expires_s=expires_s)
    published_ms = _publish_one(args, db, target, "config", admin.config_topic(args.topic_prefix, target),
                                message, version)
    print(f"config v{version} for {target} published ({len(message)} bytes, {merge})")
    return _await_acks(args, db, target, "config", None, version, published_ms, message)


def _publish_one(args, db, target: str, kind: str, topic: str, message: bytes, version: int) -> int:
    """Publish one signed bundle (config, trust) and record it; returns when it went out, for --wait."""
    published_ms = wall_ms()
    publisher = _publisher(args)
    try:
        publisher.publish(topic, message)
    finally:
        publisher.close()
    _record(db, target, kind, "", version, wall_ms(), hashlib.sha256(message).hexdigest())
    return published_ms


def cmd_list_push(args) -> int:
    target = admin.parse_target(args.to)
    key = admin.read_private(args.key)
    hash_key = admin.read_hash_key(args.hash_key) if args.hash_key else None
    expires_s = _expires_s(args.expires)
    db = _db(args)
    lists = admin.HubLists(Path(args.state), target)
    try:
        try:
            check_name(args.name)
        except ListError as exc:
            raise ValueError(f"{exc}; nothing pushed") from None
        version = args.version or lists.next_version(args.name)
        _check_version(db, target, "list", args.name, version)
        try:
            push = lists.prepare(key, target, args.name, Path(args.file), hash_key=hash_key, zone=args.timezone,
                                 max_code_bytes=args.max_code_bytes, expires_s=expires_s, version=args.version)
        except (OSError, ListError) as exc:
            raise ValueError(f"list {args.name}: {args.file}: {getattr(exc, 'strerror', None) or exc}; "
                             "nothing pushed") from None
        _check_version(db, target, "list", args.name, push.info.version)
        published_ms = wall_ms()
        publisher = _publisher(args)
        try:
            lists.publish(publisher, args.topic_prefix, target, push)
        finally:
            publisher.close()
    finally:
        lists.close()
    _record(db, target, "list", args.name, push.info.version, wall_ms(), push.info.sha256)
    delta = f", delta from v{push.base} ({len(push.delta)} bytes)" if push.delta else ""
    print(f"list {args.name} v{push.info.version} for {target}: {push.info.count} entries in "
          f"{len(push.chunks)} chunks{delta}")
    return _await_acks(args, db, target, "list", args.name, push.info.version, published_ms, push.manifest)


def cmd_trust_push(args) -> int:
    target = admin.parse_target(args.to)
    key = admin.read_private(args.key)
    try:
        with open(args.file, "rb") as fh:
            data = fh.read(MAX_BUNDLE + 1)
    except OSError as exc:
        raise ValueError(f"{args.file}: {exc.strerror or exc}") from None
    if len(data) > MAX_BUNDLE - 4096:
        raise ValueError(f"{args.file}: larger than a bundle may be ({MAX_BUNDLE - 4096} bytes); nothing pushed")
    try:
        signers = admin.check_trust(data)  # what each device checks: found here, before anything is signed
    except TrustListError as exc:
        raise ValueError(f"{args.file}: {for_log(exc)}; nothing pushed") from None
    expires_s = _expires_s(args.expires)
    db = _db(args)
    version = args.version or db.next_version(target, "trust")
    _check_version(db, target, "trust", "", version)
    message = admin.trust_bundle(key, target, version, data, expires_s=expires_s)
    published_ms = _publish_one(args, db, target, "trust", admin.trust_topic(args.topic_prefix, target),
                                message, version)
    print(f"trust list v{version} for {target} published ({signers} signers, {len(message)} bytes)")
    return _await_acks(args, db, target, "trust", None, version, published_ms, message)


# ---- the appliance's own passes (edge/credentials/passes.py) ----------------------------------------
def cmd_pass_keygen(args) -> int:
    try:
        key = passes.generate_key(args.out)
    except FileExistsError:
        raise ValueError(f"{args.out} exists; a key is never overwritten") from None
    except OSError as exc:
        raise ValueError(f"{args.out}: {exc.strerror or exc}") from None
    print(f"pass signing key written to {args.out} (keep it off the devices)")
    print(f"devices trust its passes with, in [credentials.passes] trusted_keys:\n{passes.public_key_text(key)}")
    return 0


def _pass_key(path: str):
    try:
        return passes.load_key(path)
    except passes.PassKeyError as exc:
        raise ValueError(str(exc)) from None


def _zone(name: str):
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"--timezone {name!r}: not a known time zone") from None


def _when(text: str | None, zone, what: str):
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} {text!r}: not an ISO 8601 date or time") from None
    return when if when.tzinfo else when.replace(tzinfo=zone)


def cmd_pass_issue(args) -> int:
    key = _pass_key(args.key)
    zone = _zone(args.timezone)
    payload = passes.issue_pass(key, args.id, args.label, valid_from=_when(args.valid_from, zone, "--valid-from"),
                                valid_until=_when(args.valid_until, zone, "--valid-until"),
                                gates=args.gates or ())
    path = args.png or args.svg
    try:
        passes.save_qr(payload, path)
    except OSError as exc:
        raise RuntimeError(f"{path}: {exc.strerror or exc}") from None
    print(f"pass {for_log(args.id)} written to {path} ({len(payload)} characters)")
    return 0


def cmd_pass_issue_csv(args) -> int:
    key = _pass_key(args.key)
    try:
        written = passes.issue_csv(key, args.file, args.out, kind=args.format, tz=_zone(args.timezone))
    except passes.PassCsvError as exc:
        raise ValueError(f"{args.file}: {exc}; nothing written") from None
    except OSError as exc:
        raise RuntimeError(f"{args.out}: {exc.strerror or exc}") from None
    print(f"{len(written)} passes written to {args.out}")
    return 0


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _what(ack: dict) -> str:
    """What a device answered about, as `acks` and `fleet` show it: fields it did not say are left out; a
    bundle refused before its header could be trusted (e.g. signed by an unknown key) names nothing."""
    named = ack["name"] or ack["target"]
    if named is None and ack["version"] is None:
        return "a bundle it could not read" if ack["kind"] in (None, "unknown") else _cell(ack["kind"])
    return " ".join(p for p in (_cell(ack["kind"]), _cell(named) if named is not None else "",
                                _version(ack) if ack["version"] is not None else "") if p)


def _refusal(ack: dict) -> str:
    """What a device refused, and why."""
    return f"{_what(ack)}: {_cell(ack['reason'])}"


def _version(ack: dict) -> str:
    return "-" if ack["version"] is None else f"v{_cell(ack['version'])}"


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
    text = _cell(value)
    return text if len(text) <= width else text[:width - 1] + "…"


FLEET_COLUMNS = ("device", "state", "since", "last seen", "config", "lists", "outbox", "oldest unsynced",
                 "clock offset", "source", "problems", "last rejected")
# Narrow (the default): each cell cut to this width, so a row stays near 120 characters; --wide shows all.
FLEET_WIDTHS = {"device": 16, "config": 18, "lists": 18, "source": 14, "problems": 24, "last rejected": 44}


def cmd_fleet(args) -> int:
    rows = _db(args, readonly=True).fleet()
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
        return 0
    now = wall_ms()
    columns = FLEET_COLUMNS if args.wide else tuple(c for c in FLEET_COLUMNS if c not in ("oldest unsynced",
                                                                                          "problems"))
    print("\t".join(columns))
    for row in rows:
        # Everything in a status came from the device: any shape, escaped for the terminal.
        status = _dict(row["status"])
        versions = _dict(status.get("versions"))
        outbox = _dict(status.get("outbox"))
        source = _dict(status.get("source"))
        sent = status.get("sent_ms")
        offset = (row["last_seen_ms"] - sent) if isinstance(sent, int) and not isinstance(sent, bool) \
            and row["last_seen_ms"] else row["entries_clock_offset_ms"]
        rejected = row["last_rejected"]
        pushed = _dict(_dict(status.get("remote")).get("config"))
        config = versions.get("config") or ",".join(f"{t} v{_dict(v).get('version')}" for t, v in pushed.items())
        lists = ",".join(f"{n}:v{v}" for n, v in _dict(versions.get("lists")).items())
        problems = status.get("problems") if isinstance(status.get("problems"), list) else []
        when = (lambda ms: iso_ms(ms) if ms else None) if args.wide else (lambda ms: _ago(ms, now))
        cells = {"device": row["device"], "state": row["state"], "since": when(row["since_ms"]),
                 "last seen": when(row["last_seen_ms"]), "config": config, "lists": lists,
                 "outbox": outbox.get("depth"), "oldest unsynced": outbox.get("oldest_unsynced"),
                 "clock offset": _offset(offset),
                 "source": f"{source.get('name')}:{source.get('state')}" if source else None,
                 "problems": "; ".join(map(str, problems)) or None,
                 "last rejected": _refusal(rejected) if rejected else None}
        if not args.wide and outbox.get("depth") and outbox.get("oldest_unsynced"):
            cells["outbox"] = f"{outbox['depth']} since {outbox['oldest_unsynced']}"
        print("\t".join(_cell(cells[c]) if args.wide else _short(cells[c], FLEET_WIDTHS.get(c, 24))
                        for c in columns))
    return 0


def cmd_pushed(args) -> int:
    rows = _db(args, readonly=True).pushed()
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
        return 0
    print("target\tkind\tname\tversion\tpushed\tsha256")
    for row in rows:
        print("\t".join((_cell(row["target"]), row["kind"], _cell(row["name"]), f"v{row['version']}",
                         iso_ms(row["issued_ms"]), row["sha256"][:16])))
    return 0


def _applied(status: dict, kind: str, target: str, name: str):
    """The version a device's status says it applied, or None when it does not say."""
    remote = _dict(status.get("remote"))
    if kind == "config":
        version = _dict(_dict(remote.get("config")).get(target)).get("version")
    elif kind == "trust":
        version = _dict(_dict(remote.get("trust")).get(target)).get("version")
    else:
        version = _dict(_dict(status.get("versions")).get("lists")).get(name)
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def drift(db: HubDB) -> list[dict]:
    """Devices whose applied versions differ from what their targets give them, each with why."""
    from sync.hub.hubdb import groups_of

    pushed = db.pushed()
    rows = []
    for row in db.fleet():
        status, device = _dict(row["status"]), row["device"]
        targets = {"all", f"device:{device}", *(f"group:{g}" for g in groups_of(status))}
        wanted: dict[tuple[str, str, str], dict] = {}
        for bundle in pushed:
            if bundle["target"] not in targets:
                continue
            # Config and trust are layered per target; a list is one per name, whichever target is newest.
            key = (bundle["kind"], bundle["target"] if bundle["kind"] != "list" else "", bundle["name"])
            if key not in wanted or bundle["version"] > wanted[key]["version"]:
                wanted[key] = bundle
        for (kind, _, name), bundle in sorted(wanted.items()):
            applied = _applied(status, kind, bundle["target"], name)
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
    rows = drift(_db(args, readonly=True))
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
        return 0
    print("device\twhat\tapplied\tpushed\twhy")
    for r in rows:
        what = f"list {r['name']}" if r["kind"] == "list" else r["kind"]
        print("\t".join((_cell(r["device"]), f"{what} {_cell(r['target'])}",
                         "-" if r["applied"] is None else f"v{r['applied']}", f"v{r['pushed']}", _cell(r["why"]))))
    return 0


def cmd_acks(args) -> int:
    for ack in _db(args, readonly=True).acks(args.device, args.limit):
        print("\t".join((iso_ms(ack["received_ms"]), _cell(ack["device_id"]), _what(ack),
                         "accepted" if ack["accepted"] else "REJECTED: " + _cell(ack["reason"]))))
    return 0


def _since(text: str) -> int:
    try:
        return parse_since(text, "UTC")
    except (ValueError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO date or date-time nor a span such as 2h or 7d") from exc


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= (1 << 63) - 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 up")
    return value


def with_broker(p):
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--username")
    p.add_argument("--password-file", help="file or systemd credential name holding the password")
    p.add_argument("--tls", action="store_true")
    p.add_argument("--ca-file")
    p.add_argument("--cert-file")
    p.add_argument("--key-file")
    p.add_argument("--topic-prefix", default="checkpoint")
    return p


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="checkpoint-hub", description=__doc__.splitlines()[0])
    top.add_argument("--hub", metavar="FILE", help="the hub's settings (default $CHECKPOINT_HUB, or ./hub.toml "
                     "when it exists); options given here win")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dashboard_cli.add_arguments(sub)  # `serve`: the fleet dashboard and /metrics (sync/dashboard)

    p = sub.add_parser("init", help="set up a hub on this machine: broker config, TLS, credentials, signing key")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--host", default=socket.gethostname(), help="the name devices reach the broker by")
    p.add_argument("--port", type=int, default=8883, help="the devices' TLS port (default 8883)")
    p.add_argument("--local-port", type=int, default=1883, help="hub services' port on 127.0.0.1 (default 1883)")
    p.set_defaults(func=cmd_init)

    device = sub.add_parser("device", help="devices' credentials").add_subparsers(dest="action", required=True)
    p = device.add_parser("add", help="a device's certificate, CA and config lines; its groups in the ACL")
    p.add_argument("device", metavar="DEVICE")
    p.add_argument("--group", action="append", default=[], help="a group it reads (repeat for more)")
    p.add_argument("--install-dir", default="/etc/checkpoint/mqtt",
                   help="where the files go on the device (default /etc/checkpoint/mqtt)")
    p.set_defaults(func=cmd_device_add)

    def with_db(p):
        p.add_argument("--db", default="hub.db", help="SQLite file (default hub.db) or postgresql://… URL")
        return p

    p = with_broker(with_db(sub.add_parser("collect", help="store every device's entries from the broker")))
    p.add_argument("--share-group", default="collectors",
                   help="MQTT 5 shared subscription group ('' subscribes alone)")
    p.add_argument("--client-id", default=f"hub-collector-{socket.gethostname()}",
                   help="stable per collector: its session keeps unacknowledged batches across restarts")
    p.add_argument("--session-expiry-s", type=int, default=7 * 86400)
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_collect)

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
    p.add_argument("--limit", type=_positive, default=50)
    p.set_defaults(func=cmd_acks)

    p = with_db(sub.add_parser("rejected", help="messages the collector refused and kept aside, newest first"))
    p.add_argument("--device")
    p.add_argument("--limit", type=_positive, default=50)
    p.add_argument("--json", action="store_true", help="one object a line, with the kept bytes in hex")
    p.set_defaults(func=cmd_rejected)

    p = sub.add_parser("keygen", help="a new Ed25519 signing key for administrators")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("hashkey", help="a new key for lists of hashed codes")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_hashkey)

    def push_args(p):
        with_broker(with_db(p))
        p.add_argument("--to", required=True, help="a device id, group:NAME or all")
        p.add_argument("--key", required=True, help="the signing key (from keygen)")
        p.add_argument("--expires", default="90d", help="validity, e.g. 90d, 12h (default 90d)")
        p.add_argument("--wait", nargs="?", type=_seconds, const=WAIT_DEFAULT_S, metavar="SECONDS",
                       help=f"wait for each device's answer (default {WAIT_DEFAULT_S:g} s) and print it; exit 1 "
                            "when any refused or did not answer")
        return p

    config = sub.add_parser("config", help="configuration bundles").add_subparsers(dest="action", required=True)
    p = push_args(config.add_parser("push", help="sign and publish a configuration (a partial override by default)"))
    p.add_argument("file")
    p.add_argument("--full", action="store_true", help="replace every pushable section, not merge")
    p.add_argument("--version", type=_positive, help="default: one more than the last pushed to this target")
    p.add_argument("--no-check", action="store_true", help="skip the hub's validation (the device validates)")
    p.set_defaults(func=cmd_config_push)

    lists = sub.add_parser("list", help="list bundles").add_subparsers(dest="action", required=True)
    p = push_args(lists.add_parser("push", help="sign and publish a list: snapshot in chunks, and a delta"))
    p.add_argument("name")
    p.add_argument("file")
    p.add_argument("--hash-key", help="store codes as keyed hashes with this key (from hashkey)")
    p.add_argument("--state", default="hub-state", help="folder keeping pushed lists (default hub-state)")
    p.add_argument("--timezone", default="UTC", help="zone of dates without an offset (default UTC)")
    p.add_argument("--max-code-bytes", type=int, default=2048)
    p.add_argument("--version", type=_positive, help="default: one more than the last pushed to this target "
                   "(give one above a version the devices hold that the hub did not push)")
    p.set_defaults(func=cmd_list_push)

    trust = sub.add_parser("trust", help="EU DCC trust list bundles").add_subparsers(dest="action", required=True)
    p = push_args(trust.add_parser("push", help="check, sign and publish an EU DCC Gateway trust list"))
    p.add_argument("file", metavar="FILE.json")
    p.add_argument("--version", type=_positive, help="default: one more than the last pushed to this target")
    p.set_defaults(func=cmd_trust_push)

    pass_ = sub.add_parser("pass", help="the appliance's own signed passes").add_subparsers(dest="action",
                                                                                         required=True)
    p = pass_.add_parser("keygen", help="a new Ed25519 key for signing passes")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_pass_keygen)
    p = pass_.add_parser("issue", help="sign one pass and write it as a printable QR code")
    p.add_argument("--key", required=True, help="the pass signing key (from pass keygen)")
    p.add_argument("--id", required=True, help="the pass id (what deny lists revoke it by)")
    p.add_argument("--label", default="", help="the holder's name, shown at the gate")
    p.add_argument("--valid-from", metavar="ISO8601")
    p.add_argument("--valid-until", metavar="ISO8601")
    p.add_argument("--gates", nargs="+", metavar="GATE", help="valid only at these gates (devices' gate names)")
    p.add_argument("--timezone", default="UTC", help="zone of times without an offset (default UTC)")
    image = p.add_mutually_exclusive_group(required=True)
    image.add_argument("--png", metavar="FILE")
    image.add_argument("--svg", metavar="FILE")
    p.set_defaults(func=cmd_pass_issue)
    p = pass_.add_parser("issue-csv", help="one printable pass per CSV row: id,label,valid_from,valid_until,gates")
    p.add_argument("file", metavar="FILE.csv")
    p.add_argument("--key", required=True, help="the pass signing key (from pass keygen)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the images (<id>.png)")
    p.add_argument("--format", choices=("png", "svg"), default="png")
    p.add_argument("--timezone", default="UTC", help="zone of times without an offset (default UTC)")
    p.set_defaults(func=cmd_pass_issue_csv)
    return top


# ---- one machine's hub: `init`, `device add`, and hub.toml ------------------------------------------
CREDENTIALS_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mqtt-credentials"
HUB_FILE = "hub.toml"
# Which hub.toml sections give defaults to which commands: the top level to every one, [collect] to the
# collector, [admin] to the commands that sign and publish. An option on the command line still wins.
SECTIONS = {"collect": ("collect",), "config": ("admin",), "list": ("admin",), "trust": ("admin",)}
NO_HUB_DEFAULTS = {"init", "device", "keygen", "hashkey", "pass"}  # their --host, --port, --key mean other things
HUB_KEYS = {"db", "host", "port", "tls", "ca_file", "cert_file", "key_file", "username", "password_file",
            "topic_prefix", "key", "state", "share_group", "client_id", "wait"}


def _credentials(*argv: str) -> str:
    """scripts/mqtt-credentials, which makes the fleet's CA, certificates and passwords: its last line."""
    if not CREDENTIALS_SCRIPT.exists():
        raise RuntimeError(f"{CREDENTIALS_SCRIPT} is missing (it ships with the source tree)")
    done = subprocess.run([str(CREDENTIALS_SCRIPT), *argv], capture_output=True, text=True)
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise ValueError(message[0].removeprefix("mqtt-credentials: "))
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def _toml_text(value) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) \
        else str(value)


def _toml_lines(table: dict) -> list[str]:
    return [f"{k} = {_toml_text(v) if not isinstance(v, list) else '[' + ', '.join(map(_toml_text, v)) + ']'}"
            for k, v in table.items()]


MOSQUITTO_CONF = """# Mosquitto 2.x for this checkpoint hub, made by `checkpoint-hub init`.
# Run it with mosquitto -c {conf} (or copy it to /etc/mosquitto/conf.d/). Devices connect with TLS client certificates on {port}; the
# collector and the admin commands on this machine connect with passwords on 127.0.0.1:{local_port}.
per_listener_settings false
persistence true
persistence_location {dir}/mosquitto/
autosave_interval 30
max_inflight_messages 20
max_queued_messages 100000
message_size_limit 33554432

listener {port}
cafile {dir}/tls/ca.crt
certfile {dir}/tls/server.crt
keyfile {dir}/tls/server.key
require_certificate true
use_identity_as_username true

listener {local_port} 127.0.0.1

allow_anonymous false
password_file {dir}/passwd
# A device's groups are added by `checkpoint-hub device add`: reload the broker then (SIGHUP).
acl_file {dir}/acl
"""


def cmd_init(args) -> int:
    folder = Path(args.dir).resolve()
    if (folder / HUB_FILE).exists():
        raise ValueError(f"{folder / HUB_FILE} exists; refusing to replace a hub's set-up")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mosquitto").mkdir(exist_ok=True)
    _credentials("ca", str(folder / "tls"))
    _credentials("server", str(folder / "tls"), args.host)
    (folder / "acl").write_text((Path(__file__).resolve().parents[2] / "config" / "mosquitto" / "acl")
                                .read_text())
    for user in ("hub-collector", "hub-admin"):
        _credentials("password", str(folder / "passwd"), user, str(folder / "credentials"), "127.0.0.1",
                     str(args.local_port))
    public = admin.keygen(folder / "admin.key")
    conf = folder / "mosquitto.conf"
    conf.write_text(MOSQUITTO_CONF.format(conf=conf, dir=folder, port=args.port, local_port=args.local_port))
    hub = {"db": str(folder / "hub.db"), "host": "127.0.0.1", "port": args.local_port,
           "topic_prefix": "checkpoint"}
    device = {"host": args.host, "port": args.port, "public_key": public}
    lines = ["# Made by `checkpoint-hub init`; read by every checkpoint-hub command (--hub FILE, or the",
             "# CHECKPOINT_HUB environment variable, or ./hub.toml). Options given on a command line win.",
             *_toml_lines(hub), "", "[collect]",
             *_toml_lines({"username": "hub-collector",
                           "password_file": str(folder / "credentials" / "hub-collector" / "password")}),
             "", "[admin]",
             *_toml_lines({"username": "hub-admin",
                           "password_file": str(folder / "credentials" / "hub-admin" / "password"),
                           "key": str(folder / "admin.key"), "state": str(folder / "hub-state")}),
             "", "# What `device add` writes into each device's config", "[device]", *_toml_lines(device), ""]
    (folder / HUB_FILE).write_text("\n".join(lines))
    HubDB(hub["db"]).close()  # the read commands work at once, before the collector first runs
    print(f"hub set up in {folder}:\n"
          f"  broker:    mosquitto -c {conf}   (devices on port {args.port}, hub services on 127.0.0.1:"
          f"{args.local_port})\n"
          f"  collector: checkpoint-hub collect --hub {folder / HUB_FILE}\n"
          f"  a device:  checkpoint-hub device add cp-01 --group ward-3 --hub {folder / HUB_FILE}")
    return 0


def cmd_device_add(args) -> int:
    hub_file = Path(getattr(args, "hub", None) or os.environ.get("CHECKPOINT_HUB") or HUB_FILE).resolve()
    folder = hub_file.parent
    settings = _read_hub(hub_file).get("device")
    if not isinstance(settings, dict) or not {"host", "port", "public_key"} <= settings.keys():
        raise ValueError(f"{hub_file}: no [device] host, port and public_key (made by checkpoint-hub init)")
    out = Path(_credentials("device-cert", str(folder / "tls"), args.device, str(settings["host"]),
                            str(settings["port"])))
    _credentials("groups", str(folder / "acl"), args.device, *args.group)
    installed = args.install_dir.rstrip("/") if args.install_dir else str(out)
    sync = {"enabled": True, "host": settings["host"], "port": settings["port"], "tls": True,
            "ca_file": f"{installed}/ca.crt", "cert_file": f"{installed}/{args.device}.crt",
            "key_file": f"{installed}/{args.device}.key"}
    remote = {"enabled": True, "trusted_keys": [settings["public_key"]], "groups": list(args.group)}
    text = "\n".join(["[sync]", *_toml_lines(sync), "", "[remote]", *_toml_lines(remote), ""])
    (out / "sync.toml").write_text(text)
    print(f"# {args.device}: copy {out}/ to the device's {installed}/ (the key stays private), then put these\n"
          f"# lines into its config ([device] id = \"{args.device}\"); reload the broker for its groups: "
          f"kill -HUP $(pidof mosquitto)\n{text}", end="")
    return 0


def _read_hub(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None


def _hub_file(argv: list[str]) -> tuple[Path | None, bool]:
    """The hub.toml to read and whether it was asked for (--hub or CHECKPOINT_HUB: then it must exist)."""
    for i, arg in enumerate(argv):
        if arg == "--hub" and i + 1 < len(argv):
            return Path(argv[i + 1]), True
        if arg.startswith("--hub="):
            return Path(arg.split("=", 1)[1]), True
    if os.environ.get("CHECKPOINT_HUB"):
        return Path(os.environ["CHECKPOINT_HUB"]), True
    return Path(HUB_FILE), False


def _apply_hub(top: argparse.ArgumentParser, argv: list[str]) -> None:
    """hub.toml's settings become the defaults of the commands that take them."""
    path, asked = _hub_file(argv)
    if not asked and not path.exists():
        return
    settings = _read_hub(path)
    base = {k: v for k, v in settings.items() if k in HUB_KEYS}
    for name, sub in _commands(top):
        if name.split()[0] in NO_HUB_DEFAULTS:
            continue
        values = dict(base)
        for section in SECTIONS.get(name.split()[0], ()):
            values.update({k: v for k, v in _dict(settings.get(section)).items() if k in HUB_KEYS})
        known = {a.dest for a in sub._actions}
        sub.set_defaults(**{k: v for k, v in values.items() if k in known})
        for action in sub._actions:  # a required option that hub.toml gives need not be typed
            if action.dest in values and action.option_strings:
                action.required = False


def _commands(p: argparse.ArgumentParser, prefix: str = ""):
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (prefix + name).strip(), sub
                yield from _commands(sub, prefix + name + " ")


def _hub_option_everywhere(top: argparse.ArgumentParser) -> None:
    for _, sub in _commands(top):
        if not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
            # SUPPRESS: a command that was not given --hub leaves the top level's value alone
            sub.add_argument("--hub", metavar="FILE", default=argparse.SUPPRESS, help="the hub's settings file")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = parser()
    _hub_option_everywhere(top)
    try:
        _apply_hub(top, argv)
    except ValueError as exc:
        print(f"checkpoint-hub: {exc}", file=sys.stderr)
        return 2
    args = top.parse_args(argv)
    if args.command == "device" and not getattr(args, "hub", None) and not os.environ.get("CHECKPOINT_HUB") \
            and not Path(HUB_FILE).exists():
        print(f"checkpoint-hub: device add needs the hub's settings: --hub DIR/{HUB_FILE}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"checkpoint-hub: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except (OSError, RuntimeError) as exc:  # the broker unreachable, refusing, or dropping the connection
        print(f"checkpoint-hub: {exc}; not completed", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
