"""What every check shares: a Check (one line of the doctor's report), device-node access, the settings."""
from __future__ import annotations

import glob
import grp
import logging
import os
import pwd
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.common.clock import wall_ms
from edge.rules.clocktrust import kernel_synchronised
from edge.settings.schema import Settings

SERVICE_USER = "checkpoint"
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


def ok(name: str, detail: str) -> Check:
    return Check(name, "OK", detail)


def current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def group_of(path: Path) -> str:
    try:
        gid = path.stat().st_gid
        return grp.getgrgid(gid).gr_name
    except (OSError, KeyError):
        return "?"


def node_problem(path: Path, write: bool) -> str | None:
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
    return f"no {'read/write' if write else 'read'} access to {path} ({owner}:{group_of(path)} " \
           f"{stat.S_IMODE(st.st_mode):04o})"


def nodes_check(name: str, paths: list[Path], *, write: bool, group: str, missing: str,
                 missing_fix: str) -> Check:
    if not paths:
        return Check(name, "FAIL", missing, missing_fix)
    problems = [p for p in (node_problem(path, write) for path in paths) if p]
    if problems:
        groups = sorted({group_of(path) for path in paths if node_problem(path, write)} - {"?", "root"}) or [group]
        user = current_user()
        fix = "; ".join(f"add {user} to group {g} (sudo usermod -aG {g} {user}; the unit gives it with "
                        f"SupplementaryGroups=)" for g in groups)
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        return Check(name, "FAIL", problems[0] + more, fix)
    return ok(name, f"{len(paths)} node{'s' if len(paths) > 1 else ''} {'read/write' if write else 'readable'} "
                     f"({', '.join(str(p) for p in paths[:4])}{', …' if len(paths) > 4 else ''})")


class Collect(logging.Handler):
    """The drivers say why a device is missing in the log; the doctor wants that sentence."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class Checker:
    """The settings and the machine the checks look at; each area's checks are a mixin of this."""

    def __init__(self, settings: Settings, *, dev_root: str | Path = "/", timeout: float = 10.0,
                 synchronised: Callable[[], bool | None] = kernel_synchronised, now_ms: Callable[[], int] = wall_ms,
                 service_user: str = SERVICE_USER):
        self.settings = settings
        self.service_user = service_user
        self.dev = Path(dev_root) / "dev"
        self.timeout = timeout
        self.synchronised = synchronised
        self.now_ms = now_ms

    def _glob(self, *patterns: str) -> list[Path]:
        return [Path(p) for pattern in patterns for p in sorted(glob.glob(str(self.dev / pattern)))]
