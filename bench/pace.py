"""The pipeline's pace on a Pi 4's class of CPU, beside this machine's own, in one run.

    python -m bench.pace [--seconds 10] [--rounds 3] [--fps 30] [--factor F]

A paced replay plays a checkpoint's camera at --fps: travellers each hold a code still for 0.4 s, with
0.2 s of empty scene between them, the codes drawn by bench/synth.py under its conditions (clean, blurred,
motion-blurred, curved, small, glare, dark, ...). Each run is the real multipass decoder, the real
pipeline (record mode, the default debounce) and a real SQLite store, in a child process pinned to one
core (`taskset -c 0`). Four configurations: the second-pass budget fixed (budget = "fixed") and following
the frame interval (budget = "frame"), each unthrottled and throttled to a Pi 4's speed class; run in turn
for --rounds rounds, each round showing the next codes, and pooled, so load from other work on a shared
machine falls on all four alike.

The throttle is a CPU quota on a cgroup made for the run (cgroup v2 `cpu.max`, or the cgroup v1 cpu
controller's `cpu.cfs_quota_us` where v2 has no cpu controller), the child moved in before it starts.
`systemd-run --scope -p CPUQuota=` does the same but needs systemd as PID 1. A quota is not a slower
core: within each period the process runs at full speed until its quota is spent, then waits for the next
period. So the period is as short as the kernel allows (a 1 ms quota over the share: about 3 ms), which
stretches every piece of work longer than about 1 ms as a slower core would; shorter work that happens to
fit in a period's quota is not slowed. That makes the throttled rows optimistic again.

The factor: a Pi 4 scores 1477.83 events/s in `sysbench cpu --threads=1` (sysbench 1.0.20, primes up to
10000; https://leoncode.co.uk/articles/raspberry-pi-benchmarks). The run measures the same command on
this machine's core 0 and sets the quota to the ratio, then measures it again inside the quota to show
the throttled core scores as a Pi 4 does. Caveat: sysbench's prime loop is scalar integer division, while
zxing-cpp and OpenCV gain more from x86's wide SIMD (AVX2/AVX-512) than from a Pi's NEON, so this
throttled core is, if anything, faster than a Pi 4 at decoding: read the throttled rows as a best case.
Without sysbench, give --factor.

Also measured: zxing-cpp alone back to back, unthrottled and throttled, the slowdown the quota gives a
busy core. Measured per configuration: travellers read (a code read on any frame of its showing), frames
decoded and dropped (the camera's newest-frame slot replaces a frame the decoder was too busy to take), ms
per decoded frame, the second-pass budget a frame got, frame arrival -> signal and showing -> signal p50/p99.
"""
from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.common.clock import mono_ns

PI4_SYSBENCH = 1477.83  # events/s, one thread, sysbench 1.0.20 cpu (source in the docstring)
MIN_QUOTA_US = 1000  # the kernel's smallest quota: the period is this over the share, as short as it can be
HOLD_S, GAP_S = 0.4, 0.2  # a traveller holds the code up this long; the scene is empty this long between
CONDITIONS = ("clean", "perspective", "blur", "motion", "glare", "dark", "small", "moire", "curved")
PER_CONDITION = 6


# ---- the throttle -----------------------------------------------------------------------------------------
class QuotaError(Exception):
    """No cgroup with a writable cpu controller here."""


def _mounts() -> list[tuple[str, str, set[str]]]:
    rows = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4:
            rows.append((parts[1], parts[2], set(parts[3].split(","))))
    return rows


