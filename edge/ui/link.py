"""The daemon's side of the screens: the UIContext it serves, and the officer's actions run on its thread.

The web server runs in its own thread; what it asks of the pipeline (a manual entry, a review answer) is put
on a queue that the daemon's loop drains between two steps, so the pipeline's objects are only ever touched
by the pipeline's thread. The asking thread waits for the answer, up to ACTION_TIMEOUT_S.
"""
from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.common.clock import mono_ns, wall_ms
from edge.common.model import Outcome
from edge.common.payload import code_from_bytes
from edge.common.sqlite import connect
from edge.common.textsafe import for_log
from edge.ui.context import ActionRefused, UIContext
from edge.ui.events import EventHub, scan_event

if TYPE_CHECKING:
    from edge.ui.server import UIServer  # imported when the screens start

log = logging.getLogger("checkpoint.ui")

ACTION_TIMEOUT_S = 5.0
QUEUE_MAX = 16             # officer actions waiting for the pipeline; beyond, "busy" at once
RECENT_MAX = 1000
_REVIEWED = "SELECT id, code, decision, wall_ms, list_name, list_version FROM entries WHERE id = ?"
_ANSWERED = "SELECT 1 FROM entries WHERE ref_id = ? LIMIT 1"


QUEUED, RUNNING, ABANDONED, DONE = "queued", "running", "abandoned", "done"


class _Request:
    """One officer action. Its state changes under the lock, so an action whose asker gave up is never run
    later (a review Allow must not open the relay seconds after the officer was told "not recorded")."""

    def __init__(self, work: Callable[[Any], dict[str, Any]]):
        self.work = work
        self.done = threading.Event()
        self.result: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.state = QUEUED
        self._lock = threading.Lock()

    def claim(self) -> bool:
        """The pipeline's thread takes it: False when the asker already gave up (or it was refused)."""
        with self._lock:
            if self.state != QUEUED:
                return False
            self.state = RUNNING
            return True

    def abandon(self, error: BaseException) -> bool:
        """The asker gives up (timeout) or the server stops: only a request not yet running can be dropped."""
        with self._lock:
            if self.state != QUEUED:
                return False
            self.state = ABANDONED
            self.error = error
        self.done.set()
        return True

    def finish(self) -> None:
        with self._lock:
            self.state = DONE
        self.done.set()


