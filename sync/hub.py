"""`checkpoint-hub`: the hub side. `collect` stores every device's entries, status and acknowledgements;
`entries`, `gaps`, `devices`, `fleet` and `acks` read them back; `keygen`, `hashkey`, `config push` and
`list push` sign and publish what devices should run with.
Exit status: 0 done, 1 the work failed, 2 a wrong command line."""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from edge.clock import iso_ms, parse_since, wall_ms
from edge.config import ConfigError
from edge.export import write_entries
from edge.lists import ListError

from . import admin

from .collector import Collector
from .hubdb import HubDB
from .mqtt import SyncConfigError, connect_properties, make_client

log = logging.getLogger("checkpoint.hub")


def _db(args) -> HubDB:
    try:
        return HubDB(args.db)
    except Exception as exc:  # sqlite3 or psycopg, whichever the URL chose: one line, not a traceback
        raise SystemExit(f"checkpoint-hub: cannot open hub database {args.db}: {exc}") from None


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
    db = _db(args)
    since = parse_since(args.since, "UTC") if args.since else None
    write_entries(db.entries(device=args.device, since_ms=since), args.format)
    return 0


def cmd_gaps(args) -> int:
    for device, first, last in _db(args).gaps(args.device):
        print(f"{device}\t{first}" + (f"-{last}" if last != first else ""))
    return 0


def cmd_devices(args) -> int:
    for d in _db(args).devices():
        print(f"{d['device_id']}\tlast seen {iso_ms(d['last_seen_ms'])}\tseq {d['max_seq']}\t"
              f"{d['entries']} entries\t{d['duplicates']} duplicates\tclock offset {d['clock_offset_ms']} ms")
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


def cmd_config_push(args) -> int:
    target = admin.parse_target(args.to)
    key = admin.read_private(args.key)
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise ValueError(f"{args.file}: {exc.strerror or exc}") from None
    merge = "full" if args.full else "override"
    if not args.no_check:
        try:
            admin.check_config(data, merge)
        except ConfigError as exc:
            raise ValueError(f"{exc}; nothing pushed") from None
    db = _db(args)
    version = args.version or db.next_version(target, "config")
    message = admin.config_bundle(key, target, version, data, merge=merge, expires_s=_expires_s(args.expires))
    publisher = _publisher(args)
    try:
        publisher.publish(admin.config_topic(args.topic_prefix, target), message)
    finally:
        publisher.close()
    db.record_bundle(target, "config", "", version, wall_ms(), hashlib.sha256(message).hexdigest())
    print(f"config v{version} for {target} published ({len(message)} bytes, {merge})")
    return 0


def cmd_list_push(args) -> int:
    target = admin.parse_target(args.to)
    key = admin.read_private(args.key)
    hash_key = admin.read_hash_key(args.hash_key) if args.hash_key else None
    lists = admin.HubLists(Path(args.state), target)
    try:
        push = lists.prepare(key, target, args.name, Path(args.file), hash_key=hash_key, zone=args.timezone,
                             max_code_bytes=args.max_code_bytes, expires_s=_expires_s(args.expires))
    except (OSError, ListError) as exc:
        raise ValueError(f"list {args.name}: {args.file}: {getattr(exc, 'strerror', None) or exc}; nothing pushed") from None
    publisher = _publisher(args)
    try:
        lists.publish(publisher, args.topic_prefix, target, push)
    finally:
        publisher.close()
        lists.close()
    db = _db(args)
    db.record_bundle(target, "list", args.name, push.info.version, wall_ms(), push.info.sha256)
    delta = f", delta from v{push.base} ({len(push.delta)} bytes)" if push.delta else ""
    print(f"list {args.name} v{push.info.version} for {target}: {push.info.count} entries in "
          f"{len(push.chunks)} chunks{delta}")
    return 0


def cmd_fleet(args) -> int:
    rows = _db(args).fleet()
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
        return 0
    print("\t".join(("device", "state", "since", "last seen", "config", "lists", "outbox", "oldest unsynced",
                     "clock offset ms", "source", "last rejected")))
    for row in rows:
        status = row["status"]
        versions = status.get("versions") or {}
        outbox = status.get("outbox") if isinstance(status.get("outbox"), dict) else {}
        source = status.get("source") if isinstance(status.get("source"), dict) else {}
        offset = (row["last_seen_ms"] - status["sent_ms"]) if isinstance(status.get("sent_ms"), int) \
            and row["last_seen_ms"] else row["entries_clock_offset_ms"]
        rejected = row["last_rejected"]
        pushed = ((status.get("remote") or {}).get("config") or {}) if isinstance(status.get("remote"), dict) else {}
        config = versions.get("config") or ",".join(f"{t} v{v.get('version')}" for t, v in pushed.items()) or "-"
        print("\t".join(str(v) for v in (
            row["device"], row["state"], iso_ms(row["since_ms"]) if row["since_ms"] else "-",
            iso_ms(row["last_seen_ms"]) if row["last_seen_ms"] else "-", config,
            ",".join(f"{n}:v{v}" for n, v in (versions.get("lists") or {}).items()) or "-",
            outbox.get("depth", "-"), outbox.get("oldest_unsynced") or "-", offset if offset is not None else "-",
            f"{source.get('name')}:{source.get('state')}" if source else "-",
            f"{rejected['kind']} {rejected['name'] or rejected['target']} v{rejected['version']}: {rejected['reason']}"
            if rejected else "-")))
    return 0


def cmd_acks(args) -> int:
    for ack in _db(args).acks(args.device, args.limit):
        print("\t".join(str(v) for v in (iso_ms(ack["received_ms"]), ack["device_id"], ack["kind"],
                                         ack["name"] or ack["target"], f"v{ack['version']}",
                                         "accepted" if ack["accepted"] else f"REJECTED: {ack['reason']}")))
    return 0


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
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    p.add_argument("--since", help="ISO date or date-time (UTC), or a span back from now: 2h, 7d")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.set_defaults(func=cmd_entries)

    p = with_db(sub.add_parser("gaps", help="missing sequence numbers per device"))
    p.add_argument("--device")
    p.set_defaults(func=cmd_gaps)

    p = with_db(sub.add_parser("devices", help="every device that sent entries"))
    p.set_defaults(func=cmd_devices)

    p = with_db(sub.add_parser("fleet", help="every device: state, versions applied, outbox, last refusal"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fleet)

    p = with_db(sub.add_parser("acks", help="bundle acknowledgements, newest first"))
    p.add_argument("--device")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_acks)

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
        return p

    config = sub.add_parser("config", help="configuration bundles").add_subparsers(dest="action", required=True)
    p = push_args(config.add_parser("push", help="sign and publish a configuration (a partial override by default)"))
    p.add_argument("file")
    p.add_argument("--full", action="store_true", help="replace every pushable section, not merge")
    p.add_argument("--version", type=int, help="default: one more than the last pushed to this target")
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
    p.set_defaults(func=cmd_list_push)
    return top


def main(argv=None) -> int:
    args = parser().parse_args(argv)
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