class CpuQuota:
    """A cgroup whose processes together get `share` of one CPU, made for this run and removed after."""

    def __init__(self, share: float):
        self.share, self.quota_us = share, MIN_QUOTA_US
        self.period_us = min(1_000_000, round(MIN_QUOTA_US / share))
        self.path, self.kind = self._make(self.quota_us)

    def _make(self, quota_us: int) -> tuple[Path, str]:
        name = f"checkpoint-pace-{os.getpid()}"
        problems = []
        for mount, fstype, options in _mounts():
            try:
                if fstype == "cgroup2" and "cpu" in Path(mount, "cgroup.controllers").read_text().split():
                    Path(mount, "cgroup.subtree_control").write_text("+cpu")
                    path = Path(mount, name)
                    path.mkdir()
                    (path / "cpu.max").write_text(f"{quota_us} {self.period_us}")
                    return path, "cgroup v2 cpu.max"
                if fstype == "cgroup" and "cpu" in options:
                    path = Path(mount, name)
                    path.mkdir()
                    (path / "cpu.cfs_period_us").write_text(str(self.period_us))
                    (path / "cpu.cfs_quota_us").write_text(str(quota_us))
                    return path, "cgroup v1 cpu.cfs_quota_us"
            except OSError as exc:
                problems.append(f"{mount}: {exc}")
        raise QuotaError("no writable cgroup cpu controller (" + ("; ".join(problems) or "none mounted") + ")")

    def enter(self) -> None:
        """Move the calling process in: run in the child between fork and exec, before it does any work."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        try:
            self.path.rmdir()
        except OSError as exc:
            print(f"note: cgroup {self.path} not removed: {exc}", file=sys.stderr)


def pinned(argv: list[str]) -> list[str]:
    return ["taskset", "-c", "0", *argv] if shutil.which("taskset") else argv


def sysbench(quota: CpuQuota | None, runs: int = 3) -> float | None:
    """events/s of `sysbench cpu --threads=1` on core 0, the best of `runs` 1 s runs: on a shared machine
    the best is the one least disturbed by others."""
    if not shutil.which("sysbench"):
        return None
    scores = []
    for _ in range(runs):
        out = subprocess.run(pinned(["sysbench", "cpu", "--threads=1", "--time=1", "run"]), capture_output=True,
                             text=True, check=True, preexec_fn=quota.enter if quota else None)
        match = re.search(r"events per second:\s*([0-9.]+)", out.stdout)
        if match:
            scores.append(float(match.group(1)))
    return max(scores, default=None)


# ---- one run (the child) ----------------------------------------------------------------------------------
def make_frames(path: Path) -> None:
    from bench.synth import frame

    # Conditions in turn, so every run, however short, sees hard codes as well as easy ones.
    samples = [frame(cond, 7000 + 31 * i + k) for i in range(PER_CONDITION) for k, cond in enumerate(CONDITIONS)]
    empty = [frame("none", 6000 + i).image for i in range(4)]
    np.savez(path, codes=np.stack([s.image for s in samples]), empty=np.stack(empty),
             texts=np.array([s.texts[0] for s in samples]), conditions=np.array([s.condition for s in samples]))


class Showings:
    """The camera's frames: showing after showing, each one sample held for HOLD_S, then an empty scene.
    Each frame handed out is its own view, so the decoder's input names the showing it belongs to."""

    def __init__(self, codes, empty, fps: float, count: int, first: int = 0):
        hold, gap = max(1, round(HOLD_S * fps)), max(1, round(GAP_S * fps))
        self.schedule, self.showing_of, self.first_frame = [], {}, []
        self.samples = [(first + s) % len(codes) for s in range(count)]  # which code each showing holds
        for s in range(count):
            self.first_frame.append(len(self.schedule))
            for _ in range(hold):
                view = codes[self.samples[s]][...]
                self.showing_of[id(view)] = s
                self.schedule.append(view)
            self.schedule += [empty[(s + i) % len(empty)][...] for i in range(gap)]
        self.offered_ns: list[int] = []  # when each schedule position was handed to the camera slot

    def open(self) -> None:
        pass

    rewind = open

    def read(self):
        if len(self.offered_ns) >= len(self.schedule):
            return None
        self.offered_ns.append(mono_ns())
        return self.schedule[len(self.offered_ns) - 1]

    def close(self) -> None:
        pass


class Timed:
    """The decoder, with each frame's wall time, second-pass budget and reads noted by showing."""

    def __init__(self, decoder, showings: Showings):
        self.decoder, self.showings, self.name = decoder, showings, decoder.name
        self.ms: list[float] = []
        self.budgets: list[float] = []
        self.read_by_showing: dict[int, set[str]] = {}

    def decode(self, image):
        start = time.perf_counter()
        codes = self.decoder.decode(image)
        self.ms.append((time.perf_counter() - start) * 1000)
        self.budgets.append((self.decoder.last_budget_s or 0.0) * 1000)
        showing = self.showings.showing_of.get(id(image))
        if showing is not None:
            self.read_by_showing.setdefault(showing, set()).update(c.text for c in codes if c.text)
        return codes


def calibrate(args) -> dict:
    """zxing-cpp alone on the bench's frames, back to back: the core kept busy, so a quota slows it fully."""
    from edge.decode.reader import make_decoder

    data = np.load(args.frames)
    images = list(data["codes"]) + list(data["empty"])
    zxing = make_decoder("zxing")
    times = []
    end = time.perf_counter() + 3
    while time.perf_counter() < end:
        for image in images:
            start = time.perf_counter()
            zxing.decode(image)
            times.append((time.perf_counter() - start) * 1000)
    return {"ms": sum(times) / len(times)}


