"""The daemon core against what goes wrong around it: a config that cannot load, a clock behind its own
entries, a list that is not there, a shell's umask, a WAL deleted under it, codes in the log."""
from __future__ import annotations

import ctypes.util
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from drivers.outputs.fake import FakeOutput
from drivers.sources.lines import LinesSource
from edge.app.daemon import Daemon, close
from edge.app.logkey import KEY_NAME, code_hash, load_or_create
from edge.app.pipeline import Pipeline
from edge.app.signals import Signaller
from edge.common.clock import boot_id, mono_ns, wall_ms
from edge.decode.debounce import Debouncer
from edge.decode.reader import make_decoder
from edge.entries.store import Entry, EntryStore
from edge.lists import ListStore
from edge.rules.policy import Policy
from edge.settings.layers import load_settings

from .conftest import checkpoint_process, run_checkpoint, write_fifo
from .disks import fill, small_filesystem
from .waiting import patience, wait_until

LINES = '[source]\ntype = "lines"\npath = "{path}"\n'


@pytest.fixture
def record_config(make_config, fifo) -> Path:
    """A daemon in record mode reading scans from the fifo, every scan its own (no debounce)."""
    return make_config(LINES.format(path=fifo), mode="record", debounce_ms=0)


def recorded(state: Path) -> list[tuple]:
    path = state / "entries.db"
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT code, config_version FROM entries ORDER BY seq").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def read_log(proc, into: list[str]) -> threading.Thread:
    reader = threading.Thread(target=lambda: into.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    return reader


def test_sighup_with_a_deeply_nested_config_keeps_the_running_one(tmp_path, record_config, fifo):
    config = record_config
    state = tmp_path / "state"
    proc = checkpoint_process("run", "--config", config)
    log: list[str] = []
    reader = read_log(proc, log)
    try:
        write_fifo(fifo, b"first\n")
        wait_until(lambda: len(recorded(state)) == 1, what="the first entry")
        good = config.read_text()
        config.write_text(good.replace('"test-1"', '"test-2"') + "deep = " + "[" * 30_000 + "]" * 30_000 + "\n")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: any("reload refused" in line for line in log), what="the refusal")
        write_fifo(fifo, b"second\n")
        wait_until(lambda: len(recorded(state)) == 2, what="a scan after the refused reload")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(patience(10))
        reader.join(patience(10))
    assert proc.returncode == 0
    assert recorded(state) == [("first", "test-1"), ("second", "test-1")]  # still on its old config
    err = "".join(log)
    assert "Traceback" not in err and sum("reload refused" in line for line in log) == 1


def daemon_for(config: Path) -> Daemon:
    return Daemon(config, load_settings(config))


def test_clock_behind_the_newest_entry_is_reported_at_start_before_any_scan(tmp_path, make_config):
    config = make_config(LINES.format(path=tmp_path / "none.txt"), mode="record")
    (tmp_path / "none.txt").write_text("")
    state = tmp_path / "state"
    store = EntryStore(state / "entries.db")
    future = wall_ms() + 86_400_000  # written while the clock was a day ahead
    store.record(Entry(Entry.new_id(), "test-01", future, mono_ns(), boot_id(), "lines", "x", "allow", "recorded",
                       None, None, "test-1"))
    store.close()
    daemon = daemon_for(config)
    try:
        assert daemon.parts.pipeline.clock.state == "behind-entries"
        daemon.health(force=True)
        status = json.loads((state / "status.json").read_text())
        assert status["clock"]["state"] == "behind-entries" and status["clock"]["trusted"] is False
        assert "wall clock not trusted (behind-entries)" in status["problems"]
        assert daemon.parts.pipeline.scans == 0
    finally:
        close(daemon.parts)


