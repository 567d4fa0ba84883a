"""The background governor, deterministically: a FakeReader, a fake clock and direct tick() calls."""

from __future__ import annotations

import json
import logging
import random
import sys
import types
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hivemem
from hivemem import AGGRESSIVE, CHEAP, MODERATE, MemoryGovernor, Pressure, Registry, StrategyResult
from hivemem._governor.cpubudget import CpuBudget
from hivemem._governor.thresholds import Thresholds
from hivemem._measure.limits import memory_limit
from hivemem.testing import FakeReader

from .fakecgroup import V1_MOUNT, V2_MOUNT, tree

MiB = 2**20
GiB = 2**30
N, M, H, C = Pressure.NORMAL, Pressure.MODERATE, Pressure.HIGH, Pressure.CRITICAL


class Clock:
    """A fake monotonic clock: advances only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Frees:
    """A fake strategy: 'returns' *nbytes* through the reader and takes *cost* seconds of fake time."""

    def __init__(
        self,
        reader: FakeReader,
        clock: Clock,
        name: str,
        nbytes: int,
        *,
        priority: int = 50,
        aggressiveness: object = CHEAP,
        cost: float = 0.01,
    ) -> None:
        self.reader, self.clock, self.name, self.nbytes, self.cost = reader, clock, name, nbytes, cost
        self.priority, self.aggressiveness = priority, aggressiveness
        self.calls: list[str | None] = []

    def apply(self, ctx: hivemem.StrategyContext) -> StrategyResult:
        self.calls.append(ctx.level)
        self.clock.advance(self.cost)
        self.reader.free(self.nbytes)
        return StrategyResult(f"freed {self.nbytes}")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(
    reader: FakeReader, registry: Registry, clock: Clock, *, limit: object = "1000MB", **kw: object
) -> MemoryGovernor:
    return MemoryGovernor(reader=reader, registry=registry, clock=clock, limit=limit, psi=False, **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- thresholds


def test_default_thresholds_are_dask_like_fractions_of_the_budget(
    reader: FakeReader, registry: Registry
) -> None:
    """Default budget is the whole limit; levels enter at 0.70/0.80/0.95 and release at 0.60/0.70/0.85."""
    gov = MemoryGovernor(reader=reader, registry=registry, limit="1000MB")
    th = gov.thresholds
    assert gov.budget == 1000 * MiB
    assert th.levels == {
        M: (int(700 * MiB), int(600 * MiB)),
        H: (int(800 * MiB), int(700 * MiB)),
        C: (int(950 * MiB), int(850 * MiB)),
    }


@pytest.mark.parametrize(
    ("budget", "expected"),
    [(0.5, 500 * MiB), ("50%", 500 * MiB), ("200MB", 200 * MiB), (300 * MiB, 300 * MiB), (1.0, 1000 * MiB)],
)
def test_budget_is_a_size_or_a_fraction_of_the_limit(
    reader: FakeReader, registry: Registry, budget: object, expected: int
) -> None:
    """A float in (0, 1] or 'N%' is a fraction of the limit; ints and unit strings are sizes."""
    assert MemoryGovernor(reader=reader, registry=registry, limit="1000MB", budget=budget).budget == expected


def test_absolute_thresholds_only_create_the_levels_named(reader: FakeReader, registry: Registry) -> None:
    """'high at 500 MB, critical at 800 MB': no MODERATE level; release defaults to 90% of entry."""
    gov = MemoryGovernor(
        reader=reader,
        registry=registry,
        limit="2GB",
        thresholds={"high": "500MB", "critical": ("800MB", "600MB")},
    )
    assert gov.thresholds.levels == {H: (500 * MiB, 450 * MiB), C: (800 * MiB, 600 * MiB)}
    th = gov.thresholds
    assert th.classify(499 * MiB, N) == N
    assert th.classify(500 * MiB, N) == H
    assert th.classify(449 * MiB, H) == N  # no MODERATE to fall into


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"interval": 0}, "interval=0"),
        ({"interval": -1}, "interval=-1"),
        ({"interval": "fast"}, "interval='fast'"),
        ({"thresholds": {"high": "500MB", "critical": "400MB"}}, "out of order"),
        ({"thresholds": {"high": ("500MB", "500MB")}}, "below its entry"),
        (
            {"thresholds": {"moderate": ("300MB", "200MB"), "high": ("500MB", "100MB")}},
            "release thresholds out of",
        ),
        ({"thresholds": {"critical": "2000MB"}}, "above the memory limit"),
        ({"thresholds": {"normal": 0.5}}, "NORMAL"),
        ({"thresholds": {"panic": 0.5}}, "invalid pressure level 'panic'"),
        ({"thresholds": {"high": 1.5}}, "fraction of the budget"),
        ({"thresholds": {"high": "12 parsecs"}}, "invalid size"),
        ({"thresholds": {}}, "expected a dict"),
        ({"budget": "2000MB"}, "budget 2.0 GiB is above the memory limit"),
        ({"budget": 0}, "0 bytes"),
        ({"budget": 1.5}, "fraction"),
        ({"budget": "150%"}, "percentage"),
        ({"target": "1500MB", "budget": 0.5}, "target 1.5 GiB is above"),
        ({"escalation": "panic"}, "escalation='panic'"),
        ({"escalation": "callback"}, "needs on_escalate"),
        ({"on_escalate": 5}, "on_escalate=5: expected a callable"),
        ({"exit_code": 300}, "exit_code=300"),
        ({"cpu_budget": 0}, "cpu_budget=0"),
        ({"cpu_budget": 1.5}, "cpu_budget=1.5"),
        ({"cpu_window": 0}, "cpu_window=0"),
        ({"psi": "yes"}, "psi='yes'"),
        ({"psi_trigger": "some 1 100"}, "window must be"),
        ({"after_fork": "continue"}, "after_fork='continue'"),
        ({"demote_after": 0}, "demote_after=0"),
        ({"never_demote": "hooks"}, "list of strategy names"),
        ({"level_aggressiveness": {"normal": "cheap"}}, "nothing runs at NORMAL"),
        ({"limit": "lots"}, "limit: invalid size"),
        ({"spike_window": 0}, "spike_window=0"),
        ({"interval": float("inf")}, "interval=inf"),
        ({"interval": float("nan")}, "interval=nan"),
        ({"interval": 10**30}, "interval=1000000000000000000000000000000"),
        ({"interval": 10**400}, "interval=1000"),
        ({"interval": 0}, "interval=0"),
        ({"interval": True}, "interval=True"),
        ({"max_interval": float("inf")}, "max_interval=inf"),
        ({"min_interval": 0}, "min_interval=0"),
        ({"min_interval": 2.0}, "min_interval=2.0"),
        ({"interval": 0.5, "max_interval": 0.2}, "max_interval=0.2 is below interval=0.5"),
        ({"spike_window": float("inf")}, "spike_window=inf"),
        ({"cpu_window": float("inf")}, "cpu_window=inf"),
        ({"cpu_budget": float("nan")}, "cpu_budget=nan"),
        ({"psi": 0}, "psi=0"),
        ({"psi": 1}, "psi=1"),
        ({"notify": 0}, "notify=0"),
        ({"notify": "yes"}, "notify='yes'"),
        ({"adaptive": 1}, "adaptive=1"),
        ({"exit_code": True}, "exit_code=True"),
        ({"exit_code": -1}, "exit_code=-1"),
        ({"max_events": 0}, "max_events=0"),
        ({"max_events": 10**12}, "max_events=1000000000000"),
        ({"retry_every": 2.5}, "retry_every=2.5"),
        ({"switch_interval": 0}, "switch_interval=0"),
        ({"switch_interval": 1.0}, "switch_interval=1.0"),
        ({"headroom": 1.5}, "headroom="),
        ({"headroom": "2000MB"}, "headroom='2000MB'"),
        ({"never_demote": [1, 2]}, "list of strategy names"),
        ({"never_demote": [[1]]}, "list of strategy names"),
        ({"level_aggressiveness": ["high"]}, "level_aggressiveness=\\['high'\\]: expected a dict"),
        ({"clock": 5}, "clock=5: expected a callable"),
        ({"cpu_clock": "now"}, "cpu_clock='now': expected a callable"),
    ],
)
def test_impossible_settings_fail_at_construction(
    reader: FakeReader, registry: Registry, kwargs: dict[str, object], match: str
) -> None:
    """Every bad option raises InvalidArgument (a ValueError) naming the value, before anything starts."""
    kwargs.setdefault("limit", "1000MB")
    with pytest.raises(hivemem.InvalidArgument, match=match):
        MemoryGovernor(reader=reader, registry=registry, **kwargs)  # type: ignore[arg-type]


def test_a_bad_min_yield_is_an_invalid_size(reader: FakeReader, registry: Registry) -> None:
    """min_yield is a size: a bad one raises InvalidSize naming the option."""
    with pytest.raises(hivemem.InvalidSize, match="min_yield"):
        MemoryGovernor(reader=reader, registry=registry, limit="1000MB", min_yield="lots")


def test_interval_keeps_its_meaning_and_pacing_defaults(reader: FakeReader, registry: Registry) -> None:
    """interval alone caps every wait; left out, waits run 2 ms-1 s at NORMAL and up to 0.1 s above."""
    fixed = MemoryGovernor(reader=reader, registry=registry, limit="1000MB", interval=0.05)
    assert (fixed.min_interval, fixed.interval, fixed.max_interval) == (0.002, 0.05, 0.05)
    paced = MemoryGovernor(reader=reader, registry=registry, limit="1000MB")
    assert (paced.min_interval, paced.interval, paced.max_interval) == (0.002, 0.1, 1.0)
    both = MemoryGovernor(reader=reader, registry=registry, limit="1000MB", interval=0.2, max_interval=5)
    assert (both.interval, both.max_interval) == (0.2, 5.0)
    tiny = MemoryGovernor(reader=reader, registry=registry, limit="1000MB", interval=0.001)
    assert tiny.min_interval == 0.001


LEVELS = {M: (700, 600), H: (800, 700), C: (950, 850)}


@pytest.mark.parametrize(
    ("value", "current", "expected"),
    [
        (0, N, N),
        (699, N, N),
        (700, N, M),
        (799, N, M),
        (800, N, H),
        (949, N, H),
        (950, N, C),
        (650, M, M),  # between release and entry: stays
        (600, M, M),  # exactly at release: stays
        (599, M, N),
        (750, H, H),  # above HIGH's release 700: stays HIGH though below its entry
        (699, H, M),  # below HIGH's release, above MODERATE's: one step down
        (599, H, N),
        (900, C, C),
        (849, C, H),
        (10, C, N),
        (960, M, C),  # up is never delayed
    ],
)
def test_classify_hysteresis_boundaries(value: int, current: Pressure, expected: Pressure) -> None:
    """Up at the entry threshold; down only below the current level's release threshold."""
    assert Thresholds(1000, LEVELS).classify(value, current) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=1100), min_size=1, max_size=200))
