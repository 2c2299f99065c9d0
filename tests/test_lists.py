"""Lists: CSV import into a real SQLite file, replacement in one transaction, every bad row refused."""
from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import string
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.common.clock import parse_instant
from edge.common.errors import CheckpointError
from edge.lists import KeyedHash, ListError, ListStore, ListUnreadable, hash_code, hash_key_id, read_hash_key_file
from sync.wire import listwire

from .waiting import wait_until

ZONE = "Asia/Ho_Chi_Minh"
HEADER = "code,action,label,valid_from,valid_until\n"
KEY = bytes(range(32))
PLAIN = {hash_code(KEY, c): c for c in string.ascii_lowercase}  # to print a hashed list's rows as codes


@pytest.fixture
def lists(tmp_path):
    store = ListStore(tmp_path / "lists.db")
    yield store
    store.close()


@pytest.fixture(params=["plain", "hashed"])
def any_lists(request, tmp_path):
    """A store whose lists are imported plain, or as keyed hashes (kept in a keys file)."""
    store = ListStore(tmp_path / "lists.db", hash_keys={hash_key_id(KEY): KEY} if request.param == "hashed" else None)
    yield store
    store.close()


def load(store, text, name="travellers", encoding="utf-8"):
    data = text.encode(encoding) if isinstance(text, str) else text
    return store.import_csv(name, io.BytesIO(data), zone=ZONE, max_code_bytes=64,
                            hash_key=KEY if store.hash_keys else None)


def code_of(store, code):
    """The code as a list of `store` holds it: hashed where the store's lists are."""
    return hash_code(KEY, code) if store.hash_keys else code


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


# ---- hostile CSV files, generated ------------------------------------------------------------------
MESSAGE_LIMIT = 400
CELL_TEXT = st.text(st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    ["", "allow", "deny", "DENY ", "2026-01-01", "2026-02-30", "9999-12-31T23:59:59+14:00", "-999999-01-01",
     "1" * 400, "=cmd|' /C calc'!A0", "\x00", "\x1b[2J", '"', 'a"b', "x\r\ny", "\u2028", "\ud800"])
HEADER_NAMES = st.sampled_from(["code", "action", "label", "valid_from", "valid_until", "Code ", "\ufeffcode",
                                "name", "", "code\x00", "x" * 1000]) | st.text(max_size=20)


def csv_line(cells) -> str:
    return ",".join('"' + c.replace('"', '""') + '"' if any(ch in c for ch in ',"\r\n') else c for c in cells) + "\n"


@st.composite
def hostile_csv(draw) -> bytes:
    header = draw(st.lists(HEADER_NAMES, min_size=0, max_size=8))
    extra = draw(st.sampled_from([0, 0, 0, 3, 1000, 100_000]))  # columns nobody knows, by the thousand
    header += [f"col{i}" for i in range(extra)]
    rows = draw(st.lists(st.lists(CELL_TEXT, max_size=7), max_size=6))
    text = csv_line(header) + "".join(csv_line(row) for row in rows)
    if draw(st.booleans()):
        text += draw(st.sampled_from(['"unterminated', "a" * 200_000, "\x00\x00", "code\n" * 3]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    data = text.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "replace")
    if draw(st.booleans()):
        data = draw(st.binary(max_size=40)) + data
    return data


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=hostile_csv())
def test_any_csv_imports_or_is_refused_in_one_capped_line_leaving_the_old_list(lists, data):
    if lists.info("travellers") is None:
        load(lists, HEADER + "keep-me,allow,,,\n")
    before = lists.info("travellers")
    try:
        info = lists.import_csv("travellers", io.BytesIO(data), zone=ZONE, max_code_bytes=64)
    except ListError as exc:
        message = str(exc)
        assert len(message) < MESSAGE_LIMIT and "\n" not in message and "\r" not in message, message
        assert lists.info("travellers") == before
        assert [m.list_version for m in lists.lookup("keep-me")] == [before.version]
        return
    assert info.version == before.version + 1
    load(lists, HEADER + "keep-me,allow,,,\n")  # the next example starts from a known list again


def test_a_header_of_100000_unknown_columns_is_named_briefly(lists):
    header = "code," + ",".join(f"col{i}" for i in range(100_000))
    with pytest.raises(ListError) as info:
        load(lists, header + "\n")
    assert str(info.value).endswith("(unknown columns 'col0', 'col1', 'col2' and 99997 more)")
    with pytest.raises(ListError, match=r"\(columns 'code', 'label' more than once\)"):
        load(lists, "code,label,code,label,code\n")
    with pytest.raises(ListError, match=r"\(no code column\)"):
        load(lists, "action,label\n")
    with pytest.raises(ListError, match=r"got 'yyyy[y]*…'\)$"):
        load(lists, "code,action\nx," + "y" * 100_000 + "\n")


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


