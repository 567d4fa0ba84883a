"""glibc heap fragmentation: ~600 MB of 1-4 KiB bytes objects, 1 in 64 kept."""

from __future__ import annotations

import hashlib

DESCRIPTION = "glibc heap fragmentation: 600 MB of 1-4 KiB bytes, 1 in 64 kept"
TARGETED = True
TOTAL = 600 * 2**20


def _make(n: int) -> bytes:
    return bytes([n % 251]) * (1024 + (n * 977) % 3072)


def build() -> list[bytes]:
    blocks, size, n = [], 0, 0
    while size < TOTAL:
        b = _make(n)
        blocks.append(b)
        size += len(b)
        n += 1
    keep = blocks[::64]
    del blocks
    return keep


def build_floor() -> list[bytes]:
    keep, size, n = [], 0, 0
    while size < TOTAL:
        length = 1024 + (n * 977) % 3072
        if n % 64 == 0:
            keep.append(_make(n))
        size += length
        n += 1
    return keep


def checksum(state: list[bytes]) -> str:
    h = hashlib.sha256()
    for b in state:
        h.update(b)
    return h.hexdigest()
