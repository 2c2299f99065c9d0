"""What the parts of the receiver share: its state, downloads, subscriptions, what it is signed by, its acks.

sync/device/remote.py's Receiver is made of this base and one part per kind of bundle (applyconfig,
applytrust, applylists); each part reads and writes the attributes declared here, which Receiver.__init__ sets.
"""
from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edge.common.clock import iso_ms, wall_ms
from edge.common.statefile import write_json
from edge.common.textsafe import for_log
from edge.lists import ListError, ListStore
from edge.settings.layers import layers_in_force
from edge.settings.schema import RemoteSettings
from sync.device.acks import make_ack
from sync.wire.bundle import Bundle, ListHeader, TrustedKeys, list_header, target_topic
from sync.wire.errors import BundleError
from sync.wire.messages import Ack, ack_json

log = logging.getLogger("checkpoint.remote")


@dataclass
class Download:
    """A snapshot being fetched: its verified manifest, the chunks already on disk, the ones asked for."""
    bundle: Bundle
    folder: Path
    have: set[int] = field(default_factory=set)
    asked: set[int] = field(default_factory=set)
    asked_at: float = 0.0
    head: ListHeader = field(init=False)

    def __post_init__(self) -> None:
        self.head = list_header(self.bundle.header)  # raises BundleError for what is not a list's manifest

    @property
    def name(self) -> str:
        return self.head.name

    @property
    def missing(self) -> list[int]:
        return [i for i in range(len(self.head.chunks)) if i not in self.have]


class Versioned(Protocol):
    """A bundle's header as its freshness is judged (Header, or a list's ListHeader)."""
    @property
    def version(self) -> int: ...
    @property
    def expires_ms(self) -> int: ...


class ReceiverBase:
    settings: RemoteSettings
    device_id: str
    prefix: str
    config_path: Path
    lists_path: Path
    trust_path: Path
    state_path: Path
    staging: Path
    on_config: Callable[[], None]
    on_change: Callable[[], None]
    trusted: TrustedKeys
    targets: list[str]
    damaged: str | None  # why remote.json cannot be used: then every bundle is refused
    state: dict[str, Any]  # remote.json as last saved
    problems: list[str]
    _untrusted_acks: list[dict[str, Any]]  # refusals of what a removed key signed, sent once connected
    downloads: dict[str, Download]
    client: Any  # paho's client, from start()
    _queue: queue.Queue[tuple[str, bytes] | None]
    _queued_bytes: int
    _subscribed: set[str]
    _lock: threading.Lock
    lists: ListStore | None  # open from start() on; messages are handled only after it
    acks_topic: str
    timings: dict[str, float]  # seconds the last delta / snapshot took to apply, for status

    @property
    def store(self) -> ListStore:
        if self.lists is None:
            raise RuntimeError("the receiver is not started")
        return self.lists

    # -- subscriptions -----------------------------------------------------------------------------
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

    def _delta_topic(self, target: str, name: str, version: int) -> str:
        return f"{self.prefix}/{target_topic(target)}/lists/{name}/delta/{version}"

    # -- what is in force, and who signed it ----------------------------------------------------
    def _layers_in_force(self) -> list[dict[str, Any]]:
        return layers_in_force(list(self.state["config_layers"]), self.targets, set(self.trusted.keys))[0]

    def _check_fresh(self, head: Versioned, current: int) -> None:
        if head.version <= current:
            raise BundleError(f"version {head.version} is not newer than the applied {current}")
        if head.expires_ms <= wall_ms():
            raise BundleError(f"expired at {iso_ms(head.expires_ms)} (device clock {iso_ms(wall_ms())})")

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
        except (ListError, OSError):
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
                fields: dict[str, Any] | None = None) -> None:
        what = topic or (bundle.header.name if bundle else "")
        log.warning("remote: REJECTED %s: %s", for_log(what, 120), for_log(reason, 400))
        self._ack(bundle, accepted=False, reason=reason, digest=hashlib.sha256(payload).hexdigest(), fields=fields)

    def _ack(self, bundle: Bundle | None, *, accepted: bool, reason: str | None = None,
             digest: str | None = None, fields: dict[str, Any] | None = None) -> None:
        """Published on the acks topic (sync/device/acks.py says what it names)."""
        ack = make_ack(self.device_id, bundle, accepted=accepted, reason=reason, digest=digest, fields=fields)
        if not accepted:
            self.state["last_rejected"] = ack.model_dump(mode="json")
            if self.damaged is None:
                write_json(self.state_path, self.state)  # a refusal not saved is still reported: no raise
        if self.client is not None:
            self.client.publish(self.acks_topic, ack_json(ack), qos=1)
        self.on_change()  # the retained status names what was applied or last refused, seconds later

    def _send_untrusted_acks(self) -> None:
        """Refusals of what a removed key signed, once per start, when first connected."""
        while self._untrusted_acks and self.client is not None:
            what = self._untrusted_acks.pop(0)
            ack = Ack.model_validate({"device": self.device_id, **what, "accepted": False, "time_ms": wall_ms(),
                                      "digest": None})
            self.client.publish(self.acks_topic, ack_json(ack), qos=1)

    def _save_state(self, state: dict[str, Any]) -> None:
        """The new state, on disk first: in memory only once it is there, so what this process believes
        applied is never more than what a restart will find."""
        if self.damaged is not None:
            raise OSError(f"{self.state_path} is damaged and left as it is")
        if not write_json(self.state_path, state):
            raise OSError(f"cannot write {self.state_path}")
        self.state = state
