"""The administrators' side: keys, and signed configuration, list and trust list bundles published as retained
messages, so that a device coming back after days away finds the current ones at the broker without
the administrator's machine being online.

The hub keeps each target's pushed lists in its state folder (the device's own list file format), so a
new push is published both as a snapshot (in chunks) and as a delta from the previous version: devices
one version behind take the small delta, devices further behind the snapshot.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.common.clock import wall_ms
from edge.common.statefile import write_json
from edge.credentials import trustfile
from edge.lists import ListError, ListInfo, ListStore, check_name, file_rows, hash_key_id, read_hash_key_file
from edge.settings.layers import apply_layers
from edge.settings.schema import parse_settings, parse_toml
from sync.hub.errors import BrokerError, HubError, HubUsageError
from sync.wire import listwire
from sync.wire.bundle import (
    MAX_BUNDLE,
    Header,
    header,
    key_id,
    load_private,
    new_private,
    private_pem,
    public_text,
    sign,
    target_topic,
)

log = logging.getLogger("checkpoint.hub")

CHUNK_ENTRIES = 40_000          # about 700 KB of hashed entries: under Mosquitto's 1 MiB default
CHUNK_BYTES = 700_000
KEEP_DELTAS = 8                 # retained deltas per list; a device further behind takes the snapshot


def parse_target(text: str) -> str:
    """DEVICE, device:DEVICE, group:NAME or all → the canonical target."""
    target = text if text == "all" or text.startswith(("group:", "device:")) else f"device:{text}"
    kind, _, name = target.partition(":")
    if target != "all" and (not name or not all(c.isalnum() or c in "._-" for c in name) or len(name) > 64
                            or (kind == "device" and name in ("all", "group"))):
        raise HubUsageError(f"bad target {text!r}: use a device id, group:NAME or all")
    return target


# ---- keys ---------------------------------------------------------------------------------------
def _write_secret(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise HubUsageError(f"{path} exists; a key is never overwritten") from None
    except OSError as exc:
        raise HubUsageError(f"{path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except OSError as exc:  # a full disk: the half-written key is no key
        path.unlink(missing_ok=True)
        raise HubError(f"{path}: {exc.strerror or exc}; not completed") from None


def keygen(path: Path) -> str:
    """A new Ed25519 signing key (mode 0600); returns the public key for devices' trusted_keys."""
    key = new_private()
    _write_secret(path, private_pem(key))
    return public_text(key.public_key())


def hashkey(path: Path) -> str:
    """A new key for hashed lists (64 hex digits, mode 0600); returns its id."""
    key = secrets.token_bytes(32)
    _write_secret(path, key.hex().encode() + b"\n")
    return hash_key_id(key)


