"""process_tree(): every descendant of a process with RSS, PSS, USS, swap and the sums."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import hivemem
from hivemem._measure.proctree import ProcessMemory, ProcessTree, _ordered

from .conftest import linux_only


def test_order_is_depth_first_by_pid() -> None:
    """Descendants are listed depth-first, children in pid order, with their depth; others left out."""
    parents = {10: 1, 12: 10, 11: 10, 20: 11, 30: 1, 31: 30}
    assert _ordered(10, parents) == [(10, 1, 0), (11, 10, 1), (20, 11, 2), (12, 10, 1)]


def test_order_survives_a_parent_cycle() -> None:
    """A pid-reuse loop in the parent links cannot make the walk run forever."""
    assert _ordered(5, {5: 6, 6: 5}) == [(5, 6, 0), (6, 5, 1)]


def test_totals_skip_unreadable_figures() -> None:
    """Sums add every figure that was read and skip None (an unreadable process)."""
    tree = ProcessTree(
        1,
        [
            ProcessMemory(1, 0, rss=100, pss=60, uss=50, swap=0),
            ProcessMemory(2, 1, depth=1, rss=80, pss=40, uss=30, swap=5),
            ProcessMemory(3, 1, depth=1, error="permission denied"),
        ],
        "test",
    )
    assert tree.total == {"rss": 180, "pss": 100, "uss": 80, "swap": 5}
    assert [p.pid for p in tree.children] == [2, 3]
    assert json.loads(json.dumps(tree.to_dict()))["total"]["pss"] == 100
    text = tree.table()
    assert "total" in text.splitlines()[-1] and "3 processes" in text
    assert "permission denied" in text
    assert "ProcessTree(root=1, processes=3" in repr(tree)
    assert "<table>" in tree._repr_html_()


def test_frozen() -> None:
    """ProcessMemory and ProcessTree cannot be changed after creation."""
    p = ProcessMemory(1, 0, rss=1)
    with pytest.raises(AttributeError):
        p.rss = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ProcessTree(1, [p], "x").root = 3  # type: ignore[misc]


@pytest.mark.parametrize("bad", [0, -1, True, "12", 1.5])
def test_bad_pid(bad: object) -> None:
    """A pid that is not a positive int is refused with a message naming it."""
    with pytest.raises(hivemem.InvalidArgument, match="pid must be a positive int"):
        hivemem.process_tree(bad)  # type: ignore[arg-type]


def test_missing_process() -> None:
    """A pid with no process raises InvalidArgument naming the pid."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(hivemem.InvalidArgument, match=f"no process with pid {proc.pid}"):
        hivemem.process_tree(proc.pid)


@linux_only
def test_real_children_are_found_and_measured() -> None:
    """Real subprocesses (and a grandchild) appear under this process with kernel figures.

    Each figure is read from /proc/<pid>/smaps_rollup; the only tolerance is
    PSS <= RSS and USS <= PSS, which the kernel guarantees for each process.
    """
    code = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    try:
        mine = {child.pid for child in procs}
        for _ in range(400):  # until both grandchildren exist (this worker may have other children)
            tree = hivemem.process_tree()
            if sum(p.depth == 2 and p.ppid in mine for p in tree) >= 2:
                break
            time.sleep(0.05)
        assert tree.root == os.getpid()
        assert tree.processes[0].pid == os.getpid() and tree.processes[0].depth == 0
        pids = {p.pid: p for p in tree}
        for child in procs:
            assert pids[child.pid].depth == 1
            assert pids[child.pid].ppid == os.getpid()
            assert "python" in pids[child.pid].name or "time.sleep" in pids[child.pid].name
        grandchildren = [p for p in tree if p.depth == 2 and p.ppid in mine]
        assert len(grandchildren) == 2
        for p in tree:
            assert p.rss is not None and p.pss is not None and p.uss is not None and p.swap is not None
            assert p.uss <= p.pss <= p.rss
        assert tree.total["pss"] == sum(p.pss for p in tree)  # type: ignore[misc]
        alone = hivemem.process_tree(children=False)
        assert [p.pid for p in alone] == [os.getpid()]
    finally:
        for child in procs:
            for p in hivemem.process_tree(child.pid).children:
                os.kill(p.pid, 9)
            child.kill()
            child.wait()


def test_psutil_fallback_matches_shape() -> None:
    """The psutil path (used off Linux) returns the same tree shape for this process and a child."""
    pytest.importorskip("psutil")
    from hivemem._measure.proctree import _psutil_tree

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = _psutil_tree(os.getpid(), True)
        assert tree.source == "psutil"
        assert tree.processes[0].pid == os.getpid()
        child = next(p for p in tree if p.pid == proc.pid)
        assert child.depth == 1 and child.rss
    finally:
        proc.kill()
        proc.wait()


@linux_only
def test_hivemem_status_children(capsys: pytest.CaptureFixture[str]) -> None:
    """``hivemem status --children PID`` lists the descendants with the sums, in text and in JSON."""
    from hivemem._cli.main import main

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert main(["status", "--children", str(os.getpid())]) == 0
        out = capsys.readouterr().out
        assert f"process tree of {os.getpid()}" in out
        assert any(line.strip().startswith(str(child.pid)) for line in out.splitlines())
        assert any(line.strip().startswith("total") for line in out.splitlines())
        assert main(["status", "--children", "--json", str(os.getpid())]) == 0
        info = json.loads(capsys.readouterr().out)
        pids = [p["pid"] for p in info["children"]["processes"]]
        assert pids[0] == os.getpid() and child.pid in pids
        assert info["children"]["total"]["pss"] == sum(p["pss"] for p in info["children"]["processes"])
        assert main(["status", str(os.getpid()), "--json"]) == 0
        assert "children" not in json.loads(capsys.readouterr().out)  # only when asked
    finally:
        child.kill()
        child.wait()
