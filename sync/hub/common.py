"""What the hub's commands share: opening the hub database, table cells, whole-number arguments, the broker
and database options."""
from __future__ import annotations

import argparse
import re
import sqlite3

from edge.common.textsafe import for_log
from edge.settings.network import TOPIC_PREFIX_PATTERN
from sync.hub.errors import HubError
from sync.hub.hubdb import HubDB

TOPIC_PREFIX = re.compile(TOPIC_PREFIX_PATTERN)


def open_db(args, *, readonly: bool = False) -> HubDB:
    """The hub database --db names; a database that cannot be opened is one line (HubError), not a traceback."""
    try:
        return HubDB(args.db, readonly=readonly)
    except HubError:
        raise  # MissingDatabase: a usage problem, exit status 2
    except (sqlite3.Error, OSError) as exc:
        raise HubError(f"cannot open hub database {args.db}: {exc}") from exc
    except ImportError as exc:  # a postgresql:// URL on a hub installed without the [hub] extra
        raise HubError(f"cannot open hub database {args.db}: {exc} (install checkpoint[hub])") from exc
    except Exception as exc:
        if type(exc).__module__.partition(".")[0] == "psycopg":  # imported only for a postgresql:// URL
            raise HubError(f"cannot open hub database {args.db}: {exc}") from exc
        raise


def cell(value) -> str:
    """A table cell from what a device sent: one line, escaped; '-' for nothing."""
    return "-" if value is None or value == "" else for_log(value, 120)


def as_dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= (1 << 63) - 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 up")
    return value


def bundle_version(text: str) -> int:
    """A --version a bundle's header can carry (JSON numbers are exact up to 2^53)."""
    value = positive(text)
    if value > 1 << 53:
        raise argparse.ArgumentTypeError(f"{text!r} is past {1 << 53}, the largest version a bundle carries")
    return value


def topic_prefix(text: str) -> str:
    """The same topic prefix a device's [sync] takes: no MQTT wildcards, no empty levels."""
    if not TOPIC_PREFIX.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: letters, digits, '.', '_', '-' in '/'-separated levels")
    return text



def with_db(p):
    p.add_argument("--db", default="hub.db", help="SQLite file (default hub.db) or postgresql://… URL")
    return p


def with_broker(p):
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--username")
    p.add_argument("--password-file", help="file or systemd credential name holding the password")
    p.add_argument("--tls", action="store_true")
    p.add_argument("--ca-file")
    p.add_argument("--cert-file")
    p.add_argument("--key-file")
    p.add_argument("--topic-prefix", type=topic_prefix, default="checkpoint")
    return p

