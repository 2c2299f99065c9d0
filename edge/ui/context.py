"""What the screens may ask of the daemon, and nothing more: the one seam between edge/ui and the pipeline.

The daemon (edge/app/daemon.py) builds this; the web server (edge/ui/server.py) and the pages only call it. Callables
run on the web server's thread: each must be safe there (submit and review hand their work to the pipeline's
thread and wait for its answer; they never touch the pipeline's objects directly). submit and review block for
up to a few seconds: call them from a worker thread (starlette.concurrency.run_in_threadpool), never straight
from an async endpoint. They raise ActionRefused (edge/ui/errors.py) when the work cannot be done.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.settings.schema import UISettings
from edge.ui.errors import ActionRefused as ActionRefused  # re-exported: what submit and review raise

if TYPE_CHECKING:
    from edge.ui.events import EventHub

Event = dict[str, Any]  # a scan event, a store row or the status: JSON-shaped


@dataclass(frozen=True)
class UIContext:
    settings: UISettings
    device_id: str
    timezone: str                             # the device's zone: every time shown is in it
    events: EventHub                          # edge/ui/events.py: scans as they are committed
    recent: Callable[[int], list[Event]]      # the newest N entries (store rows as dicts), newest first
    status: Callable[[], Event]               # the daemon's status snapshot (what status.json holds)
    submit: Callable[[str, str], Event]       # (code, officer) -> the manual entry's scan event (source "manual")
    review: Callable[[str, str, str], Event]  # (entry id, "allow"|"deny", officer) -> the answer's scan event
    data_dir: Path | None = None              # beside the database: the officer page's session key lives here
