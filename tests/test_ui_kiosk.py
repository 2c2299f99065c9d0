"""The kiosk screen in a real headless Chromium, against a real daemon fed by a FIFO (a `lines` source).

What is asserted is what a person at the gate sees: the word, the symbol, the label, the reason in the screen's
language, the background colour, and the prompt coming back after [ui] display_s. The code never shows.
"""
from __future__ import annotations

import json
import os
import signal
import urllib.request

import pytest
from selenium.webdriver.common.by import By

from .browser import browser, wait_for  # noqa: F401 - the fixture
from .conftest import checkpoint_process, run_checkpoint
from .waiting import patience, wait_until

LINES = '[source]\ntype = "lines"\npath = "{path}"\n'
# 30/11/2026 00:00 in Asia/Ho_Chi_Minh (UTC+7): the list's expiry for EXPIRED-1
EXPIRED_AT = "2026-11-30T00:00:00+07:00"
LIST = ("code,action,label,valid_from,valid_until\n"
        "OK-1,allow,Nguyễn Văn An,,\n"
        "BAN-1,deny,Trần Thị Bình,,\n"
        f"EXPIRED-1,allow,Lê Văn Cường,2020-01-01T00:00:00+07:00,{EXPIRED_AT}\n")
COLOURS = {"allow": "rgb(11, 107, 42)", "deny": "rgb(176, 0, 32)", "review": "rgb(255, 179, 0)"}


def status(tmp_path) -> dict:
    path = tmp_path / "state" / "status.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class Kiosk:
    """A running daemon with its screens on, and a way to scan a line."""

    def __init__(self, tmp_path, make_config, *, display_s: float = 60, language: str = "vi", repeat: int = 60):
        self.tmp_path = tmp_path
        self.fifo = tmp_path / "scanner.fifo"
        os.mkfifo(self.fifo)
        self.config = make_config(LINES.format(path=self.fifo), repeat=repeat, debounce_ms=0, ui=(
            f'listen = "127.0.0.1:0"\nlanguage = "{language}"\nsite_name = "Thư viện tỉnh"\ndisplay_s = {display_s}\n'))
        rows = tmp_path / "list.csv"
        rows.write_text(LIST, encoding="utf-8")
        result = run_checkpoint("list", "import", "people", rows, "--config", self.config)
        assert result.returncode == 0, result.stderr
        self.proc = checkpoint_process("run", "--config", self.config)
        # Opened for writing after the daemon opens it for reading: kept open, so the source never sees EOF.
        self.writer = os.open(self.fifo, os.O_WRONLY)
        self.url = wait_until(lambda: (status(tmp_path).get("ui") or {}).get("url"), what="the screens' address")

    def scan(self, *codes: str) -> None:
        os.write(self.writer, "".join(f"{code}\n" for code in codes).encode())

    def health(self) -> dict:
        with urllib.request.urlopen(self.url + "/health", timeout=patience(10)) as reply:
            return json.load(reply)

    def stop(self) -> str:
        os.close(self.writer)
        self.proc.send_signal(signal.SIGTERM)
        _, stderr = self.proc.communicate(timeout=patience(30))
        assert self.proc.returncode == 0, stderr
        return stderr


@pytest.fixture
def kiosk(tmp_path, make_config):
    made = []

    def make(**kw) -> Kiosk:
        made.append(Kiosk(tmp_path, make_config, **kw))
        return made[-1]
    yield make
    for one in made:
        if one.proc.poll() is None:
            one.stop()


def wait_text(driver, element_id: str, text: str, timeout: float = 30) -> dict:
    """Until #element_id shows text; what the screen showed at that moment (shown), read in one go."""
    return wait_for(driver, lambda d: (seen := shown(d))[element_id] == text and seen,
                    f"#{element_id} showing {text!r}", timeout)


def shown(driver) -> dict:
    """The screen as a person sees it, read in one script: a decision and its colour are never read across the
    page's return to idle (a busy machine can take display_s between two separate reads)."""
    return driver.execute_script("""
        const text = id => { const el = document.getElementById(id);
                             return el && el.getClientRects().length ? el.innerText.trim() : ""; };
        return {symbol: text("symbol"), word: text("word"), label: text("label"), reason: text("reason"),
                colour: getComputedStyle(document.body).backgroundColor, lang: document.documentElement.lang};""")


