"""500 MB of 1 MiB bytes and array values in a SpillStore: the ``spill`` strategy's case."""

from __future__ import annotations

import hashlib

DESCRIPTION = "500 MB of 1 MiB bytes and array.array values in a hivemem.SpillStore"
TARGETED = True
COUNT = 500
SIZE = 2**20


def _value(i: int) -> object:
    import array
    import random

    data = random.Random(i).randbytes(SIZE)
    if i % 2:
        return array.array("d", data)  # 1 MiB of doubles
    return data


def build() -> object:
    import hivemem

    store = hivemem.SpillStore()
    for i in range(COUNT):
        store[i] = _value(i)
    return store


def build_floor() -> object:
    """An empty store: every value on disk is the floor (hivemem imported, nothing in memory)."""
    import hivemem

    store = hivemem.SpillStore()
    for i in range(COUNT):
        store[i] = _value(i)
        store.spill()
    return store


def checksum(state: object) -> str:
    h = hashlib.sha256()
    for key in sorted(state):  # type: ignore[call-overload]
        h.update(memoryview(state.peek(key)).cast("B"))  # type: ignore[attr-defined]
    return h.hexdigest()
