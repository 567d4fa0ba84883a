"""Every ``/proc`` read hivemem makes of a process, and the psutil fallback where there is no ``/proc``.

One place knows the files and their formats:

* ``/proc/self/statm``: RSS, the hot path (:func:`rss`, :func:`statm_fd`);
* ``/proc/self/status``: ``VmHWM`` (:func:`read_hwm`) and any ``Key: N kB``
  field (:func:`read_kb_fields`, :func:`kb_fields`);
* ``/proc/<pid>/smaps``: every mapping (:func:`smaps_mappings`);
* ``/proc/<pid>/smaps_rollup``: RSS, PSS, USS and swap, through the one field
  table :data:`SMAPS_ROLLUP` (:func:`smaps_rollup`, :func:`rollup_figures`);
* ``/proc/self/clear_refs``: the peak reset (:func:`write_clear_refs`);
* any other text file (:func:`read_text`);
* ``/proc/<pid>`` existence, with ``kill(pid, 0)`` where there is no ``/proc`` (:func:`pid_alive`).

Descriptors kept open (statm, status, clear_refs) save an open and a close
per reading; they all live in :data:`_fds`, and ONE fork hook drops them in a
child, whose ``/proc/self`` is not the parent's (an inherited descriptor
names the parent's ``/proc/<pid>``). No reading asks for its pid.

Where there is no ``/proc`` (not Linux) :func:`rss` asks psutil
(:func:`psutil_process`): porting the RSS reading touches this file only.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "IS_LINUX",
    "PAGE",
    "SMAPS_ROLLUP",
    "close_fd",
    "drop_fds",
    "kb_fields",
    "kept_fd",
    "pid_alive",
    "psutil_process",
    "read_hwm",
    "read_kb_fields",
    "read_text",
    "rollup_figures",
    "rss",
    "smaps_mappings",
    "smaps_rollup",
    "statm_fd",
    "write_clear_refs",
]

IS_LINUX = sys.platform.startswith("linux")
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

#: ``smaps_rollup`` field -> our figure; USS is ``Private_Clean + Private_Dirty + Private_Hugetlb``,
#: as psutil defines it (the three are summed).
SMAPS_ROLLUP = {
    "Rss": "rss",
    "Pss": "pss",
    "Swap": "swap",
    "Private_Clean": "uss",
    "Private_Dirty": "uss",
    "Private_Hugetlb": "uss",
}

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

# Descriptors on /proc/self files kept open for the life of the process (-1: not open).
_fds = {"statm": -1, "status": -1, "clear_refs": -1}


def kept_fd(name: str, flags: int = os.O_RDONLY) -> int:
    """The kept descriptor on ``/proc/self/<name>``, opened on first use (raises :class:`OSError`)."""
    fd = _fds[name]
    if fd < 0:
        fd = _fds[name] = os.open(f"/proc/self/{name}", flags | _CLOEXEC)
    return fd


def close_fd(fd: int) -> int:
    """Close *fd* when open (``>= 0``), ignoring :class:`OSError`; returns -1 for the caller to store."""
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass
    return -1


def drop_fds(*names: str) -> None:
    """Close the kept descriptors *names* (all when none given); the next reading reopens them."""
    for name in names or tuple(_fds):
        fd = _fds[name]
        _fds[name] = -1  # before the close: no reading picks up a closed descriptor
        close_fd(fd)


if hasattr(os, "register_at_fork"):
    # Closing the child's copies leaves the parent's descriptors open.
    os.register_at_fork(after_in_child=drop_fds)


def statm_fd() -> int:
    """The kept ``/proc/self/statm`` descriptor (for the GIL-holding read of ``holdgil.py``)."""
    fd = _fds["statm"]
    if fd < 0:
        fd = _fds["statm"] = os.open("/proc/self/statm", os.O_RDONLY | _CLOEXEC)
    return fd


def rss() -> int:
    """Resident set size of this process in bytes: the fast path.

    On Linux one ``pread`` of ``/proc/self/statm`` (a few microseconds);
    elsewhere ``psutil.Process().memory_info().rss``.
    """
    if IS_LINUX:
        fd = _fds["statm"]
        if fd < 0:  # the at-fork hook resets it in a child, so no getpid() per call
            fd = _fds["statm"] = os.open("/proc/self/statm", os.O_RDONLY | _CLOEXEC)
        try:
            data = os.pread(fd, 128, 0)
        except OSError:
            _fds["statm"] = -1
            with open("/proc/self/statm", "rb") as f:
                data = f.read()
        return int(data.split()[1]) * PAGE
    return int(psutil_process().memory_info().rss)


def read_hwm() -> int | None:
    """``VmHWM`` in bytes: one ``pread`` of ``/proc/self/status`` on a kept descriptor.

    ``getrusage().ru_maxrss`` is cheaper (about 1 µs against 10 µs), but
    the kernel reads its per-CPU RSS counters without summing them for it,
    and it reports the larger of this mark and one kept across ``exec``
    that ``clear_refs`` does not reset; see ``docs/pytest.md``.
    """
    try:
        fd = kept_fd("status")
        data = os.pread(fd, 1024, 0)  # VmHWM is in the first lines; the whole file is about 1.5 KiB
        i = data.find(b"VmHWM:")
        if i < 0 or data.find(b"kB", i) < 0:  # a long Groups: line pushed it further
            data = os.pread(fd, 65536, 0)
            i = data.find(b"VmHWM:")
            if i < 0:
                return None
    except OSError:
        drop_fds()
        return None
    return int(data[i + 6 : data.index(b"kB", i)]) * 1024


def write_clear_refs(*, keep: bool) -> str:
    """Write ``5`` to ``/proc/self/clear_refs`` (reset ``VmHWM``); ``""`` on success, else why not.

    *keep* writes on the kept descriptor (one ``write``, the pytest meter's
    per-test reset); otherwise the file is opened, written and closed.
    """
    if not IS_LINUX:
        return f"no /proc/self/clear_refs on {sys.platform}"
    try:
        if keep:
            try:
                os.write(kept_fd("clear_refs", os.O_WRONLY), b"5")
            except OSError:
                drop_fds("clear_refs")
                raise
        else:
            fd = os.open("/proc/self/clear_refs", os.O_WRONLY)
            try:
                os.write(fd, b"5")
            finally:
                os.close(fd)
    except OSError as exc:
        return f"/proc/self/clear_refs not writable ({exc.strerror or exc})"
    return ""


def read_text(path: str) -> str | None:
    """The text of *path* (``/proc`` or cgroup file), or ``None`` when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def kb_fields(text: str) -> dict[str, int]:
    """Every ``Key:   123 kB`` line of *text* (``status``, ``smaps_rollup``), in bytes by key."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[key] = int(parts[0]) * 1024
    return out


def read_kb_fields(path: str, wanted: dict[str, str]) -> dict[str, int]:
    """Read ``Key:   123 kB`` lines from a /proc file; bytes by ``wanted[key]``, summed (raises OSError)."""
    with open(path, "rb") as f:
        return _sum_fields(f.read().decode("ascii", "replace"), wanted)


def _sum_fields(text: str, wanted: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        name = wanted.get(key)
        if name is not None:
            parts = rest.split()
            if parts:
                out[name] = out.get(name, 0) + int(parts[0]) * 1024
    return out


def rollup_figures(text: str) -> dict[str, int]:
    """``rss``, ``pss``, ``uss`` and ``swap`` (those present) from the text of a ``smaps_rollup``."""
    return _sum_fields(text, SMAPS_ROLLUP)


def smaps_rollup(pid: int | str = "self") -> dict[str, int]:
    """``rss``, ``pss``, ``uss``, ``swap`` of ``/proc/<pid>/smaps_rollup`` (raises :class:`OSError`)."""
    return read_kb_fields(f"/proc/{pid}/smaps_rollup", SMAPS_ROLLUP)


#: One mapping of ``/proc/<pid>/smaps``: ``(start, end, perms, name, rss, swap)``, sizes in bytes.
Mapping = tuple[int, int, str, str, int, int]


def smaps_mappings(pid: int | str = "self") -> list[Mapping] | None:
    """Every mapping of ``/proc/<pid>/smaps`` as :data:`Mapping`, or ``None`` when it cannot be read.

    Read in 64 KiB chunks and parsed as it goes, so the reading itself adds
    little to the RSS it measures.
    """
    try:
        fd = os.open(f"/proc/{pid}/smaps", os.O_RDONLY)
    except OSError:
        return None
    out: list[Mapping] = []
    cur: Mapping | None = None
    tail = b""
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            for line in lines:
                if line.startswith(b"Rss:"):
                    if cur is not None:
                        cur = (*cur[:4], int(line.split()[1]) * 1024, cur[5])
                elif line.startswith(b"Swap:"):
                    if cur is not None:
                        cur = (*cur[:5], int(line.split()[1]) * 1024)
                elif line[:1] in b"0123456789abcdef" and b"-" in line[:20] and not line.startswith(b"Swap"):
                    head = line.split(None, 5)
                    if len(head) < 5 or head[0].endswith(b":"):
                        continue
                    if cur is not None:
                        out.append(cur)
                    lo, _, hi = head[0].partition(b"-")
                    try:
                        start, end = int(lo, 16), int(hi, 16)
                    except ValueError:
                        cur = None
                        continue
                    name = head[5].strip().decode("utf-8", "replace") if len(head) == 6 else ""
                    cur = (start, end, head[1].decode("ascii", "replace"), name, 0, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    if cur is not None:
        out.append(cur)
    return out


_proc: Any = None


def psutil_process() -> Any:
    """``psutil.Process()`` for this process, made again after a fork (raises ImportError without psutil)."""
    global _proc
    if _proc is None or _proc.pid != os.getpid():
        import psutil

        _proc = psutil.Process()
    return _proc


def pid_alive(pid: int) -> bool:
    """Whether process *pid* exists; one of another user's counts (``kill(pid, 0)`` answers EPERM)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, another user's
    return True
