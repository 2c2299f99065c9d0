"""The checks that keep the house in order: lint, types, the layer contract, no import cycles, small modules.

Each runs the real tool over the tree (the configuration is in pyproject.toml) and shows its own output when
it fails. `make test-fast` runs these too, mypy excepted (it takes a minute on a cold cache).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PACKAGES = ("edge", "sync", "drivers")
MAX_LINES = 400
# A longer module says why at its top, in a line beginning with this.
LONG_REASON = "Longer than 400 lines because"


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_ruff_finds_nothing():
    result = run(str(BIN / "ruff"), "check", "--no-cache", *PACKAGES, "bench", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_finds_nothing():
    """Strict on the core packages, ordinary checks on the rest (pyproject.toml, [tool.mypy])."""
    result = run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr


def test_the_layer_contract_is_kept():
    result = run(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that import each other round in a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_no_two_modules_import_each_other_round_in_a_circle():
    """Within a layer too (the layer contract only sees imports between layers); lazy imports count."""
    import grimp

    graph = grimp.build_graph(*PACKAGES)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert _strongly_connected(edges) == []


def test_every_long_module_says_why():
    long = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            lines = text.count("\n")
            doc = ast.get_docstring(ast.parse(text)) or ""
            if lines > MAX_LINES and LONG_REASON not in doc:
                long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert long == [], f"split these, or say at the top ('{LONG_REASON} ...'): {long}"


def test_cycle_finder_finds_a_circle():
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _strongly_connected({"a": {"b"}, "b": set()}) == []


def test_every_test_listed_as_slow_exists():
    """tests/slow.txt names tests by file and name: a renamed or removed test must leave the list too."""
    from .conftest import slow_tests

    missing = []
    for name in sorted(slow_tests()):
        file, _, test = name.partition("::")
        path = ROOT / "tests" / file
        if not path.exists() or f"def {test}(" not in path.read_text(encoding="utf-8"):
            missing.append(name)
    assert missing == []