def test_every_level_change_is_justified(values: list[int]) -> None:
    """Property: a rise needs the entry threshold reached; a fall needs the old level's release crossed."""
    th = Thresholds(1000, LEVELS)
    level = N
    for v in values:
        new = th.classify(v, level)
        if new > level:
            assert v >= th.enter(new)
        elif new < level:
            assert v < th.release(level)
            if new > N:
                assert v >= th.release(new)
        else:
            assert level == N or v >= th.release(level) or False
        level = new


def test_noisy_sawtooth_does_not_flap(reader: FakeReader, registry: Registry, clock: Clock) -> None:
    """RSS sawing 690-760 MB with noise around MODERATE's 700 MB entry: one level change, not dozens."""
    gov = make(reader, registry, clock)
    rng = random.Random(5)
    naive_changes = 0
    naive_above = False
    for i in range(2000):
        saw = 690 + (i % 50) * 1.4  # 690 .. 758.6 MB, then drops back
        rss = int((saw + rng.uniform(-15, 15)) * MiB)
        reader.set(rss)
        gov.tick()
        clock.advance(0.1)
        above = rss >= 700 * MiB
        naive_changes += above != naive_above
        naive_above = above
    changes = [e for e in gov.events if e.kind == "level"]
    assert naive_changes > 100  # a single threshold would have flapped this often
    assert len(changes) == 1 and changes[0].data["to"] == "moderate"
    assert gov.level == M


