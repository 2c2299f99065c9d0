"""Lists: CSV import into a real SQLite file, replacement in one transaction, every bad row refused."""
from __future__ import annotations

import io

import pytest

from edge.clock import parse_instant
from edge.lists import ListError, ListStore

ZONE = "Asia/Ho_Chi_Minh"
HEADER = "code,action,label,valid_from,valid_until\n"


@pytest.fixture
def lists(tmp_path):
    store = ListStore(tmp_path / "lists.db")
    yield store
    store.close()


def load(store, text, name="travellers", encoding="utf-8"):
    data = text.encode(encoding) if isinstance(text, str) else text
    return store.import_csv(name, io.BytesIO(data), zone=ZONE, max_code_bytes=64)


def test_import_lookup_and_replace(lists):
    info = load(lists, HEADER + '079203001234,allow,Nguyễn Văn An,,\n"with,comma",deny,,2026-01-01,2026-12-31\n')
    assert (info.version, info.count) == (1, 2)
    [match] = lists.lookup("079203001234")
    assert (match.list_name, match.list_version, match.deny, match.label) == ("travellers", 1, False, "Nguyễn Văn An")
    [match] = lists.lookup("with,comma")
    assert match.deny and match.valid_from == parse_instant("2026-01-01", ZONE)
    # valid_until as a bare date includes that whole day (local time).
    assert match.valid_until == parse_instant("2027-01-01", ZONE)

    info = load(lists, "code\nnew-one\n")
    assert (info.version, info.count) == (2, 1)
    assert lists.lookup("079203001234") == []
    assert lists.lookup("new-one")[0].list_version == 2


def test_bad_row_rejects_import_with_line_number_and_keeps_old_list(lists):
    load(lists, HEADER + "keep-me,allow,,,\n")
    bad_rows = [
        ("a,allow,,,\nb,maybe,,,\n", "line 3: action must be allow or deny"),
        ("a,allow,,,\n,allow,,,\n", "line 3: empty code"),
        ("a,allow,,,\nb,allow,,not-a-date,\n", "line 3: valid_from is not an ISO 8601"),
        ("a,allow,,2026-02-01,2026-01-01\n", "line 2: valid_until is not after valid_from"),
        ("a,allow,,,\nb,allow\n", "line 3: 2 fields, the header has 5"),
        ("a,allow,,,\nb,allow,,,\na,deny,,,\n", "line 4: code appears earlier"),
        ("x" * 65 + ",allow,,,\n", "line 2: code longer than 64 bytes"),
        ("a,allow," + "L" * 201 + ",,\n", "line 2: label longer than 200"),
        ('a,allow,"unterminated\n', "line"),
    ]
    for rows, expected in bad_rows:
        with pytest.raises(ListError, match=expected):
            load(lists, HEADER + rows)
        assert [m.list_version for m in lists.lookup("keep-me")] == [1]
        assert lists.lookup("a") == []
    assert lists.info("travellers").version == 1


@pytest.mark.parametrize("data, expected", [
    (b"", "empty file"),
    (b"name,code\n", "header must name distinct columns"),
    (b"action,label\nallow,x\n", "include code"),
    (b"code,code\n1,2\n", "distinct"),
    ("code\nPhạm\n".encode("utf-16"), "not UTF-8"),
    (b"code\nok\n\xff\xfe\n", "line 3: not UTF-8"),
    (b"code\n" + b"y" * 200_000 + b"\n", "line 2: field larger than field limit"),
    (b"code\n" + b"z" * (2 << 20), "line 2: longer than 1048576 bytes"),
    (b"code\nnul\x00byte\n", "line 2: code holds control characters"),
    (b"code\nesc\x1b[2J\n", "line 2: code holds control characters"),
])
def test_hostile_files(lists, data, expected):
    with pytest.raises(ListError, match=expected):
        load(lists, data)
    assert lists.infos() == []


def test_bom_blank_lines_and_defaults(lists):
    info = load(lists, "\ufeffCode,Label\r\n\r\nabc,Someone\r\n")
    assert info.count == 1
    [match] = lists.lookup("abc")
    assert match.deny is False and match.label == "Someone"


def test_several_lists_and_names(lists):
    load(lists, "code\nshared\n", name="a")
    load(lists, "code,action\nshared,deny\n", name="b")
    assert sorted((m.list_name, m.deny) for m in lists.lookup("shared")) == [("a", False), ("b", True)]
    assert [m.list_name for m in lists.lookup("shared", ["b"])] == ["b"]
    for name in ("", "../etc", "has space", "x" * 65):
        with pytest.raises(ListError, match="list name"):
            load(lists, "code\nx\n", name=name)


def test_version_keeps_rising_after_remove(lists):
    load(lists, "code\nx\n")
    assert lists.remove("travellers")
    assert lists.lookup("x") == [] and not lists.remove("travellers")
    assert load(lists, "code\nx\n").version == 2


def test_cli_import_show_remove(tmp_path, make_config, cli):
    config = make_config('[source]\ntype = "lines"\n')
    csv_path = tmp_path / "l.csv"
    csv_path.write_text(HEADER + "P1,allow,Phạm Thu Hương,2026-01-01,\nP2,deny,,,\n", encoding="utf-8")
    assert cli("list", "show", "--config", config) == (0, "", "")
    status, out, _ = cli("list", "import", "people", csv_path, "--config", config)
    assert status == 0 and "people v1: 2 entries" in out
    status, out, _ = cli("list", "show", "people", "--entries", "--config", config)
    assert out.splitlines() == ["code,action,label,valid_from,valid_until",
                                "P1,allow,Phạm Thu Hương,2025-12-31T17:00:00.000Z,", "P2,deny,,,"]
    csv_path.write_text(HEADER + "P3,allow,,,\nP4,block,,,\n")
    status, _, err = cli("list", "import", "people", csv_path, "--config", config)
    assert status == 1 and "line 3: action must be allow or deny" in err and "unchanged" in err
    status, out, _ = cli("list", "show", "--config", config)
    assert "people\tv1\t2 entries" in out
    assert cli("list", "remove", "people", "--config", config)[0] == 0
    assert cli("list", "remove", "people", "--config", config)[0] == 1
    status, _, err = cli("list", "import", "people", tmp_path / "none.csv", "--config", config)
    assert status == 1 and "No such file" in err
