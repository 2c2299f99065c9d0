"""The daemon's lifecycle: run the pipeline built from settings (edge/app/parts.py), reload on SIGHUP, stop
on SIGTERM, watch its health and tell systemd.
"""
from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from edge.app.errors import StartError
from edge.app.health import MISSING_LIST, problems
from edge.app.notify import Notifier
from edge.app.parts import Parts, build, close, start_agent, take_snapshot
from edge.app.pipeline import Scan
from edge.common.clock import mono_ns, wall_ms
from edge.common.statefile import write_json
from edge.common.textsafe import for_log
from edge.settings.layers import load_settings
from edge.settings.schema import ConfigError, Settings
from edge.ui.link import UILink

log = logging.getLogger("checkpoint.daemon")

PURGE_EVERY_S = 3600.0
STATUS_EVERY_S = 30.0  # status.json: on every change, else this often (an SD card wears)
RETRY_EVERY_S = 1.0
STEP_S = 0.2     # the longest the loop waits for the source before its own chores
UI_STEP_S = 0.05  # with the screens on: an officer's action waits at most this long for the pipeline's thread
FILES_EVERY_S = 5.0  # how often to look for the database's files deleted under the daemon
# Files the daemon creates (databases, held entries, status.json, lists) hold personal data: never for
# everyone, whatever umask the daemon was started with (0022 from a shell).
UMASK = 0o027
# A thread that waits for the GIL gets it after at most this long. Python's 5 ms default let the receiver's
# decoding of a pushed list delay each lookup by that much at every one of the lookup's own waits for it.
GIL_SWITCH_S = 0.001


