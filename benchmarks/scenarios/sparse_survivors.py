"""Sparse survivors: 2M small dicts built, 1 in 50 kept in a list registered with hivemem.compactable.

:func:`make` builds the same workload at other sizes and survivor fractions
(the ``sparse_*`` variants); this module is the 2%, ~630 MB case.
"""

from __future__ import annotations

import hashlib
import json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def _row(i: int) -> dict[str, object]:
    return {"id": i, "name": f"user{i}", "score": i * 0.5}


def make(n: int, every: int, *, registered: bool = True) -> dict[str, object]:
    """The scenario's names for *n* rows with 1 in *every* kept, registered with compactable or not."""

    def build() -> list[dict[str, object]]:
        rows = [_row(i) for i in range(n)]  # e.g. a day's events, parsed
        keep = rows[::every]  # the few that stay interesting
        del rows
        return keep

    def build_floor() -> list[dict[str, object]]:
        return [_row(i) for i in range(0, n, every)]

    def prepare(state: list[dict[str, object]]) -> None:
        import hivemem

        hivemem.compactable(state)

    def checksum(state: list[dict[str, object]]) -> str:
        return hashlib.sha256(json.dumps(state).encode()).hexdigest()

    share = f"{100 / every:g}%"
    names: dict[str, object] = {
        "DESCRIPTION": f"sparse survivors: {n / 1e6:g}M small dicts, {share} kept"
        + (" in a compactable list" if registered else ", nothing registered"),
        "build": build,
        "build_floor": build_floor,
        "checksum": checksum,
    }
    if registered:
        names["prepare"] = prepare
    return names


N = 2_000_000
EVERY = 50
TARGETED = True
_names = make(N, EVERY)
DESCRIPTION: str = _names["DESCRIPTION"]  # type: ignore[assignment]
build: Callable[[], list[dict[str, object]]] = _names["build"]  # type: ignore[assignment]
build_floor: Callable[[], list[dict[str, object]]] = _names["build_floor"]  # type: ignore[assignment]
prepare: Callable[[list[dict[str, object]]], None] = _names["prepare"]  # type: ignore[assignment]
checksum: Callable[[list[dict[str, object]]], str] = _names["checksum"]  # type: ignore[assignment]
