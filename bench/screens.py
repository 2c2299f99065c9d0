"""The kiosk's screenshots for the README: docs/screens/kiosk-{idle,allow,deny,review}-{800x480,1920x1080}.png.

    .venv/bin/python -m bench.screens [--out docs/screens] [--language vi]

A real daemon (a `lines` source on a FIFO, a small list) serves the screens; a real headless Chromium
(Debian's chromium and chromium-driver) opens /kiosk at the Pi 7" panel's size and at full HD, and each scan's
screen is saved. Nothing here is drawn by hand: run it again after changing the page.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench.waiting import until

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LIST = ("code,action,label,valid_from,valid_until\n"
        "VISITOR-0001,allow,Nguyễn Văn An,,\n"
        "VISITOR-0002,allow,Phạm Thu Hương,2020-01-01T00:00:00+07:00,2026-11-30T00:00:00+07:00\n"
        "VISITOR-0003,deny,Trần Thị Bình,,\n")
CONFIG = """version = "screens-1"
[device]
id = "kiosk-01"
timezone = "Asia/Ho_Chi_Minh"
[source]
type = "lines"
path = "{fifo}"
[decoder]
debounce_ms = 0
[decision]
mode = "allowlist"
repeat_window_s = 600
[store]
dir = "{state}"
[ui]
listen = "127.0.0.1:0"
language = "{language}"
site_name = "{site}"
display_s = 120
"""
SIZES = [(800, 480), (1920, 1080)]
# (screen, the code scanned for it, the text the screen shows once it is there)
SHOTS = [("allow", "VISITOR-0001", "Nguyễn Văn An"), ("deny", "VISITOR-0002", "Phạm Thu Hương"),
         ("review", "VISITOR-0001", "Nguyễn Văn An")]


def wait(predicate, what: str, timeout: float = 30.0):
    return until(predicate, what, bench="screens", timeout=timeout, interval=0.05)


class KioskDaemon:
    """A daemon with its screens on, in this process, scanning what is written to its FIFO."""

    def __init__(self, folder: Path, language: str, site: str):
        from edge.app.daemon import Daemon
        from edge.settings.layers import load_settings

        self.fifo = folder / "scanner.fifo"
        os.mkfifo(self.fifo)
        config = folder / "checkpoint.toml"
        config.write_text(CONFIG.format(fifo=self.fifo, state=folder / "state", language=language, site=site),
                          encoding="utf-8")
        rows = folder / "list.csv"
        rows.write_text(LIST, encoding="utf-8")
        subprocess.run([sys.executable, "-m", "edge.app.cli", "list", "import", "people", str(rows), "--config",
                        str(config)], cwd=ROOT, check=True, capture_output=True)
        self.daemon = Daemon(config, load_settings(config))
        self.thread = threading.Thread(target=self.daemon.run, name="daemon")
        self.thread.start()
        self.writer = os.open(self.fifo, os.O_WRONLY)
        wait(lambda: self.daemon.ui.active, "the screens")
        self.url = self.daemon.ui.server.url

    def scan(self, code: str) -> None:
        os.write(self.writer, f"{code}\n".encode())

    def stop(self) -> None:
        os.close(self.writer)
        self.daemon.request_stop()
        self.thread.join(30)


def viewport(driver, width: int, height: int) -> None:
    """The page's own size: the window less the browser's frame."""
    driver.set_window_size(width, height)
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    driver.set_window_size(2 * width - inner[0], 2 * height - inner[1])


def shoot(out: Path, language: str, site: str) -> list[Path]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser import close_browser, open_browser

    out.mkdir(parents=True, exist_ok=True)
    made = []
    for width, height in SIZES:
        with tempfile.TemporaryDirectory(prefix="checkpoint-screens-") as folder:
            kiosk = KioskDaemon(Path(folder), language, site)
            driver = open_browser(width, height, "vi-VN" if language == "vi" else "en-GB")
            try:
                viewport(driver, width, height)
                driver.get(kiosk.url + "/kiosk")
                WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "mark-source").text != "")
                wait(lambda kiosk=kiosk: kiosk.daemon.ui.events.subscribers >= 1, "the page's live stream")
                path = out / f"kiosk-idle-{width}x{height}.png"
                driver.save_screenshot(str(path))
                made.append(path)
                for name, code, label in SHOTS:
                    kiosk.scan(code)
                    WebDriverWait(driver, 30).until(
                        lambda d, name=name, label=label: d.execute_script("return document.body.className") == name
                        and d.find_element(By.ID, "label").text == label)
                    path = out / f"kiosk-{name}-{width}x{height}.png"
                    driver.save_screenshot(str(path))
                    made.append(path)
            finally:
                close_browser(driver)
                kiosk.stop()
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screens")
    parser.add_argument("--language", default="vi")
    parser.add_argument("--site", default="Thư viện tỉnh Bình Dương")
    args = parser.parse_args(argv)
    for path in shoot(args.out, args.language, args.site):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
