"""The workload behind ``make demo`` / ``hivemem demo``.

Builds a bloated heap of the kind MEMORY-FACTS describes (many 1-4 KiB
``bytes`` objects, 63 of every 64 then freed, so glibc keeps the pages),
then runs ``hivemem.optimize()`` toward a target and prints the measured
report. Every figure printed is read from the kernel, not estimated.
"""

from __future__ import annotations

import hashlib
import sys

import hivemem
from hivemem._sizes import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO


def build_fragmented_heap(total_mb: int = 600) -> list[bytes]:
    """Allocate ~total_mb MiB of 1-4 KiB bytes objects; keep 1 in 64 (returned)."""
    blocks: list[bytes] = []
    size, n = 0, 0
    limit = total_mb * 2**20
    while size < limit:
        length = 1024 + (n * 977) % 3072
        blocks.append(bytes([n % 251]) * length)
        size += length
        n += 1
    survivors = blocks[::64]
    del blocks
    return survivors


def checksum(data: list[bytes]) -> str:
    h = hashlib.sha256()
    for b in data:
        h.update(b)
    return h.hexdigest()[:16]


def main(target_mb: float = 90, total_mb: int = 600, out: TextIO | None = None) -> int:
    stream = out if out is not None else sys.stdout

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    start = hivemem.rss()
    say(f"hivemem demo: RSS at start {format_size(start)}")
    survivors = build_fragmented_heap(total_mb)
    before_sum = checksum(survivors)
    say(
        f"built {total_mb} MiB of 1-4 KiB objects and freed 63 of every 64: "
        f"RSS now {format_size(hivemem.rss())} for {format_size(sum(map(len, survivors)))} of live data"
    )
    say(f"running hivemem.optimize(target_mb={target_mb}) ...")
    report = hivemem.optimize(
        target_mb=target_mb,
        on_step=lambda s: say(f"  {s.name:<8} {s.note()}  (RSS {format_size(s.rss_after)})"),
    )
    say("")
    say(str(report))
    same = checksum(survivors) == before_sum
    say("")
    say(f"results checksum {'identical' if same else 'CHANGED'} ({before_sum})")
    say(f"target {format_size(report.target)} {'REACHED' if report.reached else 'NOT reached'}")
    return 0 if same else 1