def test_an_import_at_a_given_version_must_be_above_every_one_the_list_had(lists):
    load(lists, "code\nx\n")
    for used in (1, 0, -5):
        with pytest.raises(ListError, match="not newer than 1"):
            lists.import_csv("travellers", io.BytesIO(b"code\ny\n"), zone=ZONE, max_code_bytes=64, version=used)
    assert lists.lookup("x")[0].list_version == 1 and lists.lookup("y") == []
    info = lists.import_csv("travellers", io.BytesIO(b"code\ny\n"), zone=ZONE, max_code_bytes=64, version=7)
    assert info.version == 7 and lists.lookup("y")[0].list_version == 7
    assert load(lists, "code\nz\n").version == 8


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


# ---- readers in other processes ------------------------------------------------------------------------
def catalog_statements(store):
    seen = []
    store.conn.set_trace_callback(seen.append)
    return seen


def test_a_reader_sees_each_commit_at_its_next_lookup_and_otherwise_asks_the_catalog_only_its_version(
        lists, tmp_path):
    load(lists, "code\na\nb\n")
    reader = ListStore(tmp_path / "lists.db", readonly=True)
    try:
        assert [m.list_version for m in reader.lookup("a")] == [1]
        asked = catalog_statements(reader)
        assert reader.lookup("b") and reader.lookup("zz") == []  # one snapshot, held
        assert set(asked) == {"PRAGMA data_version"}
        load(lists, "code\nb\nc\n")  # a new file swapped in
        assert reader.lookup("a") == [] and [m.list_version for m in reader.lookup("c")] == [2]
        row = ("d", True, None, None, None)
        lists.apply_delta("travellers", base=2, version=3, changes=listwire.Changes([row], [], ["b"]), count=2,
                          sha256="0" * 64, source="t")  # the same file changed in place
        assert reader.lookup("b") == [] and [(m.list_version, m.deny) for m in reader.lookup("d")] == [(3, True)]
        lists.remove("travellers")
        assert reader.lookup("c") == []
    finally:
        reader.close()


def test_a_commit_by_another_program_is_seen_at_the_next_lookup(lists, tmp_path):
    load(lists, "code\na\n")
    reader = ListStore(tmp_path / "lists.db", readonly=True)
    try:
        assert reader.lookup("a")
        other = sqlite3.connect(tmp_path / "lists.db", isolation_level=None)
        other.execute("DELETE FROM lists")  # by hand, not through a ListStore
        other.close()
        assert reader.lookup("a") == []
    finally:
        reader.close()


def test_a_reader_opened_before_the_first_import_sees_it(lists, tmp_path):
    reader = ListStore(tmp_path / "lists.db", readonly=True)
    try:
        assert reader.lookup("a") == []
        load(lists, "code\na\n")
        assert [m.list_version for m in reader.lookup("a")] == [1]
    finally:
        reader.close()


def wal_checkpoint(file):
    db = sqlite3.connect(file)
    try:
        return db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        db.close()


def test_an_idle_reader_lets_a_delta_be_checkpointed(lists, tmp_path):
    load(lists, "code\n" + "".join(f"{i:06d}\n" for i in range(5000)))
    reader = ListStore(tmp_path / "lists.db", readonly=True)
    try:
        assert reader.lookup("000001")
        changes = listwire.Changes([(f"x{i}", False, None, None, None) for i in range(500)], [], [])
        lists.apply_delta("travellers", base=1, version=2, changes=changes, count=5500, sha256="0" * 64, source="t")
        [file] = (tmp_path / "lists.d").glob("travellers.*.db")
        busy, frames, done = wal_checkpoint(file)
        assert frames > 0 and done < frames  # the reader's snapshot predates the delta's pages
        reader.release_old_snapshot()  # as the daemon does while idle: the catalog moved
        busy, frames, done = wal_checkpoint(file)
        assert busy == 0 and done == frames
        assert [m.list_version for m in reader.lookup("x7")] == [2]
    finally:
        reader.close()


