"""``pools``: drop idle objects held by ``hivemem.ObjectPool`` and ``hivemem.BufferPool``.

Returns: the idle objects beyond each pool's floor (``min_idle`` /
``min_bytes``), oldest first. A buffer glibc mmap'd (128 KiB and more
until its dynamic threshold rises, up to 32 MiB; always above that) goes
straight back to the OS when dropped; other buffers and pooled objects go
back to malloc or pymalloc (``trim`` returns the pages later in the pass).

Does nothing when no pool exists (``hivemem._stores.pools`` is then not even
imported) or every pool is at its floor. Objects in use are never touched.

Cost: freeing the objects; dropping 64 idle 1 MiB buffers took 5.9 ms here
(best of 5; munmap of touched pages). The next ``acquire()`` calls pay for
new objects again: 40 MiB buffers cost ~30-60 ms each to allocate fresh on
this machine, which is why pools exist (``benchmarks/bench_cooperative.py
pool``). Runs at CHEAP.
"""

from __future__ import annotations

import sys

from hivemem._engine.context import StrategyContext, StrategyResult
from hivemem._levels import CHEAP

__all__ = ["DropIdlePooled", "STRATEGY"]


class DropIdlePooled:
    """Shrink every live pool to its floor."""

    name = "pools"
    priority = 20
    aggressiveness = CHEAP

    def apply(self, ctx: StrategyContext) -> StrategyResult:
        module = sys.modules.get("hivemem._stores.pools")
        pools = module.live_pools() if module is not None else []
        if module is None or not pools:
            return StrategyResult.skip("no ObjectPool or BufferPool exists")
        objects = buffers = buffer_bytes = 0
        for pool in pools:
            if isinstance(pool, module.BufferPool):
                before = pool.idle
                buffer_bytes += pool.shrink()
                buffers += before - pool.idle
            else:
                objects += pool.shrink()
        if not (objects or buffers):
            return StrategyResult.skip(f"all {len(pools)} pool(s) are at their floor", pools=len(pools))
        return StrategyResult(
            f"dropped {objects:,} idle object(s) and {buffers:,} idle buffer(s) "
            f"({buffer_bytes:,} bytes) from {len(pools)} pool(s)",
            stats={"pools": len(pools), "objects": objects, "buffers": buffers, "buffer_bytes": buffer_bytes},
        )

    def __repr__(self) -> str:
        return "DropIdlePooled()"


#: The strategy this module adds (the registry finds it by the module's name).
STRATEGY = DropIdlePooled
