"""The memory of a process and all of its descendants: :func:`hivemem.process_tree`.

For a pre-fork server (gunicorn, uWSGI, Celery prefork, multiprocessing) the
RSS of each worker counts every page it shares with its parent and siblings,
so summing RSS counts shared pages several times. **PSS** (proportional set
size) divides each shared page among the processes that map it: the sum of
PSS over a tree is the memory the tree really costs. **USS** (unique set
size) is what a process holds alone: what killing it would give back.

On Linux every figure comes from ``/proc/<pid>/smaps_rollup`` (kernel >=
4.14; ``Rss``, ``Pss``, ``Private_*`` and ``Swap``) and the parent links
from ``/proc/<pid>/stat``; no psutil. Elsewhere psutil fills what it can
(``memory_full_info()``; USS and PSS may be missing). A process that exits
during the scan is left out; one whose memory cannot be read (another user's
process) is listed with ``None`` figures and the reason in ``error``.
"""

from __future__ import annotations

import os
import sys

from hivemem._errors import InvalidArgument, Unavailable
from hivemem._frozen import Frozen
from hivemem._measure import procfs
from hivemem._sizes import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["ProcessMemory", "ProcessTree", "process_tree"]

_FIGURES = ("rss", "pss", "uss", "swap")


class ProcessMemory(Frozen):
    """One process in a :class:`ProcessTree`. Sizes are bytes; ``None`` when unreadable.

    ``pid``, ``ppid``, ``depth`` (0 for the root), ``name`` (the command),
    ``rss``, ``pss``, ``uss``, ``swap``, and ``error`` (why the figures are
    ``None``, else ``""``).
    """

    __slots__ = ("depth", "error", "name", "pid", "ppid", "pss", "rss", "swap", "uss")
    __module__ = "hivemem"

    pid: int
    ppid: int
    depth: int
    name: str
    rss: int | None
    pss: int | None
    uss: int | None
    swap: int | None
    error: str

    def __init__(
        self,
        pid: int,
        ppid: int,
        *,
        depth: int = 0,
        name: str = "",
        rss: int | None = None,
        pss: int | None = None,
        uss: int | None = None,
        swap: int | None = None,
        error: str = "",
    ) -> None:
        self._set(
            pid=pid, ppid=ppid, depth=depth, name=name, rss=rss, pss=pss, uss=uss, swap=swap, error=error
        )

    def to_dict(self) -> dict[str, object]:
        """A JSON-safe dict of every field; sizes in bytes."""
        return {k: getattr(self, k) for k in ("pid", "ppid", "depth", "name", *_FIGURES, "error")}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProcessMemory):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.pid)

    def __repr__(self) -> str:
        shown = [f"pid={self.pid}", f"name={self.name!r}"]
        shown += [f"{k}={format_size(v)!r}" for k in _FIGURES if (v := getattr(self, k)) is not None]
        if self.error:
            shown.append(f"error={self.error!r}")
        return f"ProcessMemory({', '.join(shown)})"


class ProcessTree(Frozen):
    """A process and every descendant, with their memory and the sums.

    ``root`` is the pid asked for; ``processes`` lists the root first, then
    descendants depth-first in pid order; ``total`` maps ``rss``, ``pss``,
    ``uss`` and ``swap`` to the sum over the processes whose figure was read
    (``total["pss"]`` is what the whole tree costs; ``total["rss"]`` counts
    shared pages once per process); ``source`` is ``"smaps_rollup"`` or
    ``"psutil"``.
    """

    __slots__ = ("processes", "root", "source", "total")
    __module__ = "hivemem"

    root: int
    processes: tuple[ProcessMemory, ...]
    total: dict[str, int]
    source: str

    def __init__(self, root: int, processes: list[ProcessMemory], source: str) -> None:
        total = {k: sum(v for p in processes if (v := getattr(p, k)) is not None) for k in _FIGURES}
        self._set(root=root, processes=tuple(processes), total=total, source=source)

    def __len__(self) -> int:
        return len(self.processes)

    def __iter__(self) -> Iterator[ProcessMemory]:
        return iter(self.processes)

    @property
    def children(self) -> tuple[ProcessMemory, ...]:
        """Every descendant (the processes except the root)."""
        return tuple(p for p in self.processes if p.pid != self.root)

    def to_dict(self) -> dict[str, object]:
        """A JSON-safe dict: root, source, totals and one dict per process."""
        return {
            "root": self.root,
            "source": self.source,
            "total": dict(self.total),
            "processes": [p.to_dict() for p in self.processes],
        }

    def table(self) -> str:
        """The tree as a fixed-width text table with a sums row."""
        header = ("pid", "rss", "pss", "uss", "swap", "command")
        rows = []
        for p in self.processes:
            figures = [format_size(getattr(p, k)) if getattr(p, k) is not None else "n/a" for k in _FIGURES]
            name = "  " * p.depth + (p.name or "?") + (f"  ({p.error})" if p.error else "")
            rows.append((str(p.pid), *figures, name))
        rows.append(("total", *(format_size(self.total[k]) for k in _FIGURES), f"{len(self)} processes"))
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
        lines = []
        for r in [header, *rows]:
            cells = [r[0].rjust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, 5)] + [r[5]]
            lines.append("  ".join(cells))
        return "\n".join(lines)

    __str__ = table

    def __repr__(self) -> str:
        sums = ", ".join(f"{k}={format_size(v)!r}" for k, v in self.total.items())
        return f"ProcessTree(root={self.root}, processes={len(self)}, {sums})"

    def _repr_html_(self) -> str:
        from html import escape

        head = "".join(f"<th>{h}</th>" for h in ("pid", "rss", "pss", "uss", "swap", "command"))
        body = ""
        for p in self.processes:
            cells = [str(p.pid)] + [
                format_size(getattr(p, k)) if getattr(p, k) is not None else "n/a" for k in _FIGURES
            ]
            cells.append("\u00a0\u00a0" * p.depth + (p.name or "?"))
            body += "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"
        total = ["total"] + [format_size(self.total[k]) for k in _FIGURES] + [f"{len(self)} processes"]
        body += "<tr>" + "".join(f"<th>{escape(c)}</th>" for c in total) + "</tr>"
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --------------------------------------------------------------------------- Linux