def test_an_idle_reader_ends_its_snapshot_after_the_hold_even_if_the_catalog_did_not_move(any_lists, tmp_path):
    lists = any_lists
    load(lists, "code\n" + "".join(f"{i:06d}\n" for i in range(5000)))
    delta(lists, 1, added=[(f"x{i:05d}", False, None) for i in range(500)], removed=[])
    reader = ListStore(tmp_path / "lists.db", readonly=True, hash_keys=lists.hash_keys, hold_s=0)
    try:
        assert reader.lookup("000001")
        assert lists.fold("travellers", at_rows=1) == 500  # the file changes, the catalog does not
        [file] = (tmp_path / "lists.d").glob("travellers.*.db")
        busy, frames, done = wal_checkpoint(file)
        assert frames > 0 and done < frames  # the reader's snapshot predates the fold's pages
        reader.release_old_snapshot()
        busy, frames, done = wal_checkpoint(file)
        assert busy == 0 and done == frames
        assert [m.list_version for m in reader.lookup("x00007")] == [2]
    finally:
        reader.close()


# ---- deltas: an overlay over the entries, folded in now and then ------------------------------------
def rows(store, name="travellers"):
    found = [(PLAIN.get(r[0], r[0]), bool(r[1]), r[2]) for r in store.entries(name)]
    return found if not store.hash_keys else sorted(found)  # hashes go in their own order


def delta(store, base, added=(), changed=(), removed=(), name="travellers"):
    info = store.info(name)
    row = lambda r: (code_of(store, r[0]), r[1], r[2], None, None)  # noqa: E731
    return store.apply_delta(name, base=base, version=base + 1,
                             changes=listwire.Changes([row(r) for r in added], [row(r) for r in changed],
                                                      [code_of(store, c) for c in removed]),
                             count=info.count + len(added) - len(removed), sha256=f"{base + 1:064d}", source="t")


def test_deltas_then_a_fold_keep_every_answer(any_lists):
    lists = any_lists
    load(lists, "code,action,label\na,allow,A\nb,allow,B\nc,deny,C\nd,allow,D\n")
    delta(lists, 1, added=[("e", False, "E")], changed=[("a", True, "A2")], removed=["b"])
    delta(lists, 2, added=[("b", False, "B2"), ("f", False, None)], removed=["c", "e"])  # e: added, then gone
    delta(lists, 3, changed=[("f", True, "F")], removed=["d"])
    expected = [("a", True, "A2"), ("b", False, "B2"), ("f", True, "F")]
    answers = {code: [(m.list_version, m.deny, m.label) for m in lists.lookup(code)] for code in "abcdef"}
    assert rows(lists) == expected and lists.info("travellers").count == 3
    assert answers == {"a": [(4, True, "A2")], "b": [(4, False, "B2")], "c": [], "d": [], "e": [],
                       "f": [(4, True, "F")]}
    assert lists.fold("travellers") == 0  # not due: a few rows
    assert lists.fold("travellers", at_rows=1) > 0 and lists.fold("travellers", at_rows=1) == 0
    assert rows(lists) == expected
    assert {code: [(m.list_version, m.deny, m.label) for m in lists.lookup(code)] for code in "abcdef"} == answers
    delta(lists, 4, added=[("c", False, None)], removed=["a"])  # deltas go on after a fold
    assert rows(lists) == [("b", False, "B2"), ("c", False, None), ("f", True, "F")]


def test_the_fold_thresholds_are_the_stores_own(tmp_path):
    lists = ListStore(tmp_path / "lists.db", fold_rows=3, fold_share=0.75)
    try:
        load(lists, "code\n" + "".join(f"{i:02d}\n" for i in range(10)))
        delta(lists, 1, added=[("x", False, None), ("y", False, None)], removed=[])
        assert lists.fold("travellers") == 0  # 2 overlay rows: below 3
        delta(lists, 2, added=[("z", False, None)], removed=["00", "01", "02"])
        assert lists.fold("travellers") == 0  # 6 overlay rows: above 3, below 75 % of the 10 entries
        lists.fold_share = 0.25  # read at each fold
        assert lists.fold("travellers") == 6 and rows(lists)[-3:] == [("x", False, None), ("y", False, None),
                                                                      ("z", False, None)]
    finally:
        lists.close()


