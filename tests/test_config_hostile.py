"""Config files from a careless or hostile hand: every one is a valid Settings or a ConfigError of one
line; `checkpoint config check` then says that line and exits 2, never a traceback."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.settings.layers import load_settings
from edge.settings.schema import (
    MAX_CONFIG_BYTES,
    MAX_DEPTH,
    ConfigError,
    Settings,
    parse_settings,
    parse_toml,
    read_config,
)

from .conftest import cli_main, run_checkpoint
from .users import as_nobody

GOOD = '[source]\ntype = "lines"\npath = "-"\n'
MESSAGE_LIMIT = 4000


def outcome(data: bytes) -> Settings | ConfigError:
    """What loading these bytes gives; any other exception fails the test."""
    try:
        return parse_settings(parse_toml(data, "fuzz.toml"), "fuzz.toml")
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and "\r" not in message, message
        assert len(message) < MESSAGE_LIMIT, len(message)
        return exc


# ---- TOML text, built from values a TOML writer would emit (inline, so any nesting is one line) --------
def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        text = repr(value)
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(text, text)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are TOML's (a lone surrogate is refused: also fine)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


KEYS = st.sampled_from(["id", "timezone", "type", "path", "mode", "lists", "outcomes", "pin", "driver", "on_ms",
                        "budget_ms", "port", "groups", "trusted_keys", "enabled", "dir", "list-missing",
                        "repeat_window_s", "list_max_age_h_for", "level", "version", "green", "allow"]) | st.text(
    st.characters(codec="utf-8"), max_size=30)
HOSTILE_TEXT = st.text(st.characters(codec="utf-8", categories=["Cc", "Zl", "Zp", "L", "N", "P", "S"]),
                       max_size=40) | st.sampled_from(["..", ".", "-rf", "all", "group", "America", "../x",
                                                     "=cmd|' /C calc'!A0", "a" * 5000, "x\ny", "\x1b[2J"])
SCALARS = (st.booleans() | st.integers(-(2**70), 2**70) | st.sampled_from([2**63, -(2**63) - 1, 10**300])
           | st.floats(allow_nan=True, allow_infinity=True) | HOSTILE_TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                      max_leaves=20)
SECTIONS = st.sampled_from(["device", "source", "decoder", "decision", "decision.outcomes", "store", "outputs.g",
                            "signals.allow", "sync", "clock", "remote", "log", "unknown"])


@given(st.lists(st.tuples(SECTIONS, st.dictionaries(KEYS, VALUES, max_size=4)), max_size=5))
def test_random_settings_over_a_good_file_give_settings_or_one_line(tables):
    text = GOOD + "".join(f"[{section}]\n" + "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in table.items())
                          for section, table in tables)
    outcome(text.encode("utf-8", "surrogatepass"))


@given(st.binary(max_size=2000))
def test_any_bytes_give_settings_or_one_line(data):
    outcome(data)


@given(st.text(st.characters(codec="utf-8"), max_size=500))
def test_any_text_after_a_good_file_gives_settings_or_one_line(text):
    outcome((GOOD + text).encode("utf-8", "surrogatepass"))


@settings(max_examples=20)
@given(st.integers(1, 60_000), st.sampled_from(["[", "{a = ", "[{a = ["]))
def test_any_nesting_gives_one_line(depth, opener):
    closer = opener.replace("{a = ", "}").replace("[", "]")[::-1]
    result = outcome(f"x = {opener * depth}1{closer * depth}\n".encode())
    assert isinstance(result, ConfigError)  # no [source], and x is no key of a config
    assert ("nested" in str(result)) == (depth * opener.count("[") + depth * opener.count("{") > MAX_DEPTH)


@pytest.mark.parametrize("text, expected", [
    ("x = " + "[" * 30_000 + "]" * 30_000 + "\n", "nested too deeply"),
    ("x = " + "{a = " * 5_000 + "1" + "}" * 5_000 + "\n", "nested too deeply"),
    ("[" + "a." * 3_000 + "a]\n", "nested deeper than 32"),
    (GOOD + "[decoder]\nbudget_ms = 1" + "0" * 5_000 + "\n", "a number with too many digits"),
    (GOOD + "[decoder]\nbudget_ms = " + "9" * 4_000 + "\n", "decoder.budget_ms: Input should be a valid number"),
    (GOOD + "[sync]\nport = 18446744073709551616\n", "sync.port"),
    (GOOD + "[device]\ntimezone = \"America\"\n", "unknown time zone 'America'"),
    (GOOD + "[device]\ntimezone = \"" + "a" * 5_000 + "\"\n", "device.timezone"),
    (GOOD + '"key\\nwith\\u001b[2J" = 1\n', "source.key\\x0awith\\x1b[2J: unknown key"),
    (GOOD + "[decoder]\ntype = \"" + "x\\n" * 50_000 + "\"\n", "decoder.type"),
    ("[source]\ntype = \"" + "x" * 100_000 + "\"\n", "source: Input tag"),
    (GOOD + "".join(f"k{i} = 1\n" for i in range(10_000)), "and 9990 more"),
    (GOOD + "[device]\nid = \"..\"\n", "device.id: '..' is a path step"),
    (GOOD + "[device]\nid = \".\"\n", "device.id: '.' is a path step"),
    (GOOD + "[device]\nid = \"-rf\"\n", "device.id: String should match pattern"),
    (GOOD + "[device]\nid = \"a/b\"\n", "device.id"),
    (GOOD + "[device]\nid = \"" + "a" * 65 + "\"\n", "device.id"),
    (GOOD + "[device]\nid = \"group\"\n", "reserved"),
    (GOOD + "[remote]\ngroups = [\"..\"]\n", "remote.groups.0: '..' is a path step"),
    (GOOD + "[decision]\nlists = [\"has space\"]\n", "decision.lists.0"),
    (GOOD + "[decision]\nlist_max_age_h_for = { people = -1.0 }\n", "decision.list_max_age_h_for.people"),
])
def test_hostile_configs_are_one_clear_line(tmp_path, cli, text, expected):
    path = tmp_path / "hostile.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert expected in str(info.value)
    status, out, err = cli("config", "check", path)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and expected in err and len(err) < MESSAGE_LIMIT


def test_safe_names_still_pass():
    for name in ("gate-1", "gate_1", "a.b", ".hidden", "A" * 64, "1"):
        settings = parse_settings(parse_toml(f'{GOOD}[device]\nid = "{name}"\n[remote]\ngroups = ["{name}"]\n'.encode(),
                                             "t"))
        assert settings.device.id == name


def test_a_deeply_nested_file_is_exit_2_in_a_real_process(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    result = run_checkpoint("config", "check", path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert "nested too deeply" in result.stderr


def test_files_that_cannot_be_read_are_one_line(tmp_path, cli):
    loop = tmp_path / "loop.toml"
    os.symlink(tmp_path / "other.toml", loop)
    os.symlink(loop, tmp_path / "other.toml")
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # no writer: reading it would block forever
    huge = tmp_path / "huge.toml"
    huge.write_text(GOOD + "#" * MAX_CONFIG_BYTES)
    not_dir = tmp_path / "file"
    not_dir.write_text("")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(GOOD.encode() + b"\xc3\x28")
    cases = [(loop, "symbolic link loop"), (fifo, "not a regular file"), (tmp_path, "is a directory"),
             ("/dev/zero", "not a regular file"), (tmp_path / "none.toml", "No such file"),
             (not_dir / "x.toml", "Not a directory"), (huge, f"larger than {MAX_CONFIG_BYTES} bytes"),
             (binary, f"not UTF-8 text (byte {len(GOOD)})"),
             (tmp_path / "bad\nname\x1b.toml", "bad\\x0aname\\x1b.toml")]
    for path, expected in cases:
        with pytest.raises(ConfigError, match="cannot read|larger|not UTF-8") as info:
            read_config(path)
        assert expected.lower() in str(info.value).lower(), (path, info.value)
        status, out, err = cli("config", "check", path)
        assert status == 2 and out == "" and err.count("\n") == 1 and expected.lower() in err.lower()
        status, out, err = cli("status", "--config", path)
        assert status == 2 and err.count("\n") == 1


def test_a_file_without_permission_is_one_line(tmp_path):
    # Root reads any file: the load runs as user nobody, in a folder nobody may enter but not read.
    folder = Path(tempfile.mkdtemp(prefix="checkpoint-config-"))  # pytest's tmp_path is private to root
    try:
        folder.chmod(0o755)
        path = folder / "secret.toml"
        path.write_text(GOOD)
        path.chmod(0o600)

        def load() -> list[str]:
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = cli_main(["config", "check", str(path)])
            return [str(status), err.getvalue()]

        status, err = as_nobody(load)[:2]
        assert status == "2" and "cannot read: Permission denied" in err
    finally:
        shutil.rmtree(folder)


def test_a_pushed_body_is_held_to_the_same_rules():
    # sync.device.remote parses pushed config bodies with parse_toml: the same limits apply to what comes over MQTT.
    for body, expected in ((b"x = " + b"[" * 50_000, "nested"), (b"a = 1\n" * (MAX_CONFIG_BYTES // 4), "larger"),
                           (b"[" + b"a." * 100 + b"a]\n", "deeper than 32")):
        with pytest.raises(ConfigError, match=expected):
            parse_toml(body, "all v3")
    with pytest.raises(ConfigError, match="deeper than 32"):
        nested: dict = {}
        node = nested
        for letter in string.ascii_letters:
            node[letter] = {}
            node = node[letter]
        parse_settings({"source": {"type": "lines"}, "decoder": nested}, "merged")
    with pytest.raises(ConfigError, match="not a table"):
        parse_settings(["not", "a", "dict"], "merged")  # type: ignore[arg-type]


def test_list_names_in_the_config_follow_the_lists_own_rule():
    from edge.lists import NAME
    from edge.settings.schema import LIST_NAME

    assert LIST_NAME == NAME.pattern  # one rule: a name the config accepts can be imported