def _linux_parents() -> dict[int, int]:
    """pid -> ppid for every process visible in /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:  # exited during the scan
            continue
        # The command sits in parentheses and may itself contain ") ".
        rest = data[data.rfind(b")") + 2 :].split()
        if len(rest) >= 2:
            parents[int(entry)] = int(rest[1])
    return parents


def _linux_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        text = " ".join(" ".join(a.decode("utf-8", "replace").split()) for a in argv if a)
        if text:
            return text if len(text) <= 120 else text[:117] + "..."
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f"[{f.read().decode('utf-8', 'replace').strip()}]"
    except OSError:
        return ""


def _linux_figures(pid: int) -> tuple[dict[str, int], str]:
    try:
        figures = procfs.smaps_rollup(pid)
    except FileNotFoundError:
        raise  # exited: the caller leaves it out
    except OSError as exc:
        return {}, f"/proc/{pid}/smaps_rollup unreadable ({exc.strerror or exc})"
    if not figures:  # a zombie or kernel thread maps nothing
        return {}, "no memory mappings (zombie or kernel thread)"
    for name in _FIGURES:
        figures.setdefault(name, 0)
    return figures, ""


def _ordered(root: int, parents: dict[int, int]) -> list[tuple[int, int, int]]:
    """(pid, ppid, depth) for root and every descendant, depth-first in pid order."""
    kids: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        kids.setdefault(ppid, []).append(pid)
    out: list[tuple[int, int, int]] = []
    stack = [(root, parents.get(root, 0), 0)]
    seen: set[int] = set()
    while stack:
        pid, ppid, depth = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        out.append((pid, ppid, depth))
        for child in sorted(kids.get(pid, ()), reverse=True):
            stack.append((child, pid, depth + 1))
    return out


def _linux_tree(root: int, children: bool) -> ProcessTree:
    if not os.path.exists(f"/proc/{root}"):
        raise InvalidArgument(f"no process with pid {root}")
    parents = _linux_parents() if children else {root: 0}
    if root not in parents:
        parents[root] = 0
    processes = []
    for pid, ppid, depth in _ordered(root, parents):
        try:
            figures, error = _linux_figures(pid)
        except FileNotFoundError:
            if pid == root:
                raise InvalidArgument(f"no process with pid {root}") from None
            continue  # exited during the scan
        processes.append(ProcessMemory(pid, ppid, depth=depth, name=_linux_name(pid), error=error, **figures))
    return ProcessTree(root, processes, "smaps_rollup")


# --------------------------------------------------------------------------- elsewhere


def _psutil_tree(root: int, children: bool) -> ProcessTree:
    try:
        import psutil
    except ImportError:
        raise Unavailable(
            f"process_tree() needs /proc or psutil; neither is available on {sys.platform}"
        ) from None
    try:
        top = psutil.Process(root)
        procs = [top, *(top.children(recursive=True) if children else [])]
    except psutil.NoSuchProcess:
        raise InvalidArgument(f"no process with pid {root}") from None
    parents: dict[int, int] = {}
    by_pid = {}
    for proc in procs:
        try:
            parents[proc.pid] = proc.ppid()
            by_pid[proc.pid] = proc
        except psutil.Error:
            continue
    processes = []
    for pid, ppid, depth in _ordered(root, parents):
        proc = by_pid[pid]
        figures: dict[str, int | None] = {}
        error = ""
        try:
            name = " ".join(proc.cmdline()) or proc.name()
        except psutil.Error:
            name = ""
        try:
            full = proc.memory_full_info()
            for key in _FIGURES:
                figures[key] = getattr(full, key, None)
        except psutil.NoSuchProcess:
            continue
        except psutil.Error as exc:
            error = f"psutil.memory_full_info() failed: {exc}"
            try:
                figures["rss"] = proc.memory_info().rss
            except psutil.Error:
                pass
        processes.append(ProcessMemory(pid, ppid, depth=depth, name=name, error=error, **figures))
    return ProcessTree(root, processes, "psutil")


def process_tree(pid: int | None = None, *, children: bool = True) -> ProcessTree:
    """Measure process *pid* (default: this one) and, unless ``children=False``, every descendant.

    Returns a :class:`hivemem.ProcessTree`: one :class:`hivemem.ProcessMemory`
    per process (RSS, PSS, USS, swap in bytes) and their sums. Raises
    :class:`hivemem.InvalidArgument` when no such process exists.

    >>> tree = process_tree()          # doctest: +SKIP
    >>> tree.total["pss"]              # what this process and its children really cost
    """
    if pid is None:
        pid = os.getpid()
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise InvalidArgument(f"pid must be a positive int, got {pid!r}")
    if procfs.IS_LINUX and os.path.exists("/proc/self/smaps_rollup"):
        return _linux_tree(pid, children)
    return _psutil_tree(pid, children)
