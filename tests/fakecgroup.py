"""A fake root for cgroup and ``/proc`` reads: the function under test takes it as ``root=``.

Used by ``tests/test_limits.py``, ``tests/test_psi.py`` and ``tests/test_governor.py``.
"""

from __future__ import annotations

from pathlib import Path

#: ``/proc/self/mountinfo`` lines: the cgroup v2 unified mount, and a cgroup v1 memory controller.
V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
V1_MOUNT = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"


def tree(tmp: Path, files: dict[str, str]) -> str:
    """Write *files* (absolute path -> text) below *tmp* and return *tmp* as the root to read."""
    for rel, text in files.items():
        p = tmp / rel.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return str(tmp)