def test_a_missing_list_is_a_problem_logged_once_and_its_return_too(tmp_path, make_config, caplog):
    (tmp_path / "none.txt").write_text("")
    config = make_config(LINES.format(path=tmp_path / "none.txt"))
    config.write_text(config.read_text().replace('mode = "allowlist"', 'mode = "allowlist"\nlists = ["people"]'))
    caplog.set_level(logging.INFO, logger="checkpoint.daemon")
    daemon = daemon_for(config)
    try:
        daemon.health(force=True)
        daemon.health()
        daemon.health()
        status = json.loads((tmp_path / "state" / "status.json").read_text())
        assert status["missing_lists"] == ["people"]
        assert any("missing list: people" in p for p in status["problems"])
        assert sum("LIST MISSING: people" in r.message and r.levelno == logging.ERROR
                   for r in caplog.records) == 1
        csv = tmp_path / "people.csv"
        csv.write_text("code,action\nOK-1,allow\n", encoding="utf-8")
        result = run_checkpoint("list", "import", "people", csv, "--config", config)
        assert result.returncode == 0, result.stderr
        daemon.health()
        status = json.loads((tmp_path / "state" / "status.json").read_text())
        assert status["missing_lists"] == [] and not any("missing list" in p for p in status["problems"])
        assert any("list people is on this device again" in r.message and r.levelno == logging.INFO
                   for r in caplog.records)
    finally:
        close(daemon.parts)


def test_every_file_the_daemon_makes_is_private_under_a_shell_umask(tmp_path, make_config, fifo):
    config = make_config(LINES.format(path=fifo), mode="record")
    state = tmp_path / "state"
    old = os.umask(0o022)
    try:
        proc = checkpoint_process("run", "--config", config)
    finally:
        os.umask(old)
    try:
        write_fifo(fifo, b"someone\n")
        wait_until(lambda: len(recorded(state)) == 1 and (state / "status.json").exists())
        files = [p for p in state.rglob("*") if p.is_file()]
        assert {"entries.db", "entries.db-wal", "status.json", "log.key"} <= {p.name for p in files}
        for path in files:
            assert path.stat().st_mode & 0o007 == 0, f"{path} is {oct(path.stat().st_mode)}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=patience(10))
    for path in (p for p in state.rglob("*") if p.is_file()):
        assert path.stat().st_mode & 0o007 == 0, f"{path} is {oct(path.stat().st_mode)}"


def logged_hashes(err: str) -> list[str]:
    return re.findall(r"code=(#[0-9a-f]+)", err)


def test_code_hashes_in_the_log_are_keyed_per_device_and_stable_across_restarts(tmp_path, make_config):
    import hashlib

    scans = tmp_path / "scans.txt"
    scans.write_text("123456\n654321\n")
    config = make_config(LINES.format(path=scans), mode="record", debounce_ms=0)
    first = run_checkpoint("run", "--config", config)
    again = run_checkpoint("run", "--config", config)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    one, two = logged_hashes(first.stderr), logged_hashes(again.stderr)
    assert len(one) == 2 and one == two and one[0] != one[1]  # stable across a restart of this device
    assert "123456" not in first.stderr
    plain = "#" + hashlib.sha256(b"123456").hexdigest()[:10]
    assert not one[0].startswith(plain)  # not the plain hash anyone can compute
    key = tmp_path / "state" / KEY_NAME
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32
    assert one[0] == code_hash(key.read_bytes(), "123456")
    # Another device (its own store, so its own secret) shows the same code differently.
    other = tmp_path / "other.toml"
    other.write_text(config.read_text().replace(str(tmp_path / "state"), str(tmp_path / "other-state")))
    result = run_checkpoint("run", "--config", other)
    assert result.returncode == 0, result.stderr
    assert logged_hashes(result.stderr)[0] != one[0]


def test_an_unusable_log_secret_is_replaced_loudly(tmp_path, caplog):
    (tmp_path / KEY_NAME).write_bytes(b"short")
    key = load_or_create(tmp_path)
    assert len(key) == 32 and (tmp_path / KEY_NAME).read_bytes() == key
    assert "replaced by a new one" in caplog.text
    assert load_or_create(tmp_path) == key


def test_wal_deleted_under_a_running_daemon_is_reported_and_nothing_is_lost_at_a_kill(tmp_path, record_config,
                                                                                     fifo):
    config = record_config
    state = tmp_path / "state"
    proc = checkpoint_process("run", "--config", config)
    log: list[str] = []
    reader = read_log(proc, log)
    try:
        for i in range(3):
            write_fifo(fifo, f"before-{i}\n".encode())
        wait_until(lambda: len(recorded(state)) == 3)
        (state / "entries.db-wal").unlink()  # someone cleaning /var
        for i in range(3):
            write_fifo(fifo, f"after-{i}\n".encode())
        wait_until(lambda: sum("DECISION" in line or "code=" in line for line in log) >= 6, what="6 decisions")

        def reported():
            try:
                status = json.loads((state / "status.json").read_text())
            except (OSError, ValueError):
                return False
            return any("deleted while open" in p for p in status["problems"])

        wait_until(reported, what="the deleted WAL in the status")
        write_fifo(fifo, b"later\n")
        wait_until(lambda: len(recorded(state)) == 7)
    finally:
        proc.kill()  # a crash: no clean close, no last checkpoint
        proc.wait(patience(10))
        reader.join(patience(10))
    assert [code for code, _ in recorded(state)] == (
        [f"before-{i}" for i in range(3)] + [f"after-{i}" for i in range(3)] + ["later"])
    assert any("ENTRY DATABASE FILES DELETED" in line for line in log)