# ----------------------------------------------------------------------------- acting


def test_each_level_runs_its_aggressiveness_and_passes_the_level_name(
    reader: FakeReader, registry: Registry, clock: Clock
) -> None:
    """MODERATE runs cheap, HIGH moderate, CRITICAL aggressive strategies; ctx.level names the level."""
    cheap = Frees(reader, clock, "cheap", 0, priority=10, aggressiveness=CHEAP)
    mod = Frees(reader, clock, "mod", 0, priority=20, aggressiveness=MODERATE)
    agg = Frees(reader, clock, "agg", 0, priority=30, aggressiveness=AGGRESSIVE)
    for s in (cheap, mod, agg):
        registry.register(s)
    gov = make(reader, registry, clock, adaptive=False)
    for rss, level in (("720MB", M), ("820MB", H), ("960MB", C)):
        reader.set(rss)
        assert gov.tick() == level
        clock.advance(60)  # let the CPU bucket drain
    assert cheap.calls == ["moderate", "high", "critical"]
    assert mod.calls == ["high", "critical"]
    assert agg.calls == ["critical"]
    acts = [e for e in gov.events if e.kind == "act"]
    assert [e.data["aggressiveness"] for e in acts] == ["cheap", "moderate", "aggressive"]


def test_stops_below_the_release_threshold_and_drops_level(
    reader: FakeReader, registry: Registry, clock: Clock
) -> None:
    """A pass at HIGH aims at HIGH's release (700 MB): later strategies are skipped once it is reached."""
    a = Frees(reader, clock, "a", 150 * MiB, priority=10)
    b = Frees(reader, clock, "b", 100 * MiB, priority=20)
    registry.register(a)
    registry.register(b)
    reader.set("820MB")
    gov = make(reader, registry, clock)
    assert gov.tick() == M  # 670 MB after the pass: below HIGH's release, above MODERATE's
    assert len(a.calls) == 1 and b.calls == []
    act = next(e for e in gov.events if e.kind == "act")
    assert (act.rss_before, act.rss_after, act.data["target"]) == (820 * MiB, 670 * MiB, 700 * MiB)
    assert act.steps[1].skipped == "target reached"
    assert [e.data["to"] for e in gov.events if e.kind == "level"] == ["high", "moderate"]


