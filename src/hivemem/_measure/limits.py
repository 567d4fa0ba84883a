"""The effective memory budget of this process, and where it comes from.

Candidates, smallest wins:

* cgroup v2 ``memory.max`` and ``memory.high`` of the process's own group and
  every ancestor up to the mount (the literal ``max`` means no limit);
  ``memory.low`` is a protection floor, not a limit, and is ignored;
* cgroup v1 ``memory.limit_in_bytes`` of the group and its ancestors (values
  of 2**60 or more mean no limit: the kernel writes ``PAGE_COUNTER_MAX``);
* ``RLIMIT_AS`` and ``RLIMIT_RSS`` soft limits (Linux has not enforced
  ``RLIMIT_RSS`` since 2.6; it is reported, and marked advisory);
* physical RAM.

The process's groups come from ``/proc/self/cgroup`` and the mount points
from ``/proc/self/mountinfo``, so nested groups and containers whose
hierarchy root is not ``/`` resolve correctly.
"""

from __future__ import annotations

import os
import sys

from hivemem._frozen import Frozen

__all__ = ["MemoryLimit", "cgroup_dirs", "memory_limit"]

_UNLIMITED_V1 = 2**60


class MemoryLimit(Frozen):
    """The effective memory budget: ``bytes``, ``source``, and every ``candidate`` seen.

    ``candidates`` is a tuple of ``(source, bytes)`` pairs, smallest first, so
    a user can see what else constrains the process.
    """

    __slots__ = ("bytes", "candidates", "source")
    __module__ = "hivemem"

    bytes: int
    source: str
    candidates: tuple[tuple[str, int], ...]

    def __init__(self, nbytes: int, source: str, candidates: tuple[tuple[str, int], ...] = ()) -> None:
        self._set(bytes=nbytes, source=source, candidates=tuple(candidates) or ((source, nbytes),))

    def __int__(self) -> int:
        return self.bytes

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MemoryLimit):
            return NotImplemented
        return (self.bytes, self.source, self.candidates) == (other.bytes, other.source, other.candidates)

    def __hash__(self) -> int:
        return hash((self.bytes, self.source))

    def to_dict(self) -> dict[str, object]:
        return {
            "bytes": self.bytes,
            "source": self.source,
            "candidates": [{"source": s, "bytes": b} for s, b in self.candidates],
        }

    def __repr__(self) -> str:
        from hivemem._sizes import format_size

        return f"MemoryLimit({format_size(self.bytes)!r}, source={self.source!r})"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _mounts(root: str) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
    """Return ((v2 mountpoint, v2 root), (v1 memory mountpoint, v1 root)), each or None."""
    text = _read(f"{root}/proc/self/mountinfo") or ""
    v2 = v1 = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        hier_root, mountpoint, fstype, superopts = fields[3], fields[4], tail[0], tail[2]
        if fstype == "cgroup2" and v2 is None:
            v2 = (mountpoint, hier_root)
        elif fstype == "cgroup" and "memory" in superopts.split(",") and v1 is None:
            v1 = (mountpoint, hier_root)
    return v2, v1


def _group_dir(mount: tuple[str, str], cgpath: str, root: str) -> str:
    mountpoint, hier_root = mount
    if hier_root != "/" and (cgpath == hier_root or cgpath.startswith(hier_root.rstrip("/") + "/")):
        cgpath = cgpath[len(hier_root.rstrip("/")) :] or "/"
    return os.path.normpath(f"{root}{mountpoint}/{cgpath.lstrip('/')}")


def cgroup_dirs(root: str = "") -> dict[str, str]:
    """The process's own memory cgroup directories: ``{"v2": path, "v1": path}`` (either may be absent).

    *root* prefixes every path; tests point it at a fake file tree.
    """
    text = _read(f"{root}/proc/self/cgroup")
    if not text:
        return {}
    v2_mount, v1_mount = _mounts(root)
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier, controllers, path = parts
        if hier == "0" and controllers == "" and v2_mount is not None:
            out["v2"] = _group_dir(v2_mount, path, root)
        elif "memory" in controllers.split(",") and v1_mount is not None:
            out["v1"] = _group_dir(v1_mount, path, root)
    return out


def _walk_up(leaf: str, stop: str) -> list[str]:
    dirs = []
    current = leaf
    while True:
        dirs.append(current)
        if current == stop or len(current) <= len(stop):
            break
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return dirs


def _cgroup_candidates(root: str) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    dirs = cgroup_dirs(root)
    v2_mount, v1_mount = _mounts(root)
    if "v2" in dirs and v2_mount is not None:
        top = os.path.normpath(f"{root}{v2_mount[0]}")
        for d in _walk_up(dirs["v2"], top):
            for name in ("memory.max", "memory.high"):
                value = _read(f"{d}/{name}")
                if value and value != "max" and value.isdigit():
                    found.append((f"cgroup v2 {name} ({d[len(root) :]})", int(value)))
    if "v1" in dirs and v1_mount is not None:
        top = os.path.normpath(f"{root}{v1_mount[0]}")
        for d in _walk_up(dirs["v1"], top):
            value = _read(f"{d}/memory.limit_in_bytes")
            if value and value.isdigit() and int(value) < _UNLIMITED_V1:
                found.append((f"cgroup v1 memory.limit_in_bytes ({d[len(root) :]})", int(value)))
    return found


def _rlimit_candidates() -> list[tuple[str, int]]:
    try:
        import resource
    except ImportError:
        return []
    found = []
    for name, note in (("RLIMIT_AS", ""), ("RLIMIT_RSS", " (advisory: Linux does not enforce it)")):
        which = getattr(resource, name, None)
        if which is None:
            continue
        try:
            soft, _hard = resource.getrlimit(which)
        except (OSError, ValueError):
            continue
        if soft != resource.RLIM_INFINITY and soft > 0:
            found.append((f"{name}{note}", int(soft)))
    return found


def _physical_ram() -> tuple[str, int] | None:
    try:
        return ("physical RAM", os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        pass
    try:
        import psutil

        return ("physical RAM (psutil)", int(psutil.virtual_memory().total))
    except ImportError:
        return None


def memory_limit(*, root: str = "") -> MemoryLimit:
    """Return the effective memory budget of this process as a :class:`MemoryLimit`.

    The smallest of the cgroup limits (v2 and v1, the process's own group and
    its ancestors), ``RLIMIT_AS``/``RLIMIT_RSS`` and physical RAM. *root* is
    for tests: it prefixes every ``/proc`` and ``/sys`` path read.
    """
    candidates: list[tuple[str, int]] = []
    if sys.platform.startswith("linux"):
        candidates += _cgroup_candidates(root)
    if not root:
        candidates += _rlimit_candidates()
    ram = _physical_ram()
    if ram is not None:
        candidates.append(ram)
    if not candidates:
        from hivemem._errors import Unavailable

        raise Unavailable(
            f"cannot determine a memory limit on {sys.platform}: no cgroup, rlimit or RAM figure"
        )
    candidates.sort(key=lambda c: c[1])
    source, nbytes = candidates[0]
    return MemoryLimit(nbytes, source, tuple(candidates))