class UILink:
    def __init__(self) -> None:
        self.events = EventHub()
        self.server: UIServer | None = None  # while the screens are served
        self.error: str | None = None
        self.status: dict[str, Any] = {}  # replaced whole by the daemon's thread; read by the server's
        self._requests: queue.Queue[_Request] = queue.Queue(QUEUE_MAX)
        self._closed = True         # no server: _ask refuses at once
        self._closed_lock = threading.Lock()
        self.action_timeout_s = ACTION_TIMEOUT_S
        self._parts: Any = None     # the daemon's current edge.app.parts.Parts (a layer above), for the actions
        self._key: tuple[Any, ...] | None = None  # the settings the server was started with
        self.context: UIContext | None = None

    # -- the daemon's thread ----------------------------------------------------------------------
    def on_scan(self, scan: Any) -> None:
        self.events.publish(scan)

    @property
    def active(self) -> bool:
        return self.server is not None

    def info(self) -> dict[str, Any] | None:
        """What status.json says of the screens ({"url": ...}); None when they are off."""
        if self._key is None:
            return None
        return {"url": self.server.url if self.server else None, **({"error": self.error} if self.error else {})}

    def apply(self, parts: Any) -> bool:
        """Start, keep, restart or stop the screens for these parts' settings (at start and after a reload).
        True when they changed (status.json is then due)."""
        self._parts = parts
        settings = parts.settings
        key = (settings.ui, settings.device.id, settings.device.timezone) if settings.ui.enabled else None
        if key == self._key:
            return False
        self.stop()
        self._key = key
        if key is None:
            return True
        from edge.ui.server import UIError, start_ui

        context = UIContext(settings=settings.ui, device_id=settings.device.id, timezone=settings.device.timezone,
                            events=self.events, recent=self.recent, status=lambda: self.status,
                            submit=self.submit, review=self.review, data_dir=settings.store.entries_path.parent)
        self.context = context
        self.open_requests()
        try:
            self.server = start_ui(context)
        except UIError as exc:
            self._refuse_waiting()
            # The gate matters more than its screens: scanning goes on without them.
            self.error = str(exc)
            log.warning("screens not served: %s; the appliance goes on scanning", exc)
            return True
        self.error = None
        log.info("screens: %s/kiosk", self.server.url)
        return True

    def audit(self) -> list[dict[str, Any]]:
        """The officers' recent actions (logins, refusals) on the page now served: they go up in the status."""
        if self.server is None or self.context is None:
            return []
        from edge.ui import officer

        return officer.audit(self.context).recent()

    def update_status(self, snapshot: dict[str, Any], agent: Any) -> None:
        sync = {"enabled": agent is not None, "connection": agent.state.get("connection") if agent else None,
                "last_sync_ms": agent.state.get("last_sync_ms") if agent else None}
        self.status = {**snapshot, "sync": sync, "ui": self.info()}

    def serve_requests(self) -> None:
        """Run what the web server asked for (called by the daemon's loop between steps)."""
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            if not request.claim():
                continue  # its asker gave up, or the server stopped: never run it late
            try:
                request.result = request.work(self._parts)
            except BaseException as exc:  # noqa: BLE001 - handed to the asking thread, which raises it
                request.error = exc
            request.finish()

    def open_requests(self) -> None:
        """From now on the officer's actions are queued for serve_requests (until stop())."""
        with self._closed_lock:
            self._closed = False

    def _refuse_waiting(self) -> None:
        with self._closed_lock:
            self._closed = True
        while True:  # whoever still waits is told at once, not after the timeout
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            request.abandon(ActionRefused("stopping"))

    def stop(self) -> None:
        # Refuse the waiting actions BEFORE joining the server: its worker threads wait in _ask for an answer
        # only this (the pipeline's) thread could give, so joining first would freeze the gate for seconds.
        self._refuse_waiting()
        if self.server is not None:
            self.server.stop()
            self.server = None
        self._refuse_waiting()  # anything queued while the server wound down
        self._key = None
        self.error = None

    # -- the web server's threads -----------------------------------------------------------------
    def _ask(self, work: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        request = _Request(work)
        with self._closed_lock:  # against stop(): nothing is queued once it has refused the waiting ones
            if self._closed:
                raise ActionRefused("stopping")
            try:
                self._requests.put_nowait(request)
            except queue.Full:
                raise ActionRefused("busy", "too many actions waiting") from None
        if not request.done.wait(self.action_timeout_s):
            late = ActionRefused("busy", "the pipeline did not answer in time")
            if request.abandon(late):
                raise late
            request.done.wait()  # already running: its answer comes within one step
        if request.error is not None:
            raise request.error
        return request.result

    def submit(self, code: str, officer: str) -> dict[str, Any]:
        if not isinstance(code, str) or not code.strip():
            raise ActionRefused("empty")

        def work(parts: Any) -> dict[str, Any]:
            pipeline = parts.pipeline
            typed = code_from_bytes(code.strip().encode("utf-8", "surrogatepass"))
            scan = pipeline.handle(typed, mono_ns(), source="manual", officer=officer)
            return scan_event(scan, None)

        return self._ask(work)

    def review(self, entry_id: str, answer: str, officer: str) -> dict[str, Any]:
        if answer not in (Outcome.ALLOW.value, Outcome.DENY.value):
            raise ActionRefused("bad-answer")
        if not isinstance(entry_id, str) or not entry_id or len(entry_id) > 64:
            raise ActionRefused("not-found")

        def work(parts: Any) -> dict[str, Any]:
            conn = parts.store.conn
            if conn is None:
                raise ActionRefused("store", parts.store.error or "the entry database is not open")
            try:
                row = conn.execute(_REVIEWED, (entry_id,)).fetchone()
                answered = row is not None and conn.execute(_ANSWERED, (entry_id,)).fetchone() is not None
            except sqlite3.Error as exc:
                raise ActionRefused("store", str(exc)) from exc
            if row is None:
                raise ActionRefused("not-found")
            reviewed = dict(zip(("id", "code", "decision", "wall_ms", "list_name", "list_version"), row))
            if reviewed["decision"] != Outcome.REVIEW.value:
                raise ActionRefused("not-review")
            if answered:
                raise ActionRefused("answered")
            if wall_ms() - reviewed["wall_ms"] > parts.settings.ui.review_expiry_s * 1000:
                raise ActionRefused("expired")
            scan = parts.pipeline.answer(reviewed, Outcome(answer), officer)
            log.info("review %s answered %s by %s", reviewed["id"], answer, for_log(officer))
            return scan_event(scan, None)

        return self._ask(work)

    def recent(self, count: int) -> list[dict[str, Any]]:
        """The newest entries, newest first, read on a connection of the caller's own."""
        parts = self._parts
        if parts is None:
            return []
        count = max(1, min(int(count), RECENT_MAX))
        try:
            conn = connect(parts.settings.store.entries_path, readonly=True)
        except sqlite3.Error as exc:
            log.warning("screens: entries unreadable: %s", exc)
            return []
        try:
            conn.row_factory = sqlite3.Row
            rows = conn.execute("SELECT * FROM entries ORDER BY seq DESC LIMIT ?", (count,)).fetchall()
            return [dict(row) for row in rows]
        except sqlite3.Error as exc:
            log.warning("screens: entries unreadable: %s", exc)
            return []
        finally:
            conn.close()
