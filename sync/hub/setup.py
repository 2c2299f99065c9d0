"""One machine's hub: `checkpoint-hub init` (broker config, TLS, credentials, signing key, hub.toml) and
`device add` (a device's certificate, CA and config lines); hub.toml read as every command's defaults."""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import tomllib
from pathlib import Path

from sync.hub import admin
from sync.hub.common import as_dict
from sync.hub.errors import HubError, HubUsageError
from sync.hub.hubdb import HubDB


def add_arguments(sub) -> None:
    p = sub.add_parser("init", help="set up a hub on this machine: broker config, TLS, credentials, signing key")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--host", default=socket.gethostname(), help="the name devices reach the broker by")
    p.add_argument("--port", type=int, default=8883, help="the devices' TLS port (default 8883)")
    p.add_argument("--local-port", type=int, default=1883, help="hub services' port on 127.0.0.1 (default 1883)")
    p.set_defaults(func=cmd_init)

    device = sub.add_parser("device", help="devices' credentials").add_subparsers(dest="action", required=True)
    p = device.add_parser("add", help="a device's certificate, CA and config lines; its groups in the ACL")
    p.add_argument("device", metavar="DEVICE")
    p.add_argument("--group", action="append", default=[], help="a group it reads (repeat for more)")
    p.add_argument("--install-dir", default="/etc/checkpoint/mqtt",
                   help="where the files go on the device (default /etc/checkpoint/mqtt)")
    p.set_defaults(func=cmd_device_add)



CREDENTIALS_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mqtt-credentials"
HUB_FILE = "hub.toml"
# Which hub.toml sections give defaults to which commands: the top level to every one, [collect] to the
# collector, [admin] to the commands that sign and publish. An option on the command line still wins.
SECTIONS = {"collect": ("collect",), "config": ("admin",), "list": ("admin",), "trust": ("admin",)}
NO_HUB_DEFAULTS = {"init", "device", "keygen", "hashkey", "pass"}  # their --host, --port, --key mean other things
HUB_KEYS = {"db", "host", "port", "tls", "ca_file", "cert_file", "key_file", "username", "password_file",
            "topic_prefix", "key", "state", "share_group", "client_id", "wait"}


def _credentials(*argv: str) -> str:
    """scripts/mqtt-credentials, which makes the fleet's CA, certificates and passwords: its last line."""
    if not CREDENTIALS_SCRIPT.exists():
        raise HubError(f"{CREDENTIALS_SCRIPT} is missing (it ships with the source tree)")
    done = subprocess.run([str(CREDENTIALS_SCRIPT), *argv], capture_output=True, text=True)
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise HubUsageError(message[0].removeprefix("mqtt-credentials: "))
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def _toml_text(value) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) \
        else str(value)


def _toml_lines(table: dict) -> list[str]:
    return [f"{k} = {_toml_text(v) if not isinstance(v, list) else '[' + ', '.join(map(_toml_text, v)) + ']'}"
            for k, v in table.items()]


MOSQUITTO_CONF = """# Mosquitto 2.x for this checkpoint hub, made by `checkpoint-hub init`.
# Run it with mosquitto -c {conf} (or copy it to /etc/mosquitto/conf.d/).
# Devices connect with TLS client certificates on {port}; the collector and the admin commands on this
# machine connect with passwords on 127.0.0.1:{local_port}.
per_listener_settings false
persistence true
persistence_location {dir}/mosquitto/
autosave_interval 30
max_inflight_messages 20
max_queued_messages 100000
message_size_limit 33554432

listener {port}
cafile {dir}/tls/ca.crt
certfile {dir}/tls/server.crt
keyfile {dir}/tls/server.key
require_certificate true
use_identity_as_username true

listener {local_port} 127.0.0.1

allow_anonymous false
password_file {dir}/passwd
# A device's groups are added by `checkpoint-hub device add`: reload the broker then (SIGHUP).
acl_file {dir}/acl
"""


def _files(command):
    """A folder or file that cannot be written (permissions, a full disk) is the work failing: one line."""
    def run(args) -> int:
        try:
            return command(args)
        except OSError as exc:
            raise HubError(f"{getattr(exc, 'filename', None) or ''}: {exc.strerror or exc}".lstrip(": ")) from exc
    return run


