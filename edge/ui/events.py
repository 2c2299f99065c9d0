"""Scans as they are committed, from the pipeline's thread to the web server's subscribers (live pages).

The pipeline's thread never waits here: publish() is one bounded queue put (a full queue drops the scan and
counts it) plus, at most once per batch, a wake-up of the server's asyncio loop. Everything else (the event
dict, the fan-out) happens on that loop. Each subscriber has a bounded asyncio queue of its own: one that
does not keep up is dropped from the hub and told to reload, so a slow or absent browser costs nothing.
"""
from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import Response

from edge.ui.errors import TooManySubscribers as TooManySubscribers  # re-exported: the pages catch it from here

INBOX_SIZE = 1024        # scans waiting for the server's loop (it drains them in one go)
SUBSCRIBER_SIZE = 64     # events waiting for one page
MAX_SUBSCRIBERS = 32     # live pages at once: each is a socket (a file handle) held open
LOCAL_RESERVE = 4        # of those, kept for loopback clients: an outside flood never locks out the device's kiosk
RELOAD = {"type": "reload"}   # the last thing a dropped subscriber gets: it missed events, a reload catches up
CLOSED = {"type": "closed"}   # the server is stopping
# time.time_ns() - time.monotonic_ns(): events carry the commit on the monotonic clock; pages in a browser on
# this machine compare it with their own wall clock (the latency bench).
MONO_TO_WALL_NS = time.time_ns() - time.monotonic_ns()


def scan_event(scan: Any, seq: int | None) -> dict[str, Any]:
    """What pages see of one scan (an edge.app.pipeline.Scan: a layer above, so Any here); seq None: not
    through the hub (an officer's own action, answered to the officer). The code is in it: only the officer's
    page shows it."""
    entry, decision = scan.entry, scan.decision
    return {
        "id": entry.id, "seq": seq, "wall_ms": entry.wall_ms, "source": entry.source, "code": entry.code,
        "decision": entry.decision, "reason": entry.reason, "label": decision.label,
        "list_name": entry.list_name, "list_version": entry.list_version,
        "valid_from_ms": decision.valid_from_ms, "valid_until_ms": decision.valid_until_ms,
        "repeated_at_ms": decision.repeated_at_ms, "ref_id": getattr(entry, "ref_id", None),
        "officer": getattr(entry, "officer", None), "committed_ns": scan.committed_ns,
    }


