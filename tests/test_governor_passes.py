"""What a background pass runs, so the program barely notices it: young collections below CRITICAL,
cache clearing in slices with the GIL released between them, a short wait for a busy cache lock."""

from __future__ import annotations

import gc
import sys
import threading
import time

import pytest

import hivemem
from hivemem import AGGRESSIVE, CHEAP, MODERATE, Registry, StrategyContext
from hivemem._reclaim.caches import clear_registered, register_cache, unregister_cache
from hivemem.strategies.caches import ClearCaches
from hivemem.strategies.gc import GarbageCollect
from hivemem.testing import FakeReader


def _ctx(level: str | None, agg: object) -> StrategyContext:
    return StrategyContext(target=0, aggressiveness=agg, reader=FakeReader("1MB"), level=level)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- gc


@pytest.mark.parametrize(
    ("level", "agg", "blocks", "last_full", "generation"),
    [
        (None, CHEAP, 10**8, None, 2),  # a direct optimize(): everything
        ("critical", AGGRESSIVE, 10**8, None, 2),  # CRITICAL: everything
        ("moderate", CHEAP, 10**8, None, 1),  # a big heap, never measured: young only
        ("high", MODERATE, 10**8, 0.5, 1),  # measured slow: young only
        ("high", MODERATE, 10**8, 0.001, 2),  # measured fast: everything
        ("moderate", CHEAP, 1000, None, 2),  # a small heap: everything
    ],
)
def test_background_passes_collect_young_generations_unless_a_full_one_is_short(
    monkeypatch: pytest.MonkeyPatch,
    level: str | None,
    agg: object,
    blocks: int,
    last_full: float | None,
    generation: int,
) -> None:
    """gc.collect(1) in MODERATE/HIGH passes on a big heap; gc.collect(2) at CRITICAL, in optimize(),
    on a small heap, or when the last full collection measured at most 5 ms."""
    calls: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda gen=2: calls.append(gen) or 0)
    monkeypatch.setattr(sys, "getallocatedblocks", lambda: blocks)
    strategy = GarbageCollect()
    strategy.full_seconds = last_full
    result = strategy.apply(_ctx(level, agg))
    assert calls == [generation] and result.stats["generation"] == generation
    assert ("young" in result.summary) == (generation == 1)


def test_a_full_collection_is_timed_for_the_next_pass() -> None:
    """After a full collection the strategy knows how long it took."""
    strategy = GarbageCollect()
    strategy.apply(_ctx(None, CHEAP))
    assert strategy.full_seconds is not None and strategy.full_seconds >= 0.0


# ----------------------------------------------------------------------------- caches


@pytest.fixture
def cache() -> object:
    c = {i: str(i) * 20 for i in range(300_000)}
    register_cache(c)
    yield c
    unregister_cache(c)


def test_a_high_pass_clears_a_big_dict_in_slices_letting_other_threads_run(cache: dict[int, str]) -> None:
    """300k entries cleared by a HIGH pass: empty after, same object, and a thread ran meanwhile."""
    ran = []
    stop = threading.Event()

    def other() -> None:
        while not stop.is_set():
            ran.append(time.perf_counter())

    t = threading.Thread(target=other)
    t.start()
    time.sleep(0.01)
    before_switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)  # as the governor sets it while it acts
    try:
        start = time.perf_counter()
        result = ClearCaches().apply(_ctx("high", MODERATE))
        end = time.perf_counter()
    finally:
        sys.setswitchinterval(before_switch)
        stop.set()
        t.join()
    assert cache == {} and result.stats["registered_entries"] >= 300_000
    assert any(start < x < end for x in ran)


