"""The hub's collector: every device's entry batches into the hub database, each entry once.

A batch is acknowledged (PUBACK) only after it is committed, so a collector killed mid-batch gets it
again when it reconnects with its persistent session. Several collectors share the load on an MQTT 5
shared subscription ($share/GROUP/...).

No message can stop a collector: one that is hostile, broken, or that fails in a way nobody foresaw is
logged once (device, topic, reason, all escaped), kept aside in the hub database's rejected table with
its first bytes, and acknowledged: redelivering it could never help. Only the hub database failing
stops the collector, without acknowledging, so that the broker delivers the message again.
"""
from __future__ import annotations

import json
import logging
import re
import time
import traceback

from paho.mqtt.subscribeoptions import SubscribeOptions
from prometheus_client import CollectorRegistry, Counter, Histogram

from edge.common.clock import wall_ms
from edge.common.textsafe import for_log
from sync.hub.hubdb import HubDB
from sync.wire.codec import decode_batch
from sync.wire.errors import BatchError, MessageError
from sync.wire.messages import STATES, Ack, Status, parse_ack, parse_status

log = logging.getLogger("checkpoint.hub")

DEVICE = re.compile(r"(?!\.\.?$)[A-Za-z0-9._-]{1,64}")  # whole topic levels only (fullmatch), never . or ..
DECISIONS = {"allow", "deny", "review"}
STORE_ATTEMPTS = 3
KINDS = {"entries": "a batch", "status": "a status", "acks": "an ack"}
REJECT_WARN_S = 60.0            # one rejection warning per device this often at most


class CollectorStopped(Exception):
    """The hub database kept failing: stop without acknowledging, so the broker delivers again."""


class Rejected(Exception):
    """A message refused for what it holds: kept aside, acknowledged, never delivered again."""


def describe(exc: BaseException) -> str:
    """An exception as one short line; never raises (str() of some values does)."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Meter:
    """The collector's own counts and batch latency, for Prometheus (`checkpoint-hub collect --metrics`).

    In this process's memory, not the hub database: rates and a latency histogram are about this collector
    (two collectors on a shared subscription each report their share), writing them per batch would add a
    write to every commit, and Prometheus keeps the history; the totals per device stay in the database,
    where the dashboard's /metrics reads them. A registry of its own: several collectors in one process
    (the tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.batches = Counter("checkpoint_collector_batches", "entry batches committed", registry=r)
        self.inserted = Counter("checkpoint_collector_entries_inserted", "entries inserted (rate: inserts/s)",
                                registry=r)
        self.duplicates = Counter("checkpoint_collector_duplicates", "copies of stored entries received again",
                                  registry=r)
        self.conflicts = Counter("checkpoint_collector_conflicts",
                                 "entry ids received again with other content (the first copy kept)", registry=r)
        self.rejected = Counter("checkpoint_collector_rejected_messages", "messages refused and kept aside",
                                registry=r)
        self.statuses = Counter("checkpoint_collector_statuses", "statuses stored", registry=r)
        self.acks = Counter("checkpoint_collector_acks", "bundle acknowledgements stored", registry=r)
        # From the message reaching this process to its batch committed; the broker's queue is not in it.
        self.latency = Histogram("checkpoint_collector_batch_latency_seconds",
                                 "a batch from its receipt to its commit", registry=r,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))

    def serve(self, host: str, port: int):
        """/metrics on host:port in a daemon thread; returns the server (its address, and shutdown())."""
        from prometheus_client import start_http_server

        server, _ = start_http_server(port, host, registry=self.registry)
        return server


