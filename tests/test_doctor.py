"""`checkpoint doctor`: every check failing and passing, with its message and its fix, against the fakes of
picamera2, RPi.GPIO and evdev, a real pty, a real Mosquitto, real SQLite and staged /dev trees."""
from __future__ import annotations

import argparse
import grp
import os
import pty
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from edge.app import doctor
from edge.common.clock import wall_ms
from edge.rules.clocktrust import BUILD_FLOOR_MS
from edge.settings.schema import parse_settings

from .conftest import FAKES, ROOT, cli_main
from .users import as_nobody
from .waiting import patience


def make_settings(tmp_path, source: dict, **tables):
    raw = {"source": source, "store": {"dir": str(tmp_path / "state")}, **tables}
    return parse_settings(raw)


def stage(root: Path, *nodes: str) -> Path:
    for node in nodes:
        path = root / "dev" / node
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return root


def by_name(checks, name):
    found = [c for c in checks if c.name == name]
    assert found, [c.line() for c in checks]
    return found[0]


PICAM = {"type": "picamera2", "width": 1280, "height": 720}
CAMERA_NODES = ("media0", "media1", "video0", "v4l-subdev0", "dma_heap/linux,cma", "dma_heap/vidbuf_cached")


# ---- camera ---------------------------------------------------------------------------------------------
def test_pi_camera_passes_with_its_nodes_and_a_frame(tmp_path, fake_module):
    fake_module("picamera2")
    checks = doctor.Doctor(make_settings(tmp_path, PICAM), dev_root=stage(tmp_path, *CAMERA_NODES)).check_source()
    assert [c.level for c in checks] == ["OK", "OK", "OK"], [c.line() for c in checks]
    assert by_name(checks, "camera").line() == "OK   camera: Pi camera 0 delivered a 1280x720 frame"
    assert "4 nodes read/write" in by_name(checks, "camera nodes").detail


def test_no_camera_says_how_to_enable_it(tmp_path, fake_module):
    fake_module("picamera2")
    checks = doctor.Doctor(make_settings(tmp_path, PICAM),
                           dev_root=stage(tmp_path, "dma_heap/linux,cma")).check_source()
    line = by_name(checks, "camera nodes").line()
    assert line.startswith("FAIL camera nodes: no camera: no ") and "enable the camera: " in line
    assert "camera_auto_detect=1" in line


def test_no_dma_heap_fails(tmp_path, fake_module):
    fake_module("picamera2")
    checks = doctor.Doctor(make_settings(tmp_path, PICAM), dev_root=stage(tmp_path, "media0", "video0")).check_source()
    assert by_name(checks, "dma_heap").level == "FAIL"
    assert "libcamera allocates its frame buffers there" in by_name(checks, "dma_heap").detail


def test_camera_that_libcamera_cannot_open(tmp_path, fake_module):
    picamera2 = fake_module("picamera2")
    picamera2.cameras = 0
    checks = doctor.Doctor(make_settings(tmp_path, PICAM), dev_root=stage(tmp_path, *CAMERA_NODES)).check_source()
    camera = by_name(checks, "camera")
    assert camera.level == "FAIL" and camera.detail == "Pi camera 0: list index out of range"
    assert "python3-picamera2" in camera.fix and "systemctl stop checkpoint" in camera.fix


def test_camera_that_delivers_nothing(tmp_path, fake_module):
    picamera2 = fake_module("picamera2")
    picamera2.fail_after = 0
    checks = doctor.Doctor(make_settings(tmp_path, PICAM), dev_root=stage(tmp_path, *CAMERA_NODES)).check_source()
    assert by_name(checks, "camera").detail == "Pi camera 0: Camera frontend has timed out!"


