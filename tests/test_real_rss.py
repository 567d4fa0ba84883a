"""Real-process tests: each runs in a fresh interpreter and states its tolerance."""

from __future__ import annotations

import json

import pytest

from .conftest import linux_only, run_python

pytestmark = [linux_only, pytest.mark.slow]


def test_trim_returns_fragmented_glibc_heap() -> None:
    """~600 MB of 1-4 KiB bytes, 63 of 64 freed: optimize() returns >= 90% of the freed memory.

    The freed amount is the RSS growth minus the survivors' bytes. Tolerance: the
    90% floor; the whole optimize() must cost under 1 s of CPU (CPU time, not wall
    time: on a shared machine wall time measures the neighbours; the wall-clock
    figure is a benchmark, benchmarks/bench_strategies.py).
    """
    out = run_python(
        """
        import json, time, hivemem
        from hivemem._cli.demo import build_fragmented_heap
        base = hivemem.rss()
        keep = build_fragmented_heap(600)
        live = sum(map(len, keep))
        grown = hivemem.rss() - base
        t = time.process_time()
        report = hivemem.optimize(target_mb=1)
        secs = time.process_time() - t
        print(json.dumps({"grown": grown, "live": live, "freed": report.freed, "secs": secs,
                          "trim": report.step("trim").freed, "report": str(report)}))
        """
    )
    r = json.loads(out)
    freed_by_program = r["grown"] - r["live"]
    assert r["grown"] > 500 * 2**20, r
    assert r["freed"] >= 0.9 * freed_by_program, r["report"]
    assert r["trim"] >= 0.9 * freed_by_program, r["report"]  # the trim step gets the credit
    assert r["secs"] < 1.0, r["report"]


def test_cyclic_garbage_is_collected_by_gc_step() -> None:
    """Cycles freed by the gc step show up as collected objects and an RSS drop after trim."""
    out = run_python(
        """
        import gc, json, hivemem
        gc.disable()
        class Node:
            def __init__(self):
                self.me = self
                self.payload = bytes(2000)
        nodes = [Node() for _ in range(100_000)]
        del nodes
        report = hivemem.optimize()
        print(json.dumps({"collected": report.step("gc").stats["collected"], "freed": report.freed}))
        """
    )
    r = json.loads(out)
    assert r["collected"] >= 100_000
    assert r["freed"] > 150 * 2**20  # 100k x ~2 KB payloads, tolerance: well under the 200 MB freed
