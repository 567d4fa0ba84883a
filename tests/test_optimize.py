from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator

import pytest

import hivemem
from hivemem import AGGRESSIVE, CHEAP, MODERATE, MemoryGovernor, Registry, StrategyResult
from hivemem.testing import FakeReader

MiB = 2**20


class Frees:
    """A fake strategy that 'returns' a fixed amount through the fake reader."""

    def __init__(
        self, reader: FakeReader, name: str, nbytes: int, priority: int = 50, aggressiveness: object = CHEAP
    ) -> None:
        self.reader, self.name, self.nbytes = reader, name, nbytes
        self.priority, self.aggressiveness = priority, aggressiveness
        self.calls = 0

    def apply(self, ctx: hivemem.StrategyContext) -> StrategyResult:
        self.calls += 1
        self.reader.free(self.nbytes)
        return StrategyResult(f"freed {self.nbytes}", stats={"n": self.nbytes})


class Boom:
    name, priority, aggressiveness = "boom", 20, CHEAP

    def apply(self, ctx: object) -> None:
        raise RuntimeError("kaboom")


def gov(reader: FakeReader, registry: Registry, **kw: object) -> MemoryGovernor:
    return MemoryGovernor(reader=reader, registry=registry, **kw)  # type: ignore[arg-type]


@contextlib.contextmanager
def _hivemem_log_off() -> Iterator[None]:
    """The hivemem logger silenced: a test whose strategy raises on purpose prints no traceback."""
    logging.getLogger("hivemem").disabled = True
    try:
        yield
    finally:
        logging.getLogger("hivemem").disabled = False


def test_freed_is_measured_by_governor(reader: FakeReader, registry: Registry) -> None:
    """Each step's freed is the reader's RSS drop around apply(), not what the strategy claims."""
    registry.register(Frees(reader, "a", 100 * MiB, 10))
    registry.register(Frees(reader, "b", 50 * MiB, 20))
    report = gov(reader, registry).optimize()
    assert [s.name for s in report.steps] == ["a", "b"]
    assert report.step("a").freed == 100 * MiB
    assert report.step("b").freed == 50 * MiB
    assert report.freed == 150 * MiB
    assert report.before.rss == 500 * MiB and report.after.rss == 350 * MiB
    assert report.target is None and report.reached is None


def test_stops_as_soon_as_target_met(reader: FakeReader, registry: Registry) -> None:
    """Once RSS <= target, later strategies are skipped with 'target reached' and not called."""
    a, b = Frees(reader, "a", 200 * MiB, 10), Frees(reader, "b", 50 * MiB, 20)
    registry.register(a)
    registry.register(b)
    report = gov(reader, registry).optimize(target_mb=300)
    assert report.reached is True
    assert a.calls == 1 and b.calls == 0
    assert report.step("b").skipped == "target reached"
    assert report.step("b").freed is None


def test_target_boundary_is_inclusive(reader: FakeReader, registry: Registry) -> None:
    """RSS exactly at the target counts as reached; nothing runs."""
    a = Frees(reader, "a", MiB)
    registry.register(a)
    report = gov(reader, registry).optimize(target="500MB")
    assert report.reached is True and a.calls == 0


def test_not_reached_is_explained(reader: FakeReader, registry: Registry) -> None:
    """When the target is missed, reached is False and the report says why in words."""
    registry.register(Frees(reader, "a", 10 * MiB))
    report = gov(reader, registry).optimize(target_mb=100)
    assert report.reached is False
    assert "over the target 100.0 MiB" in report.explanation
    assert "why:" in str(report)


def test_failing_strategy_recorded_and_pass_continues(reader: FakeReader, registry: Registry) -> None:
    """A strategy that raises becomes step.error; later strategies still run; nothing propagates."""
    after = Frees(reader, "after", 10 * MiB, 30)
    registry.register(Boom())
    registry.register(after)
    with _hivemem_log_off():
        report = gov(reader, registry).optimize()
    assert report.step("boom").error == "RuntimeError: kaboom"
    assert after.calls == 1
    assert report.errors == [report.step("boom")]
    assert "error: RuntimeError: kaboom" in str(report)


