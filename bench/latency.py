"""Frame-to-signal latency and CPU use of the whole pipeline, with real SQLite commits.

    python -m bench.latency [--seconds 10] [--fps 30]

A replay source paced like a camera feeds 1280x720 frames; every code is new (record mode, no debounce),
so each one is decoded, decided, committed with synchronous=FULL, and signalled on a recording output.
Measured: arrival -> signal() (decode + decide + commit) and arrival -> output switched on, p50/p99, for
our multipass decoder beside zxing-cpp alone and pyzbar alone; then CPU use at that frame rate with no code
in view, and with a motion-blurred code in view (where the second passes run).

    python -m bench.latency --text [--scans 3000]

Text scans alone (a scanner in keyboard mode): every line a new code, record mode, sync off, through the
real pipeline; scans/s and scan-to-signal p50/p99 beside a bare SQLite commit (WAL, synchronous=FULL,
same disk) measured in the same run, so per-scan work other than the commit cannot grow unseen.
"""
from __future__ import annotations

import argparse
import resource
import sqlite3
import tempfile
import time
from pathlib import Path

from bench.synth import frame
from drivers.outputs.fake import FakeOutput
from drivers.sources.base import Source, TextScan
from drivers.sources.camera import FrameSource
from edge.app.pipeline import Pipeline
from edge.app.signals import Signaller
from edge.common.clock import mono_ns
from edge.decode.debounce import Debouncer
from edge.decode.reader import make_decoder
from edge.entries.store import EntryStore
from edge.lists import ListStore
from edge.rules.policy import Policy
from edge.settings.schema import parse_settings


class MemoryFrames:
    """Frames held decoded in memory, so the run measures the pipeline, not JPEG decoding of the replay."""

    def __init__(self, images):
        self.images, self._next = images, 0

    def open(self) -> None:
        self._next = 0

    rewind = open

    def read(self):
        if self._next >= len(self.images):
            return None
        self._next += 1
        return self.images[self._next - 1]

    def close(self) -> None:
        pass


class MemoryLines(Source):
    """Text scans from memory, each stamped as it is handed over: scan-to-signal is then the pipeline's
    own time (decide + commit + signal), not time spent waiting in a queue."""

    name = "bench-lines"

    def __init__(self, count: int):
        super().__init__()
        self.count, self._next = count, 0
        self.stats.state = "ok"

    def get(self, timeout: float):
        if self._next >= self.count:
            self.finished = True
            return None
        self._next += 1
        self.stats.delivered += 1
        return TextScan(f"TICKET-{self._next:08d}".encode(), mono_ns())


def run_text(count: int, state: Path) -> dict:
    """count text scans through the real pipeline (record mode, no debounce, no sync)."""
    settings = parse_settings({
        "source": {"type": "lines", "path": "-"},
        "decision": {"mode": "record"},
        "outputs": {"green": {"driver": "fake"}},
        "signals": {"allow": {"green": {"on_ms": 1}}},
    })
    signaller = Signaller({"green": FakeOutput("green")}, settings.signals)
    store = EntryStore(state / "text-entries.db")
    lists = ListStore(state / "text-lists.db")
    source = MemoryLines(count)
    scans = []
    pipeline = Pipeline(source=source, decoder=make_decoder("zxing"), debouncer=Debouncer(0),
                        policy=Policy(settings.decision, lists, store.last_allowed), store=store,
                        signaller=signaller, device_id="bench", config_version="bench", max_payload_bytes=2048,
                        on_scan=scans.append)
    start = time.perf_counter()
    while not source.finished:
        pipeline.step(0.1)
    wall = time.perf_counter() - start
    signaller.close()
    store.close()
    lists.close()
    return {"scans": len(scans), "per_s": len(scans) / wall,
            "to_signal": [(s.signalled_ns - s.arrived_ns) / 1e6 for s in scans]}


def bare_commits(count: int, state: Path) -> list[float]:
    """One small row per transaction, WAL and synchronous=FULL, as the store commits: the floor."""
    conn = sqlite3.connect(state / "bare.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, code TEXT NOT NULL)")
    times = []
    for i in range(count):
        t0 = mono_ns()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (code) VALUES (?)", (f"TICKET-{i:08d}",))
        conn.execute("COMMIT")
        times.append((mono_ns() - t0) / 1e6)
    conn.close()
    return times


def text_report(count: int, folder: str | None = None) -> None:
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        state = Path(tmp)
        bare = bare_commits(count, state)
        text = run_text(count, state)
    bare_per_s = len(bare) / (sum(bare) / 1000)
    print(f"Text scans: {count} new codes through the pipeline (record mode, sync off), beside {count} bare "
          "SQLite commits (WAL, synchronous=FULL, same disk)")
    print(f"{'':<22}{'pipeline':>12}{'bare commit':>14}{'ratio':>9}")
    print(f"{'per second':<22}{text['per_s']:>12.0f}{bare_per_s:>14.0f}{text['per_s'] / bare_per_s:>8.2f}x")
    for q in (50, 99):
        ours, floor = pct(text["to_signal"], q), pct(bare, q)
        print(f"{f'scan->signal p{q}':<22}{ours:>9.3f} ms{floor:>11.3f} ms{ours / floor:>8.2f}x")


