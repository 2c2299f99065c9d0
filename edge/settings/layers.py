"""Pushed configuration over the local file: layers (all, the device's groups, the device) merged in order.

The receiver (sync/device/remote.py) keeps the accepted layers in remote.json beside the database; every load of
the settings (start, SIGHUP, `checkpoint config check`) applies them over the local file here.
"""
from __future__ import annotations

import base64
import hashlib
import logging
from pathlib import Path
from typing import Any

from edge.common.statefile import StateFileError, read_json
from edge.common.textsafe import for_log
from edge.settings.schema import ConfigError, Settings, parse_settings, read_config

log = logging.getLogger("checkpoint.config")

# One pushed layer as remote.json keeps it: {"target", "version", "merge", "settings", "key"}, its shape
# checked by check_state before use.
Layer = dict[str, Any]

# What a pushed configuration may set. The device's identity, its store, its broker connection and the
# keys it trusts stay in the local file: a bundle that could change them could cut the device off.
REMOTE_SECTIONS = ("version", "source", "decoder", "decision", "outputs", "signals", "clock", "log", "credentials")


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(
            merged.get(key), dict) else value
    return merged


def apply_layers(raw: dict[str, Any], layers: list[Layer]) -> dict[str, Any]:
    """Layers (each {"target", "version", "merge", "settings"}), least specific first, over the local
    file: 'override' merges table by table; 'full' replaces every pushable section."""
    local_version = raw.get("version")
    for layer in layers:
        override = layer["settings"]
        unknown = sorted(set(override) - set(REMOTE_SECTIONS))
        if unknown:
            raise ConfigError(f"{layer['target']} v{layer['version']}: a pushed config may not set "
                              f"{', '.join(unknown)} (only {', '.join(REMOTE_SECTIONS)})")
        if layer["merge"] == "full":
            raw = {k: v for k, v in raw.items() if k not in REMOTE_SECTIONS} | override
        else:
            raw = _deep_merge(raw, override)
    if layers:
        base = raw.get("version", local_version)
        raw = {**raw, "version": f"{base or 'local'}+" + "+".join(f"{l['target']}.{l['version']}" for l in layers)}
    return raw


def check_state(state: dict[str, Any], origin: str) -> dict[str, Any]:
    """remote.json's shape, checked before anything trusts it: a file that is not what the receiver wrote
    (damaged, edited by hand, cut short) is refused whole, never half used."""
    def bad(what: str) -> ConfigError:
        return ConfigError(f"{origin}: not a remote state file ({what})")

    def is_int(value: object) -> bool:
        return type(value) is int and 0 <= value <= 2**53

    layers = state.get("config_layers", [])
    if not isinstance(layers, list):
        raise bad("config_layers is not a list")
    seen = set()
    for layer in layers:
        if not (isinstance(layer, dict) and isinstance(layer.get("target"), str) and is_int(layer.get("version"))
                and layer.get("merge") in ("override", "full") and isinstance(layer.get("settings"), dict)
                and isinstance(layer.get("key", ""), str)):
            raise bad("a config layer without target, version, merge and settings")
        if layer["target"] in seen:
            raise bad(f"two layers for {for_log(layer['target'], 80)}")
        seen.add(layer["target"])
    applied = state.get("applied_config", {})
    if not (isinstance(applied, dict) and all(
            isinstance(a, dict) and is_int(a.get("version")) and isinstance(a.get("digest"), str)
            and isinstance(a.get("key", ""), str) and isinstance(a.get("versions", {}), dict)
            and all(isinstance(k, str) and is_int(v) for k, v in a.get("versions", {}).items())
            for a in applied.values())):
        raise bad("applied_config is not a table of versions and digests")
    lists = state.get("lists", {})
    if not (isinstance(lists, dict) and all(
            isinstance(l, dict) and is_int(l.get("version")) and isinstance(l.get("signers"), list)
            and all(isinstance(k, str) for k in l["signers"]) and isinstance(l.get("digest", ""), str)
            for l in lists.values())):
        raise bad("lists is not a table of versions and signers")
    return state


