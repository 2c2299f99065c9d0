"""The device's sync agent: the entries table is the outbox; batches go up at QoS 1.

An entry is marked synced only after the broker's PUBACK carried a success reason code. paho keeps
its session in memory only, so whatever SQLite says is unsynced is sent again after a restart: the
hub deduplicates by entry id. The agent runs on its own thread with its own database connection;
a dead broker or a slow hotspot only delays sync, never a scan.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from pydantic import ValidationError

from edge.common.backoff import Backoff
from edge.common.clock import iso_ms, wall_ms
from edge.common.sqlite import connect, transaction
from edge.common.statefile import write_json
from edge.entries.record import OUTBOX_SELECT
from edge.entries.store import EntryReader, StoreError
from edge.settings.schema import SyncSettings
from sync.wire.codec import WireEntry, encode_batch
from sync.wire.errors import MessageError
from sync.wire.messages import Status
from sync.wire.mqtt import connect_properties, make_client

if TYPE_CHECKING:
    from sync.device.remote import Receiver

__all__ = ["Backoff", "SyncAgent", "clear_text_warning", "is_loopback", "significant", "topics", "unrouted_backoff"]

log = logging.getLogger("checkpoint.sync")

# The columns are the entry record's wire fields, in WireEntry's order (codec checks that at import).
_OUTBOX = f"SELECT {OUTBOX_SELECT} FROM entries WHERE synced_ms IS NULL AND seq > ? ORDER BY seq LIMIT ?"


NO_MATCHING_SUBSCRIBERS = 0x10
UNROUTED_FIRST_S = 1.0
UNROUTED_CAP_S = 60.0
UNROUTED_ERROR = "no collector subscribed at the broker; resending"
# A change that matters goes up at once, but a flapping source or a burst of pushed bundles sends at most one
# status a second: the fleet view is seconds behind, and the broker is not flooded.
STATUS_MIN_GAP_S = 1.0


def significant(status: dict[str, Any]) -> str:
    """The parts of the daemon's snapshot whose change the hub should hear of at once (not counters or
    clocks, which change all the time and go up every status_interval_s)."""
    source = status.get("source") or {}
    store = status.get("store") or {}
    clock = status.get("clock") or {}
    return json.dumps([status.get("versions"), status.get("mode"), source.get("state"), store.get("healthy"),
                       store.get("error"), clock.get("state"), clock.get("trusted"), status.get("problems"),
                       status.get("missing_lists"), status.get("stale_lists"), status.get("state")],
                      sort_keys=True, default=str)


def topics(prefix: str, device_id: str) -> tuple[str, str]:
    return f"{prefix}/{device_id}/entries", f"{prefix}/{device_id}/status"


def unrouted_backoff() -> Backoff:
    """The agent's waits while no collector is subscribed: 1 s doubling to 60 s, each drawn from the upper
    half of its step, so a fleet that lost its collector at the same moment does not come back in step."""
    return Backoff(initial=UNROUTED_FIRST_S, maximum=UNROUTED_CAP_S, rng=random.random)


def is_loopback(host: str) -> bool:
    """Loopback by its spelling alone: a name is not resolved (that could block, or lie)."""
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def clear_text_warning(settings: SyncSettings, username: str) -> str | None:
    """What to say when a password would cross the network unencrypted, or None."""
    if settings.tls or not settings.password_file or is_loopback(settings.host):
        return None
    return (f"[sync] tls = false: the password of {username} goes to the broker {settings.host}:{settings.port} "
            "in clear text, readable by anyone on the network; set tls = true")


class SyncAgent:
    def __init__(self, settings: SyncSettings, *, device_id: str, entries_path: Path,
                 status: Callable[[], dict[str, Any]] | None = None, receiver: Receiver | None = None,
                 backoff: Backoff | None = None) -> None:
        self.settings = settings
        self.device_id = device_id
        self.entries_path = Path(entries_path)
        self.state_path = self.entries_path.parent / "sync.json"
        self.status_extra = status or (dict)
        self.entries_topic, self.status_topic = topics(settings.topic_prefix, device_id)
        username = settings.username or device_id
        if warning := clear_text_warning(settings, username):
            log.warning("sync: %s", warning)
        self.client = make_client(
            client_id=device_id, username=username, password_file=settings.password_file,
            tls=settings.tls, ca_file=settings.ca_file, cert_file=settings.cert_file, key_file=settings.key_file)
        self.client.will_set(self.status_topic, Status(device=device_id, state="offline").to_json(), qos=1,
                             retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_publish = self._on_publish
        self.receiver = receiver  # sync.device.remote.Receiver: pushed config and lists, on this same connection
        if receiver is not None:
            self.client.on_message = receiver.on_message
            receiver.on_change = self.status_changed  # a bundle applied or refused: the hub hears at once
        self.connected = threading.Event()
        self.connect_failures = 0  # attempts that reached no broker (refused, unreachable, a TLS handshake failed)
        self._acks: queue.Queue[tuple[int, bool, str]] = queue.Queue()
        self._inflight: dict[int, tuple[int, int, int]] = {}  # mid -> (first seq, last seq, count)
        self._status_mids: set[int] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()  # an acknowledgement arrived: room for the next batch
        self._thread: threading.Thread | None = None
        self._sent_upto = 0          # highest seq handed to paho in this process
        self._pending_since: float | None = None
        self._refused_until = 0.0
        self.unrouted = backoff or unrouted_backoff()  # while no collector is subscribed: waits growing to a cap
        self._status_due = False
        self._changed = threading.Event()  # something that matters changed: a status before the interval
        self._last_status = -STATUS_MIN_GAP_S  # monotonic time of the last status published
        self._seen: str | None = None  # significant() of the daemon's snapshot when last published
        self._publish_error: str | None = None  # the last_error a later successful PUBACK clears
        self.state: dict[str, Any] = {"connection": "starting", "last_sync_ms": None, "last_error": None, "synced": 0,
                      "refused": 0, "sent_batches": 0}
        self._db: sqlite3.Connection | None = None

    # -- paho callbacks (paho's network thread) ----------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._note_error(f"connection refused: {reason_code}")
            self.state["connection"] = "refused"
            return
        self.state["connection"] = "online"
        self.connected.set()
        log.info("sync: connected to %s:%d (session present: %s)", self.settings.host, self.settings.port,
                 flags.session_present)
        self._status_due = True  # published from the agent's thread, which owns the database connection
        if self.receiver is not None:
            self.receiver.on_connect(client)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self.connected.clear()
        if self.state["connection"] not in ("stopping", "refused"):
            self.state["connection"] = "offline"
            log.warning("sync: disconnected (%s); entries wait in the outbox", reason_code)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # Not logged: paho retries on its own, and the status says "starting" or "offline" meanwhile.
        self.connect_failures += 1

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        self._acks.put((mid, reason_code.value, str(reason_code)))
        self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._db = connect(self.entries_path)
        self._reader = EntryReader(self.entries_path)
        if self.receiver is not None:
            self.receiver.start(self.client)
        s = self.settings
        self.client.connect_async(s.host, s.port, keepalive=s.keepalive_s, clean_start=False,
                                  properties=connect_properties(s.session_expiry_s))
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Give in-flight batches a moment to be acknowledged, say offline, disconnect."""
        deadline = time.monotonic() + timeout
        while self._inflight and self.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.receiver is not None:
            self.receiver.stop()
        self._handle_acks()
        self.state["connection"] = "stopping"
        if self.connected.is_set():
            offline = Status(device=self.device_id, state="offline", since_ms=wall_ms())
            info = self.client.publish(self.status_topic, offline.to_json(), qos=1, retain=True)
            try:
                info.wait_for_publish(1.0)
            except (RuntimeError, ValueError):
                pass  # not connected any more: the will message says offline instead
        self.client.disconnect()
        self.client.loop_stop()
        self.state["connection"] = "stopped"
        self._write_state()
        if self._db is not None:
            self._db.close()
            self._reader.close()

    def status_changed(self) -> None:
        """Something the hub should see now (a bundle applied or refused, a problem): a status goes up within
        STATUS_MIN_GAP_S instead of at the next status_interval_s. Safe from any thread."""
        self._changed.set()
        self._wake.set()

    # -- the agent's thread ------------------------------------------------------------------------
    def _run(self) -> None:
        next_status = time.monotonic() + self.settings.status_interval_s
        while not self._stop.is_set():
            try:
                self._handle_acks()
                if self.connected.is_set():
                    self._fill()
                now = time.monotonic()
                if self._seen is not None and significant(self.status_extra()) != self._seen:
                    self._changed.set()  # the daemon's snapshot changed in a way that matters
                early = self._changed.is_set() and now - self._last_status >= STATUS_MIN_GAP_S
                if self._status_due or early or now >= next_status:
                    self._status_due = False
                    self._changed.clear()
                    self._publish_status()
                    self._last_status = time.monotonic()
                    next_status = self._last_status + self.settings.status_interval_s
            except sqlite3.Error as exc:
                # The store may be failing too; the daemon reports it. Sync simply waits.
                self._note_error(f"outbox unreadable: {exc}")
                self._stop.wait(1.0)
            self._wake.wait(0.05)
            self._wake.clear()

    def _fill(self) -> None:
        s = self.settings
        now = time.monotonic()
        if now < self._refused_until:
            return
        while len(self._inflight) < s.max_inflight:
            assert self._db is not None  # start() opened it before the thread began
            rows = self._db.execute(_OUTBOX, (self._sent_upto, s.batch_max_entries)).fetchall()
            if not rows:
                self._pending_since = None
                return
            if len(rows) < s.batch_max_entries:
                # Wait a little for company, so a burst goes up as one batch, not as one message each.
                if self._pending_since is None:
                    self._pending_since = now
                if now - self._pending_since < s.batch_wait_ms / 1000:
                    return
            self._pending_since = None
            entries = [WireEntry(*row) for row in rows]
            payload = encode_batch(self.device_id, wall_ms(), entries)
            while len(payload) > s.batch_max_bytes and len(entries) > 1:
                entries = entries[: len(entries) // 2]
                payload = encode_batch(self.device_id, wall_ms(), entries)
            info = self.client.publish(self.entries_topic, payload, qos=1)
            self._inflight[info.mid] = (entries[0].seq, entries[-1].seq, len(entries))
            self._sent_upto = entries[-1].seq
            self.state["sent_batches"] += 1

    def _handle_acks(self) -> None:
        acked: list[tuple[int, int]] = []
        while True:
            try:
                mid, code, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            if mid in self._status_mids:
                self._status_mids.discard(mid)
                continue
            batch = self._inflight.pop(mid, None)
            if batch is None:
                continue
            first, last, count = batch
            # 0x10 "No matching subscribers" is a success code, but nothing will ever carry that batch to
            # the hub (Mosquitto answers it while no collector is subscribed: collectors down, or a broker
            # just restarted): the entries are not synced, and stay in the outbox.
            unrouted = code == NO_MATCHING_SUBSCRIBERS
            if code < 0x80 and not unrouted:
                acked.append((first, last))
                self.state["synced"] += count
                continue
            # Refused (e.g. not authorised) or unrouted: the entries stay pending, offered again later.
            self._sent_upto = min(self._sent_upto, first - 1)
            if unrouted:
                self._unrouted_batch()
                continue
            self.state["refused"] += count
            self._note_error(f"publish refused by the broker: {reason}")
            self._publish_error = self.state["last_error"]
            self._refused_until = time.monotonic() + self.settings.retry_refused_s
        if acked:
            now = wall_ms()
            assert self._db is not None
            with transaction(self._db) as db:  # every acknowledged batch marked in one commit
                db.executemany("UPDATE entries SET synced_ms = ? WHERE seq BETWEEN ? AND ? "
                                     "AND synced_ms IS NULL", [(now, a, b) for a, b in acked])
            self.state["last_sync_ms"] = now
            if self.state["last_error"] is not None and self.state["last_error"] == self._publish_error:
                self.state["last_error"] = None
            if self.unrouted.attempts:
                log.info("sync: a collector is subscribed again; the outbox goes up")
                self.unrouted.reset()

    def _unrouted_batch(self) -> None:
        """Every device of a fleet hears 0x10 at once when the hub goes away: wait longer each time (jittered,
        up to a cap), and say so once. The batches of one window come back together: one wait for them all."""
        now = time.monotonic()
        if now < self._refused_until:
            return
        delay = self.unrouted.next()
        self._refused_until = now + delay
        if self.unrouted.attempts == 1:
            log.warning("sync: no collector is subscribed at the broker (the hub's collector is down, or the "
                        "broker has just restarted); entries wait in the outbox, offered again after %.1f s, "
                        "then less and less often, up to every %.0f s", delay, self.unrouted.maximum)
        self.state["last_error"] = UNROUTED_ERROR
        self._publish_error = UNROUTED_ERROR

    # -- status ------------------------------------------------------------------------------------
    def _note_error(self, message: str) -> None:
        if message != self.state["last_error"]:
            log.error("sync: %s", message)
        self.state["last_error"] = message

    def status(self) -> dict[str, Any]:
        """The status as published (its JSON fields)."""
        return self.status_message().model_dump(mode="json", exclude_unset=True)

    def status_message(self) -> Status:
        try:
            outbox = self._reader.outbox()
        except StoreError as exc:
            outbox = {"error": str(exc)}
        last = self.state["last_sync_ms"]
        # The agent's own fields last: "state" is the connection's ("online", as the last will's "offline"),
        # whatever the daemon's snapshot calls its own state.
        fields = {**self.status_extra(), "device": self.device_id, "state": "online", "sent_ms": wall_ms(),
                  "outbox": outbox, "last_sync": iso_ms(last) if last else None,
                  "last_error": self.state["last_error"], "synced": self.state["synced"],
                  "refused": self.state["refused"]}
        try:
            if self.receiver is not None:
                fields["remote"] = self.receiver.status_message()
            return Status.model_validate(fields)
        except ValidationError as exc:
            # A bug of ours (a field of the wrong type): the hub still hears the device is online, and why
            # the rest is missing, rather than nothing at all.
            error = str(MessageError(f"status not sent: {exc.errors(include_url=False)[0]}"))
            self._note_error(error)
            return Status(device=self.device_id, state="online", sent_ms=wall_ms(), last_error=error)

    def _publish_status(self) -> None:
        self._seen = significant(self.status_extra())
        status = self.status_message()
        if self.connected.is_set():
            info = self.client.publish(self.status_topic, status.to_json(), qos=1, retain=True)
            self._status_mids.add(info.mid)
        self._write_state(status.model_dump(mode="json", exclude_unset=True))

    def _write_state(self, status: dict[str, Any] | None = None) -> None:
        """sync.json beside the database, for `checkpoint status` (atomic: written, then renamed)."""
        data = {**(status or {}), "connection": self.state["connection"], "broker":
                f"{self.settings.host}:{self.settings.port}", "written_ms": wall_ms()}
        data.pop("state", None)
        write_json(self.state_path, data)