def test_a_delta_that_names_a_code_twice_or_against_the_overlay_changes_nothing(any_lists):
    lists = any_lists
    load(lists, "code\na\nb\n")
    delta(lists, 1, removed=["a"])
    for bad, reason in [(dict(added=[("x", False, None)], removed=["x"]), "names a code twice"),
                        (dict(removed=["a"]), "missing"),  # already removed by the overlay
                        (dict(changed=[("a", True, None)]), "missing"),
                        (dict(added=[("b", False, None)]), "already here")]:
        with pytest.raises(ListError, match=reason):
            delta(lists, 2, **bad)
        assert lists.info("travellers").version == 2 and rows(lists) == [("b", False, None)]
    delta(lists, 2, added=[("a", True, None)])  # back, now denied
    assert [(m.list_version, m.deny) for m in lists.lookup("a")] == [(3, True)]


def test_a_list_file_from_before_the_overlay_is_given_one(lists, tmp_path):
    load(lists, "code\na\nb\n")
    lists.close()
    [file] = (tmp_path / "lists.d").glob("travellers.*.db")
    old = sqlite3.connect(file)
    old.execute("DROP TABLE overlay")
    old.execute("ALTER TABLE meta DROP COLUMN keys")  # nor a keys file's name
    old.close()
    reader = ListStore(tmp_path / "lists.db", readonly=True)  # before any writer gave it one
    assert [m.list_version for m in reader.lookup("a")] == [1]
    reader.close()
    store = ListStore(tmp_path / "lists.db")
    try:
        assert [m.list_version for m in store.lookup("a")] == [1]
        delta(store, 1, added=[("c", False, None)], removed=["a"])
        assert rows(store) == [("b", False, None), ("c", False, None)]
    finally:
        store.close()


def test_a_power_cut_after_a_delta_reaches_its_file_but_not_the_catalog(any_lists, tmp_path):
    lists = any_lists
    load(lists, "code\na\nb\nc\n")
    delta(lists, 1, added=[("d", False, None)], removed=["a", "b"])
    lists.close()
    catalog = sqlite3.connect(tmp_path / "lists.db", isolation_level=None)
    catalog.execute("UPDATE lists SET version = 1, count = 3")  # as if the catalog's commit never happened
    catalog.close()
    store = ListStore(tmp_path / "lists.db", hash_keys=lists.hash_keys)
    try:
        info = store.info("travellers")
        assert (info.version, info.count) == (2, 2) and rows(store) == [("c", False, None), ("d", False, None)]
    finally:
        store.close()


def test_a_fold_keeps_answers_for_a_reader_and_is_checkpointed_once_it_moves_on(any_lists, tmp_path):
    lists = any_lists
    load(lists, "code\n" + "".join(f"{i:06d}\n" for i in range(20_000)))
    delta(lists, 1, added=[(f"x{i:05d}", False, None) for i in range(5000)], removed=[f"{i:06d}" for i in range(50)])
    answers, stop = [], threading.Event()

    def scan():  # a reader on the pipeline's thread, looking codes up meanwhile
        reader = ListStore(tmp_path / "lists.db", readonly=True, hash_keys=lists.hash_keys)
        try:
            while not stop.is_set():
                answers.append((reader.lookup("000049"), [m.list_version for m in reader.lookup("x00007")]))
                time.sleep(0.002)  # a scanner's pace (the scenario): the answers hold at any pace
        finally:
            reader.close()

    scanner = threading.Thread(target=scan)
    scanner.start()
    try:
        wait_until(lambda: answers, what="the reader's first lookups")
        assert lists.fold("travellers", at_rows=1) == 5050
    finally:
        stop.set()
        scanner.join()
    [file] = (tmp_path / "lists.d").glob("travellers.*.db")
    with sqlite3.connect(file) as db:  # what the fold could not copy past the reader goes once it moved on
        busy, frames, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and done == frames
    assert answers and all(answer == ([], [2]) for answer in answers)
    # A hashed list's fold wrote a new keys file and removed the old one.
    assert [p.name for p in file.parent.glob("*.k*")] == ([f"{file.name}.k1"] if lists.hash_keys else [])


# ---- hashed lists: keys in a keys file, details in SQLite ---------------------------------------------
@pytest.mark.parametrize("key", [b"", b"k" * 16, bytes(range(64)), bytes(range(65)), b"x" * 200])
def test_the_lookup_hash_equals_hmac_for_any_key_length(key):
    assert all(KeyedHash(key)(code) == hash_code(key, code) for code in ["", "a", "079200000005", "Ω" * 300])


@pytest.fixture
def hashed(tmp_path):
    store = ListStore(tmp_path / "lists.db", hash_keys={hash_key_id(KEY): KEY})
    yield store
    store.close()


