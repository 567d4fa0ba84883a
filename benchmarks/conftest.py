"""``pytest benchmarks/`` (``make bench``, ``hivemem bench``): run the suite, save one JSON per run.

Each test stores what it measured in the session's results; at the end the
run is written to ``benchmarks/results/runs/<timestamp>.json`` and merged
into ``benchmarks/results/latest.json`` (a scenario or section measured in
this run replaces the old one; the rest is kept with its own date), from
which ``scripts/gen_benchmarks_md.py`` generates ``docs/benchmarks.md``.

Options: ``--bench-repeat N`` (runs per baseline, fastest kept),
``--bench-only a,b`` (only these scenarios), ``--bench-quick`` (scenarios
only, no overhead runs), ``--bench-out FILE`` (also write the run here).
"""

from __future__ import annotations

import datetime
import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

RESULTS: dict[str, object] = {"scenarios": {}}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hivemem benchmarks")
    group.addoption("--bench-repeat", type=int, default=1, help="runs per baseline; the fastest is kept")
    group.addoption("--bench-only", default="", help="comma-separated scenario names (default: all)")
    group.addoption("--bench-quick", action="store_true", help="scenarios only, skip the overhead runs")
    group.addoption("--bench-out", default="", help="also write this run's JSON to this file")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "overhead: an overhead benchmark (skipped by --bench-quick)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--bench-quick"):
        skip = pytest.mark.skip(reason="--bench-quick: scenarios only")
        for item in items:
            if "overhead" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def bench_results() -> dict[str, object]:
    """This run's results, written at the end of the session."""
    return RESULTS


@pytest.fixture(scope="session")
def bench_repeat(request: pytest.FixtureRequest) -> int:
    return max(1, int(request.config.getoption("--bench-repeat")))


def _stamp(section: object) -> object:
    if isinstance(section, dict):
        section.setdefault("measured", harness.machine())
    return section


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    scenarios = RESULTS["scenarios"]
    assert isinstance(scenarios, dict)
    if not scenarios and len(RESULTS) == 1:
        return
    run = {"kind": "hivemem-bench", "machine": harness.machine(), **RESULTS}
    run["scenarios"] = [_stamp(s) for s in scenarios.values()]
    for key, value in RESULTS.items():
        if key != "scenarios":
            run[key] = _stamp(value)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    runs_dir = os.path.join(HERE, "results", "runs")
    os.makedirs(runs_dir, exist_ok=True)
    with open(os.path.join(runs_dir, f"{stamp}.json"), "w") as f:
        json.dump(run, f, indent=2, default=str)
    out = session.config.getoption("--bench-out")
    if out:
        with open(out, "w") as f:
            json.dump(run, f, indent=2, default=str)
    latest_path = os.path.join(HERE, "results", "latest.json")
    latest: dict[str, object] = {"kind": "hivemem-bench", "scenarios": []}
    if os.path.exists(latest_path):
        with open(latest_path) as f:
            latest = json.load(f)
    merged = {s["scenario"]: s for s in latest.get("scenarios", [])}  # type: ignore[attr-defined]
    merged.update({s["scenario"]: s for s in run["scenarios"]})  # type: ignore[attr-defined]
    latest.update({k: v for k, v in run.items() if k != "scenarios"})
    latest["scenarios"] = [merged[k] for k in sorted(merged)]
    with open(latest_path + ".tmp", "w") as f:
        json.dump(latest, f, indent=2, default=str)
    os.replace(latest_path + ".tmp", latest_path)
