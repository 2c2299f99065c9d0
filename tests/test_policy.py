"""The decision, against real lists and real recorded entries."""
from __future__ import annotations

import io

import pytest

from edge.clock import boot_id, mono_ns, parse_instant
from edge.config import DecisionSettings
from edge.lists import ListStore
from edge.policy import Policy
from edge.store import Entry, EntryStore

ZONE = "UTC"
LIST = """code,action,label,valid_from,valid_until
ok,allow,Someone,,
banned,deny,,,
both,allow,,,
old,allow,,2020-01-01,2020-12-31
future,allow,,2099-01-01,
old-ban,deny,,2020-01-01,2020-12-31
"""
NOW = parse_instant("2026-11-25T12:00:00", ZONE)


@pytest.fixture
def parts(tmp_path):
    lists = ListStore(tmp_path / "lists.db")
    lists.import_csv("main", io.BytesIO(LIST.encode()), zone=ZONE, max_code_bytes=64)
    lists.import_csv("bans", io.BytesIO(b"code,action\nboth,deny\n"), zone=ZONE, max_code_bytes=64)
    store = EntryStore(tmp_path / "entries.db")
    yield lists, store
    store.close()
    lists.close()


def decide(parts, code, malformed=False, now=NOW, **settings):
    lists, store = parts
    policy = Policy(DecisionSettings(**settings), lists, store.last_allowed)
    decision = policy.decide(code, malformed=malformed, now_ms=now, now_mono_ns=mono_ns())
    return decision.outcome.value, decision.reason.value


@pytest.mark.parametrize("code, allowlist, denylist, record", [
    ("ok", ("allow", "listed"), ("allow", "listed"), ("allow", "listed")),
    ("nobody", ("deny", "not-listed"), ("allow", "not-listed"), ("allow", "not-listed")),
    ("banned", ("deny", "deny-listed"), ("deny", "deny-listed"), ("allow", "deny-listed")),
    ("both", ("deny", "deny-listed"), ("deny", "deny-listed"), ("allow", "deny-listed")),
    ("old", ("deny", "expired"), ("allow", "expired"), ("allow", "expired")),
    ("future", ("deny", "not-yet-valid"), ("allow", "not-yet-valid"), ("allow", "not-yet-valid")),
    ("old-ban", ("deny", "expired"), ("allow", "expired"), ("allow", "expired")),
])
def test_modes(parts, code, allowlist, denylist, record):
    assert decide(parts, code, mode="allowlist") == allowlist
    assert decide(parts, code, mode="denylist") == denylist
    assert decide(parts, code, mode="record") == record


def test_malformed_and_overrides(parts):
    assert decide(parts, "x", malformed=True) == ("deny", "malformed")
    assert decide(parts, "x", malformed=True, mode="record") == ("allow", "malformed")
    assert decide(parts, "x", malformed=True, outcomes={"malformed": "review"}) == ("review", "malformed")
    assert decide(parts, "nobody", outcomes={"not-listed": "review"}) == ("review", "not-listed")


def test_only_the_configured_lists_count(parts):
    assert decide(parts, "both", lists=["main"]) == ("allow", "listed")
    assert decide(parts, "ok", lists=["bans"]) == ("deny", "not-listed")


def test_window_edges(parts):
    start, end = parse_instant("2020-01-01", ZONE), parse_instant("2021-01-01", ZONE)
    assert decide(parts, "old", now=start - 1) == ("deny", "not-yet-valid")
    assert decide(parts, "old", now=start) == ("allow", "listed")
    assert decide(parts, "old", now=end - 1) == ("allow", "listed")  # the whole of 31 December
    assert decide(parts, "old", now=end) == ("deny", "expired")


def _entry(code, decision, *, wall, mono, boot):
    return Entry(Entry.new_id(), "d", wall, mono, boot, "test", code, decision, "listed", None, None, None)


def test_repeat_within_window_same_boot_uses_monotonic_time(parts):
    lists, store = parts
    now_mono = mono_ns()
    # The wall clock says long ago (a clock jump), the monotonic clock says 10 s ago: still a repeat.
    store.record(_entry("ok", "allow", wall=NOW - 10**9, mono=now_mono - 10 * 10**9, boot=boot_id()))
    assert decide(parts, "ok", repeat_window_s=60) == ("review", "repeated")
    assert decide(parts, "ok", repeat_window_s=5) == ("allow", "listed")
    assert decide(parts, "ok", repeat_window_s=0) == ("allow", "listed")
    assert decide(parts, "ok", repeat_window_s=60, outcomes={"repeated": "deny"}) == ("deny", "repeated")


def test_repeat_across_boots_uses_wall_time(parts):
    lists, store = parts
    store.record(_entry("ok", "allow", wall=NOW - 30_000, mono=1, boot="another-boot"))
    assert decide(parts, "ok", repeat_window_s=60) == ("review", "repeated")
    assert decide(parts, "ok", repeat_window_s=20) == ("allow", "listed")


def test_denied_scans_do_not_make_repeats_and_denials_stay_denials(parts):
    lists, store = parts
    store.record(_entry("ok", "deny", wall=NOW, mono=mono_ns(), boot=boot_id()))
    assert decide(parts, "ok", repeat_window_s=60) == ("allow", "listed")
    store.record(_entry("banned", "allow", wall=NOW, mono=mono_ns(), boot=boot_id()))
    assert decide(parts, "banned", repeat_window_s=60) == ("deny", "deny-listed")


def test_check_cli_does_not_record(tmp_path, make_config, cli):
    config = make_config('[source]\ntype = "lines"\n', repeat=60)
    csv_path = tmp_path / "l.csv"
    csv_path.write_text("code,label\nPhạm,Phạm Thu Hương\n", encoding="utf-8")
    cli("list", "import", "people", csv_path, "--config", config)
    assert cli("check", "--config", config, "Phạm")[1] == "allow (listed) by list people@1: Phạm Thu Hương\n"
    assert cli("check", "--config", config, "Phạm")[1].startswith("allow (listed)")
    assert cli("check", "--config", config, "stranger")[1] == "deny (not-listed)\n"
    assert cli("check", "--config", config, "\x1b[2J")[1] == "deny (malformed)\n"
    status, out, _ = cli("check", "--json", "--config", config, "Phạm")
    assert '"decision": "allow"' in out and '"list_version": 1' in out
    assert not (tmp_path / "state" / "entries.db").exists()
