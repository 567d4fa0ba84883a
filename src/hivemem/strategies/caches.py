"""``caches``: clear caches that only memoize.

Clears, in this order:

1. every cache registered with ``hivemem.register_cache(obj)``
   (``functools.lru_cache`` wrappers, cachetools caches, dicts);
2. the standard library's own caches, only for modules already imported
   (``re``, ``fnmatch``, ``urllib.parse``, ``struct``, ``typing``, file-backed
   ``linecache`` entries, ...: ``hivemem._caches.STDLIB_CACHES``);
3. at the ``aggressive`` level only, the ``functools`` caches defined in
   modules the user allowlisted with ``hivemem.register_cache("myapp.*")``.
   Never by default: ``@functools.cache`` often builds a singleton, and
   clearing it would create a second instance.

Returns: the entries, to Python's allocators (small objects) and to malloc
(a cache's hash table and big values). RSS falls only for what then empties
whole pymalloc arenas or malloc pages: ``gc`` collects cycles the entries
were part of, ``compact`` repacks survivors that shared arenas with them and
``trim`` returns malloc's free pages. Measured here (``benchmarks/bench_strategies.py``,
scenario ``caches``): ~390 MB held by a registered lru_cache and dict, live
sessions interleaved; ``optimize()`` 404 -> 20 MiB (floor 16 MiB, reclaim
0.99), of which this step alone showed ~10 MiB and ``compact`` (which trims)
the rest; ``gc.collect()`` and the source report's recipe (``re.purge()``,
``linecache.clearcache()``, 50 collections) reclaim 0.0.

Does nothing when no cache is registered and the standard library caches are
empty; a registered cache whose lock is held is left for the next pass.

Cost: recomputing what was cached, later. Clearing itself is one
``clear()`` per cache (a dict of 1M entries: ~30 ms). Runs at MODERATE.
"""

from __future__ import annotations

from hivemem._levels import AGGRESSIVE, MODERATE
from hivemem._strategy import StrategyContext, StrategyResult

__all__ = ["ClearCaches"]


class ClearCaches:
    """Clear registered caches, imported stdlib caches and (aggressive) allowlisted lru_caches."""

    name = "caches"
    priority = 20
    aggressiveness = MODERATE

    def apply(self, ctx: StrategyContext) -> StrategyResult:
        from hivemem._caches import clear_discovered, clear_registered, clear_stdlib, lru_cache_allowlist

        registered = clear_registered()
        stdlib = clear_stdlib()
        stats: dict[str, object] = {
            "registered_caches": registered["caches"],
            "registered_entries": registered["entries"],
            "busy": registered["busy"],
            "failed": registered["failed"],
            "stdlib": stdlib,
        }
        parts = [f"cleared {registered['caches']} registered cache(s) ({registered['entries']:,} entries)"]
        if registered["busy"]:
            parts.append(f"{registered['busy']} busy (lock held), left for the next pass")
        if registered["failed"]:
            parts.append(f"{registered['failed']} failed (logged)")
        parts.append(f"{len(stdlib)} stdlib cache group(s)")
        if lru_cache_allowlist():
            if ctx.aggressiveness >= AGGRESSIVE:
                found = clear_discovered()
                stats["discovered_caches"] = found["caches"]
                stats["discovered_entries"] = found["entries"]
                parts.append(f"{found['caches']} allowlisted lru_cache(s) ({found['entries']:,} entries)")
            else:
                parts.append("allowlisted lru_caches wait for an aggressive pass")
                stats["more_at"] = "aggressive"  # a climbing optimize() calls it again there
        return StrategyResult("; ".join(parts), stats=stats)

    def __repr__(self) -> str:
        return "ClearCaches()"
