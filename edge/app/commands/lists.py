"""`checkpoint list import|show|remove`: the lists cached on the device."""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from edge.app.commands.shared import open_lists, out, settings_of
from edge.app.errors import CommandFailed
from edge.common.clock import iso_ms
from edge.lists import ListError
from edge.settings.schema import os_reason


def cmd_list_import(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    store = open_lists(settings)
    try:
        with open(args.file, "rb") as fh:
            info = store.import_csv(args.name, fh, zone=settings.device.timezone,
                                    max_code_bytes=settings.decoder.max_payload_bytes, source=Path(args.file).name)
    except OSError as exc:
        raise CommandFailed(f"list import {args.name}: {args.file}: {os_reason(exc)}") from None
    except ListError as exc:
        raise CommandFailed(f"list import {args.name}: {args.file}: {exc}; the list is unchanged") from None
    out(f"list {info.name} v{info.version}: {info.count} entries imported")
    return 0


def cmd_list_show(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    store = open_lists(settings, readonly=True)
    if args.name is None:
        for each in store.infos():
            out(f"{each.name}\tv{each.version}\t{each.count} entries\timported {iso_ms(each.imported_ms)}")
        return 0
    info = store.info(args.name)
    if info is None:
        raise CommandFailed(f"no list named {args.name!r}")
    if not args.entries:
        hashed = f", codes hashed with key {info.hash_key}" if info.hash_key else ""
        out(f"{info.name} v{info.version}: {info.count} entries, imported {iso_ms(info.imported_ms)} "
            f"from {info.source}, sha256 {info.sha256}{hashed}")
        return 0
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["code", "action", "label", "valid_from", "valid_until"])
    for code, deny, label, valid_from, valid_until in store.entries(args.name):
        writer.writerow([code if isinstance(code, str) else "hmac:" + code.hex(), "deny" if deny else "allow",
                         label or "",
                         iso_ms(valid_from) if valid_from is not None else "",
                         iso_ms(valid_until) if valid_until is not None else ""])
    return 0


def cmd_list_remove(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if not open_lists(settings).remove(args.name):
        raise CommandFailed(f"no list named {args.name!r}")
    out(f"list {args.name} removed")
    return 0
