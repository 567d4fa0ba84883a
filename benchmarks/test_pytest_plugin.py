"""The pytest plugin's overhead against pytest-memray: collected from ``bench_pytest_plugin.py``.

The comparison itself is written by the pytest-plugin work (``benchmarks/bench_pytest_plugin.py``);
this test collects its saved results (``benchmarks/results/pytest_plugin.json``,
with the machine and date they were measured on) or, when there are none,
runs it in a fresh interpreter and keeps the last JSON object it prints, so
``docs/benchmarks.md`` shows it next to the other figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "bench_pytest_plugin.py")
SAVED = os.path.join(HERE, "results", "pytest_plugin.json")  # what the script saves

pytestmark = pytest.mark.overhead


def _last_json(text: str) -> object:
    decoder = json.JSONDecoder()
    found: object = None
    i = 0
    while True:
        i = text.find("{", i)
        if i < 0:
            return found
        try:
            found, end = decoder.raw_decode(text, i)
            i = end
        except ValueError:
            i += 1


def test_pytest_plugin_vs_pytest_memray(bench_results: dict[str, object]) -> None:
    """The comparison's figures are collected: its saved results, or a fresh run when none are saved."""
    if os.path.exists(SAVED):
        with open(SAVED) as f:
            data = json.load(f)
        assert isinstance(data, dict) and "overhead" in data
        data.setdefault("measured", data.get("machine"))
        bench_results["pytest_plugin"] = data
        return
    if not os.path.exists(SCRIPT):
        bench_results["pytest_plugin"] = {"unavailable": "benchmarks/bench_pytest_plugin.py is not there yet"}
        pytest.skip("benchmarks/bench_pytest_plugin.py is not there yet")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(os.path.dirname(HERE), "src") + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, SCRIPT],
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
        cwd=os.path.dirname(HERE),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = _last_json(proc.stdout)
    assert isinstance(data, dict), proc.stdout[-2000:]
    bench_results["pytest_plugin"] = data
