"""State files beside the database: written whole and durably, 0640 whatever the umask, read or refused."""
from __future__ import annotations

import json
import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.common.statefile import StateFileError, read_json, write_json


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
def test_written_0640_whatever_the_umask(tmp_path, umask, mask):
    umask(mask)
    path = tmp_path / "status.json"
    assert write_json(path, {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    # A left-over temporary file of another mode does not pass its mode on.
    (tmp_path / "status.json.tmp").write_text("x")
    os.chmod(tmp_path / "status.json.tmp", 0o666)
    assert write_json(path, {"a": 2})
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and read_json(path) == {"a": 2}


def test_replaced_whole_and_flushed_to_disk(tmp_path, monkeypatch):
    path = tmp_path / "remote.json"
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    assert write_json(path, {"applied": {"all": 3}, "text": "Phạm Thu Hương"})
    # The data itself, then the directory holding the new name: a power cut leaves the old file or the new.
    assert synced == [str(tmp_path / "remote.json.tmp"), str(tmp_path)]
    assert json.loads(path.read_text(encoding="utf-8"))["text"] == "Phạm Thu Hương"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["remote.json"]


def test_a_write_that_fails_says_so_and_leaves_the_old_file(tmp_path, caplog):
    path = tmp_path / "sync.json"
    assert write_json(path, {"v": 1})
    assert not write_json(path, {"v": object()})  # not JSON
    assert not write_json(tmp_path / "missing" / "x.json", {"v": 1})
    # A symbolic link planted where the temporary file goes is not followed.
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "sync.json.tmp").symlink_to(victim)
    assert not write_json(path, {"v": 2})
    assert victim.read_text() == "keep" and read_json(path) == {"v": 1}
    assert "cannot write" in caplog.text


def test_read_tells_absent_from_unusable(tmp_path):
    path = tmp_path / "remote.json"
    assert read_json(path) is None
    for data, reason in [(b"{", "not JSON"), (b"[1]", "not a JSON object"), (b"\xff\xfe", "not JSON"),
                         (b"[" * 100_000, "nested too deeply"), (b"1" * 5000, "not JSON")]:
        path.write_bytes(data)
        with pytest.raises(StateFileError, match=reason):
            read_json(path)
    path.unlink()
    path.mkdir()
    with pytest.raises(StateFileError, match="unreadable"):
        read_json(path)


@given(st.binary(max_size=2000) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(), lambda inner: st.lists(inner) | st.dictionaries(
        st.text(), inner), max_leaves=50).map(lambda v: json.dumps(v).encode()))
def test_any_bytes_read_as_an_object_or_refused(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("state") / "x.json"
    path.write_bytes(data)
    try:
        assert isinstance(read_json(path), dict)
    except StateFileError:
        pass


def test_private_bytes_are_0640_flushed_or_not(tmp_path, umask):
    from edge.common.statefile import write_private

    umask(0o000)
    for durable in (True, False):
        path = tmp_path / f"chunk-{durable}"
        write_private(path, b"\x00" * 10, durable=durable)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_bytes() == b"\x00" * 10
    with pytest.raises(OSError):
        write_private(tmp_path / "missing" / "x", b"")
