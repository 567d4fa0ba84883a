"""Sparse survivors, a variant: 6.4M small dicts, 1 in 50 kept in a list registered with compactable."""

from __future__ import annotations

from scenarios.sparse_survivors import make

TARGETED = True
globals().update(make(6_400_000, 50))  # DESCRIPTION, build, build_floor, prepare, checksum
