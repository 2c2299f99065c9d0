"""The device's side of pushed configuration and lists: verify, apply, acknowledge.

Messages arrive on paho's thread and are handled one at a time on the receiver's own thread, so a
10-million-entry list being built never holds up a PUBACK, a sync batch or a scan. What was applied
(config layers, their versions, digests and signers, the signers of each list, the last refusal) is kept
in remote.json beside the database, written durably; list versions live in the lists catalog. A refused
bundle changes nothing and is reported to the hub on <prefix>/<device>/acks and in the device's status.

remote.json is what refuses replayed bundles: when it cannot be read, every bundle is refused until an
administrator has looked at it (the damaged file is left as it is). What a key no longer in trusted_keys
signed stops applying, and a layer of a group the device left stops applying, at every load.

Topics, for each target this device answers to (all, group/<G>, <device>):
    <prefix>/<target>/config                          retained config bundle
    <prefix>/<target>/lists/<name>/snapshot           retained snapshot manifest (signed, lists chunk hashes)
    <prefix>/<target>/lists/<name>/chunks/<v>/<i>     retained chunk i of version v (checked by hash)
    <prefix>/<target>/lists/<name>/delta/<base>       retained delta from <base>; the device listens only on
                                                      its current version's topic
    <prefix>/<target>/trust                           retained EU DCC trust list bundle, written to trust.json
                                                      (the daemon reads it again within seconds)

The receiver is put together from parts, one module each: receiverbase (state, subscriptions, signers, acks),
applyconfig, applytrust and applylists (one kind of bundle each), acks (what an ack names) and remotestate
(remote.json). This module receives and verifies, and hands each bundle to its part.
"""
from __future__ import annotations

import hashlib
import logging
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge.common.textsafe import for_log
from edge.credentials import trustfile
from edge.lists import ListError, ListStore, read_hash_keys
from edge.settings.schema import RemoteSettings
from sync.device.acks import MAX_REASON
from sync.device.applyconfig import ConfigApplier
from sync.device.applylists import ListApplier, collector_paused
from sync.device.applytrust import TrustApplier
from sync.device.receiverbase import Download
from sync.device.remotestate import load_state
from sync.wire.bundle import TrustedKeys, peek, target_topic, verify
from sync.wire.errors import BundleError
from sync.wire.messages import Remote

# Kept importable from here, where callers and tests have always found them.
__all__ = ["MAX_QUEUED_BYTES", "MAX_REASON", "Download", "Receiver", "collector_paused"]

log = logging.getLogger("checkpoint.remote")

MAX_QUEUED_BYTES = 256 << 20


