"""hivemem's own costs, and the cost of the 10-1-1 GC recipe (figures, not limits)."""

from __future__ import annotations

import pytest

import overhead

pytestmark = pytest.mark.overhead


def test_import_cost(bench_results: dict[str, object]) -> None:
    """``import hivemem`` stays under 1 MB; a process that ran optimize() once carries <= 3 MB of hivemem."""
    res = overhead.import_cost()
    bench_results["import"] = res
    assert res["import hivemem"]["rss_bytes_over_bare"] < 2**20  # type: ignore[index]
    assert res["import hivemem + optimize()"]["rss_bytes_over_bare"] <= 3 * 2**20  # type: ignore[index]


def test_latency(bench_results: dict[str, object]) -> None:
    """``rss()`` and ``usage()`` latency per call (recorded; rss() is the hot path and must stay < 50 us)."""
    res = overhead.latency()
    bench_results["latency"] = res
    assert res["rss() seconds per call"] < 50e-6


def test_optimize_seconds_per_gib(bench_results: dict[str, object]) -> None:
    """optimize() wall time over 0.4-1.6 GB heaps of live small objects: seconds per GiB (recorded)."""
    res = overhead.optimize_per_gb()
    bench_results["optimize_per_gb"] = res
    assert res["seconds_per_gib"] > 0


def test_recipe_slowdown(bench_results: dict[str, object]) -> None:
    """gc.set_threshold(10, 1, 1) on allocation-heavy loops: its slowdown against CPython's defaults."""
    res = overhead.recipe_slowdown()
    bench_results["recipe_slowdown"] = res
    for w in res["workloads"].values():  # type: ignore[attr-defined]
        assert w["slowdown"] > 1.0  # the recipe is never free; how much it costs is the figure


def test_governor_cpu(bench_results: dict[str, object]) -> None:
    """CPU of a governed idle process over 30 s against its idle twin (figure; sanity bound 1% of a core)."""
    res = overhead.governor_cpu(30.0)
    bench_results["governor_cpu"] = res
    if "unavailable" in res:
        pytest.skip(str(res["unavailable"]))
    # The governor's own target (<= 0.1% of a core) is the governor issue's to meet; here the
    # figure is recorded and only a runaway monitor fails.
    assert res["share_of_one_core"] < 0.01, res
