"""What the screens may ask of the daemon, and nothing more: the one seam between edge/ui and the pipeline.

The daemon (edge/app/daemon.py) builds this; the web server (edge/ui/server.py) and the pages only call it. Callables
run on the web server's thread: each must be safe there (submit and review hand their work to the pipeline's
thread and wait for its answer; they never touch the pipeline's objects directly). submit and review block for
up to a few seconds: call them from a worker thread (starlette.concurrency.run_in_threadpool), never straight
from an async endpoint. They raise ActionRefused (below) when the work cannot be done.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge.settings.schema import UISettings

if TYPE_CHECKING:
    from edge.ui.events import EventHub


@dataclass(frozen=True)
class UIContext:
    settings: UISettings
    device_id: str
    timezone: str                                   # the device's zone: every time shown is in it
    events: EventHub                              # edge/ui/events.py: scans as they are committed
    recent: Callable[[int], list[dict]]             # the newest N entries (store rows as dicts), newest first
    status: Callable[[], dict]                      # the daemon's status snapshot (what status.json holds)
    submit: Callable[[str, str], dict]              # (code, officer) -> the manual entry's scan event (source "manual")
    review: Callable[[str, str, str], dict]         # (entry id, "allow"|"deny", officer) -> the answer's scan event
    data_dir: Path | None = None                    # beside the database: the officer page's session key lives here


class ActionRefused(Exception):
    """submit or review cannot be done; reason is a key the officer page puts in words:
    "empty" (no code), "bad-answer", "not-found", "not-review" (the entry is not a review decision),
    "answered" (an answer is already recorded), "expired" (older than [ui] review_expiry_s),
    "busy" (the pipeline did not answer in time), "stopping", "store" (the entry database is unavailable)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail
