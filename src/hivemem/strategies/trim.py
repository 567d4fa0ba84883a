"""``trim``: give free malloc memory back to the OS with glibc's ``malloc_trim(0)``.

Returns: free pages inside every glibc malloc arena (since glibc 2.8, not
only the top of the heap), straight to the OS. This is where memory freed by
large Python objects (> 512 bytes: big strings, bytes, lists' item arrays,
dict tables) and by C extensions lingers. Measured here: 1-4 KiB blocks with
1 in 64 kept, ``gc.collect()`` returned 0.3% of the growth and
``malloc_trim(0)`` 95.7% in 57 ms.

Does nothing for pymalloc's arenas (those hold small objects and are
released only when completely empty; see ``compact``) and nothing under
musl, jemalloc, tcmalloc, mimalloc or on non-Linux systems, where it is
skipped with the reason.

Cost: proportional to the heap's size, tens of ms per GiB; ctypes releases
the GIL during the call, so other threads run, but glibc holds each arena's
lock while it walks it: a thread that allocates meanwhile waits (5-13 ms
stalls of a request loop measured during governor passes over a ~1 GiB
heap, ``benchmarks/bench_governor.py pauses``). Runs at CHEAP.

A *finisher* (``finisher = True``): it turns what earlier steps released to
malloc into RSS, so the governor's adaptive order runs it after them and
never leaves it out while they release memory (see ``docs/governor.md``,
"Adaptive order").
"""

from __future__ import annotations

from hivemem._engine.context import StrategyContext, StrategyResult
from hivemem._levels import CHEAP
from hivemem._measure.native import is_thread_arena

__all__ = ["MallocTrim", "STRATEGY", "heap_size", "is_thread_arena"]


def heap_size() -> int | None:
    """Address space of glibc's heaps (``[heap]`` and thread arenas), from ``/proc/self/maps``.

    An upper bound of what ``malloc_trim`` can return: it returns only free
    pages inside these heaps. ``maps`` is cheap (the kernel walks no page
    tables for it, unlike ``smaps``), and reading it creates no object that
    outlives the call: objects allocated mid-pass and kept would land in the
    sparse arenas and pin them. ``None`` without ``/proc``.
    """
    try:
        with open("/proc/self/maps", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rows: list[tuple[int, int, str, str]] = []
    for line in data.split(b"\n"):
        head = line.split(None, 5)
        if len(head) < 5:
            continue
        lo, _, hi = head[0].partition(b"-")
        try:
            start, end = int(lo, 16), int(hi, 16)
        except ValueError:
            continue
        name = head[5].strip().decode("utf-8", "replace") if len(head) == 6 else ""
        rows.append((start, end, head[1].decode("ascii", "replace"), name))
    return sum(e - s for i, (s, e, _, n) in enumerate(rows) if n == "[heap]" or is_thread_arena(rows, i))


class MallocTrim:
    """Call ``malloc_trim(0)`` where glibc is the allocator; skip with the reason elsewhere."""

    name = "trim"
    priority = 80
    aggressiveness = CHEAP
    finisher = True
    rerun = "after_release"  # a climbing optimize() runs it again once later steps freed malloc memory

    def prepare(self) -> None:
        """Load ctypes and find the allocator now (reads /proc/self/maps once), not in the first pass."""
        from hivemem._measure.native import trim_unavailable_reason

        trim_unavailable_reason()

    def apply(self, ctx: StrategyContext) -> StrategyResult:
        from hivemem._measure.native import malloc_trim, trim_unavailable_reason

        reason = trim_unavailable_reason()
        if reason is not None:
            return StrategyResult.skip(reason)
        # No mallinfo2() beside it: it walks every free chunk under malloc's lock (~45 ms on a
        # fragmented 1.7 GiB heap), stalling the program's own allocations; what the trim
        # returned is measured as RSS around the step (docs/allocator.md).
        released = malloc_trim(0)
        stats: dict[str, object] = {"released": released}
        summary = "malloc_trim(0) released pages" if released else "malloc_trim(0) found nothing to release"
        return StrategyResult(summary, stats=stats)

    def at_most(self, ctx: StrategyContext) -> int | None:
        """The most RSS a trim could return now: the size of malloc's heaps (0 where it cannot run).

        Read from ``/proc/self/maps`` (microseconds; ``mallinfo2`` walks every
        free chunk, ~300 ms on a fragmented 1.7 GiB heap). It does not load
        ctypes: a module loaded mid-pass keeps its objects in the sparse
        arenas the pass is about to empty (measured on the demo app: +6 MiB
        after compaction). Where malloc is not glibc, trim does nothing and
        the bound is loose but true. A climbing ``optimize()`` uses it to
        leave a level early when even this cannot close the gap (docs/optimize.md).
        """
        return heap_size()

    def __repr__(self) -> str:
        return "MallocTrim()"


#: The strategy this module adds (the registry finds it by the module's name).
STRATEGY = MallocTrim
