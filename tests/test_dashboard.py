"""The hub's dashboard: real hub databases (SQLite and PostgreSQL) filled by the real collector, the real
Starlette app on uvicorn, a real headless Chromium, a real Mosquitto for a device's last will."""
from __future__ import annotations

import http.cookiejar
import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import uvicorn
from argon2 import PasswordHasher
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from edge.common.clock import wall_ms
from edge.ui.server import bind
from sync.hub.collector import Collector
from sync.hub.dashboard import fleet
from sync.hub.dashboard.app import DashboardError, build_app, read_admins
from sync.hub.hubdb import HubDB
from sync.wire.codec import WireEntry, encode_batch
from sync.wire.mqtt import make_client

from .broker import ROOT
from .browser import browser, wait_for  # noqa: F401 (the fixture)
from .waiting import wait_until

PASSWORD = "correct horse battery"
ADMINS = {"ada": PasswordHasher().hash(PASSWORD)}


def entry(seq: int, code: str = "079203001234", **kw) -> WireEntry:
    fields = dict(id=str(uuid.uuid4()), seq=seq, wall_ms=wall_ms(), mono_ns=10**12 + seq, boot_id="boot",
                  source="lines:test", code=code, decision="allow", reason="listed", list_name="staff",
                  list_version=2, config_version="7")
    fields.update(kw)
    return WireEntry(**fields)


def status(device: str, *, config_v: int = 1, lists=None, software="1.4.0", depth=0, groups=("ward-3",), **kw):
    data = {"device": device, "state": "online", "sent_ms": wall_ms(),
            "versions": {"software": software, "config": "7", "lists": lists or {"staff": 2}},
            "outbox": {"depth": depth, "oldest_unsynced_age_s": 5.0 if depth else None},
            "source": {"name": "camera", "state": "running"}, "problems": [],
            "remote": {"config": {"group:ward-3": {"version": config_v}}, "problems": [], "groups": list(groups)}}
    data.update(kw)
    return json.dumps(data).encode()


def fill(db: HubDB) -> Collector:
    """Two devices as the real collector stores what they publish; a config pushed to group ward-3."""
    collector = Collector(db, make_client(client_id="dashboard-test", manual_ack=True))
    collector.handle("checkpoint/cp-01/status", status("cp-01", config_v=2))
    collector.handle("checkpoint/cp-02/status", status("cp-02", config_v=1, depth=3))
    collector.handle("checkpoint/cp-01/entries", encode_batch("cp-01", wall_ms(), [
        entry(1), entry(2, code="=HYPERLINK(\"http://x\")", decision="deny", reason="not_listed")]))
    collector.handle("checkpoint/cp-02/entries", encode_batch("cp-02", wall_ms(), [entry(1), entry(3)]))
    for device, accepted, reason in (("cp-01", True, None), ("cp-02", False, "version 2 is not newer")):
        collector.handle(f"checkpoint/{device}/acks", json.dumps({
            "device": device, "target": "group:ward-3", "kind": "config", "name": None, "version": 2,
            "accepted": accepted, "reason": reason, "time_ms": wall_ms()}).encode())
    collector.handle("checkpoint/cp-01/status", b"\xff not json")
    db.record_bundle("group:ward-3", "config", "", 2, wall_ms(), "ab" * 32)
    assert collector.stats["unexpected"] == 0
    return collector


class Served:
    """The dashboard on a free port of 127.0.0.1, in a thread, as `checkpoint-hub serve` runs it."""

    def __init__(self, url: str, **kw):
        self.sock = bind("127.0.0.1", 0)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(build_app(url, ADMINS, zone="Europe/Berlin", **kw),
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, 20, "dashboard started")

    def stop(self):
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()


