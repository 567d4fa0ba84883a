"""Measuring this process's memory, exactly and cheaply.

On Linux every figure comes straight from the kernel:

* ``rss``/``vms``: ``/proc/self/statm`` (read with one ``pread`` on a file
  descriptor kept open; reopened after ``fork()`` because the descriptor
  names the parent's pid);
* ``rss``/``pss``/``uss``/``swap``: ``/proc/self/smaps_rollup`` (``uss`` is
  ``Private_Clean + Private_Dirty + Private_Hugetlb``, as psutil defines it);
* ``peak``: ``VmHWM`` in ``/proc/self/status``, which :func:`reset_peak`
  resets to the current RSS by writing ``5`` to ``/proc/self/clear_refs``.

Elsewhere psutil fills what it can; a field that cannot be read is ``None``
and :meth:`MemoryUsage.why` says why.
"""

from __future__ import annotations

import os  # noqa: F401  (the os whose open() the /proc readers call; tests patch it here)
import sys
import time

from hivemem._frozen import Frozen
from hivemem._measure import procfs
from hivemem._measure.procfs import rss

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator


__all__ = [
    "MemoryUsage",
    "ProcReader",
    "peak_reset_failure",
    "reset_peak",
    "reset_peak_kept_fd",
    "rss",
    "usage",
]

_FIELDS = ("rss", "vms", "uss", "pss", "swap", "peak", "blocks", "traced", "traced_peak")


class MemoryUsage(Frozen):
    """A frozen snapshot of this process's memory. All sizes are bytes.

    ``rss``, ``vms``, ``uss``, ``pss``, ``swap``
        Resident, virtual, unique, proportional and swapped-out memory,
        psutil's names and meanings.
    ``peak``
        The kernel's high-water mark of RSS (``VmHWM``) since process start
        or the last :func:`hivemem.reset_peak`.
    ``blocks``
        ``sys.getallocatedblocks()``: live blocks in Python's allocator.
    ``traced``, ``traced_peak``
        tracemalloc's current and peak traced memory, when it is tracing.
    ``source``
        Where the OS figures came from (``"smaps_rollup"``, ``"psutil"``, ...).
    ``time``
        ``time.time()`` when the snapshot was taken.

    A field that could not be read is ``None``; ``why(field)`` gives the reason.
    """

    __slots__ = (*_FIELDS, "source", "time", "_unavailable")
    __module__ = "hivemem"

    rss: int | None
    vms: int | None
    uss: int | None
    pss: int | None
    swap: int | None
    peak: int | None
    blocks: int | None
    traced: int | None
    traced_peak: int | None
    source: str
    time: float
    _unavailable: dict[str, str]

    def __init__(
        self,
        *,
        rss: int | None = None,
        vms: int | None = None,
        uss: int | None = None,
        pss: int | None = None,
        swap: int | None = None,
        peak: int | None = None,
        blocks: int | None = None,
        traced: int | None = None,
        traced_peak: int | None = None,
        source: str = "",
        time: float | None = None,
        unavailable: dict[str, str] | None = None,
    ) -> None:
        values = {
            "rss": rss,
            "vms": vms,
            "uss": uss,
            "pss": pss,
            "swap": swap,
            "peak": peak,
            "blocks": blocks,
            "traced": traced,
            "traced_peak": traced_peak,
        }
        reasons = dict(unavailable or {})
        for name, value in values.items():
            if value is None:
                reasons.setdefault(name, "not measured")
            else:
                reasons.pop(name, None)
        self._set(**values, source=source, time=_time_now() if time is None else time, _unavailable=reasons)

    def why(self, field: str) -> str | None:
        """Why *field* is ``None``; ``None`` when the field has a value."""
        if field not in _FIELDS:
            from hivemem._errors import InvalidArgument

            raise InvalidArgument(f"unknown field {field!r}: expected one of {', '.join(_FIELDS)}")
        return self._unavailable.get(field)

    @property
    def unavailable(self) -> dict[str, str]:
        """Every field that is ``None``, mapped to the reason."""
        return dict(self._unavailable)

    def __iter__(self) -> Iterator[tuple[str, int | None]]:
        for name in _FIELDS:
            yield name, getattr(self, name)

    def to_dict(self) -> dict[str, object]:
        """A JSON-safe dict of every field, plus ``source``, ``time`` and ``unavailable``."""
        out: dict[str, object] = dict(self)
        out["source"] = self.source
        out["time"] = self.time
        out["unavailable"] = dict(self._unavailable)
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MemoryUsage):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        from hivemem._sizes import format_size

        shown = [f"{k}={format_size(v)!r}" for k, v in self if v is not None and k not in ("blocks",)]
        if self.blocks is not None:
            shown.append(f"blocks={self.blocks}")
        return f"MemoryUsage({', '.join(shown)})"

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        from hivemem._sizes import format_size

        for k, v in self:
            if v is not None:
                yield k, (v if k == "blocks" else format_size(v))

    def _repr_html_(self) -> str:
        from html import escape

        from hivemem._sizes import format_size

        rows = "".join(
            f"<tr><td>{k}</td><td style='text-align:right'>"
            f"{escape(str(v) if k == 'blocks' else format_size(v)) if v is not None else '<i>n/a</i>'}"
            f"</td></tr>"
            for k, v in self
        )
        return f"<table><caption>MemoryUsage ({escape(self.source)})</caption>{rows}</table>"


def _time_now() -> float:
    return time.time()


# --------------------------------------------------------------------------- readers


class ProcReader:
    """The default memory reader: ``/proc`` on Linux, psutil elsewhere.

    **Protocol**: a memory reader has ``rss() -> int`` (fast, bytes) and
    ``usage() -> MemoryUsage`` (complete). The governor, ``optimize()`` and
    the profiler accept any object with these two methods, which is how tests
    inject exact figures (see :class:`hivemem.testing.FakeReader`).
    """

    __module__ = "hivemem"

    def rss(self) -> int:
        return rss()

    def usage(self) -> MemoryUsage:
        return usage()

    def __repr__(self) -> str:
        return "ProcReader()"


def _python_heap(values: dict[str, int | None], reasons: dict[str, str]) -> None:
    values["blocks"] = sys.getallocatedblocks()
    try:
        import _tracemalloc
    except ImportError:  # pragma: no cover - every CPython has it
        reasons["traced"] = reasons["traced_peak"] = "tracemalloc is not available"
        return
    if _tracemalloc.is_tracing():
        values["traced"], values["traced_peak"] = _tracemalloc.get_traced_memory()
    else:
        reasons["traced"] = reasons["traced_peak"] = (
            "tracemalloc is not tracing (start it, or use hivemem.Profiler)"
        )


def _linux_usage(values: dict[str, int | None], reasons: dict[str, str]) -> str:
    source = "smaps_rollup"
    try:
        values.update(procfs.smaps_rollup())
    except OSError as exc:
        # Kernels before 4.14 have no smaps_rollup; statm still gives rss.
        source = "statm"
        values["rss"] = rss()
        for name in ("uss", "pss", "swap"):
            reasons[name] = f"/proc/self/smaps_rollup unreadable ({exc.strerror or exc})"
    try:
        status = procfs.read_kb_fields("/proc/self/status", {"VmHWM": "peak", "VmSize": "vms"})
        values.update(status)
    except OSError as exc:
        reasons["peak"] = reasons["vms"] = f"/proc/self/status unreadable ({exc.strerror or exc})"
    return source


def _psutil_usage(values: dict[str, int | None], reasons: dict[str, str]) -> str:
    try:
        proc = procfs.psutil_process()
    except ImportError:
        for name in ("rss", "vms", "uss", "pss", "swap"):
            reasons[name] = "psutil is not installed and /proc is not available"
        return "none"
    info = proc.memory_info()
    values["rss"], values["vms"] = info.rss, info.vms
    try:
        full = proc.memory_full_info()
    except Exception as exc:  # psutil.AccessDenied and friends
        for name in ("uss", "pss", "swap"):
            reasons[name] = f"psutil.memory_full_info() failed: {exc}"
    else:
        for name in ("uss", "pss", "swap"):
            value = getattr(full, name, None)
            values[name] = value
            if value is None:
                reasons[name] = f"psutil does not report {name} on {sys.platform}"
    peak = getattr(info, "peak_wset", None)  # Windows
    if peak is None:
        try:
            import resource

            maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak = maxrss if sys.platform == "darwin" else maxrss * 1024
        except (ImportError, OSError):
            reasons["peak"] = f"no peak RSS source on {sys.platform}"
    values["peak"] = peak
    return "psutil"


def usage() -> MemoryUsage:
    """Take a complete :class:`MemoryUsage` snapshot of this process.

    On Linux this reads ``/proc/self/smaps_rollup`` and ``/proc/self/status``
    (measured here: about 0.25 ms for a small process, more for one with many
    mappings, since the kernel walks them); elsewhere it asks psutil. Use
    :func:`rss` on hot paths.
    """
    values: dict[str, int | None] = {}
    reasons: dict[str, str] = {}
    source = _linux_usage(values, reasons) if procfs.IS_LINUX else _psutil_usage(values, reasons)
    _python_heap(values, reasons)
    if _peak.reset_failed and values.get("peak") is not None:
        source = f"{source}; peak not reset: {_peak.reset_failed}"
    return MemoryUsage(source=source, unavailable=reasons, **values)


class _PeakState:
    reset_failed = ""


_peak = _PeakState()


def peak_reset_failure() -> str:
    """Why the last :func:`reset_peak` did not reset the mark; ``""`` when it did (or was never called)."""
    return _peak.reset_failed


def reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS.

    On Linux ≥ 4.0 this writes ``5`` to ``/proc/self/clear_refs``, after which
    ``usage().peak`` is the exact peak RSS since this call: no sampling thread,
    no allocation hooks. Returns ``True`` when the mark was reset.

    Fallback: where that file is missing or not writable (other platforms,
    old kernels, some sandboxes) nothing is reset and ``False`` is returned;
    ``usage().peak`` then stays the lifetime peak (``VmHWM``, ``ru_maxrss`` or
    ``peak_wset``) and its ``source`` says that the peak was not reset. Code
    that needs a per-phase peak there must sample :func:`rss` itself, which is
    what :class:`hivemem.Profiler` does.
    """
    _peak.reset_failed = procfs.write_clear_refs(keep=False)
    return not _peak.reset_failed


def reset_peak_kept_fd() -> bool:
    """:func:`reset_peak` on a descriptor kept open: one ``write`` (the pytest meter's per-test reset)."""
    _peak.reset_failed = procfs.write_clear_refs(keep=True)
    return not _peak.reset_failed