def read_private(path: Path):
    try:
        return load_private(Path(path).read_bytes())
    except OSError as exc:
        raise HubUsageError(f"signing key {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # load_private: not a PEM Ed25519 key
        raise HubUsageError(f"signing key {path}: {exc}") from None


def read_hash_key(path: Path) -> bytes:
    try:
        key = read_hash_key_file(path)
    except ListError as exc:  # unreadable, or not 64 hex digits
        raise HubUsageError(str(exc)) from None
    return key


def signed(key, *, body: bytes = b"", expires_s: float, **fields) -> tuple[Header, bytes]:
    now = wall_ms()
    head = header(issued_ms=now, expires_ms=now + int(expires_s * 1000), key=key_id(key.public_key()),
                  body_sha256=hashlib.sha256(body).hexdigest(), body_bytes=len(body), **fields)
    return head, sign(key, head, body)


# ---- configuration ------------------------------------------------------------------------------
def check_config(data: bytes, merge: str) -> None:
    """The checks a device will make that do not need its local file: TOML, pushable sections only, and
    every value, over a minimal base. Raises ConfigError."""
    override = parse_toml(data, "config")
    merged = apply_layers({"source": {"type": "lines"}},
                          [{"target": "check", "version": 1, "merge": merge, "settings": override}])
    parse_settings(merged, "config")


def config_bundle(key, target: str, version: int, data: bytes, *, merge: str = "override",
                  expires_s: float = 90 * 86400) -> bytes:
    return signed(key, body=data, expires_s=expires_s, kind="config", target=target, version=version,
                  merge=merge)[1]


def config_topic(prefix: str, target: str) -> str:
    return f"{prefix}/{target_topic(target)}/config"


# ---- EU DCC trust lists ---------------------------------------------------------------------------
def check_trust(data: bytes) -> int:
    """The check a device makes before it stores a pushed trust list: a Gateway list with at least one
    usable signer. Returns how many; raises TrustListError."""
    return len(trustfile.check(data)[1])


def trust_bundle(key, target: str, version: int, data: bytes, *, expires_s: float = 90 * 86400) -> bytes:
    return signed(key, body=data, expires_s=expires_s, kind="trust", target=target, version=version)[1]


def trust_topic(prefix: str, target: str) -> str:
    return f"{prefix}/{target_topic(target)}/trust"


# ---- lists --------------------------------------------------------------------------------------
@dataclass
class ListPush:
    info: ListInfo
    manifest: bytes
    chunks: list[bytes]
    delta: bytes | None
    base: int | None


def snapshot_chunks(store: ListStore, name: str, key_len: int):
    """The list's records in key order, cut into chunks of bounded size."""
    rows, size = [], 0
    per_row = key_len + 2 if key_len else 24
    for row in store.entries(name):
        rows.append(row)
        size += per_row + (len(row[2]) if row[2] else 0) + (len(row[0]) if not key_len else 0)
        if len(rows) >= CHUNK_ENTRIES or size >= CHUNK_BYTES:
            yield listwire.encode(rows, key_len=key_len)
            rows, size = [], 0
    if rows or size == 0:
        yield listwire.encode(rows, key_len=key_len)


def diff(old, new):
    """(added, changed, removed) that turn the ordered rows `old` into `new`."""
    added: list = []
    changed: list = []
    removals: list = []
    old, new = iter(old), iter(new)
    a: Any = next(old, None)
    b: Any = next(new, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            removals.append(a[0])
            a = next(old, None)
        elif a is None or b[0] < a[0]:
            added.append(b)
            b = next(new, None)
        else:
            if tuple(a) != tuple(b):
                changed.append(b)
            a, b = next(old, None), next(new, None)
    return added, changed, removals


class HubLists:
    """The lists pushed to one target, kept in the device's format under the hub's state folder."""

    def __init__(self, state: Path, target: str):
        self.folder = Path(state) / "lists" / target.replace(":", "-")
        self.store = ListStore(self.folder / "lists.db")
        self.published_path = self.folder / "published.json"

    def close(self) -> None:
        self.store.close()

    def next_version(self, name: str) -> int:
        """The version the next import of `name` will get (checked against the hub database before it)."""
        info = self.store.info(name)
        return info.version + 1 if info else 1

    def published(self) -> dict:
        try:
            return json.loads(self.published_path.read_text())
        except (OSError, ValueError):
            return {}

    def prepare(self, key, target: str, name: str, csv_path: Path, *, hash_key: bytes | None, zone: str,
                max_code_bytes: int, expires_s: float, version: int | None = None) -> ListPush:
        check_name(name)
        old = self.store.info(name)
        if old is not None and old.hash_key != (hash_key_id(hash_key) if hash_key else None):
            old = None  # hashed with another key (or not at all): only a snapshot can follow
        kept = self.folder / "previous"
        shutil.rmtree(kept, ignore_errors=True)
        if old is not None:  # the import removes the old files; the diff reads them
            kept.mkdir(parents=True)
            for path in self.store.files(name):
                os.link(path, kept / path.name)
        try:
            with open(csv_path, "rb") as fh:
                info = self.store.import_csv(name, fh, zone=zone, max_code_bytes=max_code_bytes,
                                             source=Path(csv_path).name, hash_key=hash_key, version=version)
            key_len = listwire.key_len(info.hash_key)
            chunks = list(snapshot_chunks(self.store, name, key_len))
            hashes = [hashlib.sha256(c).hexdigest() for c in chunks]
            content = hashlib.sha256("".join(hashes).encode()).hexdigest()
            common: dict[str, Any] = dict(kind="list", target=target, version=info.version, name=name,
                                          count=info.count, content_sha256=content, hash_key=info.hash_key)
            _, manifest = signed(key, expires_s=expires_s, list_kind="snapshot", chunks=hashes, **common)
            delta = None
            if old is not None and old.file:  # a list kept before has its file; without one, no delta
                added, changed, removals = diff(file_rows(kept / old.file), self.store.entries(name))
                if len(added) + len(changed) + len(removals) <= listwire.MAX_RECORDS:
                    body = listwire.encode(added, key_len=key_len, changed=changed, removals=removals)
                    if len(body) < MAX_BUNDLE - 4096:
                        _, delta = signed(key, body=body, expires_s=expires_s, list_kind="delta",
                                          base=old.version, **common)
        finally:
            shutil.rmtree(kept, ignore_errors=True)
        return ListPush(info, manifest, chunks, delta, old.version if old else None)

    def publish(self, publisher, prefix: str, target: str, push: ListPush) -> None:
        """Chunks first, then the delta, then the manifest that names the chunks (a device on the delta's
        base has applied it by then, and fetches no chunk); then clear what no device needs any more (the
        previous snapshot's chunks, deltas beyond KEEP_DELTAS)."""
        name, version = push.info.name, push.info.version
        base = f"{prefix}/{target_topic(target)}/lists/{name}"
        for index, chunk in enumerate(push.chunks):
            publisher.publish(f"{base}/chunks/{version}/{index}", chunk)
        if push.delta is not None:
            publisher.publish(f"{base}/delta/{push.base}", push.delta)
        publisher.publish(f"{base}/snapshot", push.manifest)
        published = self.published()
        record = published.get(name, {"deltas": []})
        if record.get("snapshot"):
            for index in range(record["chunks"]):
                publisher.publish(f"{base}/chunks/{record['snapshot']}/{index}", b"")
        deltas = record["deltas"] + ([push.base] if push.delta is not None else [])
        for old in deltas[:-KEEP_DELTAS]:
            publisher.publish(f"{base}/delta/{old}", b"")
        published[name] = {"snapshot": version, "chunks": len(push.chunks), "deltas": deltas[-KEEP_DELTAS:]}
        write_json(self.published_path, published)



# The broker's CONNACK reason codes an administrator can act on, in their words (MQTT 5 and 3.1.1).
REFUSALS = {0x86: "bad user name or password", 0x87: "not authorised", 0x8C: "bad authentication method",
            0x85: "client id not valid", 0x8A: "this client is banned", 0x88: "the broker is unavailable",
            0x89: "the broker is busy", 0x95: "packet too large", 0x97: "quota exceeded"}


class Publisher:
    """Retained QoS 1 publishes, each waited for until the broker acknowledged it."""

    def __init__(self, client, host: str, port: int, timeout: float = 60.0):
        self.client, self.timeout = client, timeout
        self.codes: dict[int, tuple[int, str]] = {}
        self._answer: list = []
        self._answered = threading.Event()
        client.on_publish = lambda c, u, mid, rc, props: self.codes.__setitem__(mid, (rc.value, str(rc)))
        client.on_connect = self._on_connect
        client.on_disconnect = lambda *_: self._answered.set()  # closed before any answer
        client.max_inflight_messages_set(20)
        client.connect(host, port, keepalive=30)
        client.loop_start()
        # Wait for the CONNACK: a refused connection is said as such, not as "not currently connected"
        # at the first publish.
        if not self._answered.wait(timeout) or not self._answer or self._answer[0].is_failure:
            self.close()
            if not self._answer:
                raise BrokerError(f"the broker {host}:{port} closed the connection or did not answer within "
                                  f"{timeout:.0f} s")
            code = self._answer[0]
            hint = " (check --username and --password-file)" if code.value in (0x86, 0x87) else ""
            raise BrokerError(f"the broker refused the connection: {REFUSALS.get(code.value, str(code).lower())}{hint}")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not self._answered.is_set():
            self._answer.append(reason_code)
            self._answered.set()

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=True)
        try:
            info.wait_for_publish(self.timeout)
        except RuntimeError as exc:  # paho: the connection dropped, or the message could not be queued
            raise BrokerError(f"the broker connection failed publishing {topic}: {exc}") from None
        if not info.is_published():
            raise BrokerError(f"broker did not acknowledge {topic} within {self.timeout:.0f} s")
        code, reason = self.codes.pop(info.mid, (0, ""))
        if info.rc or code >= 0x80:
            raise BrokerError(f"the broker refused {topic}: {reason or info.rc}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