def open_kiosk(driver, url: str) -> None:
    driver.get(url)
    wait_for(driver, lambda d: d.execute_script("return document.getElementById('mark-source').textContent") != "",
             "the kiosk's health marks")
    # The stream is open once the server counts this page as a subscriber.


def viewport(driver, width: int, height: int) -> None:
    """The page's own size (what the panel shows): the window less the browser's own frame."""
    driver.set_window_size(width, height)
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    driver.set_window_size(2 * width - inner[0], 2 * height - inner[1])
    assert driver.execute_script("return [window.innerWidth, window.innerHeight]") == [width, height]


def subscribed(k: Kiosk, count: int = 1) -> bool:
    return k.health()["events"]["subscribers"] >= count


def test_kiosk_shows_each_decision_in_vietnamese(kiosk, browser):  # noqa: F811
    k = kiosk()
    open_kiosk(browser, k.url + "/kiosk")
    assert browser.find_element(By.ID, "prompt").text == "Quét mã QR"
    assert "Scan your QR code" in browser.find_element(By.CSS_SELECTOR, ".prompt").text
    assert browser.find_element(By.ID, "site").text == "Thư viện tỉnh"
    assert browser.find_element(By.CSS_SELECTOR, "svg.picture").is_displayed()
    assert browser.find_element(By.ID, "mark-source").text == "Máy quét sẵn sàng"
    assert browser.find_element(By.ID, "mark-lists").text == "Danh sách mới"
    assert browser.find_element(By.ID, "mark-hub").text == "Không đồng bộ"  # [sync] is off in the tests
    wait_until(lambda: subscribed(k), what="the page's live stream")

    k.scan("OK-1")
    wait_text(browser, "label", "Nguyễn Văn An")
    assert shown(browser) == {"symbol": "✓", "word": "Mời vào", "label": "Nguyễn Văn An",
                              "reason": "Có trong danh sách", "colour": COLOURS["allow"], "lang": "vi"}
    assert not browser.find_element(By.ID, "idle").is_displayed()

    k.scan("BAN-1")  # replaces the allow at once
    wait_text(browser, "label", "Trần Thị Bình")
    assert shown(browser) == {"symbol": "✗", "word": "Từ chối", "label": "Trần Thị Bình",
                              "reason": "Có trong danh sách cấm", "colour": COLOURS["deny"], "lang": "vi"}

    k.scan("stranger-42")
    wait_text(browser, "reason", "Không có trong danh sách")
    assert shown(browser)["word"] == "Từ chối" and shown(browser)["label"] == ""

    k.scan("EXPIRED-1")
    wait_text(browser, "reason", "Hết hạn từ 30/11/2026")
    assert shown(browser)["label"] == "Lê Văn Cường"

    k.scan("\x01\x02bad")
    wait_text(browser, "reason", "Mã QR không hợp lệ")

    k.scan("OK-1")  # allowed a moment ago: a review, with the earlier scan's time
    wait_text(browser, "word", "Chờ kiểm tra")
    seen = shown(browser)
    assert seen["symbol"] == "?" and seen["colour"] == COLOURS["review"] and seen["label"] == "Nguyễn Văn An"
    assert seen["reason"].startswith("Đã quét lúc ") and len(seen["reason"]) == len("Đã quét lúc 08:14")
    # The code is never in the page, nor in anything the page was sent.
    page = browser.page_source
    for code in ("OK-1", "BAN-1", "stranger-42", "EXPIRED-1"):
        assert code not in page
    assert "Xin chờ nhân viên kiểm tra" in browser.find_element(By.ID, "decision").text
    k.stop()


