"""Who may use the officer page: password check, login rate limit, CSRF tokens, the session secret, the audit.

Passwords are argon2 hashes (argon2-cffi), given in [ui] officers or read from a systemd credential or file.
A name that is not an officer is checked against a dummy hash, so a wrong name costs the same time as a
wrong password and the answer does not tell which names exist.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from edge.common.secrets import secret_path
from edge.common.textsafe import for_log
from edge.settings.schema import UISettings

log = logging.getLogger("checkpoint.ui")
audit_log = logging.getLogger("checkpoint.audit")

SESSION_KEY_NAME = "ui-session.key"
SESSION_KEY_BYTES = 32
MAX_PASSWORD = 1024        # characters: argon2 takes any length, a megabyte form field costs CPU for nothing
_HASHER = PasswordHasher()
_DUMMY = _HASHER.hash(secrets.token_urlsafe(16))




def officer_hashes(settings: UISettings) -> dict[str, str]:
    """name -> argon2 hash; an officer whose hash cannot be read is left out, loudly (the others can log in)."""
    found = {}
    for officer in settings.officers:
        value = officer.password_hash
        if value is None and officer.password_credential is not None:  # the settings give one of the two
            path = secret_path(officer.password_credential)
            try:
                value = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                log.error("officer %s cannot log in: cannot read the password credential %s (%s)",
                          for_log(officer.name), path, getattr(exc, "strerror", None) or exc)
                continue
        if value is None or not value.startswith("$argon2"):
            log.error("officer %s cannot log in: the password hash is not an argon2 hash "
                      "(make one with `checkpoint ui hash-password`)", for_log(officer.name))
            continue
        found[officer.name] = value
    return found


def check_password(hashes: dict[str, str], name: str, password: str) -> bool:
    """True when name is an officer and password is theirs; the same work whatever the answer."""
    stored = hashes.get(name)
    try:
        return _HASHER.verify(stored or _DUMMY, password[:MAX_PASSWORD]) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def is_loopback(address: str) -> bool:
    """The device's own screen (or a test on the device): 127.0.0.0/8, ::1."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class LoginLimit:
    """At most `failures` login attempts per client address and per name within `window_s`; then refused
    until the oldest leaves the window. Bounded: the least recently tried keys are forgotten first.

    An attempt is counted BEFORE its password is checked (attempt(), under the lock), so parallel requests
    cannot all pass the check and then fail; a login that succeeds takes its count back (succeeded()).
    The per-name key does not hold back loopback clients: anyone who knows an officer's name could otherwise
    keep that officer locked out from everywhere; the device's own screen always lets the officer in (its own
    per-address limit still applies), while remote guessing stays limited per address and per name."""

    def __init__(self, failures: int = 5, window_s: float = 300.0, keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.failures, self.window_s, self.keys, self.clock = failures, window_s, keys, clock
        self._seen: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._seen.get(key) or deque()
        while times and now - times[0] >= self.window_s:
            times.popleft()
        return times

    @staticmethod
    def _keys(address: str, name: str) -> tuple[tuple[str, str], ...]:
        return (("address", address),) if is_loopback(address) else (("address", address), ("name", name))

    def _wait(self, address: str, name: str, now: float) -> float:
        waits = [self.window_s - (now - times[0]) for key in self._keys(address, name)
                 if len(times := self._recent(key, now)) >= self.failures]
        return max(waits, default=0.0)

    def wait_s(self, address: str, name: str) -> float:
        """0 when a login may be tried; else the seconds until it may (nothing is counted)."""
        with self._lock:
            return self._wait(address, name, self.clock())

    def attempt(self, address: str, name: str) -> float:
        """0: the attempt is counted and the password may be checked; else the seconds to wait (not counted)."""
        now = self.clock()
        with self._lock:
            wait = self._wait(address, name, now)
            if wait > 0:
                return wait
            for key in (("address", address), ("name", name)):
                times = self._recent(key, now)
                times.append(now)
                self._seen.pop(key, None)
                self._seen[key] = times  # newest last: the dict's order is the eviction order
            while len(self._seen) > self.keys:
                self._seen.pop(next(iter(self._seen)))
            return 0.0

    def succeeded(self, address: str, name: str) -> None:
        """The attempt just counted was the right password (or was not checked at all): take it back."""
        with self._lock:
            for key in (("address", address), ("name", name)):
                times = self._seen.get(key)
                if times:
                    times.pop()


class Sessions:
    """The officers logged in, kept on the server: the cookie carries only a random id. A session ends on
    logout, SESSION_S after the login whatever the activity (no sliding), when the officer's password hash
    changes or the officer is removed, and when the daemon restarts. Bounded: the oldest logins go first."""

    def __init__(self, max_age_s: float = 12 * 3600, keep: int = 1000, clock: Callable[[], float] = time.monotonic):
        self.max_age_s, self.keep, self.clock = max_age_s, keep, clock
        self._table: dict[str, tuple[str, float, str]] = {}   # sid -> (officer, issued, hash at login)
        self._lock = threading.Lock()

    def start(self, officer: str, password_hash: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._table[sid] = (officer, self.clock(), password_hash)
            while len(self._table) > self.keep:
                self._table.pop(next(iter(self._table)))
        return sid

    def officer(self, sid: object, hashes: dict[str, str]) -> str | None:
        """The officer this session id belongs to, or None (unknown, expired, password changed)."""
        if not isinstance(sid, str):
            return None
        with self._lock:
            found = self._table.get(sid)
            if found is None:
                return None
            officer, issued, password_hash = found
            if self.clock() - issued >= self.max_age_s or hashes.get(officer) != password_hash:
                del self._table[sid]
                return None
            return officer

    def end(self, sid: object) -> None:
        if isinstance(sid, str):
            with self._lock:
                self._table.pop(sid, None)

    def __len__(self) -> int:
        return len(self._table)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(session: dict[str, Any], given: object) -> bool:
    expected = session.get("csrf")
    return (isinstance(expected, str) and isinstance(given, str)
            and hmac.compare_digest(expected.encode(), given.encode()))


def session_secret(folder: Path | None) -> bytes:
    """The key that signs session cookies: folder/ui-session.key (0600), made on first use, so sessions survive
    a restart. Without a folder, or when the file cannot be written, a key for this run only."""
    if folder is None:
        return os.urandom(SESSION_KEY_BYTES)
    path = Path(folder) / SESSION_KEY_NAME
    try:
        key = path.read_bytes()
        if len(key) == SESSION_KEY_BYTES:
            return key
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("session key %s unreadable (%s): a new one is made", path, exc.strerror or exc)
    key = os.urandom(SESSION_KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log.warning("cannot write the session key %s (%s): officers must log in again after a restart",
                    path, exc.strerror or exc)
    return key


class Audit:
    """Every officer action, as a log line (checkpoint.audit) and in a bounded list the daemon's status carries
    to the hub: logins, refused logins, logouts, refused CSRF tokens. Review answers and manual entries are
    entries of their own and are synced as such; they are listed here too, with the entry's id."""

    def __init__(self, keep: int = 50):
        self._records: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._number = 0

    def record(self, action: str, officer: str, address: str, *, refused: bool = False,
               **details: object) -> dict[str, Any]:
        with self._lock:
            self._number += 1
            record = {"n": self._number, "wall_ms": time.time_ns() // 1_000_000, "action": action,
                      "officer": for_log(officer, 64), "address": for_log(address, 64),
                      **{k: for_log(v, 120) if isinstance(v, str) else v for k, v in details.items()}}
            self._records.append(record)
        audit_log.log(logging.WARNING if refused else logging.INFO, "AUDIT officer %s %s from %s%s",
                      record["officer"], action, record["address"],
                      "".join(f" {k}={record[k]}" for k, v in details.items() if v is not None))
        return record

    def recent(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._records)


class Refusals:
    """Requests refused before anyone logged in (no valid session or CSRF token, a limited login): counted per
    (what, path, address), not kept as audit records, so an outsider cannot flush the officers' actions out of
    the bounded audit list or fill the log. One WARNING per address per LOG_EVERY_S at most. Bounded."""

    LOG_EVERY_S = 60.0

    def __init__(self, keys: int = 1000, clock: Callable[[], float] = time.monotonic):
        self.keys, self.clock = keys, clock
        self._counts: dict[tuple[str, str, str], int] = {}
        self._logged: dict[str, float] = {}
        self._lock = threading.Lock()
        self.total = 0

    def count(self, what: str, path: str, address: str) -> None:
        key = (for_log(what, 40), for_log(path, 80), for_log(address, 64))
        now = self.clock()
        with self._lock:
            self.total += 1
            self._counts[key] = self._counts.pop(key, 0) + 1
            while len(self._counts) > self.keys:
                self._counts.pop(next(iter(self._counts)))
            last = self._logged.get(key[2])
            due = last is None or now - last >= self.LOG_EVERY_S
            if due:
                self._logged.pop(key[2], None)
                self._logged[key[2]] = now
                while len(self._logged) > self.keys:
                    self._logged.pop(next(iter(self._logged)))
            number = self._counts[key]
        if due:
            audit_log.warning("AUDIT refused %s %s from %s (%d so far; logged at most once a minute per address)",
                              key[0], key[1], key[2], number)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {" ".join(key): n for key, n in self._counts.items()}
