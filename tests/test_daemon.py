"""The whole appliance: real sources, real decoding, real SQLite, recording outputs; signals and kills."""
from __future__ import annotations

import io
import json
import random
import signal
import sqlite3
import threading
import time
from pathlib import Path

import cv2
import pytest

from drivers.outputs.fake import FakeOutput
from drivers.sources.lines import LinesSource
from edge.app.daemon import Daemon
from edge.app.pipeline import Pipeline
from edge.app.signals import Signaller
from edge.decode.debounce import Debouncer
from edge.decode.reader import make_decoder
from edge.entries.store import EntryStore
from edge.lists import ListStore
from edge.rules.policy import Policy
from edge.settings.layers import load_settings

from .conftest import checkpoint_process, qr_image, run_checkpoint, write_fifo
from .disks import fill, small_filesystem
from .waiting import patience, wait_until

LINES = '[source]\ntype = "lines"\npath = "{path}"\n'


def import_list(config, tmp_path, rows="code,action\nOK-1,allow\nOK-2,allow\nBAN,deny\nPhạm Thu Hương,allow\n"):
    path = tmp_path / "list.csv"
    path.write_text(rows, encoding="utf-8")
    result = run_checkpoint("list", "import", "people", path, "--config", config)
    assert result.returncode == 0, result.stderr