class Subscriber:
    def __init__(self, hub: EventHub, size: int):
        self.hub = hub
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(size)
        self.dropped = False

    def offer(self, event: dict[str, Any]) -> bool:
        """Called on the loop. False when this subscriber is too slow and has been dropped."""
        try:
            self.queue.put_nowait(event)
            return True
        except asyncio.QueueFull:
            self.dropped = True
            while not self.queue.empty():  # make room for the one event that still matters
                self.queue.get_nowait()
            self.queue.put_nowait(RELOAD)
            return False

    def close(self) -> None:
        """The server stops: the stream ends after what it holds now."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(CLOSED)

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None after timeout seconds without one."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None


class EventHub:
    def __init__(self, inbox_size: int = INBOX_SIZE, subscriber_size: int = SUBSCRIBER_SIZE,
                 max_subscribers: int = MAX_SUBSCRIBERS, local_reserve: int = LOCAL_RESERVE):
        self.max_subscribers, self.local_reserve = max_subscribers, min(local_reserve, max_subscribers)
        self.refused = 0     # subscriptions refused for want of a slot
        self._inbox: queue.Queue[Any] = queue.Queue(inbox_size)
        self._subscriber_size = subscriber_size
        self._subscribers: set[Subscriber] = set()   # touched on the loop only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_pending = False
        self._seq = itertools.count(1)
        self._lock = threading.Lock()  # attach/detach against publish's loop lookup
        self.published = 0   # scans handed to subscribers
        self.dropped = 0     # scans not delivered: inbox full, or a subscriber too slow (counted per subscriber)
        self.last: dict[str, Any] | None = None  # the newest event (a page that opens shows nothing older)

    # -- the pipeline's thread --------------------------------------------------------------------
    def publish(self, scan: Any) -> None:
        """Hand one scan to the subscribers; never blocks."""
        loop = self._loop
        if loop is None:
            return  # no server running: nobody to tell
        try:
            self._inbox.put_nowait(scan)
        except queue.Full:
            self.dropped += 1
            return
        if not self._wake_pending:
            self._wake_pending = True
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop closed under us: the server is stopping
                self._wake_pending = False

    # -- the server's loop ------------------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._loop = loop
            self._wake_pending = False  # a drain scheduled on a previous server's loop that closed never ran

    def detach(self) -> None:
        """The server stops: every subscriber ends its stream (called on the loop)."""
        with self._lock:
            self._loop = None
        for subscriber in list(self._subscribers):
            subscriber.close()
        self._subscribers.clear()

    def subscribe(self, size: int | None = None, *, local: bool = False) -> Subscriber:
        """A new live page; raises TooManySubscribers past the cap (outside clients: past the cap less the
        loopback reserve)."""
        cap = self.max_subscribers if local else self.max_subscribers - self.local_reserve
        if len(self._subscribers) >= cap:
            self.refused += 1
            raise TooManySubscribers(f"{len(self._subscribers)} live pages already")
        subscriber = Subscriber(self, size or self._subscriber_size)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def _drain(self) -> None:
        self._wake_pending = False  # before reading: a scan put after this schedules another drain
        while True:
            try:
                scan = self._inbox.get_nowait()
            except queue.Empty:
                return
            event = scan_event(scan, next(self._seq))
            self.last = event
            self.published += 1
            for subscriber in list(self._subscribers):
                if not subscriber.offer(event):
                    self.dropped += 1
                    self._subscribers.discard(subscriber)

    def stats(self) -> dict[str, Any]:
        return {"published": self.published, "dropped": self.dropped, "subscribers": self.subscribers,
                "refused": self.refused, "waiting": self._inbox.qsize()}


def sse(event: str, data: str, event_id: int | str | None = None) -> bytes:
    """One Server-Sent Event; data must be one line (JSON is)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


KEEPALIVE = b": keep-alive\n\n"   # a comment: keeps proxies and idle-timeouts from closing the stream
KEEPALIVE_S = 15.0
RETRY_AFTER_S = 5


def full_response() -> Response:
    """503 for a page that found no free slot; its EventSource is told when to come back."""
    return Response("too many live pages; try again shortly\n", status_code=503, media_type="text/plain",
                    headers={"Retry-After": str(RETRY_AFTER_S), "Cache-Control": "no-store"})


def stream(subscriber: Subscriber, render: Callable[[dict[str, Any]], bytes | None]) -> AsyncIterator[bytes]:
    """The body of an SSE response: render(event) gives the bytes for a scan (None: not for this page).
    The subscriber leaves the hub when the stream ends (the browser went away, or the server stops), and also
    when a body that never started is dropped (a client gone before its response began): with a cap on
    subscribers, a slot must never leak."""
    body = _stream(subscriber, render)
    weakref.finalize(body, subscriber.hub.unsubscribe, subscriber)
    return body


async def _stream(subscriber: Subscriber, render: Callable[[dict[str, Any]], bytes | None]) -> AsyncIterator[bytes]:
    try:
        yield b"retry: 2000\n\n"
        while True:
            event = await subscriber.next(KEEPALIVE_S)
            if event is None:
                yield KEEPALIVE
            elif event is RELOAD:
                yield sse("reload", "{}")
                return
            elif event is CLOSED:
                return
            elif (body := render(event)) is not None:
                yield body
    finally:
        subscriber.hub.unsubscribe(subscriber)
