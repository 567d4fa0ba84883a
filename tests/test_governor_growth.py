"""The governor under growth, deterministically: growth rate, paced waits, passes ahead of the level,
futile passes, escalation while headroom remains, allocator credit, the switch interval."""

from __future__ import annotations

import math
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hivemem
from hivemem import AGGRESSIVE, CHEAP, MODERATE, MemoryGovernor, Pressure, Registry, StrategyResult
from hivemem._engine.report import StepResult
from hivemem._governor.adaptive import AdaptiveOrder
from hivemem._governor.gilswitch import SwitchInterval
from hivemem._governor.pacing import next_wait
from hivemem._measure.growth import Growth, headroom
from hivemem.testing import FakeReader

from .test_governor import Clock, Frees

MiB = 2**20
N, M, H, C = Pressure.NORMAL, Pressure.MODERATE, Pressure.HIGH, Pressure.CRITICAL


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(reader: FakeReader, registry: Registry, clock: Clock, **kw: object) -> MemoryGovernor:
    kw.setdefault("limit", "1000MB")
    return MemoryGovernor(reader=reader, registry=registry, clock=clock, psi=False, **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- growth rate


def test_growth_rate_is_the_slope_over_the_window() -> None:
    """Readings 10 ms apart, 5 MiB each: 500 MiB/s; one reading gives 0; a clock going back restarts."""
    g = Growth()
    assert g.rate == 0.0
    for i in range(20):
        g.add(i * 0.01, 100 * MiB + i * 5 * MiB)
    assert g.rate == pytest.approx(500 * MiB)
    assert g.seconds_until(200 * MiB, 300 * MiB) == pytest.approx(0.2)
    assert g.seconds_until(300 * MiB, 300 * MiB) == 0.0
    g.add(0.0, 0)  # the clock went back: start over
    assert g.rate == 0.0 and g.seconds_until(0, MiB) == math.inf


def test_growth_forgets_old_readings_but_keeps_two() -> None:
    """A burst after a long idle shows at its second reading; growth that stops shows within a window."""
    g = Growth(window=0.3)
    g.add(0.0, 10 * MiB)
    g.add(5.0, 10 * MiB)  # five idle seconds
    g.add(5.01, 20 * MiB)  # the burst
    assert g.rate == pytest.approx(1000 * MiB, rel=0.01)
    g.add(5.5, 20 * MiB)
    g.add(5.9, 20 * MiB)  # flat for longer than the window
    assert g.rate == 0.0


def test_reclaimed_bytes_do_not_count_as_a_fall_in_demand() -> None:
    """After a pass frees 100 MiB, the rate is still the program's allocation rate, not negative."""
    g = Growth()
    g.add(0.0, 300 * MiB)
    g.add(0.1, 350 * MiB)
    g.reclaimed(100 * MiB)
    g.add(0.2, 300 * MiB)  # 350 + 50 of growth - 100 freed by the governor
    assert g.rate == pytest.approx(500 * MiB)


@settings(max_examples=50, deadline=None)
@given(
    slope=st.floats(-1e9, 1e9),
    start=st.integers(0, 2**40),
    dts=st.lists(st.floats(0.001, 0.2), min_size=2, max_size=200),
)
def test_growth_of_a_straight_line_is_its_slope(slope: float, start: int, dts: list[float]) -> None:
    """Whatever the spacing of the readings, a linear RSS gives back its slope (bytes are whole numbers)."""
    g, t = Growth(), 0.0
    for dt in dts:
        t += dt
        g.add(t, start + int(slope * t))
    # Whole bytes: each reading is off by less than 1 B, so the rate by less than 2 B over the span of
    # the readings the window keeps (about WINDOW seconds, not the whole run).
    kept = g.to_dict()["readings"]
    span = g._times[-1] - g._times[0]
    assert kept >= 2
    assert g.rate == pytest.approx(slope, abs=2.0 / max(span, 1e-3) + 1e-6 * abs(slope))


def test_headroom_is_a_floor_plus_growth_over_the_reaction() -> None:
    """headroom(floor, rate, reaction) = floor + rate * reaction; falling memory adds nothing."""
    assert headroom(12 * MiB, 500 * MiB, 0.05) == 12 * MiB + 25 * MiB
    assert headroom(12 * MiB, -1e9, 0.05) == 12 * MiB


# ----------------------------------------------------------------------------- pacing


@pytest.mark.parametrize(
    ("rss", "rate", "expected"),
    [
        (100, 0.0, 1.0),  # 60% of the budget away: the longest wait
        (600, 0.0, 1.0 * 100 / 250),  # 10% away: proportionally less
        (695, 0.0, 0.02),  # 0.5% away: 20 ms
        (600, 200.0, 100 / 200 / 4),  # growth: the gap takes four waits to cross
        (699, 1e6, 0.002),  # never below the floor
        (800, 0.0, 0.002),  # past the bound
    ],
)
def test_next_wait_is_slow_far_away_and_fast_close(rss: int, rate: float, expected: float) -> None:
    """next_wait: cap scaled by the gap (full at 25% of the budget), gap/rate/4 under growth, floor 2 ms."""
    assert next_wait(rss, 700, 1000, rate, cap=1.0, floor=0.002) == pytest.approx(expected)


def test_an_idle_governor_waits_up_to_max_interval(
    reader: FakeReader, registry: Registry, clock: Clock
) -> None:
    """At half the budget and flat, the next wait is the longest; under pressure at most `interval`."""
    reader.set("500MB")
    gov = make(reader, registry, clock)
    gov.tick()
    assert gov.status()["wait"] == pytest.approx(0.8)  # 20% of the budget from MODERATE
    clock.advance(0.8)
    gov.tick()
    assert gov._wait == pytest.approx(0.8)
    reader.set("750MB")  # MODERATE: the cap is interval (0.1 s)
    clock.advance(0.8)
    gov.tick()
    assert gov.level == M and gov._wait <= 0.1


# ----------------------------------------------------------------------------- passes ahead of the level


class Cache:
    """A registered cache in a fake process: holds *nbytes*, which clearing returns to the OS."""

    name, priority, aggressiveness = "cache", 20, MODERATE

    def __init__(self, reader: FakeReader) -> None:
        self.reader, self.held, self.calls = reader, 0, []  # type: ignore[var-annotated]

    def fill(self, nbytes: int) -> None:
        self.held += nbytes
        self.reader.grow(nbytes)

    def apply(self, ctx: hivemem.StrategyContext) -> StrategyResult:
        self.calls.append(ctx.level)
        self.reader.free(self.held)
        self.held = 0
        return StrategyResult("cleared")


def _cache_and_cheap(
    reader: FakeReader, registry: Registry, clock: Clock, rss: str
) -> tuple[Cache, MemoryGovernor]:
    """A HIGH-level cache and a free CHEAP strategy registered, RSS at *rss*, and the governor."""
    cache = Cache(reader)
    registry.register(cache)
    registry.register(Frees(reader, clock, "cheap", 0, priority=10, aggressiveness=CHEAP, cost=0.001))
    reader.set(rss)
    return cache, make(reader, registry, clock)


def _grow(gov: MemoryGovernor, clock: Clock, cache: Cache, per_tick: int, dt: float, ticks: int) -> None:
    for _ in range(ticks):
        cache.fill(per_tick)
        clock.advance(dt)
        gov.tick()


def test_fast_growth_runs_the_paying_level_before_the_threshold(
    reader: FakeReader, registry: Registry, clock: Clock
) -> None:
    """500 MiB/s toward a 1000 MB limit: the cache (a HIGH-level strategy) is cleared before RSS
    reaches HIGH, by a pass that runs ahead of the measured level; RSS never nears the limit."""
    cache, gov = _cache_and_cheap(reader, registry, clock, "400MB")
    peak = 0
    for _ in range(200):
        _grow(gov, clock, cache, 5 * MiB, 0.01, 1)
        peak = max(peak, reader.rss())
    acts = [e for e in gov.events if e.kind == "act"]
    assert cache.calls and acts
    first = next(e for e in acts if e.data["pass_level"] in ("high", "critical"))
    assert first.rss_before < 800 * MiB  # before HIGH's entry threshold
    assert "ahead of" in first.message
    assert peak < 950 * MiB


def test_slow_growth_waits_for_the_levels(reader: FakeReader, registry: Registry, clock: Clock) -> None:
    """5 MiB/s: nothing is urgent, so no pass runs ahead of its level and the cache is cleared at HIGH."""
    cache = Cache(reader)
    registry.register(cache)
    reader.set("600MB")
    gov = make(reader, registry, clock)
    _grow(gov, clock, cache, MiB // 2, 0.1, 600)
    acts = [e for e in gov.events if e.kind == "act"]
    assert acts and all("ahead of" not in e.message for e in acts)
    assert all(e.rss_before >= 800 * MiB for e in acts if e.data["pass_level"] == "high")


def test_urgent_growth_skips_the_level_that_cannot_pay(
    reader: FakeReader, registry: Registry, clock: Clock
) -> None:
    """At MODERATE with the limit under a second away, the pass runs at HIGH's aggressiveness at once:
    no cheap-only pass is spent while the program grows."""
    cache, gov = _cache_and_cheap(reader, registry, clock, "700MB")
    gov.tick()  # MODERATE, first reading: no rate yet
    cache.fill(20 * MiB)
    clock.advance(0.05)  # 400 MiB/s: ~0.6 s to the limit
    gov.tick()
    act = [e for e in gov.events if e.kind == "act"][-1]
    assert act.data["pass_level"] in ("high", "critical") and act.data["urgent"] is True
    assert cache.calls and cache.held == 0


def test_a_futile_pass_during_growth_is_not_repeated_until_growth_stops(
    reader: FakeReader, registry: Registry, clock: Clock
) -> None:
    """Far from the limit, growing over the budget: one pass that cannot keep up, then none while the
    growth lasts (the CPU budget is kept), then a pass as soon as it stops."""
    slow = Frees(reader, clock, "slow", 0, cost=0.3, aggressiveness=AGGRESSIVE)
    registry.register(slow)
    reader.set("100MB")
    gov = make(reader, registry, clock, budget="200MB", limit="100GB")
    for _ in range(300):  # 30 s growing at 100 MiB/s
        reader.grow(10 * MiB)
        clock.advance(0.1)
        gov.tick()
    during = len(slow.calls)
    assert during == 1
    assert gov.cpu["level"] < gov.cpu["capacity"]
    for _ in range(10):  # the growth stops
        clock.advance(0.1)
        gov.tick()
    assert len(slow.calls) > during


# ----------------------------------------------------------------------------- escalation with headroom


def _unfreeable(reader: FakeReader, registry: Registry, clock: Clock, **kw: object) -> MemoryGovernor:
    for name, agg in (("cheap", CHEAP), ("moderate", MODERATE), ("aggressive", AGGRESSIVE)):
        registry.register(Frees(reader, clock, name, 0, aggressiveness=agg, cost=0.001))
    reader.set("300MB")
    return make(reader, registry, clock, **kw)


@pytest.mark.parametrize("rate_mib", [20, 100, 500, 2000])
def test_unfreeable_growth_raises_before_the_limit(
    reader: FakeReader, registry: Registry, clock: Clock, rate_mib: int
) -> None:
    """escalation='raise': growth that nothing frees ends in MemoryLimitExceeded while RSS is still
    below the limit by at least the stated headroom's floor, with the last pass attached."""
    gov = _unfreeable(reader, registry, clock, escalation="raise")
    dt = 0.01
    with pytest.raises(hivemem.MemoryLimitExceeded) as info:
        for _ in range(100_000):
            reader.grow(int(rate_mib * MiB * dt))
            clock.advance(dt)
            gov.tick()
            assert reader.rss() < 1000 * MiB, "reached the limit without escalating"
    exc = info.value
    assert isinstance(exc.usage, int) and exc.limit == 1000 * MiB
    assert exc.limit - exc.usage >= gov._headroom_floor  # 3% of the limit at least
    assert exc.report is not None and exc.report.level == "critical"  # type: ignore[attr-defined]
    esc = exc.event  # type: ignore[attr-defined]
    assert esc.data["headroom"] >= 30 * MiB and "could not free it" in esc.message


def test_growth_that_a_pass_can_pay_for_never_escalates(
    reader: FakeReader, registry: Registry, clock: Clock
) -> None:
    """The same fast growth into a cache the governor can clear: no escalation at all."""
    cache = Cache(reader)
    registry.register(cache)
    reader.set("300MB")
    gov = make(reader, registry, clock, escalation="raise")
    _grow(gov, clock, cache, 5 * MiB, 0.01, 2000)
    assert not [e for e in gov.events if e.kind == "escalate"]


def test_headroom_grows_with_the_rate(reader: FakeReader, registry: Registry, clock: Clock) -> None:
    """gov.headroom(): the 3% floor when flat, plus rate x lookahead under growth."""
    gov = make(reader, registry, clock)
    assert gov.headroom(0.0) == 1000 * MiB * 3 // 100
    assert gov.headroom(1000 * MiB) > gov.headroom(100 * MiB) > gov.headroom(0.0)
    fixed = make(reader, registry, clock, headroom="50MB")
    assert fixed.headroom(0.0) == 50 * MiB


# ----------------------------------------------------------------------------- credit


class AllocReader(FakeReader):
    """A FakeReader that also reports malloc's in-use bytes and pymalloc blocks, like the real one."""

    def __init__(self, rss: str) -> None:
        super().__init__(rss)
        self.in_use = 100 * MiB
        self.heap_free = 0  # freed into malloc, still resident until trimmed

    def allocated(self) -> tuple[int | None, int | None]:
        return self.in_use, 1000


def test_the_sequence_that_demoted_caches_no_longer_does(clock: Clock) -> None:
    """Replay: cheap passes while data is live demote trim; then caches frees into malloc (no RSS drop)
    and the drop lands at trim. Credit by allocator release keeps caches, and trim runs right after it
    in every such pass: caches is never demoted, the drop is seen, and every HIGH pass reaches its target."""
    reader = AllocReader("720MB")
    registry = Registry(builtins=False, entry_points=False)

    class Caches:
        name, priority, aggressiveness = "caches", 20, MODERATE
        held = 0

        def apply(self, ctx: hivemem.StrategyContext) -> StrategyResult:
            reader.in_use -= self.held  # to malloc's free lists: RSS does not move
            reader.heap_free += self.held
            self.held = 0
            return StrategyResult("cleared")

    class Collect:
        name, priority, aggressiveness = "gc", 35, CHEAP

        def apply(self, ctx: hivemem.StrategyContext) -> StrategyResult:
            return StrategyResult("nothing")

    class Trim:
        name, priority, aggressiveness, finisher = "trim", 80, CHEAP, True

        def apply(self, ctx: hivemem.StrategyContext) -> StrategyResult:
            reader.free(reader.heap_free)
            reader.heap_free = 0
            return StrategyResult("trimmed")

    caches = Caches()
    caches.held = 100 * MiB  # part of the 720 MB already
    for s in (caches, Collect(), Trim()):
        registry.register(s)
    gov = MemoryGovernor(reader=reader, registry=registry, clock=clock, limit="1000MB", psi=False)
    for _ in range(4):  # MODERATE, data live and not growing: gc and trim free nothing
        gov.tick()
        clock.advance(1.0)
    assert gov.strategy_stats["trim"]["demoted"] is True  # type: ignore[index]
    for _ in range(12):  # the program fills its cache past HIGH; each HIGH pass must pay
        caches.held += 200 * MiB
        reader.in_use += 200 * MiB
        reader.grow(200 * MiB)
        clock.advance(1.0)
        assert gov.tick() == M  # back below HIGH's release threshold
    acts = [e for e in gov.events if e.kind == "act" and e.data["pass_level"] == "high"]
    assert len(acts) == 12
    for act in acts:
        ran = [s.name for s in act.steps if s.ran]
        assert ran.index("trim") > ran.index("caches")
        step = next(s for s in act.steps if s.name == "caches")
        assert step.freed == 0 and step.malloc_released in (200 * MiB, 300 * MiB)
        assert act.rss_after == 620 * MiB
    assert gov.strategy_stats["caches"]["demoted"] is False  # type: ignore[index]
    assert "caches" not in [e.data["strategy"] for e in gov.events if e.kind == "demote"]


def test_old_rss_only_credit_would_have_demoted_caches() -> None:
    """The same steps without allocator figures: RSS-only credit demotes caches (what the issue saw)."""
    order = AdaptiveOrder(demote_after=3)
    for _ in range(3):
        step = StepResult("caches", rss_before=800 * MiB, rss_after=800 * MiB)
        order.record([step])
    assert order.demoted == ["caches"]
    fresh = AdaptiveOrder(demote_after=3)
    for _ in range(3):
        step = StepResult("caches", rss_before=800 * MiB, rss_after=800 * MiB, malloc_released=150 * MiB)
        fresh.record([step])
    assert fresh.demoted == []


def test_pymalloc_blocks_are_credited_at_their_smallest_size() -> None:
    """blocks_released x 16 bytes counts toward min_yield: 20k blocks is 320 KiB, enough to pay."""
    order = AdaptiveOrder(demote_after=1)
    order.record([StepResult("dedup", rss_before=MiB, rss_after=MiB, blocks_released=20_000)])
    order.record([StepResult("idle", rss_before=MiB, rss_after=MiB, blocks_released=100)])
    assert order.demoted == ["idle"]


def test_a_demoted_finisher_waits_when_nothing_releases() -> None:
    """A demoted finisher is skipped in passes where no strategy released memory or is untried."""
    order = AdaptiveOrder(demote_after=1, retry_every=100)
    order.record([StepResult(n, rss_before=MiB, rss_after=MiB) for n in ("gc", "trim")])
    plan, skip = order.plan(["gc", "trim"], finishers=frozenset({"trim"}))
    assert "trim" in skip and "gc" in skip
    plan, skip = order.plan(["gc", "caches", "trim"], finishers=frozenset({"trim"}))  # caches untried
    assert "trim" not in skip and plan.index("trim") > plan.index("caches")


# ----------------------------------------------------------------------------- the switch interval


@pytest.fixture(autouse=True)
def _switch_interval_restored() -> object:
    before = sys.getswitchinterval()
    yield
    assert sys.getswitchinterval() == before, "a test left the switch interval changed"


def test_switch_interval_is_lowered_while_alert_and_restored(
    reader: FakeReader, registry: Registry, clock: Clock
) -> None:
    """Running and growing above half the budget lowers the switch interval; growth stopping or
    stop() restores it. (The monitor waits a day between its own ticks: these ticks are ours.)"""
    before = sys.getswitchinterval()
    gov = make(reader, registry, clock, interval=86400.0).start()
    try:
        reader.set("600MB")
        gov.tick()
        reader.grow(20 * MiB)
        clock.advance(0.1)
        gov.tick()
        assert gov.status()["alert"] is True and sys.getswitchinterval() == pytest.approx(0.0002)
        for _ in range(10):
            clock.advance(0.1)
            gov.tick()
        assert sys.getswitchinterval() == before
        reader.grow(20 * MiB)
        clock.advance(0.1)
        gov.tick()
        assert sys.getswitchinterval() < before
    finally:
        gov.stop()
    assert sys.getswitchinterval() == before


def test_switch_interval_changed_by_the_program_is_left_alone() -> None:
    """If the program sets its own interval while it is lowered, restore() does not overwrite it."""
    before = sys.getswitchinterval()
    s = SwitchInterval(0.0002)
    try:
        assert s.lower() and sys.getswitchinterval() == pytest.approx(0.0002)
        sys.setswitchinterval(0.01)
        assert s.restore()
        assert sys.getswitchinterval() == pytest.approx(0.01)
        assert not s.restore()
    finally:
        sys.setswitchinterval(before)


def test_a_pass_that_raises_still_restores_the_switch_interval(
    reader: FakeReader, registry: Registry, clock: Clock
) -> None:
    """A HIGH pass whose strategy raises KeyboardInterrupt: the interval is restored, the error propagates."""
    before = sys.getswitchinterval()

    class Boom:
        name, priority, aggressiveness = "boom", 1, CHEAP

        def apply(self, ctx: object) -> None:
            assert sys.getswitchinterval() == pytest.approx(0.0002)
            raise KeyboardInterrupt

    registry.register(Boom())
    reader.set("850MB")
    gov = make(reader, registry, clock)
    with pytest.raises(KeyboardInterrupt):
        gov.tick()
    assert sys.getswitchinterval() == before


def test_switch_interval_none_never_touches_it(reader: FakeReader, registry: Registry, clock: Clock) -> None:
    """switch_interval=None: alert or not, sys.getswitchinterval() is never changed."""
    before = sys.getswitchinterval()
    registry.register(Frees(reader, clock, "x", 0))
    gov = make(reader, registry, clock, switch_interval=None)
    reader.set("850MB")
    for _ in range(5):
        reader.grow(50 * MiB)
        clock.advance(0.01)
        gov.tick()
        assert sys.getswitchinterval() == before


# ----------------------------------------------------------------------------- start-up


def test_start_prepares_each_strategy_and_a_failing_prepare_is_logged(
    reader: FakeReader, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """start() calls every strategy's optional prepare() once; one that raises is logged, start goes on."""
    calls: list[str] = []

    class Ready:
        name, priority, aggressiveness = "ready", 10, CHEAP

        def prepare(self) -> None:
            calls.append(self.name)

        def apply(self, ctx: object) -> None:
            return None

    class Broken(Ready):
        name = "broken"

        def prepare(self) -> None:
            raise RuntimeError("no")

    registry.register(Ready())
    registry.register(Broken())
    gov = MemoryGovernor(reader=reader, registry=registry, limit="1000MB", psi=False, interval=86400.0)
    with gov:
        assert gov.running
    assert calls == ["ready"]
    assert "'broken' failed to prepare" in caplog.text
