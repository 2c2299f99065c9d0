"""The entry store's files: private whatever the umask, a WAL deleted under it, a disk that fills up."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from edge.app.logkey import load_or_create
from edge.common.clock import boot_id, mono_ns, wall_ms
from edge.entries.store import RESERVE_NAME, Entry, EntryStore

from .disks import fill, small_filesystem


def entry(code="c", decision="allow"):
    return Entry(Entry.new_id(), "dev", wall_ms(), mono_ns(), boot_id(), "test", code, decision, "listed",
                 None, None, "v1")


def codes_in_copy(files: list[Path], folder: Path) -> list[str]:
    """What a fresh process finds in a copy of the files on disk now: the state after a crash."""
    folder.mkdir()
    for path in files:
        if path.exists():
            shutil.copyfile(path, folder / path.name)
    script = ("import sqlite3, sys, json\n"
              "db = sqlite3.connect(sys.argv[1])\n"
              "try:\n    rows = [r[0] for r in db.execute('SELECT code FROM entries ORDER BY seq')]\n"
              "except sqlite3.Error:\n    rows = []\n"
              "print(json.dumps(rows))\n")
    result = subprocess.run([sys.executable, "-c", script, str(folder / files[0].name)], capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout)


def db_files(path: Path) -> list[Path]:
    return [path, Path(f"{path}-wal"), Path(f"{path}-shm")]


def test_store_files_are_not_world_readable_whatever_the_umask(tmp_path):
    old = os.umask(0o022)  # a shell's
    try:
        store = EntryStore(tmp_path / "entries.db", retry_s=3600)
        assert store.record(entry("someone"))
        load_or_create(tmp_path)
        seen = {p.name for p in tmp_path.iterdir()}
        assert {"entries.db", "entries.db-wal", "entries.db-shm", RESERVE_NAME, "log.key"} <= seen
        for path in tmp_path.iterdir():
            assert path.stat().st_mode & 0o007 == 0, f"{path.name} is {oct(path.stat().st_mode)}"
        store.conn.execute("PRAGMA query_only = 1")  # the database refuses writes: an entry is held
        held = entry("held", decision="deny")
        assert not store.record(held)
        store.hold(held)
        assert any(n.startswith("held-") for n in (p.name for p in tmp_path.iterdir()))
        for path in tmp_path.iterdir():
            assert path.stat().st_mode & 0o007 == 0, f"{path.name} is {oct(path.stat().st_mode)}"
        assert (tmp_path / "log.key").stat().st_mode & 0o777 == 0o600
        store.close()
    finally:
        os.umask(old)


def test_a_world_readable_database_from_before_is_made_private(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "entries.db"
        db = sqlite3.connect(path)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE t (x)")
        db.close()
        assert path.stat().st_mode & 0o004
        store = EntryStore(path)
        store.record(entry())
        for file in db_files(path):
            if file.exists():
                assert file.stat().st_mode & 0o007 == 0
        store.close()
    finally:
        os.umask(old)


def test_wal_deleted_under_a_running_store_is_detected_and_no_entry_is_lost(tmp_path, caplog):
    path = tmp_path / "entries.db"
    store = EntryStore(path)
    for i in range(5):
        assert store.record(entry(f"before-{i}"))
    assert store.lost_files() == []
    Path(f"{path}-wal").unlink()  # someone cleaning /var
    for i in range(5):
        assert store.record(entry(f"after-{i}"))  # still committed: into the deleted file
    # What a crash now would leave: the entries in the deleted WAL are gone. This is what is at stake.
    assert len(codes_in_copy(db_files(path), tmp_path / "crash-before")) < 10
    lost = store.lost_files()
    assert lost == [f"{os.path.realpath(path)}-wal"]
    store.recover_files(lost)
    assert store.lost_files() == [] and store.healthy
    assert "deleted while open" in store.files_problem and "recovered" in store.files_problem
    assert "ENTRY DATABASE FILES DELETED" in caplog.text
    for i in range(3):
        assert store.record(entry(f"later-{i}"))
    # A crash now (the files copied as they are, the store still open): nothing is missing.
    assert codes_in_copy(db_files(path), tmp_path / "crash-after") == (
        [f"before-{i}" for i in range(5)] + [f"after-{i}" for i in range(5)] + [f"later-{i}" for i in range(3)])
    store.close()


def test_shm_and_wal_both_deleted(tmp_path):
    path = tmp_path / "entries.db"
    store = EntryStore(path)
    assert store.record(entry("one"))
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink()
    assert store.record(entry("two"))
    lost = store.lost_files()
    assert sorted(Path(p).name for p in lost) == ["entries.db-shm", "entries.db-wal"]
    store.recover_files(lost)
    assert store.record(entry("three"))
    assert codes_in_copy(db_files(path), tmp_path / "crash") == ["one", "two", "three"]
    store.close()


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 2 MiB filesystem to fill."""
    with small_filesystem(tmp_path / "tiny-disk", "2m") as mount:
        yield mount


