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
"""

from __future__ import annotations

import gc

from hivemem._levels import CHEAP
from hivemem._strategy import StrategyContext, StrategyResult

__all__ = ["GarbageCollect"]


class GarbageCollect:
    """Collect all generations once and report what was collected."""

    name = "gc"
    priority = 35
    aggressiveness = CHEAP
    rerun = "after_release"  # a climbing optimize() runs it again once later steps let go of objects

    def apply(self, ctx: StrategyContext) -> StrategyResult:
        collected = gc.collect()
        uncollectable = len(gc.garbage)
        stats: dict[str, object] = {"collected": collected, "uncollectable": uncollectable}
        summary = f"collected {collected:,} objects"
        if uncollectable:
            summary += f"; {uncollectable:,} uncollectable in gc.garbage"
        return StrategyResult(summary, stats=stats)

    def __repr__(self) -> str:
        return "GarbageCollect()"
