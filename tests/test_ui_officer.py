"""The officer page in a real headless Chromium, against a real daemon fed by a FIFO (a `lines` source).

Asserted is what an officer sees (words in the page's language, colours, buttons) and what the appliance
recorded (the entries database): a wrong password and a forged form refused, logins limited, scans arriving
live, filters and search, a review answered (an entry with ref_id and the officer), a code typed by hand
(source manual), an unanswered review expiring without buttons.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from edge.ui.auth import LoginLimit, check_password, csrf_ok
from edge.ui.passwords import PasswordError, hash_password

from .browser import browser, close_browser, open_browser, submit, wait_for  # noqa: F401 - the fixture
from .conftest import ROOT, checkpoint_process, run_checkpoint
from .waiting import patience, wait_until

LINES = '[source]\ntype = "lines"\npath = "{path}"\n'
LIST = ("code,action,label,valid_from,valid_until\n"
        "OK-1,allow,Nguyễn Văn An,,\n"
        "OK-2,allow,Phạm Thu Hương,,\n"
        "BAN-1,deny,Trần Thị Bình,,\n")
PASSWORD = "mật-khẩu đúng 42"
HASH = PasswordHasher().hash(PASSWORD)
COLOURS = {"allow": "rgb(10, 125, 44)", "deny": "rgb(179, 18, 31)", "review": "rgb(179, 92, 0)"}


def read_status(tmp_path) -> dict:
    try:
        return json.loads((tmp_path / "state" / "status.json").read_text())
    except (OSError, ValueError):
        return {}


class Appliance:
    """A running daemon with its screens on, two officers, and a way to scan a line."""

    def __init__(self, tmp_path, make_config, *, language="vi", review_expiry_s=600.0):
        self.tmp_path = tmp_path
        self.fifo = tmp_path / "scanner.fifo"
        os.mkfifo(self.fifo)
        credential = tmp_path / "binh.hash"
        credential.write_text(HASH + "\n")
        self.config = make_config(LINES.format(path=self.fifo), repeat=600, debounce_ms=0, ui=(
            f'listen = "127.0.0.1:0"\nlanguage = "{language}"\nreview_expiry_s = {review_expiry_s}\n'
            f'[[ui.officers]]\nname = "An"\npassword_hash = "{HASH}"\n'
            f'[[ui.officers]]\nname = "Bình"\npassword_credential = "{credential}"\n'))
        rows = tmp_path / "list.csv"
        rows.write_text(LIST, encoding="utf-8")
        result = run_checkpoint("list", "import", "people", rows, "--config", self.config)
        assert result.returncode == 0, result.stderr
        self.proc = checkpoint_process("run", "--config", self.config)
        self.writer = os.open(self.fifo, os.O_WRONLY)  # kept open: the source never sees EOF
        self.url = wait_until(lambda: (read_status(tmp_path).get("ui") or {}).get("url"),
                              what="the screens' address")
        self.stderr = ""

    def scan(self, *codes: str) -> None:
        os.write(self.writer, "".join(f"{code}\n" for code in codes).encode())

    def entries(self) -> list[dict]:
        db = sqlite3.connect(f"file:{self.tmp_path / 'state' / 'entries.db'}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute("SELECT * FROM entries ORDER BY seq")]
        finally:
            db.close()

    def subscribers(self) -> int:
        with urllib.request.urlopen(self.url + "/health", timeout=patience(10)) as reply:
            return json.load(reply)["events"]["subscribers"]

    def stop(self) -> str:
        os.close(self.writer)
        self.proc.send_signal(signal.SIGTERM)
        _, self.stderr = self.proc.communicate(timeout=patience(30))
        assert self.proc.returncode == 0, self.stderr
        return self.stderr


@pytest.fixture
def appliance(tmp_path, make_config):
    made = []

    def make(**kw) -> Appliance:
        made.append(Appliance(tmp_path, make_config, **kw))
        return made[-1]
    yield make
    for one in made:
        if one.proc.poll() is None:
            one.stop()


# ---- the browser's side ------------------------------------------------------------------------------
def wait(driver, condition, what: str, timeout: float = 30):
    return wait_for(driver, condition, what, timeout)


def log_in(driver, url: str, name: str, password: str) -> None:
    driver.get(url + "/officer")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    submit(driver, driver.find_element(By.ID, "login"))
    wait(driver, lambda d: d.find_elements(By.ID, "flash") or d.find_elements(By.ID, "scans"), "the login's answer")


def flash(driver) -> str:
    return wait(driver, lambda d: d.find_element(By.ID, "flash").text, "a message")


def rows(driver) -> list[dict]:
    """The list as shown: only the rows a person can see."""
    return driver.execute_script("""
        return [...document.querySelectorAll('#scans tbody tr')].filter(r => !r.hidden).map(r => ({
            id: r.dataset.id, state: [...r.classList].filter(c => c !== 'scan').join(' '),
            decision: r.querySelector('td.decision').innerText.trim(), reason: r.querySelector('td.reason').innerText,
            label: r.querySelector('td.label').innerText, code: r.querySelector('td.code').innerText,
            list: r.querySelector('td.list').innerText, source: r.querySelector('td.source').innerText,
            action: r.querySelector('td.action').innerText.trim(), buttons: r.querySelectorAll('button').length,
            colour: getComputedStyle(r.querySelector('.badge')).backgroundColor}));""")


def viewport(driver, width: int, height: int) -> None:
    """The page's own size (what the screen shows): the window less the browser's frame."""
    driver.set_window_size(width, height)
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    driver.set_window_size(2 * width - inner[0], 2 * height - inner[1])


def live(driver, appliance: Appliance) -> None:
    wait(driver, lambda d: d.find_element(By.ID, "live").get_attribute("class") == "live on", "the live stream")
    wait_until(lambda: appliance.subscribers() >= 1, what="the page subscribed")


def row_for(driver, code: str, count: int = 1) -> list[dict]:
    return wait(driver, lambda d: (found := [r for r in rows(d) if r["code"] == code]) and len(found) >= count
                and found, f"a row for {code}")


# ---- in the browser, against the real daemon ------------------------------------------------------------
def test_wrong_password_is_refused_then_logins_are_limited(appliance, browser):  # noqa: F811
    a = appliance(language="en")
    log_in(browser, a.url, "An", "wrong password")
    assert flash(browser) == "Wrong name or password."
    assert browser.find_elements(By.ID, "scans") == []  # still the login form
    assert browser.execute_script("return document.documentElement.lang") == "en"
    colour = browser.execute_script("return getComputedStyle(document.getElementById('flash')).color")
    assert colour == COLOURS["deny"]
    for _ in range(4):
        log_in(browser, a.url, "An", "wrong again")
    log_in(browser, a.url, "An", PASSWORD)  # the right password, after five failures: refused all the same
    assert flash(browser).startswith("Too many failed logins. Try again in ")
    assert browser.find_elements(By.ID, "scans") == []
    # The limit is per name and per address: a second officer from this address is refused too.
    log_in(browser, a.url, "Bình", PASSWORD)
    assert flash(browser).startswith("Too many failed logins")
    assert a.entries() == []  # a login is not an entry
    stderr = a.stop()
    assert stderr.count("AUDIT officer An login-refused from 127.0.0.1") == 5
    # Limited logins are counters, logged once a minute per address at most (an outsider cannot flood the audit).
    assert stderr.count("AUDIT refused login-limited /officer/login from 127.0.0.1") == 1


def test_forged_csrf_token_is_refused_and_nothing_recorded(appliance, browser):  # noqa: F811
    a = appliance(language="en")
    log_in(browser, a.url, "Bình", PASSWORD)  # the officer whose hash is in a credential file
    assert browser.find_element(By.CSS_SELECTOR, "header .who").text == "Logged in as Bình"
    cookie = browser.get_cookie("checkpoint_officer")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    real = browser.find_element(By.CSS_SELECTOR, "section.manual input[name=csrf]").get_attribute("value")

    def post(path: str, fields: dict, with_cookie: bool = True) -> int:
        request = urllib.request.Request(a.url + path, data=urllib.parse.urlencode(fields).encode(), headers={
            "Content-Type": "application/x-www-form-urlencoded",
            **({"Cookie": f"checkpoint_officer={cookie['value']}"} if with_cookie else {})})
        try:
            with urllib.request.urlopen(request, timeout=patience(10)) as reply:
                return reply.status
        except urllib.error.HTTPError as exc:
            return exc.code

    forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    assert post("/officer/manual", {"code": "OK-1", "csrf": forged}) == 403
    assert post("/officer/manual", {"code": "OK-1"}) == 403
    assert post("/officer/manual", {"code": "OK-1", "csrf": real}, with_cookie=False) == 403  # no session
    assert post("/officer/review", {"id": "x", "answer": "allow", "csrf": forged}) == 403
    assert post("/officer/login", {"name": "An", "password": PASSWORD, "csrf": forged}, with_cookie=False) == 403
    assert a.entries() == []
    browser.get(a.url + "/officer")  # the page itself still works for the officer
    assert browser.find_elements(By.ID, "scans")
    stderr = a.stop()
    # With the officer's session: three audit records. Without one: counted, one log line a minute per address.
    assert stderr.count("AUDIT officer Bình forged-or-stale-form") == 3
    assert stderr.count("AUDIT refused forged-or-stale-form") == 1


def test_live_list_filters_search_review_and_manual_entry_in_vietnamese(appliance, browser):  # noqa: F811
    a = appliance(language="vi")
    a.scan("OK-1")  # before the page opens: listed from the database
    wait_until(lambda: len(a.entries()) == 1, what="the first entry")
    log_in(browser, a.url, "An", PASSWORD)
    assert browser.execute_script("return document.documentElement.lang") == "vi"
    assert browser.find_element(By.CSS_SELECTOR, "header .who").text == "Đăng nhập: An"
    [first] = row_for(browser, "OK-1")
    assert first["decision"] == "✓ Mời vào" and first["reason"] == "Có trong danh sách"
    assert first["list"] == "people v1" and first["colour"] == COLOURS["allow"]
    health = browser.find_element(By.ID, "health").text
    assert "Máy quét" in health and "Đồng hồ" in health and "people v1" in health
    live(browser, a)

    a.scan("stranger-42", "BAN-1", "OK-2")
    row_for(browser, "OK-2")
    shown = {r["code"]: r for r in rows(browser)}
    assert [r["code"] for r in rows(browser)] == ["OK-2", "BAN-1", "stranger-42", "OK-1"]  # newest first
    assert (shown["BAN-1"]["decision"], shown["BAN-1"]["reason"], shown["BAN-1"]["label"]) == (
        "✗ Từ chối", "Có trong danh sách cấm", "Trần Thị Bình")
    assert shown["BAN-1"]["colour"] == COLOURS["deny"]
    assert shown["stranger-42"]["reason"] == "Không có trong danh sách"
    assert shown["OK-2"]["label"] == "Phạm Thu Hương"

    Select(browser.find_element(By.ID, "filter-decision")).select_by_value("deny")
    assert sorted(r["code"] for r in rows(browser)) == ["BAN-1", "stranger-42"]
    Select(browser.find_element(By.ID, "filter-reason")).select_by_value("not-listed")
    assert [r["code"] for r in rows(browser)] == ["stranger-42"]
    Select(browser.find_element(By.ID, "filter-decision")).select_by_value("")
    Select(browser.find_element(By.ID, "filter-reason")).select_by_value("")
    browser.find_element(By.ID, "search").send_keys("hương")  # a label, in any case
    assert [r["code"] for r in rows(browser)] == ["OK-2"]
    browser.find_element(By.ID, "search").clear()
    browser.find_element(By.ID, "search").send_keys("ban")  # a code
    assert [r["code"] for r in rows(browser)] == ["BAN-1"]
    browser.find_element(By.ID, "search").clear()
    browser.find_element(By.ID, "search").send_keys("không ai")
    assert rows(browser) == [] and browser.find_element(By.ID, "no-match").is_displayed()
    browser.find_element(By.ID, "search").clear()
    browser.execute_script("document.getElementById('search').dispatchEvent(new Event('input'))")

    # A review: OK-1 again within the repeat window. It waits with two buttons.
    a.scan("OK-1")
    review = wait(browser, lambda d: [r for r in rows(d) if r["code"] == "OK-1" and "waiting" in r["state"]],
                  "the review")[0]
    assert review["decision"] == "? Chờ kiểm tra" and review["buttons"] == 2
    assert review["colour"] == COLOURS["review"] and review["reason"].startswith("Đã quét lúc ")
    relay_before = _pulses(a, "relay")
    submit(browser, browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{review["id"]}"] button.allow'))
    assert flash(browser) == "Đã trả lời kiểm tra: Mời vào."
    answered = wait(browser, lambda d: [r for r in rows(d) if r["id"] == review["id"] and "answered" in r["state"]],
                    "the review answered")[0]
    assert answered["buttons"] == 0 and answered["action"] == "Đã trả lời: Mời vào bởi An"
    answer = [e for e in a.entries() if e["ref_id"] == review["id"]]
    assert [(e["source"], e["code"], e["decision"], e["reason"], e["officer"]) for e in answer] == [
        ("review", "OK-1", "allow", "officer", "An")]
    wait_until(lambda: _pulses(a, "relay") > relay_before, what="the relay driven by the officer's Allow")
    # A second answer to the same review is refused by the daemon, and says so.
    browser.execute_script("""
        const f = document.createElement('form'); f.method = 'post'; f.action = '/officer/review';
        for (const [k, v] of [['csrf', document.querySelector('input[name=csrf]').value], ['id', arguments[0]],
                              ['answer', 'deny']]) {
            const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i); }
        document.body.appendChild(f); f.submit();""", review["id"])
    wait(browser, lambda d: d.find_element(By.ID, "flash").text == "Lượt kiểm tra này đã được trả lời.",
         "the refusal")
    assert len([e for e in a.entries() if e["ref_id"] == review["id"]]) == 1

    # A code typed by hand: the same policy, recorded with source manual and the officer.
    live(browser, a)
    browser.find_element(By.ID, "manual-code").send_keys("BAN-1")
    submit(browser, browser.find_element(By.ID, "manual-submit"))
    assert flash(browser) == "Đã ghi: Từ chối, Có trong danh sách cấm."
    manual = a.entries()[-1]
    assert (manual["source"], manual["code"], manual["decision"], manual["officer"], manual["ref_id"]) == (
        "manual", "BAN-1", "deny", "An", None)
    [typed] = [r for r in row_for(browser, "BAN-1", 2) if r["id"] == manual["id"]]
    assert typed["source"] == "nhập tay\nbởi An"  # the officer on a line of its own

    submit(browser, browser.find_element(By.ID, "logout"))
    wait(browser, lambda d: d.find_elements(By.ID, "login"), "the login form again")
    stderr = a.stop()
    assert "AUDIT officer An login from 127.0.0.1" in stderr and "AUDIT officer An review" in stderr
    assert "AUDIT officer An manual" in stderr and "AUDIT officer An logout" in stderr


def _pulses(a: Appliance, output: str) -> int:
    path = a.tmp_path / "state" / "outputs.jsonl"
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    return sum(1 for line in lines if f'"{output}"' in line)


def test_unanswered_review_expires_without_buttons_in_english(appliance, browser):  # noqa: F811
    a = appliance(language="en", review_expiry_s=2)
    log_in(browser, a.url, "An", PASSWORD)
    live(browser, a)
    a.scan("OK-1")
    row_for(browser, "OK-1")
    a.scan("OK-1")  # a review, which nobody answers
    expired = wait(browser, lambda d: [r for r in rows(d) if "expired" in r["state"]], "the review expired")[0]
    assert expired["buttons"] == 0 and expired["action"] == "Expired, not answered"
    assert expired["decision"] == "? Please wait"
    browser.refresh()  # and so it stays, drawn by the server
    again = wait(browser, lambda d: [r for r in rows(d) if r["id"] == expired["id"]], "the list")[0]
    assert again["buttons"] == 0 and again["action"] == "Expired, not answered"
    assert not [e for e in a.entries() if e["ref_id"]]


# ---- hostile forms: a clean answer, never a server error -----------------------------------------------
HOSTILE = st.one_of(st.text(max_size=200), st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=50),
                    st.just("x" * 300_000), st.just("{" * 10_000), st.just(str(10**400)))


@pytest.fixture(scope="module")
def shared_appliance(tmp_path_factory):
    """One daemon for the property below (the make_config fixture is per test)."""
    from .conftest import BASE_CONFIG

    tmp = tmp_path_factory.mktemp("hostile")
    (tmp / "state").mkdir()
    fifo = tmp / "scanner.fifo"
    os.mkfifo(fifo)
    config = tmp / "checkpoint.toml"
    config.write_text(BASE_CONFIG.format(dir=tmp / "state", mode="allowlist", repeat=0, debounce_ms=0, ui=(
        f'listen = "127.0.0.1:0"\n[[ui.officers]]\nname = "An"\npassword_hash = "{HASH}"\n'))
        + LINES.format(path=fifo), encoding="utf-8")
    proc = checkpoint_process("run", "--config", config)
    writer = os.open(fifo, os.O_WRONLY)
    url = wait_until(lambda: (read_status(tmp).get("ui") or {}).get("url"), what="the screens' address")
    yield url, tmp
    os.close(writer)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=patience(30))


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/officer/login", "/officer/manual", "/officer/review", "/officer/logout"]),
       fields=st.dictionaries(st.sampled_from(["name", "password", "csrf", "code", "id", "answer", "x" * 70]),
                              HOSTILE, max_size=5),
       raw=st.none() | st.binary(max_size=2000), kind=st.sampled_from([
           "application/x-www-form-urlencoded", "multipart/form-data; boundary=zz", "text/plain", ""]))
def test_hostile_forms_get_a_clean_answer(shared_appliance, path, fields, raw, kind):
    url, tmp = shared_appliance
    data = raw if raw is not None else urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": kind} if kind else {})
    try:
        with urllib.request.urlopen(request, timeout=patience(20)) as reply:
            status = reply.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    # Without a session nothing passes the CSRF check: refused (403) whatever was sent, or said too large.
    assert status in (403, 413), status
    db = sqlite3.connect(f"file:{tmp / 'state' / 'entries.db'}?mode=ro", uri=True)
    try:
        assert db.execute("SELECT count(*) FROM entries").fetchone()[0] == 0
    finally:
        db.close()


# ---- the parts, without a browser ----------------------------------------------------------------------
def test_login_limit_per_address_and_per_name():
    now = [1000.0]
    limit = LoginLimit(failures=3, window_s=60, keys=4, clock=lambda: now[0])
    for _ in range(3):
        assert limit.attempt("10.0.0.1", "An") == 0
    assert limit.attempt("10.0.0.1", "An") == 60    # the fourth is refused, and not counted
    assert limit.wait_s("10.0.0.1", "Bình") == 60   # the address is limited
    assert limit.wait_s("10.0.0.2", "An") == 60     # and so is the name, from anywhere
    assert limit.wait_s("10.0.0.2", "Bình") == 0
    now[0] += 30
    assert limit.wait_s("10.0.0.1", "x") == 30
    now[0] += 30
    assert limit.wait_s("10.0.0.1", "An") == 0      # the failures left the window
    for i in range(20):                              # bounded: a flood of names forgets the oldest
        limit.attempt(f"10.0.1.{i}", f"n{i}")
    assert len(limit._seen) <= 4


@given(name=st.text(max_size=100), password=st.text(max_size=3000))
@settings(max_examples=20)
def test_any_name_and_password_are_a_plain_no(name, password):
    assert check_password({"An": HASH}, name, password) is (name == "An" and password == PASSWORD)


@given(token=st.one_of(st.none(), st.integers(), st.text(max_size=100), st.binary(max_size=50)))
def test_csrf_check_takes_only_the_sessions_token(token):
    assert csrf_ok({"csrf": "abc"}, token) is (token == "abc")
    assert csrf_ok({}, token) is False


def test_hash_password_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edge.ui.passwords"], input=PASSWORD + "\n", cwd=ROOT,
                            capture_output=True, text=True, timeout=patience(30))
    assert result.returncode == 0, result.stderr
    hashed = result.stdout.strip()
    assert hashed.startswith("$argon2id$") and check_password({"An": hashed}, "An", PASSWORD)
    short = subprocess.run([sys.executable, "-m", "edge.ui.passwords"], input="short\n", cwd=ROOT,
                           capture_output=True, text=True, timeout=patience(30))
    assert short.returncode == 2 and "shorter than 8" in short.stderr and short.stdout == ""
    with pytest.raises(PasswordError):
        hash_password("x" * 2000)


# ---- screenshots: CHECKPOINT_SCREENS=docs/screens makes the README's pictures again -------------------
def test_officer_screenshots(appliance, tmp_path):
    folder = Path(os.environ.get("CHECKPOINT_SCREENS") or tmp_path / "screens")
    folder.mkdir(parents=True, exist_ok=True)
    a = appliance(language="vi")
    for width, height in ((1280, 800), (800, 480)):
        driver = open_browser(width, height, "vi")
        try:
            viewport(driver, width, height)
            log_in(driver, a.url, "An", PASSWORD)
            live(driver, a)
            if width == 1280:
                a.scan("OK-1", "stranger-42", "BAN-1", "OK-2", "OK-1")
            wait(driver, lambda d: any("waiting" in r["state"] for r in rows(d)), "the review")
            wait_until(lambda driver=driver: len(rows(driver)) == 5, what="five rows")
            driver.save_screenshot(str(folder / f"officer-{width}x{height}.png"))
        finally:
            close_browser(driver)
    assert (folder / "officer-1280x800.png").stat().st_size > 10_000


def test_session_key_is_kept_beside_the_database_0600(tmp_path):
    from edge.ui.auth import SESSION_KEY_NAME, session_secret

    first = session_secret(tmp_path)
    path = tmp_path / SESSION_KEY_NAME
    assert len(first) == 32 and path.stat().st_mode & 0o777 == 0o600
    assert session_secret(tmp_path) == first  # officers stay logged in across a restart
    path.write_bytes(b"short")
    assert session_secret(tmp_path) not in (first, b"short") and len(path.read_bytes()) == 32
    assert len(session_secret(None)) == 32  # no folder: a key for this run


def test_audit_lines_escape_what_came_from_outside(caplog):
    from edge.ui.auth import Audit

    audit = Audit(keep=2)
    with caplog.at_level("INFO", logger="checkpoint.audit"):
        audit.record("login-refused", "An\nAUDIT officer Root login", "10.0.0.7", refused=True)
        audit.record("login", "An", "10.0.0.7")
        audit.record("manual", "An", "10.0.0.7", entry_id="e-1")
    assert [r["action"] for r in audit.recent()] == ["login", "manual"] and audit.recent()[-1]["n"] == 3
    assert all("\n" not in record.getMessage() for record in caplog.records)
    assert caplog.records[0].levelname == "WARNING" and "entry_id=e-1" in caplog.records[-1].getMessage()


# ---- the page served in this process (start_ui with a UIContext), reached over real sockets ------------------
class Client:
    """A browser-less client with its own cookies; redirects are not followed (the answer itself is checked)."""

    def __init__(self, url: str):
        import http.cookiejar

        self.url, self.jar = url, http.cookiejar.CookieJar()

        class Stay(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), Stay)

    def request(self, path: str, form: dict | None = None, headers: dict | None = None) -> tuple[int, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        try:
            with self.opener.open(request, timeout=patience(30)) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def csrf(self) -> str:
        import re

        status, body = self.request("/officer")
        assert status == 200
        return re.search(r'name="csrf" value="([^"]+)"', body).group(1)

    def log_in(self, name: str, password: str, headers: dict | None = None) -> int:
        return self.request("/officer/login", {"csrf": self.csrf(), "name": name, "password": password},
                            headers)[0]

    def logged_in(self) -> bool:
        return 'id="scans"' in self.request("/officer")[1]

    def copy_to(self, other: Client) -> None:
        for cookie in self.jar:
            other.jar.set_cookie(cookie)


def serve_page(hub=None):
    """The officer page served by start_ui in this process; submit/review go to a real UILink whose pipeline
    side (serve_requests) runs only when a test says so."""
    from edge.settings.schema import OfficerSettings, UISettings
    from edge.ui import officer
    from edge.ui.context import UIContext
    from edge.ui.events import EventHub
    from edge.ui.link import UILink
    from edge.ui.server import start_ui

    link = UILink()
    link.open_requests()
    context = UIContext(settings=UISettings(listen="127.0.0.1:0", language="en",
                                            officers=[OfficerSettings(name="An", password_hash=HASH)]),
                        device_id="t", timezone="UTC", events=hub or EventHub(), recent=lambda n: [], status=dict,
                        submit=link.submit, review=link.review)
    server = start_ui(context)
    server.link, server.page, server.hub = link, officer._page(context), context.events
    return server


@pytest.fixture
def page_server():
    server = serve_page()
    yield server
    server.link.stop()
    server.stop()


def test_officer_page_listens_again_after_a_503(browser):  # noqa: F811
    from edge.ui.events import EventHub

    from .test_ui_events import Stream, scan

    server = serve_page(EventHub(max_subscribers=1, local_reserve=0))
    try:
        held = Stream("127.0.0.1", int(server.url.rsplit(":", 1)[1]), "/events")  # the kiosk takes the one slot
        assert held.status == 200
        log_in(browser, server.url, "An", PASSWORD)
        wait(browser, lambda d: d.find_element(By.ID, "live").get_attribute("class") == "live off", "offline")
        held.close()
        wait(browser, lambda d: d.find_element(By.ID, "live").get_attribute("class") == "live on", "live again")
        wait_until(lambda: server.hub.subscribers == 1, what="the page subscribed")
        server.hub.publish(scan(5))
        assert row_for(browser, "code-5")[0]["decision"]
    finally:
        server.link.stop()
        server.stop()


def test_parallel_wrong_logins_run_at_most_the_limits_password_checks(page_server):
    """Finding: 40 parallel wrong logins all passed the limit check before any failure was recorded."""
    import threading

    client = Client(page_server.url)
    token = client.csrf()
    start, answers = threading.Barrier(40), []

    def guess(n: int) -> None:
        start.wait()
        answers.append(client.request("/officer/login", {"csrf": token, "name": "An", "password": f"guess {n}"})[0])

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(patience(60))
    assert answers == [303] * 40
    checked = [r for r in page_server.page.audit.recent() if r["action"] == "login-refused"]
    assert 1 <= len(checked) <= page_server.page.limit.failures  # each is one argon2 check
    assert len(checked) + sum(page_server.page.refusals.counts().values()) == 40  # the others: busy or limited
    for n in range(10):  # and one after the other, the limit holds as before
        client.request("/officer/login", {"csrf": token, "name": "An", "password": f"again {n}"})
    checked = [r for r in page_server.page.audit.recent() if r["action"] == "login-refused"]
    assert len(checked) == page_server.page.limit.failures
    assert client.log_in("An", PASSWORD) == 303 and not client.logged_in()  # limited from this address


def test_a_copied_cookie_is_refused_after_logout(page_server):
    first, copy = Client(page_server.url), Client(page_server.url)
    assert first.log_in("An", PASSWORD) == 303 and first.logged_in()
    first.copy_to(copy)
    assert copy.logged_in()
    token = copy.csrf()
    assert first.request("/officer/logout", {"csrf": first.csrf()})[0] == 303
    assert not first.logged_in() and not copy.logged_in()
    assert copy.request("/officer/manual", {"csrf": token, "code": "OK-1"})[0] == 403
    assert copy.request("/officer/events")[0] == 403


def test_x_forwarded_for_is_ignored(page_server):
    client = Client(page_server.url)
    client.log_in("An", "wrong", headers={"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6"})
    record = [r for r in page_server.page.audit.recent() if r["action"] == "login-refused"][-1]
    assert record["address"] == "127.0.0.1"


def test_refused_forms_without_a_session_are_counted_not_recorded(page_server, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="checkpoint.audit")
    officer = Client(page_server.url)
    assert officer.log_in("An", PASSWORD) == 303
    before = page_server.page.audit.recent()
    outsider = Client(page_server.url)
    for n in range(60):  # more than the audit list keeps
        assert outsider.request("/officer/manual", {"csrf": f"forged {n}", "code": "OK-1"})[0] == 403
    assert page_server.page.audit.recent() == before  # the officer's login is still there
    assert page_server.page.refusals.counts() == {"forged-or-stale-form /officer/manual 127.0.0.1": 60}
    assert sum("AUDIT refused forged-or-stale-form" in r.getMessage() for r in caplog.records) == 1
    # A logged-in officer's refused form is still a record of its own.
    assert officer.request("/officer/manual", {"csrf": "stale", "code": "OK-1"})[0] == 403
    assert page_server.page.audit.recent()[-1]["action"] == "forged-or-stale-form"
    assert page_server.page.audit.recent()[-1]["officer"] == "An"


def test_stop_while_an_action_waits_refuses_it_at_once(page_server):
    """Finding: stop() joined the server while its worker waited in _ask for the pipeline thread (which was the
    one stopping): the gate froze and the officer got a 500. Now the action is refused with "stopping"."""
    import threading

    client = Client(page_server.url)
    assert client.log_in("An", PASSWORD) == 303
    token = client.csrf()
    answer = []
    poster = threading.Thread(target=lambda: answer.append(
        client.request("/officer/manual", {"csrf": token, "code": "OK-1"})[0]))
    poster.start()
    wait_until(lambda: page_server.link._requests.qsize() == 1, what="the action queued")
    page_server.link.stop()  # the pipeline's thread stops the screens without ever serving the request
    poster.join(patience(30))
    assert answer == [303]
    assert "The device is stopping." in client.request("/officer")[1]
    page_server.link.serve_requests()  # nothing left to run: the action is never recorded later


def test_sessions_end_absolutely_and_on_a_password_change():
    from edge.ui.auth import Sessions

    now = [0.0]
    sessions = Sessions(max_age_s=100, keep=3, clock=lambda: now[0])
    sid = sessions.start("An", "h1")
    for _ in range(9):  # in use all the time: still ends 100 s after the login
        now[0] += 10
        assert sessions.officer(sid, {"An": "h1"}) == "An"
    now[0] += 10
    assert sessions.officer(sid, {"An": "h1"}) is None
    sid = sessions.start("An", "h1")
    assert sessions.officer(sid, {"An": "h2"}) is None  # the password changed
    assert sessions.officer(sid, {"An": "h1"}) is None  # and the session is gone for good
    sid = sessions.start("An", "h1")
    assert sessions.officer(sid, {}) is None            # the officer was removed
    for n in range(10):
        sessions.start(f"o{n}", "h")
    assert len(sessions) == 3 and sessions.officer(None, {}) is None and sessions.officer(["x"], {}) is None


def test_an_officers_name_cannot_lock_them_out_of_the_devices_own_screen():
    now = [0.0]
    limit = LoginLimit(failures=5, window_s=300, clock=lambda: now[0])
    for n in range(5):
        assert limit.attempt(f"203.0.113.{n}", "An") == 0  # an outsider tries the name from many addresses
    assert limit.attempt("203.0.113.99", "An") > 0          # remote guessing of that name is limited
    assert limit.attempt("127.0.0.1", "An") == 0            # the officer at the device still gets in
    limit.succeeded("127.0.0.1", "An")
    for _ in range(5):
        limit.attempt("127.0.0.1", "x")
    assert limit.attempt("127.0.0.1", "An") > 0             # the device's own address is still limited


def test_refusals_are_bounded_and_logged_once_a_minute_per_address(caplog):
    import logging

    from edge.ui.auth import Refusals

    caplog.set_level(logging.INFO, logger="checkpoint.audit")
    now = [0.0]
    refusals = Refusals(keys=5, clock=lambda: now[0])
    for n in range(100):  # 5 addresses, 4 paths: 20 counters, of which the newest 5 are kept
        refusals.count("forged-or-stale-form", f"/officer/{n % 4}", f"10.0.0.{n % 5}\x1b[31m")
    assert len(refusals.counts()) == 5 and refusals.total == 100
    assert len(caplog.records) == 5 and all("\x1b" not in r.getMessage() for r in caplog.records)
    now[0] += 61
    refusals.count("x", "/", "10.0.0.1")
    assert len(caplog.records) == 6
