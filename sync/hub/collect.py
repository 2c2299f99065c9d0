"""`checkpoint-hub collect`: the collector process (sync/hub/collector.py) on the broker, until stopped."""
from __future__ import annotations

import logging
import signal
import socket
import sys

from edge.ui.server import UIError, parse_listen
from sync.hub.collector import Collector
from sync.hub.common import open_db, with_broker, with_db
from sync.hub.errors import HubError, HubUsageError
from sync.wire.mqtt import SyncConfigError, connect_properties, make_client

log = logging.getLogger("checkpoint.hub")


def add_arguments(sub) -> None:
    p = with_broker(with_db(sub.add_parser("collect", help="store every device's entries from the broker")))
    p.add_argument("--share-group", default="collectors",
                   help="MQTT 5 shared subscription group ('' subscribes alone)")
    p.add_argument("--client-id", default=f"hub-collector-{socket.gethostname()}",
                   help="stable per collector: its session keeps unacknowledged batches across restarts")
    p.add_argument("--session-expiry-s", type=int, default=7 * 86400)
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--metrics", metavar="HOST:PORT",
                   help="serve the collector's own metrics (inserts, duplicates, conflicts, rejected messages, "
                        "batch latency) for Prometheus at http://HOST:PORT/metrics, e.g. 127.0.0.1:9108")
    p.set_defaults(func=cmd_collect)


def cmd_collect(args) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        level=logging.DEBUG if args.verbose else logging.INFO, force=True)
    if args.metrics:
        try:
            metrics_at = parse_listen(args.metrics)
        except UIError as exc:
            raise HubUsageError(f"--metrics {args.metrics!r}: expected HOST:PORT") from exc
    db = open_db(args)
    try:
        client = make_client(client_id=args.client_id, username=args.username, password_file=args.password_file,
                             tls=args.tls, ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file,
                             manual_ack=True)
    except SyncConfigError as exc:
        print(f"checkpoint-hub: {exc}", file=sys.stderr)
        return 1
    collector = Collector(db, client, topic_prefix=args.topic_prefix, share_group=args.share_group or None)
    if args.metrics:
        try:
            server = collector.meter.serve(*metrics_at)
        except OSError as exc:
            db.close()
            raise HubError(f"--metrics {args.metrics}: cannot listen: {exc.strerror or exc}") from exc
        host, port = server.server_address[:2]
        log.info("collector metrics on http://%s:%s/metrics", host, port)
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

