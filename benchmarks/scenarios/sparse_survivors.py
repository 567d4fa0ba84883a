"""Sparse survivors: 2M small dicts built, 1 in 50 kept in a list registered with hivemem.compactable."""

from __future__ import annotations

import hashlib
import json

DESCRIPTION = "sparse survivors: 2M small dicts, 1 in 50 kept in a compactable list"
TARGETED = True
N = 2_000_000
EVERY = 50


def _row(i: int) -> dict[str, object]:
    return {"id": i, "name": f"user{i}", "score": i * 0.5}


def build() -> list[dict[str, object]]:
    rows = [_row(i) for i in range(N)]  # e.g. a day's events, parsed
    keep = rows[::EVERY]  # the few that stay interesting
    del rows
    return keep


def build_floor() -> list[dict[str, object]]:
    return [_row(i) for i in range(0, N, EVERY)]


def prepare(state: list[dict[str, object]]) -> None:
    import hivemem

    hivemem.compactable(state)


def checksum(state: list[dict[str, object]]) -> str:
    return hashlib.sha256(json.dumps(state).encode()).hexdigest()