def test_kiosk_in_english_and_back_to_idle_after_display_s(kiosk, browser):  # noqa: F811
    k = kiosk(display_s=1, language="en")
    open_kiosk(browser, k.url + "/kiosk")
    assert browser.find_element(By.ID, "prompt").text == "Scan your QR code"
    assert "Quét mã QR" in browser.find_element(By.CSS_SELECTOR, ".prompt").text  # the other language, smaller
    assert browser.execute_script("return document.documentElement.lang") == "en"
    wait_until(lambda: subscribed(k), what="the page's live stream")

    k.scan("EXPIRED-1")
    seen = wait_text(browser, "reason", "Expired since 30 Nov 2026")
    assert seen | {"reason": None} == {"symbol": "✗", "word": "Denied", "label": "Lê Văn Cường",
                                       "reason": None, "colour": COLOURS["deny"], "lang": "en"}
    # display_s later the prompt is back: waited for, never timed
    wait_for(browser, lambda d: d.find_element(By.ID, "prompt").is_displayed(), "the prompt back")
    assert not browser.find_element(By.ID, "decision").is_displayed()
    assert browser.execute_script("return document.body.className") == "idle"

    k.scan("OK-1")
    seen = wait_text(browser, "word", "Welcome")
    assert seen["reason"] == "On the list" and seen["colour"] == COLOURS["allow"]
    k.scan("OK-1")
    seen = wait_text(browser, "word", "Please wait")
    assert seen["reason"].startswith("Already scanned at ")

    # ?lang= picks another installed language for one screen; an unknown one keeps the configured language
    open_kiosk(browser, k.url + "/kiosk?lang=vi")
    assert browser.find_element(By.ID, "prompt").text == "Quét mã QR"
    open_kiosk(browser, k.url + "/kiosk?lang=xx")
    assert browser.find_element(By.ID, "prompt").text == "Scan your QR code"
    k.stop()


def test_kiosk_at_the_pi_display_size_fits(kiosk):
    from .browser import close_browser, open_browser

    k = kiosk()
    driver = open_browser(800, 480, "vi-VN")
    try:
        viewport(driver, 800, 480)
        open_kiosk(driver, k.url + "/kiosk")
        wait_until(lambda: subscribed(k), what="the page's live stream")
        k.scan("BAN-1")
        wait_text(driver, "label", "Trần Thị Bình")
        # Everything a person reads is inside the screen, none of it cut off at the bottom.
        for name in ("symbol", "word", "label", "reason"):
            bottom = driver.execute_script(
                f"return document.getElementById('{name}').getBoundingClientRect().bottom")
            assert bottom <= driver.execute_script("return window.innerHeight"), name
        size = driver.execute_script("return parseFloat(getComputedStyle(document.getElementById('word')).fontSize)")
        assert size >= 48  # px: readable at 2 m on the 7" panel
    finally:
        close_browser(driver)
    k.stop()


def test_kiosk_comes_back_by_itself_after_a_503(browser):  # noqa: F811
    """Finding: an EventSource answered 503 (too many live pages) or 502 never tries again; the kiosk stayed
    dead until someone reloaded it. Now it shows offline, tries again, and shows the next decision."""
    from edge.settings.schema import UISettings
    from edge.ui.context import UIContext
    from edge.ui.events import EventHub
    from edge.ui.server import start_ui

    from .test_ui_events import Stream, scan

    hub = EventHub(max_subscribers=1, local_reserve=0)
    server = start_ui(UIContext(settings=UISettings(listen="127.0.0.1:0", language="en"), device_id="t",
                                timezone="UTC", events=hub, recent=lambda n: [], status=dict, submit=None,
                                review=None))
    try:
        held = Stream("127.0.0.1", int(server.url.rsplit(":", 1)[1]), "/events")  # takes the one slot
        assert held.status == 200
        open_kiosk(browser, server.url + "/kiosk")
        wait_for(browser, lambda d: d.find_element(By.ID, "offline").is_displayed(), "the offline mark")
        assert hub.stats()["refused"] >= 1
        held.close()  # the slot is free again: the page gets it on its next try, without a reload
        wait_for(browser, lambda d: not d.find_element(By.ID, "offline").is_displayed(), "the stream back")
        wait_until(lambda: hub.subscribers == 1, what="the page subscribed")
        hub.publish(scan(7))
        wait_text(browser, "word", "Welcome")
        assert browser.execute_script("return window.kioskShown") == 1
    finally:
        server.stop()


def test_every_reason_has_its_words_in_every_language():
    """A reason added to the model without its words would show a key on the screens: each catalogue says each."""
    from pathlib import Path

    from edge.common.model import Reason

    messages = Path(__file__).resolve().parent.parent / "edge" / "ui" / "messages"
    languages = sorted(folder.name for folder in messages.iterdir() if folder.is_dir())
    assert {"en", "vi"} <= set(languages)
    for language in languages:
        words = json.loads((messages / language / "common.json").read_text(encoding="utf-8"))["reason"]
        missing = [reason.value for reason in Reason if not words.get(reason.value)]
        assert missing == [], (language, missing)
