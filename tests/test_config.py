"""Config files: the examples are valid; every kind of mistake is refused with the key named."""
from __future__ import annotations

from pathlib import Path

import pytest

from edge.settings.layers import load_settings
from edge.settings.schema import ConfigError

from .conftest import ROOT, run_checkpoint

GOOD = '[source]\ntype = "lines"\npath = "-"\n'


@pytest.mark.parametrize("name", ["demo.toml", "checkpoint.toml", "kiosk.toml"])
def test_example_configs_are_valid(cli, name):
    status, out, err = cli("config", "check", ROOT / "config" / name)
    assert status == 0, err
    assert "ok" in out


def test_defaults_and_version_hash(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    settings = load_settings(path)
    assert settings.decision.mode == "allowlist"
    assert settings.version.startswith("sha256:")
    path.write_text(GOOD + "# changed\n")
    assert load_settings(path).version != settings.version


@pytest.mark.parametrize("text, expected", [
    (GOOD + "[decoder]\ndebounce = 5\n", "decoder.debounce: unknown key"),
    (GOOD + "[decoder]\ndebounce_ms = \"5\"\n", "decoder.debounce_ms: Input should be a valid integer"),
    (GOOD + "[decoder]\ndebounce_ms = -1\n", "decoder.debounce_ms: Input should be greater than or equal to 0"),
    (GOOD + "[decoder]\ntype = \"wechat\"\n", "decoder.type: Input should be 'multipass', 'zxing' or 'pyzbar'"),
    (GOOD + "[decoder]\nbudget_ms = 1e9\n", "decoder.budget_ms: Input should be less than or equal to 1000"),
    (GOOD + "[decoder]\nbudget_ms = nan\n", "decoder.budget_ms"),
    (GOOD + "[outputs.relay]\ndriver = \"gpio\"\npin = 99\n",
     "outputs.relay.pin: Input should be less than or equal to 27"),
    (GOOD + "[outputs.relay]\ndriver = \"gpio\"\npin = 4\nactive_low = \"yes\"\n", "outputs.relay.active_low"),
    (GOOD + "[outputs.relay]\ndriver = \"laser\"\n", "outputs.relay: Input tag 'laser'"),
    (GOOD + "[signals.allow]\ngate = { on_ms = 100 }\n", "no output named 'gate'"),
    (GOOD + "[outputs.g]\ndriver = \"fake\"\n[signals.allow]\ng = { on_ms = 0 }\n", "signals.allow.g.on_ms"),
    (GOOD + "[outputs.g]\ndriver = \"fake\"\n[signals.open]\ng = { on_ms = 5 }\n", "signals.open"),
    (GOOD + "[decision]\nmode = \"everyone\"\n", "decision.mode"),
    (GOOD + "[decision.outcomes]\nstore-failure = \"allow\"\n", "decision.outcomes.store-failure"),
    (GOOD + "[device]\ntimezone = \"Mars/Olympus\"\n", "device.timezone: unknown time zone"),
    (GOOD + "[device]\nid = \"has space\"\n", "device.id"),
    ('[source]\ntype = "replay"\n', "source.path: required key is missing"),
    ('[source]\ntype = "camera"\n', "source: Input tag 'camera'"),
    ("[decoder]\n", "source: required key is missing"),
    (GOOD + "extra = 1\n", "extra: unknown key"),
    ("[source\n", "not valid TOML"),
    ('[source]\ntype = "lines"\ntype = "replay"\n', "not valid TOML"),
])
def test_bad_configs_name_the_key(tmp_path, cli, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert expected in str(info.value)
    status, out, err = cli("config", "check", path)
    assert status == 2 and expected in err and out == ""


def test_binary_huge_and_missing_files(tmp_path):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage\x00")
    huge = tmp_path / "huge.toml"
    huge.write_text("# " + "x" * (2 << 20))
    for path, expected in ((binary, "not UTF-8"), (huge, "larger than"), (tmp_path / "nope.toml", "cannot read"),
                           (tmp_path, "cannot read")):
        with pytest.raises(ConfigError, match=expected):
            load_settings(Path(path))


def test_run_with_broken_config_exits_2_naming_the_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(GOOD + "[store]\nretention_days = 0\n")
    result = run_checkpoint("run", "--config", path)
    assert result.returncode == 2
    assert "store.retention_days" in result.stderr
    assert "Traceback" not in result.stderr
