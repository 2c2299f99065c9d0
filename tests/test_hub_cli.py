"""`checkpoint-hub` as an administrator meets it: read commands that only read, pushes that check before
they publish, exports a spreadsheet cannot run, and a broker's refusal said as such."""
from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
import uuid

import pytest

from edge.common.clock import wall_ms
from sync.hub.cli import main
from sync.hub.hubdb import HubDB
from sync.wire.codec import Batch, WireEntry
from sync.wire.mqtt import make_client

from .broker import Broker
from .waiting import wait_until

READS = [["gaps"], ["entries"], ["devices"], ["fleet"], ["acks"], ["rejected"]]
FORMULAS = ["=cmd|' /C calc'!A0", "+HYPERLINK(\"http://x\")", "@SUM(1)", "-2+3", "\tx", "plain"]


def run(capsys, *args) -> tuple[int, str, str]:
    try:
        status = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own exit for a wrong command line
        status = exc.code
    out = capsys.readouterr()
    return status, out.out, out.err


def hub_with_entries(path, codes) -> None:
    db = HubDB(str(path))
    entries = [WireEntry(str(uuid.uuid4()), i + 1, wall_ms(), i, "boot", "lines:x", code, "allow", "listed", None,
                         None, None) for i, code in enumerate(codes)]
    db.store(Batch("dev1", wall_ms(), entries), wall_ms())
    db.store_ack({"device": "dev1", "target": None, "kind": "unknown", "name": None, "version": None,
                  "accepted": False, "reason": "body does not match", "time_ms": wall_ms()}, wall_ms())
    db.close()


@pytest.mark.parametrize("command", READS)
def test_read_commands_refuse_a_missing_database_and_create_nothing(tmp_path, capsys, command):
    status, out, err = run(capsys, *command, "--db", tmp_path / "typo.db")
    assert status == 2 and "no hub database" in err and "Traceback" not in err
    assert not (tmp_path / "typo.db").exists()
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    status, out, err = run(capsys, *command, "--db", other)
    assert status == 2 and "not a hub database" in err
    tables = {r[0] for r in sqlite3.connect(other).execute("SELECT name FROM sqlite_master")}
    assert tables == {"t"}  # nothing created


def test_read_commands_take_no_write_lock(tmp_path, capsys):
    path = tmp_path / "hub.db"
    hub_with_entries(path, ["a1", "a2"])
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA busy_timeout = 0")
    writer.execute("BEGIN IMMEDIATE")  # a collector in the middle of a batch
    try:
        for command in READS:
            status, out, err = run(capsys, *command, "--db", path)
            assert status == 0, err
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_pg_read_only_opens_create_nothing(pg_url):
    from sync.hub.hubdb import MissingDatabase

    with pytest.raises(MissingDatabase, match="not a hub database"):
        HubDB(pg_url, readonly=True)
    HubDB(pg_url).close()
    db = HubDB(pg_url, readonly=True)
    try:
        assert db.devices() == [] and db.rejected() == []
        with pytest.raises(db.errors, match="read-only"):
            db.record_bundle("all", "config", "", 1, 1, "x")
    finally:
        db.close()


def test_a_wrong_since_is_a_usage_error(tmp_path, capsys):
    hub_with_entries(tmp_path / "hub.db", ["a"])
    status, out, err = run(capsys, "entries", "--db", tmp_path / "hub.db", "--since", "yesterday")
    assert status == 2 and "--since" in err and "'yesterday'" in err
    status, out, err = run(capsys, "acks", "--db", tmp_path / "hub.db", "--limit", "-3")
    assert status == 2 and "--limit" in err


def test_csv_export_neutralises_formulas_and_json_stays_exact(tmp_path, capsys):
    hub_with_entries(tmp_path / "hub.db", FORMULAS)
    status, out, err = run(capsys, "entries", "--db", tmp_path / "hub.db", "--format", "csv")
    assert status == 0
    codes = [row["code"] for row in csv.DictReader(io.StringIO(out))]
    assert codes == ["'" + c for c in FORMULAS[:-1]] + ["plain"]
    status, out, err = run(capsys, "entries", "--db", tmp_path / "hub.db", "--format", "json")
    assert [json.loads(line)["code"] for line in out.splitlines()] == FORMULAS


