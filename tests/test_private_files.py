"""The appliance's private files are made with an exact mode, and a path that names anything but a regular
file is refused before its mode is touched: run as root (tests here, `checkpoint list import` by an
administrator), a chmod through such a path changed /dev/null for every user of the machine once."""
from __future__ import annotations

import os
import stat

import pytest

from edge.common.sqlite import FILE_MODE, open_private, private_file
from edge.lists.keysfile import create_private


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_new_file_gets_exactly_its_mode_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        fd = open_private(tmp_path / "f", os.O_WRONLY, FILE_MODE)
        os.close(fd)
    finally:
        os.umask(old)
    assert mode(tmp_path / "f") == FILE_MODE


@pytest.mark.parametrize("make", ["fifo", "symlink"])
def test_a_path_that_is_no_regular_file_is_refused_and_left_as_it_was(tmp_path, make):
    target = tmp_path / "target"
    target.write_bytes(b"x")
    target.chmod(0o666)
    path = tmp_path / "keys"
    if make == "fifo":
        os.mkfifo(path)
        path.chmod(0o666)
    else:
        path.symlink_to(target)
    for opening in (lambda: os.close(open_private(path, os.O_WRONLY, FILE_MODE)), lambda: create_private(path)):
        with pytest.raises(OSError):
            opening()
    private_file(path)  # an existing path: only a regular file's world bits are taken off
    assert mode(target) == 0o666 and (make == "symlink" or mode(path) == 0o666)


def test_an_existing_database_loses_its_world_bits_only(tmp_path):
    path = tmp_path / "lists.db"
    path.write_bytes(b"")
    path.chmod(0o664)
    private_file(path)
    assert mode(path) == 0o660
