"""Pushed lists: snapshots fetched chunk by chunk, deltas applied onto the version held, and who signed each.

A snapshot's manifest is signed and lists its chunks' hashes; the chunks (retained, each on its own topic) are
asked for a few at a time, so memory stays bounded however large the list, and kept in lists.d/staging across
a restart. A delta applies only onto its base version, and never onto contents a removed key signed.
"""
from __future__ import annotations

import gc
import hashlib
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager

from edge.common.statefile import write_private
from edge.common.textsafe import for_log
from edge.lists import ListError
from sync.device.receiverbase import Download, ReceiverBase
from sync.wire import listwire
from sync.wire.bundle import Bundle, list_header, target_topic, verify
from sync.wire.errors import BundleError, RecordsError

log = logging.getLogger("checkpoint.remote")




@contextmanager
def collector_paused() -> Iterator[None]:
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


class ListApplier(ReceiverBase):
    def _list_checks(self, bundle: Bundle) -> int:
        head = list_header(bundle.header)
        info = self.store.info(head.name)
        current = info.version if info else 0
        if not self.store.has_key(head.hash_key):
            raise BundleError(f"list {head.name} is hashed with key {head.hash_key}; this device holds "
                              f"{', '.join(self.store.hash_keys) or 'no hash key'}")
        return current

    def _snapshot(self, bundle: Bundle) -> None:
        head = list_header(bundle.header)
        info = self.store.info(head.name)
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
        head = list_header(bundle.header)
        info = self.store.info(head.name)
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
                self.store.apply_delta(head.name, base=head.base, version=head.version, changes=changes,
                                       count=head.count, sha256=head.content_sha256,
                                       source=f"{head.target} delta")
        except (RecordsError, ListError) as exc:
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
        if folded := self.store.fold(head.name):  # after the ack: the hub need not wait for it
            self.timings["fold_s"] = round(time.monotonic() - started, 3)
            log.info("remote: list %s: %d delta rows folded into its entries in %.1f s", head.name, folded,
                     self.timings["fold_s"])

    def _moved(self, name: str, old: int, new: int) -> None:
        self._unsubscribe([self._delta_topic(t, name, old) for t in self.targets])
        self._subscribe([self._delta_topic(t, name, new) for t in self.targets])
        download = self.downloads.get(name)
        if download and download.head.version <= new:
            self._drop_download(download)

    # -- snapshot chunks ---------------------------------------------------------------------------
    def _chunk_topic(self, download: Download, index: int) -> str:
        head = download.head
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
        if download is None or download.head.version != version or index in download.have \
                or topic != self._chunk_topic(download, index):
            return
        head = download.head
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
        head = download.head
        started = time.monotonic()
        building = self.store.new_file(head.name, head.version, head.hash_key)
        try:
            for index in range(len(head.chunks)):
                with collector_paused():
                    chunk = listwire.decode((download.folder / f"{index}.chunk").read_bytes(),
                                            key_len=listwire.key_len(head.hash_key))
                    if chunk.changed or chunk.removed:
                        raise RecordsError(f"chunk {index} changes or removes entries")
                    building.add(chunk.added)
            count = building.finish()
            if count != head.count:
                raise ListError(f"{count} entries, the manifest says {head.count}")
            info = self.store.info(head.name)
            # Checked again: the list may have moved on while the chunks came.
            floor = self._list_floor(head.name, info.version) if info else 0
            if head.version <= floor:
                raise ListError(f"version {head.version} is not newer than the applied {floor}")
            self.store.install(head.name, head.version, building.path, count=count, sha256=head.content_sha256,
                               source=f"{head.target} snapshot", hash_key=head.hash_key,
                               allow_lower=bool(info and self._untrusted_signers(head.name, info.version)))
        except (RecordsError, ListError, OSError) as exc:
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
                download = Download(verify((folder / "manifest").read_bytes(), self.trusted), folder)
            except (OSError, BundleError):
                shutil.rmtree(folder, ignore_errors=True)
                continue
            have = {int(p.stem) for p in folder.glob("*.chunk") if p.stem.isdigit()}
            download.have = {i for i in have if i < len(download.head.chunks)}
            self.downloads[download.name] = download

    # -- signers ------------------------------------------------------------------------------------
    def _record_list(self, bundle: Bundle, signers: list[str]) -> None:
        """Who signed what a list holds. The list is in force already (its version is in the lists
        catalog, which refuses replays): a record that cannot be saved is said, not a reason to undo it."""
        head = list_header(bundle.header)
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