@_files
def cmd_init(args) -> int:
    folder = Path(args.dir).resolve()
    if (folder / HUB_FILE).exists():
        raise HubUsageError(f"{folder / HUB_FILE} exists; refusing to replace a hub's set-up")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mosquitto").mkdir(exist_ok=True)
    _credentials("ca", str(folder / "tls"))
    _credentials("server", str(folder / "tls"), args.host)
    (folder / "acl").write_text((Path(__file__).resolve().parents[2] / "config" / "mosquitto" / "acl")
                                .read_text())
    for user in ("hub-collector", "hub-admin"):
        _credentials("password", str(folder / "passwd"), user, str(folder / "credentials"), "127.0.0.1",
                     str(args.local_port))
    public = admin.keygen(folder / "admin.key")
    conf = folder / "mosquitto.conf"
    conf.write_text(MOSQUITTO_CONF.format(conf=conf, dir=folder, port=args.port, local_port=args.local_port))
    hub = {"db": str(folder / "hub.db"), "host": "127.0.0.1", "port": args.local_port,
           "topic_prefix": "checkpoint"}
    device = {"host": args.host, "port": args.port, "public_key": public}
    lines = ["# Made by `checkpoint-hub init`; read by every checkpoint-hub command (--hub FILE, or the",
             "# CHECKPOINT_HUB environment variable, or ./hub.toml). Options given on a command line win.",
             *_toml_lines(hub), "", "[collect]",
             *_toml_lines({"username": "hub-collector",
                           "password_file": str(folder / "credentials" / "hub-collector" / "password")}),
             "", "[admin]",
             *_toml_lines({"username": "hub-admin",
                           "password_file": str(folder / "credentials" / "hub-admin" / "password"),
                           "key": str(folder / "admin.key"), "state": str(folder / "hub-state")}),
             "", "# What `device add` writes into each device's config", "[device]", *_toml_lines(device), ""]
    (folder / HUB_FILE).write_text("\n".join(lines))
    HubDB(hub["db"]).close()  # the read commands work at once, before the collector first runs
    print(f"hub set up in {folder}:\n"
          f"  broker:    mosquitto -c {conf}   (devices on port {args.port}, hub services on 127.0.0.1:"
          f"{args.local_port})\n"
          f"  collector: checkpoint-hub collect --hub {folder / HUB_FILE}\n"
          f"  a device:  checkpoint-hub device add cp-01 --group ward-3 --hub {folder / HUB_FILE}")
    return 0


@_files
def cmd_device_add(args) -> int:
    hub_file = Path(getattr(args, "hub", None) or os.environ.get("CHECKPOINT_HUB") or HUB_FILE).resolve()
    folder = hub_file.parent
    settings = _read_hub(hub_file).get("device")
    if not isinstance(settings, dict) or not {"host", "port", "public_key"} <= settings.keys():
        raise HubUsageError(f"{hub_file}: no [device] host, port and public_key (made by checkpoint-hub init)")
    out = Path(_credentials("device-cert", str(folder / "tls"), args.device, str(settings["host"]),
                            str(settings["port"])))
    _credentials("groups", str(folder / "acl"), args.device, *args.group)
    installed = args.install_dir.rstrip("/") if args.install_dir else str(out)
    sync = {"enabled": True, "host": settings["host"], "port": settings["port"], "tls": True,
            "ca_file": f"{installed}/ca.crt", "cert_file": f"{installed}/{args.device}.crt",
            "key_file": f"{installed}/{args.device}.key"}
    remote = {"enabled": True, "trusted_keys": [settings["public_key"]], "groups": list(args.group)}
    text = "\n".join(["[sync]", *_toml_lines(sync), "", "[remote]", *_toml_lines(remote), ""])
    (out / "sync.toml").write_text(text)
    print(f"# {args.device}: copy {out}/ to the device's {installed}/ (the key stays private), then put these\n"
          f"# lines into its config ([device] id = \"{args.device}\"); reload the broker for its groups: "
          f"kill -HUP $(pidof mosquitto)\n{text}", end="")
    return 0


def _read_hub(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise HubUsageError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise HubUsageError(f"{path}: not valid TOML: {exc}") from None


def _hub_file(argv: list[str]) -> tuple[Path, bool]:
    """The hub.toml to read and whether it was asked for (--hub or CHECKPOINT_HUB: then it must exist)."""
    for i, arg in enumerate(argv):
        if arg == "--hub" and i + 1 < len(argv):
            return Path(argv[i + 1]), True
        if arg.startswith("--hub="):
            return Path(arg.split("=", 1)[1]), True
    if os.environ.get("CHECKPOINT_HUB"):
        return Path(os.environ["CHECKPOINT_HUB"]), True
    return Path(HUB_FILE), False


def apply_hub(top: argparse.ArgumentParser, argv: list[str]) -> None:
    """hub.toml's settings become the defaults of the commands that take them."""
    path, asked = _hub_file(argv)
    if not asked and not path.exists():
        return
    settings = _read_hub(path)
    base = {k: v for k, v in settings.items() if k in HUB_KEYS}
    for name, sub in _commands(top):
        if name.split()[0] in NO_HUB_DEFAULTS:
            continue
        values = dict(base)
        for section in SECTIONS.get(name.split()[0], ()):
            values.update({k: v for k, v in as_dict(settings.get(section)).items() if k in HUB_KEYS})
        known = {a.dest for a in sub._actions}
        sub.set_defaults(**{k: v for k, v in values.items() if k in known})
        for action in sub._actions:  # a required option that hub.toml gives need not be typed
            if action.dest in values and action.option_strings:
                action.required = False


def _commands(p: argparse.ArgumentParser, prefix: str = ""):
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (prefix + name).strip(), sub
                yield from _commands(sub, prefix + name + " ")


def hub_option_everywhere(top: argparse.ArgumentParser) -> None:
    for _, sub in _commands(top):
        if not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
            # SUPPRESS: a command that was not given --hub leaves the top level's value alone
            sub.add_argument("--hub", metavar="FILE", default=argparse.SUPPRESS, help="the hub's settings file")

