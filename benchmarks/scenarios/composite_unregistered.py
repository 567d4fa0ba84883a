"""The composite app at 1 GB with nothing registered: the default call may not touch its data, and says why.

The program never calls ``register_cache`` or ``compactable``, so only what
needs no opt-in runs (gc, trim, the standard library's caches). RSS stays
well above the target, and the report's explanation must name what would
help: the fragmentation compact could undo and the registrations it needs.
"""

from __future__ import annotations

from hivemem._cli.demo import App, answers, build_app
from hivemem._cli.demo import build_floor as _floor

DESCRIPTION = "composite app, 1 GB, nothing registered with hivemem"
TARGETED = True
WHY = (
    "nothing is registered: compact, caches and dedup act only on what the program opted in; the report "
    "names the fragmentation and the registrations that would let them act"
)
#: Phrases the optimize report's explanation must contain (benchmarks/test_scenarios.py checks them).
EXPECT_IN_WHY = (
    "nothing is registered with hivemem.compactable",
    "nothing is registered with hivemem.register_cache",
)
SIZE = 1000 * 2**20


def build() -> App:
    return build_app(SIZE)


def build_floor() -> App:
    return _floor(SIZE)


def checksum(state: App) -> str:
    return answers(state)
