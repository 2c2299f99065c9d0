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
import glob
import grp
import logging
import os
import pwd
import shutil
import sqlite3
import stat
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edge.app.health import disk
from edge.common.clock import wall_ms
from edge.common.textsafe import for_log
from edge.rules.clocktrust import BUILD_DATE, BUILD_FLOOR_MS, kernel_synchronised
from edge.settings.schema import ConfigError, Settings

SERVICE_USER = "checkpoint"
INSIDE = "CHECKPOINT_DOCTOR_INSIDE"  # set on the re-run as the service user, so it does not re-run again
CAMERA_FIX = ("enable the camera: check the ribbon cable, keep camera_auto_detect=1 in /boot/firmware/config.txt "
              "(or add dtoverlay=imx708 for a Camera Module 3), reboot; `rpicam-hello --list-cameras` must list it")
BUSY_HINT = "if checkpoint.service is running it holds the device: sudo systemctl stop checkpoint, then run again"


@dataclass(frozen=True)
class Check:
    name: str
    level: str  # OK, WARN or FAIL
    detail: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{self.level:<4} {self.name}: {self.detail}"
        return text + (f"; fix: {self.fix}" if self.fix and self.level != "OK" else "")


def _ok(name, detail):
    return Check(name, "OK", detail)


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _group_of(path: Path) -> str:
    try:
        gid = path.stat().st_gid
        return grp.getgrgid(gid).gr_name
    except (OSError, KeyError):
        return "?"


def _node_problem(path: Path, write: bool) -> str | None:
    """Why this process cannot open a device node as the driver does, or None."""
    mode = os.R_OK | (os.W_OK if write else 0)
    if os.access(path, mode):
        return None
    try:
        st = path.stat()
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    return f"no {'read/write' if write else 'read'} access to {path} ({owner}:{_group_of(path)} " \
           f"{stat.S_IMODE(st.st_mode):04o})"


def _nodes_check(name: str, paths: list[Path], *, write: bool, group: str, missing: str,
                 missing_fix: str) -> Check:
    if not paths:
        return Check(name, "FAIL", missing, missing_fix)
    problems = [p for p in (_node_problem(path, write) for path in paths) if p]
    if problems:
        groups = sorted({_group_of(path) for path in paths if _node_problem(path, write)} - {"?", "root"}) or [group]
        user = _user()
        fix = "; ".join(f"add {user} to group {g} (sudo usermod -aG {g} {user}; the unit gives it with "
                        f"SupplementaryGroups=)" for g in groups)
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        return Check(name, "FAIL", problems[0] + more, fix)
    return _ok(name, f"{len(paths)} node{'s' if len(paths) > 1 else ''} {'read/write' if write else 'readable'} "
                     f"({', '.join(str(p) for p in paths[:4])}{', …' if len(paths) > 4 else ''})")


