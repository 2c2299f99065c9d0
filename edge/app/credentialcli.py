"""`checkpoint credential verify|show` (one credential payload, verified or shown, as JSON or text) and
`checkpoint trust import|status` (the device's EU DCC trust list).

    checkpoint credential verify [--trust TRUSTLIST.json] [--pass-key KEY]... [--revoked FILE] [--deny FILE]
                                 [--at ISO8601] [--rules] [--gate NAME] [--json] PAYLOAD
    checkpoint credential show [--json] PAYLOAD
    checkpoint trust import FILE.json [--config FILE] [--version N]
    checkpoint trust status [--config FILE] [--json]

PAYLOAD is the decoded text of the QR code, or '-' to read it from standard input. `verify` checks the
signature, the signer's trust, its key usage and the validity at `--at` (default now; a time without an
offset is UTC); `--rules` adds the default EU DCC rules the daemon applies. Exit status: 0 accepted,
3 rejected (the verdict is still printed), 1 an unreadable file, 2 a wrong command line.
Runs standalone too: `python -m edge.app.credentialcli credential verify ...`.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from edge.common.errors import CheckpointError
from edge.common.textsafe import for_log
from edge.credentials import Trust, evaluate, read, trustfile
from edge.credentials.model import Category, Credential, CredentialFailure, Verdict
from edge.credentials.passes import PassKeyError, trusted_keys
from edge.credentials.rules import dcc_rules, gate_rule
from edge.credentials.settings import DccRules
from edge.credentials.trust import MAX_FILE_BYTES, TrustList, TrustListError, load_trust_list

ACCEPTED, REJECTED, FAILED, USAGE = 0, 3, 1, 2
DEFAULT_CONFIG = os.environ.get("CHECKPOINT_CONFIG", "/etc/checkpoint/checkpoint.toml")
MAX_LIST_BYTES = 256 * 1024 * 1024


class _Failure(CheckpointError):
    """A file or a config this command cannot use: one line on stderr."""


def add_arguments(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `credential verify` and `credential show` to a `checkpoint` command line."""
    group = subparsers.add_parser("credential", help="verify or show a credential (EU certificate, pass, ID card)")
    actions = group.add_subparsers(dest="credential_command", required=True, metavar="ACTION")

    p = actions.add_parser("verify", help="verify a credential payload offline: signature, trust, key usage, time")
    p.add_argument("payload", metavar="PAYLOAD", help="the QR code's text, or - for standard input")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--trust", metavar="TRUSTLIST.json", help="EU DCC Gateway trust list (JSON)")
    p.add_argument("--pass-key", action="append", default=[], metavar="KEY",
                   help="a trusted pass key (base64 Ed25519 public key); repeatable")
    p.add_argument("--revoked", metavar="FILE", help="EU DCC revocation hashes, one a line (hex or base64)")
    p.add_argument("--deny", metavar="FILE", help="deny-listed subject ids, one a line")
    p.add_argument("--at", metavar="ISO8601", help="the time of the check (default now; no offset: UTC)")
    p.add_argument("--rules", action="store_true", help="also apply the default EU DCC rules")
    p.add_argument("--gate", metavar="NAME", help="with --rules: the gate a pass is checked for")
    p.set_defaults(func=cmd_verify)

    p = actions.add_parser("show", help="what a credential payload holds, not verified")
    p.add_argument("payload", metavar="PAYLOAD", help="the QR code's text, or - for standard input")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_show)

    group = subparsers.add_parser("trust", help="the EU DCC trust list this device verifies certificates with")
    actions = group.add_subparsers(dest="trust_command", required=True, metavar="ACTION")
    config_help = f"config file (default {DEFAULT_CONFIG}, or $CHECKPOINT_CONFIG)"
    p = actions.add_parser("import", help="check an EU DCC Gateway trust list and store it as trust.json")
    p.add_argument("file", metavar="FILE.json", help="the trust list (EU DCC Gateway JSON)")
    p.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE", help=config_help)
    p.add_argument("--version", type=int, metavar="N", help="default: one more than the stored list's")
    p.set_defaults(func=cmd_trust_import)
    p = actions.add_parser("status", help="the stored trust list's version, age and signers")
    p.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE", help=config_help)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_trust_status)


def _payload(text: str) -> str:
    return sys.stdin.read().rstrip("\r\n") if text == "-" else text


