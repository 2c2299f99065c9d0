"""edge.common.build: the clock judge's floor, derived from the installed files."""
from __future__ import annotations

import os
from datetime import UTC, datetime

from edge.common.build import FLOOR_DATE, build_date, newest_file_date


def stamp(path, iso: str) -> None:
    path.write_text("")
    when = datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()
    os.utime(path, (when, when))


def test_the_newest_python_file_gives_the_date(tmp_path):
    (tmp_path / "pkg").mkdir()
    stamp(tmp_path / "a.py", "2027-01-02T10:00:00")
    stamp(tmp_path / "pkg" / "b.py", "2027-03-04T23:59:00")
    stamp(tmp_path / "notes.txt", "2030-01-01T00:00:00")  # not the software
    assert newest_file_date(tmp_path) == "2027-03-04"
    assert build_date(tmp_path) == "2027-03-04"


def test_files_older_than_the_floor_leave_the_floor(tmp_path):
    stamp(tmp_path / "a.py", "1970-01-02T00:00:00")  # copied with a clock that had not been set
    assert build_date(tmp_path) == FLOOR_DATE


def test_no_files_leave_the_floor(tmp_path):
    assert newest_file_date(tmp_path) is None and build_date(tmp_path) == FLOOR_DATE


def test_this_installation_is_no_older_than_the_floor():
    assert build_date() >= FLOOR_DATE
