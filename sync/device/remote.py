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
"""
from __future__ import annotations

import gc
import hashlib
import json
import logging
import queue
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from edge.common.clock import iso_ms, wall_ms
from edge.common.statefile import write_json, write_private
from edge.common.textsafe import for_log
from edge.credentials import trustfile
from edge.credentials.trust import TrustListError
from edge.lists import ListError, ListStore, key_id
from edge.settings.layers import (
    layers_in_force,
    read_remote_state,
    settings_with_layers,
)
from edge.settings.schema import ConfigError, RemoteSettings, parse_toml, read_config
from sync.wire import listwire
from sync.wire.bundle import (
    Bundle,
    BundleError,
    TrustedKeys,
    peek,
    target_topic,
    verify,
)

log = logging.getLogger("checkpoint.remote")

MAX_QUEUED_BYTES = 256 << 20
MAX_REASON = 900  # characters of a refusal's reason in an ack: the hub refuses longer fields


@dataclass
class Download:
    """A snapshot being fetched: its verified manifest, the chunks already on disk, the ones asked for."""
    bundle: Bundle
    folder: Path
    have: set[int] = field(default_factory=set)
    asked: set[int] = field(default_factory=set)
    asked_at: float = 0.0

    @property
    def name(self) -> str:
        return self.bundle.header.name

    @property
    def missing(self) -> list[int]:
        return [i for i in range(len(self.bundle.header.chunks)) if i not in self.have]


def read_hash_key(value: str | None) -> dict[str, bytes]:
    """{key id: key} from a file of 64 hex digits (or a systemd credential of that name)."""
    if not value:
        return {}
    from sync.wire.mqtt import SyncConfigError, read_secret

    try:
        text = read_secret(value)
    except SyncConfigError as exc:
        raise ValueError(str(exc)) from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ValueError(f"hash key {value}: expected 64 hex digits")
    return {key_id(key): key}


@contextmanager
def collector_paused():
    """Python's cycle collector off while list records are decoded and written: they hold no cycles, and
    their hundred thousand fresh tuples would set off full collections, each holding the GIL (and so the
    scanning thread) for tens of milliseconds."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Receiver:
    def __init__(self, settings: RemoteSettings, *, device_id: str, prefix: str, config_path: Path,
                 lists_path: Path, on_config: Callable[[], None] = lambda: None, trust_path: Path | None = None):
        """trust_path: where a pushed trust list is written ([credentials.dcc] trust_list); default
        trust.json beside the database."""
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
        self.damaged: str | None = None  # why remote.json cannot be used: then every bundle is refused
        self.state = self._load_state()
        self.problems: list[str] = []
        self._untrusted_acks: list[dict] = []  # refusals of what a removed key signed, sent once connected
        self.downloads: dict[str, Download] = {}
        self.client = None
        self._queue: queue.Queue = queue.Queue()
        self._queued_bytes = 0
        self._subscribed: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lists: ListStore | None = None
        self.acks_topic = f"{prefix}/{device_id}/acks"
        self.timings: dict[str, float] = {}  # seconds the last delta / snapshot took to apply, for status

    # -- lifecycle (called by the sync agent) ------------------------------------------------------
    def start(self, client) -> None:
        self.client = client
        self.lists = ListStore(self.lists_path, hash_keys=read_hash_key(self.settings.hash_key_file))
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

    def on_connect(self, client) -> None:
        """Subscribe afresh on every connection: retained bundles come again, identical ones are ignored."""
        with self._lock:
            self._subscribed.clear()
        self._queue.put(("resubscribe", b""))

    def on_message(self, client, userdata, message) -> None:
        size = len(message.payload)
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
        self._queue.put((topic, message.payload))

    def status(self) -> dict:
        in_force = {layer["target"] for layer in self._layers_in_force()}
        applied = dict(self.state["applied_config"])  # a copy: the receiver's thread may be changing it
        return {"config": {t: {"version": l["version"], **({} if t in in_force else {"in_force": False})}
                           for t, l in applied.items()},
                "downloads": {n: f"{len(d.have)}/{len(d.bundle.header.chunks)} "
                                 f"chunks of v{d.bundle.header.version}" for n, d in list(self.downloads.items())},
                "trust": {t: {"version": a["version"]} for t, a in dict(self.state["trust"]).items()},
                "last_rejected": self.state.get("last_rejected"), "timings": self.timings,
                "problems": list(self.problems), "groups": list(self.settings.groups)}

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
            except (sqlite3.Error, OSError) as exc:
                log.error("remote: %s: %s", for_log(topic, 120), for_log(exc))
                self._unforeseen(topic, payload, exc)
            except Exception as exc:  # a message no check foresaw must not end the receiver: log it, go on
                log.exception("remote: unexpected failure on %s", for_log(topic, 120))
                self._unforeseen(topic, payload, exc)

    def _unforeseen(self, topic: str, payload: bytes, exc: Exception) -> None:
        """Tell the hub that a message could not be handled; never let the telling end the thread."""
        if topic in ("resubscribe", "tick"):
            return
        try:
            self._ack(None, accepted=False, reason=f"the device could not handle it ({type(exc).__name__})",
                      digest=hashlib.sha256(payload).hexdigest())
        except Exception:  # noqa: BLE001 - the failure is logged above; the receiver goes on
            log.exception("remote: cannot report the failure on %s", for_log(topic, 120))

    def _subscribe(self, topics: list[str]) -> None:
        new = [t for t in topics if t not in self._subscribed]
        if new and self.client is not None:
            self.client.subscribe([(t, 1) for t in new])
            self._subscribed.update(new)

    def _unsubscribe(self, topics: list[str]) -> None:
        gone = [t for t in topics if t in self._subscribed]
        if gone and self.client is not None:
            self.client.unsubscribe(gone)
            self._subscribed.difference_update(gone)

    def _subscribe_all(self) -> None:
        self._send_untrusted_acks()
        # Deltas first: the broker sends retained messages in this order, so a device one version behind
        # applies the delta before the manifest would have it fetch the whole snapshot.
        topics = [self._delta_topic(t, info.name, info.version) for info in self.lists.infos() for t in self.targets]
        for target in self.targets:
            base = f"{self.prefix}/{target_topic(target)}"
            topics += [f"{base}/config", f"{base}/lists/+/snapshot", f"{base}/trust"]
        self._subscribe(topics)
        for download in self.downloads.values():
            download.asked.clear()
            self._ask(download)

    def _delta_topic(self, target: str, name: str, version: int) -> str:
        return f"{self.prefix}/{target_topic(target)}/lists/{name}/delta/{version}"

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

    # -- configuration -----------------------------------------------------------------------------
    def _layers_in_force(self) -> list[dict]:
        return layers_in_force(list(self.state["config_layers"]), self.targets, set(self.trusted.keys))[0]

    def _config(self, bundle: Bundle) -> None:
        head = bundle.header
        applied = self.state["applied_config"].get(head.target)
        if applied and applied["digest"] == bundle.digest:
            # The retained copy of what is applied, its signer not recorded yet: verified now, so recorded.
            self._save_state({**self.state, "applied_config": {
                **self.state["applied_config"], head.target: {**applied, "key": head.key, "versions": {
                    **applied.get("versions", {}), head.key: head.version}}}, "config_layers": [
                {**l, "key": head.key} if l["target"] == head.target else l for l in self.state["config_layers"]]})
            self._review()
            self._ack(bundle, accepted=True)
            log.info("remote: config %s v%d: signer %s recorded", head.target, head.version, head.key)
            self.on_config()
            return
        self._check_fresh(head, self._config_floor(applied))
        try:
            override = parse_toml(bundle.body, f"{head.target} v{head.version}")
            layer = {"target": head.target, "version": head.version, "merge": head.merge, "settings": override,
                     "key": head.key}
            stored = [l for l in self.state["config_layers"] if l["target"] != head.target] + [layer]
            in_force = layers_in_force(stored, self.targets, set(self.trusted.keys))[0]
            raw, data = read_config(self.config_path)
            settings_with_layers(raw, data, in_force, str(self.config_path))
        except ConfigError as exc:
            raise BundleError(f"invalid config: {exc}") from None
        # Layers of targets left or keys removed stay stored (they apply again if the device is put back in
        # the group or the key trusted again) but never apply meanwhile: layers_in_force at every load.
        order = {t: i for i, t in enumerate(self.targets)}
        versions = dict((applied or {}).get("versions", {}))
        versions[head.key] = max(versions.get(head.key, 0), head.version)
        stored.sort(key=lambda l: order.get(l["target"], len(order)))
        self._save_state({**self.state, "config_layers": stored,
                          "applied_config": {**self.state["applied_config"], head.target: {
                              "version": head.version, "digest": bundle.digest, "applied_ms": wall_ms(),
                              "key": head.key, "versions": versions}}})
        self._review()
        self._ack(bundle, accepted=True)
        log.info("remote: config %s v%d accepted", head.target, head.version)
        self.on_config()

    def _config_floor(self, applied: dict | None) -> int:
        """The version a new bundle for a target must pass: the newest that a key trusted now signed. A key
        rotated out (perhaps stolen) cannot lock a target by having signed version 2**53."""
        if not applied:
            return 0
        versions = applied.get("versions")
        if not versions:
            return applied["version"]  # saved by an older version: its signer unknown, its version kept
        return max((v for k, v in versions.items() if k in self.trusted.keys), default=0)

    def _check_fresh(self, head, current: int) -> None:
        if head.version <= current:
            raise BundleError(f"version {head.version} is not newer than the applied {current}")
        if head.expires_ms <= wall_ms():
            raise BundleError(f"expired at {iso_ms(head.expires_ms)} (device clock {iso_ms(wall_ms())})")

    # -- EU DCC trust lists --------------------------------------------------------------------------
    def _trust(self, bundle: Bundle) -> None:
        """Checked as `checkpoint trust import` checks a file, then written whole as trust.json. Versions
        are per target, as for configs; the list last accepted is the one in force (push one target,
        usually all)."""
        head = bundle.header
        applied = self.state["trust"].get(head.target)
        floor = max((v for k, v in (applied or {}).get("versions", {}).items() if k in self.trusted.keys), default=0)
        self._check_fresh(head, floor)
        try:
            meta = trustfile.store(bundle.body, self.trust_path, now_ms=wall_ms(), version=head.version,
                                   source=f"{head.target} v{head.version}", newer_only=False)
        except TrustListError as exc:
            raise BundleError(f"invalid trust list: {exc}") from None
        versions = {**(applied or {}).get("versions", {}), head.key: head.version}
        try:
            self._save_state({**self.state, "trust": {**self.state["trust"], head.target: {
                "version": head.version, "digest": bundle.digest, "applied_ms": wall_ms(), "key": head.key,
                "versions": versions}}})
        except OSError as exc:  # the list is in force already: said, not undone
            log.error("remote: trust list %s v%d written, but not recorded: %s", head.target, head.version,
                      for_log(exc))
        self._ack(bundle, accepted=True)
        log.info("remote: trust list %s v%d accepted: %d signers", head.target, head.version, meta.signers)

    # -- lists -------------------------------------------------------------------------------------
    def _list_checks(self, bundle: Bundle) -> int:
        head = bundle.header
        info = self.lists.info(head.name)
        current = info.version if info else 0
        if not self.lists.has_key(head.hash_key):
            raise BundleError(f"list {head.name} is hashed with key {head.hash_key}; this device holds "
                              f"{', '.join(self.lists.hash_keys) or 'no hash key'}")
        return current

    def _snapshot(self, bundle: Bundle) -> None:
        head = bundle.header
        info = self.lists.info(head.name)
        if info and info.version == head.version and info.sha256 == head.content_sha256:
            return  # what is applied (through a delta, or this very snapshot)
        busy = self.downloads.get(head.name)
        if busy and busy.bundle.digest == bundle.digest:
            return
        current = self._list_checks(bundle)
        self._check_fresh(head, self._list_floor(head.name, current))
        if busy:
            self._drop_download(busy)
        folder = self.staging / f"{head.name}.{head.version}"
        folder.mkdir(mode=0o750, parents=True, exist_ok=True)
        write_private(folder / "manifest", bundle.message, durable=False)  # list data: not world-readable
        download = Download(bundle, folder)
        self.downloads[head.name] = download
        log.info("remote: list %s v%d: fetching %d chunks (%d entries)", head.name, head.version,
                 len(head.chunks), head.count)
        self._ask(download)
        self._maybe_build(download)

    def _delta(self, bundle: Bundle) -> None:
        head = bundle.header
        info = self.lists.info(head.name)
        if info and info.version == head.version and info.sha256 == head.content_sha256:
            return
        current = self._list_checks(bundle)
        self._check_fresh(head, current)
        if head.base != current:
            raise BundleError(f"delta from version {head.base}, this device holds {current}; "
                              "waiting for a snapshot")
        if info is not None and info.hash_key != head.hash_key:
            raise BundleError(f"delta hashed with key {head.hash_key}, the list with {info.hash_key}")
        if (removed := self._untrusted_signers(head.name, current)):
            # A delta changes some entries and keeps the rest: the rest would still be the removed key's.
            raise BundleError(f"list {head.name} v{current} was signed by key {removed[0]}, no longer trusted: "
                              "a delta onto it is refused; waiting for a snapshot")
        try:
            with collector_paused():
                changes = listwire.decode(bundle.body, key_len=listwire.key_len(head.hash_key))
                started = time.monotonic()
                self.lists.apply_delta(head.name, base=head.base, version=head.version, changes=changes,
                                       count=head.count, sha256=head.content_sha256,
                                       source=f"{head.target} delta")
        except (listwire.RecordsError, ListError) as exc:
            raise BundleError(str(exc)) from None
        self.timings["delta_apply_s"] = round(time.monotonic() - started, 3)
        log.info("remote: list %s v%d -> v%d: %d added, %d changed, %d removed in %.2f s", head.name, head.base,
                 head.version, len(changes.added), len(changes.changed), len(changes.removed),
                 self.timings["delta_apply_s"])
        record = self.state["lists"].get(head.name)
        signers = record["signers"] if record and record["version"] == head.base else []
        self._record_list(bundle, [*signers, *([head.key] if head.key not in signers else [])])
        self._ack(bundle, accepted=True)
        self._moved(head.name, head.base, head.version)
        started = time.monotonic()
        if folded := self.lists.fold(head.name):  # after the ack: the hub need not wait for it
            self.timings["fold_s"] = round(time.monotonic() - started, 3)
            log.info("remote: list %s: %d delta rows folded into its entries in %.1f s", head.name, folded,
                     self.timings["fold_s"])

    def _moved(self, name: str, old: int, new: int) -> None:
        self._unsubscribe([self._delta_topic(t, name, old) for t in self.targets])
        self._subscribe([self._delta_topic(t, name, new) for t in self.targets])
        download = self.downloads.get(name)
        if download and download.bundle.header.version <= new:
            self._drop_download(download)

    # -- snapshot chunks ---------------------------------------------------------------------------
    def _chunk_topic(self, download: Download, index: int) -> str:
        head = download.bundle.header
        return f"{self.prefix}/{target_topic(head.target)}/lists/{head.name}/chunks/{head.version}/{index}"

    def _ask(self, download: Download) -> None:
        """Keep a few chunks requested: memory stays bounded however large the list."""
        room = self.settings.chunk_window - len(download.asked)
        wanted = [i for i in download.missing if i not in download.asked][:max(room, 0)]
        if wanted:
            download.asked.update(wanted)
            download.asked_at = time.monotonic()
            self._subscribe([self._chunk_topic(download, i) for i in wanted])

    def _retry_chunks(self) -> None:
        for download in list(self.downloads.values()):
            if download.asked and time.monotonic() - download.asked_at > self.settings.retry_s:
                self._unsubscribe([self._chunk_topic(download, i) for i in download.asked])
                download.asked.clear()
                self._ask(download)

    def _chunk(self, topic: str, payload: bytes) -> None:
        parts = topic.rsplit("/", 5)
        download = self.downloads.get(parts[-4]) if len(parts) == 6 else None
        try:
            version, index = int(parts[-2]), int(parts[-1])
        except (ValueError, IndexError):
            return
        if download is None or download.bundle.header.version != version or index in download.have \
                or topic != self._chunk_topic(download, index):
            return
        head = download.bundle.header
        if not 0 <= index < len(head.chunks):
            return
        self._unsubscribe([topic])
        if hashlib.sha256(payload).hexdigest() != head.chunks[index]:
            # Left in `asked`, so it is asked for again only after retry_s: a broker holding a bad copy is
            # not asked in a loop. The old list stays in use meanwhile.
            self._reject(topic, payload, f"list {head.name} v{head.version}: chunk {index} does not match "
                         "the signed manifest", bundle=download.bundle)
            return
        download.asked.discard(index)
        # Not flushed: a chunk lost in a power cut is fetched again (its hash is in the manifest).
        write_private(download.folder / f"{index}.chunk", payload, durable=False)
        download.have.add(index)
        self._ask(download)
        self._maybe_build(download)

    def _maybe_build(self, download: Download) -> None:
        if download.missing:
            return
        head = download.bundle.header
        started = time.monotonic()
        building = self.lists.new_file(head.name, head.version, head.hash_key)
        try:
            for index in range(len(head.chunks)):
                with collector_paused():
                    chunk = listwire.decode((download.folder / f"{index}.chunk").read_bytes(),
                                            key_len=listwire.key_len(head.hash_key))
                    if chunk.changed or chunk.removed:
                        raise listwire.RecordsError(f"chunk {index} changes or removes entries")
                    building.add(chunk.added)
            count = building.finish()
            if count != head.count:
                raise ListError(f"{count} entries, the manifest says {head.count}")
            info = self.lists.info(head.name)
            # Checked again: the list may have moved on while the chunks came.
            floor = self._list_floor(head.name, info.version) if info else 0
            if head.version <= floor:
                raise ListError(f"version {head.version} is not newer than the applied {floor}")
            self.lists.install(head.name, head.version, building.path, count=count, sha256=head.content_sha256,
                               source=f"{head.target} snapshot", hash_key=head.hash_key,
                               allow_lower=bool(info and self._untrusted_signers(head.name, info.version)))
        except (listwire.RecordsError, ListError, sqlite3.IntegrityError, OSError) as exc:
            building.abandon()
            self._drop_download(download)
            self._reject("", b"", f"list {head.name} v{head.version}: {exc}", bundle=download.bundle)
            return
        self.timings["snapshot_build_s"] = round(time.monotonic() - started, 3)
        log.info("remote: list %s v%d installed: %d entries in %.1f s", head.name, head.version, count,
                 self.timings["snapshot_build_s"])
        self._drop_download(download)
        self._record_list(download.bundle, [head.key])
        self._review()
        self._ack(download.bundle, accepted=True)
        self._moved(head.name, info.version if info else 0, head.version)

    def _drop_download(self, download: Download) -> None:
        self._unsubscribe([self._chunk_topic(download, i) for i in download.asked])
        self.downloads.pop(download.name, None)
        shutil.rmtree(download.folder, ignore_errors=True)

    def _resume_downloads(self) -> None:
        """Chunks fetched before a restart are kept; the manifest is verified again."""
        if not self.staging.is_dir():
            return
        for folder in self.staging.iterdir():
            try:
                bundle = verify((folder / "manifest").read_bytes(), self.trusted)
            except (OSError, BundleError):
                shutil.rmtree(folder, ignore_errors=True)
                continue
            have = {int(p.stem) for p in folder.glob("*.chunk") if p.stem.isdigit()}
            self.downloads[bundle.header.name] = Download(bundle, folder, have={
                i for i in have if i < len(bundle.header.chunks)})

    # -- signers ------------------------------------------------------------------------------------
    def _record_list(self, bundle: Bundle, signers: list[str]) -> None:
        """Who signed what a list holds. The list is in force already (its version is in the lists
        catalog, which refuses replays): a record that cannot be saved is said, not a reason to undo it."""
        head = bundle.header
        versions = dict((self.state["lists"].get(head.name) or {}).get("versions", {}))
        versions[head.key] = max(versions.get(head.key, 0), head.version)
        try:
            self._save_state({**self.state, "lists": {**self.state["lists"], head.name: {
                "version": head.version, "signers": signers, "digest": bundle.digest, "versions": versions}}})
        except OSError as exc:
            log.error("remote: list %s v%d applied, but its signer not recorded: %s", head.name, head.version,
                      for_log(exc))

    def _list_floor(self, name: str, current: int) -> int:
        """The version a new snapshot of a list must pass: the one held, unless a key no longer trusted
        (perhaps stolen, and pushed as 2**53) signed part of it; then the newest that a key trusted now
        signed, so that the thief's version holds nothing back and no older trusted one comes back either
        (as _config_floor does for config)."""
        if not self._untrusted_signers(name, current):
            return current
        versions = self.state["lists"][name].get("versions", {})
        return max((v for k, v in versions.items() if k in self.trusted.keys), default=0)

    def _untrusted_signers(self, name: str, version: int) -> list[str]:
        """Keys, no longer trusted, that signed part of what a list holds now (its version `version`)."""
        record = self.state["lists"].get(name)
        if not record or record["version"] != version:
            return []  # a list imported on the device, or pushed before signers were recorded
        return [k for k in record["signers"] if k not in self.trusted.keys]

    def _review(self, announce: bool = False) -> None:
        """What is wrong with the pushed state now, for the status; at start (announce), each said once at
        ERROR and refused to the hub, so the administrator who rotated a key sees what stopped applying."""
        problems = []
        if self.damaged is not None:
            problems.append(f"pushed config and lists: every bundle refused until an administrator acts: "
                            f"{self.damaged}")
        untrusted = []
        for layer in self.state["config_layers"]:
            if layer["target"] in self.targets and not layer.get("key"):
                problems.append(f"config {layer['target']} v{layer['version']}: signer not recorded (saved by "
                                "an older version): left out until its retained copy is verified")
            elif layer["target"] in self.targets and layer["key"] not in self.trusted.keys:
                untrusted.append(({"target": layer["target"], "kind": "config", "name": None,
                                   "version": layer["version"]}, layer["key"], f"config {layer['target']} "
                                  f"v{layer['version']}", "left out"))
        try:
            infos = self.lists.infos() if self.lists is not None else []
        except (sqlite3.Error, OSError):
            infos = []
        for info in infos:
            if removed := self._untrusted_signers(info.name, info.version):
                untrusted.append(({"target": None, "kind": "list", "name": info.name, "version": info.version},
                                  removed[0], f"list {info.name} v{info.version}",
                                  "still in use until a snapshot signed by a trusted key replaces it"))
        for what, key, name, consequence in untrusted:
            reason = f"signer key {key} no longer trusted"
            problems.append(f"{name}: {reason}: {consequence}")
            if announce:
                log.error("remote: %s: %s; %s", for_log(name), reason, consequence)
                self._untrusted_acks.append({**what, "reason": f"{reason}: {consequence}"})
        if problems != self.problems:
            self.on_change()
        self.problems = problems

    # -- acknowledgements and state ----------------------------------------------------------------
    def _reject(self, topic: str, payload: bytes, reason: str, bundle: Bundle | None = None,
                fields: dict | None = None) -> None:
        what = topic or (bundle.header.name if bundle else "")
        log.warning("remote: REJECTED %s: %s", for_log(what, 120), for_log(reason, 400))
        self._ack(bundle, accepted=False, reason=reason, digest=hashlib.sha256(payload).hexdigest(), fields=fields)

    def _ack(self, bundle: Bundle | None, *, accepted: bool, reason: str | None = None,
             digest: str | None = None, fields: dict | None = None) -> None:
        """Published on the acks topic. What was refused is named whenever it is known: from the bundle, or
        from the header its signature vouched for when the body or a field did not hold."""
        if bundle is not None:
            head = bundle.header
            what = {"target": head.target, "kind": f"list-{head.list_kind}" if head.kind == "list" else head.kind,
                    "name": head.name, "version": head.version}
        else:
            what = _described(fields or {})
        if reason is not None and len(reason) > MAX_REASON:
            reason = reason[:MAX_REASON - 1] + "…"
        ack = {"device": self.device_id, **what, "accepted": accepted, "reason": reason, "time_ms": wall_ms(),
               "digest": bundle.digest if bundle else digest}
        if not accepted:
            self.state["last_rejected"] = ack
            if self.damaged is None:
                write_json(self.state_path, self.state)  # a refusal not saved is still reported: no raise
        if self.client is not None:
            self.client.publish(self.acks_topic, json.dumps(ack), qos=1)
        self.on_change()  # the retained status names what was applied or last refused, seconds later

    def _send_untrusted_acks(self) -> None:
        """Refusals of what a removed key signed, once per start, when first connected."""
        while self._untrusted_acks and self.client is not None:
            what = self._untrusted_acks.pop(0)
            self.client.publish(self.acks_topic, json.dumps({"device": self.device_id, **what, "accepted": False,
                                                             "time_ms": wall_ms(), "digest": None}), qos=1)

    def _load_state(self) -> dict:
        try:
            state = read_remote_state(self.state_path.parent)
            _check_trust_state(state, self.state_path)
        except ConfigError as exc:
            # The applied versions are what refuse a replayed bundle: forgetting them would let an old, once
            # valid bundle in again. The file is left as it is for the administrator to look at.
            self.damaged = str(exc)
            log.error("remote: REMOTE STATE UNREADABLE: %s; every pushed config and list is refused until "
                      "an administrator inspects %s, then removes or restores it", self.damaged,
                      for_log(str(self.state_path), 300))
            state = {}
        state.setdefault("config_layers", [])
        state.setdefault("applied_config", {})
        state.setdefault("lists", {})
        state.setdefault("trust", {})
        state.setdefault("last_rejected", None)
        return state

    def _save_state(self, state: dict) -> None:
        """The new state, on disk first: in memory only once it is there, so what this process believes
        applied is never more than what a restart will find."""
        if self.damaged is not None:
            raise OSError(f"{self.state_path} is damaged and left as it is")
        if not write_json(self.state_path, state):
            raise OSError(f"cannot write {self.state_path}")
        self.state = state


