"""The screens' cost: commit-to-paint latency on /kiosk, scan-to-signal with the kiosk open vs closed, and the
daemon's CPU with the screens idle.

    .venv/bin/python -m bench.ui [--scans 500] [--idle-s 30]

1. Commit-to-paint: a real daemon (in this process; a `lines` source on a FIFO, record mode, every code new)
   and a real headless Chromium on /kiosk. Scans go one at a time; the page notes, at the requestAnimationFrame
   after it drew the decision, performance.timeOrigin + performance.now() minus the commit time the event carries
   (the daemon's time.monotonic_ns() right after the commit, moved to the wall clock with time.time_ns(): both
   run on this machine). The page's clock is checked against this process's around a round trip. p50/p99.
2. Scan-to-signal (the line read -> signal()), the same scans through the same daemon with [ui] off and with the
   kiosk open, paced alike (--gap-ms between two scans): the screens must not slow the gate.
3. CPU: `checkpoint run` as its own process, idle (no scans) for --idle-s each with [ui] off, with [ui] on and no
   page open, and with the kiosk open in Chromium; utime+stime from /proc/<pid>/stat, in % of one core.
Targets (issue 14): p99 commit-to-paint <= 100 ms; scan-to-signal unchanged within noise; idle UI <= 2 %.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.waiting import until

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = """version = "bench-ui"
[device]
id = "bench-01"
timezone = "Asia/Ho_Chi_Minh"
[source]
type = "lines"
path = "{fifo}"
[decoder]
debounce_ms = 0
[decision]
mode = "record"
repeat_window_s = 0
[store]
dir = "{state}"
[log]
level = "warning"
[ui]
enabled = {enabled}
listen = "127.0.0.1:0"
display_s = 2
"""
CLK_TCK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def wait(predicate, what: str, timeout: float = 60.0):
    # polled every 2 ms: what it waits for is timed
    return until(predicate, what, bench="bench.ui", timeout=timeout, interval=0.002)


def write_config(folder: Path, enabled: bool) -> tuple[Path, Path]:
    fifo = folder / "scanner.fifo"
    os.mkfifo(fifo)
    config = folder / "checkpoint.toml"
    config.write_text(CONFIG.format(fifo=fifo, state=folder / "state", enabled=str(enabled).lower()))
    return config, fifo


class InProcess:
    """A daemon in this process, collecting every Scan it signals."""

    def __init__(self, folder: Path, ui: bool):
        from edge.app.daemon import Daemon
        from edge.settings.layers import load_settings

        config, self.fifo = write_config(folder, ui)
        self.scans: list = []
        self.daemon = Daemon(config, load_settings(config), on_scan=self.scans.append)
        self.thread = threading.Thread(target=self.daemon.run, name="daemon")
        self.thread.start()
        self.writer = os.open(self.fifo, os.O_WRONLY)
        if ui:
            wait(lambda: self.daemon.ui.active, "the screens")

    def scan(self, code: str) -> None:
        os.write(self.writer, f"{code}\n".encode())

    def stop(self) -> None:
        os.close(self.writer)
        self.daemon.request_stop()
        self.thread.join(30)


def open_kiosk(url: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser import open_browser

    driver = open_browser(800, 480, "vi-VN")
    driver.get(url + "/kiosk")
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "mark-source").text != "")
    return driver


def clock_offset_ms(driver) -> tuple[float, float]:
    """(page clock - this process's clock, half the round trip), in ms, the best of 20 tries."""
    best = None
    for _ in range(20):
        before = time.time_ns()
        page = driver.execute_script("return performance.timeOrigin + performance.now()")
        after = time.time_ns()
        half = (after - before) / 2e6
        offset = page - (before + after) / 2e6
        if best is None or half < best[1]:
            best = (offset, half)
    return best


def latency_run(count: int, kiosk: bool, gap_s: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="checkpoint-bench-ui-") as folder:
        daemon = InProcess(Path(folder), ui=kiosk)
        driver = None
        try:
            if kiosk:
                driver = open_kiosk(daemon.daemon.ui.server.url)
                wait(lambda: daemon.daemon.ui.events.subscribers >= 1, "the page's live stream")
                offset = clock_offset_ms(driver)
            for n in range(count):
                daemon.scan(f"visitor-{n:06d}")
                wait(lambda n=n: len(daemon.scans) > n, "the scan")
                if kiosk:
                    wait(lambda n=n: driver.execute_script("return window.kioskLatency.length") > n, "the paint")
                time.sleep(gap_s)  # one person after another: the page and the server settle in between
            result = {"to_signal": [(s.signalled_ns - s.arrived_ns) / 1e6 for s in daemon.scans]}
            if kiosk:
                result["to_paint"] = driver.execute_script("return window.kioskLatency")
                result["clock_offset"] = offset
                result["dropped"] = daemon.daemon.ui.events.dropped
            return result
        finally:
            if driver is not None:
                from tests.browser import close_browser
                close_browser(driver)
            daemon.stop()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15 of stat)