def test_acks_and_devices_show_missing_fields_and_conflicts(tmp_path, capsys):
    hub_with_entries(tmp_path / "hub.db", ["a"])
    status, out, err = run(capsys, "acks", "--db", tmp_path / "hub.db")
    assert status == 0 and "None" not in out
    assert out.split("\t")[2:] == ["a bundle it could not read", "REJECTED: body does not match\n"]
    status, out, err = run(capsys, "devices", "--db", tmp_path / "hub.db")
    assert "1 entries\t0 duplicates\t0 conflicts" in out
    status, out, err = run(capsys, "fleet", "--db", tmp_path / "hub.db")
    # cut: the row stays narrow
    assert status == 0 and "a bundle it could not read: body does not m…" in out and "None" not in out
    status, out, err = run(capsys, "fleet", "--wide", "--db", tmp_path / "hub.db")
    assert status == 0 and "a bundle it could not read: body does not match" in out and "None" not in out
    assert "clock offset" in out.splitlines()[0]


def retained(port: int, topic: str) -> bytes | None:
    got: list = []
    done = threading.Event()
    client = make_client(client_id=f"look-{uuid.uuid4().hex[:8]}")
    client.on_message = lambda c, u, m: (got.append(m.payload), done.set())
    client.on_subscribe = lambda *_: client.publish(f"probe/{uuid.uuid4().hex}", b"", qos=1)
    client.connect("127.0.0.1", port)
    client.subscribe([(topic, 1), ("probe/#", 1)])
    client.loop_start()
    try:
        # The probe comes back after any retained message on the topic: then we know there is none.
        wait_until(done.is_set, 20, "retained message or probe")
    finally:
        client.loop_stop()
        client.disconnect()
    return got[0] or None if got else None


def test_a_used_or_lower_version_is_refused_before_anything_is_published(tmp_path, capsys, broker):
    assert run(capsys, "keygen", "--out", tmp_path / "admin.key")[0] == 0
    (tmp_path / "c.toml").write_text('[decision]\nmode = "denylist"\n')
    db = tmp_path / "hub.db"
    common = ["--port", broker.port, "--host", "127.0.0.1", "--db", db, "--key", tmp_path / "admin.key",
              "--to", "all", tmp_path / "c.toml"]
    assert run(capsys, "config", "push", "--version", "5", *common)[0] == 0
    published = retained(broker.port, "checkpoint/all/config")
    for version in ("5", "3"):
        status, out, err = run(capsys, "config", "push", "--version", version, *common)
        assert status == 2 and "nothing pushed" in err and "not above v5" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    assert retained(broker.port, "checkpoint/all/config") == published  # the retained bundle untouched
    assert run(capsys, "config", "push", "--version", "0", *common)[0] == 2
    # A version past what a bundle's header carries, a topic prefix with a wildcard: refused as asked wrongly.
    assert run(capsys, "config", "push", "--version", str(2**53 + 1), *common)[0] == 2
    assert run(capsys, "config", "push", "--topic-prefix", "a/+", *common)[0] == 2
    assert retained(broker.port, "checkpoint/all/config") == published
    assert run(capsys, "config", "push", *common)[0] == 0  # the next one, v6
    hub = HubDB(str(db), readonly=True)
    assert hub.next_version("all", "config") == 7
    hub.close()


def test_a_list_version_already_pushed_is_refused_before_publishing(tmp_path, capsys, broker):
    assert run(capsys, "keygen", "--out", tmp_path / "admin.key")[0] == 0
    (tmp_path / "l.csv").write_text("code\nx1\nx2\n")
    common = ["--port", broker.port, "--host", "127.0.0.1", "--db", tmp_path / "hub.db", "--key",
              tmp_path / "admin.key", "--to", "all"]
    assert run(capsys, "list", "push", "people", tmp_path / "l.csv", "--state", tmp_path / "st", *common)[0] == 0
    manifest = retained(broker.port, "checkpoint/all/lists/people/snapshot")
    assert manifest
    # Another state folder starts again at v1, which the hub already pushed: refused, nothing published.
    status, out, err = run(capsys, "list", "push", "people", tmp_path / "l.csv", "--state", tmp_path / "other",
                           *common)
    assert status == 2 and "not above v1" in err and "nothing pushed" in err
    assert retained(broker.port, "checkpoint/all/lists/people/snapshot") == manifest


def test_a_push_the_broker_refuses_says_not_authorised(tmp_path, capsys):
    broker = Broker(tmp_path / "broker", anonymous=False, passwords={"hub-admin": "admin-secret"}).start()
    try:
        assert run(capsys, "keygen", "--out", tmp_path / "admin.key")[0] == 0
        (tmp_path / "c.toml").write_text('[decision]\nmode = "denylist"\n')
        common = ["--port", broker.port, "--host", "127.0.0.1", "--db", tmp_path / "hub.db", "--key",
                  tmp_path / "admin.key", "--to", "all", tmp_path / "c.toml"]
        status, out, err = run(capsys, "config", "push", *common)
        assert status == 1 and "refused the connection: not authorised" in err, err
        assert "not currently connected" not in err
        (tmp_path / "pw").write_text("wrong\n")
        status, out, err = run(capsys, "config", "push", "--username", "hub-admin", "--password-file",
                               tmp_path / "pw", *common)
        assert status == 1 and "refused the connection" in err
        (tmp_path / "pw").write_text("admin-secret\n")
        assert run(capsys, "config", "push", "--username", "hub-admin", "--password-file", tmp_path / "pw",
                   *common)[0] == 0
    finally:
        broker.stop()