def test_aggressiveness_gates_strategies(reader: FakeReader, registry: Registry) -> None:
    """A strategy runs only when the pass is at least as aggressive as it requires."""
    cheap = Frees(reader, "cheap", MiB, 10, CHEAP)
    mod = Frees(reader, "mod", MiB, 20, MODERATE)
    agg = Frees(reader, "agg", MiB, 30, AGGRESSIVE)
    for s in (cheap, mod, agg):
        registry.register(s)
    report = gov(reader, registry).optimize(aggressiveness="moderate")
    assert (cheap.calls, mod.calls, agg.calls) == (1, 1, 0)
    assert "runs at aggressive" in (report.step("agg").skipped or "")
    gov(reader, registry).optimize(aggressiveness=AGGRESSIVE)
    assert agg.calls == 1


def test_disabled_and_subset(reader: FakeReader, registry: Registry) -> None:
    """Disabled strategies are skipped as 'disabled'; strategies= limits the pass."""
    a, b = Frees(reader, "a", MiB, 10), Frees(reader, "b", MiB, 20)
    registry.register(a)
    registry.register(b)
    registry.disable("a")
    report = gov(reader, registry).optimize()
    assert report.step("a").skipped == "disabled" and a.calls == 0 and b.calls == 1
    registry.enable("a")
    report = gov(reader, registry).optimize(strategies=["a"])
    assert [s.name for s in report.steps] == ["a"] and a.calls == 1


def test_bad_arguments_raise_before_anything_runs(reader: FakeReader, registry: Registry) -> None:
    """Unknown names, bad sizes, bad levels and both targets raise; no strategy is called."""
    a = Frees(reader, "a", MiB)
    registry.register(a)
    g = gov(reader, registry)
    with pytest.raises(hivemem.UnknownStrategy):
        g.optimize(strategies=["a", "nope"])
    with pytest.raises(hivemem.InvalidSize, match="'90 MBs'"):
        g.optimize(target="90 MBs")
    with pytest.raises(hivemem.InvalidArgument, match="'extreme'"):
        g.optimize(aggressiveness="extreme")
    with pytest.raises(hivemem.InvalidArgument, match="not both"):
        g.optimize(90, target="90MB")
    with pytest.raises(hivemem.InvalidArgument, match="dry_run"):
        g.optimize(dry_run="yes")  # type: ignore[arg-type]
    assert a.calls == 0


def test_dry_run_changes_nothing(reader: FakeReader, registry: Registry) -> None:
    """dry_run lists what would run without calling any strategy."""
    a = Frees(reader, "a", MiB)
    registry.register(a)
    report = gov(reader, registry).optimize(dry_run=True)
    assert a.calls == 0 and report.step("a").skipped == "dry run" and report.dry_run


def test_strategy_can_decline(reader: FakeReader, registry: Registry) -> None:
    """A strategy returning StrategyResult.skip() is recorded as skipped with its reason, RSS still read."""

    class Declines:
        name, priority, aggressiveness = "declines", 1, CHEAP

        def apply(self, ctx: object) -> StrategyResult:
            return StrategyResult.skip("nothing registered")

    registry.register(Declines())
    step = gov(reader, registry).optimize().step("declines")
    assert (
        step.skipped == "nothing registered" and step.freed is None
    )  # no credit for RSS that moved by itself
    assert step.rss_before is not None and step.rss_after is not None


def test_reentrant_optimize_is_recorded(reader: FakeReader, registry: Registry) -> None:
    """A strategy calling optimize() gets ReentrantOptimize, recorded as its error (no deadlock)."""

    class Reenters:
        name, priority, aggressiveness = "reenters", 1, CHEAP

        def apply(self, ctx: object) -> None:
            gov(reader, registry).optimize()

    registry.register(Reenters())
    step = gov(reader, registry).optimize().step("reenters")
    assert step.error is not None and step.error.startswith("ReentrantOptimize")


def test_concurrent_calls_are_serialized(reader: FakeReader, registry: Registry) -> None:
    """Passes from many threads never overlap."""
    active = 0
    overlaps = 0
    lock = threading.Lock()

    class Slow:
        name, priority, aggressiveness = "slow", 1, CHEAP

        def apply(self, ctx: object) -> None:
            nonlocal active, overlaps
            with lock:
                active += 1
                overlaps += active > 1
            time.sleep(0.005)
            with lock:
                active -= 1

    registry.register(Slow())
    g = gov(reader, registry)
    reports: list[hivemem.OptimizationReport] = []

    def worker() -> None:
        for _ in range(5):
            reports.append(g.optimize())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert overlaps == 0
    assert len(reports) == 40 and all(r.step("slow").error is None for r in reports)