class Collector:
    def __init__(self, db: HubDB, client, *, topic_prefix: str = "checkpoint", share_group: str | None = "collectors"):
        self.db, self.client, self.prefix = db, client, topic_prefix
        shared = [f"{topic_prefix}/+/entries", f"{topic_prefix}/+/acks"]
        # Status is retained, and a shared subscription gets no retained messages: every collector
        # subscribes alone and stores the newest (an idempotent upsert).
        self.subscriptions = [f"$share/{share_group}/{t}" if share_group else t for t in shared] + [
            f"{topic_prefix}/+/status"]
        self.stats = {"batches": 0, "entries": 0, "duplicates": 0, "conflicts": 0, "rejected": 0, "unexpected": 0}
        self.failed: str | None = None
        self.meter = Meter()
        self._warned: dict[str | None, tuple[float, int]] = {}  # device: (last warning, rejections held back)
        client.on_connect = self._on_connect
        client.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("collector: connection refused: %s", reason_code)
            return
        # Retained statuses come once per subscription, not again when a persistent session resumes:
        # a retained message that was rejected is not rejected again at every restart.
        client.subscribe([(t, SubscribeOptions(qos=1, retainHandling=1 if t.endswith("/status") else 0))
                          for t in self.subscriptions])
        log.info("collector: subscribed to %s (session present: %s)", ", ".join(self.subscriptions),
                 flags.session_present)

    def _device(self, topic: str, kind: str = "entries") -> str | None:
        head, sep, rest = topic.partition(self.prefix + "/")
        if head or not sep:
            return None
        device, sep, tail = rest.partition("/")
        return device if sep and tail == kind and DEVICE.fullmatch(device) else None

    def _on_message(self, client, userdata, message):
        if self.failed:
            return  # stopping: leave it unacknowledged for the broker to deliver again
        received = time.monotonic()
        try:
            topic = message.topic
        except UnicodeDecodeError:  # Mosquitto refuses such topics; another broker might not
            topic = bytes(message._topic).decode("utf-8", "backslashreplace")
        try:
            self.handle(topic, message.payload, received)
        except CollectorStopped as exc:
            self._stop(client, exc)
            return
        except Exception as exc:
            # What no check foresaw: one message must not stop collecting for every device.
            self.stats["unexpected"] += 1
            log.error("collector: unexpected %s on a message on %s; kept aside, going on. Traceback:\n%s",
                      for_log(describe(exc)), for_log(topic), "".join(traceback.format_tb(exc.__traceback__)))
            try:
                self._reject(topic, None, message.payload, f"unexpected {describe(exc)}")
            except CollectorStopped as stop:
                self._stop(client, stop)
                return
            except Exception as again:  # keeping it aside failed too: the log line above is what remains
                log.error("collector: could not keep it aside: %s", for_log(describe(again)))
        client.ack(message.mid, message.qos)

    def _stop(self, client, exc: CollectorStopped) -> None:
        self.failed = str(exc)
        client.disconnect()

    def handle(self, topic: str, payload: bytes, received: float | None = None) -> None:
        """Store one message, or keep it aside as rejected. Raises CollectorStopped when the hub database
        keeps failing; anything else raised is a bug the caller contains. `received`: time.monotonic() when
        the message arrived (a batch's latency is measured from it; default now)."""
        received = time.monotonic() if received is None else received
        kind = topic.rsplit("/", 1)[-1]
        device = self._device(topic, kind) if kind in KINDS else None
        if device is None:
            return self._reject(topic, None, payload, "the topic names no device and kind")
        try:
            if kind == "entries":
                self._batch(device, payload, received)
            else:
                self._small(kind, device, payload)
        except Rejected as exc:
            self._reject(topic, device, payload, str(exc))

    def _batch(self, device: str, payload: bytes, received: float) -> None:
        try:
            batch = decode_batch(payload)
        except BatchError as exc:
            raise Rejected(str(exc)) from None
        if batch.device_id != device:
            raise Rejected(f"batch says it is from {for_log(batch.device_id)!r}")
        bad = next((e for e in batch.entries if e.decision not in DECISIONS or len(e.id) != 36), None)
        if bad is not None:
            raise Rejected(f"entry seq {bad.seq} has decision {for_log(bad.decision, 20)!r}")
        stored = self._store(lambda: self.db.store(batch, wall_ms()))
        self.stats["batches"] += 1
        self.stats["entries"] += stored.inserted
        self.stats["duplicates"] += stored.duplicates
        self.stats["conflicts"] += stored.conflicts
        self.meter.latency.observe(time.monotonic() - received)
        self.meter.batches.inc()
        self.meter.inserted.inc(stored.inserted)
        self.meter.duplicates.inc(stored.duplicates)
        self.meter.conflicts.inc(stored.conflicts)
        if stored.conflicts:
            # A device that reuses ids is broken or hostile; the first copy stays, as the device sent it first.
            log.warning("collector: device %s: %d entries reuse a stored id with different content (CONFLICT; "
                        "the first copy is kept)", device, stored.conflicts)
        if batch.entries and batch.entries[0].seq > stored.known + 1 and stored.inserted:
            log.warning("collector: device %s: sequence gap or out-of-order batch: after %d came %d",
                        device, stored.known, batch.entries[0].seq)
        log.debug("collector: %s: %d new, %d duplicate", device, stored.inserted, stored.duplicates)

    def _store(self, write):
        for attempt in range(1, STORE_ATTEMPTS + 1):
            try:
                return write()
            except self.db.data_errors as exc:  # before errors: these are about the data, not the database
                raise Rejected(f"the hub database refused it: {for_log(describe(exc))}") from None
            except self.db.errors as exc:
                log.error("collector: hub database failed (attempt %d of %d): %s", attempt, STORE_ATTEMPTS,
                          for_log(describe(exc)))
                if attempt == STORE_ATTEMPTS:
                    raise CollectorStopped(f"hub database failed: {describe(exc)}") from None
                time.sleep(attempt)

    def _small(self, kind: str, device: str, payload: bytes) -> None:
        """A device's status or a bundle acknowledgement: validated once here (sync.wire.messages), then used
        by attribute."""
        if not payload:
            if kind == "status":
                return  # a cleared retained status
            raise Rejected("empty")
        message: Status | Ack
        try:
            message = parse_status(payload) if kind == "status" else parse_ack(payload)
        except MessageError as exc:
            raise Rejected(str(exc)) from None
        if message.device != device:
            raise Rejected("not an object naming this device")
        now = wall_ms()
        if isinstance(message, Status):
            state = message.state if message.state in STATES else "online"
            # What the device set, unknown fields included: the stored status is what it sent, validated.
            text = json.dumps(message.model_dump(mode="json", exclude_unset=True))
            self._store(lambda: self.db.store_status(device, state, text, now))
            self.meter.statuses.inc()
            return
        self._store(lambda: self.db.store_ack(message.model_dump(), now))
        self.meter.acks.inc()
        if not message.accepted:
            named = [for_log(v) for v in (message.kind, message.name or message.target) if v not in (None, "unknown")]
            named += [f"v{message.version}"] if message.version is not None else []
            # Refused before its header could be trusted (an unknown key): the bundle names nothing.
            log.warning("collector: device %s REFUSED %s: %s", device,
                        " ".join(named) or "a bundle it could not read", for_log(message.reason))

    def _warn_held(self, device: str | None) -> int | None:
        """None while the device had a rejection warning less than REJECT_WARN_S ago (one sending endless
        distinct garbage must not fill the log), counted; else how many were held back since the last."""
        now = time.monotonic()
        last, held = self._warned.get(device, (None, 0))
        if last is not None and now - last < REJECT_WARN_S:
            self._warned[device] = (last, held + 1)
            return None
        if len(self._warned) >= 10_000:  # device names come from topics: the table stays bounded
            self._warned.clear()
        self._warned[device] = (now, 0)
        return held

    def _reject(self, topic: str, device: str | None, payload: bytes, why: str) -> None:
        """Keep the message aside and log it, once per topic and content."""
        self.stats["rejected"] += 1
        self.meter.rejected.inc()
        try:
            first = self._store(lambda: self.db.store_rejected(
                topic=for_log(topic), device=device, reason=for_log(why, 1000), payload=bytes(payload),
                received_ms=wall_ms()))
        except Rejected as exc:
            first = True
            log.error("collector: could not keep a rejected message aside: %s", exc)
        kind = KINDS.get(topic.rsplit("/", 1)[-1], "a message")
        if first and (held := self._warn_held(device)) is not None:
            more = f" ({held} more rejected from this device since its last warning: checkpoint-hub rejected)" \
                if held else ""
            log.warning("collector: rejected %s from device %s on %s: %s%s", kind, device or "?", for_log(topic),
                        for_log(why, 1000), more)
        else:
            log.debug("collector: rejected %s from device %s on %s again: %s", kind, device or "?",
                      for_log(topic), for_log(why, 1000))
