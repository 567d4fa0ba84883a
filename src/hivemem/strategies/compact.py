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
nothing, and in MEMORY-FACTS made RSS worse); when the serialized copy would
take RSS past the ceiling (the memory limit, or RSS plus the memory the
system has available, minus 5% or 64 MiB of headroom), checked at every
64 KiB frame while serializing; for a container that cannot be pickled, whose
items are also referenced elsewhere (they would be copied, not moved),
whose lock is held, or that has no lock while other Python threads run.

Cost: a pickle round-trip of the registered data plus a full collection:
~0.15 s for 40k dicts, ~2.7 s for 2M rows of 4 strings, here. Runs at
AGGRESSIVE only: while it runs the containers are briefly empty (safe
under their lock, or with no other thread) and objects get new identities.
"""

from __future__ import annotations

from hivemem._levels import AGGRESSIVE
from hivemem._strategy import StrategyContext, StrategyResult

__all__ = ["Compact"]

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


def ceiling(ctx: StrategyContext) -> int | None:
    """The RSS that the serialized copy must not push the process past."""
    rss = ctx.rss()
    bounds = []
    if ctx.limit is not None:
        bounds.append(ctx.limit)
    avail = _available()
    if avail is not None:
        bounds.append(rss + avail)
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
        import hivemem._compaction  # noqa: F401

    def apply(self, ctx: StrategyContext) -> StrategyResult:
        from hivemem._compaction import compact_registered
        from hivemem._sizes import format_size as fs

        stats = compact_registered(rss=ctx.rss, ceiling=ceiling(ctx))
        reason = stats.pop("skip", None)
        if reason is not None:
            return StrategyResult.skip(str(reason), **stats)
        summary = (
            f"rebuilt {stats['containers']} container(s), {stats['items']:,} items, through a "
            f"{fs(int(stats['serialized_bytes']))} serialized copy"  # type: ignore[call-overload]
        )
        free_after = stats.get("pymalloc_free_after")
        if isinstance(free_after, int):
            summary += f"; pymalloc free space {fs(int(stats['pymalloc_free_before']))} -> {fs(free_after)}"  # type: ignore[call-overload]
        if stats.get("skipped"):
            summary += f"; {len(stats['skipped'])} container(s) skipped"  # type: ignore[arg-type]
        return StrategyResult(summary, stats=stats)

    def __repr__(self) -> str:
        return "Compact()"