class _Collect(logging.Handler):
    """The drivers say why a device is missing in the log; the doctor wants that sentence."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


class Doctor:
    def __init__(self, settings: Settings, *, dev_root: str | Path = "/", timeout: float = 10.0,
                 synchronised=kernel_synchronised, now_ms=wall_ms, service_user: str = SERVICE_USER):
        self.settings = settings
        self.service_user = service_user
        self.dev = Path(dev_root) / "dev"
        self.timeout = timeout
        self.synchronised = synchronised
        self.now_ms = now_ms

    def _glob(self, *patterns: str) -> list[Path]:
        return [Path(p) for pattern in patterns for p in sorted(glob.glob(str(self.dev / pattern)))]

    # ---- who -----------------------------------------------------------------------------------
    def needed_groups(self) -> list[str]:
        kind = self.settings.source.type
        groups = {"picamera2": ["video"], "hid": ["input"], "serial": ["dialout"]}.get(kind, [])
        if kind == "opencv" and (isinstance(self.settings.source.device, int)
                                 or str(self.settings.source.device).startswith("/dev/")):
            groups = ["video"]
        if any(o.driver == "gpio" for o in self.settings.outputs.values()):
            groups.append("gpio")
        return groups

    def check_user(self) -> list[Check]:
        user = _user()
        if os.geteuid() == 0:
            checks = [Check("user", "WARN", "running as root: root reaches every device, the service does not",
                            "run as the service user: sudo checkpoint doctor --as-user checkpoint")]
            return checks + self._account_groups(self.service_user)
        checks = [_ok("user", f"running as {user}")]
        mine = set(os.getgroups()) | {os.getegid()}
        for group in self.needed_groups():
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                checks.append(Check(f"group {group}", "WARN", f"no group {group} on this system",
                                    "scripts/install creates it (groupadd --system " + group + ")"))
                continue
            if gid in mine:
                checks.append(_ok(f"group {group}", f"{user} is in group {group}"))
            else:
                checks.append(Check(f"group {group}", "WARN", f"{user} is not in group {group}",
                                    f"add {user} to group {group}: sudo usermod -aG {group} {user}"))
        return checks

    def _account_groups(self, user: str) -> list[Check]:
        """As root: whether the service's account is in the groups, as /etc/group says."""
        try:
            primary = pwd.getpwnam(user).pw_gid
        except KeyError:
            return [Check("service user", "WARN", f"no user {user} on this system",
                          "sudo make install creates it (scripts/install)")]
        checks = []
        for group in self.needed_groups():
            try:
                entry = grp.getgrnam(group)
            except KeyError:
                checks.append(Check(f"group {group}", "WARN", f"no group {group} on this system",
                                    "scripts/install creates it (groupadd --system " + group + ")"))
                continue
            if user in entry.gr_mem or entry.gr_gid == primary:
                checks.append(_ok(f"group {group}", f"{user} is in group {group}"))
            else:
                checks.append(Check(f"group {group}", "WARN", f"{user} is not in group {group}",
                                    f"add {user} to group {group}: sudo usermod -aG {group} {user}"))
        return checks

    # ---- the source ----------------------------------------------------------------------------
    def check_source(self) -> list[Check]:
        source = self.settings.source
        kind = source.type
        if kind == "picamera2":
            return self._picamera(source)
        if kind == "opencv":
            return self._opencv(source)
        if kind == "hid":
            return self._hid(source)
        if kind == "serial":
            return self._serial(source)
        return [_ok("source", f"{kind}: no device to check")]

    def _picamera(self, source) -> list[Check]:
        checks = [
            _nodes_check("camera nodes", self._glob("media*", "video*", "v4l-subdev*"), write=True, group="video",
                         missing=f"no camera: no {self.dev}/media* device", missing_fix=CAMERA_FIX),
            _nodes_check("dma_heap", self._glob("dma_heap/*"), write=True, group="video",
                         missing=f"no {self.dev}/dma_heap/*: libcamera allocates its frame buffers there",
                         missing_fix="run Raspberry Pi OS bookworm or later with its kernel (sudo apt full-upgrade)"),
        ]
        if any(c.level == "FAIL" for c in checks):
            return checks  # libcamera would only fail the same way, less clearly
        from drivers.sources.picamera import PiCameraReader

        reader = PiCameraReader(camera=source.camera, width=source.width, height=source.height, fps=source.fps,
                                autofocus=source.autofocus, lens_position=source.lens_position,
                                exposure_value=source.exposure_value)
        return checks + [self._frame(reader, f"Pi camera {source.camera}",
                                     "sudo apt install python3-picamera2 python3-libcamera; the venv needs "
                                     "--system-site-packages (scripts/install does both); " + BUSY_HINT)]

    def _opencv(self, source) -> list[Check]:
        from drivers.sources.frames import CaptureReader

        checks = []
        device = source.device
        if isinstance(device, int) or str(device).startswith("/dev/"):
            path = Path(f"/dev/video{device}" if isinstance(device, int) else device)
            node = self.dev / path.relative_to("/dev")
            checks.append(_nodes_check("camera node", [node] if node.exists() else [], write=True, group="video",
                                       missing=f"no {node}", missing_fix="plug in the USB camera; `ls /dev/video*` "
                                       "lists the cameras; set [source] device"))
            if checks[-1].level == "FAIL":
                return checks
        reader = CaptureReader(device, width=source.width, height=source.height, fps=source.fps)
        return checks + [self._frame(reader, f"camera {device}", BUSY_HINT)]

    def _frame(self, reader, label: str, fix: str) -> Check:
        """Open through the driver and wait for one frame."""
        from drivers.sources.base import SourceError

        try:
            reader.open()
            deadline = time.monotonic() + self.timeout
            image = None
            while image is None and time.monotonic() < deadline:
                image = reader.read()
        except SourceError as exc:
            return Check("camera", "FAIL", for_log(exc), fix)
        finally:
            reader.close()
        if image is None:
            return Check("camera", "FAIL", f"{label} opened but delivered no frame within {self.timeout:g} s", fix)
        return _ok("camera", f"{label} delivered a {image.shape[1]}x{image.shape[0]} frame")

    def _text_source(self, name: str, source, path: str | None, write: bool, group: str, fix: str) -> list[Check]:
        from drivers.sources import SourceError, open_source

        checks = []
        if path is not None:
            node = Path(path)
            checks.append(_nodes_check(f"{name} node", [node] if node.exists() else [], write=write, group=group,
                                       missing=f"no {node}", missing_fix=fix))
            if checks[-1].level == "FAIL":
                return checks
        collect = _Collect()
        log = logging.getLogger("checkpoint.source")
        log.addHandler(collect)
        try:
            opened = open_source(source, max_line=self.settings.decoder.max_payload_bytes + 1)
            opened.start()
            state = opened.stats.state
            opened.close()
        except SourceError as exc:
            return checks + [Check(name, "FAIL", for_log(exc), fix)]
        finally:
            log.removeHandler(collect)
        if state != "ok":
            why = collect.messages[0] if collect.messages else f"state {state}"
            return checks + [Check(name, "FAIL", for_log(why), fix + "; " + BUSY_HINT)]
        return checks + [_ok(name, f"{opened.name} opened")]

    def _hid(self, source) -> list[Check]:
        fix = ("plug in the scanner in keyboard (HID) mode; the udev rule names known scanners "
               "/dev/input/checkpoint-scanner; `ls -l /dev/input/by-id/` shows the others")
        checks = []
        if source.device is None:
            checks.append(_nodes_check("input nodes", self._glob("input/event*"), write=False, group="input",
                                       missing=f"no {self.dev}/input/event*", missing_fix=fix))
        return checks + self._text_source("scanner", source, source.device, False, "input",
                                          fix + "; python3-evdev must be installed (scripts/install does it)")

    def _serial(self, source) -> list[Check]:
        fix = ("plug in the scanner in serial (USB CDC) mode; the udev rule names known scanners "
               "/dev/checkpoint-scanner-serial; `ls /dev/ttyACM* /dev/ttyUSB*` shows the others")
        return self._text_source("scanner", source, source.port, True, "dialout", fix)

    # ---- outputs -------------------------------------------------------------------------------
    def check_outputs(self) -> list[Check]:
        gpio = {name: o for name, o in self.settings.outputs.items() if o.driver == "gpio"}
        if not gpio:
            return [_ok("outputs", "no GPIO outputs configured")]
        checks = [_nodes_check("gpio nodes", self._glob("gpiochip*", "gpiomem*"), write=True, group="gpio",
                               missing=f"no {self.dev}/gpiochip* or {self.dev}/gpiomem: no GPIO on this machine",
                               missing_fix="run on a Raspberry Pi, or use driver = \"console\" in [outputs]")]
        if checks[0].level == "FAIL":
            return checks
        from drivers.outputs import OutputError, open_output

        for name, settings in gpio.items():
            polarity = "active-low" if settings.active_low else "active-high"
            try:
                output = open_output(name, settings)
                output.close()  # left driven off: a relay board never sees a floating pin
            except OutputError as exc:
                checks.append(Check(f"pin {name}", "FAIL", for_log(exc),
                                    "on a Pi 5: sudo apt install python3-rpi-lgpio; earlier boards: python3-rpi.gpio "
                                    "(scripts/install picks it); " + BUSY_HINT))
                continue
            checks.append(_ok(f"pin {name}", f"BCM {settings.pin} claimed and driven off ({polarity})"))
        return checks

    # ---- store, broker, clock, lists -----------------------------------------------------------
    def check_store(self) -> list[Check]:
        folder = Path(self.settings.store.dir)
        user = _user()
        fix = (f"sudo install -d -o {user} -g {user} -m 0750 {folder} (the unit's StateDirectory= makes it "
               "for the service)")
        if not folder.is_dir():
            return [Check("database directory", "FAIL", f"{folder} does not exist", fix)]
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
                pass
        except OSError as exc:
            return [Check("database directory", "FAIL", f"{folder} is not writable: {exc.strerror}",
                          f"sudo chown -R {user}: {folder}")]
        checks = [_ok("database directory", f"{folder} is writable")]
        space = disk(folder)
        if "error" not in space and (space["free_mb"] < self.settings.store.disk_warn_mb
                                     or space["free_percent"] < self.settings.store.disk_warn_percent):
            checks.append(Check("disk", "WARN", f"{space['free_mb']} MiB ({space['free_percent']} %) free",
                                "free space on the SD card (old logs: sudo journalctl --vacuum-size=100M)"))
        return checks

    def check_broker(self) -> list[Check]:
        sync = self.settings.sync
        if not sync.enabled:
            return [_ok("broker", "sync is off")]
        from sync.wire.mqtt import SyncConfigError, make_client

        where = f"{sync.host}:{sync.port}"
        # Its own client id: connecting with the device's id would throw the running daemon off the broker.
        try:
            client = make_client(client_id=f"{self.settings.device.id}-doctor",
                                 username=sync.username or self.settings.device.id, password_file=sync.password_file,
                                 tls=sync.tls, ca_file=sync.ca_file, cert_file=sync.cert_file, key_file=sync.key_file)
        except SyncConfigError as exc:
            return [Check("broker", "FAIL", for_log(exc), "scripts/mqtt-credentials makes the device's files; "
                          "check the paths in [sync]")]
        answered = threading.Event()
        result = {}

        def on_connect(client, userdata, flags, reason_code, properties):
            result["reason"] = reason_code
            answered.set()

        client.on_connect = on_connect
        try:
            client.connect(sync.host, sync.port, keepalive=10)
        except (OSError, ValueError) as exc:
            return [Check("broker", "FAIL", f"{where}: {for_log(getattr(exc, 'strerror', None) or exc)}",
                          "is the hub's broker running and reachable from here (network, firewall, [sync] host/port)?")]
        client.loop_start()
        try:
            if not answered.wait(self.timeout):
                return [Check("broker", "FAIL", f"{where} did not answer within {self.timeout:g} s",
                              "check the network, and tls = true only on the broker's TLS port")]
        finally:
            client.disconnect()
            client.loop_stop()
        reason = result["reason"]
        if reason.is_failure:
            return [Check("broker", "FAIL", f"{where} refused the connection: {reason}",
                          "the device's certificate or password (scripts/mqtt-credentials) and the broker's ACL")]
        return [_ok("broker", f"{where} accepted the device{' over TLS' if sync.tls else ''}")]

    def check_clock(self) -> list[Check]:
        now = self.now_ms()
        if now < BUILD_FLOOR_MS:
            return [Check("clock", "FAIL", f"the clock says {time.strftime('%Y-%m-%d', time.gmtime(now / 1000))}, "
                          f"before this software was made ({BUILD_DATE})",
                          "let NTP set it (timedatectl set-ntp true) or set it by hand: sudo date -s 'YYYY-MM-DD HH:MM'")]
        synced = self.synchronised()
        level = "FAIL" if self.settings.clock.require_sync else "WARN"
        fix = ("sudo timedatectl set-ntp true, and let the checkpoint reach an NTP server (a Pi has no "
               "battery clock)")
        if synced is None:
            return [Check("clock", level, "cannot tell whether a time source disciplines the clock", fix)]
        if not synced:
            return [Check("clock", level, "not synchronised by any time source", fix)]
        return [_ok("clock", "synchronised")]

    def check_lists(self) -> list[Check]:
        from edge.lists import ListStore
        from edge.rules.policy import stale_lists

        decision = self.settings.decision
        path = self.settings.store.lists_path
        fix = "checkpoint list import NAME FILE.csv, or push lists from the hub (checkpoint-hub list push)"
        if not path.exists():
            level = "WARN" if decision.mode == "allowlist" else "OK"
            return [Check("lists", level, f"no lists yet ({path})"
                          + (": in allowlist mode every code is refused" if level == "WARN" else ""), fix)]
        try:
            store = ListStore(path, readonly=True)
            try:
                infos = [i for i in store.infos() if decision.consults(i.name)]
            finally:
                store.close()
        except sqlite3.Error as exc:
            return [Check("lists", "FAIL", f"{path} is unreadable: {for_log(exc)}",
                          "restore it from the hub (checkpoint-hub list push) or remove it and import again")]
        if not infos:
            level = "WARN" if decision.mode == "allowlist" else "OK"
            return [Check("lists", level, "no list consulted by [decision]", fix)]
        stale = stale_lists(decision, infos, self.now_ms())
        if stale:
            return [Check("lists", "WARN", f"stale: {', '.join(for_log(n) for n in stale)} "
                          f"(policy {decision.stale_lists})", fix)]
        return [_ok("lists", ", ".join(f"{for_log(i.name)} v{i.version} ({i.count} entries)" for i in infos))]

    def run(self) -> list[Check]:
        return (self.check_user() + self.check_source() + self.check_outputs() + self.check_store()
                + self.check_broker() + self.check_clock() + self.check_lists())


