"""``compress``: compress the least recently used values of every ``hivemem.CompressedStore``.

Returns: the difference between each value and its compressed form. A value
glibc mmap'd goes straight back to the OS when the store drops it; others go
back to malloc's heap, and ``trim`` returns the pages later in the pass.
Building many values of a few hundred KiB raises glibc's mmap threshold above
their size, so in practice most of the drop shows after ``trim``.

Measured here (``benchmarks/bench_cooperative.py compress``): 300 MiB of
log-like text in 1,200 values of 256 KiB; an aggressive pass took RSS from
318.3 to 62.6 MiB (85.2% of the raw size; zstd 7.0x in 0.79 s), and every
value read back identical.

Stops as soon as RSS is at or below the pass's target (checked before each
value), so the most recently used values stay uncompressed. Does nothing
when no store exists (``hivemem._stores.compressed`` is then not even imported) or
every value is already compressed, too small, or does not compress by the
store's ``min_ratio``. A store that fails (closed meanwhile) is recorded in
the stats and the others still run; a value that cannot be compressed now
(no memory for the work) stays as it is and is counted as ``failed``.

Cost: CPU: zstd level 3 did 300 MiB of log text in 0.79 s here; zlib level
6, the fallback, was about 4x slower on the same text (17 vs 75 MB/s in one
run on a loaded machine). Reading a value back decompresses it. Runs at
MODERATE. Each blob also gets a CRC-32 (cheap next to compression), and a
pickle that names a class is loaded once to prove it round-trips
(``docs/cooperative.md``, "Integrity").
"""

from __future__ import annotations

import sys

from hivemem._engine.context import StrategyContext, StrategyResult
from hivemem._levels import MODERATE

__all__ = ["CompressValues", "STRATEGY"]


class CompressValues:
    """Compress CompressedStore values, least recently used first, until the target is reached."""

    name = "compress"
    priority = 40
    aggressiveness = MODERATE

    def apply(self, ctx: StrategyContext) -> StrategyResult:
        module = sys.modules.get("hivemem._stores.compressed")
        stores = module.live_stores() if module is not None else []
        if not stores:
            return StrategyResult.skip("no CompressedStore exists")
        target = ctx.target

        def reached() -> bool:
            return target is not None and ctx.rss() <= target

        from hivemem._stores.lru import run_passes

        totals = dict.fromkeys(("compressed", "raw_bytes", "stored_bytes", "kept", "failed"), 0)
        errors = run_passes(stores, lambda store: store.compress(stop=reached), reached, totals)
        if not totals["compressed"]:
            return StrategyResult.skip(
                f"nothing left to compress in {len(stores)} store(s)",
                stores=len(stores),
                kept=totals["kept"],
                failed=totals["failed"],
                errors=errors,
            )
        summary = (
            f"compressed {totals['compressed']:,} value(s): {totals['raw_bytes']:,} -> "
            f"{totals['stored_bytes']:,} bytes"
        )
        if totals["failed"]:
            summary += f"; {totals['failed']:,} could not be compressed now and stayed as they are"
        return StrategyResult(summary, stats={"stores": len(stores), **totals, "errors": errors})

    def __repr__(self) -> str:
        return "CompressValues()"


#: The strategy this module adds (the registry finds it by the module's name).
STRATEGY = CompressValues