def child(args) -> dict:
    from drivers.outputs.fake import FakeOutput
    from drivers.sources.camera import FrameSource
    from edge.app.pipeline import Pipeline
    from edge.app.signals import Signaller
    from edge.decode.debounce import Debouncer
    from edge.decode.reader import make_decoder
    from edge.entries.store import EntryStore
    from edge.lists import ListStore
    from edge.rules.policy import Policy
    from edge.settings.schema import parse_settings

    data = np.load(args.frames)
    texts = [str(t) for t in data["texts"]]
    count = int(args.seconds / (HOLD_S + GAP_S))
    showings = Showings(list(data["codes"]), list(data["empty"]), args.fps, count, first=args.first)
    settings = parse_settings({
        "source": {"type": "replay", "path": "unused", "fps": args.fps},
        "decoder": {"budget": args.budget},
        "decision": {"mode": "record"},
        "outputs": {"green": {"driver": "fake"}},
        "signals": {"allow": {"green": {"on_ms": 5}}},
    })
    state = Path(args.state)
    signaller = Signaller({"green": FakeOutput("green")}, settings.signals)
    store = EntryStore(state / "entries.db")
    lists = ListStore(state / "lists.db")
    source = FrameSource(showings, name="bench", fps=args.fps)
    # The daemon's wiring: the decoder asks the source for its frame interval at every frame.
    decoder = Timed(make_decoder("multipass", settings.decoder.budget_ms, budget=settings.decoder.budget,
                                 frame_interval_s=lambda: source.frame_interval_s), showings)
    scans = []
    pipeline = Pipeline(source=source, decoder=decoder, debouncer=Debouncer(settings.decoder.debounce_ms * 1_000_000),
                        policy=Policy(settings.decision, lists, store.last_allowed), store=store,
                        signaller=signaller, device_id="bench", config_version="bench", max_payload_bytes=2048,
                        on_scan=scans.append)
    source.start()
    while not source.finished:
        pipeline.step(0.1)
    source.close()
    signaller.close()
    store.close()
    lists.close()
    shown = [texts[i] for i in showings.samples]
    read = [s for s in range(count) if shown[s] in decoder.read_by_showing.get(s, ())]
    # A showing's one scan (the debounce folds the rest): from its first frame offered to the signal.
    starts = [showings.offered_ns[f] for f in showings.first_frame if f < len(showings.offered_ns)]
    show_to_signal = []
    for scan in scans:
        at = bisect.bisect_right(starts, scan.arrived_ns) - 1
        if at >= 0 and shown[at] == scan.entry.code:
            show_to_signal.append((scan.signalled_ns - starts[at]) / 1e6)
    return {"showings": count, "read": len(read), "frames": pipeline.frames, "dropped": source.stats.dropped,
            "offered": len(showings.offered_ns), "ms": decoder.ms, "budget_ms": decoder.budgets,
            "to_signal": [(s.signalled_ns - s.arrived_ns) / 1e6 for s in scans], "show_to_signal": show_to_signal}


# ---- the report (the parent) ------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100 * len(values)))]


def run_child(args, budget: str, quota: CpuQuota | None, frames: Path, tmp: Path, first: int = 0) -> dict:
    state = tmp / f"{budget}-{'pi' if quota else 'here'}"
    state.mkdir(parents=True)
    mode = "--calibrate" if budget == "calibrate" else "--child"
    out = subprocess.run(pinned([sys.executable, "-m", "bench.pace", mode, "--budget", budget,
                                 "--frames", str(frames), "--state", str(state), "--seconds", str(args.seconds),
                                 "--fps", str(args.fps), "--first", str(first)]),
                         capture_output=True, text=True, preexec_fn=quota.enter if quota else None,
                         cwd=Path(__file__).resolve().parent.parent)
    if out.returncode != 0:
        raise SystemExit(f"run {budget} {'throttled' if quota else ''} failed:\n{out.stderr}")
    return json.loads(out.stdout)


ROWS = (("travellers read", lambda r: 100 * r["read"] / r["showings"], "{:.1f} %"),
        ("frames decoded", lambda r: r["frames"], "{:.0f}"),
        ("frames dropped", lambda r: r["dropped"], "{:.0f}"),
        ("dropped share", lambda r: 100 * r["dropped"] / max(1, r["offered"]), "{:.1f} %"),
        ("ms per frame (mean)", lambda r: sum(r["ms"]) / max(1, len(r["ms"])), "{:.1f}"),
        ("ms per frame p99", lambda r: pct(r["ms"], 99), "{:.1f}"),
        ("second-pass budget (mean ms)", lambda r: sum(r["budget_ms"]) / max(1, len(r["budget_ms"])), "{:.1f}"),
        ("arrival->signal p50 ms", lambda r: pct(r["to_signal"], 50), "{:.1f}"),
        ("arrival->signal p99 ms", lambda r: pct(r["to_signal"], 99), "{:.1f}"),
        ("shown->signal p50 ms", lambda r: pct(r["show_to_signal"], 50), "{:.1f}"),
        ("shown->signal p99 ms", lambda r: pct(r["show_to_signal"], 99), "{:.1f}"))


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else ("=" if a == b else "inf")