def test_critical_passes_and_optimize_clear_in_one_call(
    cache: dict[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No slicing at CRITICAL or outside the governor: the fastest clear, one dict.clear()."""
    import hivemem._reclaim.caches as caches_module

    sliced: list[object] = []
    monkeypatch.setattr(caches_module, "_clear_in_slices", lambda c, s: sliced.append(c) or c.clear())
    ClearCaches().apply(_ctx("critical", AGGRESSIVE))
    cache.update({1: "x"})
    ClearCaches().apply(_ctx(None, MODERATE))
    assert sliced == [] and cache == {}


def test_an_interrupt_inside_slicing_leaves_the_lock_free_and_the_cache_usable() -> None:
    """KeyboardInterrupt at every 50th line of the slicing loop: it propagates, the lock is released,
    and what is left in the cache is what was put there (a cache may lose entries, never change them)."""
    import hivemem._reclaim.caches as caches_module

    for n in range(1, 400, 50):
        c = {i: i * 3 for i in range(5000)}
        lock = threading.Lock()
        register_cache(c, lock=lock)
        count = 0

        def tracer(frame: object, event: str, arg: object, at: int = n) -> object:
            nonlocal count
            if event == "line" and frame.f_code is caches_module._clear_in_slices.__code__:  # type: ignore[attr-defined]
                count += 1
                if count == at:
                    raise KeyboardInterrupt
            return tracer

        sys.settrace(tracer)
        interrupted = False
        try:
            clear_registered(0.0, 10.0)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            sys.settrace(None)
            unregister_cache(c)
        assert interrupted and len(c) <= 5000
        assert not lock.locked()
        assert all(v == k * 3 for k, v in c.items())


@pytest.mark.parametrize(("held_for", "cleared"), [(0.001, True), (0.2, False)])
def test_a_busy_cache_lock_is_waited_on_briefly(held_for: float, cleared: bool) -> None:
    """A governor pass waits up to 50 ms for a cache's lock: held 1 ms, the cache is cleared; held
    200 ms, it is left for the next pass (counted busy), and the pass does not wait 200 ms."""
    c = {1: "a", 2: "b"}
    lock = threading.Lock()
    register_cache(c, lock=lock)
    taken = threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            time.sleep(held_for)

    t = threading.Thread(target=hold)
    t.start()
    taken.wait()
    try:
        t0 = time.perf_counter()
        result = ClearCaches().apply(_ctx("high", MODERATE))
        took = time.perf_counter() - t0
    finally:
        t.join()
        unregister_cache(c)
    assert (c == {}) is cleared and (result.stats["busy"] == 0) is cleared
    assert took < 0.15


def test_optimize_does_not_wait_for_a_busy_lock() -> None:
    """A direct optimize() never waits: a held lock means busy at once, as before."""
    c = {1: "a"}
    lock = threading.Lock()
    register_cache(c, lock=lock)
    lock.acquire()
    try:
        result = ClearCaches().apply(_ctx(None, MODERATE))
    finally:
        lock.release()
        unregister_cache(c)
    assert result.stats["busy"] == 1 and c == {1: "a"}


def test_a_governor_pass_over_the_real_strategies_keeps_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A HIGH pass with the builtin strategies on a registered cache and live data: the live data is
    untouched, the cache is empty, and every step is recorded."""
    live = [{"id": i, "name": f"n{i}"} for i in range(10_000)]
    snapshot = [dict(d) for d in live]
    c = {i: bytes(100) for i in range(10_000)}
    register_cache(c)
    try:
        reader = FakeReader("850MB")

        class Shrinks:
            name, priority, aggressiveness = "shrinks", 99, CHEAP

            def apply(self, ctx: object) -> None:
                reader.set("100MB")

        registry = Registry(entry_points=False)
        registry.register(Shrinks())
        gov = hivemem.MemoryGovernor(reader=reader, registry=registry, limit="1000MB", psi=False)
        gov.tick()
    finally:
        unregister_cache(c)
    act = next(e for e in gov.events if e.kind == "act")
    assert c == {} and live == snapshot
    assert act.data["pass_level"] == "high" and all(s.error is None for s in act.steps)
