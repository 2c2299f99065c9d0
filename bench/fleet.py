"""Fleet benchmark: simulated devices as real MQTT clients, two collectors, the dashboard under load.

    python -m bench.fleet [--devices 100,1000] [--processes 4] [--batches 5] [--entries 20] [--pg URL]

Per fleet size: a Mosquitto of its own with a password per device (each device its own client id and
credentials), the devices spread over a few processes, each publishing a retained status (with a last will)
and then batches of entries at QoS 1; two `checkpoint-hub collect` processes on the shared subscription
into a fresh PostgreSQL database; then `checkpoint-hub serve` is asked for the fleet table again and again
while the devices keep publishing statuses. Reports entries/s stored at the hub (first to last receive),
the fleet table's response times (p50, p99; target p99 <= 200 ms at 1,000 devices) for its first page (100
devices, as a browser asks) and for the whole table at once, each collector's own batch latency (its
--metrics), and the resident memory of the hub's processes.
"""
from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from argon2 import PasswordHasher

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("CHECKPOINT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

DEVICES = r"""
import json, sys, threading, time, uuid
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from edge.common.clock import wall_ms
from sync.wire.codec import WireEntry, encode_batch

port, batches, per_batch, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
names = sys.argv[5:]
clients, connected = [], threading.Semaphore(0)

def status(device):
    return json.dumps({"device": device, "state": "online", "sent_ms": wall_ms(),
                       "versions": {"software": "1.4.0", "config": "7", "lists": {"staff": 2}},
                       "outbox": {"depth": 0}, "source": {"name": "camera", "state": "running"},
                       "problems": [], "remote": {"config": {"all": {"version": 1}}, "groups": ["bench"]}})

for name in names:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.username_pw_set(name, "pw-" + name)
    c.will_set(f"checkpoint/{name}/status", json.dumps({"device": name, "state": "offline"}), qos=1, retain=True)
    c.on_connect = lambda *a: connected.release()
    c.connect_async("127.0.0.1", port, keepalive=60)
    c.loop_start()
    clients.append((name, c))
for _ in names:
    connected.acquire()
print("connected", flush=True)
sys.stdin.readline()  # the parent says go once every process is connected
infos = []
for name, c in clients:
    infos.append(c.publish(f"checkpoint/{name}/status", status(name), qos=1, retain=True))
seq = {name: 0 for name in names}
for b in range(batches):
    for name, c in clients:
        entries = []
        for _ in range(per_batch):
            seq[name] += 1
            entries.append(WireEntry(id=str(uuid.uuid4()), seq=seq[name], wall_ms=wall_ms(), mono_ns=seq[name],
                                     boot_id="bench", source="lines:bench", code=f"{seq[name]:012d}",
                                     decision="allow", reason="listed", list_name="staff", list_version=2,
                                     config_version="7"))
        infos.append(c.publish(f"checkpoint/{name}/entries", encode_batch(name, wall_ms(), entries), qos=1))
for info in infos:
    info.wait_for_publish(120)
print("published", flush=True)
for r in range(rounds):  # statuses while the dashboard is being asked
    for name, c in clients:
        c.publish(f"checkpoint/{name}/status", status(name), qos=1, retain=True)
    time.sleep(1)
print("done", flush=True)
sys.stdin.readline()
for _, c in clients:
    c.disconnect()
    c.loop_stop()
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def login(port: int):
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            page = opener.open(base + "/login", timeout=10).read().decode()
            break
        except OSError:
            time.sleep(0.1)
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    opener.open(base + "/login", data=urllib.parse.urlencode(
        {"name": "bench", "password": "bench-password", "csrf": token, "next": "/"}).encode(), timeout=30).read()
    return opener, base


def collector_latency(port: int) -> dict:
    """A collector's own /metrics (`collect --metrics`): its batches, and their mean receipt-to-commit time."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    got = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}
    batches = got.get("checkpoint_collector_batch_latency_seconds_count", 0)
    return {"batches": int(batches), "inserted": int(got.get("checkpoint_collector_entries_inserted_total", 0)),
            "mean": round(got.get("checkpoint_collector_batch_latency_seconds_sum", 0) * 1000 / max(batches, 1), 1)}


def fresh_database(admin: str) -> str:
    import psycopg

    name = f"checkpoint_fleet_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return admin.rsplit("/", 1)[0] + "/" + name


def count(url: str) -> tuple[int, int, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        n, first, last = conn.execute("SELECT COUNT(*), MIN(received_ms), MAX(received_ms) FROM hub_entries").fetchone()
    return n, first or 0, last or 0


def run(size: int, processes: int, batches: int, per_batch: int, admin: str, requests: int) -> dict:
    from sync.hub.hubdb import HubDB
    from tests.broker import Broker, free_port

    folder = Path(tempfile.mkdtemp(prefix="checkpoint-fleet-"))
    names = [f"cp-{i:04d}" for i in range(size)]
    passwd = folder / "passwd"
    passwd.write_text("".join(f"{n}:pw-{n}\n" for n in names) + "collector:pw-collector\n")
    subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True)
    broker = Broker(folder / "broker", password_file=passwd, anonymous=False).start()
    url = fresh_database(admin)
    HubDB(url).close()  # the schema, before two collectors race to make it
    secret = folder / "collector.pw"
    secret.write_text("pw-collector\n")
    procs = []
    try:
        metrics_ports = [free_port() for _ in range(2)]
        collectors = [subprocess.Popen([sys.executable, "-m", "sync.hub.cli", "collect", "--db", url,
                                        "--host", "127.0.0.1", "--port", str(broker.port), "--username", "collector",
                                        "--password-file", str(secret), "--client-id", f"collector-{i}",
                                        "--metrics", f"127.0.0.1:{metrics_ports[i]}"], cwd=ROOT,
                                       stderr=(folder / f"collector-{i}.log").open("w")) for i in range(2)]
        procs += collectors
        time.sleep(2)  # the collectors' subscriptions (a benchmark, not a test: nothing asserted on it)
        chunks = [names[i::processes] for i in range(processes)]
        devices = [subprocess.Popen([sys.executable, "-c", DEVICES, str(broker.port), str(batches), str(per_batch),
                                     "30", *chunk], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    text=True) for chunk in chunks]
        procs += devices
        for d in devices:
            assert d.stdout.readline().strip() == "connected"
        start = time.monotonic()
        for d in devices:
            d.stdin.write("go\n")
            d.stdin.flush()
        for d in devices:
            assert d.stdout.readline().strip() == "published"
        expected = size * batches * per_batch
        deadline = time.monotonic() + 600
        while (stored := count(url))[0] < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        wall_s = time.monotonic() - start
        n, first, last = stored
        # The dashboard, asked while the devices keep publishing statuses: as browsers do (a request every
        # 50 ms, the shared table rebuilt in the background each second), and cold (--cache-s 0: built for
        # every request, as the first viewer after a quiet while waits).
        admins = folder / "admins.toml"
        admins.write_text(f'[admins]\nbench = "{PasswordHasher().hash("bench-password")}"\n')
        results = {}
        # The table is paged (100 devices a page by default); the whole table at once (?per=1000) beside.
        for label, path, cache_s, pace_s, asked in (
                ("fleet_rows_ms", "/fleet/rows", "1", 0.05, requests),
                ("fleet_rows_cold_ms", "/fleet/rows", "0", 0.0, max(requests // 4, 20)),
                ("fleet_rows_whole_cold_ms", "/fleet/rows?per=1000", "0", 0.0, max(requests // 4, 20))):
            port = free_port()
            dashboard = subprocess.Popen([sys.executable, "-m", "sync.hub.dashboard.cli", "serve", "--db", url,
                                          "--admins", str(admins), "--listen", f"127.0.0.1:{port}",
                                          "--cache-s", cache_s], cwd=ROOT, stderr=subprocess.DEVNULL)
            procs.append(dashboard)
            opener, base = login(port)
            times = []
            for _ in range(asked):
                t = time.perf_counter()
                body = opener.open(base + path, timeout=30).read()
                times.append((time.perf_counter() - t) * 1000)
                time.sleep(pace_s)
            shown = size if "per=1000" in path else min(size, 100)
            assert body.count(b"data-device=") == shown, "the fleet table does not show its page of devices"
            times.sort()
            results[label] = {"p50": round(statistics.median(times), 1),
                              "p99": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
                              "max": round(times[-1], 1), "kb": round(len(body) / 1024, 1),
                              "dashboard_rss_mb": round(rss_mb(dashboard.pid), 1)}
        t = time.perf_counter()
        opener.open(base + "/metrics", timeout=30).read()
        metrics_ms = (time.perf_counter() - t) * 1000
        memory = {"collectors_mb": [round(rss_mb(c.pid), 1) for c in collectors],
                  "broker_mb": round(rss_mb(broker.proc.pid), 1)}
        memory["collector_batch_latency_ms"] = [
            collector_latency(port) if c.poll() is None else f"exited {c.returncode}: see {folder}/collector-{i}.log"
            for i, (c, port) in enumerate(zip(collectors, metrics_ports))]
        for d in devices:
            d.stdout.readline()
            d.stdin.write("stop\n")
            d.stdin.flush()
        return {"devices": size, "entries": n, "expected": expected, "wall_s": round(wall_s, 2),
                "entries_per_s_at_hub": round(n / max((last - first) / 1000, 0.001)),
                **results, "metrics_ms": round(metrics_ms, 1), **memory}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()
        import psycopg

        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", default="100,1000", help="fleet sizes, comma-separated")
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--batches", type=int, default=5, help="batches per device")
    p.add_argument("--entries", type=int, default=20, help="entries per batch")
    p.add_argument("--requests", type=int, default=200, help="fleet table requests measured")
    p.add_argument("--pg", default=PG, help="PostgreSQL admin URL (a database is made and dropped per size)")
    args = p.parse_args(argv)
    for size in (int(s) for s in args.devices.split(",")):
        print(json.dumps(run(size, args.processes, args.batches, args.entries, args.pg, args.requests)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