# ---- running as the service ---------------------------------------------------------------------
# The unit's settings that make the service's world: who it is and what it may reach.
SANDBOX_KEYS = {
    "User", "Group", "SupplementaryGroups", "DevicePolicy", "DeviceAllow", "NoNewPrivileges", "ProtectSystem",
    "ReadWritePaths", "ReadOnlyPaths", "PrivateTmp", "ProtectHome", "ProtectKernelTunables", "ProtectKernelModules",
    "ProtectKernelLogs", "ProtectControlGroups", "ProtectHostname", "ProtectClock", "ProtectProc", "PrivateIPC",
    "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality", "RestrictAddressFamilies",
    "SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber", "CapabilityBoundingSet", "UMask",
    "Environment", "LoadCredential", "StateDirectory", "StateDirectoryMode", "ConfigurationDirectory",
    "RemoveIPC", "PrivateDevices", "MemoryDenyWriteExecute",
}


def unit_properties(text: str) -> list[str]:
    """KEY=VALUE lines of a unit's [Service] section that set its sandbox, in order."""
    props, section = [], None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        key, sep, value = line.partition("=")
        if section == "[Service]" and sep and key.strip() in SANDBOX_KEYS:
            props.append(f"{key.strip()}={value.strip()}")
    return props


def _forwarded(args) -> list[str]:
    argv = ["--config", str(args.config), "--dev-root", str(args.dev_root), "--timeout", str(args.timeout)]
    return [sys.executable, "-m", "edge.app.doctor", *argv]


def sandbox_command(unit_text: str, argv: list[str]) -> list[str]:
    """systemd-run with the unit's user, groups and sandbox, running argv and waiting for its status."""
    props = [f"--property={p}" for p in unit_properties(unit_text)]
    return ["systemd-run", "--quiet", "--pipe", "--wait", "--collect", "--service-type=exec",
            f"--setenv={INSIDE}=1", *props, *argv]


def as_user_command(user: str, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", "env", f"{INSIDE}=1", *argv]


def _rerun(args) -> int | None:
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


def run(args) -> int:
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