def test_a_scan_starts_no_process_and_does_not_look_for_libraries(tmp_path, monkeypatch):
    scans = tmp_path / "scans.txt"
    scans.write_text("".join(f"T-{i:06d}\n" for i in range(1001)))
    from edge.settings.schema import parse_settings

    settings = parse_settings({"source": {"type": "lines", "path": str(scans)}, "decision": {"mode": "record"},
                               "outputs": {"green": {"driver": "fake"}},
                               "signals": {"allow": {"green": {"on_ms": 1}}}})
    store = EntryStore(tmp_path / "entries.db")
    lists = ListStore(tmp_path / "lists.db")
    source = LinesSource(str(scans), max_line=2049)
    signaller = Signaller({"green": FakeOutput("green")}, settings.signals)
    done = []
    pipeline = Pipeline(source=source, decoder=make_decoder("zxing"), debouncer=Debouncer(0),
                        policy=Policy(settings.decision, lists, store.last_allowed), store=store,
                        signaller=signaller, device_id="t", config_version="t", max_payload_bytes=2048,
                        on_scan=done.append)
    source.start()
    try:
        while not done:  # the first scan may load what is loaded once
            pipeline.step(1.0)

        def forbidden(*args, **kwargs):
            raise AssertionError(f"a scan must not do this: {args!r}")

        monkeypatch.setattr(subprocess, "Popen", forbidden)
        monkeypatch.setattr(ctypes.util, "find_library", forbidden)
        monkeypatch.setattr(os, "fork", forbidden)
        monkeypatch.setattr(os, "posix_spawn", forbidden)
        while not source.finished:
            pipeline.step(1.0)
    finally:
        source.close()
        signaller.close()
        store.close()
        lists.close()
    assert len(done) == 1001 and all(scan.committed for scan in done)
    assert pipeline.clock.state in ("ok", "unsynchronised")


