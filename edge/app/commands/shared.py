"""What the commands share: the config loaded, the lists and entries opened, the daemon's state files read."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from edge.app.errors import CommandFailed
from edge.common.clock import wall_ms
from edge.common.textsafe import for_log
from edge.entries.store import EntryReader, StoreError
from edge.lists import ListError, ListStore
from edge.settings.layers import load_settings
from edge.settings.schema import ConfigError, Settings

# A lists database that cannot be read: edge.lists translates SQLite's errors into ListError at its boundary.
LISTS_UNREADABLE = (ListError,)


def settings_of(args: argparse.Namespace) -> Settings:
    return load(args.config)


def load(path: str | Path) -> Settings:
    """load_settings, with whatever it did not foresee turned into a ConfigError: a config that cannot be
    loaded, for any reason, is exit 2 and one line."""
    try:
        return load_settings(path)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a pushed layer nested past the stack's depth
        raise ConfigError(f"{path}: cannot be loaded ({type(exc).__name__}: {for_log(exc, 120)})") from None


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def open_lists(settings: Settings, readonly: bool = False) -> ListStore:
    path = settings.store.lists_path
    if readonly and not path.exists():
        return ListStore(":memory:")  # no list imported yet: an empty view, and nothing created on disk
    try:
        return ListStore(path, readonly=readonly)
    except LISTS_UNREADABLE as exc:
        raise CommandFailed(f"lists database {path}: {exc}") from None


def open_reader(settings: Settings) -> EntryReader:
    try:
        return EntryReader(settings.store.entries_path)
    except StoreError as exc:
        raise CommandFailed(str(exc)) from None


def daemon_state(settings: Settings) -> dict[str, Any] | None:
    """What the running daemon last wrote to status.json: source, clock, list ages, disk, problems."""
    path = settings.store.entries_path.parent / "status.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(state, dict):
        return None
    written = state.get("written_ms")
    state["age_s"] = (wall_ms() - written) / 1000 if isinstance(written, int) else float("nan")
    return state


def sync_state(settings: Settings) -> dict[str, Any] | None:
    """What the running daemon's sync agent last wrote, with the outbox as the database says now."""
    if not settings.sync.enabled:
        return None
    path = settings.store.entries_path.parent / "sync.json"
    state: dict[str, Any]
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        state = {"connection": "not running", "broker": f"{settings.sync.host}:{settings.sync.port}"}
    try:
        state["outbox"] = EntryReader(settings.store.entries_path).outbox()
    except StoreError as exc:
        state["outbox"] = {"error": str(exc)}
    return state


def daemon_clock(settings: Settings) -> str | None:
    """The clock state a running daemon reported: it alone can have seen the clock jump back."""
    state = daemon_state(settings)
    if not state or state.get("state") != "running" or not isinstance(state.get("clock"), dict):
        return None
    pid = state.get("pid")
    if not isinstance(pid, int) or pid <= 0:  # 0 or less would name a process group, not the daemon
        return None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return None  # not running any more: what it saw has gone with it
    except PermissionError:
        pass  # running as another user
    reported = state["clock"].get("state")
    return reported if isinstance(reported, str) else None


def db_size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
