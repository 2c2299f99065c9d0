"""Small JSON state files beside the database (status.json, sync.json, remote.json, the hub's state).

Each is replaced whole: written to a temporary file, flushed to the disk, renamed over the old one, and
the directory flushed too, so after a power cut a reader finds the old file or the new one, never half of
one or none. remote.json holds what refuses replayed bundles, so "probably written" is not enough.
The files say what a device saw and did: 0640 whatever the caller's umask, never world-readable.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from edge.common.errors import CheckpointError

log = logging.getLogger("checkpoint.state")

MODE = 0o640


class StateFileError(CheckpointError):
    """A state file that exists but cannot be used (unreadable, not JSON, not a JSON object)."""


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes, *, mode: int = MODE, durable: bool = True) -> None:
    """Replace path with data, created with `mode` whatever the umask; flushed to the disk (file and
    directory) when durable. Raises OSError."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
        try:
            os.fchmod(fd, mode)  # the umask narrowed os.open's mode, or a left-over file had another
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise


def write_json(path: Path, data: dict[str, Any], *, mode: int = MODE) -> bool:
    """Replace path with data as JSON, durably; False (and a warning) when it cannot be written."""
    try:
        write_private(path, json.dumps(data, indent=1, ensure_ascii=False).encode("utf-8"), mode=mode)
        return True
    except (OSError, TypeError, ValueError, RecursionError) as exc:
        log.warning("cannot write %s: %s", path, exc)
        return False


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in path; None when there is no such file; StateFileError when it cannot be used."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"{path}: unreadable: {exc.strerror or type(exc).__name__}") from None
    try:
        value = json.loads(data)
    except RecursionError:
        raise StateFileError(f"{path}: not usable JSON: nested too deeply") from None
    except ValueError as exc:  # bad UTF-8, bad JSON, an integer past Python's digit limit
        raise StateFileError(f"{path}: not JSON: {str(exc)[:120]}") from None
    if not isinstance(value, dict):
        raise StateFileError(f"{path}: not a JSON object")
    return value
