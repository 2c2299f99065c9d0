"""The device's sync agent: the entries table is the outbox; batches go up at QoS 1.

An entry is marked synced only after the broker's PUBACK carried a success reason code. paho keeps
its session in memory only, so whatever SQLite says is unsynced is sent again after a restart: the
hub deduplicates by entry id. The agent runs on its own thread with its own database connection;
a dead broker or a slow hotspot only delays sync, never a scan.
"""
from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

from edge.clock import iso_ms, wall_ms
from edge.config import SyncSettings
from edge.sqlite import connect, transaction
from edge.statefile import write_json
from edge.store import EntryReader, StoreError

from .codec import WireEntry, encode_batch
from .mqtt import connect_properties, make_client

log = logging.getLogger("checkpoint.sync")

_OUTBOX = ("SELECT id, seq, wall_ms, mono_ns, boot_id, source, code, decision, reason, list_name, list_version, "
           "config_version, clock FROM entries WHERE synced_ms IS NULL AND seq > ? ORDER BY seq LIMIT ?")


NO_MATCHING_SUBSCRIBERS = 0x10
UNROUTED_RETRY_S = 1.0


def topics(prefix: str, device_id: str) -> tuple[str, str]:
    return f"{prefix}/{device_id}/entries", f"{prefix}/{device_id}/status"


class SyncAgent:
    def __init__(self, settings: SyncSettings, *, device_id: str, entries_path: Path,
                 status: Callable[[], dict] | None = None, receiver=None):
        self.settings = settings
        self.device_id = device_id
        self.entries_path = Path(entries_path)
        self.state_path = self.entries_path.parent / "sync.json"
        self.status_extra = status or (lambda: {})
        self.entries_topic, self.status_topic = topics(settings.topic_prefix, device_id)
        self.client = make_client(
            client_id=device_id, username=settings.username or device_id, password_file=settings.password_file,
            tls=settings.tls, ca_file=settings.ca_file, cert_file=settings.cert_file, key_file=settings.key_file)
        self.client.will_set(self.status_topic, json.dumps({"device": device_id, "state": "offline"}), qos=1,
                             retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.receiver = receiver  # sync.remote.Receiver: pushed config and lists, on this same connection
        if receiver is not None:
            self.client.on_message = receiver.on_message
        self.connected = threading.Event()
        self._acks: queue.Queue[tuple[int, bool, str]] = queue.Queue()
        self._inflight: dict[int, tuple[int, int, int]] = {}  # mid -> (first seq, last seq, count)
        self._status_mids: set[int] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()  # an acknowledgement arrived: room for the next batch
        self._thread: threading.Thread | None = None
        self._sent_upto = 0          # highest seq handed to paho in this process
        self._pending_since: float | None = None
        self._refused_until = 0.0
        self._status_due = False
        self._publish_error: str | None = None  # the last_error a later successful PUBACK clears
        self.state = {"connection": "starting", "last_sync_ms": None, "last_error": None, "synced": 0,
                      "refused": 0, "sent_batches": 0}
        self._db: sqlite3.Connection | None = None

    # -- paho callbacks (paho's network thread) ----------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
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

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        if self.state["connection"] not in ("stopping", "refused"):
            self.state["connection"] = "offline"
            log.warning("sync: disconnected (%s); entries wait in the outbox", reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties):
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
            info = self.client.publish(self.status_topic, json.dumps({"device": self.device_id, "state": "offline",
                                                                      "since_ms": wall_ms()}), qos=1, retain=True)
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

    # -- the agent's thread ------------------------------------------------------------------------
    def _run(self) -> None:
        next_status = time.monotonic() + self.settings.status_interval_s
        while not self._stop.is_set():
            try:
                self._handle_acks()
                if self.connected.is_set():
                    self._fill()
                if self._status_due or time.monotonic() >= next_status:
                    self._status_due = False
                    self._publish_status()
                    next_status = time.monotonic() + self.settings.status_interval_s
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
            # the hub (Mosquitto answers it while a collector's shared subscription is not yet back after a
            # restart): the entries are not synced, and go again shortly.
            unrouted = code == NO_MATCHING_SUBSCRIBERS
            if code < 0x80 and not unrouted:
                acked.append((first, last))
                self.state["synced"] += count
            else:
                # Refused (e.g. not authorised) or unrouted: the entries stay pending, offered again later.
                self.state["refused"] += 0 if unrouted else count
                self._note_error("no collector subscribed at the broker; resending" if unrouted
                                 else f"publish refused by the broker: {reason}")
                self._publish_error = self.state["last_error"]
                self._sent_upto = min(self._sent_upto, first - 1)
                self._refused_until = time.monotonic() + (UNROUTED_RETRY_S if unrouted
                                                          else self.settings.retry_refused_s)
        if acked:
            now = wall_ms()
            with transaction(self._db) as db:  # every acknowledged batch marked in one commit
                db.executemany("UPDATE entries SET synced_ms = ? WHERE seq BETWEEN ? AND ? "
                                     "AND synced_ms IS NULL", [(now, a, b) for a, b in acked])
            self.state["last_sync_ms"] = now
            if self.state["last_error"] is not None and self.state["last_error"] == self._publish_error:
                self.state["last_error"] = None

    # -- status ------------------------------------------------------------------------------------
    def _note_error(self, message: str) -> None:
        if message != self.state["last_error"]:
            log.error("sync: %s", message)
        self.state["last_error"] = message

    def status(self) -> dict:
        try:
            outbox = self._reader.outbox()
        except StoreError as exc:
            outbox = {"error": str(exc)}
        last = self.state["last_sync_ms"]
        return {"device": self.device_id, "state": "online", "sent_ms": wall_ms(), "outbox": outbox,
                "last_sync": iso_ms(last) if last else None, "last_error": self.state["last_error"],
                "synced": self.state["synced"], "refused": self.state["refused"], **self.status_extra(),
                **({"remote": self.receiver.status()} if self.receiver is not None else {})}

    def _publish_status(self) -> None:
        status = self.status()
        if self.connected.is_set():
            info = self.client.publish(self.status_topic, json.dumps(status), qos=1, retain=True)
            self._status_mids.add(info.mid)
        self._write_state(status)

    def _write_state(self, status: dict | None = None) -> None:
        """sync.json beside the database, for `checkpoint status` (atomic: written, then renamed)."""
        data = {**(status or {}), "connection": self.state["connection"], "broker":
                f"{self.settings.host}:{self.settings.port}", "written_ms": wall_ms()}
        data.pop("state", None)
        write_json(self.state_path, data)