def make_frames(count: int, condition: str) -> list:
    return [frame(condition, 9000 + i).image for i in range(count)]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100 * len(values)))]


def run_pipeline(images: list, decoder: str, fps: float, seconds: float, state: Path) -> dict:
    settings = parse_settings({
        "source": {"type": "replay", "path": "unused", "fps": fps},
        "decision": {"mode": "record"},
        "outputs": {"green": {"driver": "fake"}},
        "signals": {"allow": {"green": {"on_ms": 5}}},
    })
    switched_on: list[int] = []
    green = FakeOutput("green", on_change=lambda name, on: on and switched_on.append(mono_ns()))
    signaller = Signaller({"green": green}, settings.signals)
    store = EntryStore(state / f"{decoder}-{fps}-entries.db")
    lists = ListStore(state / "lists.db")
    source = FrameSource(MemoryFrames(images), name="bench", fps=fps, loop=True)
    scans = []
    pipeline = Pipeline(source=source, decoder=make_decoder(decoder), debouncer=Debouncer(0),
                        policy=Policy(settings.decision, lists, store.last_allowed), store=store,
                        signaller=signaller, device_id="bench", config_version="bench", max_payload_bytes=2048,
                        on_scan=scans.append)
    source.start()
    cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    while time.monotonic() - wall0 < seconds:
        pipeline.step(0.1)
    cpu1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    source.close()
    signaller.close()
    store.close()
    cpu = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / (wall1 - wall0)
    to_signal = [(s.signalled_ns - s.arrived_ns) / 1e6 for s in scans]
    # Each switch-on belongs to the newest scan signalled before it.
    to_output, i = [], 0
    for on_ns in switched_on:
        while i + 1 < len(scans) and scans[i + 1].signalled_ns <= on_ns:
            i += 1
        if scans and scans[i].signalled_ns <= on_ns:
            to_output.append((on_ns - scans[i].arrived_ns) / 1e6)
    return {"frames": pipeline.frames, "scans": len(scans), "dropped": source.stats.dropped,
            "delivered": source.stats.delivered, "cpu": cpu * 100, "wall": wall1 - wall0,
            "to_signal": to_signal, "to_output": to_output}


DECODERS = ("multipass", "zxing", "pyzbar")  # ours, then the single libraries a user would otherwise pick


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--text", action="store_true", help="text scans only (no camera frames)")
    parser.add_argument("--scans", type=int, default=3000, help="text scans to run")
    parser.add_argument("--dir", help="where the databases go (default: a temporary folder; pick the disk "
                        "the appliance writes to)")
    args = parser.parse_args(argv)
    text_report(args.scans, args.dir)
    if args.text:
        return
    head = f"{'':<28}" + "".join(f"{n:>14}" for n in DECODERS)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        # Codes are shown at 5 frames a second (one new traveller every 200 ms): a code every 6th frame at 30 fps.
        with_code = make_frames(60, "clean")
        results = {name: run_pipeline(with_code, name, 5.0, args.seconds, state) for name in DECODERS}
        print(f"Frame arrival -> signal, {args.seconds:.0f} s per decoder, a new code 5 times a second "
              "(1280x720 JPEG), record mode, SQLite WAL synchronous=FULL")
        print(head + f"{'zxing/ours':>12}")
        for key, label in (("to_signal", "arrival->signal() p50"), ("to_signal", "arrival->signal() p99"),
                           ("to_output", "arrival->output on p50"), ("to_output", "arrival->output on p99")):
            q = 50 if "p50" in label else 99
            values = [pct(results[n][key], q) for n in DECODERS]
            print(f"{label:<28}" + "".join(f"{v:>11.2f} ms" for v in values) + f"{values[1] / values[0]:>11.2f}x")
        print(f"{'scans recorded':<28}" + "".join(f"{results[n]['scans']:>14}" for n in DECODERS))
        # No code in view is the common case; a code no pass can read (too blurred) is the worst for multipass,
        # whose second passes then run on every frame up to their budget.
        for condition, title in (("none", "No code in view"), ("motion", "A motion-blurred code in view")):
            idle = {n: run_pipeline(make_frames(30, condition), n, args.fps, args.seconds, state) for n in DECODERS}
            print(f"\n{title}, {args.fps:.0f} fps of 1280x720 for {args.seconds:.0f} s")
            print(head)
            print(f"{'CPU (one core = 100 %)':<28}" + "".join(f"{idle[n]['cpu']:>12.1f} %" for n in DECODERS))
            print(f"{'frames decoded':<28}" + "".join(f"{idle[n]['frames']:>14}" for n in DECODERS))
            print(f"{'frames dropped':<28}" + "".join(f"{idle[n]['dropped']:>14}" for n in DECODERS))
            print(f"{'offered frames/s':<28}" + "".join(
                f"{(idle[n]['frames'] + idle[n]['dropped']) / idle[n]['wall']:>14.1f}" for n in DECODERS))


if __name__ == "__main__":
    main()
