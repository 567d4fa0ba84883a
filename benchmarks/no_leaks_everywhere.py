"""A pytest plugin for the benchmarks: ``@pytest.mark.no_leaks`` on every collected test, verdicts to JSON.

Loaded with ``-p no_leaks_everywhere`` (this directory on ``PYTHONPATH``) by
``bench_leaks.py`` when it runs a third-party suite. The marker is added in a
``pytest_collection_modifyitems`` hook that runs before hivemem's own (which
then sees the markers and activates its runner), with the marker's default
arguments unless ``HIVEMEM_NO_LEAKS_ARGS`` holds JSON keyword arguments.

At the end of the session the leak summary of every test (what hivemem
attaches to the call report) is written to the file named by
``HIVEMEM_NO_LEAKS_OUT``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

_RESULTS: dict[str, dict[str, Any]] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kwargs = json.loads(os.environ.get("HIVEMEM_NO_LEAKS_ARGS", "{}") or "{}")
    for item in items:
        item.add_marker(pytest.mark.no_leaks(**kwargs))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    rec = _RESULTS.setdefault(report.nodeid, {"nodeid": report.nodeid, "outcome": "passed", "duration": 0.0})
    rec["duration"] += report.duration
    data = getattr(report, "hivemem", None)
    if data and "leak" in data:
        rec["leak"] = data["leak"]
    if report.when == "call":
        rec["outcome"] = report.outcome
        if report.outcome == "failed":
            rec["longrepr"] = str(report.longrepr)[-3000:]
    elif report.outcome != "passed":
        rec["outcome"] = f"{report.when}-{report.outcome}"


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("HIVEMEM_NO_LEAKS_OUT")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(sorted(_RESULTS.values(), key=lambda r: r["nodeid"]), f, indent=1)
