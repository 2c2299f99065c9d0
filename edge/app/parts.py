"""The running daemon's parts (source, outputs, stores, pipeline, sync agent) built from settings.

A reload builds again and carries over every part whose settings did not change: the camera stays open,
the pins stay claimed, the sync agent stays connected. edge/app/daemon.py runs what this builds.
"""
from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from drivers.outputs import Output, OutputError, open_output
from drivers.sources import Source, SourceError, open_source
from edge.app.disk import disk
from edge.app.errors import StartError
from edge.app.logkey import load_or_create as load_log_key
from edge.app.pipeline import Pipeline, Scan
from edge.app.signals import Signaller
from edge.common.clock import boot_id, mono_ns, wall_ms
from edge.decode.debounce import Debouncer
from edge.decode.reader import make_decoder
from edge.entries.store import EntryStore
from edge.lists import ListError, ListInfo, ListStore, ListUnreadable, Match, read_hash_keys
from edge.rules.policy import Policy, clock_for, stale_lists
from edge.settings.schema import Settings

if TYPE_CHECKING:
    from sync.device.agent import SyncAgent

log = logging.getLogger("checkpoint.daemon")

# A lists database that cannot be read: edge.lists translates SQLite's errors into ListError at its boundary.
LISTS_UNREADABLE = (ListError,)


class UnreadableLists:
    """Stands in while lists.db cannot be opened: every lookup fails, so every scan is a store-failure
    (deny) rather than a decision taken against lists that are not there."""

    generation = None  # no stamp to watch: Policy.missing_lists asks infos() each time, which fails alike

    def __init__(self, path: Path, error: Exception):
        self.path, self.error = path, error

    def lookup(self, code: str, names: list[str] | None = None) -> list[Match]:
        # policy.judge turns this into a store-failure decision.
        raise ListUnreadable(f"{self.path}: {self.error}")

    def infos(self) -> list[ListInfo]:
        raise ListUnreadable(f"{self.path}: {self.error}")

    def release_old_snapshot(self) -> None:
        pass

    def close(self) -> None:
        pass


Lists = ListStore | UnreadableLists


def open_lists(path: Path, hash_key_file: str | None = None) -> Lists:

    try:
        return ListStore(path, hash_keys=read_hash_keys(hash_key_file))
    except (*LISTS_UNREADABLE, ValueError, OSError) as exc:
        log.error("LISTS UNREADABLE at %s: %s; every scan is denied until it is replaced", path, exc)
        return UnreadableLists(path, exc)


def open_outputs(settings: Settings) -> dict[str, Output]:
    outputs: dict[str, Output] = {}
    try:
        for name, output_settings in settings.outputs.items():
            outputs[name] = open_output(name, output_settings)
    except OutputError as exc:
        for output in outputs.values():
            output.close()
        raise StartError(str(exc)) from None
    return outputs


def open_started_source(settings: Settings) -> Source:
    try:
        source = open_source(settings.source, max_line=settings.decoder.max_payload_bytes + 1)
        source.start()
    except SourceError as exc:
        raise StartError(f"source: {exc}") from None
    return source


@dataclass
class Parts:
    settings: Settings
    source: Source
    signaller: Signaller
    store: EntryStore
    lists: Lists
    pipeline: Pipeline
    agent: SyncAgent | None = None  # when [sync] is enabled (and its config let it start)
    snapshot: dict[str, Any] = field(default_factory=dict)  # for the sync agent's status, refreshed by the daemon
    problems: list[str] = field(default_factory=list)
    # Parts a later build closed ("source", "signaller", "store"): a build that fails half-way is followed by
    # one with the old settings, which reopens exactly these.
    closed: set[str] = field(default_factory=set)


@lru_cache(maxsize=1)
def software_version() -> str:
    try:
        return metadata.version("checkpoint")
    except metadata.PackageNotFoundError:
        return "dev"


def take_snapshot(parts: Parts) -> dict[str, Any]:
    """The daemon's state for the hub, computed on the pipeline's thread (which owns these objects)."""
    decision, now = parts.settings.decision, wall_ms()
    infos: list[ListInfo]
    try:
        infos = parts.lists.infos()
    except LISTS_UNREADABLE:
        infos = []
    ages = {i.name: {"version": i.version, "age_h": round((now - i.imported_ms) / 3_600_000, 2),
                     "max_age_h": decision.max_age_h(i.name)} for i in infos if decision.consults(i.name)}
    trusted = parts.pipeline.clock.trusted()
    stale = stale_lists(decision, infos, now) if trusted else []  # an untrusted clock cannot say
    try:
        missing = parts.pipeline.policy.missing_lists()
    except (*LISTS_UNREADABLE, OSError):
        missing = []  # lists that cannot be read at all are reported as that, when opened
    source, store = parts.source, parts.store
    credentials = parts.pipeline.policy.credentials
    return {
        "versions": {"software": software_version(), "config": parts.settings.version,
                     "lists": {i.name: i.version for i in infos}},
        "mode": decision.mode,
        "source": {"name": source.name, "state": source.stats.state, "delivered": source.stats.delivered,
                   "dropped": source.stats.dropped},
        "store": {"healthy": store.healthy, "error": store.error, "held": len(store.backlog),
                  "disk": disk(parts.settings.store.entries_path.parent)},
        "decoder": {"type": parts.settings.decoder.type,  # reads each second pass added since start
                    "second_pass_reads": dict(getattr(parts.pipeline.decoder, "recovered", {}))},
        "clock": {"state": parts.pipeline.clock.state, "trusted": trusted, "wall_ms": now},
        "lists": ages, "stale_lists": stale, "missing_lists": missing, "problems": parts.problems,
        "trust": credentials.trust_status(now) if credentials is not None else None,
        "scans": parts.pipeline.scans, "boot_id": boot_id(), "state": "running",
    }