def _at_ms(text: str | None) -> int:
    if text is None:
        return time.time_ns() // 1_000_000
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--at: not an ISO 8601 time: {for_log(text)}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def _lines(path: str) -> list[str]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_LIST_BYTES + 1)
        if len(data) > MAX_LIST_BYTES:
            raise _Failure(f"{for_log(path)}: larger than {MAX_LIST_BYTES} bytes")
        text = data.decode("utf-8-sig")
    except OSError as exc:
        raise _Failure(f"{for_log(path)}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise _Failure(f"{for_log(path)}: not UTF-8") from exc
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _hash(line: str, path: str) -> bytes:
    try:
        return bytes.fromhex(line) if len(line) == 32 else base64.b64decode(line, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise _Failure(f"{for_log(path)}: {for_log(line, 60)} is neither hex nor base64") from exc


def _trust(args: argparse.Namespace) -> Trust:
    dsc = load_trust_list(args.trust) if args.trust else TrustList()
    for line in dsc.skipped:
        print(f"checkpoint: trust list: {for_log(line)}", file=sys.stderr)
    revoked = {_hash(line, args.revoked) for line in _lines(args.revoked)} if args.revoked else set()
    denied = set(_lines(args.deny)) if args.deny else set()
    return Trust(dsc=dsc, pass_keys=trusted_keys(args.pass_key), revoked=revoked.__contains__,
                 denied=denied.__contains__)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    try:
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        return str(ms)


def describe(credential: Credential) -> dict[str, object]:
    return {"format": credential.format, "id": credential.subject_id, "type": credential.kind,
            "holder": {"name": credential.holder.name, "date_of_birth": credential.holder.date_of_birth},
            "valid_from": _iso(credential.valid_from_ms), "valid_until": _iso(credential.valid_until_ms),
            "issuer": credential.issuer}


def verdict_json(verdict: Verdict | None) -> dict[str, object]:
    if verdict is None:
        return {"verdict": "reject", "reason": Category.MALFORMED.value, "format": "plain",
                "detail": "not a credential of any supported format"}
    out: dict[str, object] = {"verdict": "accept" if verdict.accepted else "reject", "reason": verdict.category.value,
           "detail": verdict.detail, "format": verdict.format}
    if verdict.rule:
        out["rule"] = verdict.rule
    if verdict.signer:
        out["signer"] = verdict.signer
    if verdict.credential is not None:
        out.update(describe(verdict.credential))
    return out


def _print(obj: Mapping[str, object], as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, ensure_ascii=False))
        return
    for key, value in obj.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items() if v is not None)
        if value is not None:
            print(f"{key}: {for_log(value, 400)}")


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        at_ms = _at_ms(args.at)
    except argparse.ArgumentTypeError as exc:
        print(f"checkpoint: {exc}", file=sys.stderr)
        return USAGE
    try:
        trust = _trust(args)
    except (TrustListError, _Failure) as exc:
        print(f"checkpoint: {for_log(exc)}", file=sys.stderr)
        return FAILED
    except PassKeyError as exc:
        print(f"checkpoint: --pass-key: {for_log(exc)}", file=sys.stderr)
        return USAGE
    rules = [*dcc_rules(DccRules()), gate_rule(args.gate)] if args.rules else []
    verdict = evaluate(_payload(args.payload), trust, at_ms, rules=rules)
    _print(verdict_json(verdict), args.json)
    return ACCEPTED if verdict is not None and verdict.accepted else REJECTED


def cmd_show(args: argparse.Namespace) -> int:
    parsed = read(_payload(args.payload))
    if parsed is None:
        _print({"format": "plain", "detail": "not a credential of any supported format"}, args.json)
        return REJECTED
    if isinstance(parsed, CredentialFailure):
        _print({"format": parsed.format, "reason": parsed.category.value, "detail": parsed.detail}, args.json)
        return REJECTED
    _print({**describe(parsed), "claims": dict(parsed.claims)}, args.json)
    return ACCEPTED


def _trust_path(config: str) -> Path:
    """Where this device keeps its trust list: [credentials.dcc] trust_list, else trust.json beside the
    database. Raises _Failure for a config that cannot be loaded."""
    from edge.settings.layers import load_settings
    from edge.settings.schema import ConfigError

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise _Failure(f"config error: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - any unloadable config is one line, as in edge.app.cli
        raise _Failure(f"config error: {config}: cannot be loaded ({type(exc).__name__})") from exc
    dcc = settings.credentials.dcc
    return Path(dcc.trust_list) if dcc.trust_list else trustfile.default_path(settings.store.dir)


def cmd_trust_import(args: argparse.Namespace) -> int:
    if args.version is not None and not 1 <= args.version <= 2**53:
        print("checkpoint: --version: a whole number from 1", file=sys.stderr)
        return USAGE
    try:
        path = _trust_path(args.config)
        with open(args.file, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        meta = trustfile.store(data, path, now_ms=time.time_ns() // 1_000_000, version=args.version,
                               source=Path(args.file).name[:200])
        skipped = load_trust_list(data).skipped
    except _Failure as exc:
        print(f"checkpoint: {for_log(exc)}", file=sys.stderr)
        return USAGE
    except TrustListError as exc:
        print(f"checkpoint: {for_log(args.file)}: {for_log(exc)}", file=sys.stderr)
        return FAILED
    except OSError as exc:
        print(f"checkpoint: {for_log(exc.filename or args.file)}: {for_log(exc.strerror or exc)}", file=sys.stderr)
        return FAILED
    for line in skipped:
        print(f"checkpoint: trust list: {for_log(line)}", file=sys.stderr)
    print(f"trust list version {meta.version}: {meta.signers} signers stored in {for_log(str(path))}"
          + (f", {len(skipped)} skipped" if skipped else "")
          + "; a running daemon reads it within seconds")
    return 0


def cmd_trust_status(args: argparse.Namespace) -> int:
    try:
        path = _trust_path(args.config)
        meta = trustfile.read_meta(path)
    except _Failure as exc:
        print(f"checkpoint: {for_log(exc)}", file=sys.stderr)
        return USAGE
    except TrustListError as exc:
        print(f"checkpoint: {for_log(exc)}", file=sys.stderr)
        return FAILED
    now = time.time_ns() // 1_000_000
    out = {"path": str(path), "version": meta.version if meta else None,
           "imported": _iso(meta.imported_ms) if meta else None,
           "age_h": round((now - meta.imported_ms) / 3_600_000, 2) if meta else None,
           "signers": meta.signers if meta else 0, "source": meta.source if meta else None}
    _print(out, args.json)
    return 0 if meta else REJECTED


def main(argv: list[str] | None = None) -> int:
    top = argparse.ArgumentParser(prog="checkpoint", description="Credentials verified offline.")
    add_arguments(top.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = top.parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        return command(args)
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
