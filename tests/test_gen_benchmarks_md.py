"""scripts/gen_benchmarks_md.py: docs/benchmarks.md is generated from the results JSON, never typed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
LATEST = ROOT / "benchmarks" / "results" / "latest.json"
DOC = ROOT / "docs" / "benchmarks.md"


def _gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_benchmarks_md", ROOT / "scripts" / "gen_benchmarks_md.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _data() -> dict[str, object]:
    base = {
        "before": 800 * 2**20,
        "seconds": 0.5,
        "cpu_seconds": 0.5,
        "checksum_ok": True,
        "peak": 900 * 2**20,
    }
    return {
        "kind": "hivemem-bench",
        "machine": {
            "date": "2024-05-01",
            "python": "3.11.7",
            "platform": "Linux-x",
            "cpus": 2,
            "ram_bytes": 2**34,
        },
        "scenarios": [
            {
                "scenario": "composite",
                "description": "the app",
                "targeted": True,
                "why": None,
                "target_mb": 90,
                "floor": 60 * 2**20,
                "baselines": {
                    "nothing": {**base, "after": 800 * 2**20, "reclaim": 0.0},
                    "gc": {**base, "after": 790 * 2**20, "reclaim": 0.01},
                    "recipe": {**base, "after": 780 * 2**20, "reclaim": 0.03},
                    "optimize": {**base, "after": 80 * 2**20, "reclaim": 0.97, "report_text": "REPORT"},
                    "governor": {"unavailable": "no govern()"},
                },
            },
            {
                "scenario": "strings",
                "description": "dup strings",
                "targeted": True,
                "why": "the survivors are most of the data",
                "floor": 200 * 2**20,
                "baselines": {"optimize": {**base, "after": 300 * 2**20, "reclaim": 0.83}},
            },
        ],
        "recipe_slowdown": {
            "repeat": 3,
            "workloads": {
                "json": {
                    "default": {"cpu_seconds": 1.0, "collections": [1, 2, 3]},
                    "10-1-1": {"cpu_seconds": 1.3, "collections": [9, 9, 9]},
                    "slowdown": 1.3,
                    "workload": "w",
                }
            },
        },
    }


def test_page_states_machine_and_every_figure() -> None:
    """The page names machine, Python and date, the headline, the gaps, and says honestly why a miss."""
    text = _gen().generate(_data(), plotter=None)
    assert "Measured on: 2024-05-01, CPython 3.11.7, Linux-x" in text
    assert "from **800.0 MiB to 80.0 MiB** in **0.50 s**" in text
    assert "The goal (< 100 MB, <= 2 s, same answers) is met." in text
    # gap to gc: 790 - 80 MiB; gap to the recipe: 780 - 80 MiB
    assert "| 710.0 MiB | 700.0 MiB |" in text
    assert "**no**: the survivors are most of the data" in text
    assert "**1.30x** the CPU time" in text
    assert "no govern()" in text
    assert "```text\nREPORT\n```" in text


def test_committed_page_is_what_the_generator_makes() -> None:
    """docs/benchmarks.md equals the generator's output for the committed results (no hand edits)."""
    if not LATEST.exists() or not DOC.exists():
        pytest.skip("no committed results yet")
    if LATEST.stat().st_mtime > DOC.stat().st_mtime + 5:  # a checkout writes both within seconds
        pytest.skip("benchmarks were re-run since the page was made: run scripts/gen_benchmarks_md.py")
    data = json.loads(LATEST.read_text())
    assert DOC.read_text() == _gen().generate(data, plotter=lambda d, p: True)
