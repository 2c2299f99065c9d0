"""`checkpoint-hub`: the hub side. `collect` stores every device's entries; `entries`, `gaps` and
`devices` read them back. Exit status: 0 done, 1 the work failed, 2 a wrong command line."""
from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys

from edge.clock import iso_ms, parse_since
from edge.export import write_entries

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


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="checkpoint-hub", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_db(p):
        p.add_argument("--db", default="hub.db", help="SQLite file (default hub.db) or postgresql://… URL")
        return p

    p = with_db(sub.add_parser("collect", help="store every device's entries from the broker"))
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--username")
    p.add_argument("--password-file", help="file or systemd credential name holding the password")
    p.add_argument("--tls", action="store_true")
    p.add_argument("--ca-file")
    p.add_argument("--cert-file")
    p.add_argument("--key-file")
    p.add_argument("--topic-prefix", default="checkpoint")
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


if __name__ == "__main__":
    sys.exit(main())
