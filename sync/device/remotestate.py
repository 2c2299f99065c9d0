"""remote.json: what this device applied of pushed config, lists and trust lists, and who signed it.

It is what refuses replayed bundles, so it is written durably before anything is believed applied, and one
that cannot be read is never silently replaced: every bundle is refused until an administrator looks at it.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edge.common.textsafe import for_log
from edge.settings.layers import read_remote_state
from edge.settings.schema import ConfigError

log = logging.getLogger("checkpoint.remote")


def load_state(path: Path) -> tuple[dict[str, Any], str | None]:
    """(the state, why it is damaged or None). A damaged file gives an empty state, and is left as it is."""
    damaged = None
    try:
        state = read_remote_state(path.parent)
        check_trust_state(state, path)
    except ConfigError as exc:
        # The applied versions are what refuse a replayed bundle: forgetting them would let an old, once
        # valid bundle in again. The file is left as it is for the administrator to look at.
        damaged = str(exc)
        log.error("remote: REMOTE STATE UNREADABLE: %s; every pushed config and list is refused until "
                  "an administrator inspects %s, then removes or restores it", damaged, for_log(str(path), 300))
        state = {}
    state.setdefault("config_layers", [])
    state.setdefault("applied_config", {})
    state.setdefault("lists", {})
    state.setdefault("trust", {})
    state.setdefault("last_rejected", None)
    return state, damaged


def check_trust_state(state: dict[str, Any], path: Path) -> None:
    """remote.json's trust table (what refuses a replayed trust list), checked as layers.check_state
    checks the rest: a table not as the receiver wrote it is refused whole."""
    def is_int(value: object) -> bool:
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
