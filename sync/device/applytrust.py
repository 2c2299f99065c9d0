"""Pushed EU DCC trust lists: checked as `checkpoint trust import` checks a file, written whole as trust.json
(the daemon reads it again within seconds)."""
from __future__ import annotations

import logging

from edge.common.clock import wall_ms
from edge.common.textsafe import for_log
from edge.credentials import trustfile
from edge.credentials.trust import TrustListError
from sync.device.receiverbase import ReceiverBase
from sync.wire.bundle import Bundle
from sync.wire.errors import BundleError

log = logging.getLogger("checkpoint.remote")


class TrustApplier(ReceiverBase):
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
