"""`checkpoint-hub pass keygen|issue|issue-csv`: the appliance's own signed passes (edge/credentials/passes.py)
as printable QR codes."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge.common.textsafe import for_log
from edge.credentials import passes
from sync.hub.errors import HubError, HubUsageError


def add_arguments(sub) -> None:
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


def cmd_pass_keygen(args) -> int:
    try:
        key = passes.generate_key(args.out)
    except FileExistsError:
        raise HubUsageError(f"{args.out} exists; a key is never overwritten") from None
    except OSError as exc:
        raise HubUsageError(f"{args.out}: {exc.strerror or exc}") from None
    print(f"pass signing key written to {args.out} (keep it off the devices)")
    print(f"devices trust its passes with, in [credentials.passes] trusted_keys:\n{passes.public_key_text(key)}")
    return 0


def _pass_key(path: str):
    try:
        return passes.load_key(path)
    except passes.PassKeyError as exc:
        raise HubUsageError(str(exc)) from None


def _zone(name: str):
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise HubUsageError(f"--timezone {name!r}: not a known time zone") from None


def _when(text: str | None, zone, what: str):
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise HubUsageError(f"{what} {text!r}: not an ISO 8601 date or time") from None
    return when if when.tzinfo else when.replace(tzinfo=zone)


def cmd_pass_issue(args) -> int:
    key = _pass_key(args.key)
    zone = _zone(args.timezone)
    try:
        payload = passes.issue_pass(key, args.id, args.label,
                                    valid_from=_when(args.valid_from, zone, "--valid-from"),
                                    valid_until=_when(args.valid_until, zone, "--valid-until"), gates=args.gates or ())
    except passes.PassError as exc:  # an id, label or gate too long: what the pass format holds
        raise HubUsageError(str(exc)) from None
    path = args.png or args.svg
    try:
        passes.save_qr(payload, path)
    except passes.PassError as exc:  # neither .png nor .svg
        raise HubUsageError(str(exc)) from None
    except OSError as exc:
        raise HubError(f"{path}: {exc.strerror or exc}") from None
    print(f"pass {for_log(args.id)} written to {path} ({len(payload)} characters)")
    return 0


def cmd_pass_issue_csv(args) -> int:
    key = _pass_key(args.key)
    try:
        written = passes.issue_csv(key, args.file, args.out, kind=args.format, tz=_zone(args.timezone))
    except passes.PassCsvError as exc:
        raise HubUsageError(f"{args.file}: {exc}; nothing written") from None
    except OSError as exc:
        raise HubError(f"{args.out}: {exc.strerror or exc}") from None
    print(f"{len(written)} passes written to {args.out}")
    return 0
