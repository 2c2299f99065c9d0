"""The appliance's install: units that systemd accepts, files where they belong, data kept on uninstall."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT
from .waiting import patience

UNITS = ["checkpoint.service", "checkpoint-hub-collector.service"]


def install(stage: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DESTDIR": str(stage), "SYSTEM": "0", "PIP_ARGS": "--no-deps"}
    return subprocess.run([ROOT / "scripts" / "install", *args], env=env, capture_output=True, text=True,
                          timeout=patience(300))


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    stage = tmp_path_factory.mktemp("root")
    result = install(stage)
    assert result.returncode == 0, result.stderr
    return stage


def test_layout(stage):
    assert (stage / "opt/checkpoint/venv/bin/checkpoint").exists()
    assert (stage / "opt/checkpoint/venv/bin/checkpoint-hub").exists()
    assert (stage / "etc/checkpoint/checkpoint.toml").read_text() == (ROOT / "config/checkpoint.toml").read_text()
    assert oct((stage / "etc/checkpoint/credentials").stat().st_mode)[-3:] == "700"
    for unit in UNITS:
        assert (stage / "etc/systemd/system" / unit).exists()
    assert (stage / "etc/udev/rules.d/99-checkpoint.rules").exists()


def test_units_pass_systemd_analyze_verify(stage, tmp_path):
    # verify looks up what the units refer to (targets, /bin/kill, ExecStart) inside --root.
    root = tmp_path / "root"
    shutil.copytree(stage, root, symlinks=True)
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2("/usr/bin/kill", root / "usr/bin/kill")
    (root / "bin").symlink_to("usr/bin")
    result = subprocess.run(["systemd-analyze", "verify", f"--root={root}",
                             *[str(root / "etc/systemd/system" / unit) for unit in UNITS]],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result.stderr


def test_the_unit_says_what_the_appliance_needs():
    text = (ROOT / "systemd/checkpoint.service").read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "RestartPreventExitStatus=2",
                 "StartLimitBurst=", "User=checkpoint", "SupplementaryGroups=gpio video input dialout",
                 "ProtectSystem=strict", "ReadWritePaths=/var/lib/checkpoint", "NoNewPrivileges=yes",
                 "PrivateTmp=yes", "LoadCredential="):
        assert line in text, line


def test_reinstall_keeps_the_administrators_config_and_uninstall_keeps_data(tmp_path):
    stage = tmp_path / "root"
    assert install(stage).returncode == 0
    config = stage / "etc/checkpoint/checkpoint.toml"
    config.write_text("# mine\n")
    data = stage / "var/lib/checkpoint"
    data.mkdir(parents=True)
    (data / "entries.db").write_text("precious")
    assert install(stage).returncode == 0
    assert config.read_text() == "# mine\n"
    result = install(stage, "--uninstall")
    assert result.returncode == 0 and "kept" in result.stdout
    assert not (stage / "opt/checkpoint").exists() and not (stage / "etc/systemd/system/checkpoint.service").exists()
    assert (data / "entries.db").read_text() == "precious" and config.exists()
    assert install(stage, "--uninstall", "--purge").returncode == 0
    assert not data.exists() and not config.exists()