def idle_cpu(seconds: float, ui: bool, kiosk: bool) -> float:
    """% of one core the daemon used, idle, over `seconds`."""
    import json

    with tempfile.TemporaryDirectory(prefix="checkpoint-bench-ui-") as folder:
        config, fifo = write_config(Path(folder), ui)
        proc = subprocess.Popen([sys.executable, "-m", "edge.app.cli", "run", "--config", str(config)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        writer = os.open(fifo, os.O_WRONLY)
        status = Path(folder) / "state" / "status.json"
        driver = None
        try:
            def ready():
                try:
                    data = json.loads(status.read_text())
                except (OSError, ValueError):
                    return None
                return data if data.get("state") == "running" else None
            data = wait(ready, "the daemon")
            if kiosk:
                driver = open_kiosk(data["ui"]["url"])
            time.sleep(2)  # start-up's own work (imports, the first health pass) is not idle
            start_cpu, start = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(seconds)
            used, spent = cpu_seconds(proc.pid) - start_cpu, time.monotonic() - start
            return 100 * used / spent
        finally:
            if driver is not None:
                from tests.browser import close_browser
                close_browser(driver)
            os.close(writer)
            proc.terminate()
            proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=500)
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--gap-ms", type=float, default=50.0, help="pause between two scans (both runs)")
    args = parser.parse_args(argv)
    from edge.app.daemon import GIL_SWITCH_S

    sys.setswitchinterval(GIL_SWITCH_S)  # as `checkpoint run` sets it
    closed = latency_run(args.scans, kiosk=False, gap_s=args.gap_ms / 1000)
    opened = latency_run(args.scans, kiosk=True, gap_s=args.gap_ms / 1000)
    paint = opened["to_paint"]
    offset, half = opened["clock_offset"]
    print(f"commit-to-paint on /kiosk, {len(paint)} scans: p50 {pct(paint, 50):.1f} ms, p99 {pct(paint, 99):.1f} ms, "
          f"max {max(paint):.1f} ms (target p99 <= 100 ms); page clock - bench clock {offset:+.2f} ms "
          f"(+-{half:.2f}); events dropped {opened['dropped']}")
    for name, run in (("kiosk closed ([ui] off)", closed), ("kiosk open", opened)):
        values = run["to_signal"]
        print(f"scan-to-signal, {name}: p50 {pct(values, 50):.2f} ms, p99 {pct(values, 99):.2f} ms, "
              f"mean {statistics.fmean(values):.2f} ms")
    for name, ui, kiosk in (("[ui] off", False, False), ("[ui] on, no page", True, False),
                            ("[ui] on, kiosk open and idle", True, True)):
        print(f"daemon CPU idle over {args.idle_s:.0f} s, {name}: {idle_cpu(args.idle_s, ui, kiosk):.2f} % of one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
