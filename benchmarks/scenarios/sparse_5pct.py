"""Sparse survivors, a variant: 2M small dicts, 1 in 20 kept in a list registered with compactable."""

from __future__ import annotations

from scenarios.sparse_survivors import make

TARGETED = True
globals().update(make(2_000_000, 20))  # DESCRIPTION, build, build_floor, prepare, checksum
