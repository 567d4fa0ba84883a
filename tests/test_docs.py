"""Every ```python block in README.md and docs/*.md runs, each in a fresh interpreter, and shows its
result with an assert."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

from .conftest import run_python

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for i, m in enumerate(BLOCK.finditer(page.read_text())):
            out.append((f"{page.relative_to(ROOT)}#{i + 1}", m.group(1)))
    return out


@pytest.mark.parametrize(("where", "code"), _blocks(), ids=[w for w, _ in _blocks()])
def test_doc_example_runs(where: str, code: str, tmp_path: Path) -> None:
    """The example runs as written (cwd is a temporary directory)."""
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        run_python(code, timeout=120)
    finally:
        os.chdir(cwd)


# Snippets that do not assert their result yet, on pages other engineers are editing: each is
# (page, first statement, cut at 60 characters). The list only shrinks: a snippet that gains an
# assert must leave it, and a new snippet without one fails.
NO_ASSERT_YET = {
    ("README.md", '@pytest.mark.memory_limit("64MB")'),
    ("docs/caches.md", 'hivemem.register_cache("myapp.parsers")'),
    ("docs/governor.md", "gov = hivemem.govern()"),
    ("docs/governor.md", 'with hivemem.MemoryGovernor(budget="80%", interval=0.1, esca'),
    ("docs/measurement.md", "u = hivemem.usage()"),
    ("docs/measurement.md", "if hivemem.reset_peak():"),
    ("docs/measurement.md", "lim = hivemem.memory_limit()"),
    ("docs/profiler.md", 'registry = {"users": [bytearray(64)]}'),
    ("docs/pytest.md", '@pytest.mark.memory_limit("64 MiB")'),
    ("docs/pytest.md", "_cache = {}"),
    ("docs/pytest.md", "def test_two_phases(memory_ceiling):"),
    ("docs/pytest.md", "def test_figures(memory):"),
    ("docs/pytest.md", 'with assert_peak_below("64 MiB") as block:'),
}


def _top_level_asserts(code: str) -> int:
    """The assert statements that run when the snippet runs: not those inside a def or class body."""
    count = 0

    def walk(node: ast.AST) -> None:
        nonlocal count
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                continue
            count += isinstance(child, ast.Assert)
            walk(child)

    walk(ast.parse(code))
    return count


def _key(where: str, code: str) -> tuple[str, str]:
    first = next(
        (
            line.split("#")[0].strip()
            for line in code.splitlines()
            if line.split("#")[0].strip() and not line.startswith(("import ", "from "))
        ),
        "",
    )
    return where.split("#")[0], first[:60]


def test_doc_examples_assert_their_result() -> None:
    """A snippet shows its result with an assert that runs; the ones that do not yet are listed above."""
    lacking = {_key(w, code): w for w, code in _blocks() if not _top_level_asserts(code)}
    new = sorted(w for key, w in lacking.items() if key not in NO_ASSERT_YET)
    assert not new, f"these doc snippets assert nothing (add an assert that shows the result): {new}"
    fixed = sorted(NO_ASSERT_YET - set(lacking))
    assert not fixed, f"these snippets assert now (or changed): remove them from NO_ASSERT_YET: {fixed}"


def test_assert_counter_ignores_asserts_that_never_run() -> None:
    """Asserts in a def or class body do not count; asserts in with/for/if blocks do."""
    assert _top_level_asserts("def test():\n    assert 1\n") == 0
    assert _top_level_asserts("class T:\n    def f(self):\n        assert 1\n") == 0
    assert _top_level_asserts("with open('f') as f:\n    assert f\nfor i in []:\n    assert i\n") == 2
    assert _key("docs/x.md#3", "import a\n# c\nx = 1  # note\nassert x\n") == ("docs/x.md", "x = 1")
