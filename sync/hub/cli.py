"""`checkpoint-hub`: the hub side. `collect` stores every device's entries, status and acknowledgements;
`entries`, `gaps`, `devices`, `fleet`, `acks` and `rejected` read them back (read-only); `keygen`,
`hashkey`, `config push`, `list push` and `trust push` sign and publish what devices should run with;
`pass keygen|issue|issue-csv` make the appliance's own signed passes as printable QR codes. `init` sets a hub
up on one machine and `device add` a device's credentials; `pushed` and `drift` show what is pushed and who
differs from it; the pushes' `--wait` prints each device's answer. hub.toml gives every command its defaults.
Exit status: 0 done, 1 the work failed, 2 a wrong command line (edge.common.errors: our errors only; a bug
keeps its traceback).

This module is the argument parser and the dispatch; the commands live beside it: setup (init, device add,
hub.toml), collect, reads (entries, gaps, devices, rejected, fleet, pushed, drift, acks), pushes (keygen,
hashkey, config/list/trust push and --wait), passes, and dashboard/cli (serve)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from edge.common.errors import EXIT_USAGE, CheckpointError
from sync.hub import collect, passes, pushes, reads, setup
from sync.hub.dashboard import cli as dashboard_cli
from sync.hub.reads import drift  # noqa: F401 (kept importable: tests and callers use sync.hub.cli.drift)
from sync.hub.setup import HUB_FILE


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="checkpoint-hub", description=__doc__.splitlines()[0])
    top.add_argument("--hub", metavar="FILE", help="the hub's settings (default $CHECKPOINT_HUB, or ./hub.toml "
                     "when it exists); options given here win")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dashboard_cli.add_arguments(sub)  # `serve`: the fleet dashboard and /metrics (sync/hub/dashboard)
    for module in (setup, collect, reads, pushes, passes):
        module.add_arguments(sub)
    return top


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = parser()
    setup.hub_option_everywhere(top)
    try:
        setup.apply_hub(top, argv)
    except CheckpointError as exc:
        print(f"checkpoint-hub: {exc}", file=sys.stderr)
        return EXIT_USAGE
    args = top.parse_args(argv)
    if args.command == "device" and not getattr(args, "hub", None) and not os.environ.get("CHECKPOINT_HUB") \
            and not Path(HUB_FILE).exists():
        print(f"checkpoint-hub: device add needs the hub's settings: --hub DIR/{HUB_FILE}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except BrokenPipeError:
        return 0
    except CheckpointError as exc:
        # The broker unreachable or refusing says so: the work was not completed.
        print(f"checkpoint-hub: {exc}" + ("; not completed" if isinstance(exc, OSError) else ""), file=sys.stderr)
        return exc.exit_status


if __name__ == "__main__":
    sys.exit(main())
