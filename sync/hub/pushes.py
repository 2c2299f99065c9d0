"""The commands that sign and publish: `keygen`, `hashkey`, `config push`, `list push`, `trust push`, and their
`--wait` for each device's answer."""
from __future__ import annotations

import argparse
import hashlib
import os
import socket
import sys
import time
from pathlib import Path

from edge.common.clock import iso_ms, wall_ms
from edge.common.textsafe import for_log
from edge.credentials.trust import TrustListError
from edge.lists import ListError, ListUnreadable, check_name
from edge.settings.schema import ConfigError
from sync.hub import admin
from sync.hub.common import bundle_version, cell, open_db, with_broker, with_db
from sync.hub.errors import BrokerError, HubError, HubUsageError
from sync.hub.hubdb import HubDB
from sync.wire.bundle import MAX_BUNDLE
from sync.wire.mqtt import make_client


def add_arguments(sub) -> None:
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
    p.add_argument("--version", type=bundle_version, help="default: one more than the last pushed to this target")
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
    p.add_argument("--version", type=bundle_version, help="default: one more than the last pushed to this target "
                   "(give one above a version the devices hold that the hub did not push)")
    p.set_defaults(func=cmd_list_push)

    trust = sub.add_parser("trust", help="EU DCC trust list bundles").add_subparsers(dest="action", required=True)
    p = push_args(trust.add_parser("push", help="check, sign and publish an EU DCC Gateway trust list"))
    p.add_argument("file", metavar="FILE.json")
    p.add_argument("--version", type=bundle_version, help="default: one more than the last pushed to this target")
    p.set_defaults(func=cmd_trust_push)


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
        raise BrokerError(f"cannot reach the broker {args.host}:{args.port}: {exc.strerror or exc}") from None


def _expires_s(text: str) -> float:
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    try:
        value = float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise HubUsageError(f"--expires {text!r}: a number with d, h, m or s, e.g. 90d") from None
    if not 60 <= value <= 3650 * 86400:
        raise HubUsageError("--expires must lie between 1 minute and 10 years")
    return value


def _check_version(db: HubDB, target: str, kind: str, name: str, version: int) -> None:
    """Before anything is signed or published: devices refuse a version not above what they applied,
    and the broker keeps one retained bundle per topic, so a used or lower version must never go out."""
    last = db.next_version(target, kind, name) - 1
    if version <= last:
        what = f"list {name}" if kind == "list" else kind
        raise HubUsageError(f"{what} for {target}: v{version} is not above v{last}, the last pushed; "
                         f"nothing pushed (leave out --version, or give {last + 1} or more)"
                         if kind == "config" else
                         f"{what} for {target}: v{version} is not above v{last}, the last pushed (is --state the "
                         f"folder used before? or give --version {last + 1} or more); nothing pushed")


def _record(db: HubDB, *args) -> None:
    try:
        db.record_bundle(*args)
    except db.errors as exc:
        raise HubError(f"published, but the hub database did not record it: {exc}") from None


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
            line, failed = f"REFUSED: {cell(ack['reason'])}", failed + 1
        else:
            row = states.get(device) or {}
            offline = f" (offline since {iso_ms(row['since_ms'])})" if row.get("state") == "offline" \
                and row.get("since_ms") else ""
            line, failed = f"no answer in {args.wait:g} s{offline}", failed + 1
        print(f"{cell(device)}\t{line}")
    if failed:
        print(f"{failed} of {len(devices)} device(s) did not apply it", file=sys.stderr)
    return 1 if failed else 0


def cmd_config_push(args) -> int:
    target = admin.parse_target(args.to)
    key = admin.read_private(args.key)
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise HubUsageError(f"{args.file}: {exc.strerror or exc}") from None
    merge = "full" if args.full else "override"
    expires_s = _expires_s(args.expires)
    if not args.no_check:
        try:
            admin.check_config(data, merge)
        except ConfigError as exc:
            raise HubUsageError(f"{exc}; nothing pushed") from None
    db = open_db(args)
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
    db = open_db(args)
    try:
        lists = admin.HubLists(Path(args.state), target)
    except OSError as exc:
        raise HubError(f"--state {args.state}: {exc.strerror or exc}") from None
    try:
        try:
            check_name(args.name)
        except ListError as exc:
            raise HubUsageError(f"{exc}; nothing pushed") from None
        version = args.version or lists.next_version(args.name)
        _check_version(db, target, "list", args.name, version)
        try:
            push = lists.prepare(key, target, args.name, Path(args.file), hash_key=hash_key, zone=args.timezone,
                                 max_code_bytes=args.max_code_bytes, expires_s=expires_s, version=args.version)
        except ListUnreadable as exc:  # the hub's own kept lists (--state) damaged, locked or on a full disk
            raise HubError(f"--state {args.state}: {exc}; nothing pushed") from None
        except (OSError, ValueError, ListError) as exc:  # the CSV unreadable or not a list; a bad --timezone
            raise HubUsageError(f"list {args.name}: {args.file}: {getattr(exc, 'strerror', None) or exc}; "
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
        raise HubUsageError(f"{args.file}: {exc.strerror or exc}") from None
    if len(data) > MAX_BUNDLE - 4096:
        raise HubUsageError(f"{args.file}: larger than a bundle may be ({MAX_BUNDLE - 4096} bytes); nothing pushed")
    try:
        signers = admin.check_trust(data)  # what each device checks: found here, before anything is signed
    except TrustListError as exc:
        raise HubUsageError(f"{args.file}: {for_log(exc)}; nothing pushed") from None
    expires_s = _expires_s(args.expires)
    db = open_db(args)
    version = args.version or db.next_version(target, "trust")
    _check_version(db, target, "trust", "", version)
    message = admin.trust_bundle(key, target, version, data, expires_s=expires_s)
    published_ms = _publish_one(args, db, target, "trust", admin.trust_topic(args.topic_prefix, target),
                                message, version)
    print(f"trust list v{version} for {target} published ({signers} signers, {len(message)} bytes)")
    return _await_acks(args, db, target, "trust", None, version, published_ms, message)

