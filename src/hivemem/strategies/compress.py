"""``compress``: compress the least recently used values of every ``hivemem.CompressedStore``.

Returns: the difference between each value and its compressed form. A value
of 128 KiB or more was mmap'd by glibc and its pages go straight back to the
OS when the store drops it; smaller values go back to malloc (``trim``
returns those pages later in the pass). Measured here: 300 MB of log-like
text values (256 KiB each) -> RSS fell by 283 MiB (94% of the raw size) with
zstd, every value read back identical (``benchmarks/bench_cooperative.py``).

Stops as soon as RSS is at or below the pass's target (checked before each
value), so the most recently used values stay uncompressed. Does nothing
when no store exists (``hivemem._compress`` is then not even imported) or
every value is already compressed, too small, or does not compress by the
store's ``min_ratio``.

Cost: CPU: zstd level 3 compresses log text at several hundred MB/s per
core, zlib level 6 around 30-60 MB/s; reading a value back decompresses it.
Runs at MODERATE.
"""

from __future__ import annotations

import sys

from hivemem._levels import MODERATE
from hivemem._strategy import StrategyContext, StrategyResult

__all__ = ["CompressValues"]


class CompressValues:
    """Compress CompressedStore values, least recently used first, until the target is reached."""

    name = "compress"
    priority = 40
    aggressiveness = MODERATE

    def apply(self, ctx: StrategyContext) -> StrategyResult:
        module = sys.modules.get("hivemem._compress")
        stores = module.live_stores() if module is not None else []
        if not stores:
            return StrategyResult.skip("no CompressedStore exists")
        target = ctx.target

        def reached() -> bool:
            return target is not None and ctx.rss() <= target

        totals = {"compressed": 0, "raw_bytes": 0, "stored_bytes": 0, "kept": 0}
        for store in stores:
            if reached():
                break
            for key, value in store.compress(stop=reached).items():
                totals[key] += value
        if not totals["compressed"]:
            return StrategyResult.skip(
                f"nothing left to compress in {len(stores)} store(s)", stores=len(stores), kept=totals["kept"]
            )
        return StrategyResult(
            f"compressed {totals['compressed']:,} value(s): {totals['raw_bytes']:,} -> "
            f"{totals['stored_bytes']:,} bytes",
            stats={"stores": len(stores), **totals},
        )

    def __repr__(self) -> str:
        return "CompressValues()"