def report(results: dict, throttled: bool) -> None:
    envs = ("here", "pi") if throttled else ("here",)
    label = {"here": "this core", "pi": "throttled"}
    head = "".join(f"{label[e] + ' ' + b:>22}" for e in envs for b in ("fixed", "frame"))
    head += "".join(f"{label[e] + ' frame/fixed':>26}" for e in envs)
    if throttled:
        head += "".join(f"{'throttled/this ' + b:>22}" for b in ("fixed", "frame"))
    print(f"{'':<30}{head}")
    for name, get, fmt in ROWS:
        values = {(e, b): get(results[e, b]) for e in envs for b in ("fixed", "frame")}
        line = f"{name:<30}" + "".join(f"{fmt.format(values[e, b]):>22}" for e in envs for b in ("fixed", "frame"))
        line += "".join(f"{ratio(values[e, 'frame'], values[e, 'fixed']):>26}" for e in envs)
        if throttled:
            line += "".join(f"{ratio(values['pi', b], values['here', b]):>22}" for b in ("fixed", "frame"))
        print(line)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the four runs, pooled")
    parser.add_argument("--fps", type=float, default=30.0, help="the camera's frame rate")
    parser.add_argument("--factor", type=float, help="CPU share of one core for the Pi 4 class (default: "
                        "measured with sysbench against the Pi 4's published score)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--calibrate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--budget", choices=("fixed", "frame", "calibrate"), help=argparse.SUPPRESS)
    parser.add_argument("--frames", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child or args.calibrate:
        json.dump(calibrate(args) if args.calibrate else child(args), sys.stdout)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the cgroup made below is removed
    here = sysbench(None)
    factor = args.factor or (min(1.0, PI4_SYSBENCH / here) if here else None)
    if factor is None:
        raise SystemExit("sysbench is not installed: give --factor (a Pi 4 core's speed over one of this machine's)")
    try:
        quota = CpuQuota(factor)
    except QuotaError as exc:
        quota = None
        print(f"Not throttled: {exc}. Only this machine's rows are measured; run as root where the cgroup "
              "cpu controller is writable for the Pi 4 rows.")
    try:
        if quota:
            print(f"Throttle: taskset -c 0 and {quota.kind} {quota.quota_us} us per {quota.period_us} us = "
                  f"{quota.quota_us / quota.period_us:.0%} of core 0 (the factor, "
                  f"{'given' if args.factor else 'a Pi 4 over this core in sysbench'}: {factor:.2f}).")
            if here:
                inside = sysbench(quota)
                print(f"sysbench cpu, one thread: this core {here:.0f} events/s; throttled {inside:.0f}; "
                      f"a Pi 4 {PI4_SYSBENCH:.0f} (published).")
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            frames = tmp / "frames.npz"
            make_frames(frames)
            if quota:
                fast, slow = (run_child(args, "calibrate", q, frames, tmp)["ms"] for q in (None, quota))
                print(f"zxing-cpp alone, back to back on the bench's frames: this core {fast:.1f} ms per frame, "
                      f"throttled {slow:.1f} ms ({slow / fast:.2f}x). In the pipeline below the core idles "
                      "between frames, and work that fits in a period's quota runs at full speed.")
            # Rounds of the four runs in turn, their samples pooled: load from other work on a shared
            # machine then falls on every run alike, not on whichever ran while it lasted.
            results: dict = {}
            for round_ in range(args.rounds):
                for env, q in (("here", None), ("pi", quota)) if quota else (("here", None),):
                    for budget in ("fixed", "frame"):
                        # Each round shows the next codes; the four runs of a round show the same ones.
                        first = round_ * int(args.seconds / (HOLD_S + GAP_S))
                        one = run_child(args, budget, q, frames, tmp / str(round_), first)
                        pooled = results.setdefault((env, budget), {k: type(v)() for k, v in one.items()})
                        for key, value in one.items():
                            pooled[key] += value
        n = results["here", "fixed"]["showings"]
        print(f"\n{n} travellers per configuration ({args.rounds} rounds of {args.seconds:.0f} s) at "
              f"{args.fps:.0f} fps (1280x720), each code held {HOLD_S} s; multipass, budget_ms = 20 as the cap; "
              "record mode, SQLite WAL synchronous=FULL; pinned to core 0")
        report(results, quota is not None)
    finally:
        if quota:
            quota.remove()


if __name__ == "__main__":
    main()