def test_an_older_hub_database_is_read_as_it_is_and_upgraded_when_written(tmp_path, capsys):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(  # the tables as the first release made them: no conflicts, no rejected messages
        "CREATE TABLE hub_entries (id TEXT PRIMARY KEY, device_id TEXT, seq BIGINT, wall_ms BIGINT);"
        "CREATE TABLE hub_devices (device_id TEXT PRIMARY KEY, last_seen_ms BIGINT NOT NULL, max_seq BIGINT NOT NULL,"
        " entries BIGINT NOT NULL, duplicates BIGINT NOT NULL, clock_offset_ms BIGINT NOT NULL);"
        "INSERT INTO hub_devices VALUES ('dev1', 1, 5, 5, 0, 0);"
        "CREATE TABLE hub_status (device_id TEXT); CREATE TABLE hub_acks (device_id TEXT, received_ms BIGINT);"
        "CREATE TABLE hub_bundles (target TEXT);")
    old.close()
    status, out, err = run(capsys, "devices", "--db", path)
    assert status == 0 and "0 conflicts" in out
    assert run(capsys, "rejected", "--db", path)[:2] == (0, "")
    assert "conflicts" not in [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(hub_devices)")]
    HubDB(str(path)).close()  # what a collector does at start
    assert "conflicts" in [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(hub_devices)")]
    assert run(capsys, "devices", "--db", path)[0] == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_hub_entries_table_follows_the_entry_record(request, tmp_path, backend):
    """hub_entries keeps what the device's entry record (edge/entries/record.py) says the hub keeps, with its
    types and nullability, on SQLite and PostgreSQL; an entry's second copy is compared on those fields."""
    from edge.entries.record import HUB_FIELDS, hub_mismatches, sqlite_columns
    from sync.hub.hubdb import ENTRY_FIELDS

    assert set(ENTRY_FIELDS) == {f.name for f in HUB_FIELDS}
    if backend == "sqlite":
        HubDB(str(tmp_path / "hub.db")).close()
        with sqlite3.connect(tmp_path / "hub.db") as conn:
            columns = sqlite_columns(conn, "hub_entries")
    else:
        url = request.getfixturevalue("pg_url")
        db = HubDB(url)
        with db.transaction() as cur:
            cur.execute("SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                        "WHERE table_schema = current_schema() AND table_name = 'hub_entries'")
            columns = [(name, kind, nullable == "YES") for name, kind, nullable in cur.fetchall()]
        db.close()
    assert hub_mismatches(columns) == []


def test_exit_statuses_come_from_the_error_families(capsys, tmp_path):
    """Ours only: a usage error 2, the work failing 1 (a database that cannot be opened, a broker nobody
    answers on), each one line; the families derive from the project's CheckpointError."""
    from edge.common.errors import CheckpointError, exit_status
    from sync.hub.errors import BrokerError, DashboardError, HubError, HubUsageError, MissingDatabase

    assert all(issubclass(e, HubError) and issubclass(e, CheckpointError)
               for e in (HubUsageError, MissingDatabase, DashboardError, BrokerError))
    assert [exit_status(e("x")) for e in (HubError, HubUsageError, MissingDatabase, BrokerError)] == [1, 2, 2, 1]
    assert exit_status(ValueError("a bug")) is None
    from .broker import free_port

    status, _, err = run(capsys, "entries", "--db", f"postgresql://nobody@127.0.0.1:{free_port()}/hub")
    assert status == 1 and "cannot open hub database" in err and "Traceback" not in err
    status, _, err = run(capsys, "config", "push", tmp_path / "x.toml", "--to", "all", "--key", tmp_path / "none")
    assert status == 2 and "signing key" in err
    key = tmp_path / "admin.key"
    assert run(capsys, "keygen", "--out", key)[0] == 0
    (tmp_path / "x.toml").write_text('[ui]\nlanguage = "en"\n')
    status, _, err = run(capsys, "config", "push", tmp_path / "x.toml", "--to", "all", "--key", key, "--db",
                         tmp_path / "hub.db", "--host", "127.0.0.1", "--port", free_port(), "--no-check")
    assert status == 1 and "cannot reach the broker" in err and "not completed" in err