def test_report_exports(reader: FakeReader, registry: Registry) -> None:
    """to_dict/to_json are JSON-safe, the repr is a table, _repr_html_ escapes."""
    registry.register(Frees(reader, "a", MiB))
    report = gov(reader, registry).optimize(target_mb=499.5)
    data = json.loads(report.to_json())
    assert data["steps"][0]["name"] == "a" and data["steps"][0]["freed"] == MiB
    assert data["reached"] is True
    text = repr(report)
    assert "step" in text and "freed (RSS)" in text and "target 499.5 MiB: reached" in text
    html = report._repr_html_()
    assert html.count("<tr>") == 2
    with pytest.raises(AttributeError):
        report.target = 1  # type: ignore[misc]


def test_listeners_receive_reports(reader: FakeReader, registry: Registry) -> None:
    """add_listener callbacks get every report; a raising listener does not break the pass."""
    seen: list[hivemem.OptimizationReport] = []

    def bad(report: object) -> None:
        raise ValueError("listener bug")

    hivemem.add_listener(seen.append)
    hivemem.add_listener(bad)
    try:
        with _hivemem_log_off():
            report = gov(reader, registry).optimize()
    finally:
        hivemem.remove_listener(seen.append)
        hivemem.remove_listener(bad)
    assert seen == [report]
    with pytest.raises(hivemem.InvalidArgument):
        hivemem.add_listener("not callable")  # type: ignore[arg-type]


def test_progress_callbacks(reader: FakeReader, registry: Registry) -> None:
    """on_step_start and on_step fire in order for each step."""
    registry.register(Frees(reader, "a", MiB, 1))
    registry.register(Frees(reader, "b", MiB, 2))
    events: list[str] = []
    gov(reader, registry).optimize(
        on_step_start=lambda n: events.append(f"start {n}"), on_step=lambda s: events.append(f"done {s.name}")
    )
    assert events == ["start a", "done a", "start b", "done b"]


def test_governor_repr_and_reader_check(reader: FakeReader, registry: Registry) -> None:
    """The repr shows live state; a reader without rss()/usage() is rejected."""
    g = gov(reader, registry, target="90MB")
    assert (
        repr(g)
        == "MemoryGovernor(target='90.0 MiB', rss='500.0 MiB', strategies=0, aggressiveness='moderate')"
    )
    with pytest.raises(hivemem.InvalidArgument, match="rss"):
        MemoryGovernor(reader=object())
    with pytest.raises(hivemem.InvalidArgument, match="Registry"):
        MemoryGovernor(registry=[])  # type: ignore[arg-type]


def test_real_optimize_runs_builtins() -> None:
    """hivemem.optimize() with the real reader runs gc then trim and measures both."""
    report = hivemem.optimize(strategies=["gc", "trim"])
    assert [s.name for s in report.steps] == ["gc", "trim"]
    gc_step = report.step("gc")
    assert gc_step.error is None and gc_step.freed is not None
    assert "collected" in gc_step.summary


def test_each_step_is_told_the_bytes_still_needed(reader: FakeReader, registry: Registry) -> None:
    """ctx.needed is RSS just before the step minus the target, shrinking as steps free memory."""
    seen: list[tuple[str, int | None]] = []

    class Records(Frees):
        def apply(self, ctx: hivemem.StrategyContext) -> StrategyResult:
            seen.append((self.name, ctx.needed))
            return super().apply(ctx)

    reader.set(500 * MiB)
    registry.register(Records(reader, "first", 150 * MiB, priority=10))
    registry.register(Records(reader, "second", 100 * MiB, priority=20))
    gov(reader, registry, target="200MB").optimize()
    assert seen == [("first", 300 * MiB), ("second", 150 * MiB)]
    seen.clear()
    reader.set(500 * MiB)
    gov(reader, registry).optimize()  # no target: nothing is "needed"
    assert seen == [("first", None), ("second", None)]
