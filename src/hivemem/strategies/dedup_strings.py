"""``dedup_strings``: merge equal strings in registered containers, like Java G1's string deduplication.

Walks the containers registered with ``hivemem.register_container(obj)``
(and their nested lists, dicts and tuples) and replaces every ``str`` equal
to one seen before by that first instance. Sizes, order and equality never
change; dict keys are merged only for containers registered with
``keys=True`` (the dict is rebuilt in the same order).

Returns: the duplicate strings, to Python's allocator (``pymalloc`` for
strings up to ~460 characters, malloc beyond). The report gives
``strings_merged`` and ``allocator_bytes`` (``sys.getsizeof`` of the
duplicates that the swap really freed). RSS usually does not move by
itself: the freed strings leave holes in arenas that the rows still occupy.
``compact`` (aggressive level) then repacks the rows into few arenas, and
that is when RSS falls. Measured here (``benchmarks/bench_strategies.py``,
scenario ``duplicate_strings``, 2M rows x 4 columns from ``csv.reader``):
8.0M strings merged, 420 MiB freed inside the allocator, RSS 704 -> 706 MiB;
followed by ``compact``, 704 -> 277 MiB. Reading through ``hivemem.StringPool``
instead (prevention) gives 214 MiB.

Does nothing when no container is registered, when a container's lock is
held, or when it was registered without a lock while other Python threads
run (each is skipped with the reason).

Never loses an item (docs/containers.md, "Nothing lost"): every swap is one
store through the base type's ``__setitem__`` (a subclass's validation does
not run for an equal value); ``keys=True`` builds the merged dict aside and
swaps it in at once, redone if interrupted; signals wait for the pass (main
thread) and stop it between two containers; a fork waits for it.

Cost: one dict lookup per string (~0.1 us) plus a temporary table of the
distinct values, at most 1M entries (~40 MB); beyond that only values
already in the table are merged. Runs at MODERATE: it changes no value and
no container's identity, only which equal ``str`` object a slot points to
(code that compares strings with ``is`` would notice; such code is already
wrong).
"""

from __future__ import annotations

from hivemem._engine.context import StrategyContext, StrategyResult
from hivemem._levels import MODERATE

__all__ = ["DedupStrings", "STRATEGY"]


class DedupStrings:
    """Replace equal ``str`` values in registered containers by one canonical instance."""

    name = "dedup_strings"
    priority = 50
    aggressiveness = MODERATE

    def prepare(self) -> None:
        """Load what the first pass needs now (a background governor calls this when it starts)."""
        import hivemem._reclaim.containers
        import hivemem._reclaim.dedup  # noqa: F401

    def apply(self, ctx: StrategyContext) -> StrategyResult:
        from hivemem._reclaim.containers import dedup_registry as registered
        from hivemem._reclaim.dedup import dedup_registered
        from hivemem._sizes import format_size

        if not len(registered):
            return StrategyResult.skip("no container registered with hivemem.register_container()")
        stats = dedup_registered()
        found = stats["skipped"]
        skipped: list[str] = found if isinstance(found, list) else []
        if not stats["containers_walked"]:
            return StrategyResult.skip("; ".join(skipped), **stats)
        freed = stats["allocator_bytes"]
        summary = (
            f"merged {stats['strings_merged']:,} duplicate strings, freeing "
            f"{format_size(freed if isinstance(freed, int) else None)} inside Python's allocator"
        )
        if skipped:
            summary += f"; {len(skipped)} container(s) skipped"
        return StrategyResult(summary, stats=stats)

    def __repr__(self) -> str:
        return "DedupStrings()"


#: The strategy this module adds (the registry finds it by the module's name).
STRATEGY = DedupStrings