def build(settings: Settings, old: Parts | None = None, on_scan: Callable[[Scan], None] | None = None,
          config_path: Path | None = None, on_config: Callable[[], None] = lambda: None) -> Parts:
    """Wire a pipeline; parts whose settings did not change are carried over from `old`.

    A part of `old` that had to be closed is named in old.closed, so a build that fails half-way can be
    followed by one with the old settings that reopens exactly what was closed.
    """
    def same(*keys: str) -> bool:
        return old is not None and all(getattr(old.settings, key) == getattr(settings, key) for key in keys)

    def kept(name: str, *keys: str) -> bool:
        return old is not None and name not in old.closed and same(*keys)

    if old is not None and old.agent is not None and not same("sync", "device", "store", "remote"):
        old.agent.stop()
        old.agent = None
    store: EntryStore
    lists: Lists
    if old is not None and kept("store", "store"):
        store, lists = old.store, old.lists
    else:
        if old is not None and "store" not in old.closed:
            old.store.close()
            old.lists.close()
            old.closed.add("store")
        # At start (no old parts) the database is checked, and a corrupt one set aside.
        store = EntryStore(settings.store.entries_path, retry_s=settings.store.retry_s, check=old is None)
        lists = open_lists(settings.store.lists_path, settings.remote.hash_key_file)
    if old is not None and kept("signaller", "outputs", "signals"):
        signaller = old.signaller
    else:
        if old is not None and "signaller" not in old.closed:
            old.signaller.close()  # the old outputs go to their safe state before new ones take the pins
            old.closed.add("signaller")
        signaller = Signaller(open_outputs(settings), settings.signals)
    if old is not None and kept("source", "source", "decoder"):
        source = old.source
    else:
        if old is not None and "source" not in old.closed:
            old.source.close()  # a camera can be opened by one reader at a time
            old.closed.add("source")
        try:
            source = open_started_source(settings)
        except StartError:
            if old is None or signaller is not old.signaller:
                signaller.close()  # free the pins for the rebuild that follows
            raise
    # The second passes' budget follows what the camera's frame rate leaves ([decoder] budget = "frame").
    decoder = make_decoder(settings.decoder.type, settings.decoder.budget_ms, budget=settings.decoder.budget,
                           frame_interval_s=lambda: source.frame_interval_s)
    carried = old is not None and old.pipeline.store is store
    log_key = old.pipeline.log_key if old is not None and carried else load_log_key(settings.store.entries_path.parent)
    pipeline = Pipeline(
        source=source, decoder=decoder, debouncer=Debouncer(settings.decoder.debounce_ms * 1_000_000),
        # Policy asks for a ListStore; UnreadableLists answers each call it makes (by failing, as meant).
        policy=Policy.for_settings(settings, cast(ListStore, lists), store.last_allowed),
        store=store, signaller=signaller, device_id=settings.device.id, config_version=settings.version,
        max_payload_bytes=settings.decoder.max_payload_bytes, log_codes=settings.log.codes, on_scan=on_scan,
        log_key=log_key,
        clock=old.pipeline.clock if old is not None and same("clock") else
        clock_for(settings, store.newest_wall_ms()))
    pipeline.clock.check(wall_ms(), mono_ns())  # judged now, not first at the next scan
    parts = Parts(settings, source, signaller, store, lists, pipeline)
    parts.snapshot = take_snapshot(parts)
    if old is not None and old.agent is not None:
        parts.agent = old.agent
        parts.agent.status_extra = lambda: parts.snapshot
    elif settings.sync.enabled:
        parts.agent = start_agent(settings, parts, config_path, on_config)
    return parts


def start_agent(settings: Settings, parts: Parts, config_path: Path | None,
                on_config: Callable[[], None]) -> SyncAgent | None:
    from sync.device.agent import SyncAgent
    from sync.device.remote import Receiver
    from sync.wire.errors import WireError

    try:
        receiver = None
        if settings.remote.enabled and config_path is not None:
            receiver = Receiver(settings.remote, device_id=settings.device.id, prefix=settings.sync.topic_prefix,
                                config_path=config_path, lists_path=settings.store.lists_path, on_config=on_config,
                                trust_path=Path(settings.credentials.dcc.trust_list)
                                if settings.credentials.dcc.trust_list else None)
        agent = SyncAgent(settings.sync, device_id=settings.device.id, entries_path=settings.store.entries_path,
                          status=lambda: parts.snapshot, receiver=receiver)
        agent.start()
    except (WireError, ListError, OSError, ValueError, sqlite3.Error) as exc:
        # Scanning goes on without sync: entries wait in the outbox until the config is fixed.
        log.error("SYNC NOT STARTED: %s; entries stay in the outbox", exc)
        return None
    return agent


def close(parts: Parts) -> None:
    if parts.agent is not None:
        parts.agent.stop()
    for name, part in (("source", parts.source), ("signaller", parts.signaller), ("store", parts.store)):
        if name not in parts.closed:
            part.close()
    if "store" not in parts.closed:
        parts.lists.close()