def test_normal_level_never_runs_anything(reader: FakeReader, registry: Registry, clock: Clock) -> None:
    """Below every threshold a tick reads RSS once and runs nothing: no events, no reader.usage()."""
    s = Frees(reader, clock, "s", MiB)
    registry.register(s)
    reader.set("300MB")
    gov = make(reader, registry, clock)
    before = reader.reads
    for _ in range(100):
        gov.tick()
    assert s.calls == [] and gov.events == ()
    assert reader.reads - before == 100


def test_events_are_frozen_json_safe_bounded_and_logged(
    reader: FakeReader, registry: Registry, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Events carry time/level/RSS/steps/seconds, are JSON-safe, capped at max_events, and logged."""
    registry.register(Frees(reader, clock, "a", 0, cost=0.002))
    gov = make(reader, registry, clock, max_events=5, adaptive=False, cpu_budget=1.0)
    caplog.set_level(logging.DEBUG, logger="hivemem")
    reader.set("720MB")
    for _ in range(20):
        gov.tick()
        clock.advance(0.1)
    events = gov.events
    assert len(events) == 5 and all(e.kind == "act" for e in events)
    e = events[-1]
    assert e.level == "moderate" and e.rss_before == e.rss_after == 720 * MiB
    assert e.seconds == pytest.approx(0.002) and e.time == pytest.approx(clock.now - 0.1)
    assert [s.name for s in e.steps] == ["a"]
    json.dumps([ev.to_dict() for ev in events])
    with pytest.raises(AttributeError):
        e.kind = "x"  # type: ignore[misc]
    assert "[moderate] act: RSS 720.0 MiB -> 720.0 MiB" in repr(e)
    logged = [r for r in caplog.records if r.name == "hivemem"]
    assert any("level" in r.getMessage() and r.levelno == logging.INFO for r in logged)
    assert sum("act" in r.getMessage() for r in logged) == 20


def test_subscribers_see_every_event_and_a_raising_one_is_logged(
    reader: FakeReader, registry: Registry, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """subscribe(fn) gets each event; a subscriber that raises is logged and the others still run."""
    gov = make(reader, registry, clock)
    seen: list[str] = []

    def bad(event: object) -> None:
        raise RuntimeError("exporter down")

    gov.subscribe(bad)
    gov.subscribe(lambda ev: seen.append(ev.kind))
    reader.set("720MB")
    gov.tick()
    assert seen == ["level"]
    assert "exporter down" in caplog.text
    gov.unsubscribe(bad)
    gov.unsubscribe(bad)  # unknown: ignored
    reader.set("100MB")
    gov.tick()
    assert seen == ["level", "level"]
    with pytest.raises(hivemem.InvalidArgument):
        gov.subscribe(3)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- CPU budget


def test_cpu_bucket_allows_a_burst_then_refills_at_share(clock: Clock) -> None:
    """Capacity is share*window; work fills the bucket; it drains at share seconds per second."""
    b = CpuBudget(0.05, 10.0, clock=clock)
    assert b.capacity == pytest.approx(0.5)
    assert b.available()
    b.charge(0.4)
    assert b.available()
    b.charge(0.3)  # 0.7 > 0.5: closed
    assert not b.available()
    assert b.available(reserve=1.0)  # an emergency may overdraw up to 2x capacity
    assert b.refill_in() == pytest.approx(4.0, abs=1e-6)  # (0.7 - 0.5) / 0.05
    clock.advance(3.9)
    assert not b.available()
    clock.advance(0.2)
    assert b.available()
    clock.advance(1000)
    b.charge(0)
    assert b.level == 0.0 and b.spent_total == pytest.approx(0.7)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=2.0), min_size=1, max_size=300), st.floats(0.01, 0.5))
def test_cpu_bucket_caps_the_long_run_share(costs: list[float], share: float) -> None:
    """Property: work started only while available() never exceeds share*T + capacity + one pass."""
    clock = Clock()
    b = CpuBudget(share, 10.0, clock=clock)
    start, work = clock.now, 0.0
    for cost in costs:
        if b.available():
            clock.advance(cost)
            b.charge(cost)
            work += cost
        clock.advance(0.1)
    elapsed = clock.now - start
    assert work <= share * elapsed + b.capacity + max(costs) + 1e-9


def test_governor_throttles_when_the_cpu_budget_is_spent(
    reader: FakeReader, registry: Registry, clock: Clock
) -> None:
    """A strategy costing 1 s that frees nothing may not run more than 5% of 100 s (+ the burst)."""
    s = Frees(reader, clock, "slow", 0, cost=1.0)
    registry.register(s)
    reader.set("720MB")
    gov = make(reader, registry, clock, adaptive=False)
    for _ in range(1000):
        gov.tick()
        clock.advance(0.1)
    assert 4 <= len(s.calls) <= 1 + 0.05 * 101 + 0.5
    assert [e.kind for e in gov.events].count("throttle") >= 1
    assert gov.cpu["spent_total"] == pytest.approx(len(s.calls))


# ----------------------------------------------------------------------------- escalation


def _critical_and_spent(reader: FakeReader, registry: Registry, clock: Clock, **kw: object) -> MemoryGovernor:
    registry.register(Frees(reader, clock, "futile", 0, cost=2.0, aggressiveness=AGGRESSIVE))
    reader.set("990MB")
    return make(reader, registry, clock, adaptive=False, **kw)


def test_escalation_warn_fires_once_per_window_never_storms(
    reader: FakeReader, registry: Registry, clock: Clock
) -> None:
    """Still CRITICAL with the budget spent: one HivememWarning, then none until a CPU window has passed."""
    gov = _critical_and_spent(reader, registry, clock, escalation="warn")
    gov.tick()  # the pass runs and spends the budget
    clock.advance(0.1)
    with pytest.warns(hivemem.HivememWarning, match="stays CRITICAL"):
        gov.tick()
    for _ in range(50):  # 5 s < the 10 s window: silent
        clock.advance(0.1)
        gov.tick()
    assert [e.kind for e in gov.events].count("escalate") == 1
    esc = next(e for e in gov.events if e.kind == "escalate")
    assert esc.data["policy"] == "warn" and "CPU budget is spent" in esc.message


def test_escalation_callback_gets_the_event(reader: FakeReader, registry: Registry, clock: Clock) -> None:
    """escalation='callback' calls on_escalate(event) with the escalate event."""
    got: list[hivemem.GovernorEvent] = []
    gov = _critical_and_spent(reader, registry, clock, escalation="callback", on_escalate=got.append)
    for _ in range(3):
        gov.tick()
        clock.advance(0.1)
    assert len(got) == 1 and got[0].kind == "escalate" and got[0].rss_before == 990 * MiB


def test_escalation_raise_on_the_main_thread(reader: FakeReader, registry: Registry, clock: Clock) -> None:
    """escalation='raise': a tick on the main thread raises MemoryLimitExceeded with usage and limit."""
    gov = _critical_and_spent(reader, registry, clock, escalation="raise")
    gov.tick()
    clock.advance(0.1)
    with pytest.raises(hivemem.MemoryLimitExceeded, match="stays CRITICAL") as info:
        gov.tick()
    assert info.value.usage == 990 * MiB and info.value.limit == 1000 * MiB
    clock.advance(0.1)
    assert gov.tick() == C  # no second raise inside the window


def test_escalation_exit_writes_a_report_and_exits(
    reader: FakeReader,
    registry: Registry,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """escalation='exit': a Fil-style report on stderr, then os._exit(exit_code)."""
    from hivemem._governor import governor as _governor

    codes: list[int] = []
    monkeypatch.setattr(_governor, "_exit", codes.append)
    gov = _critical_and_spent(reader, registry, clock, escalation="exit", exit_code=7)
    gov.tick()
    clock.advance(0.1)
    gov.tick()
    assert codes == [7]
    err = capsys.readouterr().err
    assert "hivemem: out of memory budget, exiting" in err
    assert "critical  enter" in err and "last events:" in err and "futile" in err


def test_escalates_when_nothing_may_run_at_critical(
    reader: FakeReader, registry: Registry, clock: Clock
) -> None:
    """No strategy allowed at CRITICAL: nothing to try, so it escalates at once, CPU budget or not."""
    reader.set("990MB")
    got: list[object] = []
    gov = make(reader, registry, clock, escalation="callback", on_escalate=got.append)
    gov.tick()
    assert len(got) == 1
    assert got[0].data["reason"] == "no strategy is allowed at this level"  # type: ignore[attr-defined]


def test_critical_runs_demoted_strategies_last_and_may_use_the_reserve(
    reader: FakeReader, registry: Registry, clock: Clock
) -> None:
    """At CRITICAL demoted strategies still run (last), and the bucket may be overdrawn to 2x capacity."""
    finisher = Frees(reader, clock, "finisher", 0, priority=10, cost=0.3)
    registry.register(finisher)
    gov = make(reader, registry, clock, demote_after=2)
    reader.set("720MB")
    gov.tick()
    gov.tick()  # ~0.59 s in the bucket: demoted at MODERATE
    gov.tick()  # skipped: demoted, and over capacity anyway
    assert len(finisher.calls) == 2 and gov.strategy_stats["finisher"]["demoted"] is True  # type: ignore[index]
    assert gov.cpu["level"] > gov.cpu["capacity"]
    reader.set("990MB")
    for _ in range(4):
        gov.tick()  # ~0.59 and ~0.87 are under the 1.0 s reserve; ~1.16 is not
    assert finisher.calls[2:] == ["critical", "critical"]
    assert gov.events[-1].kind in ("throttle", "escalate")


# ----------------------------------------------------------------------------- adaptive order


def _adaptive_run(seed_rss: str = "720MB") -> tuple[list[dict[str, object]], list[Frees]]:
    reader, clock, registry = FakeReader(seed_rss), Clock(), Registry(builtins=False, entry_points=False)
    idle = Frees(reader, clock, "idle", 0, priority=10, cost=0.001)
    slow = Frees(reader, clock, "slow", 1 * MiB, priority=20, cost=0.5)
    fast = Frees(reader, clock, "fast", 1 * MiB, priority=30, cost=0.01)
    for s in (idle, slow, fast):
        registry.register(s)
    gov = make(reader, registry, clock, cpu_budget=1.0, demote_after=3, retry_every=4)
    for _ in range(12):
        reader.set(seed_rss)
        gov.tick()
        clock.advance(0.1)
    events = [e.to_dict() for e in gov.events]
    for e in events:
        for step in e["steps"]:  # type: ignore[attr-defined]
            step.pop("cpu_seconds")  # real thread CPU time: the one figure a fake clock cannot fix
    return events, [idle, slow, fast]


def test_adaptive_order_pays_first_demotes_the_useless_and_is_observable() -> None:
    """Best bytes/s first; freeing nothing 3 times demotes (an event); demoted ones retry every 4th pass."""
    events, (idle, _slow, fast) = _adaptive_run()
    acts = [e for e in events if e["kind"] == "act"]
    assert acts[0]["data"]["order"] == ["idle", "slow", "fast"]  # untried: registry order
    assert acts[1]["data"]["order"][:2] == ["fast", "slow"]  # 100 MiB/s before 2 MiB/s
    demotes = [e for e in events if e["kind"] == "demote"]
    assert [d["data"]["strategy"] for d in demotes] == ["idle"]
    assert acts[3]["data"]["demoted"] == ["idle"]
    skipped = [s for s in acts[4]["steps"] if s["name"] == "idle"]
    assert skipped[0]["skipped"].startswith("demoted: freed less than 256.0 KiB in each of its last 3 runs")
    assert len(idle.calls) == 3 + 2  # 12 passes: 3 before demotion, then probation on every 4th
    assert len(fast.calls) == 12


def test_adaptive_order_is_deterministic_under_a_fake_clock() -> None:
    """Two identical runs produce identical event logs, times included."""
    assert _adaptive_run()[0] == _adaptive_run()[0]


def test_a_demoted_strategy_that_pays_again_is_promoted(
    reader: FakeReader, registry: Registry, clock: Clock
) -> None:
    """A demoted strategy that frees memory on probation is promoted (event) and runs every pass again."""
    s = Frees(reader, clock, "sometimes", 0)
    registry.register(s)
    gov = make(reader, registry, clock, demote_after=2, retry_every=2, cpu_budget=1.0)
    for _ in range(3):
        reader.set("720MB")
        gov.tick()
    assert gov.strategy_stats["sometimes"]["demoted"] is True  # type: ignore[index]
    s.nbytes = 10 * MiB
    reader.set("720MB")
    gov.tick()  # probation (2nd eligible pass since demotion): pays
    assert [e.kind for e in gov.events][-1] == "promote"
    assert gov.strategy_stats["sometimes"]["demoted"] is False  # type: ignore[index]


def test_hooks_strategy_is_never_demoted(reader: FakeReader, registry: Registry, clock: Clock) -> None:
    """never_demote (default: 'hooks') keeps release hooks running at their level though they free nothing."""
    hooks = Frees(reader, clock, "hooks", 0, priority=15)
    registry.register(hooks)
    gov = make(reader, registry, clock, demote_after=1, cpu_budget=1.0)
    for _ in range(5):
        gov.tick()
    reader.set("720MB")
    for _ in range(5):
        gov.tick()
    assert len(hooks.calls) == 5 and gov.strategy_stats["hooks"]["demoted"] is False  # type: ignore[index]


def test_release_hooks_fallback_for_a_registry_without_the_hooks_strategy(
    reader: FakeReader, registry: Registry, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no 'hooks' strategy registered, hivemem._reclaim.hooks.run_hooks(level) is called, if loaded."""
    called: list[object] = []
    fake = types.ModuleType("hivemem._reclaim.hooks")
    fake.run_hooks = called.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hivemem._reclaim.hooks", fake)
    registry.register(Frees(reader, clock, "a", 0))
    gov = make(reader, registry, clock)
    reader.set("820MB")
    gov.tick()
    assert called == [H]
    registry.register(Frees(reader, clock, "hooks", 0, priority=1))
    gov.tick()
    assert called == [H]  # the strategy calls them now; no double call


# ----------------------------------------------------------------------------- spikes


def test_rolling_minimum_ignores_short_spikes_but_not_sustained_growth(
    reader: FakeReader, registry: Registry, clock: Clock
) -> None:
    """spike_window=5: a 2 s jump to HIGH changes nothing; 5 s of sustained HIGH does."""
    gov = make(reader, registry, clock, spike_window=5.0)
    reader.set("500MB")
    for _ in range(60):
        gov.tick()
        clock.advance(0.1)
    reader.set("850MB")
    for _ in range(20):  # 2 s spike
        gov.tick()
        clock.advance(0.1)
    assert gov.level == N
    reader.set("500MB")
    gov.tick()
    reader.set("850MB")
    for _ in range(51):
        gov.tick()
        clock.advance(0.1)
    assert gov.level == H
    level_events = [e for e in gov.events if e.kind == "level"]
    assert len(level_events) == 1 and level_events[0].data["baseline"] == 850 * MiB


def test_spike_window_never_hides_critical(reader: FakeReader, registry: Registry, clock: Clock) -> None:
    """CRITICAL is judged on instantaneous RSS: a spike near the limit is what the OOM killer sees."""
    gov = make(reader, registry, clock, spike_window=30.0)
    reader.set("100MB")
    gov.tick()
    reader.set("960MB")
    assert gov.tick() == C


# ----------------------------------------------------------------------------- cgroup-derived budgets


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (  # v2, nested group, leaf says max: the parent's memory.max
            {
                "/proc/self/cgroup": "0::/app.slice/web/worker-3\n",
                "/proc/self/mountinfo": V2_MOUNT,
                "/sys/fs/cgroup/app.slice/web/worker-3/memory.max": "max\n",
                "/sys/fs/cgroup/app.slice/web/memory.max": str(2 * GiB),
            },
            GiB,
        ),
        (  # v2 leaf limit under a larger parent
            {
                "/proc/self/cgroup": "0::/a/b\n",
                "/proc/self/mountinfo": V2_MOUNT,
                "/sys/fs/cgroup/a/b/memory.max": str(GiB),
                "/sys/fs/cgroup/a/memory.max": str(4 * GiB),
            },
            GiB // 2,
        ),
        (  # v1, nested
            {
                "/proc/self/cgroup": "4:memory:/process_api/abc\n",
                "/proc/self/mountinfo": V1_MOUNT,
                "/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes": str(3 * GiB),
                "/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes": str(2**63 - 4096),
            },
            3 * GiB // 2,
        ),
    ],
)
def test_budget_fraction_follows_faked_cgroup_limits(
    tmp_path: Path, reader: FakeReader, registry: Registry, files: dict[str, str], expected: int
) -> None:
    """budget=0.5 of a limit read from faked cgroup v1/v2 files (nested groups, 'max', huge v1 values)."""
    limit = memory_limit(root=tree(tmp_path, files))
    gov = MemoryGovernor(reader=reader, registry=registry, limit=limit, budget=0.5)
    assert gov.budget == expected
    assert "cgroup" in limit.source


