"""`checkpoint-hub serve`: the dashboard and /metrics on one address (127.0.0.1:8090 by default).

Exit status: 0 stopped, 1 cannot serve (address taken, database unreadable), 2 a wrong command line or admins file."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge.ui.server import UIError, bind, parse_listen
from sync.hub.common import open_db
from sync.hub.dashboard.app import DashboardError, build_app, read_admins
from sync.hub.dashboard.fleet import Thresholds
from sync.hub.errors import HubError


def add_arguments(subparsers) -> None:
    p = subparsers.add_parser("serve", help="the read-only web dashboard and /metrics",
                              description=__doc__.splitlines()[0])
    p.add_argument("--db", default="var/hub.db", help="hub database: a SQLite path or a postgresql:// URL")
    p.add_argument("--listen", default="127.0.0.1:8090", help="host:port (default 127.0.0.1:8090)")
    p.add_argument("--admins", required=True, type=Path,
                   help='TOML file: [admins] name = "<hash from `checkpoint ui hash-password`>"')
    p.add_argument("--zone", default=None, help="time zone for times shown (default: the hub's local zone)")
    p.add_argument("--session-key", type=Path, default=None,
                   help="file of at least 32 random bytes signing the session cookie (default: new at each "
                        "start; the sessions themselves live in the dashboard's memory, so a restart logs "
                        "everyone out either way)")
    p.add_argument("--secure-cookie", action="store_true", help="send the login cookie over HTTPS only "
                   "(set it when a TLS proxy is in front)")
    p.add_argument("--cache-s", type=float, default=1.0,
                   help="the fleet table is shared by all viewers for this long (default 1; 0: built per request)")
    p.add_argument("--offline-min", type=float, default=10.0, help="alert: offline longer than this (default 10)")
    p.add_argument("--outbox-min", type=float, default=30.0,
                   help="alert: an unsynced entry older than this (default 30)")
    p.add_argument("--offset-s", type=float, default=5.0, help="alert: clock offset over this (default 5)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    import uvicorn

    logging.basicConfig(format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", level=logging.INFO, force=True)
    try:
        admins = read_admins(args.admins)
        if args.zone:
            ZoneInfo(args.zone)
        key = None
        if args.session_key:
            key = args.session_key.read_bytes()
            if len(key) < 32:
                raise DashboardError(f"{args.session_key}: fewer than 32 bytes")
    except (DashboardError, ZoneInfoNotFoundError, ValueError, OSError) as exc:
        print(f"checkpoint-hub serve: {exc}", file=sys.stderr)
        return 2
    try:
        open_db(args, readonly=True).close()  # a mistyped --db is said now, not at the first page
    except HubError as exc:  # MissingDatabase (2), or the database failing (1)
        print(f"checkpoint-hub serve: {exc}", file=sys.stderr)
        return exc.exit_status
    try:
        sock = bind(*parse_listen(args.listen))
    except UIError as exc:
        print(f"checkpoint-hub serve: {exc}", file=sys.stderr)
        return 1
    app = build_app(args.db, admins, zone=args.zone, session_key=key, secure_cookie=args.secure_cookie,
                    limits=Thresholds(args.offline_min, args.outbox_min, args.offset_s), fresh_s=max(args.cache_s, 0))
    host, port = sock.getsockname()[:2]
    logging.getLogger("checkpoint.hub.dashboard").info("dashboard on http://%s:%s/", host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=False))
    server.run(sockets=[sock])
    return 0


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="checkpoint-hub")
    add_arguments(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
