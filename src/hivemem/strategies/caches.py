"""``caches``: shrink caches that can shrink, clear caches that only memoize.

With a target (every governor pass, ``optimize(target_mb=...)``), the step
has ``ctx.needed``: the bytes the pass still needs. It goes, in this order:

1. **Shrink** every ``hivemem.Cache`` (and ``hivemem.cache`` function) and
   every dict registered with ``register_cache(d, evict="oldest")``: each
   gives its share of the need, in proportion to its bytes, least recently
   used (dicts: oldest inserted) first, never more than the need in all.
   Below CRITICAL each keeps the most recent ``keep`` share of its bytes (a
   ``Cache``'s ``keep``, 0.1 for dicts); a CRITICAL pass (or the aggressive
   level of ``optimize()``) may empty them when the need is that large.
2. Only if shrinking did not cover the need: **clear** the caches that can
   only be cleared whole: everything else registered with
   ``hivemem.register_cache(obj)`` (``functools.lru_cache`` wrappers,
   cachetools caches, dicts), and the standard library's own caches of
   modules already imported (``re``, ``fnmatch``, ``urllib.parse``,
   ``struct``, ``typing``, file-backed ``linecache`` entries, ...:
   ``hivemem._reclaim.caches.STDLIB_CACHES``).
3. At the ``aggressive`` level only, the ``functools`` caches defined in
   modules the user allowlisted with ``hivemem.register_cache("myapp.*")``.
   Never by default: ``@functools.cache`` often builds a singleton, and
   clearing it would create a second instance.

Without a target (``optimize()`` with no target) there is no need to size
the work by: every cache above is cleared whole, as this step always did.

Returns: the entries, to Python's allocators (small objects) and to malloc
(a cache's hash table and big values); values of 128 KiB and more that
malloc mmap'd go back to the OS at once. The rest shows in RSS only after
``trim`` (later in the pass) returns malloc's free pages, and, for small
objects interleaved with live data, ``compact``. The step's
``allocator_bytes`` stat is the weight of evicted values that nothing else
referenced. Measured (``benchmarks/bench_cache.py``): the bytes a
``Cache`` reports agree with the RSS given back after eviction and trim
within a few percent for values of 1 KiB to 4 MiB; on the ``caches``
benchmark scenario (``benchmarks/bench_strategies.py``: ~390 MB in a
registered lru_cache and dict, live sessions interleaved) ``optimize()``
went 404 -> 20 MiB (reclaim 0.99), of which this step alone showed ~10 MiB
and ``compact`` (which trims) the rest.

Does nothing when no cache exists or is registered and the standard library
caches are empty. A registered cache whose lock is held is left for the
next pass; in a governor pass (``ctx.level`` set) the strategy first waits up
to ``LOCK_WAIT`` (50 ms) for the lock: threads that fill a cache under a lock
hold it often, and when memory runs out there may be no next pass. A
governor pass below CRITICAL evicts, and empties a registered ``dict``, in
slices of ``SLICE`` (2 ms), releasing the GIL in between, so the program
never stops for the whole eviction; CRITICAL passes and direct
``optimize()`` calls do it in one call, which is fastest overall.

Cost: recomputing what was evicted, later. Evicting is about a microsecond
per entry; clearing is one ``clear()`` per cache (a dict of 1M entries:
~30 ms). Runs at MODERATE.
"""

from __future__ import annotations

import math
import sys
import time

from hivemem._engine.context import StrategyContext, StrategyResult
from hivemem._levels import AGGRESSIVE, MODERATE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from hivemem._reclaim.held import Lock
    from hivemem._stores.cache import Cache

__all__ = ["ClearCaches", "STRATEGY"]

#: Seconds a governor pass waits for a registered cache's lock (the wait releases the GIL). Threads
#: that fill a cache under its lock hold it often, and one of them may hold it while it waits
#: for the GIL; when memory runs out the cache is the one thing worth the wait.
LOCK_WAIT = 0.05
#: A governor pass below CRITICAL evicts in slices of about this many seconds, releasing the
#: GIL in between, so the program never stops for the whole eviction (freeing 200 MiB of
#: 1 MiB values takes ~16 ms, most of it the kernel unmapping them).
SLICE = 0.002
#: Entries evicted between two looks at the clock while slicing.
BATCH = 64