def entries(config) -> list[dict]:
    result = run_checkpoint("entries", "--config", config, "--format", "json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def output_events(state: Path) -> list[dict]:
    path = state / "outputs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_lines_source_end_to_end_with_hostile_input(tmp_path, make_config):
    scans = tmp_path / "scans.txt"
    scans.write_bytes(b"OK-1\r\n\r\n   \nBAN\nstranger\n" + "Phạm Thu Hương\n".encode() + b"\xff\xfe\x00bin\n"
                      + b"A" * 10_240 + b"\n" + b"OK-1\n" + b"esc\x1b]0;pwned\x07\n")
    config = make_config(LINES.format(path=scans), repeat=60, debounce_ms=0)
    import_list(config, tmp_path)
    result = run_checkpoint("run", "--config", config)
    assert result.returncode == 0, result.stderr
    got = [(e["code"][:20], e["decision"], e["reason"]) for e in entries(config)]
    assert got == [
        ("OK-1", "allow", "listed"), ("BAN", "deny", "deny-listed"), ("stranger", "deny", "not-listed"),
        ("Phạm Thu Hương", "allow", "listed"), ("\\xff\\xfe\\x00bin", "deny", "malformed"),
        ("A" * 20, "deny", "malformed"), ("OK-1", "review", "repeated"), ("esc\\x1b]0;pwned\\x07", "deny", "malformed")]
    rows = entries(config)
    assert len(rows[5]["code"]) == 2048  # the 10 KB payload, capped
    assert {e["device_id"] for e in rows} == {"test-01"} and [e["seq"] for e in rows] == list(range(1, 9))
    assert rows[0]["list_name"] == "people" and rows[0]["list_version"] == 1 and rows[0]["config_version"] == "test-1"
    assert len({e["id"] for e in rows}) == 8 and all(e["boot_id"] and e["mono_ns"] > 0 for e in rows)
    assert "\x1b" not in result.stderr  # the escape never reaches the log
    # The lines come in a burst: a newer decision cuts the one before short (whoever stands at the gate gets
    # the latest), so how many earlier pulses played depends on scheduling; the last one plays in full.
    events = output_events(tmp_path / "state")
    ons = [e["output"] for e in events if e["on"]]
    assert ons.count("relay") <= 2 and ons[-2:] == ["red", "red"]  # the last line was denied: red twice
    assert all(not [e for e in events if e["output"] == name][-1]["on"] for name in ("green", "red", "relay"))


def test_stdin_source(tmp_path, make_config):
    config = make_config(LINES.format(path="-"), mode="record")
    result = run_checkpoint("run", "--config", config, input="v1\nv2\n")
    assert result.returncode == 0, result.stderr
    assert [(e["code"], e["decision"]) for e in entries(config)] == [("v1", "allow"), ("v2", "allow")]


def test_replay_source_end_to_end(tmp_path, make_config):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, (text, dark) in enumerate([("OK-1", False), ("Phạm Thu Hương", True), ("stranger", False)]):
        cv2.imwrite(str(frames / f"{i}.jpg"), qr_image(text, dark=dark, size=(480, 640), at=(100, 200)))
    config = make_config(f'[source]\ntype = "replay"\npath = "{frames}"\nfps = 0\n', debounce_ms=0)
    import_list(config, tmp_path)
    result = run_checkpoint("run", "--config", config)
    assert result.returncode == 0, result.stderr
    assert [(e["code"], e["decision"], e["source"]) for e in entries(config)] == [
        ("OK-1", "allow", "replay:frames"), ("Phạm Thu Hương", "allow", "replay:frames"),
        ("stranger", "deny", "replay:frames")]


def test_video_replay_debounces_consecutive_frames(tmp_path, make_config):
    from .test_sources import write_video

    video = tmp_path / "clip.avi"
    write_video(video, ["OK-1"] * 5 + [None] * 2 + ["OK-2"] * 4)
    config = make_config(f'[source]\ntype = "replay"\npath = "{video}"\nfps = 0\n')
    import_list(config, tmp_path)
    assert run_checkpoint("run", "--config", config).returncode == 0
    assert [e["code"] for e in entries(config)] == ["OK-1", "OK-2"]


def test_sigterm_stops_cleanly_and_outputs_end_off(tmp_path, make_config, fifo):
    config = make_config(LINES.format(path=fifo), mode="record")
    proc = checkpoint_process("run", "--config", config)
    write_fifo(fifo, b"first\n")
    state = tmp_path / "state"
    wait_until(lambda: any(e["on"] for e in output_events(state)))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(patience(10)) == 0
    last = {}
    for event in output_events(state):
        last[event["output"]] = event["on"]
    assert last == {"green": False, "red": False, "relay": False}
    assert [e["code"] for e in entries(config)] == ["first"]


class LogLines:
    """A child's stderr read as it comes, so a test waits for the line that says something happened."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._thread.start()

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))

    def text(self) -> str:
        self._thread.join(patience(10))  # the child has exited: its stderr ends
        return "".join(self.lines)


def test_sighup_reloads_and_a_broken_reload_keeps_running(tmp_path, make_config, fifo):
    config = make_config(LINES.format(path=fifo), debounce_ms=0)
    proc = checkpoint_process("run", "--config", config)  # logs to stderr only: its stdout pipe stays empty
    log = LogLines(proc.stderr)
    try:
        write_fifo(fifo, b"visitor\n")
        wait_until(lambda: len(entries_or_none(config)) == 1)
        text = config.read_text()
        config.write_text(text.replace('mode = "allowlist"', 'mode = "record"').replace('"test-1"', '"test-2"'))
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: log.count("config reloaded") == 1)  # the next scan meets the new config
        write_fifo(fifo, b"visitor\n")
        wait_until(lambda: len(entries_or_none(config)) == 2)
        config.write_text(text.replace('mode = "allowlist"', 'mode = "sometimes"'))
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: log.count("reload refused") == 1)
        write_fifo(fifo, b"visitor\n")
        wait_until(lambda: len(entries_or_none(config)) == 3)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=patience(10))
        proc.stdout.close()
    err = log.text()
    assert entries_or_none(config) == [("deny", "test-1"), ("allow", "test-2"), ("allow", "test-2")]
    assert "reload refused" in err and "decision.mode" in err


def entries_or_none(config):
    """Entries read straight from the file (the config may be broken on purpose)."""
    path = config.parent / "state" / "entries.db"
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT decision, config_version FROM entries ORDER BY seq").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def test_sigkill_right_after_decisions_loses_no_signalled_entry(tmp_path, make_config, fifo):
    """Every decision the gate showed is in the database, however abruptly the daemon dies."""
    config = make_config(LINES.format(path=fifo), mode="record", debounce_ms=0)
    state = tmp_path / "state"
    rng = random.Random(7)
    signalled = 0
    for run in range(6):
        proc = checkpoint_process("run", "--config", config)
        burst = rng.randint(1, 5)
        for i in range(burst):
            write_fifo(fifo, f"run{run}-scan{i}\n".encode())
        # Kill as soon as the gate showed a new decision, or at a random moment. (Scans that arrive
        # together may show only the newest one's pattern: fewer switch-ons than entries is fine.)
        if run % 2 == 0:
            wait_until(lambda before=signalled: sum(e["on"] and e["output"] == "green"
                                                    for e in output_events(state)) > before)
        else:
            # The scenario itself, not a wait for something: a kill at any moment (the assertions hold whatever
            # the delay turns out to be).
            time.sleep(rng.uniform(0.0, 0.4))
        proc.kill()
        proc.wait(patience(10))
        signalled = sum(e["on"] and e["output"] == "green" for e in output_events(state))
        recorded = entries(config)
        assert len(recorded) >= signalled
        codes = [e["code"] for e in recorded]
        assert len(codes) == len(set(codes))
    assert signalled >= 3


def test_corrupt_database_at_start_is_set_aside_loudly_and_a_new_one_started(tmp_path, make_config, fifo):
    config = make_config(LINES.format(path=fifo), mode="record")
    state = tmp_path / "state"
    (state / "entries.db").write_bytes(b"definitely not sqlite " * 500)
    proc = checkpoint_process("run", "--config", config)
    try:
        write_fifo(fifo, b"someone\n")
        wait_until(lambda: any(e["on"] and e["output"] == "green" for e in output_events(state)))
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=patience(10))
    assert proc.returncode == 0
    assert "ENTRY DATABASE" in err and "IS CORRUPT" in err and "moved aside" in err
    [aside] = state.glob("entries.db.corrupt-*")
    assert aside.read_bytes().startswith(b"definitely not sqlite")
    assert [e["code"] for e in entries(config)] == ["someone"]


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MiB filesystem the test can fill up."""
    with small_filesystem(tmp_path / "small-disk", "4m") as mount:
        yield mount


def test_disk_full_while_running_denies_warns_and_recovers(tmp_path, make_config, fifo, small_disk):
    config = make_config(LINES.format(path=fifo), mode="record")
    config.write_text(config.read_text().replace(f'dir = "{tmp_path / "state"}"', f'dir = "{small_disk}"')
                      .replace("retry_s = 0.2", "retry_s = 0.2\ndisk_warn_mb = 3"))
    config.write_text(config.read_text().replace(f'{tmp_path / "state"}/outputs.jsonl',
                                                 str(tmp_path / "outputs.jsonl")))

    def events():
        path = tmp_path / "outputs.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    proc = checkpoint_process("run", "--config", config)
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        write_fifo(fifo, b"before\n")
        wait_until(lambda: any(e["on"] and e["output"] == "relay" for e in events()))
        filler = fill(small_disk)
        write_fifo(fifo, b"during\n")
        wait_until(lambda: any(e["on"] and e["output"] == "red" for e in events()))
        assert [e for e in events() if e["on"] and e["output"] == "relay"] and \
            len([e for e in events() if e["on"] and e["output"] == "relay"]) == 1  # the gate stayed shut
        wait_until(lambda: any("degraded: disk nearly full" in line for line in log))  # the health check
        filler.unlink()
        wait_until(lambda: any("recovered; wrote" in line for line in log))  # the store retried and wrote
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(patience(60))
        reader.join(patience(10))
    err = "".join(log)
    assert proc.returncode == 0
    assert "ENTRY STORE FAILURE" in err and "full" in err and "DENY   store-failure" in err
    assert "degraded: disk nearly full" in err
    db = sqlite3.connect(small_disk / "entries.db")
    assert db.execute("SELECT code, decision, reason FROM entries ORDER BY seq").fetchall() == [
        ("before", "allow", "not-listed"), ("during", "deny", "store-failure")]


def test_missing_replay_folder_fails_with_a_message(tmp_path, make_config):
    config = make_config(f'[source]\ntype = "replay"\npath = "{tmp_path / "nothing"}"\n')
    result = run_checkpoint("run", "--config", config)
    assert result.returncode == 1 and "source:" in result.stderr and "Traceback" not in result.stderr


# ---- in-process: the order of commit and signal ----------------------------------------------------
def test_entry_is_committed_before_any_output_switches_on(tmp_path, make_config):
    scans = tmp_path / "scans.txt"
    scans.write_text("OK-1\nBAN\nOK-2\n")
    settings = load_settings(make_config(LINES.format(path=scans), debounce_ms=0))
    lists = ListStore(settings.store.lists_path)
    lists.import_csv("people", io.BytesIO(b"code,action\nOK-1,allow\nOK-2,allow\nBAN,deny\n"),
                     zone="UTC", max_code_bytes=64)
    store = EntryStore(settings.store.entries_path)
    reader = sqlite3.connect(settings.store.entries_path, check_same_thread=False)
    seen: list[tuple[str, int]] = []

    def on_change(name, on):
        if on:  # what another process (a power cut) would find in the file at this instant
            seen.append((name, reader.execute("SELECT count(*) FROM entries").fetchone()[0]))

    outputs = {n: FakeOutput(n, on_change=on_change) for n in ("green", "red", "relay")}
    signaller = Signaller(outputs, settings.signals)
    source = LinesSource(str(scans), max_line=2049)
    source.start()
    pipeline = Pipeline(source=source, decoder=make_decoder("zxing"), debouncer=Debouncer(0),
                        policy=Policy(settings.decision, lists, store.last_allowed), store=store,
                        signaller=signaller, device_id="d", config_version="v", max_payload_bytes=2048)
    done = []
    while not source.finished:
        for scan in pipeline.step(0.5):
            done.append(scan)
            signaller.wait_idle(2)
    signaller.close()
    assert [s.decision.outcome.value for s in done] == ["allow", "deny", "allow"]
    # each switch-on already found its decision's entry in the file
    assert [count for name, count in seen if name == "relay"] == [1, 3]
    assert [count for name, count in seen if name == "red"][0] == 2


def test_store_failure_never_opens_the_gate(tmp_path, make_config):
    scans = tmp_path / "scans.txt"
    scans.write_text("a\nb\n")
    settings = load_settings(make_config(LINES.format(path=scans), mode="record", debounce_ms=0))
    daemon = Daemon(tmp_path / "unused.toml", settings)
    daemon.parts.store.conn.execute("PRAGMA query_only = 1")
    outputs = daemon.parts.signaller.outputs
    assert daemon.run() == 0
    assert not any(on for _, on in outputs["relay"].changes)
    assert any(on for _, on in outputs["red"].changes)
    # held, then written once the store worked again (the retry on the way out opens a fresh connection)
    db = sqlite3.connect(settings.store.entries_path)
    assert db.execute("SELECT code, decision, reason FROM entries ORDER BY seq").fetchall() == [
        ("a", "deny", "store-failure"), ("b", "deny", "store-failure")]
