"""Every ```python block in README.md and docs/*.md runs, each in a fresh interpreter."""

from __future__ import annotations

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
