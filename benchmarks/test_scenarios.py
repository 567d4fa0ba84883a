"""Every scenario, floor and baseline in fresh interpreters: answers unchanged, reclaim measured."""

from __future__ import annotations

import pytest

import harness


def _selected(config_only: str) -> list[str]:
    names = harness.scenario_names()
    if config_only:
        wanted = {n.strip() for n in config_only.split(",") if n.strip()}
        names = [n for n in names if n in wanted]
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "scenario" in metafunc.fixturenames:
        metafunc.parametrize("scenario", _selected(metafunc.config.getoption("--bench-only")))


def test_scenario(scenario: str, bench_results: dict[str, object], bench_repeat: int) -> None:
    """Every baseline leaves the answers identical; optimize() reaches reclaim >= 0.9 where targeted,
    unless the scenario says honestly (WHY) why it cannot."""
    res = harness.run_scenario(scenario, repeat=bench_repeat)
    bench_results["scenarios"][scenario] = res  # type: ignore[index]
    baselines = res["baselines"]
    assert isinstance(baselines, dict)
    for mode, r in baselines.items():
        if "unavailable" not in r:
            assert r["checksum_ok"], f"{scenario}/{mode}: the answers changed"
    opt = baselines["optimize"]
    if res["targeted"] and not res["why"]:
        assert opt["reclaim"] is not None and opt["reclaim"] >= 0.9, opt.get("report_text")
    for phrase in getattr(harness.load(scenario), "EXPECT_IN_WHY", ()):
        assert phrase in opt["report"]["explanation"], opt.get("report_text")  # says what would help
    for mode in ("nothing", "optimize"):  # RSS in parts: they add up to the RSS read around them
        r = baselines[mode]
        if "parts" in r:
            assert r["parts_summed"] == r["parts"]["total"], r["parts"]
            assert abs(r["parts"]["total"] - r["parts_rss"]) <= 0.01 * r["parts_rss"], r["parts"]


def test_composite_reaches_the_headline(
    request: pytest.FixtureRequest, bench_results: dict[str, object], bench_repeat: int
) -> None:
    """The composite app: ~1.7 GB before, < 100 MB after optimize(target_mb=90) in <= 2 s, same answers."""
    if "composite" not in _selected(request.config.getoption("--bench-only")):
        pytest.skip("composite not selected (--bench-only)")
    scenarios = bench_results["scenarios"]
    assert isinstance(scenarios, dict)
    res = scenarios.get("composite") or harness.run_scenario("composite", repeat=bench_repeat)
    scenarios["composite"] = res
    opt = res["baselines"]["optimize"]
    assert opt["before"] > 1.5 * 2**30, opt["before"]
    assert opt["checksum_ok"]
    assert opt["after"] < 100 * 2**20, opt["report_text"]
    assert opt["seconds"] <= 2.0, opt["report_text"]
