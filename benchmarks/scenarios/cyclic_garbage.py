"""Cyclic garbage: request object graphs with parent/child cycles, in an app that disabled the GC.

Services that call ``gc.disable()`` (to avoid collector pauses, or before
forking, as Instagram does) accumulate every reference cycle they drop.
Here each request builds a tree whose children point back at their parent;
only a per-request total survives, in a preallocated array.
"""

from __future__ import annotations

import array
import gc
import hashlib

DESCRIPTION = "cyclic garbage: 300k request graphs with parent/child cycles, gc disabled by the app"
TARGETED = True
REQUESTS = 300_000
CHILDREN = 6


class Node:
    def __init__(self, parent: Node | None, payload: object) -> None:
        self.parent = parent
        self.children: list[Node] = []
        self.payload = payload


def _handle(i: int) -> int:
    root = Node(None, {"path": f"/items/{i}", "user": f"user{i % 1000}", "attempt": 0})
    for j in range(CHILDREN):
        child = Node(root, [i, j, f"field-{i}-{j}" * 3])
        root.children.append(child)
    return sum(len(c.payload[2]) for c in root.children)  # type: ignore[index]


def build() -> array.array[int]:
    gc.disable()  # the application's choice; hivemem's gc strategy still collects when asked
    totals = array.array("q", bytes(8 * REQUESTS))
    for i in range(REQUESTS):
        totals[i] = _handle(i)  # the request graph becomes cyclic garbage here
    return totals


def build_floor() -> array.array[int]:
    totals = array.array("q", bytes(8 * REQUESTS))
    for i in range(REQUESTS):
        totals[i] = sum(len(f"field-{i}-{j}" * 3) for j in range(CHILDREN))
    return totals


def checksum(state: array.array[int]) -> str:
    return hashlib.sha256(state.tobytes()).hexdigest()