def test_entries_held_on_a_full_disk_survive_the_stop_and_are_committed_first_at_start(tiny_disk, caplog):
    path = tiny_disk / "entries.db"
    store = EntryStore(path, retry_s=3600, reserve_bytes=256 * 1024)
    assert (tiny_disk / RESERVE_NAME).stat().st_size == 256 * 1024
    assert store.record(entry("before"))
    filler = fill(tiny_disk)
    held = []
    for i in range(40):
        e = entry(f"during-{i}", decision="deny")
        if not store.record(e):
            store.hold(e)
            held.append(e)
    assert len(held) == 40 and "full" in store.error
    assert not (tiny_disk / RESERVE_NAME).exists() and "reserve" in caplog.text  # freed for the held file
    [held_file] = tiny_disk.glob("held-*.jsonl")
    # Written as each entry was held, before the gate was signalled: a SIGKILL now would lose nothing.
    assert [json.loads(line)["id"] for line in held_file.read_text().splitlines()] == [e.id for e in held]
    store.close()  # the disk is still full: nothing is LOST
    assert "LOST" not in caplog.text
    filler.unlink()
    store = EntryStore(path, reserve_bytes=256 * 1024)  # the next start: held entries first
    rows = [r[0] for r in store.conn.execute("SELECT code FROM entries ORDER BY seq")]
    assert rows == ["before"] + [f"during-{i}" for i in range(40)]
    assert not list(tiny_disk.glob("held-*.jsonl")) and (tiny_disk / RESERVE_NAME).exists()
    store.close()


def test_store_recovering_on_its_own_commits_the_held_file_and_remakes_the_reserve(tiny_disk):
    path = tiny_disk / "entries.db"
    store = EntryStore(path, retry_s=0, reserve_bytes=128 * 1024)
    assert store.record(entry("before"))
    filler = fill(tiny_disk)
    e = entry("during", decision="deny")
    assert not store.record(e)
    store.hold(e)
    assert list(tiny_disk.glob("held-*.jsonl"))
    filler.unlink()
    assert store.retry(force=True)
    assert not list(tiny_disk.glob("held-*.jsonl")) and (tiny_disk / RESERVE_NAME).exists()
    assert [r[0] for r in store.conn.execute("SELECT code FROM entries ORDER BY seq")] == ["before", "during"]
    store.close()


# ---- a held file is read back from disk: whatever it holds, the store starts -------------------------
_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                       st.floats(allow_nan=False), st.text(alphabet=st.characters(codec="utf-8"), max_size=30))
_json_any = st.recursive(_json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                         max_leaves=20)
_FIELDS = list(Entry.__dataclass_fields__)


@st.composite
def hostile_lines(draw) -> bytes:
    kind = draw(st.sampled_from(["raw", "json", "entry-like", "deep"]))
    if kind == "raw":
        return draw(st.binary(max_size=200)).replace(b"\n", b" ")
    if kind == "deep":
        depth = draw(st.integers(min_value=1000, max_value=50_000))
        return b"[" * depth + b"]" * depth
    if kind == "json":
        return json.dumps(draw(_json_any)).encode()
    # The right field names with wrong values: huge integers, lists, control characters, lone surrogates.
    sample = entry("x")
    good = {f: getattr(sample, f) for f in _FIELDS}
    name = draw(st.sampled_from(_FIELDS))
    good[name] = draw(st.one_of(_json_any, st.just(2**63), st.just(-2**63 - 1), st.just("\ud800"),
                                st.text(alphabet=st.characters(max_codepoint=0x1f), max_size=5)))
    return json.dumps(good).encode()


@hsettings(max_examples=40)
@given(st.lists(hostile_lines(), min_size=1, max_size=6))
def test_a_damaged_or_forged_held_file_never_stops_the_store(tmp_path_factory, lines):
    folder = tmp_path_factory.mktemp("held")
    good = entry("genuine", decision="deny")
    payload = b"\n".join(lines) + b"\n" + json.dumps({f: getattr(good, f) for f in _FIELDS}).encode() + b"\n"
    (folder / "held-1.jsonl").write_bytes(payload)
    store = EntryStore(folder / "entries.db", reserve_bytes=0)
    try:
        assert store.healthy, store.error
        codes = [r[0] for r in store.conn.execute("SELECT code FROM entries")]
        assert "genuine" in codes
        assert not list(folder.glob("held-*.jsonl"))
    finally:
        store.close()