def test_opencv_camera_node_missing_and_video_file_passing(tmp_path):
    import cv2
    import numpy as np

    missing = doctor.Doctor(make_settings(tmp_path, {"type": "opencv", "device": "/dev/video9"}),
                            dev_root=stage(tmp_path / "root", "video0")).check_source()
    assert missing[0].level == "FAIL" and missing[0].detail.endswith("dev/video9")
    assert "plug in the USB camera" in missing[0].fix
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240), False)
    for _ in range(3):
        writer.write(np.full((240, 320), 128, np.uint8))
    writer.release()
    checks = doctor.Doctor(make_settings(tmp_path, {"type": "opencv", "device": str(video)})).check_source()
    assert [c.line() for c in checks] == [f"OK   camera: camera {video} delivered a 320x240 frame"]


# ---- scanners -------------------------------------------------------------------------------------------
def test_hid_scanner_passing_missing_and_grabbed(tmp_path, fake_module):
    evdev = fake_module("evdev")
    node = stage(tmp_path, "input/event7") / "dev/input/event7"
    device = evdev.add_device(str(node))
    settings = make_settings(tmp_path, {"type": "hid", "device": str(node)})
    checks = doctor.Doctor(settings).check_source()
    assert [c.level for c in checks] == ["OK", "OK"] and by_name(checks, "scanner").detail == f"hid:{node} opened"

    other = evdev.InputDevice(str(node))
    other.grab()  # another program holds it
    grabbed = by_name(doctor.Doctor(settings).check_source(), "scanner")
    assert grabbed.level == "FAIL" and "is grabbed by another program" in grabbed.detail
    other.ungrab()

    device.unplug()
    node.unlink()
    missing = doctor.Doctor(settings).check_source()
    assert missing[0].line().startswith(f"FAIL scanner node: no {node}; fix: plug in the scanner in keyboard")


def test_serial_scanner_on_a_real_pty_and_missing(tmp_path):
    master, slave = pty.openpty()
    try:
        port = os.ttyname(slave)
        checks = doctor.Doctor(make_settings(tmp_path, {"type": "serial", "port": port})).check_source()
        assert [c.level for c in checks] == ["OK", "OK"], [c.line() for c in checks]
        assert by_name(checks, "scanner").detail == f"serial:{port} opened"
    finally:
        os.close(master), os.close(slave)
    gone = doctor.Doctor(make_settings(tmp_path, {"type": "serial", "port": str(tmp_path / "ttyACM0")})).check_source()
    assert gone[0].level == "FAIL" and "/dev/checkpoint-scanner-serial" in gone[0].fix


# ---- GPIO -----------------------------------------------------------------------------------------------
OUTPUTS = {"green": {"driver": "gpio", "pin": 17}, "relay": {"driver": "gpio", "pin": 23, "active_low": True}}


