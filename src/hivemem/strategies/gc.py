"""``gc``: one full garbage collection of every generation.

Returns: memory held by unreachable reference cycles. The objects go back to
Python's allocators; RSS falls only where whole pymalloc arenas or large
malloc blocks become free (98.6% of a cyclic-garbage heap came back in
MEMORY-FACTS; 0% of a heap with no cycles). Follow it with ``trim`` to
return freed malloc pages to the OS.

Does nothing when there are no cycles: objects without cycles are freed by
reference counting the moment they die, so ``gc.collect()`` has nothing to
find. One pass is enough: a second collection finds only objects made
unreachable *during* the first (finalizers), which the report shows as
``collected`` on a following run; looping 50 times, as the source report
did, costs 50 full heap walks for nothing.

Measured here (``benchmarks/bench_strategies.py``, scenario
``cyclic_garbage``: an app with the collector disabled drops 300k request
graphs): 823 -> 22 MiB; passes 2 to 50 of the source report's loop
collected 0 objects and returned 0 bytes.

Cost: a walk of every tracked container, ~117 ms for 2M tracked objects
here; frozen objects (``gc.freeze()``) are not walked. Runs at CHEAP,
priority 35: after release hooks, caches, pools and lazy proxies have
dropped their references, so the cycles they leave are collected.

That walk holds the GIL from start to end: the program stops for it. So a
*governor* pass below the aggressive level (MODERATE and HIGH pressure)
collects only the young generations (``gc.collect(1)``: objects created since
the last collections, a bounded walk), unless a full collection is known to
be short: the last one measured here took at most ``PAUSE`` (5 ms), or the
heap holds at most ``SMALL_HEAP`` blocks (``sys.getallocatedblocks()``). A
CRITICAL pass and every direct ``optimize()`` collect everything. The
report's ``generation`` stat says which it was.
"""

from __future__ import annotations

import gc
import sys
import time

from hivemem._engine.context import StrategyContext, StrategyResult
from hivemem._levels import AGGRESSIVE, CHEAP

__all__ = ["GarbageCollect", "STRATEGY"]

#: Longest full collection a governor pass below aggressive may run (seconds).
PAUSE = 0.005
#: A heap of at most this many allocated blocks collects fully within PAUSE
#: (~58 ns per tracked object measured here; tracked objects <= blocks).
SMALL_HEAP = 60_000


class GarbageCollect:
    """Collect all generations once and report what was collected."""

    name = "gc"
    priority = 35
    aggressiveness = CHEAP
    rerun = "after_release"  # a climbing optimize() runs it again once later steps let go of objects

    def __init__(self) -> None:
        self.full_seconds: float | None = None  # the last full collection, measured

    def _generation(self, ctx: StrategyContext) -> int:
        if ctx.level is None or ctx.aggressiveness >= AGGRESSIVE:
            return 2
        last = self.full_seconds
        if (last is not None and last <= PAUSE) or sys.getallocatedblocks() <= SMALL_HEAP:
            return 2
        return 1

    def apply(self, ctx: StrategyContext) -> StrategyResult:
        generation = self._generation(ctx)
        t0 = time.perf_counter()
        collected = gc.collect(generation)
        if generation == 2:
            self.full_seconds = time.perf_counter() - t0
        uncollectable = len(gc.garbage)
        stats: dict[str, object] = {
            "collected": collected,
            "uncollectable": uncollectable,
            "generation": generation,
        }
        summary = f"collected {collected:,} objects" + ("" if generation == 2 else " (young generations)")
        if uncollectable:
            summary += f"; {uncollectable:,} uncollectable in gc.garbage"
        return StrategyResult(summary, stats=stats)

    def __repr__(self) -> str:
        return "GarbageCollect()"


#: The strategy this module adds (the registry finds it by the module's name).
STRATEGY = GarbageCollect