@pytest.fixture
def tiny_disk_config(tmp_path, record_config, tiny_disk) -> Path:
    """record_config with its state on tiny_disk, and its outputs' record beside it (there is no room there)."""
    record_config.write_text(record_config.read_text()
                             .replace(f'dir = "{tmp_path / "state"}"', f'dir = "{tiny_disk}"')
                             .replace(f'{tmp_path / "state"}/outputs.jsonl', str(tmp_path / "outputs.jsonl")))
    return record_config


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 4 MiB filesystem to fill."""
    with small_filesystem(tmp_path / "tiny-disk", "4m") as mount:
        yield mount


def test_entries_denied_on_a_full_disk_survive_a_kill_and_are_committed_at_the_next_start(
        tmp_path, tiny_disk_config, fifo, tiny_disk):
    config = tiny_disk_config
    reds = lambda: sum(json.loads(line)["on"] and json.loads(line)["output"] == "red"  # noqa: E731
                       for line in (tmp_path / "outputs.jsonl").read_text().splitlines()) \
        if (tmp_path / "outputs.jsonl").exists() else 0
    proc = checkpoint_process("run", "--config", config)
    log: list[str] = []
    reader = read_log(proc, log)
    try:
        write_fifo(fifo, b"before\n")
        wait_until(lambda: len(recorded(tiny_disk)) == 1)
        filler = fill(tiny_disk)
        for i in range(3):
            write_fifo(fifo, f"during-{i}\n".encode())
        wait_until(lambda: reds() >= 2 and sum("store-failure" in line for line in log) >= 3,
                   what="three denials for store-failure")
    finally:
        proc.kill()  # the gate said no three times; nothing of it may be lost
        proc.wait(patience(10))
        reader.join(patience(10))
    assert any("reserve" in line and "freed" in line for line in log)
    filler.unlink()
    scans = tmp_path / "after.txt"
    scans.write_text("after\n")
    config.write_text(config.read_text().replace(f'path = "{fifo}"', f'path = "{scans}"'))
    result = run_checkpoint("run", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "committed 3 held entries" in result.stderr
    db = sqlite3.connect(tiny_disk / "entries.db")
    try:
        rows = db.execute("SELECT code, decision, reason FROM entries ORDER BY seq").fetchall()
    finally:
        db.close()
    assert [row[:2] for row in rows] == [("before", "allow")] + [
        (f"during-{i}", "deny") for i in range(3)] + [("after", "allow")]
    assert {row[2] for row in rows[1:4]} == {"store-failure"}


def deleted_files_held(pid: int) -> list[str]:
    held = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.endswith(" (deleted)") and "entries.db" in target:
            held.append(target)
    return held


def test_wal_deleted_with_sync_running_no_connection_keeps_the_deleted_file(tmp_path, make_config, fifo, broker):
    sync = f'[sync]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\nbatch_wait_ms = 20\n'
    config = make_config(LINES.format(path=fifo), mode="record", debounce_ms=0, extra=sync)
    state = tmp_path / "state"
    proc = checkpoint_process("run", "--config", config)
    log: list[str] = []
    reader = read_log(proc, log)
    try:
        write_fifo(fifo, b"before\n")
        wait_until(lambda: len(recorded(state)) == 1 and any("sync: connected" in line for line in log))
        (state / "entries.db-wal").unlink()
        write_fifo(fifo, b"after\n")
        wait_until(lambda: any("reopened" in line for line in log), what="the recovery")
        # The sync agent's connections were closed and opened again with the store's: none is left
        # writing into the deleted file.
        wait_until(lambda: sum("sync: connected" in line for line in log) >= 2, what="sync back")
        assert deleted_files_held(proc.pid) == []
        write_fifo(fifo, b"later\n")
        wait_until(lambda: len(recorded(state)) == 3)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(patience(10))
        reader.join(patience(10))
    assert [code for code, _ in recorded(state)] == ["before", "after", "later"]


def test_a_restart_on_a_disk_still_full_after_a_kill_runs_denies_and_saves_every_scan(
        tmp_path, tiny_disk_config, fifo, tiny_disk):
    """Killed on a full disk, restarted by systemd while the disk is still full: the daemon runs (no crash
    loop), the database is left alone while the reserve cannot be made again (its room stays for held
    entries), every scan is denied and held, and the stop saves them; the next start with space commits all."""
    config = tiny_disk_config
    denied = lambda log: sum("store-failure" in line for line in log)  # noqa: E731
    proc = checkpoint_process("run", "--config", config)
    log: list[str] = []
    reader = read_log(proc, log)
    try:
        write_fifo(fifo, b"before\n")
        wait_until(lambda: len(recorded(tiny_disk)) == 1)
        filler = fill(tiny_disk)
        for i in range(3):
            write_fifo(fifo, f"during-{i}\n".encode())
        wait_until(lambda: denied(log) >= 3, what="three denials for store-failure")
    finally:
        proc.kill()
        proc.wait(patience(10))
        reader.join(patience(10))
    # Someone frees a little, far less than the reserve: room for held entries, none for the database.
    more = tiny_disk / "more"
    more.mkdir()
    (more / "spare").write_bytes(b"\0" * 256 * 1024)
    fill(more)
    (more / "spare").unlink()
    proc = checkpoint_process("run", "--config", config)  # the disk is still full
    log = []
    reader = read_log(proc, log)
    try:
        for i in range(3):
            write_fifo(fifo, f"restart-{i}\n".encode())
        wait_until(lambda: denied(log) >= 3, what="three denials after the restart")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(patience(10))
        reader.join(patience(10))
    text = "".join(log)
    assert proc.returncode == 0, text
    assert "Traceback" not in text and "LOST" not in text and "reserve" in text
    assert "3 entries the database never took saved to" in text
    filler.unlink()
    (more / "filler").unlink()
    scans = tmp_path / "after.txt"
    scans.write_text("after\n")
    config.write_text(config.read_text().replace(f'path = "{fifo}"', f'path = "{scans}"'))
    result = run_checkpoint("run", "--config", config)
    assert result.returncode == 0, result.stderr
    assert [code for code, _ in recorded(tiny_disk)] == ["before"] + [f"during-{i}" for i in range(3)] + [
        f"restart-{i}" for i in range(3)] + ["after"]
