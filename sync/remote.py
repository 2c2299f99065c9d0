"""The device's side of pushed configuration and lists: verify, apply, acknowledge.

Messages arrive on paho's thread and are handled one at a time on the receiver's own thread, so a
10-million-entry list being built never holds up a PUBACK, a sync batch or a scan. What was applied
(config layers, their versions and digests, the last refusal) is kept in remote.json beside the
database, written atomically; list versions live in the lists catalog. A refused bundle changes
nothing and is reported to the hub on <prefix>/<device>/acks and in the device's status.

Topics, for each target this device answers to (all, group/<G>, <device>):
    <prefix>/<target>/config                          retained config bundle
    <prefix>/<target>/lists/<name>/snapshot           retained snapshot manifest (signed, lists chunk hashes)
    <prefix>/<target>/lists/<name>/chunks/<v>/<i>     retained chunk i of version v (checked by hash)
    <prefix>/<target>/lists/<name>/delta/<base>       retained delta from <base>; the device listens only on
                                                      its current version's topic
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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edge.clock import iso_ms, wall_ms
from edge.config import ConfigError, RemoteSettings, parse_toml, read_config, settings_with_layers
from edge.lists import ListError, ListStore, key_id
from edge.statefile import write_json

from . import listwire
from .bundle import Bundle, BundleError, TrustedKeys, target_topic, verify

log = logging.getLogger("checkpoint.remote")

MAX_QUEUED_BYTES = 256 << 20


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
    from .mqtt import SyncConfigError, read_secret

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
                 lists_path: Path, on_config: Callable[[], None] = lambda: None):
        self.settings, self.device_id, self.prefix = settings, device_id, prefix
        self.config_path = Path(config_path)
        self.lists_path = Path(lists_path)
        self.state_path = self.lists_path.parent / "remote.json"
        self.staging = self.lists_path.parent / "lists.d" / "staging"
        self.on_config = on_config
        self.trusted = TrustedKeys(settings.trusted_keys)
        self.targets = ["all", *(f"group:{g}" for g in settings.groups), f"device:{device_id}"]
        self.state = self._load_state()
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
        self._resume_downloads()
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
        with self._lock:
            if self._queued_bytes + size > MAX_QUEUED_BYTES:
                log.warning("remote: receive queue full; %s dropped (it comes again when asked for again)",
                            message.topic[:120])
                return
            self._queued_bytes += size
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "(not UTF-8)"
        self._queue.put((topic, message.payload))

    def status(self) -> dict:
        return {"config": {t: {"version": l["version"]} for t, l in self.state["applied_config"].items()},
                "downloads": {n: f"{len(d.have)}/{len(d.bundle.header.chunks)} chunks of v{d.bundle.header.version}"
                              for n, d in list(self.downloads.items())},
                "last_rejected": self.state.get("last_rejected"), "timings": self.timings}

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
                log.error("remote: %s: %s", topic[:120], exc)
            except Exception:  # a message no check foresaw must not end the receiver: log it, go on
                log.exception("remote: unexpected failure on %s", topic[:120])

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
        # Deltas first: the broker sends retained messages in this order, so a device one version behind
        # applies the delta before the manifest would have it fetch the whole snapshot.
        topics = [self._delta_topic(t, info.name, info.version) for info in self.lists.infos() for t in self.targets]
        for target in self.targets:
            base = f"{self.prefix}/{target_topic(target)}"
            topics += [f"{base}/config", f"{base}/lists/+/snapshot"]
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
            bundle = verify(payload, self.trusted)
            head = bundle.header
            if head.target not in self.targets:
                raise BundleError(f"addressed to {head.target}, not to this device")
            if head.kind == "config":
                self._config(bundle)
            elif head.list_kind == "snapshot":
                self._snapshot(bundle)
            else:
                self._delta(bundle)
        except BundleError as exc:
            self._reject(topic, payload, str(exc), bundle=bundle)

    # -- configuration -----------------------------------------------------------------------------
    def _config(self, bundle: Bundle) -> None:
        head = bundle.header
        applied = self.state["applied_config"].get(head.target)
        if applied and applied["digest"] == bundle.digest:
            return  # the retained copy of what is applied
        self._check_fresh(head, applied["version"] if applied else 0)
        try:
            override = parse_toml(bundle.body, f"{head.target} v{head.version}")
            layer = {"target": head.target, "version": head.version, "merge": head.merge, "settings": override}
            layers = [layer if l["target"] == head.target else l for l in self.state["config_layers"]]
            if layer not in layers:
                layers.append(layer)
            layers.sort(key=lambda l: self.targets.index(l["target"]) if l["target"] in self.targets else -1)
            raw, data = read_config(self.config_path)
            settings_with_layers(raw, data, layers, str(self.config_path))
        except ConfigError as exc:
            raise BundleError(f"invalid config: {exc}") from None
        self.state["config_layers"] = layers
        self.state["applied_config"][head.target] = {"version": head.version, "digest": bundle.digest,
                                                     "applied_ms": wall_ms()}
        self._save_state()
        self._ack(bundle, accepted=True)
        log.info("remote: config %s v%d accepted", head.target, head.version)
        self.on_config()

    def _check_fresh(self, head, current: int) -> None:
        if head.version <= current:
            raise BundleError(f"version {head.version} is not newer than the applied {current}")
        if head.expires_ms <= wall_ms():
            raise BundleError(f"expired at {iso_ms(head.expires_ms)} (device clock {iso_ms(wall_ms())})")

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
        self._check_fresh(head, current)
        if busy:
            self._drop_download(busy)
        folder = self.staging / f"{head.name}.{head.version}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifest").write_bytes(bundle.message)
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
        path = download.folder / f"{index}.chunk"
        path.with_suffix(".tmp").write_bytes(payload)
        path.with_suffix(".tmp").replace(path)
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
            self.lists.install(head.name, head.version, building.path, count=count, sha256=head.content_sha256,
                               source=f"{head.target} snapshot", hash_key=head.hash_key)
        except (listwire.RecordsError, ListError, sqlite3.IntegrityError) as exc:
            building.abandon()
            self._drop_download(download)
            self._reject("", b"", f"list {head.name} v{head.version}: {exc}", bundle=download.bundle)
            return
        self.timings["snapshot_build_s"] = round(time.monotonic() - started, 3)
        log.info("remote: list %s v%d installed: %d entries in %.1f s", head.name, head.version, count,
                 self.timings["snapshot_build_s"])
        self._drop_download(download)
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

    # -- acknowledgements and state ----------------------------------------------------------------
    def _reject(self, topic: str, payload: bytes, reason: str, bundle: Bundle | None = None) -> None:
        log.warning("remote: REJECTED %s: %s", topic[:120] or (bundle and bundle.header.name), reason)
        self._ack(bundle, accepted=False, reason=reason, digest=hashlib.sha256(payload).hexdigest())

    def _ack(self, bundle: Bundle | None, *, accepted: bool, reason: str | None = None,
             digest: str | None = None) -> None:
        head = bundle.header if bundle else None
        ack = {"device": self.device_id, "target": head.target if head else None,
               "kind": (head.kind if head.kind == "config" else f"list-{head.list_kind}") if head else "unknown",
               "name": head.name if head else None, "version": head.version if head else None,
               "accepted": accepted, "reason": reason, "time_ms": wall_ms(),
               "digest": bundle.digest if bundle else digest}
        if not accepted:
            self.state["last_rejected"] = ack
            self._save_state()
        if self.client is not None:
            self.client.publish(self.acks_topic, json.dumps(ack), qos=1)

    def _load_state(self) -> dict:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = {}
        state.setdefault("config_layers", [])
        state.setdefault("applied_config", {})
        state.setdefault("last_rejected", None)
        return state

    def _save_state(self) -> None:
        if not write_json(self.state_path, self.state):
            raise OSError(f"cannot write {self.state_path}")