def test_the_database_file_itself_deleted_is_rescued_from_the_open_connection(tmp_path):
    path = tmp_path / "entries.db"
    store = EntryStore(path)
    for i in range(3):
        assert store.record(entry(f"before-{i}"))
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # some in the file, some in the WAL below
    assert store.record(entry("in-wal"))
    for file in db_files(path):
        file.unlink(missing_ok=True)
    assert store.record(entry("after"))
    lost = store.lost_files()
    assert os.path.realpath(path) in lost
    store.recover_files(lost)
    assert store.lost_files() == [] and store.healthy
    assert store.record(entry("later"))
    assert codes_in_copy(db_files(path), tmp_path / "crash") == (
        [f"before-{i}" for i in range(3)] + ["in-wal", "after", "later"])
    assert path.stat().st_mode & 0o007 == 0
    assert store.record(entry("sequence"))
    seqs = [r[0] for r in store.conn.execute("SELECT seq FROM entries ORDER BY seq")]
    assert seqs == list(range(1, 8))
    store.close()


# ---- a kill on a full disk, and what the next start finds (issue 12, items 10 and 11) -------------------
# The first run is a real process, killed with SIGKILL in the middle of a full disk: no close, no save.
_KILLED_RUN = """
import json, os, signal, sys
from edge.common.clock import boot_id, mono_ns, wall_ms
from edge.entries.store import Entry, EntryStore
sys.path.insert(0, "tests")
from disks import fill
folder, reserve, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def entry(code, decision):
    return Entry(Entry.new_id(), "dev", wall_ms(), mono_ns(), boot_id(), "test", code, decision, "listed",
                 None, None, "v1")
store = EntryStore(folder + "/entries.db", retry_s=0, reserve_bytes=reserve)
committed, held = [], []
for i in range(20):
    assert store.record(entry(f"before-{i}", "allow"))
    committed.append(f"before-{i}")
fill(__import__("pathlib").Path(folder))
for i in range(count):  # retry_s=0: every scan tries the database again first
    if store.record(entry(f"during-{i}", "allow")):
        committed.append(f"during-{i}")
    else:
        store.hold(entry(f"during-{i}", "deny"))
        held.append(f"during-{i}")
print(json.dumps({"committed": committed, "held": held}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_on_a_full_disk(folder: Path, reserve: int, count: int) -> dict:
    result = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(folder), str(reserve), str(count)],
                            cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)
    assert result.returncode == -9, result.stderr
    return json.loads(result.stdout)


def all_codes(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [r[0] for r in db.execute("SELECT code FROM entries ORDER BY code")]
    finally:
        db.close()


def test_retries_on_a_full_disk_leave_the_freed_reserve_to_the_held_file_so_a_kill_loses_nothing(tiny_disk,
                                                                                                   caplog):
    # 300 scans on a full disk: before the fix the database took the freed reserve at the next retry, the
    # disk filled again, and the rest were held in memory only (lost by the kill).
    seen = killed_on_a_full_disk(tiny_disk, 256 * 1024, 300)
    assert len(seen["held"]) == 300 and len(seen["committed"]) == 20
    assert not (tiny_disk / RESERVE_NAME).exists()
    held_ids = [json.loads(line)["code"] for file in sorted(tiny_disk.glob("held-*.jsonl"))
                for line in file.read_text().splitlines()]
    assert held_ids == seen["held"]  # every one in the file, none in memory only
    # Restarted on the disk still full: the reserve cannot be made again, so the database is left alone
    # and every scan is held, without an exception anywhere.
    store = EntryStore(tiny_disk / "entries.db", retry_s=0, reserve_bytes=256 * 1024)
    assert store.conn is None and "reserve" in store.error
    late = entry("restart-during", decision="deny")
    assert not store.record(late) and not store.retry(force=True)
    store.hold(late)
    store.close()
    assert "LOST" not in caplog.text
    (tiny_disk / "filler").unlink()
    store = EntryStore(tiny_disk / "entries.db", reserve_bytes=256 * 1024)
    assert store.healthy and (tiny_disk / RESERVE_NAME).exists() and not list(tiny_disk.glob("held-*.jsonl"))
    store.close()
    assert all_codes(tiny_disk / "entries.db") == sorted(seen["committed"] + seen["held"] + ["restart-during"])


def test_a_restart_whose_held_file_the_database_cannot_take_is_a_failed_store_not_a_crash(tiny_disk, caplog):
    seen = killed_on_a_full_disk(tiny_disk, 256 * 1024, 30)
    more = tiny_disk / "more"
    more.mkdir()
    fill(more)  # the room the freed reserve left is taken too, and this start asks for no reserve
    store = EntryStore(tiny_disk / "entries.db", retry_s=0, reserve_bytes=0)
    # The database opened, then could not take the held file: a failed store, not a half-open one.
    assert store.conn is None and "full" in store.error
    late = entry("restart-during", decision="deny")
    assert not store.record(late) and not store.retry(force=True)  # before: AttributeError on None
    store.hold(late)  # not one byte free and no reserve: in memory only, the documented limit
    store.close()
    assert "1 entries the database never took are LOST" in caplog.text  # said, not silent
    (more / "filler").unlink()
    (tiny_disk / "filler").unlink()
    store = EntryStore(tiny_disk / "entries.db", reserve_bytes=0)
    assert store.healthy and not list(tiny_disk.glob("held-*.jsonl"))
    store.close()
    # Everything the killed run committed or held is there: the failed restart left the held file alone.
    assert all_codes(tiny_disk / "entries.db") == sorted(seen["committed"] + seen["held"])


# A reader in another process (status, export, a backup script) holding a read transaction open.
_READER = """
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, isolation_level=None)
db.execute("BEGIN")
print(db.execute("SELECT count(*) FROM entries").fetchone()[0], flush=True)
sys.stdin.readline()  # held until the test says
db.execute("COMMIT")
db.close()
print("released", flush=True)
"""


def test_wal_deleted_while_a_reader_holds_a_snapshot_waits_for_it_and_loses_nothing(tmp_path):
    path = tmp_path / "entries.db"
    store = EntryStore(path, reserve_bytes=0)
    for i in range(200):
        assert store.record(entry(f"a{i:03}"))
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "200"
        for i in range(100):
            assert store.record(entry(f"b{i:03}"))
        Path(f"{path}-wal").unlink()
        lost = store.lost_files()
        # The checkpoint cannot finish past the reader's snapshot: reopening now would pair a new -wal with
        # the -shm of the deleted one (a corrupt database). The store keeps its connection and says so.
        store.recover_files(lost)
        assert store.conn is not None and store.healthy and store.recovery_pending
        assert "recovery pending: a reader holds the database" in store.files_problem
        for i in range(50):
            assert store.record(entry(f"c{i:03}"))
        lost = store.lost_files()
        assert lost  # still writing to the deleted WAL: asked again at the next check
        store.recover_files(lost)
        assert "recovery pending" in store.files_problem
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == "released"
    finally:
        reader.stdin.close()
        reader.wait()
    store.recover_files(store.lost_files())
    assert store.lost_files() == [] and store.files_problem.endswith("recovered (checkpointed and reopened)")
    assert not store.recovery_pending
    assert store.record(entry("d000"))
    # What a crash now would leave: every entry, in a database whose integrity check passes.
    crash = tmp_path / "crash"
    codes = codes_in_copy(db_files(path), crash)
    assert codes == [f"a{i:03}" for i in range(200)] + [f"b{i:03}" for i in range(100)] + [
        f"c{i:03}" for i in range(50)] + ["d000"]
    assert all_codes(crash / "entries.db") == sorted(codes)
    store.close()


def test_a_stop_while_a_reader_still_blocks_the_recovery_saves_every_entry_for_the_next_start(tmp_path, caplog):
    path = tmp_path / "entries.db"
    store = EntryStore(path, reserve_bytes=0)
    for i in range(100):
        assert store.record(entry(f"a{i:03}"))
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "100"
        for i in range(50):
            assert store.record(entry(f"b{i:03}"))
        Path(f"{path}-wal").unlink()
        store.recover_files(store.lost_files())
        assert "recovery pending" in store.files_problem
        assert store.record(entry("c000"))
        # The stop: the deleted WAL outlives this connection only as long as the read-only reader, which
        # cannot checkpoint it. Which entries are only there cannot be told: all are saved beside it.
        store.close()
        assert "all 151 entries saved to" in caplog.text
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == "released"
    finally:
        reader.stdin.close()
        reader.wait()
    store = EntryStore(path, reserve_bytes=0)
    assert store.healthy and not list(tmp_path.glob("held-*.jsonl"))
    store.close()
    assert all_codes(path) == [f"a{i:03}" for i in range(100)] + [f"b{i:03}" for i in range(50)] + ["c000"]
