"""The hub's quick-start, followed end to end: `checkpoint-hub init`, the generated Mosquitto config run by a
real Mosquitto (TLS for devices, passwords and the shipped ACL for hub services), `collect` in the background
reading hub.toml, `device add`, a real daemon configured with the printed lines, and a push that reports back."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from sync.hub.cli import main

from .broker import MOSQUITTO, ROOT, free_port, wait_port
from .conftest import checkpoint_process
from .waiting import patience, wait_until


def hub_json(capsys, *argv) -> list[dict]:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_quick_start_init_broker_collector_device_and_a_push(tmp_path, make_config, capsys):
    hub_dir, port, local_port = tmp_path / "hub", free_port(), free_port()
    # 1. One command makes the broker's config, TLS, credentials, the signing key and hub.toml.
    assert main(["init", str(hub_dir), "--host", "localhost", "--port", str(port),
                 "--local-port", str(local_port)]) == 0
    hub_toml = hub_dir / "hub.toml"
    for made in ("mosquitto.conf", "acl", "passwd", "tls/ca.crt", "tls/server.crt", "admin.key",
                 "credentials/hub-collector/password", "credentials/hub-admin/password"):
        assert (hub_dir / made).exists(), made
    assert (hub_dir / "admin.key").stat().st_mode & 0o777 == 0o600
    assert main(["init", str(hub_dir)]) == 2  # never over an existing hub
    # 2. A device's credentials, its config lines and its group in the ACL.
    capsys.readouterr()
    bundle = hub_dir / "tls" / "devices" / "test-01"
    assert main(["device", "add", "test-01", "--group", "ward-3", "--install-dir", str(bundle),
                 "--hub", str(hub_toml)]) == 0
    lines = capsys.readouterr().out
    assert "[sync]" in lines and "[remote]" in lines and 'groups = ["ward-3"]' in lines
    assert "user test-01\ntopic read checkpoint/group/ward-3/config" in (hub_dir / "acl").read_text()
    for made in ("ca.crt", "test-01.crt", "test-01.key"):
        assert (bundle / made).exists(), made
    # 3. The broker with the generated config (as root here, so it reads the files init kept private).
    conf = tmp_path / "mosquitto-test.conf"
    conf.write_text((hub_dir / "mosquitto.conf").read_text() + f"\nuser root\nlog_dest file {tmp_path}/mq.log\n")
    broker = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    collect = daemon = None
    try:
        wait_port(port)
        wait_port(local_port)
        # 4. The collector reads everything from hub.toml.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "CHECKPOINT_HUB": str(hub_toml)}
        collect = subprocess.Popen([sys.executable, "-m", "sync.hub.cli", "collect"], cwd=ROOT, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # 5. A real daemon with the printed lines joins.
        fifo = tmp_path / "scanner.fifo"
        os.mkfifo(fifo)
        config = make_config(f'[source]\ntype = "lines"\npath = "{fifo}"\n', extra=lines)
        daemon = checkpoint_process("run", "--config", config)
        wait_until(lambda: [r["state"] for r in hub_json(capsys, "fleet", "--hub", str(hub_toml))] == ["online"],
                   what="the device online at the hub")
        # 6. A push to its group, waiting for the answer.
        (tmp_path / "c.toml").write_text('[decision]\nmode = "record"\n')
        capsys.readouterr()
        assert main(["config", "push", "--hub", str(hub_toml), "--to", "group:ward-3", str(tmp_path / "c.toml"),
                     "--wait", f"{patience(30):.0f}"]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == "test-01\taccepted"
        assert hub_json(capsys, "pushed", "--hub", str(hub_toml))[0]["target"] == "group:ward-3"
        wait_until(lambda: hub_json(capsys, "drift", "--hub", str(hub_toml)) == [], what="no drift")
    finally:
        for proc in (daemon, collect):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.communicate(timeout=patience(30))
        broker.terminate()
        broker.communicate(timeout=patience(10))


def test_hub_toml_gives_defaults_and_the_command_line_wins(tmp_path, capsys, monkeypatch):
    (tmp_path / "hub.toml").write_text(f'db = "{tmp_path / "from-toml.db"}"\n')
    from sync.hub.hubdb import HubDB

    for name in ("from-toml.db", "given.db"):
        HubDB(str(tmp_path / name)).close()
    monkeypatch.chdir(tmp_path)  # ./hub.toml, read when it exists
    assert main(["pushed"]) == 0
    monkeypatch.setenv("CHECKPOINT_HUB", str(tmp_path / "missing.toml"))
    assert main(["pushed"]) == 2  # asked for, so it must exist
    assert "missing.toml" in capsys.readouterr().err
    monkeypatch.delenv("CHECKPOINT_HUB")
    (tmp_path / "hub.toml").write_text('db = "/nonexistent/x.db"\n')
    assert main(["pushed", "--db", str(tmp_path / "given.db")]) == 0  # the command line wins
    (tmp_path / "hub.toml").write_text("db = [\n")
    assert main(["pushed"]) == 2
    assert "not valid TOML" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["all", "group", "a b", "../x", "hub-admin"])
def test_device_add_refuses_bad_names(tmp_path, capsys, name):
    assert main(["init", str(tmp_path / "hub"), "--host", "localhost"]) == 0
    acl = (tmp_path / "hub" / "acl").read_text()
    assert main(["device", "add", name, "--hub", str(tmp_path / "hub" / "hub.toml")]) == 2
    assert capsys.readouterr().err.startswith("checkpoint-hub: ")
    assert (tmp_path / "hub" / "acl").read_text() == acl
