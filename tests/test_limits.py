from __future__ import annotations

import os
from pathlib import Path

import pytest

import hivemem
from hivemem._measure.limits import cgroup_dirs, memory_limit

from .fakecgroup import V1_MOUNT, V2_MOUNT, tree

GIB = 2**30


def test_v2_nested_group_takes_smallest_ancestor(tmp_path: Path) -> None:
    """cgroup v2: the leaf says max, its parent has memory.max; the parent's limit applies."""
    root = tree(
        tmp_path,
        {
            "/proc/self/cgroup": "0::/app.slice/worker\n",
            "/proc/self/mountinfo": V2_MOUNT,
            "/sys/fs/cgroup/app.slice/worker/memory.max": "max\n",
            "/sys/fs/cgroup/app.slice/worker/memory.high": "max\n",
            "/sys/fs/cgroup/app.slice/worker/memory.low": "1048576\n",
            "/sys/fs/cgroup/app.slice/memory.max": str(2 * GIB),
        },
    )
    lim = memory_limit(root=root)
    assert lim.bytes == 2 * GIB
    assert "cgroup v2 memory.max (/sys/fs/cgroup/app.slice)" == lim.source


def test_v2_memory_high_counts_and_low_does_not(tmp_path: Path) -> None:
    """memory.high is a limit (throttling starts there); memory.low is only protection."""
    root = tree(
        tmp_path,
        {
            "/proc/self/cgroup": "0::/svc\n",
            "/proc/self/mountinfo": V2_MOUNT,
            "/sys/fs/cgroup/svc/memory.max": str(4 * GIB),
            "/sys/fs/cgroup/svc/memory.high": str(3 * GIB),
            "/sys/fs/cgroup/svc/memory.low": str(1 * GIB),
        },
    )
    lim = memory_limit(root=root)
    assert lim.bytes == 3 * GIB
    assert "memory.high" in lim.source
    assert all("memory.low" not in s for s, _ in lim.candidates)


def test_v2_all_max_falls_back_to_ram(tmp_path: Path) -> None:
    """The literal 'max' means no limit."""
    root = tree(
        tmp_path,
        {
            "/proc/self/cgroup": "0::/\n",
            "/proc/self/mountinfo": V2_MOUNT,
            "/sys/fs/cgroup/memory.max": "max\n",
        },
    )
    assert memory_limit(root=root).source.startswith("physical RAM")


def test_v1_limit_and_huge_value(tmp_path: Path) -> None:
    """cgroup v1: a real limit counts; PAGE_COUNTER_MAX-like values mean unlimited."""
    root = tree(
        tmp_path,
        {
            "/proc/self/cgroup": "4:memory:/process_api/abc\n3:cpuset:/\n0::/\n",
            "/proc/self/mountinfo": V1_MOUNT,
            "/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes": "9223372036854771712\n",
            "/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes": str(512 * 2**20),
            "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
        },
    )
    lim = memory_limit(root=root)
    assert lim.bytes == 512 * 2**20
    assert lim.source == "cgroup v1 memory.limit_in_bytes (/sys/fs/cgroup/memory/process_api)"


def test_v1_container_with_nonroot_hierarchy(tmp_path: Path) -> None:
    """In a container the mount's root may be the group itself (/docker/xyz mounted at the memory dir)."""
    root = tree(
        tmp_path,
        {
            "/proc/self/cgroup": "7:memory:/docker/xyz\n",
            "/proc/self/mountinfo": (
                "40 31 0:32 /docker/xyz /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n"
            ),
            "/sys/fs/cgroup/memory/memory.limit_in_bytes": str(GIB),
        },
    )
    assert cgroup_dirs(root)["v1"] == os.path.normpath(f"{root}/sys/fs/cgroup/memory")
    assert memory_limit(root=root).bytes == GIB


def test_no_cgroup_files_is_physical_ram(tmp_path: Path) -> None:
    """Without /proc/self/cgroup the limit is physical RAM."""
    lim = memory_limit(root=str(tmp_path))
    assert lim.source.startswith("physical RAM") and lim.bytes > 0


def test_real_limit_is_sane() -> None:
    """The real process has a positive limit, and the candidates are sorted smallest first."""
    lim = hivemem.memory_limit()
    assert lim.bytes > 0
    sizes = [b for _, b in lim.candidates]
    assert sizes == sorted(sizes) and sizes[0] == lim.bytes
    assert lim.to_dict()["bytes"] == lim.bytes
    assert "MemoryLimit(" in repr(lim)


def test_rlimit_as_is_a_candidate() -> None:
    """RLIMIT_AS, when set, becomes the limit (checked in a child to leave ours alone)."""
    from .conftest import run_python

    out = run_python(
        """
        import resource, hivemem
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, resource.RLIM_INFINITY))
        lim = hivemem.memory_limit()
        print(lim.bytes, lim.source)
        """
    )
    nbytes, source = out.split(" ", 1)
    if int(nbytes) < 3 * 2**30:
        pytest.skip(f"a smaller limit applies here: {source}")
    assert int(nbytes) == 3 * 2**30 and source.strip() == "RLIMIT_AS"
