"""Pushed-list benchmark: a large hashed list built, signed, sent through a local Mosquitto and applied
on a device, then a delta; lookups measured all along, beside the ways a user would otherwise pick.

    python -m bench.remote [--entries 10000000] [--delta 100000] [--switch-interval SECONDS]

Steps timed: CSV → hub list file with keyed hashes; chunk and sign; publish (retained); device fetch +
verify + build + swap; delta prepare, publish, apply; a fold of the delta's overlay. A "scanner" thread
in the device's process looks codes up every 5 ms through its own ListStore, as the pipeline does, the
whole time (the hub runs in a process of its own, as it runs on another machine): its lookup latency
(p50/p99) in each phase, and its longest pause beyond the 5 ms beat, are the pause a list update causes.
Then quiet lookups, in turns with the same keys in a SQLite B-tree (the list file before keys files, and
what a user would otherwise pick), one cached page read, in-memory SQLite and a Python set. Bytes per
entry on the device, beside the v0.1 one-table layout (text codes). The daemon's RSS (`checkpoint run`,
the real process) with the list and with no list, beside a plain Python set of the same codes (what
loading the list into memory would cost).
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import mmap
import multiprocessing
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from edge.app.daemon import GIL_SWITCH_S
from edge.entries.store import EntryStore
from edge.lists import KeyedHash, ListStore
from edge.lists.keysfile import DENY, KeysFile
from edge.settings.layers import load_settings
from sync.device.agent import SyncAgent
from sync.device.remote import Receiver
from sync.hub import admin
from sync.wire.bundle import new_private, private_pem, public_text
from sync.wire.mqtt import make_client
from tests.broker import Broker

CONFIG = """
[device]
id = "bench-01"
[source]
type = "lines"
path = "{fifo}"
[store]
dir = "{dir}"
[decision]
mode = "allowlist"
[sync]
enabled = {sync}
host = "127.0.0.1"
port = {port}
[remote]
enabled = {sync}
trusted_keys = ["{public}"]
hash_key_file = "{hash_key}"
"""


def code(i: int) -> str:
    return f"{(i * 999_999_937 + 123_456_789) % 10**12:012d}"  # distinct 12-digit ID numbers


def write_csv(path: Path, indexes) -> None:
    with path.open("w") as fh:
        fh.write("code\n")
        for i in indexes:
            fh.write(code(i) + "\n")


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


class Scanner(threading.Thread):
    """Looks a code up every 5 ms, as the pipeline would on each scan; records latency and pauses."""

    def __init__(self, lists_path: Path, hash_keys: dict, n: int):
        super().__init__(daemon=True)
        self.lists_path, self.hash_keys, self.n = lists_path, hash_keys, n
        self.samples: list[tuple[str, float, float]] = []  # (phase, lookup µs, pause ms)
        self.phase = "before"
        self.slow: list[tuple[float, str, float, float]] = []  # (time.time(), phase, lookup ms, pause ms)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.lists_path.exists():
            time.sleep(0.01)
        store = ListStore(self.lists_path, readonly=True, hash_keys=self.hash_keys)
        rng = random.Random(1)
        last = time.perf_counter()
        while not self.stop.is_set():
            i = rng.randrange(self.n * 2)  # half of the codes are on the list
            t0 = time.perf_counter()
            store.lookup(code(i))
            t1 = time.perf_counter()
            # The pause the scan sees: from the end of the last lookup to the end of this one, beyond the beat.
            pause = (t1 - last) * 1000 - 5.0
            self.samples.append((self.phase, (t1 - t0) * 1e6, max(0.0, pause)))
            if pause > 20:
                self.slow.append((time.time(), self.phase, (t1 - t0) * 1000, pause))
            time.sleep(0.005)
            last = t1
        store.close()

    def report(self, phase: str) -> str:
        rows = [s for s in self.samples if s[0] == phase]
        if not rows:
            return f"{phase:<16} no lookups"
        lat = [r[1] for r in rows]
        return (f"{phase:<16} {len(rows):>6} lookups  p50 {pct(lat, .5):7.1f} µs  p99 {pct(lat, .99):7.1f} µs  "
                f"max {max(lat) / 1000:6.1f} ms   longest pause {max(r[2] for r in rows):6.1f} ms")


def list_bytes(folder: Path, name: str) -> int:
    """Bytes of a list's files: its SQLite file with its -wal and -shm, and its keys file."""
    return sum(p.stat().st_size for p in folder.glob(f"{name}.*") if p.is_file())


