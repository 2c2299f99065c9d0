"""What is wrong with the appliance right now, said in words an administrator can act on.

`blocking` problems stop the systemd watchdog pings (a live source that delivers nothing, a database
that takes no entry): systemd then restarts the daemon. The others are degraded states, warned about.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from edge.common.clock import mono_ns

if TYPE_CHECKING:
    from edge.app.parts import Parts

MISSING_LIST = "missing list: "  # the daemon logs these at ERROR: a scan may be denied for it


def problems(parts: Parts) -> tuple[list[str], list[str]]:
    """(blocking problems, degraded states) of a running pipeline, with its fresh snapshot."""
    blocking, degraded = [], []
    now = mono_ns()
    if parts.source is not None and (problem := parts.source.problem(now)):
        blocking.append(problem)
    store = parts.store
    if store is not None and not store.healthy:
        blocking.append(f"entry store failing: {store.error}")
    settings = parts.settings
    space = (parts.snapshot.get("store") or {}).get("disk") or {"error": "not measured"}
    if "error" not in space and (space["free_mb"] < settings.store.disk_warn_mb
                                 or space["free_percent"] < settings.store.disk_warn_percent):
        degraded.append(f"disk nearly full: {space['free_mb']} MiB ({space['free_percent']} %) free")
    clock = parts.pipeline.clock
    if not clock.trusted():
        degraded.append(f"wall clock not trusted ({clock.state})")
    for name in parts.snapshot.get("missing_lists") or []:
        degraded.append(f"{MISSING_LIST}{name} is named in [decision] lists but not on this device "
                        "(import it or push it)")
    if store is not None and store.files_problem:
        degraded.append(f"entry database: {store.files_problem}")
    stale = parts.snapshot.get("stale_lists") or []
    if stale:
        degraded.append(f"stale lists: {', '.join(stale)} (policy {settings.decision.stale_lists})")
    agent = parts.agent
    if agent is not None and agent.state.get("last_error"):
        degraded.append(f"sync: {agent.state['last_error']}")
    receiver = getattr(agent, "receiver", None)
    if receiver is not None:
        degraded += list(receiver.problems)  # replaced whole by the receiver's thread: safe to read here
    return blocking, degraded
