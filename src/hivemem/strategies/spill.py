"""``spill``: move the least recently used values of every ``hivemem.SpillStore`` to disk.

Returns: the values' memory. A value glibc mmap'd goes straight back to the
OS when the store drops it; others go back to malloc or pymalloc, and
``trim`` returns the freed pages later in the pass.
Measured here (``benchmarks/bench_cooperative.py spill``): 500 MiB in 500
values of 1 MiB (bytes and arrays); an aggressive pass took RSS from 534.7 to
17.7 MiB, the spill step 0.78 s; reading one value back cost 1.01 MiB.

Stops as soon as RSS is at or below the pass's target (checked before each
value), so recently used values stay in memory. Does nothing when no store
exists (``hivemem._stores.spill`` is then not even imported) or every value is on
disk, too small, or cannot be spilled. A failed write (disk full) keeps the
value in memory; the step's summary and stats say so.

Cost: writing the values to the page cache (disk bandwidth once the kernel
flushes them) and a CRC-32 over each (about 2.4 GB/s of CPU here; a pickle
that names a class is also loaded once, to prove it round-trips); reading one
back costs that one value and its check. Figures: ``docs/cooperative.md``,
"Integrity". Runs at MODERATE.
"""

from __future__ import annotations

import sys

from hivemem._engine.context import StrategyContext, StrategyResult
from hivemem._levels import MODERATE

__all__ = ["STRATEGY", "SpillValues"]


class SpillValues:
    """Spill SpillStore values, least recently used first, until the target is reached."""

    name = "spill"
    priority = 50
    aggressiveness = MODERATE

    def apply(self, ctx: StrategyContext) -> StrategyResult:
        module = sys.modules.get("hivemem._stores.spill")
        stores = module.live_stores() if module is not None else []
        if not stores:
            return StrategyResult.skip("no open SpillStore exists")
        target = ctx.target

        def reached() -> bool:
            return target is not None and ctx.rss() <= target

        from hivemem._stores.lru import run_passes

        totals = dict.fromkeys(("spilled", "bytes", "kept", "failed"), 0)
        errors = run_passes(stores, lambda store: store.spill(stop=reached), reached, totals)
        spilled, nbytes, failed = totals["spilled"], totals["bytes"], totals["failed"]
        stats: dict[str, object] = {"stores": len(stores), **totals, "errors": errors}
        if not spilled and not failed:
            return StrategyResult.skip(f"nothing left to spill in {len(stores)} store(s)", **stats)
        summary = f"spilled {spilled:,} value(s), {nbytes:,} bytes, to disk"
        if failed:
            summary += f"; {failed:,} write(s) failed and stayed in memory ({errors[-1]})"
        return StrategyResult(summary, stats=stats)

    def __repr__(self) -> str:
        return "SpillValues()"


#: The strategy this module adds (the registry finds it by the module's name).
STRATEGY = SpillValues
