"""Sync benchmark against a local Mosquitto started here: our batched outbox beside the naive way.

    python -m bench.sync [--backlog 100000] [--naive 5000]

Naive: one QoS 1 JSON message per entry, waiting for each PUBACK, marking each entry synced in its own
transaction. Ours: the agent's batches (QoS 1, PUBACK-gated marking in SQLite). Bytes on the wire are
counted by a TCP relay between device and broker (MQTT framing included). Collector inserts per second
are measured on SQLite and on PostgreSQL (CHECKPOINT_TEST_PG or the local server).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from edge.common.clock import boot_id, mono_ns, wall_ms
from edge.entries.store import Entry, EntryReader, EntryStore
from edge.settings.schema import SyncSettings
from sync.device.agent import SyncAgent
from sync.hub.hubdb import HubDB
from sync.wire.codec import WireEntry, decode_batch, encode_batch
from sync.wire.mqtt import make_client
from tests.broker import Broker, Proxy

PG = os.environ.get("CHECKPOINT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def backlog(path: Path, n: int) -> None:
    """n entries with 12-digit id codes, written in one transaction (the benchmark's setup, not measured)."""
    EntryStore(path).close()
    db = sqlite3.connect(path)
    rng = random.Random(3)
    # A day's entries of one boot: the monotonic clock counts from that boot (never below 0, which the hub
    # refuses as impossible), the wall clock ends about now.
    wall, mono, boot = wall_ms() - n * 1000, 10**9, boot_id()
    rows = []
    for _ in range(n):
        wall += rng.randint(200, 1800)
        mono += rng.randint(200, 1800) * 10**6 + rng.randint(0, 999_999)
        rows.append(Entry(str(uuid.uuid4()), "cp-bench-01", wall, mono, boot, "opencv:/dev/video0",
                          "".join(rng.choice("0123456789") for _ in range(12)), "allow", "listed", "vaccinated",
                          12, "sha256:1a2b3c4d5e6f"))
    names = [f.name for f in dataclasses.fields(Entry)]  # every column, as the store writes them
    db.executemany(f"INSERT INTO entries ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                   [tuple(getattr(e, f) for f in names) for e in rows])
    db.commit()
    db.close()


def naive(path: Path, port: int, n: int) -> tuple[float, float]:
    """(entries/s, bytes per entry on the wire)."""
    proxy = Proxy(port)
    client = make_client(client_id="naive")
    client.connect("127.0.0.1", proxy.port)
    client.loop_start()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    cols = ("id, seq, device_id, wall_ms, mono_ns, boot_id, source, code, decision, reason, list_name, list_version, "
            "config_version")
    rows = db.execute(f"SELECT {cols} FROM entries ORDER BY seq LIMIT ?", (n,)).fetchall()
    start_bytes = proxy.bytes_up
    started = time.perf_counter()
    for row in rows:
        payload = json.dumps(dict(zip(cols.split(", "), row)), separators=(",", ":"))
        client.publish("checkpoint/cp-bench-01/entry", payload, qos=1).wait_for_publish()
        db.execute("UPDATE entries SET synced_ms = ? WHERE seq = ?", (wall_ms(), row[1]))
    elapsed = time.perf_counter() - started
    wire = (proxy.bytes_up - start_bytes) / len(rows)
    client.disconnect()
    client.loop_stop()
    proxy.close()
    db.execute("UPDATE entries SET synced_ms = NULL")
    db.close()
    return len(rows) / elapsed, wire


def ours(path: Path, port: int, n: int, hub_url: str) -> tuple[float, float, float]:
    """(seconds to drain the outbox with durable marking, seconds until the hub stored all, bytes/entry).

    The collector runs in its own process, as on a hub machine: it does not share the agent's interpreter.
    """
    collector = subprocess.Popen([sys.executable, "-m", "sync.hub.cli", "collect", "--db", hub_url, "--host",
                                  "127.0.0.1", "--port", str(port), "--share-group", "", "--client-id", "bench"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    check = HubDB(hub_url)
    time.sleep(1.5)
    proxy = Proxy(port)
    settings = SyncSettings(enabled=True, host="127.0.0.1", port=proxy.port, batch_max_entries=2000,
                            batch_max_bytes=128_000, max_inflight=16, batch_wait_ms=0)
    agent = SyncAgent(settings, device_id="cp-bench-01", entries_path=path)
    started = time.perf_counter()
    agent.start()
    outbox = EntryReader(path)
    while outbox.outbox()["depth"]:
        time.sleep(0.005)
    drained = time.perf_counter() - started
    while not check.devices() or check.devices()[0]["entries"] < n:
        time.sleep(0.01)
    stored = time.perf_counter() - started
    check.close()
    wire = proxy.bytes_up / n
    agent.stop()
    proxy.close()
    collector.terminate()
    collector.wait(10)
    return drained, stored, wire


def collector_inserts(url: str, n: int, pg_insert: str = "copy") -> float:
    """Entries per second into the hub database, in batches as they arrive (500 each); on PostgreSQL by
    COPY or by multi-row INSERTs (pg_insert)."""
    rng = random.Random(4)
    batches = []
    for b in range(n // 500):
        entries = [WireEntry(str(uuid.uuid4()), b * 500 + i + 1, wall_ms(), mono_ns(), "boot", "src",
                             "".join(rng.choice("0123456789") for _ in range(12)), "allow", "listed", "l", 1, "v")
                   for i in range(500)]
        batches.append(decode_batch(encode_batch("cp-bench-02", wall_ms(), entries)))
    db = HubDB(url)
    db.pg_insert = pg_insert
    started = time.perf_counter()
    for batch in batches:
        db.store(batch, wall_ms())
    elapsed = time.perf_counter() - started
    db.close()
    return n / elapsed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--naive", type=int, default=5_000)
    parser.add_argument("--collector-only", action="store_true", help="only the collector's inserts/s")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.collector_only:
            broker = Broker(tmp / "broker").start()
            try:
                path = tmp / "entries.db"
                backlog(path, args.backlog)
                naive_rate, naive_wire = naive(path, broker.port, args.naive)
                drained, stored, wire = ours(path, broker.port, args.backlog, str(tmp / "hub.db"))
            finally:
                broker.stop()
            rate = args.backlog / drained
            print(f"Outbox -> broker -> hub, {args.backlog:,} entries with 12-digit codes, local Mosquitto, "
                  "QoS 1, synced marked in SQLite (synchronous=FULL) only after PUBACK")
            print(f"{'':<34}{'ours (batches)':>18}{'naive (1 msg, JSON)':>22}{'ratio':>8}")
            print(f"{'entries/s, durably marked':<34}{rate:>18,.0f}{naive_rate:>22,.0f}{rate / naive_rate:>7.1f}x")
            print(f"{f'drain {args.backlog:,}-entry backlog':<34}{drained:>16.2f} s"
                  f"{args.backlog / naive_rate:>20.1f} s{(args.backlog / naive_rate) / drained:>7.1f}x")
            print(f"{'until the hub stored all':<34}{stored:>16.2f} s{'':>22}")
            print(f"{'bytes on the wire per entry':<34}{wire:>18.1f}{naive_wire:>22.1f}{naive_wire / wire:>7.1f}x")
            print(f"(naive measured on the first {args.naive:,} entries; its drain time is extrapolated)")
        print("\nCollector inserts/s (batches of 500, idempotent by entry id)")
        sqlite_rate = collector_inserts(str(tmp / "hub-bench.db"), 50_000)
        print(f"{'SQLite':<34}{sqlite_rate:>18,.0f}")
        try:
            import psycopg

            print(f"{'PostgreSQL':<34}{'COPY':>18}{'multi-row INSERT':>22}{'ratio':>8}")
            rates = {}
            for way in ("copy", "values", "copy", "values"):  # alternated, each kept at its best of two
                name = f"checkpoint_bench_{uuid.uuid4().hex[:8]}"
                with psycopg.connect(PG, autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE {name}")
                try:
                    rate = collector_inserts(PG.rsplit('/', 1)[0] + '/' + name, 50_000, way)
                    rates[way] = max(rates.get(way, 0), rate)
                finally:
                    with psycopg.connect(PG, autocommit=True) as conn:
                        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            print(f"{'':<34}{rates['copy']:>18,.0f}{rates['values']:>22,.0f}"
                  f"{rates['copy'] / rates['values']:>7.1f}x")
        except Exception as exc:  # the benchmark reports what it could not measure and goes on
            print(f"{'PostgreSQL':<34}{'not measured: ' + str(exc)[:60]:>18}")


if __name__ == "__main__":
    main()