@pytest.fixture
def fake_gpio(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKES))
    for name in ("RPi", "RPi.GPIO"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import RPi.GPIO as GPIO

    GPIO.reset()
    return GPIO


def test_gpio_pins_claimed_and_left_off(tmp_path, fake_gpio):
    settings = make_settings(tmp_path, {"type": "lines"}, outputs=OUTPUTS)
    checks = doctor.Doctor(settings, dev_root=stage(tmp_path, "gpiochip0", "gpiochip4")).check_outputs()
    assert [c.line() for c in checks][1:] == ["OK   pin green: BCM 17 claimed and driven off (active-high)",
                                              "OK   pin relay: BCM 23 claimed and driven off (active-low)"]
    assert fake_gpio.levels == {17: fake_gpio.LOW, 23: fake_gpio.HIGH}  # both off, whatever the polarity


def test_gpio_without_the_library_or_the_nodes(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "RPi", None)  # not installed, as on this machine without the fakes
    settings = make_settings(tmp_path, {"type": "lines"}, outputs=OUTPUTS)
    nodes = doctor.Doctor(settings, dev_root=tmp_path / "empty").check_outputs()
    assert nodes[0].level == "FAIL" and "no GPIO on this machine" in nodes[0].detail
    checks = doctor.Doctor(settings, dev_root=stage(tmp_path, "gpiochip0")).check_outputs()
    pin = by_name(checks, "pin green")
    assert pin.level == "FAIL" and "RPi.GPIO is not available" in pin.detail and "python3-rpi-lgpio" in pin.fix


# ---- store, clock, lists, broker ----------------------------------------------------------------------
def test_store_directory(tmp_path):
    settings = make_settings(tmp_path, {"type": "lines"})
    missing = doctor.Doctor(settings).check_store()
    assert missing[0].level == "FAIL" and "does not exist" in missing[0].detail and "StateDirectory=" in missing[0].fix
    (tmp_path / "state").mkdir()
    line = doctor.Doctor(settings).check_store()[0].line()
    assert line == f"OK   database directory: {tmp_path / 'state'} is writable"


@pytest.mark.parametrize("synced, level, words", [(True, "OK", "synchronised"),
                                                  (False, "WARN", "not synchronised by any time source"),
                                                  (None, "WARN", "cannot tell")])
def test_clock(tmp_path, synced, level, words):
    check = doctor.Doctor(make_settings(tmp_path, {"type": "lines"}), synchronised=lambda: synced).check_clock()[0]
    assert check.level == level and words in check.detail
    if level != "OK":
        assert "timedatectl set-ntp true" in check.fix


def test_clock_required_or_before_the_build(tmp_path):
    strict = make_settings(tmp_path, {"type": "lines"}, clock={"require_sync": True})
    assert doctor.Doctor(strict, synchronised=lambda: False).check_clock()[0].level == "FAIL"
    early = doctor.Doctor(strict, synchronised=lambda: True, now_ms=lambda: BUILD_FLOOR_MS - 86_400_000)
    check = early.check_clock()[0]
    assert check.level == "FAIL" and "before this software was made" in check.detail


def test_lists_missing_fresh_and_stale(tmp_path):
    settings = make_settings(tmp_path, {"type": "lines"}, decision={"list_max_age_h": 1.0})
    none = doctor.Doctor(settings).check_lists()[0]
    assert none.level == "WARN" and "every code is refused" in none.detail and "list import" in none.fix
    csv = tmp_path / "staff.csv"
    csv.write_text("code\nA-1\nA-2\n")
    config = tmp_path / "checkpoint.toml"
    config.write_text(f'[source]\ntype = "lines"\n[store]\ndir = "{tmp_path / "state"}"\n')
    assert cli_main(["list", "import", "staff", str(csv), "--config", str(config)]) == 0
    assert doctor.Doctor(settings).check_lists()[0].line() == "OK   lists: staff v1 (2 entries)"
    later = doctor.Doctor(settings, now_ms=lambda: wall_ms() + 2 * 3_600_000).check_lists()[0]
    assert later.level == "WARN" and later.detail == "stale: staff (policy keep)"


def test_broker_answering_and_not(tmp_path, broker):
    on = make_settings(tmp_path, {"type": "lines"}, sync={"enabled": True, "host": "127.0.0.1", "port": broker.port})
    assert doctor.Doctor(on).check_broker()[0].line() == f"OK   broker: 127.0.0.1:{broker.port} accepted the device"
    broker.stop()
    down = doctor.Doctor(on, timeout=patience(5)).check_broker()[0]
    assert down.level == "FAIL" and down.detail.startswith(f"127.0.0.1:{broker.port}: ")
    assert "reachable" in down.fix
    off = doctor.Doctor(make_settings(tmp_path, {"type": "lines"})).check_broker()[0]
    assert off.line() == "OK   broker: sync is off"


# ---- the command ----------------------------------------------------------------------------------------
def doctor_main(*argv) -> int:
    parser = argparse.ArgumentParser()
    doctor.add_arguments(parser)
    return doctor.run(parser.parse_args([str(a) for a in argv]))


def test_exit_status_and_one_line_per_check(tmp_path, capsys, fake_module):
    fake_module("picamera2")
    (tmp_path / "state").mkdir()
    config = tmp_path / "checkpoint.toml"
    config.write_text(f'[source]\ntype = "picamera2"\n[store]\ndir = "{tmp_path / "state"}"\n'
                      '[decision]\nmode = "record"\n')
    root = stage(tmp_path / "root", *CAMERA_NODES)
    assert doctor_main("--config", config, "--dev-root", root) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("OK   config: ") and out[-1].startswith("0 failed")
    assert all(line.split()[0] in ("OK", "WARN", "FAIL") for line in out[:-1])
    assert doctor_main("--config", config, "--dev-root", tmp_path / "nothing") == 1
    assert "FAIL camera nodes: no camera" in capsys.readouterr().out
    config.write_text("[source]\ntype = 'nonsense'\n")
    assert doctor_main("--config", config) == 2
    assert capsys.readouterr().out.startswith("FAIL config: ")


def test_as_an_unprivileged_user_the_missing_group_is_named(tmp_path, fake_module):
    """As root every node is open; the service user's view needs a real unprivileged process."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become user nobody")
    fake_module("picamera2")
    video = grp.getgrnam("video").gr_gid
    top = Path(tempfile.mkdtemp(prefix="checkpoint-doctor-"))  # pytest's tmp_path is private to root
    try:
        top.chmod(0o755)
        root = stage(top / "root", *CAMERA_NODES)
        for node in (root / "dev").rglob("*"):
            os.chown(node, 0, video)
            node.chmod(0o660 if node.is_file() else 0o755)
        (top / "state").mkdir(mode=0o755)  # root's: not writable by nobody
        settings = make_settings(top, PICAM)
        checker = doctor.Doctor(settings, dev_root=root)
        lines = as_nobody(lambda: [c.line() for c in checker.check_user() + checker.check_source()
                                   + checker.check_store()])
    finally:
        shutil.rmtree(top, ignore_errors=True)
    assert "OK   user: running as nobody" in lines
    assert "WARN group video: nobody is not in group video; fix: add nobody to group video: " \
           "sudo usermod -aG video nobody" in lines
    camera = next(line for line in lines if line.startswith("FAIL camera nodes: "))
    assert "no read/write access to " in camera and "(root:video 0660) and 3 more" in camera
    assert "fix: add nobody to group video (sudo usermod -aG video nobody" in camera
    assert any(line.startswith(f"FAIL database directory: {top / 'state'} is not writable: Permission denied")
               for line in lines)


def test_as_root_the_service_accounts_groups_are_checked(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the root view")
    settings = make_settings(tmp_path, PICAM, outputs=OUTPUTS)
    lines = [c.line() for c in doctor.Doctor(settings, service_user="nobody").check_user()]
    assert lines[0].startswith("WARN user: running as root") and "--as-user checkpoint" in lines[0]
    assert "WARN group video: nobody is not in group video; fix: add nobody to group video: " \
           "sudo usermod -aG video nobody" in lines
    assert any(line.startswith("WARN group gpio: ") for line in lines)  # missing here, or nobody not in it
    gone = [c.line() for c in doctor.Doctor(settings, service_user="no-such-user-here").check_user()]
    assert gone[1] == "WARN service user: no user no-such-user-here on this system; fix: sudo make install " \
                      "creates it (scripts/install)"


def test_the_units_sandbox_is_what_systemd_run_gets():
    unit = (ROOT / "systemd/checkpoint.service").read_text()
    props = doctor.unit_properties(unit)
    assert "User=checkpoint" in props and "DevicePolicy=closed" in props
    assert any(p.startswith("DeviceAllow=char-video4linux") for p in props)
    assert not any(p.startswith(("ExecStart=", "Type=", "WatchdogSec=", "Description=")) for p in props)
    command = doctor.sandbox_command(unit, ["/opt/checkpoint/venv/bin/python", "-m", "edge.app.doctor"])
    assert command[:5] == ["systemd-run", "--quiet", "--pipe", "--wait", "--collect"]
    assert "--property=SupplementaryGroups=gpio video input dialout" in command
    assert command[-3:] == ["/opt/checkpoint/venv/bin/python", "-m", "edge.app.doctor"]