class Receiver(ListApplier, ConfigApplier, TrustApplier):
    def __init__(self, settings: RemoteSettings, *, device_id: str, prefix: str, config_path: Path,
                 lists_path: Path, on_config: Callable[[], None] = lambda: None, trust_path: Path | None = None,
                 list_options: dict[str, Any] | None = None):
        """trust_path: where a pushed trust list is written ([credentials.dcc] trust_list); default
        trust.json beside the database. list_options: passed on to the ListStore (fold_rows, fold_share)."""
        self.settings, self.device_id, self.prefix = settings, device_id, prefix
        self.config_path = Path(config_path)
        self.lists_path = Path(lists_path)
        self.trust_path = Path(trust_path) if trust_path else trustfile.default_path(self.lists_path.parent)
        self.state_path = self.lists_path.parent / "remote.json"
        self.staging = self.lists_path.parent / "lists.d" / "staging"
        self.on_config = on_config
        self.on_change: Callable[[], None] = lambda: None  # set by the sync agent: a status goes up at once
        self.trusted = TrustedKeys(settings.trusted_keys)
        self.targets = ["all", *(f"group:{g}" for g in settings.groups), f"device:{device_id}"]
        self.state, self.damaged = load_state(self.state_path)
        self.problems: list[str] = []
        self._untrusted_acks = []
        self.downloads: dict[str, Download] = {}
        self.client = None
        self._queue = queue.Queue()
        self._queued_bytes = 0
        self._subscribed: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lists = None
        self.list_options = list_options or {}
        self.acks_topic = f"{prefix}/{device_id}/acks"
        self.timings = {}
        self.handled: Counter[str] = Counter()  # messages handled (applied, ignored or refused), by topic

    # -- lifecycle (called by the sync agent) ------------------------------------------------------
    def start(self, client: mqtt.Client) -> None:
        self.client = client
        self.lists = ListStore(self.lists_path, hash_keys=read_hash_keys(self.settings.hash_key_file),
                               **self.list_options)
        if self.damaged is None:
            self._resume_downloads()
        self._review(announce=True)
        self._thread = threading.Thread(target=self._run, name="remote", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.lists is not None:
            self.lists.close()

    def on_connect(self, client: mqtt.Client) -> None:
        """Subscribe afresh on every connection: retained bundles come again, identical ones are ignored."""
        with self._lock:
            self._subscribed.clear()
        self._queue.put(("resubscribe", b""))

    def on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        payload = message.payload if isinstance(message.payload, bytes) else bytes(message.payload)
        size = len(payload)
        try:
            topic = message.topic  # paho decodes the topic here, and raises on bytes that are not UTF-8
        except UnicodeDecodeError:
            topic = "(not UTF-8)"
        with self._lock:
            if self._queued_bytes + size > MAX_QUEUED_BYTES:
                log.warning("remote: receive queue full; %s dropped (it comes again when asked for again)",
                            for_log(topic, 120))
                return
            self._queued_bytes += size
        self._queue.put((topic, payload))

    def status(self) -> dict[str, Any]:
        """What was applied, as the device's status says it under "remote" (its JSON fields)."""
        return self.status_message().model_dump(mode="json", exclude_unset=True)

    def status_message(self) -> Remote:
        in_force = {layer["target"] for layer in self._layers_in_force()}
        applied = dict(self.state["applied_config"])  # a copy: the receiver's thread may be changing it
        return Remote.model_validate({
            "config": {t: {"version": l["version"], **({} if t in in_force else {"in_force": False})}
                       for t, l in applied.items()},
            "downloads": {n: f"{len(d.have)}/{len(d.head.chunks)} "
                             f"chunks of v{d.head.version}" for n, d in list(self.downloads.items())},
            "trust": {t: {"version": a["version"]} for t, a in dict(self.state["trust"]).items()},
            "last_rejected": self.state.get("last_rejected"), "timings": dict(self.timings),
            "problems": list(self.problems), "groups": list(self.settings.groups)})

    # -- the receiver's thread ---------------------------------------------------------------------
    def _run(self) -> None:
        next_retry = time.monotonic() + 1.0
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                item = ("tick", b"")
            if item is None:
                break
            topic, payload = item
            with self._lock:
                self._queued_bytes -= len(payload)
            try:
                if topic == "resubscribe":
                    self._subscribe_all()
                elif topic != "tick":
                    self._handle(topic, payload)
                if time.monotonic() >= next_retry:
                    next_retry = time.monotonic() + 1.0
                    self._retry_chunks()
            except (ListError, sqlite3.Error, OSError) as exc:
                log.error("remote: %s: %s", for_log(topic, 120), for_log(exc))
                self._unforeseen(topic, payload, exc)
            except Exception as exc:  # a message no check foresaw must not end the receiver: log it, go on
                log.exception("remote: unexpected failure on %s", for_log(topic, 120))
                self._unforeseen(topic, payload, exc)
            if topic not in ("resubscribe", "tick"):
                self.handled[topic] += 1  # what a test or a debugger waits for: a message seen through

    def _unforeseen(self, topic: str, payload: bytes, exc: Exception) -> None:
        """Tell the hub that a message could not be handled; never let the telling end the thread."""
        if topic in ("resubscribe", "tick"):
            return
        try:
            self._ack(None, accepted=False, reason=f"the device could not handle it ({type(exc).__name__})",
                      digest=hashlib.sha256(payload).hexdigest())
        except Exception:  # noqa: BLE001 - the failure is logged above; the receiver goes on
            log.exception("remote: cannot report the failure on %s", for_log(topic, 120))

    def _subscribe_all(self) -> None:
        self._send_untrusted_acks()
        # Deltas first: the broker sends retained messages in this order, so a device one version behind
        # applies the delta before the manifest would have it fetch the whole snapshot.
        topics = [self._delta_topic(t, info.name, info.version) for info in self.store.infos() for t in self.targets]
        for target in self.targets:
            base = f"{self.prefix}/{target_topic(target)}"
            topics += [f"{base}/config", f"{base}/lists/+/snapshot", f"{base}/trust"]
        self._subscribe(topics)
        for download in self.downloads.values():
            download.asked.clear()
            self._ask(download)

    def _handle(self, topic: str, payload: bytes) -> None:
        if not payload:
            return  # a retained message cleared by the hub
        if "/chunks/" in topic:
            return self._chunk(topic, payload)
        bundle = None
        try:
            if self.damaged is not None:
                bundle = verify(payload, self.trusted)  # to say what was refused
                raise BundleError(f"refused until an administrator acts: {self.damaged}")
            digest = hashlib.sha256(payload).hexdigest()
            if self._copy_of_applied(digest, payload):
                return
            bundle = verify(payload, self.trusted)
            head = bundle.header
            if head.target not in self.targets:
                raise BundleError(f"addressed to {head.target}, not to this device")
            if head.kind == "config":
                self._config(bundle)
            elif head.kind == "trust":
                self._trust(bundle)
            elif head.list_kind == "snapshot":
                self._snapshot(bundle)
            else:
                self._delta(bundle)
        except BundleError as exc:
            self._reject(topic, payload, str(exc), bundle=bundle, fields=exc.fields)

    def _copy_of_applied(self, digest: str, payload: bytes) -> bool:
        """Whether a message is a copy of what is applied (a retained one, again at each connection):
        recognised before its signature is judged, so the copy of what a removed key signed is neither
        applied nor refused again and again. A copy whose signer is not recorded yet (state saved by an
        older version) is judged, so that its signer gets recorded."""
        for applied in self.state["applied_config"].values():
            if applied["digest"] == digest and applied.get("key"):
                return True
        if any(applied.get("digest") == digest for applied in self.state["trust"].values()):
            return True
        fields = peek(payload) or {}
        name = fields.get("name")
        if fields.get("kind") != "list" or not isinstance(name, str):
            return False
        info = self.lists.info(name) if self.lists is not None else None
        if info is None or fields.get("version") != info.version or fields.get("content_sha256") != info.sha256:
            return False
        record = self.state["lists"].get(name)
        if record and record["version"] == info.version and (
                record.get("digest") == digest or all(k in self.trusted.keys for k in record["signers"])):
            return True
        # The contents held, described by a message not seen before: signed by a trusted key, it vouches for
        # them (a list applied through deltas, or recorded before signers were); else it is left unjudged.
        try:
            bundle = verify(payload, self.trusted)
        except BundleError:
            return True
        if bundle.header.target in self.targets:
            self._record_list(bundle, [bundle.header.key])
            self._review()
        return True