class Session:
    """A client with its own cookies, never following redirects (so they can be checked)."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kw):
                return None
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def get(self, path: str, **headers) -> tuple[int, dict, str]:
        return self._open(urllib.request.Request(self.base + path, headers=headers))

    def post(self, path: str, form: dict, **headers) -> tuple[int, dict, str]:
        return self._open(urllib.request.Request(self.base + path, data=urllib.parse.urlencode(form).encode(),
                                                 headers=headers, method="POST"))

    def _open(self, request) -> tuple[int, dict, str]:
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read().decode()

    def csrf(self, path: str = "/login") -> str:
        return re.search(r'name="csrf" value="([^"]+)"', self.get(path)[2]).group(1)

    def login(self, password: str = PASSWORD, name: str = "ada") -> int:
        return self.post("/login", {"name": name, "password": password, "csrf": self.csrf(), "next": "/"})[0]


@pytest.fixture(params=["sqlite", "postgresql"])
def hub(request, tmp_path):
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else str(tmp_path / "hub.db")
    db = HubDB(url)
    fill(db)
    served = Served(url)
    yield db, served
    served.stop()
    db.close()


def test_pages_need_a_login_and_show_the_fleet(hub):
    db, served = hub
    s = Session(served.base)
    code, headers, _ = s.get("/")
    assert code == 303 and headers["location"].startswith("/login")
    assert headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in headers["content-security-policy"]
    assert s.login() == 303
    code, _, page = s.get("/")
    assert code == 200 and "cp-01" in page and "cp-02" in page
    assert "2 online" in page and "1 behind" in page
    # cp-02 applied v1 of group:ward-3 while v2 is pushed: marked, with why; cp-01 is not.
    row = re.search(r'<tr data-device="cp-02" class="([^"]*)"', page).group(1)
    assert "drift" in row and "config group:ward-3 v1 &lt; v2" in page
    assert "drift" not in re.search(r'<tr data-device="cp-01" class="([^"]*)"', page).group(1)
    assert "version 2 is not newer" in page and "refused a push" in page
    code, _, device = s.get("/device/cp-02")
    assert code == 200 and "refused: version 2 is not newer" in device and "2–2" in device  # the gap
    assert s.get("/device/nobody")[0] == 404
    code, _, pushes = s.get("/pushes")
    assert code == 200 and "group:ward-3" in pushes and "cp-02: version 2 is not newer" in pushes


def test_filters_and_sorting(hub):
    _, served = hub
    s = Session(served.base)
    s.login()
    page = s.get("/fleet/rows?state=behind")[2]
    assert "cp-02" in page and 'data-device="cp-01"' not in page
    assert 'data-device' not in s.get("/fleet/rows?group=other")[2]
    page = s.get("/fleet/rows?sort=outbox")[2]
    assert page.index('data-device="cp-02"') < page.index('data-device="cp-01"')
    assert s.get("/fleet/rows?sort=%00%ff")[0] == 200


def test_entries_search_and_export_neutralise_formulas(hub):
    _, served = hub
    s = Session(served.base)
    s.login()
    page = s.get("/entries?device=cp-01&decision=deny")[2]
    assert "HYPERLINK" in page and "079203001234" not in page
    assert "079203001234" in s.get("/entries?text=0792")[2]
    assert "No entries" in s.get("/entries?text=%25")[2]  # a % is a character, not a wildcard
    code, headers, csv_text = s.get("/entries?device=cp-01&format=csv")
    assert code == 200 and headers["content-type"].startswith("text/csv")
    assert "'=HYPERLINK" in csv_text and "\n=HYPERLINK" not in csv_text and ",=HYPERLINK" not in csv_text
    lines = s.get("/entries?device=cp-01&format=json")[2].splitlines()
    assert {json.loads(line)["code"] for line in lines} == {"079203001234", '=HYPERLINK("http://x")'}
    first = json.loads(lines[0])  # UTC, and the hub's zone (Europe/Berlin: +01:00 in November)
    assert first["time"].endswith("Z") and first["local_time"].endswith("+01:00")
    assert s.get("/entries?since=not-a-date&until=2026-13-45")[0] == 200


def test_metrics_parse_with_the_prometheus_parser(hub):
    _, served = hub
    code, headers, text = Session(served.base).get("/metrics")
    assert code == 200 and headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    online = {s.labels["device"]: s.value for s in families["checkpoint_device_online"].samples}
    assert online == {"cp-01": 1.0, "cp-02": 1.0}
    depth = {s.labels["device"]: s.value for s in families["checkpoint_device_outbox_depth"].samples}
    assert depth == {"cp-01": 0.0, "cp-02": 3.0}
    decisions = {(s.labels["device"], s.labels["decision"], s.labels["reason"]): s.value
                 for s in families["checkpoint_device_decisions"].samples if s.name.endswith("_total")}
    assert decisions[("cp-01", "deny", "not_listed")] == 1.0 and decisions[("cp-02", "allow", "listed")] == 2.0
    refused = {s.labels["device"]: s.value for s in families["checkpoint_device_refused_bundles"].samples
               if s.name.endswith("_total")}
    assert refused == {"cp-02": 1.0}
    assert [s.value for s in families["checkpoint_hub_rejected_messages"].samples if s.name.endswith("_total")] == [1]
    behind = {s.labels["device"]: s.value for s in families["checkpoint_device_behind"].samples}
    assert behind == {"cp-01": 0.0, "cp-02": 1.0}


def test_a_wrong_password_is_refused_and_logins_are_rate_limited(tmp_path):
    db = HubDB(str(tmp_path / "hub.db"))
    fill(db)
    served = Served(str(tmp_path / "hub.db"))
    try:
        s = Session(served.base)
        codes = [s.login("wrong password") for _ in range(5)]
        assert codes == [401] * 5 and s.get("/")[0] == 303
        assert s.login() == 429  # even the right password, until the window passes
        other = Session(served.base)
        assert other.login(name="nobody") == 429  # the same address
    finally:
        served.stop()
        db.close()


def test_csrf_is_refused(tmp_path):
    db = HubDB(str(tmp_path / "hub.db"))
    served = Served(str(tmp_path / "hub.db"))
    try:
        s = Session(served.base)
        s.csrf()
        assert s.post("/login", {"name": "ada", "password": PASSWORD, "csrf": "forged"})[0] == 403
        assert s.post("/login", {"name": "ada", "password": PASSWORD})[0] == 403
        fresh = Session(served.base)  # no session cookie at all: nothing to match
        assert fresh.post("/login", {"name": "ada", "password": PASSWORD, "csrf": "x"})[0] == 403
        token = s.csrf()
        assert s.post("/login", {"name": "ada", "password": PASSWORD, "csrf": token},
                      Origin="http://evil.example")[0] == 403
        assert s.login() == 303
        assert s.post("/logout", {"csrf": "forged"})[0] == 403 and s.get("/")[0] == 200
        assert s.post("/logout", {"csrf": s.csrf("/")})[0] == 303 and s.get("/")[0] == 303
        # A login may send the browser on only to a path of this site.
        token = s.csrf()
        code, headers, _ = s.post("/login", {"name": "ada", "password": PASSWORD, "csrf": token,
                                             "next": "//evil.example/"})
        assert code == 303 and headers["location"] == "/"
    finally:
        served.stop()
        db.close()


def test_admins_file_is_checked(tmp_path):
    path = tmp_path / "admins.toml"
    path.write_text('[admins]\nada = "plaintext"\n')
    with pytest.raises(DashboardError, match="not an argon2 hash"):
        read_admins(path)
    path.write_text("[admins\n")
    with pytest.raises(DashboardError):
        read_admins(path)
    path.write_text(f'[admins]\nada = "{ADMINS["ada"]}"\n')
    assert read_admins(path) == ADMINS


JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats() | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                max_size=4), max_leaves=40)
KEYS = st.sampled_from(["versions", "outbox", "remote", "source", "groups", "problems", "sent_ms", "last_error",
                        "state"])


@settings(max_examples=40)
@given(st.dictionaries(KEYS, JSON, max_size=9))
def test_any_status_a_device_sends_renders(tmp_path_factory, data):
    """Whatever shape a stored status has, the fleet view and the metrics are built, never an exception."""
    from sync.hub.dashboard import metrics

    db = HubDB(str(tmp_path_factory.mktemp("hub") / "hub.db"))
    try:
        collector = Collector(db, make_client(client_id="prop", manual_ack=True))
        collector.handle("checkpoint/devA/status", json.dumps({"device": "devA", **data}).encode())
        db.record_bundle("all", "list", "staff", 3, wall_ms(), "cd" * 32)
        view = fleet.build(db, wall_ms())
        assert len(view["rows"]) <= 1
        text = metrics.render(lambda: db, wall_ms, fleet.Thresholds()).decode()
        list(text_string_to_metric_families(text))
    finally:
        db.close()


# ---- a real browser, a real broker ---------------------------------------------------------------
DEVICE = """
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, device, status = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5)
c.will_set(f"checkpoint/{device}/status", json.dumps({"device": device, "state": "offline"}), qos=1, retain=True)
c.connect("127.0.0.1", port, keepalive=60)
c.loop_start()
c.publish(f"checkpoint/{device}/status", status, qos=1, retain=True).wait_for_publish()
print("published", flush=True)
time.sleep(3600)
"""


def login_in_browser(browser, base: str) -> None:
    browser.get(base + "/")
    wait_for(browser, lambda d: d.find_element("id", "name"), "login form")
    browser.find_element("id", "name").send_keys("ada")
    browser.find_element("id", "password").send_keys(PASSWORD)
    browser.find_element("id", "login").click()
    wait_for(browser, lambda d: d.find_element("id", "fleet"), "fleet table")


def test_the_fleet_page_shows_a_device_going_offline_by_its_last_will(broker, browser, tmp_path):
    from .test_sync import InProcessCollector

    url = str(tmp_path / "hub.db")
    collector = InProcessCollector(url, broker.port)
    fill(collector.db)
    device = subprocess.Popen([sys.executable, "-c", DEVICE, str(broker.port), "cp-03",
                               status("cp-03", config_v=2).decode()], stdout=subprocess.PIPE, text=True)
    served = Served(url)
    try:
        assert device.stdout.readline().strip() == "published"
        login_in_browser(browser, served.base)

        def state_of(name):
            return lambda d: d.find_element("css selector", f'tr[data-device="{name}"] td.state').text
        wait_for(browser, lambda d: state_of("cp-03")(d).startswith("online"), "cp-03 online")
        assert "behind" in browser.find_element("css selector", 'tr[data-device="cp-02"]').text
        device.kill()  # no DISCONNECT: the broker sends the device's last will
        device.wait()
        wait_for(browser, lambda d: state_of("cp-03")(d).startswith("offline"), "cp-03 offline by its last will")
        assert "1 offline" in browser.find_element("id", "counts").text
        browser.set_window_size(1600, 700)
        # `make screens` sets CHECKPOINT_SCREENS=docs/screens: the README's picture is this very page.
        folder = Path(os.environ.get("CHECKPOINT_SCREENS") or tmp_path / "screens")
        folder.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(folder / "hub-fleet.png"))
    finally:
        device.kill()
        device.wait()
        served.stop()
        collector.close()


def test_drift_and_the_refusal_alert_clear_when_the_device_catches_up(hub):
    db, served = hub
    s = Session(served.base)
    s.login()
    assert 'class="online drift alerted"' in s.get("/fleet/rows?state=behind")[2]
    collector = Collector(db, make_client(client_id="catch-up", manual_ack=True))
    collector.handle("checkpoint/cp-02/acks", json.dumps({
        "device": "cp-02", "target": "group:ward-3", "kind": "config", "name": None, "version": 2,
        "accepted": True, "reason": None, "time_ms": wall_ms()}).encode())
    collector.handle("checkpoint/cp-02/status", status("cp-02", config_v=2))
    # The table is shared between administrators for a second: wait for the next one.
    wait_until(lambda: "0 behind" in s.get("/fleet/rows")[2], 30, "cp-02 no longer behind")
    page = s.get("/fleet/rows")[2]
    assert "drift" not in page and "refused a push" not in page
    # The last refusal stays on the row as history, without an alert.
    assert "version 2 is not newer" in page


def test_serve_command_line(tmp_path):
    """`checkpoint-hub serve` refuses a bad admins file or a missing database (exit 2), then serves."""
    from .broker import free_port
    from .waiting import wait_until as wait

    admins = tmp_path / "admins.toml"
    admins.write_text('[admins]\nada = "not a hash"\n')
    run = [sys.executable, "-m", "sync.hub.dashboard.cli", "serve", "--db", str(tmp_path / "hub.db")]
    bad = subprocess.run(run + ["--admins", str(admins)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "not an argon2 hash" in bad.stderr
    admins.write_text(f'[admins]\nada = "{ADMINS["ada"]}"\n')
    missing = subprocess.run(run + ["--admins", str(admins)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert missing.returncode == 2 and "no hub database" in missing.stderr
    fill(HubDB(str(tmp_path / "hub.db")))
    port = free_port()
    server = subprocess.Popen(run + ["--admins", str(admins), "--listen", f"127.0.0.1:{port}"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        s = Session(f"http://127.0.0.1:{port}")

        def up():
            try:
                return s.get("/login")[0] == 200
            except OSError:
                return False
        wait(up, 30, "dashboard listening")
        assert s.login() == 303 and "cp-01" in s.get("/")[2]
    finally:
        server.terminate()
        server.wait(30)


def test_grafana_and_prometheus_examples_name_only_metrics_that_exist(tmp_path):
    from prometheus_client.exposition import generate_latest

    from sync.hub.dashboard import metrics

    db = HubDB(str(tmp_path / "hub.db"))
    collector = fill(db)
    text = metrics.render(lambda: db, wall_ms, fleet.Thresholds()).decode()
    text += generate_latest(collector.meter.registry).decode()  # what `collect --metrics` answers
    db.close()
    exposed = {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
    dashboard = json.loads((ROOT / "config" / "grafana-dashboard.json").read_text())
    named = {name for panel in dashboard["panels"] for target in panel["targets"]
             for name in re.findall(r"checkpoint_[a-z_]+", target["expr"])}
    named |= set(re.findall(r"checkpoint_[a-z_]+", (ROOT / "config" / "prometheus.yml").read_text()))
    named.discard("checkpoint_hub")  # the job's name
    assert named and named <= exposed, named - exposed


def test_the_shared_fleet_table_is_rebuilt_in_the_background_when_stale():
    from sync.hub.dashboard.cache import Fresh

    now = [0.0]
    cache = Fresh(1.0, 10.0, keys=2, clock=lambda: now[0])
    built = []

    def make():
        built.append(len(built) + 1)
        return built[-1]
    assert cache.get("a", make) == 1 and cache.get("a", make) == 1
    now[0] = 5.0  # stale: the old value at once, the next one built beside
    assert cache.get("a", make) == 1
    wait_until(lambda: cache.get("a", make) == 2, 30, "rebuilt in the background")
    now[0] = 100.0  # nobody looked for long: built inline
    assert cache.get("a", make) == 3
    cache.get("b", make), cache.get("c", make)
    assert len(cache._values) == 2  # bounded
    assert Fresh(0, 0).get("x", make) != Fresh(0, 0).get("x", make)  # 0: no cache


# ---- server-side sessions, paging, status history ------------------------------------------------
def test_a_copied_session_cookie_stops_working_at_logout(tmp_path):
    """The cookie names a session kept on the server: logging out ends it for every copy of the cookie."""
    db = HubDB(str(tmp_path / "hub.db"))
    fill(db)
    served = Served(str(tmp_path / "hub.db"))
    try:
        s = Session(served.base)
        assert s.login() == 303 and s.get("/")[0] == 200
        thief = Session(served.base)
        for cookie in s.jar:
            thief.jar.set_cookie(cookie)
        assert thief.get("/")[0] == 200  # the copy works while the session lives
        assert s.post("/logout", {"csrf": s.csrf("/")})[0] == 303
        code, headers, _ = thief.get("/")
        assert code == 303 and headers["location"].startswith("/login")
        assert thief.get("/fleet/rows")[0] == 303
        assert s.login() == 303 and s.get("/")[0] == 200  # a new login is a new session
        assert thief.get("/")[0] == 303
    finally:
        served.stop()
        db.close()


def test_a_session_expires_on_the_server(tmp_path):
    from edge.ui.auth import Sessions

    now = [0.0]
    sessions = Sessions(60, clock=lambda: now[0])
    sid = sessions.start("ada", ADMINS["ada"])
    assert sessions.officer(sid, ADMINS) == "ada"
    now[0] = 61.0
    assert sessions.officer(sid, ADMINS) is None


def many(db: HubDB, n: int) -> None:
    collector = Collector(db, make_client(client_id="many", manual_ack=True))
    for i in range(n):
        device = f"cp-{i:03d}"
        collector.handle(f"checkpoint/{device}/status", status(device, depth=i, groups=("ward-3",)))


def test_the_fleet_table_is_paged_with_counts_over_the_whole_fleet(tmp_path):
    db = HubDB(str(tmp_path / "hub.db"))
    many(db, 7)
    served = Served(str(tmp_path / "hub.db"), fresh_s=0)
    try:
        s = Session(served.base)
        s.login()
        page = s.get("/fleet/rows?per=3&sort=outbox&page=2")[2]
        shown = re.findall(r'<tr data-device="([^"]+)"', page)
        assert shown == ["cp-003", "cp-002", "cp-001"]  # by outbox depth, largest first: the second three
        assert "7 online" in page and "of 7" in page and "page <span class=\"page\">2</span> of 3" in page
        # The links keep the filters, the sort and the page size.
        assert 'href="/?group=&amp;state=&amp;sort=outbox&amp;per=3&amp;page=3"' in page
        assert re.findall(r'<tr data-device="([^"]+)"', s.get("/fleet/rows?per=3&sort=outbox&page=3")[2]) == [
            "cp-000"]
        assert len(re.findall("<tr data-device", s.get("/fleet/rows?per=3&page=99")[2])) == 1  # the last page
        assert len(re.findall("<tr data-device", s.get("/fleet/rows?per=x&page=-1")[2])) == 7  # default 100
        assert len(re.findall("<tr data-device", s.get("/fleet/rows?state=offline&per=3")[2])) == 0
        assert "7 online" in s.get("/fleet/rows?state=offline&per=3")[2]
    finally:
        served.stop()
        db.close()


def test_the_next_page_in_the_browser_stays_on_its_page_while_it_redraws(browser, tmp_path):
    db = HubDB(str(tmp_path / "hub.db"))
    many(db, 5)
    served = Served(str(tmp_path / "hub.db"), fresh_s=0)
    try:
        login_in_browser(browser, served.base)
        browser.get(served.base + "/?per=2")
        wait_for(browser, lambda d: d.find_element("css selector", "a.next"), "a next link")
        browser.find_element("css selector", "a.next").click()
        wait_for(browser, lambda d: d.find_element("css selector", ".pager .page").text == "2", "page 2")

        def devices(d):
            return [row.get_attribute("data-device") for row in d.find_elements("css selector", "tr[data-device]")]
        assert devices(browser) == ["cp-002", "cp-003"]
        assert "5 online" in browser.find_element("id", "counts").text
        # A device changing state shows on the page being looked at, by the live redraw.
        Collector(db, make_client(client_id="later", manual_ack=True)).handle(
            "checkpoint/cp-003/status", json.dumps({"device": "cp-003", "state": "offline"}).encode())
        wait_for(browser, lambda d: d.find_element("css selector", 'tr[data-device="cp-003"] td.state')
                 .text.startswith("offline"), "cp-003 offline on page 2")
        assert devices(browser) == ["cp-002", "cp-003"]
        assert "1 offline" in browser.find_element("id", "counts").text
    finally:
        served.stop()
        db.close()


def test_status_history_keeps_changes_bounded(hub):
    db, served = hub
    collector = Collector(db, make_client(client_id="history", manual_ack=True))
    before = db.status_history("cp-02")
    assert [h["state"] for h in before] == ["online"]
    collector.handle("checkpoint/cp-02/status", status("cp-02", config_v=1, depth=3))  # only sent_ms differs
    assert len(db.status_history("cp-02")) == 1
    collector.handle("checkpoint/cp-02/status", status("cp-02", config_v=2, depth=0))
    collector.handle("checkpoint/cp-02/status", json.dumps({"device": "cp-02", "state": "offline"}).encode())
    history = db.status_history("cp-02")
    assert [h["state"] for h in history] == ["offline", "online", "online"]
    assert history[1]["status"]["remote"]["config"]["group:ward-3"]["version"] == 2
    assert history[1]["clock_offset_ms"] is not None and history[0]["clock_offset_ms"] is None
    db.status_history_per_device = 2
    collector.handle("checkpoint/cp-02/status", status("cp-02", depth=9))
    assert [h["state"] for h in db.status_history("cp-02")] == ["online", "offline"]
    assert db.status_history("cp-01") and db.status_history("nobody") == []
    s = Session(served.base)
    s.login()
    page = s.get("/device/cp-02")[2]
    assert '<table id="history">' in page and page.count('<td class="state">') == 2


def test_a_hub_database_from_before_the_status_history_is_migrated(request, tmp_path):
    """An older database (no hub_status_history): read-only it shows no history; opened for writing (the
    collector starting) it gets the table, SQLite and PostgreSQL alike."""
    for url in (str(tmp_path / "old.db"), request.getfixturevalue("pg_url")):
        db = HubDB(url)
        fill(db)
        with db.transaction() as cur:
            cur.execute("DROP TABLE hub_status_history")
        db.close()
        old = HubDB(url, readonly=True)
        assert old.status_history("cp-01") == [] and old.fleet()
        old.close()
        served = Served(url)
        try:
            s = Session(served.base)
            s.login()
            code, _, page = s.get("/device/cp-01")
            assert code == 200 and "None kept." in page
        finally:
            served.stop()
        db = HubDB(url)
        try:
            Collector(db, make_client(client_id="migrated", manual_ack=True)).handle(
                "checkpoint/cp-01/status", json.dumps({"device": "cp-01", "state": "offline"}).encode())
            assert [h["state"] for h in db.status_history("cp-01")] == ["offline"]
        finally:
            db.close()


def test_the_device_page_shows_its_status_history_in_the_browser(browser, tmp_path):
    db = HubDB(str(tmp_path / "hub.db"))
    fill(db)
    collector = Collector(db, make_client(client_id="history-browser", manual_ack=True))
    collector.handle("checkpoint/cp-02/status", status("cp-02", config_v=2, software="1.5.0", depth=7))
    collector.handle("checkpoint/cp-02/status", json.dumps({"device": "cp-02", "state": "offline"}).encode())
    served = Served(str(tmp_path / "hub.db"))
    try:
        login_in_browser(browser, served.base)
        browser.get(served.base + "/device/cp-02")
        rows = wait_for(browser, lambda d: d.find_elements("css selector", "#history tr.offline, #history tr.online"),
                        "status history rows")
        texts = [row.text for row in rows]
        assert len(texts) == 3 and texts[0].split()[2] == "offline"
        assert "1.5.0" in texts[1] and "group:ward-3 v2" in texts[1] and " 7 " in f" {texts[1]} "
        assert "1.4.0" in texts[2] and "group:ward-3 v1" in texts[2]
    finally:
        served.stop()
        db.close()


def test_history_counts_changes_of_what_the_page_shows_not_counters(hub):
    """A daemon's periodic status carries counters and ages that move every time (scans, the clock, list ages,
    the outbox's oldest age): those alone are no change; a send time from no real clock keeps the status."""
    db, _ = hub
    collector = Collector(db, make_client(client_id="history-counters", manual_ack=True))
    for n in range(3):
        collector.handle("checkpoint/cp-02/status", status("cp-02", depth=3, scans=100 + n,
                                                           clock={"wall_ms": wall_ms() + n},
                                                           outbox={"depth": 3, "oldest_unsynced_age_s": 5.0 + n}))
    rows = len(db.status_history("cp-02"))
    collector.handle("checkpoint/cp-02/status", status("cp-02", depth=3, scans=200))
    assert len(db.status_history("cp-02")) == rows
    collector.handle("checkpoint/cp-02/status", status("cp-02", depth=3, sent_ms=-(2**63)))
    collector.handle("checkpoint/cp-02/status", status("cp-02", depth=4, sent_ms=-(2**63)))
    newest = db.status_history("cp-02")[0]
    assert newest["status"]["outbox"]["depth"] == 4 and newest["clock_offset_ms"] is None


def test_a_status_an_older_hub_stored_reads_with_its_groups(hub):
    """A row of a shape the model does not take in one part (an old device's long refusal reason, its lists
    unreadable): the device keeps its groups, problems and versions in every read."""
    from sync.hub.status import groups, problems, read_status

    old = {"device": "old1", "state": "online", "versions": {"software": "1.0", "lists": {"error": "unreadable"}},
           "problems": ["disk full"], "remote": {"groups": ["w"], "last_rejected": {"reason": "x" * 5000}}}
    status_ = read_status("old1", old)
    assert groups(status_) == ["w"] and problems(status_) == ["disk full"]
    assert status_.versions is not None and status_.versions.software == "1.0"
