"""The one /proc reader (_measure/procfs.py): kept descriptors, the smaps_rollup table, the fork hook."""

from __future__ import annotations

import os
import sys

import pytest

from hivemem._measure import procfs

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_rollup_figures_sum_the_private_fields_into_uss() -> None:
    text = (
        "Rss: 10 kB\nPss: 6 kB\nPrivate_Clean: 1 kB\nPrivate_Dirty: 2 kB\nPrivate_Hugetlb: 0 kB\nSwap: 3 kB\n"
    )
    assert procfs.rollup_figures(text) == {"rss": 10240, "pss": 6144, "uss": 3072, "swap": 3072}


def test_kb_fields_keeps_only_kb_lines() -> None:
    assert procfs.kb_fields("Name:\tpython\nVmRSS:\t  12 kB\nThreads:\t1\n") == {"VmRSS": 12 * 1024}


@linux
def test_kept_descriptors_are_dropped_in_a_forked_child() -> None:
    assert procfs.rss() > 0 and procfs.read_hwm() is not None
    parent = dict(procfs._fds)
    assert parent["statm"] >= 0 and parent["status"] >= 0
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        ok = all(fd == -1 for fd in procfs._fds.values()) and procfs.rss() > 0
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1"
    os.close(r)
    assert procfs._fds["statm"] == parent["statm"]  # the parent's stay open


@linux
def test_smaps_mappings_cover_the_rollup_rss() -> None:
    maps = procfs.smaps_mappings()
    assert maps is not None and maps
    assert all(start < end for start, end, *_ in maps)
    total = sum(m[4] for m in maps)
    assert total > 0
