"""What a step gave back to the allocators, read right before and right after it.

RSS alone misjudges a step while the program allocates: a step that frees a
cache into malloc's heap or pymalloc's arenas shows no RSS drop until ``trim``
(or ``compact``) runs (docs/design.md, "Fragmentation"), and the program's own
growth hides a drop that did happen. So the engine also reads, around every step:

* glibc's in-use bytes, ``mallinfo2()`` ``uordblks + hblkhd`` (heap blocks in
  use plus mmap'd blocks): a fall is what the step released to malloc;
* ``sys.getallocatedblocks()``: a fall is the number of pymalloc blocks released.

Both are measured, never estimated; ``StepResult.malloc_released`` and
``blocks_released`` carry them. The governor's adaptive order credits a step
with either (``docs/governor.md``, "Adaptive order").

A reader may bring its own: an object with ``allocated() -> (malloc_in_use,
blocks)`` (either may be ``None``). The default reader uses the real
allocators; any other reader without ``allocated()`` gets no allocator figures
(a fake RSS beside real allocator counts would mean nothing).

Cost: ``sys.getallocatedblocks()`` visits every pymalloc pool (CPython
3.11: well under 1 µs for a small heap, more for GiBs of arenas).
``mallinfo2`` walks malloc's free lists: a few µs on a compact heap, ~0.2 ms
on a heap fragmented into ~100k free chunks (measured here). Both are read
with the GIL held (``_measure/holdgil.py``): a release would cost the pass a switch
interval under a busy main thread.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["allocated", "probe_for", "released"]


def allocated() -> tuple[int | None, int | None]:
    """``(malloc in-use bytes or None, pymalloc blocks)`` for this process, now."""
    try:
        from hivemem._measure.holdgil import malloc_in_use

        in_use = malloc_in_use()
    except Exception:  # ctypes missing or broken: the blocks count still tells something
        in_use = None
    return in_use, sys.getallocatedblocks()


def probe_for(reader: object) -> Callable[[], tuple[int | None, int | None]] | None:
    """The allocator probe that goes with *reader*, or ``None`` when it has none."""
    own = getattr(reader, "allocated", None)
    if callable(own):
        probe: Callable[[], tuple[int | None, int | None]] = own  # the reader's own, as documented
        return probe
    from hivemem._measure.usage import ProcReader

    if isinstance(reader, ProcReader) or getattr(reader, "real_process", False):
        return allocated
    return None


Reading = tuple[int | None, int | None]


def released(before: Reading, after: Reading) -> Reading:
    """``(malloc bytes, pymalloc blocks)`` released between two probes (negative: allocated)."""
    m0, b0 = before
    m1, b1 = after
    return (None if m0 is None or m1 is None else m0 - m1), (None if b0 is None or b1 is None else b0 - b1)
