"""Entries in a real SQLite file: committed, ordered, purged; real failures held and written later."""
from __future__ import annotations

import pytest

from edge.common.clock import boot_id, mono_ns, wall_ms
from edge.entries.store import Entry, EntryReader, EntryStore, StoreError


def entry(code="c", decision="allow", wall=None):
    return Entry(Entry.new_id(), "dev", wall if wall is not None else wall_ms(), mono_ns(), boot_id(), "test",
                 code, decision, "listed", "l", 1, "v1")


def rows(path):
    reader = EntryReader(path)
    try:
        return list(reader.rows())
    finally:
        reader.close()


def test_commit_order_and_readback(tmp_path):
    store = EntryStore(tmp_path / "entries.db")
    written = [entry(f"c{i}") for i in range(5)]
    assert all(store.record(e) for e in written)
    got = rows(tmp_path / "entries.db")
    assert [r["id"] for r in got] == [e.id for e in written]
    assert [r["seq"] for r in got] == [1, 2, 3, 4, 5]
    assert got[0]["synced_ms"] is None and got[0]["config_version"] == "v1"
    mode = store.conn.execute("PRAGMA journal_mode").fetchone()[0]
    sync = store.conn.execute("PRAGMA synchronous").fetchone()[0]
    assert (mode, sync) == ("wal", 2)  # WAL, FULL


def test_purge_keeps_sequence_numbers_unique(tmp_path):
    store = EntryStore(tmp_path / "entries.db")
    store.record(entry("old", wall=wall_ms() - 10 * 86_400_000))
    store.record(entry("new"))
    assert store.purge(wall_ms() - 86_400_000) == 1
    store.record(entry("newer"))
    assert [(r["code"], r["seq"]) for r in rows(tmp_path / "entries.db")] == [("new", 2), ("newer", 3)]


