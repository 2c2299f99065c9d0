"""Live events and the daemon's side of the screens: a browser never slows the gate; the officer's actions run
on the pipeline's thread; the screens failing to start never stops scanning. Real daemon, real sockets."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import urllib.parse
import urllib.request

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.app.daemon import Daemon
from edge.settings.layers import load_settings
from edge.settings.schema import UISettings
from edge.ui import i18n
from edge.ui.context import ActionRefused, UIContext
from edge.ui.events import RELOAD, EventHub
from edge.ui.kiosk import kiosk_view
from edge.ui.server import UIError, start_ui

from .conftest import checkpoint_process, run_checkpoint
from .test_ui_kiosk import LINES, LIST, status
from .waiting import patience, wait_until


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=patience(10)) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def scan(n: int):
    """A real pipeline Scan, as the pipeline hands it to on_scan."""
    from edge.app.pipeline import Scan
    from edge.common.model import Decision, Outcome, Reason
    from edge.entries.store import Entry

    entry = Entry(f"id-{n}", "d", n, n, "b", "lines", f"code-{n}", "allow", "listed", None, None, None)
    return Scan(entry, Decision(Outcome.ALLOW, Reason.LISTED), True, n, n, n)


def test_hub_hands_scans_across_threads_and_drops_a_slow_subscriber():
    hub = EventHub(inbox_size=8, subscriber_size=4)
    loop = asyncio.new_event_loop()
    hub.publish(scan(0))  # no server yet: nothing happens, nothing is counted
    assert hub.stats()["published"] == 0

    async def scenario():
        hub.attach(asyncio.get_running_loop())
        fast, slow = hub.subscribe(), hub.subscribe()
        publisher = threading.Thread(target=lambda: [hub.publish(scan(n)) for n in range(1, 4)])
        publisher.start()
        publisher.join()
        got = [await fast.next(patience(10)) for _ in range(3)]
        assert [e["id"] for e in got] == ["id-1", "id-2", "id-3"] and [e["seq"] for e in got] == [1, 2, 3]
        assert got[0]["code"] == "code-1" and got[0]["decision"] == "allow"
        # `slow` read nothing: 3 of its 4 places are taken; two more overflow it
        threading.Thread(target=lambda: [hub.publish(scan(n)) for n in range(4, 6)]).start()
        assert (await fast.next(patience(10)))["id"] == "id-4"
        assert (await fast.next(patience(10)))["id"] == "id-5"
        assert await slow.next(patience(10)) is RELOAD  # told to reload, and out of the hub
        assert hub.subscribers == 1 and hub.dropped == 1
        hub.detach()
        assert (await fast.next(patience(10)))["type"] == "closed"

    loop.run_until_complete(scenario())
    loop.close()
    # With the loop stopped and not draining, the inbox fills and further scans are counted, not waited for.
    hub.attach(asyncio.new_event_loop())
    for n in range(20):
        hub.publish(scan(n))
    assert hub.stats()["waiting"] == 8 and hub.dropped == 1 + 12


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "scanner.fifo"
    os.mkfifo(path)
    return path


def test_a_subscriber_that_never_reads_does_not_slow_or_stop_the_gate(tmp_path, make_config, fifo):
    config = make_config(LINES.format(path=fifo), mode="record", debounce_ms=0, ui='listen = "127.0.0.1:0"\n')
    daemon = Daemon(config, load_settings(config))
    runner = threading.Thread(target=daemon.run)
    runner.start()
    writer = os.open(fifo, os.O_WRONLY)
    idle = socket.socket()
    try:
        wait_until(lambda: daemon.ui.active, what="the screens")
        url = daemon.ui.server.url
        # A page on the server's loop that subscribed and never reads one event...
        loop = daemon.ui.events._loop
        never = asyncio.run_coroutine_threadsafe(_subscribe(daemon.ui.events), loop).result(patience(10))
        # ...and a browser that opened the live stream and never reads its socket.
        idle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        idle.connect((urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port))
        idle.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: _events(url)["subscribers"] == 2, what="both subscribers")
        for start in range(0, 1000, 100):
            os.write(writer, "".join(f"visitor-{n:04d}\n" for n in range(start, start + 100)).encode())
        wait_until(lambda: daemon.parts.pipeline.scans == 1000 and _events(url)["published"] == 1000,
                   what="all 1,000 scans recorded and published")
        events = _events(url)
        assert events["dropped"] >= 1 and never.dropped  # the one that never read was dropped, and counted
        assert events["subscribers"] <= 1
    finally:
        idle.close()
        os.close(writer)
        daemon.request_stop()
        runner.join(patience(30))
    assert not runner.is_alive()
    result = run_checkpoint("entries", "--config", config, "--format", "json")
    assert len(result.stdout.splitlines()) == 1000


async def _subscribe(hub):
    return hub.subscribe()


def _events(url: str) -> dict:
    return json.loads(get(url + "/health")[1])["events"]


def test_screens_off_and_port_taken(tmp_path, make_config, fifo):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        config = make_config(LINES.format(path=fifo), mode="record", ui=f'listen = "127.0.0.1:{port}"\n')
        proc = checkpoint_process("run", "--config", config)
        writer = os.open(fifo, os.O_WRONLY)
        os.write(writer, b"first\n")
        wait_until(lambda: status(tmp_path).get("scans") == 1 or _entries(config) == 1, what="the scan recorded")
        wait_until(lambda: "error" in (status(tmp_path).get("ui") or {}), what="the screens' error in status.json")
        assert status(tmp_path)["ui"]["url"] is None
        os.close(writer)
        proc.terminate()
        _, stderr = proc.communicate(timeout=patience(30))
        assert proc.returncode == 0
        assert "WARNING" in stderr and "screens not served" in stderr and "Address already in use" in stderr
    finally:
        taken.close()
    # [ui] enabled = false (the tests' default): no "ui" in status.json, as before the screens existed
    (tmp_path / "state" / "status.json").unlink()
    config = make_config(LINES.format(path=tmp_path / "one.txt"), mode="record", name="off.toml")
    (tmp_path / "one.txt").write_text("second\n")
    result = run_checkpoint("run", "--config", config)
    assert result.returncode == 0 and "checkpoint.ui" not in result.stderr
    assert "ui" not in status(tmp_path) and status(tmp_path)["state"] == "stopped"


def _entries(config) -> int:
    result = run_checkpoint("entries", "--config", config, "--format", "json")
    return len(result.stdout.splitlines())


def test_manual_entry_and_review_answers_run_on_the_pipeline_thread(tmp_path, make_config, fifo):
    config = make_config(LINES.format(path=fifo), repeat=60, debounce_ms=0,
                         ui='listen = "127.0.0.1:0"\nreview_expiry_s = 600\n')
    rows = tmp_path / "list.csv"
    rows.write_text(LIST, encoding="utf-8")
    assert run_checkpoint("list", "import", "people", rows, "--config", config).returncode == 0
    daemon = Daemon(config, load_settings(config))
    runner = threading.Thread(target=daemon.run)
    runner.start()
    writer = os.open(fifo, os.O_WRONLY)
    try:
        wait_until(lambda: daemon.ui.active, what="the screens")
        ui = daemon.ui
        typed = ui.submit("OK-1", "Officer An")  # a damaged QR typed by hand: same policy, store, signals
        assert (typed["source"], typed["decision"], typed["reason"], typed["officer"]) == (
            "manual", "allow", "listed", "Officer An")
        assert typed["label"] == "Nguyễn Văn An" and typed["committed_ns"] > 0
        os.write(writer, b"OK-1\n")  # allowed by hand a moment ago: review
        wait_until(lambda: any(r["decision"] == "review" for r in ui.recent(10)), what="the review")
        reviewed = next(r for r in ui.recent(10) if r["decision"] == "review")
        answer = ui.review(reviewed["id"], "allow", "Officer Bình")
        assert (answer["source"], answer["decision"], answer["reason"], answer["ref_id"], answer["officer"]) == (
            "review", "allow", "officer", reviewed["id"], "Officer Bình")
        newest = ui.recent(1)[0]
        assert (newest["id"], newest["ref_id"], newest["officer"], newest["code"]) == (
            answer["id"], reviewed["id"], "Officer Bình", "OK-1")
        for entry_id, answer_word, refused in [(reviewed["id"], "deny", "answered"),
                                              (typed["id"], "allow", "not-review"),
                                              ("no-such-id", "deny", "not-found"),
                                              (reviewed["id"], "maybe", "bad-answer")]:
            with pytest.raises(ActionRefused) as caught:
                ui.review(entry_id, answer_word, "Officer An")
            assert caught.value.reason == refused
        with pytest.raises(ActionRefused) as caught:
            ui.submit("   ", "Officer An")
        assert caught.value.reason == "empty"
        assert [r["source"].split(":")[0] for r in ui.recent(3)] == ["review", "lines", "manual"]
    finally:
        os.close(writer)
        daemon.request_stop()
        runner.join(patience(30))
    assert not runner.is_alive() and not daemon.ui.active
    with pytest.raises(ActionRefused) as caught:
        daemon.ui.submit("OK-1", "Officer An")
    assert caught.value.reason == "stopping"


# ---- what comes from outside: the language asked for, and a list's values shown on the screen ----------
hostile_text = st.text(st.characters(codec="utf-8"), max_size=300) | st.sampled_from(
    ["", "../../etc/passwd", "vi/../en", "\x00", "%00", "en\r\nX: y", "😀" * 50])
huge = st.integers(min_value=-(2**80), max_value=2**80) | st.none() | st.text(max_size=5) | st.floats()


@settings(max_examples=40)
@given(event=st.fixed_dictionaries({
    "decision": st.sampled_from(["allow", "deny", "review", "other", ""]) | st.none(),
    "reason": st.sampled_from(["expired", "not-yet-valid", "repeated", "listed", "??"]) | hostile_text,
    "label": hostile_text | st.none() | st.integers(),
    "valid_until_ms": huge, "valid_from_ms": huge, "repeated_at_ms": huge, "wall_ms": huge,
    "committed_ns": st.integers(min_value=0, max_value=2**63)}), language=st.sampled_from(["vi", "en", "xx"]))
def test_kiosk_view_of_any_event_is_words(event, language):
    words = i18n.catalogue(language, "kiosk")
    view = kiosk_view(event, words, i18n.zone("Asia/Ho_Chi_Minh"))
    assert view["symbol"] in "✓✗?" and isinstance(view["reason"], str) and isinstance(view["word"], str)
    assert len(view["label"]) <= 200 and "code" not in view


@pytest.fixture(scope="module")
def served():
    hub = EventHub()
    context = UIContext(settings=UISettings(listen="127.0.0.1:0"), device_id="t", timezone="Nowhere/Zone",
                        events=hub, recent=lambda n: [], status=dict, submit=None, review=None)
    server = start_ui(context)
    yield server
    server.stop()


@settings(max_examples=30)
@given(lang=hostile_text)
def test_any_language_asked_for_gives_a_page(served, lang):
    code, body = get(served.url + "/kiosk?" + urllib.parse.urlencode({"lang": lang}))
    assert code == 200 and b'<h2 id="prompt">' in body


def test_bad_listen_addresses_are_refused_cleanly():
    for listen in ("nonsense", "127.0.0.1:99999", ":8080", "256.1.1.1:80"):
        with pytest.raises(UIError):
            start_ui(UIContext(settings=UISettings(listen=listen), device_id="t", timezone="UTC",
                               events=EventHub(), recent=None, status=dict, submit=None, review=None))


def test_reload_rebuilds_the_screens_only_when_ui_changed(tmp_path, make_config, fifo):
    config = make_config(LINES.format(path=fifo), mode="record", ui='listen = "127.0.0.1:0"\nsite_name = "A"\n')
    daemon = Daemon(config, load_settings(config))
    runner = threading.Thread(target=daemon.run)
    runner.start()
    writer = os.open(fifo, os.O_WRONLY)
    try:
        first = wait_until(lambda: daemon.ui.server, what="the screens")
        config.write_text(config.read_text(encoding="utf-8").replace('version = "test-1"', 'version = "test-2"'),
                          encoding="utf-8")
        daemon.request_reload()
        wait_until(lambda: daemon.parts.settings.version == "test-2", what="the reload")
        assert daemon.ui.server is first  # [ui] unchanged: the same server, the pages stay connected
        config.write_text(config.read_text(encoding="utf-8").replace('site_name = "A"', 'site_name = "B"'),
                          encoding="utf-8")
        daemon.request_reload()
        second = wait_until(lambda: daemon.ui.server is not first and daemon.ui.server, what="the new screens")
        assert b"B</h1>" in get(second.url + "/kiosk")[1]
        wait_until(lambda: (status(tmp_path).get("ui") or {}).get("url") == second.url, what="the new address")
    finally:
        os.close(writer)
        daemon.request_stop()
        runner.join(patience(30))
    assert not runner.is_alive()


# ---- the review's findings ---------------------------------------------------------------------------------
def test_an_action_whose_wait_timed_out_never_runs_later():
    """Finding: a review Allow the officer was told was "not recorded" opened the relay when the pipeline
    thread came back. An abandoned request is skipped, never run."""
    from edge.ui.link import QUEUE_MAX, UILink

    link = UILink()
    link.open_requests()
    link.action_timeout_s = 0  # the pipeline thread is "busy": the asker gives up at once
    ran = []
    with pytest.raises(ActionRefused) as refused:
        link._ask(lambda parts: ran.append("relay opened"))
    assert refused.value.reason == "busy"
    link.serve_requests()  # the pipeline thread comes back
    assert ran == []
    # A bounded queue: past QUEUE_MAX waiting actions, "busy" at once (nothing piles up behind a stuck step).
    link.action_timeout_s = 60
    waiting = [threading.Thread(target=lambda: ran.append(link._ask(lambda parts: "done"))) for _ in range(QUEUE_MAX)]
    for thread in waiting:
        thread.start()
    wait_until(lambda: link._requests.qsize() == QUEUE_MAX, what="the queue full")
    with pytest.raises(ActionRefused) as refused:
        link._ask(lambda parts: ran.append("one too many"))
    assert refused.value.reason == "busy"
    link.serve_requests()
    for thread in waiting:
        thread.join(patience(10))
    assert ran == ["done"] * QUEUE_MAX


def test_stop_refuses_a_waiting_action_and_it_never_runs():
    from edge.ui.link import UILink

    link = UILink()
    link.open_requests()
    ran, outcome = [], []

    def ask():
        try:
            link._ask(lambda parts: ran.append("ran"))
        except ActionRefused as exc:
            outcome.append(exc.reason)

    asker = threading.Thread(target=ask)
    asker.start()
    wait_until(lambda: link._requests.qsize() == 1, what="the action queued")
    link.stop()  # on the pipeline's thread, which therefore cannot serve it
    asker.join(patience(10))
    assert not asker.is_alive() and outcome == ["stopping"]
    link.serve_requests()
    assert ran == []
    with pytest.raises(ActionRefused, match="stopping"):  # after stop, nothing is queued any more
        link._ask(lambda parts: ran.append("late"))


def test_subscribers_are_capped_with_a_reserve_for_loopback():
    from edge.ui.events import TooManySubscribers

    hub = EventHub(max_subscribers=4, local_reserve=2)

    async def fill():
        outside = [hub.subscribe(), hub.subscribe()]
        with pytest.raises(TooManySubscribers):
            hub.subscribe()
        local = [hub.subscribe(local=True), hub.subscribe(local=True)]
        with pytest.raises(TooManySubscribers):
            hub.subscribe(local=True)
        hub.unsubscribe(outside[0])
        with pytest.raises(TooManySubscribers):  # outside pages never take more than the cap less the reserve
            hub.subscribe()
        hub.subscribe(local=True)
        return len(outside) + len(local)

    assert asyncio.run(fill()) == 4 and hub.stats()["refused"] == 3 and hub.subscribers == 4


class Stream:
    """An SSE connection held open on a raw socket: its status line, then its events as they come."""

    def __init__(self, host: str, port: int, path: str):
        self.sock = socket.create_connection((host, port), timeout=patience(30))
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        self.status = int(self.buffer.split(b" ", 2)[1])
        self.head = self.buffer.split(b"\r\n\r\n", 1)[0].decode()

    def close(self) -> None:
        self.sock.close()


OUTSIDE = "203.0.113.7"  # a phone on the hotspot, say: any address that is not the device's own


@pytest.fixture
def outside_server():
    """The screens' real app and server, on loopback; a request asking for it (`?from=outside`) reaches the app
    as a client of the network rather than of the device: the ASGI peer address is all the pages judge by, and no
    traffic leaves this machine's loopback."""
    import uvicorn

    from edge.ui.server import LIMIT_CONCURRENCY, UIServer, bind, build_app

    hub = EventHub(max_subscribers=3, local_reserve=1)
    context = UIContext(settings=UISettings(listen="127.0.0.1:0"), device_id="t", timezone="UTC",
                        events=hub, recent=lambda n: [], status=dict, submit=None, review=None)
    app = build_app(context)

    async def placed(scope, receive, send):
        if scope["type"] == "http" and b"from=outside" in scope.get("query_string", b""):
            scope = {**scope, "client": (OUTSIDE, 40000)}
        await app(scope, receive, send)

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    config = uvicorn.Config(placed, log_level="warning", access_log=False, lifespan="off", loop="asyncio",
                            http="h11", ws="none", timeout_graceful_shutdown=1, limit_concurrency=LIMIT_CONCURRENCY,
                            proxy_headers=False, forwarded_allow_ips="")
    server = UIServer(context, sock, f"http://127.0.0.1:{port}", config)
    server.start()
    server.hub, server.port = hub, port
    yield server
    server.stop()


