"""The decision, against real lists and real recorded entries."""
from __future__ import annotations

import io

import pytest

from edge.common.clock import boot_id, mono_ns, parse_instant
from edge.entries.store import Entry, EntryStore
from edge.lists import ListStore
from edge.rules.policy import Policy
from edge.settings.schema import DecisionSettings

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


# ---- lists named in [decision] lists that the device does not hold --------------------------------------
@pytest.mark.parametrize("code, allowlist, denylist, record", [
    # On no list the device holds, and a consulted list is missing: list-missing, by mode.
    ("nobody", ("deny", "list-missing"), ("review", "list-missing"), ("allow", "list-missing")),
    # What an existing consulted list says still stands: a deny entry denies, an allow entry allows.
    ("banned", ("deny", "deny-listed"), ("deny", "deny-listed"), ("allow", "deny-listed")),
    ("ok", ("allow", "listed"), ("allow", "listed"), ("allow", "listed")),
    ("old", ("deny", "expired"), ("allow", "expired"), ("allow", "expired")),
])
def test_a_missing_list(parts, code, allowlist, denylist, record):
    names = ["main", "absent"]
    assert decide(parts, code, mode="allowlist", lists=names) == allowlist
    assert decide(parts, code, mode="denylist", lists=names) == denylist
    assert decide(parts, code, mode="record", lists=names) == record


def test_list_missing_outcome_is_overridable_and_only_named_lists_can_be_missing(parts):
    assert decide(parts, "nobody", lists=["absent"], outcomes={"list-missing": "review"}) == ("review", "list-missing")
    assert decide(parts, "ok", lists=["absent"]) == ("deny", "list-missing")  # 'main' is not consulted
    assert decide(parts, "nobody", lists=[]) == ("deny", "not-listed")  # every list consulted: none missing
    assert decide(parts, "nobody", lists=["main", "bans"]) == ("deny", "not-listed")


def test_missing_lists_follows_imports_and_removals_in_another_store(parts, tmp_path):
    lists, store = parts
    # The daemon's view of the lists and an administrator's command are two ListStore objects.
    admin = ListStore(tmp_path / "lists.db")
    policy = Policy(DecisionSettings(lists=["main", "later", "bans"]), lists, store.last_allowed)
    assert policy.missing_lists() == ["later"]
    assert policy.missing_lists() == ["later"]  # from the cache: the stamp did not move
    admin.import_csv("later", io.BytesIO(b"code\nlate\n"), zone=ZONE, max_code_bytes=64)
    assert policy.missing_lists() == []
    assert policy.decide("nobody", malformed=False, now_ms=NOW, now_mono_ns=mono_ns()).reason.value == "not-listed"
    admin.remove("bans")
    assert policy.missing_lists() == ["bans"]
    assert policy.decide("nobody", malformed=False, now_ms=NOW, now_mono_ns=mono_ns()).reason.value == "list-missing"
    admin.close()
    # A read-only view with no stamp file to watch reads the catalog each time.
    empty = ListStore(":memory:")
    assert Policy(DecisionSettings(lists=["main"]), empty, store.last_allowed).missing_lists() == ["main"]
    empty.close()


# ---- judge: the one way the gate and `checkpoint check` decide -------------------------------------------
def test_judge_takes_the_clock_into_account(parts):
    from edge.common.clock import wall_ms
    from edge.rules.clocktrust import ClockTrust
    from edge.rules.policy import judge

    lists, store = parts
    lists.import_csv("win", io.BytesIO(b"code,valid_from,valid_until\nwin,2020-01-01,2099-12-31\n"), zone=ZONE,
                     max_code_bytes=64)
    policy = Policy(DecisionSettings(lists=["win"]), lists, store.last_allowed, "deny")
    now = wall_ms()

    def judged(clock, **kw):
        decision, state = judge(policy, clock, "win", malformed=False, now_ms=now, now_mono_ns=mono_ns(), **kw)
        return decision.outcome.value, decision.reason.value, state

    synced = ClockTrust(synchronised=lambda: True)
    assert judged(synced) == ("allow", "listed", "ok")
    # A running daemon saw the clock jump back; this process cannot see it, but believes it.
    assert judged(ClockTrust(synchronised=lambda: True), reported_state="jumped-back") == (
        "deny", "clock-untrusted", "jumped-back")
    assert judged(ClockTrust(synchronised=lambda: True), reported_state="ok") == ("allow", "listed", "ok")
    # Its own worse judgement stands over a reported one.
    behind = ClockTrust(newest_entry_ms=now + 86_400_000, synchronised=lambda: True)
    assert judged(behind, reported_state="jumped-back") == ("deny", "clock-untrusted", "behind-entries")
    # require_sync: an undisciplined clock is untrusted.
    strict = ClockTrust(require_sync=True, synchronised=lambda: False)
    assert judged(strict) == ("deny", "clock-untrusted", "unsynchronised")
    # Lists that cannot be read (here: hashed with a key this device does not hold): store-failure, never a guess.
    lists.import_csv("hashed", io.BytesIO(b"code\nwin\n"), zone=ZONE, max_code_bytes=64, hash_key=bytes(32))
    policy.settings = DecisionSettings(lists=["win", "hashed"])
    assert judged(synced)[:2] == ("deny", "store-failure")