def read_remote_state(store_dir: str | Path) -> dict[str, Any]:
    """remote.json in the store ({} when there is none yet); ConfigError when it exists but cannot be used."""
    path = Path(store_dir) / "remote.json"
    try:
        state = read_json(path)
    except StateFileError as exc:
        raise ConfigError(for_log(str(exc), 400)) from None
    return {} if state is None else check_state(state, for_log(str(path), 300))


def remote_layers(store_dir: str | Path) -> list[Layer]:
    """The accepted configuration layers, as the sync receiver saved them (remote.json in the store),
    whether or not they are still in force (see layers_in_force)."""
    layers: list[Layer] = read_remote_state(store_dir).get("config_layers", [])
    return layers


def signer_id(text: str) -> str:
    """The key id of an "ed25519:<base64>" public key, as sync.wire.bundle.key_id computes it (without the
    cryptography library: the core loads settings on any machine)."""
    raw = base64.b64decode(text.partition(":")[2])
    return hashlib.sha256(raw).hexdigest()[:16]


def device_targets(device_id: str, groups: list[str]) -> list[str]:
    """The targets a device answers to, least specific first: the order its layers apply in."""
    return ["all", *(f"group:{g}" for g in groups), f"device:{device_id}"]


def layers_in_force(layers: list[Layer], targets: list[str],
                    trusted: set[str]) -> tuple[list[Layer], list[tuple[int, str]]]:
    """(layers that apply, in the targets' order; [(level, why), ...] for each left out).

    Only the layers of targets the device answers to now, signed by a key it trusts now: a device moved out
    of a group stops applying that group's layer, and a key rotated out stops what it signed. A layer saved
    before signers were recorded counts as of an unknown signer until its retained copy is verified again."""
    kept: list[Layer] = []
    left_out: list[tuple[int, str]] = []
    for layer in layers:
        name = f"{for_log(layer['target'], 80)} v{layer['version']}"
        if layer["target"] not in targets:
            left_out.append((logging.WARNING, f"pushed config {name} left out: this device no longer answers "
                                              f"to {for_log(layer['target'], 80)}"))
        elif not layer.get("key"):
            left_out.append((logging.ERROR, f"pushed config {name} left out: its signer is not recorded "
                                            "(saved by an older version); it applies again once its retained "
                                            "copy is verified"))
        elif layer["key"] not in trusted:
            left_out.append((logging.ERROR, f"pushed config {name} left out: signer key "
                                            f"{for_log(layer['key'], 20)} no longer trusted"))
        else:
            kept.append(layer)
    kept.sort(key=lambda l: targets.index(l["target"]))
    return kept, left_out


def settings_with_layers(raw: dict[str, Any], data: bytes, layers: list[Layer], origin: str) -> Settings:
    if raw.get("version") is None:
        raw = {**raw, "version": "sha256:" + hashlib.sha256(data).hexdigest()[:12]}
    merged = apply_layers(raw, layers)
    return parse_settings(merged, origin + (" with pushed config " + ", ".join(
        f"{l['target']} v{l['version']}" for l in layers) if layers else ""))


def load_settings(path: str | Path, *, remote: bool = True) -> Settings:
    """Read, parse and validate a config file, with the pushed configuration layers over it when
    [remote] is enabled; the config version defaults to a hash of the file's bytes.

    Only the layers in force apply (layers_in_force), each left out said in the log. Pushed layers that
    no longer fit the local file (it was edited since), or an unreadable remote.json, leave all of them
    out, loudly: the device runs on its local file rather than not at all."""
    raw, data = read_config(path)
    local = settings_with_layers(raw, data, [], str(path))
    if not (remote and local.remote.enabled):
        return local
    shown = for_log(str(path), 300)
    try:
        layers, left_out = layers_in_force(remote_layers(local.store.dir),
                                           device_targets(local.device.id, local.remote.groups),
                                           {signer_id(k) for k in local.remote.trusted_keys})
        for level, why in left_out:
            log.log(level, "%s", why)
        return settings_with_layers(raw, data, layers, str(path)) if layers else local
    except ConfigError as exc:
        log.error("PUSHED CONFIG LEFT OUT: %s; running on %s alone until an administrator acts", exc, shown)
        return local