class Clock:
    """A monotonic clock a test moves by hand: the store's retry wait passes at once."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_read_only_database_holds_entries_until_it_recovers(tmp_path):
    clock = Clock()
    store = EntryStore(tmp_path / "entries.db", retry_s=5, monotonic=clock)
    assert store.record(entry("before"))
    store.conn.execute("PRAGMA query_only = 1")  # SQLite now refuses every write, as on a read-only mount
    held = entry("during", decision="deny")
    assert store.record(entry("during")) is False
    store.hold(held)
    assert not store.healthy and "read-only" in store.error
    assert not store.retry()  # not before retry_s
    clock.now += 5
    assert store.retry()  # reopened: the held entry is written, in order
    assert store.healthy and not store.backlog
    assert [r["code"] for r in rows(tmp_path / "entries.db")] == ["before", "during"]


def test_full_database(tmp_path):
    store = EntryStore(tmp_path / "entries.db", retry_s=3600)  # no retry but the forced one below
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")
    failures = 0
    for i in range(200):
        e = entry("x" * 500 + str(i))
        if not store.record(e):
            failures += 1
            store.hold(e)
    assert failures and "full" in store.error
    assert store.retry(force=True)  # a new connection has no page limit: the disk 'has room again'
    assert len(rows(tmp_path / "entries.db")) == 200


def test_not_a_database_at_start_is_a_clear_error_not_a_crash(tmp_path):
    path = tmp_path / "entries.db"
    path.write_bytes(b"this is not a database, it is a shopping list\n" * 100)
    clock = Clock()
    store = EntryStore(path, retry_s=5, monotonic=clock)
    assert not store.healthy and "corrupt or not a SQLite database" in store.error
    assert store.record(entry()) is False
    with pytest.raises(StoreError, match="corrupt or not a SQLite database"):
        EntryReader(path)
    # The operator moves the file aside: the store recovers on its own and writes what it held.
    store.hold(entry("held"))
    path.rename(tmp_path / "entries.db.bad")
    clock.now += 5
    assert store.retry()
    assert [r["code"] for r in rows(path)] == ["held"]


def test_backlog_is_bounded(tmp_path):
    path = tmp_path / "entries.db"
    path.write_bytes(b"garbage" * 1000)
    store = EntryStore(path, backlog_limit=3)
    for i in range(5):
        store.hold(entry(f"e{i}"))
    assert [e.code for e in store.backlog] == ["e2", "e3", "e4"] and store.dropped == 2


def test_entries_and_status_cli(tmp_path, make_config, cli):
    config = make_config('[source]\ntype = "lines"\n')
    status, _, err = cli("entries", "--config", config)
    assert status == 1 and "no entries database yet" in err
    store = EntryStore(tmp_path / "state" / "entries.db")
    store.record(entry("Phạm Thu Hương", wall=wall_ms() - 3 * 3600_000))
    store.record(entry("recent", decision="deny"))
    status, out, _ = cli("entries", "--config", config)
    lines = out.splitlines()
    assert status == 0 and lines[0].startswith("time,seq,id,device_id") and len(lines) == 3
    assert "Phạm Thu Hương" in lines[1]
    status, out, _ = cli("entries", "--config", config, "--since", "1h", "--format", "json")
    assert status == 0 and len(out.splitlines()) == 1 and '"code": "recent"' in out
    assert cli("entries", "--config", config, "--since", "yesterday-ish")[0] == 2  # a wrong command line
    status, out, _ = cli("status", "--config", config)
    assert "entries       2 (allow 1, deny 1)" in out and ": ok" in out
    (tmp_path / "state" / "entries.db").write_bytes(b"garbage" * 1000)
    for name in ("entries-wal", "entries-shm"):
        (tmp_path / "state" / f"{name.replace('-', '.db-')}").unlink(missing_ok=True)
    status, out, err = cli("status", "--config", config)
    assert status == 0 and "corrupt or not a SQLite database" in out
    status, out, err = cli("entries", "--config", config)
    assert status == 1 and "corrupt or not a SQLite database" in err and "Traceback" not in err


def test_entries_held_at_shutdown_are_saved_and_committed_at_next_start(tmp_path):
    path = tmp_path / "entries.db"
    path.write_bytes(b"garbage " * 1000)
    store = EntryStore(path)
    held = [entry("Phạm Thu Hương", decision="deny"), entry("second", decision="deny")]
    for e in held:
        store.hold(e)
    store.close()  # the database is still broken: the held entries go to a file beside it
    [saved] = tmp_path.glob("held-*.jsonl")
    (saved.parent / "held-0.jsonl").write_text("not json\n" + saved.read_text().splitlines()[0] + "\n")
    path.unlink()
    store = EntryStore(path)  # a working database again: both files committed, duplicates ignored
    assert store.healthy and not list(tmp_path.glob("held-*.jsonl"))
    assert [r["id"] for r in rows(path)] == [e.id for e in held]


# ---- an officer's entries: ref_id and officer ------------------------------------------------------
OLD_SCHEMA = """CREATE TABLE entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, device_id TEXT NOT NULL,
    wall_ms INTEGER NOT NULL, mono_ns INTEGER NOT NULL, boot_id TEXT NOT NULL, source TEXT NOT NULL,
    code TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT NOT NULL, list_name TEXT, list_version INTEGER,
    config_version TEXT, synced_ms INTEGER);"""


def test_review_answer_keeps_its_reference_and_officer(tmp_path):
    path = tmp_path / "entries.db"
    store = EntryStore(path)
    reviewed = entry("079203001234", decision="review")
    answer = Entry(Entry.new_id(), "dev", wall_ms(), mono_ns(), boot_id(), "review", reviewed.code, "allow",
                   "officer", None, None, "v1", ref_id=reviewed.id, officer="Nguyễn Văn An")
    assert store.record(reviewed) and store.record(answer)
    got = rows(path)
    assert (got[0]["ref_id"], got[0]["officer"]) == (None, None)
    assert (got[1]["ref_id"], got[1]["officer"], got[1]["source"]) == (reviewed.id, "Nguyễn Văn An", "review")


def test_a_database_from_before_officers_is_migrated_in_place(tmp_path):
    import sqlite3

    path = tmp_path / "entries.db"
    old = sqlite3.connect(path)
    old.executescript(OLD_SCHEMA)
    old.execute("INSERT INTO entries (id, device_id, wall_ms, mono_ns, boot_id, source, code, decision, reason) "
                "VALUES ('old-1', 'dev', 1, 1, 'b', 'test', 'c', 'allow', 'listed')")
    old.commit()
    old.close()
    store = EntryStore(path)
    manual = Entry(Entry.new_id(), "dev", wall_ms(), mono_ns(), boot_id(), "manual", "PAPER-77", "deny", "unknown",
                   None, None, None, officer="Trần Thị Bình")
    assert store.record(manual)
    got = rows(path)
    assert [(r["id"], r["clock"], r["ref_id"], r["officer"]) for r in got] == [
        ("old-1", "ok", None, None), (manual.id, "ok", None, "Trần Thị Bình")]
    assert [r["seq"] for r in got] == [1, 2]
    index = store.conn.execute("SELECT name FROM sqlite_master WHERE name = 'entries_ref'").fetchone()
    assert index is not None


def test_held_file_from_before_officers_still_commits(tmp_path):
    import json
    from dataclasses import asdict

    path = tmp_path / "entries.db"
    older = asdict(entry("held-old"))
    del older["ref_id"], older["officer"]  # a held line as the previous release wrote it
    newer = asdict(entry("held-new"))
    newer["officer"] = "An"
    (tmp_path / "held-1.jsonl").write_text(json.dumps(older) + "\n" + json.dumps(newer) + "\n"
                                           + json.dumps({**newer, "id": "x", "officer": 7}) + "\n"
                                           + json.dumps({**newer, "id": "y", "surprise": 1}) + "\n")
    EntryStore(path).close()
    assert [(r["code"], r["officer"]) for r in rows(path)] == [("held-old", None), ("held-new", "An")]


def test_a_held_entry_the_database_already_has_does_not_stop_the_store(tmp_path):
    # A commit that reported an error may still have become durable (an fsync error after the WAL
    # write): the daemon then holds the entry, and the database already has its id.
    store = EntryStore(tmp_path / "entries.db", reserve_bytes=0)
    durable = entry("durable")
    assert store.record(durable)
    store.hold(durable)
    assert store.retry(force=True) and not store.backlog  # before: UNIQUE failed on every retry
    store.hold(durable)
    later = entry("later")
    assert store.record(later) and store.healthy and not store.backlog
    assert not list(tmp_path.glob("held-*.jsonl"))
    # The new entry itself is still inserted plainly: an id used twice for a new decision is an error.
    assert not store.record(later)
    store.close()
    assert [r["code"] for r in rows(tmp_path / "entries.db")] == ["durable", "later"]
