"""Sparse survivors with nothing registered: the default call cannot compact, and must say what would help.

The same 2M dicts, 1 in 50 kept, but the program never calls
``hivemem.compactable``. No strategy may rebuild data it was not given, so
RSS stays up; the report's explanation must name the fragmentation and the
registration that would let ``compact`` act.
"""

from __future__ import annotations

from scenarios.sparse_survivors import make

TARGETED = True
WHY = (
    "nothing is registered, and compact acts only on containers registered with hivemem.compactable: "
    "the report says so and names the call that would help"
)
#: Phrases the optimize report's explanation must contain (benchmarks/test_scenarios.py checks them).
EXPECT_IN_WHY = ("nothing is registered with hivemem.compactable", "free inside pymalloc's arenas")
globals().update(make(2_000_000, 50, registered=False))  # DESCRIPTION, build, build_floor, checksum
