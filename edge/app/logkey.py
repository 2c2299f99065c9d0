"""The device's secret for the code hashes in its log (`code=#…`).

A plain hash of a code can be reversed by trying every code (a 6-digit code in a second), so the log
shows a keyed hash (HMAC-SHA256) under a secret of this device's own: the same code gives the same
hash in this device's log across restarts, and nothing anyone can compute without the secret. The
secret lives beside the database (log.key, mode 0600), made on first start.

A secret that cannot be read back (damaged, wrong size, unreadable) is replaced by a new one, with a
warning: hashes then no longer match those logged before, which costs nothing but that comparison.
Where no file can be written at all, the process keeps a secret in memory for this run.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger("checkpoint.logkey")

KEY_NAME = "log.key"
KEY_BYTES = 32
SHOWN_HEX = 16  # 64 bits: no collisions worth counting in a device's log; the key keeps it secret


def _create(path: Path) -> bytes:
    """A new secret, written whole (0600 whatever the umask, fsynced) and then renamed into place."""
    key = os.urandom(KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may have taken bits off; this is exact
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return key


def load_or_create(folder: str | Path) -> bytes:
    """This device's secret from folder/log.key; made there on first use. Never raises for a bad file."""
    path = Path(folder) / KEY_NAME
    problem = None
    try:
        key = path.read_bytes()
        if len(key) == KEY_BYTES:
            return key
        problem = f"it holds {len(key)} bytes, not {KEY_BYTES}"
    except FileNotFoundError:
        pass
    except OSError as exc:
        problem = exc.strerror or str(exc)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = _create(path)
    except OSError as exc:
        log.warning("cannot write the log-hash secret %s (%s): a secret for this run only; the code hashes "
                    "in the log will not match those of other runs", path, exc.strerror or exc)
        return os.urandom(KEY_BYTES)
    if problem:
        log.warning("log-hash secret %s was unusable (%s): replaced by a new one; code hashes logged from now "
                    "on do not match those logged before", path, problem)
    return key


def code_hash(key: bytes, code: str) -> str:
    """`#` and a keyed hash of the code, for the log: the same code and key, the same text."""
    digest = hmac.new(key, code.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return "#" + digest[:SHOWN_HEX]