def test_a_hashed_list_keeps_its_keys_apart_and_its_details_in_sqlite(hashed, tmp_path):
    lists = hashed
    codes = [f"0792{i:08d}" for i in range(20_000)]
    load(lists, HEADER + "".join(f"{c},allow,,,\n" for c in codes[2:]) +
         f"{codes[0]},deny,stolen,,\n{codes[1]},allow,,2024-01-01,2030-01-01\n")
    assert [(m.deny, m.label) for m in lists.lookup(codes[0])] == [(True, "stolen")]
    [match] = lists.lookup(codes[1])
    assert (match.deny, match.valid_from) == (False, parse_instant("2024-01-01", ZONE, end_of_day=False))
    assert [m.deny for m in lists.lookup(codes[19_999])] == [False] and lists.lookup("0792") == []
    folder = tmp_path / "lists.d"
    raw = b"".join(p.read_bytes() for p in folder.iterdir())
    assert codes[5].encode() not in raw and hash_code(KEY, codes[5]) in raw
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size / len(codes) < 20  # 17 bytes a key, and the SQLite file's few pages
    with sqlite3.connect(next(folder.glob("*.db"))) as db:
        assert db.execute("SELECT count(*) FROM entries").fetchone() == (2,)  # the two with details


def test_a_hashed_list_with_a_code_twice_is_refused(any_lists):
    load(any_lists, "code\na\n")
    with pytest.raises(ListError, match="line 4: code appears earlier|entries 1 and 3 .* have the same code"):
        load(any_lists, "code\nb\nc\nb\n")
    assert rows(any_lists) == [("a", False, None)]


def test_a_snapshot_whose_hashes_are_out_of_order_is_refused(hashed, tmp_path):
    building = hashed.new_file("travellers", 1, hash_key_id(KEY))
    with pytest.raises(ListError, match="out of order"):
        building.add([(b"b" * 16, False, None, None, None), (b"a" * 16, False, None, None, None)])
    building.abandon()
    assert list((tmp_path / "lists.d").iterdir()) == []