def _check_trust_state(state: dict, path: Path) -> None:
    """remote.json's trust table (what refuses a replayed trust list), checked as layers.check_state
    checks the rest: a table not as the receiver wrote it is refused whole."""
    def is_int(value) -> bool:
        return type(value) is int and 0 <= value <= 2**53

    trust = state.get("trust", {})
    if not (isinstance(trust, dict) and all(
            isinstance(t, dict) and is_int(t.get("version")) and isinstance(t.get("digest"), str)
            and isinstance(t.get("versions", {}), dict) and all(is_int(v) for v in t.get("versions", {}).values())
            for t in trust.values())):
        raise ConfigError(f"{for_log(str(path), 300)}: not a remote state file (trust is not a table of versions "
                          "and digests)")
    lists = state.get("lists", {})  # each list's table as layers.check_state found it; its versions here
    if not all(isinstance(l.get("versions", {}), dict) and all(is_int(v) for v in l.get("versions", {}).values())
               for l in lists.values()):
        raise ConfigError(f"{for_log(str(path), 300)}: not a remote state file (a list's versions are not a "
                          "table of versions)")


def _described(fields: dict) -> dict:
    """target, kind, name and version of a refused bundle from its authentic header fields, each only when it
    has the right type (a field that failed validation may be anything)."""
    def text(key):
        value = fields.get(key)
        return value[:100] if isinstance(value, str) else None

    def number(key):
        value = fields.get(key)
        return value if type(value) is int and 0 <= value <= 2**53 else None

    kind = text("kind")
    if kind == "list" and text("list_kind") in ("snapshot", "delta"):
        kind = f"list-{text('list_kind')}"
    return {"target": text("target"), "kind": kind or "unknown", "name": text("name"), "version": number("version")}