def test_unlimited_cgroup_falls_back_to_physical_ram(
    tmp_path: Path, reader: FakeReader, registry: Registry
) -> None:
    """v2 'max' everywhere and a huge v1 value mean no cgroup limit: the budget comes from RAM."""
    root = tree(
        tmp_path,
        {
            "/proc/self/cgroup": "4:memory:/x\n0::/y\n",
            "/proc/self/mountinfo": V2_MOUNT + V1_MOUNT,
            "/sys/fs/cgroup/y/memory.max": "max\n",
            "/sys/fs/cgroup/memory/x/memory.limit_in_bytes": str(2**63 - 4096),
        },
    )
    limit = memory_limit(root=root)
    gov = MemoryGovernor(reader=reader, registry=registry, limit=limit)
    assert limit.source.startswith("physical RAM") and gov.budget == limit.bytes


# ----------------------------------------------------------------------------- misc


def test_repr_shows_budget_and_level_when_configured(
    reader: FakeReader, registry: Registry, clock: Clock
) -> None:
    """The repr adds budget, level and running once the governor has a budget."""
    gov = make(reader, registry, clock)
    assert repr(gov).endswith("budget='1000.0 MiB', level='normal', running=False)")
    assert "<table>" in gov._repr_html_()


def test_a_busy_engine_is_never_waited_on(reader: FakeReader, registry: Registry, clock: Clock) -> None:
    """While another pass holds the engine lock, a tick skips its pass (counted in busy), never blocks."""
    from hivemem._engine import engine as _engine

    registry.register(Frees(reader, clock, "a", 0))
    gov = make(reader, registry, clock)
    reader.set("720MB")
    with _engine._lock:
        assert gov.tick() == M
    assert gov.busy == 1 and gov.passes == 0
