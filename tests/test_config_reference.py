"""docs/config.md is generated from the settings models: it must be what the generator writes now, and
every key must say what it is for."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edge.settings import reference

DOC = Path(__file__).resolve().parent.parent / "docs" / "config.md"


def test_docs_config_is_what_the_generator_writes():
    assert DOC.read_text(encoding="utf-8") == reference.markdown(), (
        "docs/config.md is stale: run `python -m edge.settings.reference > docs/config.md`")


def test_the_generator_runs_as_a_command():
    out = subprocess.run([sys.executable, "-m", "edge.settings.reference"], capture_output=True, check=True,
                         text=True).stdout
    assert out == reference.markdown()


def test_every_key_has_a_description():
    assert list(reference.undescribed()) == []


def test_every_table_has_a_section():
    titles = [s.title for s in reference.sections()]
    for title in ("[device]", '[source] with type = "hid"', "[decision]", '[outputs.<NAME>] with driver = "gpio"',
                  "[signals.<allow|deny|review>.<NAME>]", "[sync]", "[remote]", "[[ui.officers]]",
                  "[credentials.dcc.rules.vaccination]"):
        assert title in titles
    store = next(s for s in reference.sections() if s.title == "[store]")
    retention = next(r for r in store.rows if r.key == "retention_days")
    assert (retention.type, retention.default, retention.allowed) == ("integer", "90", ">= 1, <= 3650")
