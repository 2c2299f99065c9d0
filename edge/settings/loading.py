"""Reading a config file: its bytes, its TOML, and its settings, each failure one line naming the key."""
from __future__ import annotations

import errno
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge.common.textsafe import for_log
from edge.settings.base import ConfigError
from edge.settings.root import Settings

MAX_CONFIG_BYTES = 1 << 20
# The deepest a valid config goes is 4 tables (signals.allow.green.on_ms); far deeper is refused before
# anything walks it, since recursive code (pydantic, repr, merging layers) would exhaust the stack.
MAX_DEPTH = 32
MAX_ERRORS = 10      # problems named in one message; the rest are counted
SHOWN_VALUE = 80     # characters of an offending value quoted in a message


def os_reason(exc: OSError) -> str:
    """An OSError in plain words for one line; a symbolic link loop said as such, not as its errno text."""
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    return exc.strerror or type(exc).__name__


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether tables and arrays nest deeper than limit (walked without recursion)."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in node if isinstance(child, (dict, list)))
    return False


def _key_path(raw: Any, loc: tuple[Any, ...]) -> str:
    """Dotted key path as written in the file; pydantic puts union tags in loc, the file does not."""
    parts: list[str] = []
    node = raw
    for item in loc:
        if isinstance(node, dict) and item not in node and item in (node.get("type"), node.get("driver")):
            continue  # a union's tag, not a key
        parts.append(for_log(str(item), SHOWN_VALUE))  # keys are outside text too: one line, capped
        node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def _shown(value: Any) -> str:
    """An offending value, quoted for one line of a message."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int past Python's 4,300-digit limit for text
        text = f"a {type(value).__name__} too large to show"
    return for_log(text, SHOWN_VALUE)


def _problems(raw: Any, exc: ValidationError) -> str:
    lines = []
    errors = exc.errors(include_url=False)
    for err in errors[:MAX_ERRORS]:
        msg = for_log(err["msg"].removeprefix("Value error, "), 300)
        path = _key_path(raw, tuple(err["loc"]))
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and err["type"] not in ("union_tag_invalid",) and not isinstance(err["input"], dict):
            shown = _shown(err["input"])
            if shown not in msg:
                msg += f" (got {shown})"
        lines.append(f"{path}: {msg}" if not msg.startswith(path + ":") else msg)
    if len(errors) > MAX_ERRORS:
        lines.append(f"and {len(errors) - MAX_ERRORS} more")
    return "; ".join(lines)


def parse_settings(raw: dict[str, Any], origin: str = "config") -> Settings:
    """Validated settings, or a ConfigError of one line: whatever was handed in, nothing else escapes."""
    origin = for_log(origin, 500)
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: not a table of settings")
    if _depth_exceeds(raw, MAX_DEPTH):
        raise ConfigError(f"{origin}: tables or arrays nested deeper than {MAX_DEPTH} levels")
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        try:
            problems = _problems(raw, exc)
        except Exception as inner:  # noqa: BLE001 - the report of a bad config must not be what fails
            problems = f"{exc.error_count()} problems ({type(inner).__name__} while naming them)"
        raise ConfigError(f"{origin}: {problems}") from None
    except Exception as exc:  # noqa: BLE001 - a validator's surprise is still a config that cannot be used
        raise ConfigError(f"{origin}: cannot be used ({type(exc).__name__}: {for_log(exc, SHOWN_VALUE)})") from None


def read_config(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """A config file's TOML as a dict, and its bytes. Only a regular file is read: a FIFO would block
    the reader and a device could be endless."""
    path = Path(path)
    shown = for_log(str(path), 300)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {os_reason(exc)}") from None
    try:
        with os.fdopen(fd, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise ConfigError(f"{shown}: cannot read: is a directory")
            if not stat.S_ISREG(mode):
                raise ConfigError(f"{shown}: cannot read: not a regular file")
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {os_reason(exc)}") from None
    return parse_toml(data, str(path)), data


def parse_toml(data: bytes, origin: str) -> dict[str, Any]:
    """TOML text (a config file, or a pushed config's body) as a dict, or a ConfigError of one line."""
    origin = for_log(origin, 500)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{origin}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{origin}: not UTF-8 text (byte {exc.start})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {for_log(exc, 300)}") from None
    except RecursionError:
        raise ConfigError(f"{origin}: not usable TOML: arrays or tables nested too deeply") from None
    except ValueError:  # not a TOMLDecodeError: an integer past Python's 4,300-digit limit for text
        raise ConfigError(f"{origin}: not usable TOML: a number with too many digits") from None
    except Exception as exc:  # noqa: BLE001 - whatever the parser did not foresee, the file is unusable
        raise ConfigError(f"{origin}: not usable TOML ({type(exc).__name__}: {for_log(exc, SHOWN_VALUE)})") from None
    if _depth_exceeds(raw, MAX_DEPTH):
        raise ConfigError(f"{origin}: tables or arrays nested deeper than {MAX_DEPTH} levels")
    return raw
