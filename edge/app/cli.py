"""`checkpoint`: the daemon and the officer's and administrator's tools on the device.

Exit status: 0 done, 1 the work failed (an unreadable file, a rejected list, a broken database),
2 the command line or the config file is wrong. The commands themselves are in edge/app/commands/.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import get_args

from edge.app import credentialcli as credential_cli
from edge.app import doctor
from edge.app.commands.gate import cmd_check, cmd_config_check, cmd_decode, cmd_run
from edge.app.commands.lists import cmd_list_import, cmd_list_remove, cmd_list_show
from edge.app.commands.status import cmd_entries, cmd_status
from edge.common.errors import EXIT_OK, exit_status
from edge.common.textsafe import for_log
from edge.settings.schema import ConfigError, DecoderType
from edge.ui import passwords

DEFAULT_CONFIG = os.environ.get("CHECKPOINT_CONFIG", "/etc/checkpoint/checkpoint.toml")
MESSAGE_LIMIT = 2000  # one error line: enough for every key a config gets wrong, not a file's worth

def message_of(exc: BaseException) -> str:
    # Messages carry file names, list names and rows from outside: one escaped line each.
    prefix = "config error: " if isinstance(exc, ConfigError) else ""
    return f"{prefix}{for_log(exc, MESSAGE_LIMIT)}"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="checkpoint", description=(__doc__ or "").splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE",
                       help=f"config file (default {DEFAULT_CONFIG}, or $CHECKPOINT_CONFIG)")
        return p

    with_config(sub.add_parser("run", help="run the appliance")).set_defaults(func=cmd_run)

    p = sub.add_parser("decode", help="decode QR codes in images or videos, as the daemon would")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="one JSON object per code found")
    p.add_argument("--decoder", choices=get_args(DecoderType), default="multipass")
    p.add_argument("--debounce-ms", type=int, default=1500, help="within one video, the same code again "
                   "within this time of its last sighting is not reported again")
    p.set_defaults(func=cmd_decode)

    p = with_config(sub.add_parser("check", help="the decision the daemon would take for CODE, not recorded"))
    p.add_argument("code", metavar="CODE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = with_config(sub.add_parser("entries", help="export recorded entries"))
    p.add_argument("--since", metavar="T", help="ISO date or date-time, or a span back from now: 30m, 2h, 7d")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.set_defaults(func=cmd_entries)

    p = with_config(sub.add_parser("status", help="lists, entries, last scan, store health"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    lists = sub.add_parser("list", help="lists cached on the device").add_subparsers(
        dest="list_command", required=True, metavar="ACTION")
    p = with_config(lists.add_parser("import", help="load or replace a list from CSV, in one transaction"))
    p.add_argument("name")
    p.add_argument("file", metavar="FILE.csv")
    p.set_defaults(func=cmd_list_import)
    p = with_config(lists.add_parser("show", help="every list, or one list's summary or entries"))
    p.add_argument("name", nargs="?")
    p.add_argument("--entries", action="store_true", help="print the list's entries as CSV")
    p.set_defaults(func=cmd_list_show)
    p = with_config(lists.add_parser("remove", help="remove a list"))
    p.add_argument("name")
    p.set_defaults(func=cmd_list_remove)

    config = sub.add_parser("config", help="config files").add_subparsers(
        dest="config_command", required=True, metavar="ACTION")
    p = config.add_parser("check", help="validate a config file")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--lists", action="store_true", help="also show the consulted lists, and warn of each one "
                   "named in [decision] lists that is not on this device")
    p.add_argument("--strict", action="store_true", help="with --lists: a missing list is a failure (exit 1)")
    p.set_defaults(func=cmd_config_check)

    credential_cli.add_arguments(sub)  # `credential verify|show`

    ui = sub.add_parser("ui", help="the screens").add_subparsers(dest="ui_command", required=True, metavar="ACTION")
    p = ui.add_parser("hash-password", help="an argon2 hash of an officer's password, for [ui] officers")
    passwords.add_arguments(p)
    p.set_defaults(func=passwords.run)

    p = sub.add_parser("doctor", help="check that this machine can run the configured appliance")
    doctor.add_arguments(p)  # adds --config itself
    p.set_defaults(func=doctor.run)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        return command(args)
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        status = exit_status(exc)
        if status is None:
            raise  # not ours: a bug, and its traceback says where
        print(f"checkpoint: {message_of(exc)}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
