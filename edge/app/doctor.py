"""`checkpoint doctor`: whether this machine can run the configured appliance, one line per check.

Each line is OK, WARN or FAIL, and a line that is not OK says the fix ("add checkpoint to group video").
The exit status is 1 when a required part fails (the camera or scanner, a pin, the database directory, the
broker when sync is on), 2 when the config cannot be read, else 0.

What root may do tells nothing about what the service may do: run it as the service user (`--as-user
checkpoint`), or inside the unit's own sandbox (`--sandbox /etc/systemd/system/checkpoint.service`, which
runs it through systemd-run with the unit's user, groups and DeviceAllow=), as scripts/install does.
The camera and the pins are opened through the project's own drivers, so stop checkpoint.service first:
a camera or a pin held by the running daemon is reported busy.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from edge.app.checks.access import AccessChecks
from edge.app.checks.base import Check
from edge.app.checks.devices import DeviceChecks
from edge.app.checks.services import ServiceChecks
from edge.app.sandbox import INSIDE, as_user_command, sandbox_command
from edge.app.sandbox import unit_properties as unit_properties  # re-exported: the tests read units through it
from edge.settings.schema import ConfigError


class Doctor(AccessChecks, DeviceChecks, ServiceChecks):
    """Every check, in the order the report lists them (edge/app/checks/ has them by area)."""

    def run(self) -> list[Check]:
        return (self.check_user() + self.check_source() + self.check_outputs() + self.check_store()
                + self.check_broker() + self.check_clock() + self.check_lists())


def _forwarded(args: argparse.Namespace) -> list[str]:
    argv = ["--config", str(args.config), "--dev-root", str(args.dev_root), "--timeout", str(args.timeout)]
    return [sys.executable, "-m", "edge.app.doctor", *argv]


def _rerun(args: argparse.Namespace) -> int | None:
    """Run again as the service (sandbox) or user; None: run here."""
    if os.environ.get(INSIDE) or not (args.sandbox or args.as_user):
        return None
    import subprocess

    argv = _forwarded(args)
    if args.sandbox and Path("/run/systemd/system").is_dir() and shutil.which("systemd-run"):
        try:
            command = sandbox_command(Path(args.sandbox).read_text(encoding="utf-8"), argv)
        except OSError as exc:
            print(f"checkpoint doctor: {args.sandbox}: {exc.strerror}", file=sys.stderr)
            return 2
    else:
        user = args.as_user or "checkpoint"
        if args.sandbox:
            print("note: systemd is not running here; checking as the user only, without the unit's sandbox")
        if os.geteuid() != 0:
            print("checkpoint doctor: --as-user needs root (sudo)", file=sys.stderr)
            return 2
        command = as_user_command(user, argv)
    return subprocess.run(command).returncode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=os.environ.get("CHECKPOINT_CONFIG", "/etc/checkpoint/checkpoint.toml"),
                        metavar="FILE", help="config file (default /etc/checkpoint/checkpoint.toml)")
    parser.add_argument("--as-user", metavar="USER", help="run the checks as USER (needs root): e.g. checkpoint")
    parser.add_argument("--sandbox", metavar="UNIT", help="run the checks inside this unit file's sandbox via "
                        "systemd-run, e.g. /etc/systemd/system/checkpoint.service (needs root)")
    parser.add_argument("--dev-root", default="/", metavar="DIR", help="look for device nodes under DIR/dev")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S",
                        help="how long to wait for a frame or the broker (default 10)")


def run(args: argparse.Namespace) -> int:
    again = _rerun(args)
    if again is not None:
        return again
    from edge.settings.layers import load_settings

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"FAIL config: {exc}; fix: checkpoint config check {args.config}")
        return 2
    print(f"OK   config: {args.config} (device {settings.device.id}, source {settings.source.type})")
    checks = Doctor(settings, dev_root=args.dev_root, timeout=args.timeout).run()
    for check in checks:
        print(check.line())
    failed = sum(c.level == "FAIL" for c in checks)
    warned = sum(c.level == "WARN" for c in checks)
    print(f"{failed} failed, {warned} warnings" + (": the appliance cannot work until the FAIL lines are fixed"
                                                 if failed else ""))
    sys.stdout.flush()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="checkpoint doctor", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