def test_past_the_cap_503_and_the_devices_own_kiosk_still_connects(outside_server):
    held = [Stream("127.0.0.1", outside_server.port, "/events?from=outside") for _ in range(2)]
    assert [s.status for s in held] == [200, 200]
    refused = Stream("127.0.0.1", outside_server.port, "/events?from=outside")
    assert refused.status == 503 and "retry-after: 5" in refused.head.lower()
    refused.close()
    local = Stream("127.0.0.1", outside_server.port, "/events")  # the reserve: the device's own screen
    assert local.status == 200
    wait_until(lambda: outside_server.hub.subscribers == 3, what="three live pages")
    # Labels (names) go to the device's own screen only.
    import dataclasses

    from edge.common.model import Decision, Outcome, Reason

    outside_server.hub.publish(dataclasses.replace(
        scan(1), decision=Decision(Outcome.ALLOW, Reason.LISTED, label="Nguyễn Văn An")))
    near, far = _scan_data(local), _scan_data(held[0])
    assert near["label"] == "Nguyễn Văn An" and near["committed_unix_ns"] > 0
    assert far["label"] == "" and far["committed_unix_ns"] == 0 and far["decision"] == "allow"
    for one in (*held, local):
        one.close()


def _scan_data(held: Stream) -> dict:
    """The first scan event's data on a held stream (whole: up to the blank line that ends it)."""
    import re

    pattern = re.compile(rb"event: scan\ndata: ([^\n]*)\n\n")
    while not pattern.search(held.buffer):
        chunk = held.sock.recv(4096)
        assert chunk, "the stream ended"
        held.buffer += chunk
    return json.loads(pattern.search(held.buffer).group(1))


def test_attach_forgets_a_wake_up_left_by_a_closed_loop():
    hub = EventHub()
    old = asyncio.new_event_loop()
    hub.attach(old)
    hub.publish(scan(1))  # a drain is scheduled on the old loop...
    old.close()           # ...which closes (a reload) before running it
    new = asyncio.new_event_loop()
    try:
        hub.attach(new)
        subscriber = hub.subscribe()
        hub.publish(scan(2))
        event = new.run_until_complete(subscriber.next(patience(10)))
        assert event is not None and event["code"] in ("code-1", "code-2")
    finally:
        hub.detach()
        new.close()


def test_a_stream_body_that_never_started_gives_its_slot_back():
    from edge.ui.events import stream

    hub = EventHub(max_subscribers=1, local_reserve=0)

    async def drop_unstarted() -> int:
        body = stream(hub.subscribe(), lambda event: b"")  # the client left before the response began
        del body
        return hub.subscribers

    assert asyncio.run(drop_unstarted()) == 0