def btree_of(keys_path: Path, path: Path) -> sqlite3.Connection:
    """The same keys in a SQLite table keyed by them: what a list file held before keys files, and what a
    user would otherwise pick."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("CREATE TABLE entries (code BLOB PRIMARY KEY, deny INTEGER NOT NULL) WITHOUT ROWID")
    keys = KeysFile(keys_path)
    db.execute("BEGIN")
    db.executemany("INSERT INTO entries VALUES (?, ?)", ((k, f & DENY) for k, f in keys))
    db.execute("COMMIT")
    keys.close()
    db.execute("PRAGMA cache_size = -4096")  # as a list file's reader has it
    return db


def resident_share(path: Path) -> float:
    """The share of a file's pages in the page cache (mincore on a mapping of it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype, libc.mmap.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                                              ctypes.c_int, ctypes.c_int, ctypes.c_long]
    size = path.stat().st_size
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    with path.open("rb") as fh:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fh.fileno(), 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        return float("nan")
    try:
        vec = (ctypes.c_ubyte * pages)()
        if libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) != 0:
            return float("nan")
        return sum(b & 1 for b in vec) / pages
    finally:
        libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(size))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def daemon_rss(config: Path, fifo: Path, codes: list[str]) -> int:
    """RSS of the real daemon after it decided `codes` (each a lookup), in KiB."""
    proc = subprocess.Popen([sys.executable, "-m", "edge.app.cli", "run", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with fifo.open("w") as fh:
            for c in codes:
                fh.write(c + "\n")
                fh.flush()
                time.sleep(0.002)
        settings = load_settings(config, remote=False)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            db = sqlite3.connect(settings.store.entries_path)
            try:
                if db.execute("SELECT count(*) FROM entries").fetchone()[0] >= len(codes):
                    break
            except sqlite3.Error:
                pass
            finally:
                db.close()
            time.sleep(0.2)
        return rss_kib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def in_background() -> None:
    """The hub's process runs only on CPU time the device leaves idle (SCHED_IDLE): it stands for another
    machine, whose work must not take the device's cores (niced 10, it still delayed the scanner by 110 ms
    on this 2-core VM)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        os.nice(19)


def hub_push(folder: Path, csv_name: str, hash_key: bytes, port: int) -> dict:
    """The hub's side, run in a process of its own (the hub is another machine): prepare and publish a
    version of the list; returns its timings and when publishing began (time.time())."""
    hub = admin.HubLists(folder / "hub", "all")
    key = admin.read_private(folder / "admin.key")
    try:
        t = time.perf_counter()
        push = hub.prepare(key, "all", "citizens", folder / csv_name, hash_key=hash_key, zone="UTC",
                           max_code_bytes=64, expires_s=86400)
        prepared = time.perf_counter() - t
        publisher = admin.Publisher(make_client(client_id=f"bench-admin-{os.getpid()}"), "127.0.0.1", port,
                                    timeout=600)
        began = time.time()
        t = time.perf_counter()
        hub.publish(publisher, "checkpoint", "all", push)
        published = time.perf_counter() - t
        publisher.close()
        return {"prepare_s": prepared, "publish_s": published, "began": began, "chunks": len(push.chunks),
                "delta_bytes": len(push.delta or b"")}
    finally:
        hub.close()


def set_rss(n: int) -> int:
    """RSS growth of a Python process holding the codes in a set (the in-memory alternative), KiB."""
    script = ("import sys;from bench.remote import code, rss_kib;import os;b=rss_kib(os.getpid());"
              f"s={{code(i) for i in range({n})}};print(rss_kib(os.getpid())-b)")
    return int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)


def v01_bytes(n: int, folder: Path) -> float:
    """Bytes per entry in the v0.1 layout: every list in one table, (list, code TEXT) as the key."""
    path = folder / "v01.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("CREATE TABLE list_entries (list TEXT NOT NULL, code TEXT NOT NULL, deny INTEGER NOT NULL, "
               "label TEXT, valid_from INTEGER, valid_until INTEGER, PRIMARY KEY (list, code)) WITHOUT ROWID")
    db.executemany("INSERT INTO list_entries VALUES ('citizens', ?, 0, NULL, NULL, NULL)",
                   ((code(i),) for i in range(n)))
    db.commit()
    db.close()
    size = path.stat().st_size / n
    path.unlink()
    return size


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=10_000_000)
    ap.add_argument("--delta", type=int, default=100_000)
    ap.add_argument("--keep", help="folder to work in (kept)")
    ap.add_argument("--switch-interval", type=float, default=GIL_SWITCH_S,
                    help="sys.setswitchinterval for the device's process (default: the daemon's; Python's own is "
                         "0.005, under which the scanner paused up to 195 ms here)")
    ap.add_argument("--elsewhere", default="/dev/shm" if os.access("/dev/shm", os.W_OK) else None,
                    help="folder for the hub's and the broker's files (default /dev/shm, a disk of their own: "
                         "they are other machines, whose writes must not queue before the device's reads)")
    args = ap.parse_args(argv)
    n, nd = args.entries, args.delta
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench-remote-"))
    folder.mkdir(parents=True, exist_ok=True)
    away = Path(tempfile.mkdtemp(prefix="bench-remote-hub-", dir=args.elsewhere)) if args.elsewhere else folder
    t = time.perf_counter()
    s = 0
    for i in range(2_000_000):
        s += i
    print(f"machine speed: 2M-iteration Python loop in {time.perf_counter() - t:.2f} s (about 0.1 s on a quiet "
          "modern core)")

    sys.setswitchinterval(args.switch_interval)  # as the daemon does: this process stands for the device's
    print(f"GIL switch interval: {sys.getswitchinterval() * 1000:g} ms")
    # The device's log, with times to the millisecond, to set beside the slowest pauses.
    logging.basicConfig(filename=folder / "device.log", level=logging.INFO,
                        format="%(created).3f %(threadName)s %(name)s %(message)s")
    broker = Broker(away / "broker", extra="message_size_limit 33554432\n").start()
    key = new_private()
    (away / "admin.key").write_bytes(private_pem(key))
    hash_key = os.urandom(32)
    (folder / "hash-key").write_text(hash_key.hex())
    fifo = folder / "scans"
    os.mkfifo(fifo)
    config = folder / "device.toml"
    config.write_text(CONFIG.format(fifo=fifo, dir=folder / "device", sync="true", port=broker.port,
                                    public=public_text(key.public_key()), hash_key=folder / "hash-key"))
    steps = {}
    try:
        t = time.perf_counter()
        write_csv(away / "v1.csv", range(n))
        # The next version: nd/2 removed, nd/2 added. Written now, as the hub's work must not run in the
        # device's process while its lookups are measured.
        write_csv(away / "v2.csv", range(nd // 2, n + nd // 2))
        print(f"CSVs of {n:,} ID numbers written in {time.perf_counter() - t:.1f} s (setup)")

        settings = load_settings(config)
        EntryStore(settings.store.entries_path).close()
        receiver = Receiver(settings.remote, device_id="bench-01", prefix="checkpoint", config_path=config,
                            lists_path=settings.store.lists_path)
        agent = SyncAgent(settings.sync, device_id="bench-01", entries_path=settings.store.entries_path,
                          receiver=receiver)
        agent.start()
        gc.freeze()  # as the daemon does once started
        collections: list[tuple[float, int, float]] = []  # (time.time() at its end, generation, ms)
        collecting_since = [0.0]

        def on_collection(phase: str, info: dict) -> None:
            if phase == "start":
                collecting_since[0] = time.perf_counter()
            else:
                collections.append((time.time(), info["generation"],
                                    (time.perf_counter() - collecting_since[0]) * 1000))
        gc.callbacks.append(on_collection)
        scanner = Scanner(settings.store.lists_path, {admin.hash_key_id(hash_key): hash_key}, n)
        scanner.start()
        scanner.phase = "hub preparing"
        hub_process = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                          initializer=in_background)

        def version():
            store = ListStore(settings.store.lists_path, readonly=True)
            try:
                info = store.info("citizens")
                return info.version if info else 0
            finally:
                store.close()

        first = hub_process.submit(hub_push, away, "v1.csv", hash_key, broker.port)
        staging = settings.store.lists_path.parent / "lists.d" / "staging"
        while version() < 1:
            if scanner.phase == "hub preparing" and staging.is_dir() and any(staging.iterdir()):
                scanner.phase = "during transfer"  # the first chunk is in
            time.sleep(0.05)
        done = time.time()
        hub1 = first.result()
        steps["hub: CSV → hashed list, chunk, sign"] = hub1["prepare_s"]
        steps[f"publish {hub1['chunks']} chunks (retained)"] = hub1["publish_s"]
        steps["device: fetch, verify, build, swap (from first publish)"] = done - hub1["began"]
        steps["  of which building the list file"] = receiver.timings.get("snapshot_build_s", float("nan"))
        scanner.phase = "after swap"
        time.sleep(3)
        lists_dir = folder / "device" / "lists.d"
        on_disk = list_bytes(lists_dir, "citizens")

        scanner.phase = "during delta"
        second = hub_process.submit(hub_push, away, "v2.csv", hash_key, broker.port)
        while version() < 2:
            time.sleep(0.05)
        done = time.time()
        hub2 = second.result()
        hub_process.shutdown()
        steps[f"hub: prepare v2 (diff of {n:,}) and sign the delta"] = hub2["prepare_s"]
        steps["publish v2 (snapshot chunks + delta)"] = hub2["publish_s"]
        steps[f"device: delta of {nd:,} received and applied (from publish)"] = done - hub2["began"]
        steps[f"  of which applying the {nd:,}-entry delta"] = receiver.timings.get("delta_apply_s", float("nan"))
        scanner.phase = "after delta"
        time.sleep(3)
        after_delta = list_bytes(lists_dir, "citizens")
        # Deltas go to an overlay, folded into the entries once it grows large (once in many deltas): timed
        # here on this one, with the scanner looking codes up meanwhile.
        scanner.phase = "during fold"
        writer = ListStore(settings.store.lists_path)
        t = time.perf_counter()
        folded = writer.fold("citizens", at_rows=1)
        steps[f"device: fold the overlay's {folded:,} rows into the entries (once in many deltas)"] = \
            time.perf_counter() - t
        writer.close()
        scanner.phase = "after fold"
        time.sleep(3)
        scanner.stop.set()
        scanner.join()
        agent.stop()
        # Beside them, at the same pace: one read of a cached page (the least a list on disk costs), the same
        # keys in a SQLite B-tree (the v0.2 list file; what a user would otherwise pick), lookups that touch no
        # file at all (what this machine's wake-up costs any design), and the in-memory set.
        store = ListStore(settings.store.lists_path, readonly=True, hash_keys=scanner.hash_keys)
        [keys_file] = lists_dir.glob("citizens.*.db.k*")  # which lookups read
        t = time.perf_counter()
        btree = btree_of(keys_file, folder / "btree.db")
        os.sync()  # its writeback would otherwise run during the measurements below
        print(f"(the same keys put in a SQLite B-tree for comparison in {time.perf_counter() - t:.1f} s)")
        hasher = KeyedHash(hash_key)
        memory = sqlite3.connect(":memory:")
        memory.execute("CREATE TABLE entries (code TEXT PRIMARY KEY) WITHOUT ROWID")
        memory.executemany("INSERT INTO entries VALUES (?)", ((code(i),) for i in range(100_000)))
        in_set = {code(i) for i in range(100_000)}
        page = os.open(keys_file, os.O_RDONLY)
        pages = os.fstat(page).st_size // 4096
        ways = {"SQLite B-tree, same keys": lambda c: btree.execute("SELECT deny FROM entries WHERE code = ?",
                                                                    (hasher(c),)).fetchone(),
                "one cached page read": lambda c: os.pread(page, 4096, 4096 * (hash(c) % pages)),
                "SQLite :memory:, 100k": lambda c: memory.execute("SELECT 1 FROM entries WHERE code = ?",
                                                                   (c,)).fetchone(),
                "Python set, 100k": in_set.__contains__}
        rng = random.Random(2)

        def measure(lookup, paced: int, burst: int) -> tuple[list[float], list[float]]:
            """Lookups every 5 ms, then back to back: their latencies in µs, after 1,000 not counted (the
            interpreter and the CPU's caches warm to the code measured)."""
            for _ in range(1000):
                lookup(code(rng.randrange(2 * n)))
            runs = []
            for pace, count in ((0.005, paced), (0.0, burst)):
                lat = []
                for _ in range(count):
                    c = code(rng.randrange(2 * n))
                    t0 = time.perf_counter()
                    lookup(c)
                    lat.append((time.perf_counter() - t0) * 1e6)
                    if pace:
                        time.sleep(pace)
                runs.append(lat)
            return runs[0], runs[1]

        # Where the kernel reclaims page cache it deems cold (this VM's kdamond does), some lookups wait for
        # the disk: measured as found, then with the whole file read back into the page cache, in rounds
        # that take turns with the other ways, so that the machine's slower moments fall on each alike.
        quiet = {f"our list, quiet, {resident_share(keys_file):.1%} cached": measure(store.lookup, 2000, 20000)}
        with keys_file.open("rb") as fh:
            while fh.read(1 << 20):
                pass
        cached = f"the same, {resident_share(keys_file):.1%}"
        ways = {cached: store.lookup, **ways}
        for label in ways:
            quiet[label] = ([], [])
        for _ in range(4):
            for label, lookup in ways.items():
                paced, burst = measure(lookup, 500, 5000)
                quiet[label][0].extend(paced)
                quiet[label][1].extend(burst)
        # The share still cached once the rounds are over: what the kernel took back meanwhile.
        after = f"{cached}→{resident_share(keys_file):.0%} cached"
        quiet = {after if label == cached else label: runs for label, runs in quiet.items()}
        store.close()
        memory.close()
        btree.close()
        (folder / "btree.db").unlink()
        os.close(page)

        print(f"\n{n:,}-entry hashed list, delta of {nd:,} ({hub2['delta_bytes']:,} bytes signed)")
        for name, seconds in steps.items():
            print(f"  {name:<60} {seconds:8.2f} s")
        print("\nlookups by a scanning thread in the device's process (every 5 ms):")
        for phase in ("hub preparing", "during transfer", "after swap", "during delta", "after delta",
                      "during fold", "after fold"):
            print("  " + scanner.report(phase))
        print("\nthe same lookups with nothing else running, every 5 ms and back to back, beside the least a list"
              " kept on disk costs\n(one read of a cached page of its file) and lookups that touch no disk (on a"
              " virtual machine a thread that slept\n5 ms wakes on cold caches, whatever it looks up):")
        for label, (paced, burst) in quiet.items():
            print(f"  {label:<30} every 5 ms p50 {pct(paced, .5):7.1f} µs  p99 {pct(paced, .99):7.1f} µs   "
                  f"back to back p50 {pct(burst, .5):6.1f} µs  p99 {pct(burst, .99):6.1f} µs")
        began = {"hub preparing": hub1["began"], "during transfer": hub1["began"], "during delta": hub2["began"]}
        slowest = sorted(scanner.slow, key=lambda s: -s[3])[:5]
        if slowest:
            print(f"\nthe longest pauses, timed from the version's publish (device log: {folder / 'device.log'}):")
        for when, phase, lookup_ms, pause_ms in slowest:
            print(f"  {phase:<16} at {when - began.get(phase, when):+8.3f} s  pause {pause_ms:6.1f} ms, of which the "
                  f"lookup {lookup_ms:6.1f} ms  ({when:.3f})")
        gc.callbacks.remove(on_collection)
        longest = sorted(collections, key=lambda c: -c[2])[:3]
        print(f"garbage collections in the device's process: {len(collections):,}, the longest "
              + ", ".join(f"{ms:.1f} ms (generation {gen}, {when:.3f})" for when, gen, ms in longest))
        v01 = v01_bytes(min(n, 1_000_000), folder)
        print(f"\non the device: {on_disk / n:.1f} bytes per entry (hashed keys in a keys file, details in SQLite), "
              f"{after_delta / n:.1f} after the delta (its overlay and WAL)   "
              f"v0.1 one-table layout with text codes: {v01:.1f} bytes per entry ({v01 / (on_disk / n):.2f}×)")

        config.write_text(config.read_text().replace("enabled = true", "enabled = false"))
        with_list = daemon_rss(config, fifo, [code(i) for i in range(0, 2 * n, max(1, n // 500))])
        empty = folder / "empty.toml"
        empty.write_text(config.read_text().replace(str(folder / "device"), str(folder / "empty-device")))
        without = daemon_rss(empty, fifo, [code(i) for i in range(0, 2 * n, max(1, n // 500))])
        in_set = set_rss(min(n, 2_000_000)) * (n / min(n, 2_000_000))
        print(f"daemon RSS: {with_list / 1024:.1f} MiB with the {n:,}-entry list, {without / 1024:.1f} MiB with "
              f"no list (+{(with_list - without) / 1024:.1f} MiB);   the codes in a Python set: "
              f"+{in_set / 1024:.0f} MiB")
    finally:
        broker.stop()
        if away != folder:
            shutil.rmtree(away, ignore_errors=True)  # a tmpfs holds it in memory


if __name__ == "__main__":
    main()