def _critical(ctx: StrategyContext) -> bool:
    """A governor pass at CRITICAL, or a direct pass at the aggressive level: caches may empty."""
    if ctx.level is not None:
        return str(ctx.level).lower() == "critical"
    return ctx.aggressiveness >= AGGRESSIVE


class _Shrinkable:
    """One cache that can give part of its bytes: its size now, and how to ask it."""

    __slots__ = ("evict", "label", "size")

    def __init__(
        self, label: str, size: int, evict: Callable[[int, int | None], dict[str, int] | None]
    ) -> None:
        self.label = label
        self.size = size
        self.evict = evict  # returns None when the cache's lock is busy


def _shrinkables(critical: bool) -> list[_Shrinkable]:
    from hivemem._reclaim.caches import estimate_bytes, evict_oldest, partial_registered
    from hivemem._reclaim.held import give_back, take_briefly

    found: list[_Shrinkable] = []
    module = sys.modules.get("hivemem._stores.cache")
    if module is not None:  # never imported when the program made no Cache
        for cache in module.live_caches():
            floor = 0 if critical else int(cache.bytes * cache.keep)  # fixed once for the pass

            def shrink(
                n: int, most: int | None, cache: Cache[Any, Any] = cache, floor: int = floor
            ) -> dict[str, int]:
                return cache._evict(n, floor, most)

            found.append(_Shrinkable("Cache", cache.bytes, shrink))
    for d, entry in partial_registered():
        from hivemem._stores.cache import KEEP

        keep = 0 if critical else math.ceil(len(d) * KEEP)  # fixed once for the pass

        def evict(
            n: int,
            most: int | None,
            d: dict[object, object] = d,
            lock: Lock | None = entry.lock,
            keep: int = keep,
        ) -> dict[str, int] | None:
            if not take_briefly(lock):
                return None
            try:
                return evict_oldest(d, n, keep=keep, most=most)
            finally:
                give_back(lock)

        found.append(_Shrinkable("dict", estimate_bytes(d), evict))
    return found


def _shrink(needed: int, critical: bool, sliced: bool = False) -> dict[str, int]:
    """Ask every shrinkable cache for its share of *needed* bytes; then the rest from whoever has it.

    *sliced*: evict :data:`BATCH` entries at a time and release the GIL every
    :data:`SLICE` seconds (``time.sleep(0)``), so no single stop is long.
    """
    done = {"caches": 0, "entries": 0, "bytes": 0, "released": 0, "busy": 0, "held_back": 0}
    items = [s for s in _shrinkables(critical) if s.size > 0]
    total = sum(s.size for s in items)
    if not items or not total:
        return done
    touched: set[int] = set()
    clock = time.perf_counter
    deadline = [clock() + SLICE]

    def ask(item: _Shrinkable, n: int) -> None:
        while n > 0:
            got = item.evict(n, BATCH if sliced else None)
            if got is None:
                done["busy"] += 1
                item.size = 0  # not asked again this pass
                return
            if got["entries"]:
                touched.add(id(item))
            for key in ("entries", "bytes", "released"):
                done[key] += got[key]
            item.size = max(item.size - got["bytes"], 0)
            n -= got["bytes"]
            if not got.get("more"):
                if n > 0:
                    item.size = 0  # it gave what its floor allows
                return
            if clock() >= deadline[0]:
                time.sleep(0)  # let the program run: a pass below CRITICAL never stops it for long
                deadline[0] = clock() + SLICE

    for item in items:  # in proportion to what each holds
        ask(item, math.ceil(needed * item.size / total))
    for item in sorted(items, key=lambda s: -s.size):  # then whoever still has some, largest first
        if done["bytes"] >= needed:
            break
        ask(item, needed - done["bytes"])
    done["caches"] = len(touched)
    if done["bytes"] < needed and not critical:
        done["held_back"] = 1  # the floors kept the most recent entries: an aggressive pass may take them
    return done


