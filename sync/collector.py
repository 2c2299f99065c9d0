"""The hub's collector: every device's entry batches into the hub database, each entry once.

A batch is acknowledged (PUBACK) only after it is committed, so a collector killed mid-batch gets it
again when it reconnects with its persistent session. Several collectors share the load on an MQTT 5
shared subscription ($share/GROUP/...). Hostile or broken batches are logged with the device's name,
acknowledged and dropped: redelivering them could never help.
"""
from __future__ import annotations

import json
import logging
import re
import time

from edge.clock import wall_ms

from .codec import BatchError, decode_batch
from .hubdb import HubDB

log = logging.getLogger("checkpoint.hub")

DEVICE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DECISIONS = {"allow", "deny", "review"}
STORE_ATTEMPTS = 3
MAX_SMALL_BYTES = 64 * 1024
ACK_FIELDS = ("device", "target", "kind", "name", "version", "accepted", "reason", "time_ms")


class CollectorStopped(Exception):
    """The hub database kept failing: stop without acknowledging, so the broker delivers again."""


class Collector:
    def __init__(self, db: HubDB, client, *, topic_prefix: str = "checkpoint", share_group: str | None = "collectors"):
        self.db, self.client, self.prefix = db, client, topic_prefix
        shared = [f"{topic_prefix}/+/entries", f"{topic_prefix}/+/acks"]
        # Status is retained, and a shared subscription gets no retained messages: every collector
        # subscribes alone and stores the newest (an idempotent upsert).
        self.subscriptions = [f"$share/{share_group}/{t}" if share_group else t for t in shared] + [
            f"{topic_prefix}/+/status"]
        self.stats = {"batches": 0, "entries": 0, "duplicates": 0, "rejected": 0}
        self.failed: str | None = None
        client.on_connect = self._on_connect
        client.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("collector: connection refused: %s", reason_code)
            return
        client.subscribe([(t, 1) for t in self.subscriptions])
        log.info("collector: subscribed to %s (session present: %s)", ", ".join(self.subscriptions),
                 flags.session_present)

    def _device(self, topic: str, kind: str = "entries") -> str | None:
        head, sep, rest = topic.partition(self.prefix + "/")
        if head or not sep:
            return None
        device, sep, tail = rest.partition("/")
        return device if sep and tail == kind and DEVICE.match(device) else None

    def _on_message(self, client, userdata, message):
        if self.failed:
            return  # stopping: leave it unacknowledged for the broker to deliver again
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "(topic is not UTF-8)"
        try:
            self.handle(topic, message.payload)
        except CollectorStopped as exc:
            self.failed = str(exc)
            client.disconnect()
            return
        client.ack(message.mid, message.qos)

    def handle(self, topic: str, payload: bytes) -> None:
        if topic.endswith("/status") or topic.endswith("/acks"):
            return self._store(lambda: self._small(topic, payload))
        device = self._device(topic)
        shown = device or repr(topic[:80])
        if device is None:
            return self._reject(shown, "topic does not name a device")
        try:
            batch = decode_batch(payload)
        except BatchError as exc:
            return self._reject(shown, str(exc))
        if batch.device_id != device:
            return self._reject(shown, f"batch says it is from {batch.device_id!r}")
        bad = next((e for e in batch.entries if e.decision not in DECISIONS or len(e.id) != 36), None)
        if bad is not None:
            return self._reject(shown, f"entry seq {bad.seq} has decision {bad.decision[:20]!r}")
        inserted, duplicates, known = self._store(lambda: self.db.store(batch, wall_ms()))
        self.stats["batches"] += 1
        self.stats["entries"] += inserted
        self.stats["duplicates"] += duplicates
        if batch.entries and batch.entries[0].seq > known + 1 and inserted:
            log.warning("collector: device %s: sequence gap or out-of-order batch: after %d came %d",
                        device, known, batch.entries[0].seq)
        log.debug("collector: %s: %d new, %d duplicate", device, inserted, duplicates)

    def _store(self, write):
        for attempt in range(1, STORE_ATTEMPTS + 1):
            try:
                return write()
            except self.db.errors as exc:
                log.error("collector: hub database failed (attempt %d of %d): %s", attempt, STORE_ATTEMPTS, exc)
                if attempt == STORE_ATTEMPTS:
                    raise CollectorStopped(f"hub database failed: {exc}") from None
                time.sleep(attempt)

    def _small(self, topic: str, payload: bytes) -> None:
        """A device's status or a bundle acknowledgement: small JSON objects, checked field by field."""
        kind = topic.rsplit("/", 1)[-1]
        device = self._device(topic, kind)
        if device is None:
            return self._reject(repr(topic[:80]), "topic does not name a device")
        if not payload:
            return  # a cleared retained status
        try:
            if len(payload) > MAX_SMALL_BYTES:
                raise ValueError(f"{len(payload)} bytes")
            data = json.loads(payload)
            if not isinstance(data, dict) or data.get("device") != device:
                raise ValueError("not an object naming this device")
        except (ValueError, UnicodeDecodeError) as exc:
            return self._reject(device, f"{kind}: {exc}")
        now = wall_ms()
        if kind == "status":
            state = data.get("state") if data.get("state") in ("online", "offline") else "online"
            self.db.store_status(device, state, json.dumps(data), now)
            return
        ack = {key: data.get(key) for key in ACK_FIELDS}
        if not (isinstance(ack["accepted"], bool) and isinstance(ack["time_ms"], int) and isinstance(ack["kind"], str)
                and all(v is None or isinstance(v, (str, int)) for v in ack.values())
                and all(v is None or len(str(v)) <= 1000 for v in ack.values())):
            return self._reject(device, "acks: malformed acknowledgement")
        self.db.store_ack(ack, now)
        if not ack["accepted"]:
            log.warning("collector: device %s REFUSED %s %s v%s: %s", device, ack["kind"], ack["name"] or
                        ack["target"], ack["version"], ack["reason"])

    def _reject(self, device: str, why: str) -> None:
        self.stats["rejected"] += 1
        log.warning("collector: rejected a batch from device %s: %s", device, why)
