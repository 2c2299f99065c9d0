"""source → decoder → debounce → policy → store (commit) → signals, one item at a time."""
from __future__ import annotations

import hashlib
import logging
import sqlite3
from dataclasses import dataclass, replace
from typing import Callable

from drivers.sources import Frame, Source

from .clock import boot_id, mono_ns, wall_ms
from .clocktrust import ClockTrust
from .debounce import Debouncer
from .decode import Decoder
from .model import Code, Decision, Outcome, Reason
from .payload import code_from_bytes, examine, printable
from .policy import Policy
from .signals import Signaller
from .store import Entry, EntryStore

log = logging.getLogger("checkpoint.decision")


@dataclass(frozen=True, slots=True)
class Scan:
    """What the pipeline did with one code: the committed (or held) entry and the signalled decision."""

    entry: Entry
    decision: Decision
    committed: bool
    arrived_ns: int
    signalled_ns: int


class Pipeline:
    def __init__(self, *, source: Source, decoder: Decoder, debouncer: Debouncer, policy: Policy,
                 store: EntryStore, signaller: Signaller, device_id: str, config_version: str | None,
                 max_payload_bytes: int, log_codes: bool = False, clock: ClockTrust | None = None,
                 on_scan: Callable[[Scan], None] | None = None):
        self.source, self.decoder, self.debouncer = source, decoder, debouncer
        self.policy, self.store, self.signaller = policy, store, signaller
        self.device_id, self.config_version = device_id, config_version
        self.max_payload_bytes, self.log_codes = max_payload_bytes, log_codes
        self.on_scan = on_scan
        self.clock = clock or ClockTrust()
        self.frames = 0
        self.scans = 0

    def step(self, timeout: float) -> list[Scan]:
        """Handle whatever the source gives within timeout; [] when it gave nothing new."""
        item = self.source.get(timeout)
        if item is None:
            return []
        if isinstance(item, Frame):
            self.frames += 1
            codes = self.decoder.decode(item.image)
        else:
            codes = [code_from_bytes(item.data)]
        return [self.handle(code, item.t_ns) for code in codes if self.debouncer.fresh(code.data, item.t_ns)]

    def handle(self, code: Code, arrived_ns: int) -> Scan:
        text, malformed = examine(code, self.max_payload_bytes)
        now_ms, now_ns = wall_ms(), mono_ns()
        clock = self.clock.check(now_ms, now_ns)
        try:
            decision = self.policy.decide(text, malformed=malformed, now_ms=now_ms, now_mono_ns=now_ns,
                                          clock_trusted=self.clock.trusted(clock))
        except sqlite3.Error as exc:
            log.error("LISTS UNREADABLE (%s): deciding store-failure", exc)
            decision = Decision(Outcome.DENY, Reason.STORE_FAILURE)
        entry = Entry(Entry.new_id(), self.device_id, now_ms, now_ns, boot_id(), self.source.name, text,
                      decision.outcome.value, decision.reason.value, decision.list_name, decision.list_version,
                      self.config_version, clock)
        committed = decision.reason is not Reason.STORE_FAILURE and self.store.record(entry)
        if not committed:
            # Durability before signal: what cannot be recorded does not open the gate.
            decision = Decision(Outcome.DENY, Reason.STORE_FAILURE)
            entry = replace(entry, decision=decision.outcome.value, reason=decision.reason.value)
            self.store.hold(entry)
        self.signaller.signal(decision.outcome)
        scan = Scan(entry, decision, committed, arrived_ns, mono_ns())
        self.scans += 1
        self._log(scan, text)
        if self.on_scan is not None:
            self.on_scan(scan)
        return scan

    def _log(self, scan: Scan, text: str) -> None:
        decision = scan.decision
        # Codes are personal data: only a short hash unless configured; never raw line breaks in the log.
        shown = (printable(text) if self.log_codes
                 else "#" + hashlib.sha256(text.encode()).hexdigest()[:10])
        where = f" list={decision.list_name}@{decision.list_version}" if decision.list_name else ""
        label = f" label={decision.label!r}" if decision.label and self.log_codes else ""
        level = logging.INFO if scan.committed else logging.ERROR
        log.log(level, "%-6s %-13s code=%s%s%s", decision.outcome.value.upper(), decision.reason.value,
                shown, where, label)