def test_keys_files_no_list_names_are_removed_at_start(any_lists, tmp_path):
    lists = any_lists
    load(lists, "code\na\n")
    lists.close()
    folder = tmp_path / "lists.d"
    named = sorted(p.name for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm")))
    [file] = [n for n in named if n.endswith(".db")]
    for stray in (f"{file}.k7", "other.3.db.k0"):  # a fold cut short; a list since removed
        (folder / stray).write_bytes(b"x")
    store = ListStore(tmp_path / "lists.db", hash_keys=lists.hash_keys)
    try:
        assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm"))) == named
        assert [m.list_version for m in store.lookup("a")] == [1]
    finally:
        store.close()


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_damaged_or_missing_keys_file_makes_lookups_fail_as_a_damaged_database(hashed, tmp_path, damage):
    load(hashed, "code\na\n")
    [keys] = (tmp_path / "lists.d").glob("*.k0")
    if damage == "truncated":
        keys.write_bytes(keys.read_bytes()[:-3])
    else:
        keys.unlink()
    reader = ListStore(tmp_path / "lists.db", readonly=True, hash_keys=hashed.hash_keys)
    try:
        for _ in range(2):
            with pytest.raises(ListUnreadable, match="not a whole keys file|keeps disappearing"):
                reader.lookup("a")  # the pipeline decides store-failure on it
        load(hashed, "code\na\n")  # the next version mends it
        assert [m.list_version for m in reader.lookup("a")] == [2]
    finally:
        reader.close()


# ---- files private whatever the umask; versions that need not rise ----------------------------------
def modes(folder):
    return {p.name: oct(p.stat().st_mode & 0o777) for p in folder.iterdir()}


def test_every_file_of_a_list_is_private_whatever_the_umask(any_lists, tmp_path):
    lists = any_lists
    previous = os.umask(0)  # as a careless service manager might leave it
    try:
        load(lists, "code\n" + "".join(f"{i:06d}\n" for i in range(500)))
        delta(lists, 1, added=[("x1", False, None)], removed=["000001"])
        lists.fold("travellers", at_rows=1)  # a hashed list's fold writes a new keys file
        load(lists, "code\na\n")
    finally:
        os.umask(previous)
    found = modes(tmp_path / "lists.d")
    assert any(name.endswith(".k0") for name in found) == bool(lists.hash_keys)
    assert found and set(found.values()) == {"0o640"}, found


def test_list_files_left_readable_by_everyone_are_made_private_at_start(hashed, tmp_path):
    load(hashed, "code\na\n")
    hashed.close()
    folder = tmp_path / "lists.d"
    for path in folder.iterdir():
        path.chmod(0o644)  # as an older version left them under umask 022
    ListStore(tmp_path / "lists.db", hash_keys=hashed.hash_keys).close()
    assert set(modes(folder).values()) == {"0o640"}


def install_version(store, version, code):
    building = store.new_file("travellers", version, None)
    building.add([(code, False, None, None, None)])
    count = building.finish()
    return lambda **kw: store.install("travellers", version, building.path, count=count, sha256="0" * 64,
                                      source="t", hash_key=None, **kw)


def test_a_version_not_above_the_last_is_installed_only_when_allowed(lists, tmp_path):
    for version in (1, 2, 3):
        load(lists, f"code\nv{version}\n")
    install = install_version(lists, 2, "lower")
    with pytest.raises(ListError, match="version 2 is not newer than 3"):
        install()
    assert [m.list_version for m in lists.lookup("v3")] == [3]
    assert install(allow_lower=True).version == 2
    assert lists.lookup("v3") == [] and [m.list_version for m in lists.lookup("lower")] == [2]
    # The same version again is built beside the live file, never over it.
    install = install_version(lists, 2, "again")
    assert [m.list_version for m in lists.lookup("lower")] == [2]
    install(allow_lower=True)
    assert lists.lookup("lower") == [] and [m.list_version for m in lists.lookup("again")] == [2]
    assert len(list((tmp_path / "lists.d").glob("*.db"))) == 1
    # The floor moved down with it: the next import is version 3.
    assert load(lists, "code\nnext\n").version == 3


# ---- errors: SQLite's own reach a caller as ListError ---------------------------------------------
def test_a_damaged_catalog_or_list_file_is_a_list_error(lists, tmp_path):
    load(lists, "code\na\n")
    [file] = (tmp_path / "lists.d").glob("travellers.*.db")
    file.write_bytes(b"not a database" * 1000)
    reader = ListStore(tmp_path / "lists.db", readonly=True)
    try:
        with pytest.raises(ListUnreadable, match="not a database"):
            reader.lookup("a")  # the pipeline decides store-failure on it
        with pytest.raises(ListError):
            list(reader.entries("travellers"))
    finally:
        reader.close()
    (tmp_path / "other.db").write_bytes(b"not a database" * 1000)
    with pytest.raises(ListError, match="not a database"):
        ListStore(tmp_path / "other.db")
    assert issubclass(ListError, CheckpointError)


def test_a_hash_key_file_is_read_or_refused_without_showing_the_key(tmp_path):
    path = tmp_path / "hk"
    path.write_text(KEY.hex() + "\n")
    assert read_hash_key_file(path) == KEY and read_hash_key_file(str(path)) == KEY
    for text in (KEY.hex()[:-2], "zz" * 32, "", KEY.hex() + "00"):
        path.write_text(text)
        with pytest.raises(ListError, match=f"hash key {path}: expected 64 hex digits") as caught:
            read_hash_key_file(path)
        assert text[:8] not in str(caught.value) or not text
    with pytest.raises(ListError, match="cannot read it"):
        read_hash_key_file(tmp_path / "missing")


def test_a_torn_file_whose_version_moved_on_does_not_stop_the_store_opening(tmp_path, caplog):
    """A power cut between a delta's commit in a list's file and the catalog's, and that file's keys torn:
    the store still opens (the one list unreadable, logged), so scanning, sync and a re-import go on."""
    key = bytes(range(32))
    store = ListStore(tmp_path / "lists.db", hash_keys={hash_key_id(key): key})
    csv = "code,action\n" + "".join(f"C{i:06d},allow\n" for i in range(2000))
    info = store.import_csv("staff", io.BytesIO(csv.encode()), zone="UTC", max_code_bytes=64, hash_key=key)
    store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "lists.d" / info.file)) as conn, conn:
        conn.execute("UPDATE meta SET version = version + 1")
        keys = conn.execute("SELECT keys FROM meta").fetchone()[0]
    torn = tmp_path / "lists.d" / keys
    torn.write_bytes(torn.read_bytes()[:4096 + 100])
    store = ListStore(tmp_path / "lists.db", hash_keys={hash_key_id(key): key})
    try:
        assert [i.name for i in store.infos()] == ["staff"]
        assert "unreadable" in caplog.text
    finally:
        store.close()