class Daemon:
    def __init__(self, config_path: str | Path, settings: Settings, *,
                 on_scan: Callable[[Scan], None] | None = None):
        self.config_path = Path(config_path)
        self.ui = UILink()
        self._agent_paused = False  # sync stopped while a deleted database file is recovered
        self._also_on_scan = on_scan
        self.parts: Parts = build(settings, on_scan=self.on_scan, config_path=self.config_path,
                                  on_config=self.request_reload)
        self.notifier = Notifier()
        self._stop = False
        self._reload = False
        self._blocking: list[str] = []
        self._degraded: list[str] = []
        self._missing: list[str] = []
        self._last_ping = 0.0
        self._status_written = 0.0

    def on_scan(self, scan: Scan) -> None:
        if self.ui.active:
            self.ui.on_scan(scan)  # one bounded queue put: a browser never delays the gate
        if self._also_on_scan is not None:
            self._also_on_scan(scan)

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self._stop = True

    def request_reload(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self._reload = True

    def reload(self) -> None:
        self._reload = False
        try:
            settings = load_settings(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            return
        except Exception as exc:  # noqa: BLE001 - no config file, however broken, may stop the gate
            log.error("reload refused, keeping the running config: %s cannot be loaded (%s: %s)",
                      self.config_path, type(exc).__name__, for_log(exc))
            return
        try:
            self.parts = build(settings, self.parts, on_scan=self.on_scan, config_path=self.config_path,
                               on_config=self.request_reload)
        except StartError as exc:
            log.error("reload failed: %s; restarting with the previous config", exc)
            self.parts = build(self.parts.settings, self.parts, on_scan=self.on_scan, config_path=self.config_path,
                               on_config=self.request_reload)
            self.ui.apply(self.parts)
            return
        if self.ui.apply(self.parts):  # restarted only when [ui] (or the device's name or zone) changed
            self.health(force=True)  # status.json gives the new address at once
        log.info("config reloaded (version %s)", settings.version)

    def purge(self) -> None:
        days = self.parts.settings.store.retention_days
        removed = self.parts.store.purge(wall_ms() - days * 86_400_000,
                                         synced_only=self.parts.settings.sync.enabled)
        if removed:
            log.info("purged %d entries older than %d days", removed, days)

    def health(self, force: bool = False) -> None:
        """Refresh the snapshot and the problems; log each change of state once, at its level."""
        parts = self.parts
        parts.pipeline.clock.check(wall_ms(), mono_ns())  # a clock is judged while no one scans too
        credentials = parts.pipeline.policy.credentials
        if credentials is not None:
            credentials.refresh()  # a trust list imported or pushed since: one stat when nothing changed
        parts.snapshot = take_snapshot(parts)
        blocking, degraded = problems(parts)
        if credentials is not None:
            degraded = degraded + credentials.problems(wall_ms())
        for problem in blocking:
            if problem not in self._blocking:
                log.error("UNHEALTHY: %s; watchdog pings withheld", problem)
        for problem in degraded:
            if problem not in self._degraded and not problem.startswith(MISSING_LIST):
                log.warning("degraded: %s", problem)
        missing = parts.snapshot.get("missing_lists") or []
        for name in missing:  # once when it goes missing, not at every scan it affects
            if name not in self._missing:
                log.error("LIST MISSING: %s is named in [decision] lists but not on this device; scans "
                          "that need it cannot be listed", for_log(name))
        for name in self._missing:
            if name not in missing:
                log.info("list %s is on this device again", for_log(name))
        self._missing = list(missing)
        if (self._blocking or self._degraded) and not (blocking or degraded):
            log.info("healthy again")
        changed = force or blocking != self._blocking or degraded != self._degraded
        parts.problems = blocking + degraded
        parts.snapshot["problems"] = parts.problems
        parts.snapshot["officer_audit"] = self.ui.audit()  # reaches the hub in the retained status
        if changed:
            self._blocking, self._degraded = blocking, degraded
            self.notifier.status(self._status_line())
            if parts.agent is not None:
                parts.agent.status_changed()  # the fleet sees a new problem in a second, not a status interval
        self.ui.update_status(parts.snapshot, parts.agent)
        if changed or time.monotonic() - self._status_written > STATUS_EVERY_S:
            self._write_status()

    def check_files(self) -> None:
        """The entry database's files deleted under the daemon: checkpoint and reopen, loudly."""
        parts = self.parts
        lost = parts.store.lost_files()
        if not lost:
            return
        agent = parts.agent
        if agent is not None:  # its own connections hold the deleted files too: closed before the store reopens
            agent.stop()
            parts.agent = None
            self._agent_paused = parts.settings.sync.enabled
        parts.store.recover_files(lost)
        # Not while recovery waits for a reader: the agent's read-write connection would make a new -wal beside
        # the old -shm, which is the corruption the recovery avoids. It comes back once the store has reopened.
        if self._agent_paused and not parts.store.recovery_pending:
            parts.agent = start_agent(parts.settings, parts, self.config_path, self.request_reload)
            self._agent_paused = False
        self.health(force=True)

    def _write_status(self) -> None:
        """status.json beside the database, for `checkpoint status` (written, then renamed into place)."""
        self._status_written = time.monotonic()
        path = self.parts.settings.store.entries_path.parent / "status.json"
        ui = self.ui.info()
        write_json(path, {**self.parts.snapshot, "pid": os.getpid(), "written_ms": wall_ms(),
                          **({"ui": ui} if ui is not None else {})})

    def ping(self) -> None:
        """WATCHDOG=1, a few times per watchdog period, only while nothing blocks the pipeline."""
        period = self.notifier.watchdog_s
        if not period or self._blocking:
            return
        now = time.monotonic()
        if now - self._last_ping >= period / 3:
            self._last_ping = now
            self.notifier.watchdog()

    def _status_line(self) -> str:
        parts = self.parts
        state = "; ".join(parts.problems) if parts.problems else "healthy"
        return f"{parts.pipeline.scans} scans, {parts.source.name}, clock {parts.pipeline.clock.state}: {state}"

    def run(self) -> int:
        settings = self.parts.settings
        log.info("checkpoint running: device=%s source=%s mode=%s config=%s", settings.device.id,
                 self.parts.source.name, settings.decision.mode, settings.version)
        self.purge()
        self.ui.apply(self.parts)
        self.health(force=True)
        self.notifier.ready(self._status_line())
        next_purge = time.monotonic() + PURGE_EVERY_S
        next_retry = time.monotonic() + RETRY_EVERY_S
        next_files = time.monotonic() + FILES_EVERY_S
        try:
            while not self._stop:
                if self._reload:
                    self.reload()
                self.parts.pipeline.step(UI_STEP_S if self.ui.active else STEP_S)
                if self.ui.active:
                    self.ui.serve_requests()
                if self.parts.source.finished:
                    log.info("source %s finished", self.parts.source.name)
                    self.parts.signaller.wait_idle(30)
                    break
                now = time.monotonic()
                if now >= next_retry:
                    self.parts.lists.release_old_snapshot()  # an idle gate holds no list snapshot for long
                    self.parts.store.retry()
                    self.health()
                    next_retry = now + RETRY_EVERY_S
                if now >= next_files:
                    self.check_files()
                    next_files = now + FILES_EVERY_S
                self.ping()
                if now >= next_purge:
                    self.purge()
                    next_purge = now + PURGE_EVERY_S
        finally:
            self.notifier.stopping()
            self.ui.stop()
            self.parts.snapshot.update(state="stopped", scans=self.parts.pipeline.scans)
            self._write_status()
            stats, pipeline = self.parts.source.stats, self.parts.pipeline
            close(self.parts)
        log.info("checkpoint stopped: %d frames decoded, %d stale frames dropped, %d scans",
                 pipeline.frames, stats.dropped, pipeline.scans)
        return 0


def run_daemon(config_path: str | Path) -> int:
    """`checkpoint run`: exit 0 on a clean stop, 2 on a bad config, 1 when the hardware cannot start."""
    os.umask(UMASK)
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        log.error("config error: %s", exc)
        return 2
    except Exception as exc:  # noqa: BLE001 - one clear line, not a traceback, for any unloadable file
        log.error("config error: %s cannot be loaded (%s: %s)", config_path, type(exc).__name__, for_log(exc))
        return 2
    configure_logging(settings.log.level)
    sys.setswitchinterval(GIL_SWITCH_S)
    try:
        daemon = Daemon(config_path, settings)
    except StartError as exc:
        log.error("cannot start: %s", exc)
        return 1
    # What start-up built lives as long as the daemon: out of the cycle collector's sight, a full collection
    # no longer walks it (10 ms here, with the GIL held, each time one comes due).
    gc.freeze()
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)
    signal.signal(signal.SIGHUP, daemon.request_reload)
    return daemon.run()


class JournalFormatter(logging.Formatter):
    """'<N>' before each line: journald reads it as the syslog priority (and adds its own timestamp)."""

    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        priority = self.PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler()
    if os.environ.get("JOURNAL_STREAM"):  # systemd connected stderr to the journal
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(handlers=[handler], level=getattr(logging, level.upper()), force=True)
