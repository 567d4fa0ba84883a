"""Duplicate strings: a 2M-row CSV-like table with a few distinct values per column.

``csv.reader`` makes a new ``str`` for every field of every row, so a column
with 4 distinct values holds 2M string objects. The floor is the same table
read through ``hivemem.StringPool`` (one object per distinct value): the
prevention path. ``optimize()`` can only repair after the fact: the table is
registered for ``dedup_strings`` and ``compact``.
"""

from __future__ import annotations

import csv
import hashlib
import io

DESCRIPTION = "duplicate strings: 2M-row CSV-like table, 4 low-cardinality columns"
WHY = (
    "dedup_strings frees the duplicates only inside pymalloc (419.6 MiB), and compact must then rebuild "
    "the rows; pickle rebuilds each 4-item list with room for 8, so the result stays above the "
    "StringPool floor (prevention: reading through hivemem.StringPool reaches the floor itself)"
)
TARGETED = True
ROWS = 2_000_000
COLUMNS = (
    ("GB", "FR", "DE", "US", "JP"),
    ("active", "inactive", "pending"),
    tuple(f"2024-01-{d:02d}" for d in range(1, 29)),
    ("alpha", "beta", "gamma", "delta", "epsilon", "zeta"),
)


def _text() -> str:
    return "".join(
        ",".join(col[(i * (k + 3)) % len(col)] for k, col in enumerate(COLUMNS)) + "\n" for i in range(ROWS)
    )


def build() -> list[list[str]]:
    return list(csv.reader(io.StringIO(_text())))


def build_floor() -> list[list[str]]:
    import hivemem

    pool = hivemem.StringPool()
    return [pool.map(row) for row in csv.reader(io.StringIO(_text()))]  # type: ignore[misc]


def prepare(state: list[list[str]]) -> None:
    import hivemem

    hivemem.register_container(state)
    hivemem.compactable(state)


def checksum(state: list[list[str]]) -> str:
    h = hashlib.sha256()
    for row in state:
        h.update(",".join(row).encode())
    return h.hexdigest()
