"""source → decoder → debounce → policy → store (commit) → signals, one item at a time."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from drivers.sources import Frame, Source
from edge.app.logkey import KEY_BYTES, code_hash
from edge.app.signals import Signaller
from edge.common.clock import boot_id, mono_ns, wall_ms
from edge.common.model import Code, Decision, Outcome, Reason
from edge.common.payload import code_from_bytes, examine, printable
from edge.decode.debounce import Debouncer
from edge.decode.reader import Decoder
from edge.entries.store import Entry, EntryStore
from edge.rules.clocktrust import ClockTrust
from edge.rules.policy import Policy, judge

log = logging.getLogger("checkpoint.decision")


@dataclass(frozen=True, slots=True)
class Scan:
    """What the pipeline did with one code: the committed (or held) entry and the signalled decision."""

    entry: Entry
    decision: Decision
    committed: bool
    arrived_ns: int
    signalled_ns: int
    committed_ns: int = 0  # right after the commit (or the hold): the screens' latency is measured from it


class Pipeline:
    def __init__(self, *, source: Source, decoder: Decoder, debouncer: Debouncer, policy: Policy,
                 store: EntryStore, signaller: Signaller, device_id: str, config_version: str | None,
                 max_payload_bytes: int, log_codes: bool = False, clock: ClockTrust | None = None,
                 on_scan: Callable[[Scan], None] | None = None, log_key: bytes | None = None):
        """log_key: the device's secret for the code hashes in the log (edge.app.logkey); without one, a
        secret of this pipeline's own (hashes then match only within it)."""
        self.source, self.decoder, self.debouncer = source, decoder, debouncer
        self.policy, self.store, self.signaller = policy, store, signaller
        self.device_id, self.config_version = device_id, config_version
        self.max_payload_bytes, self.log_codes = max_payload_bytes, log_codes
        self.log_key = log_key or os.urandom(KEY_BYTES)
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

    def handle(self, code: Code, arrived_ns: int, *, source: str | None = None,
               officer: str | None = None) -> Scan:
        """Decide, commit, signal one code. source/officer: a code an officer typed (source "manual")."""
        text, malformed = examine(code, self.max_payload_bytes)
        now_ms, now_ns = wall_ms(), mono_ns()
        # One judgement shared with `checkpoint check`, so the two cannot answer differently.
        decision, clock = judge(self.policy, self.clock, text, malformed=malformed, now_ms=now_ms, now_mono_ns=now_ns)
        # A credential is recorded as its format and subject id: an EU certificate's payload is health data.
        entry = Entry(Entry.new_id(), self.device_id, now_ms, now_ns, boot_id(), source or self.source.name,
                      decision.record or text, decision.outcome.value, decision.reason.value, decision.list_name,
                      decision.list_version, self.config_version, clock, **({"officer": officer} if officer else {}))
        return self._commit(entry, decision, arrived_ns, entry.code)

    def answer(self, reviewed: dict[str, Any], outcome: Outcome, officer: str) -> Scan:
        """An officer's answer to a review: a new entry that references the reviewed one, committed and
        signalled as a scan is (Allow drives the gate)."""
        now_ms, now_ns = wall_ms(), mono_ns()
        decision = Decision(outcome, Reason.OFFICER, reviewed.get("list_name"), reviewed.get("list_version"))
        entry = Entry(Entry.new_id(), self.device_id, now_ms, now_ns, boot_id(), "review", reviewed["code"],
                      outcome.value, Reason.OFFICER.value, decision.list_name, decision.list_version,
                      self.config_version, self.clock.check(now_ms, now_ns), ref_id=reviewed["id"], officer=officer)
        return self._commit(entry, decision, mono_ns(), reviewed["code"])

    def _commit(self, entry: Entry, decision: Decision, arrived_ns: int, text: str) -> Scan:
        committed = decision.reason is not Reason.STORE_FAILURE and self.store.record(entry)
        if not committed:
            # Durability before signal: what cannot be recorded does not open the gate.
            decision = Decision(Outcome.DENY, Reason.STORE_FAILURE)
            entry = replace(entry, decision=decision.outcome.value, reason=decision.reason.value)
            self.store.hold(entry)
        committed_ns = mono_ns()
        self.signaller.signal(decision.outcome)
        scan = Scan(entry, decision, committed, arrived_ns, mono_ns(), committed_ns)
        self.scans += 1
        self._log(scan, text)
        if self.on_scan is not None:
            self.on_scan(scan)
        return scan

    def _log(self, scan: Scan, text: str) -> None:
        decision = scan.decision
        # Codes are personal data: only a keyed hash unless configured (a plain hash of a short code is
        # reversed by trying them all); never raw line breaks in the log.
        shown = printable(text) if self.log_codes else code_hash(self.log_key, text)
        where = f" list={decision.list_name}@{decision.list_version}" if decision.list_name else ""
        label = f" label={decision.label!r}" if decision.label and self.log_codes else ""
        level = logging.INFO if scan.committed else logging.ERROR
        reason = f"{decision.reason.value}({decision.rule})" if decision.rule else decision.reason.value
        log.log(level, "%-6s %-13s code=%s%s%s", decision.outcome.value.upper(), reason, shown, where, label)