class ClearCaches:
    """Shrink hivemem caches and opted-in dicts by what the pass needs; clear the rest when short."""

    name = "caches"
    priority = 20
    aggressiveness = MODERATE

    def prepare(self) -> None:
        """Load what the first pass needs now (a background governor calls this when it starts)."""
        import hivemem._reclaim.caches  # noqa: F401

    def apply(self, ctx: StrategyContext) -> StrategyResult:
        from hivemem._reclaim.caches import (
            clear_discovered,
            clear_registered,
            clear_stdlib,
            lru_cache_allowlist,
        )
        from hivemem._sizes import format_size

        needed = None
        if ctx.target is not None:
            needed = ctx.needed if ctx.needed is not None else max(ctx.rss() - ctx.target, 0)
        critical = _critical(ctx)
        parts: list[str] = []
        stats: dict[str, object] = {}
        short = True
        if needed is not None:
            shrunk = _shrink(needed, critical, sliced=ctx.level is not None and not critical)
            stats.update(
                shrunk_caches=shrunk["caches"],
                shrunk_entries=shrunk["entries"],
                shrunk_bytes=shrunk["bytes"],
                allocator_bytes=shrunk["released"],
                needed=needed,
            )
            if shrunk["caches"] or shrunk["busy"]:
                parts.append(
                    f"shrank {shrunk['caches']} cache(s) by {format_size(shrunk['bytes'])} of the "
                    f"{format_size(needed)} needed ({shrunk['entries']:,} entries, least recently used first)"
                )
            short = shrunk["bytes"] < needed
            if short and shrunk["held_back"]:
                stats["more_at"] = "aggressive"  # a climbing optimize() may empty them there
                parts.append("each kept its most recent entries below CRITICAL")
        else:
            shrunk = _drop_all()
            stats.update(shrunk_caches=shrunk["caches"], shrunk_entries=shrunk["entries"])
            stats["shrunk_bytes"] = shrunk["bytes"]
            stats["allocator_bytes"] = shrunk["released"]
            if shrunk["caches"]:
                parts.append(
                    f"emptied {shrunk['caches']} hivemem cache(s) ({shrunk['entries']:,} entries, "
                    f"{format_size(shrunk['bytes'])}): no target to shrink them by"
                )
        busy = shrunk["busy"]
        if short:
            background = ctx.level is not None
            registered = clear_registered(
                LOCK_WAIT if background else 0.0,
                SLICE if background and not critical else 0.0,
                partial=needed is None,
            )
            stdlib = clear_stdlib()
            busy += registered["busy"]
            stats.update(
                registered_caches=registered["caches"],
                registered_entries=registered["entries"],
                failed=registered["failed"],
                stdlib=stdlib,
            )
            parts.append(
                f"cleared {registered['caches']} registered cache(s) ({registered['entries']:,} entries)"
            )
            if registered["failed"]:
                parts.append(f"{registered['failed']} failed (logged)")
            parts.append(f"{len(stdlib)} stdlib cache group(s)")
        else:
            stats.update(registered_caches=0, registered_entries=0, failed=0, stdlib=[])
            parts.append("caches that can only be cleared whole were kept: shrinking paid the need")
        stats["busy"] = busy
        if busy:
            parts.append(f"{busy} busy (lock held), left for the next pass")
        if lru_cache_allowlist() and short:
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


def _drop_all() -> dict[str, int]:
    """No target: every hivemem cache is emptied (counted as pressure evictions)."""
    done = {"caches": 0, "entries": 0, "bytes": 0, "released": 0, "busy": 0}
    module = sys.modules.get("hivemem._stores.cache")
    if module is None:
        return done
    for cache in module.live_caches():
        if not len(cache):
            continue
        got = cache.shrink(cache.bytes + 1, keep=0.0)
        done["caches"] += 1
        for key in ("entries", "bytes", "released"):
            done[key] += got[key]
    return done


#: The strategy this module adds (the registry finds it by the module's name).
STRATEGY = ClearCaches
