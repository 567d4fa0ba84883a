"""``compact``: defragment the heap by rebuilding containers registered with ``hivemem.compactable``.

pymalloc returns an arena (1 MiB) to the OS only when every object in it is
free; a few survivors per arena pin all of it. ``compact`` serializes the
registered containers' contents (pickle protocol 5), empties the containers
in place, collects and trims so that the emptied arenas go back to the OS,
then loads the contents back into the same container objects, densely.
Container identity and equality are kept; **the objects inside get new
identities**. Measured here (``benchmarks/bench_strategies.py``, scenario
``sparse_survivors``: 2M small dicts, 1 in 50 kept): 634 -> 29 MiB in
0.25 s (floor 27 MiB, reclaim 0.996); plain ``gc.collect()`` returns
nothing there.

Returns: whole pymalloc arenas (to the OS, via ``munmap``) and malloc pages
(via the ``malloc_trim`` it runs between emptying and loading).

Does nothing (skips with the reason) when no container is registered;
when pymalloc holds less than 16 MiB of free space or it is under 20% of
the arenas (dense data: rebuilding would cost a second copy and return
nothing, and made RSS worse in a measured case, docs/containers.md); when
the serialized copy would take RSS past the ceiling (the memory limit, RSS
plus the memory the system has available, or RSS plus the address space
left under ``RLIMIT_AS``, minus 5% or 64 MiB of headroom), checked at every
64 KiB frame while serializing; for a container that cannot be pickled, or
whose pickle does not load back; whose objects (at any depth) are also
referenced from elsewhere or weakly referenced (they would be copied, not
moved); whose lock is held, or that has no lock while other Python threads
run; when the address space for the whole reload cannot be reserved.

Nothing can be lost (docs/containers.md, "Nothing lost"): every container
is proved rebuildable before any is emptied, all come back from one load,
an exception at any point puts every container back, signals are deferred
(main thread) until the pass ends, and ``fork()`` waits for it.

Cost: a pickle round-trip of the registered data plus a full collection:
~0.15 s for 40k dicts, ~2.7 s for 2M rows of 4 strings, here; the safety
checks add a walk of the objects (``survey_seconds``, about the time of the
serialization) and, only for classes that run code of their own when
loaded, a trial load (``verified``); ``benchmarks/bench_compaction_safety.py``
measures both. Runs at AGGRESSIVE only: while it runs the containers are
briefly empty (safe under their lock, or with no other thread) and objects
get new identities.
"""

from __future__ import annotations

from hivemem._engine.context import StrategyContext, StrategyResult
from hivemem._levels import AGGRESSIVE

__all__ = ["Compact", "STRATEGY"]

_MARGIN = 64 * 2**20


def _available() -> int | None:
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _address_space_left() -> int | None:
    """Bytes of address space left under ``RLIMIT_AS`` (``None``: no such limit, or unknown).

    ``RLIMIT_AS`` counts every mapping (``VmSize``), not RSS: a process far
    under it in RSS can still be out of address space.
    """
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, AttributeError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmSize:"):
                    return max(soft - int(line.split()[1]) * 1024, 0)
    except (OSError, ValueError, IndexError):
        pass
    return None


def ceiling(ctx: StrategyContext) -> int | None:
    """The RSS that the serialized and verification copies must not push the process past."""
    rss = ctx.rss()
    bounds = []
    if ctx.limit is not None:
        bounds.append(ctx.limit)
    avail = _available()
    if avail is not None:
        bounds.append(rss + avail)
    left = _address_space_left()
    if left is not None:
        bounds.append(rss + left)
    if not bounds:
        return None
    bound = min(bounds)
    return bound - max(_MARGIN, bound // 20)


class Compact:
    """Rebuild registered containers so their contents pack into few pymalloc arenas."""

    name = "compact"
    priority = 70
    aggressiveness = AGGRESSIVE

    def prepare(self) -> None:
        """Load what the first pass needs now (a background governor calls this when it starts)."""
        import hivemem._reclaim.compaction  # noqa: F401

    def apply(self, ctx: StrategyContext) -> StrategyResult:
        from hivemem._reclaim.compaction import compact_registered
        from hivemem._sizes import format_size as fs

        stats = compact_registered(rss=ctx.rss, ceiling=ceiling(ctx))
        reason = stats.pop("skip", None)
        if reason is not None:
            return StrategyResult.skip(str(reason), **stats)
        serialized, free_before = stats["serialized_bytes"], stats["pymalloc_free_before"]
        summary = (
            f"rebuilt {stats['containers']} container(s), {stats['items']:,} items, through a "
            f"{fs(serialized if isinstance(serialized, int) else None)} serialized copy"
        )
        free_after = stats.get("pymalloc_free_after")
        if isinstance(free_after, int) and isinstance(free_before, int):
            summary += f"; pymalloc free space {fs(free_before)} -> {fs(free_after)}"
        skipped = stats.get("skipped")
        if isinstance(skipped, list) and skipped:
            summary += f"; {len(skipped)} container(s) skipped"
        return StrategyResult(summary, stats=stats)

    def __repr__(self) -> str:
        return "Compact()"


#: The strategy this module adds (the registry finds it by the module's name).
STRATEGY = Compact
