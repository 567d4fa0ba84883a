"""Sparse survivors, a variant: 1.6M small dicts, 1 in 50 kept in a list registered with compactable."""

from __future__ import annotations

from scenarios.sparse_survivors import make

TARGETED = True
_names = make(1600000, 50)
DESCRIPTION = _names["DESCRIPTION"]
build = _names["build"]
build_floor = _names["build_floor"]
prepare = _names["prepare"]
checksum = _names["checksum"]
