"""Pushed configuration: a layer per target (all, group:<G>, device:<D>), checked whole before it is kept.

A layer is applied only when the config it makes, over the local file and the other layers, validates; the
daemon reloads through on_config. Layers of a group the device left, or signed by a key no longer trusted,
stay stored but are left out at every load (edge.settings.layers.layers_in_force).
"""
from __future__ import annotations

import logging
from typing import Any

from edge.common.clock import wall_ms
from edge.settings.layers import layers_in_force, settings_with_layers
from edge.settings.schema import ConfigError, parse_toml, read_config
from sync.device.receiverbase import ReceiverBase
from sync.wire.bundle import Bundle
from sync.wire.errors import BundleError

log = logging.getLogger("checkpoint.remote")


class ConfigApplier(ReceiverBase):
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

    def _config_floor(self, applied: dict[str, Any] | None) -> int:
        """The version a new bundle for a target must pass: the newest that a key trusted now signed. A key
        rotated out (perhaps stolen) cannot lock a target by having signed version 2**53."""
        if not applied:
            return 0
        versions = applied.get("versions")
        if not versions:
            return int(applied["version"])  # saved by an older version: its signer unknown, its version kept
        return max((v for k, v in versions.items() if k in self.trusted.keys), default=0)
