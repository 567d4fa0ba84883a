"""``hivemem.find_leaks``: call a function repeatedly and decide, with evidence, whether it leaks.

The rule is CPython's own refleak hunter (``python -m test -R 3:3``), made
exact for bytes and blind to everything but the function (``docs/profiler.md``
has the measured figures behind each step):

1. **Calibrate.** The measuring code itself keeps a few integers alive; a
   no-op function measured the same way gives that offset (a few dozen
   bytes, a few blocks), which is subtracted from every figure.
2. **Warm up.** ``warmup`` repetitions run first and are reported but not
   judged: caches fill, modules import, lazy singletons initialise.
3. **Measure.** Each of ``repeat`` repetitions runs ``gc.collect()``, reads
   tracemalloc's traced bytes, ``sys.getallocatedblocks()`` and the size of
   tracemalloc's own tables, calls ``fn`` ``number`` times, collects and
   reads all three again. Only the function is inside that window:

   * the window's own frame object, and those of its callers, exist before
     the first reading (3.11+ creates frame objects only when something
     looks up the stack: ``sys._getframe``, ``inspect.stack()``,
     ``warnings.warn(stacklevel=2)``, logging's caller lookup);
   * the interpreter's method cache is cleared before each reading, as the
     refleak hunter does (it keeps attribute names made afresh on each
     call, 4096 slots of them);
   * before each reading it waits, a few milliseconds at most, for threads
     that are exiting to finish freeing their state;
   * the heap that existed before the run is frozen (``gc.freeze()``,
     undone afterwards), so a collection walks only what the function
     created: the cost follows the function, not the heap.

4. **Decide.** A repetition *grew* when its traced bytes grew by more than
   ``tolerance`` per call and either allocated blocks grew too or
   tracemalloc's tables did not (bytes grew inside blocks it already
   traced). Traced bytes that grow while blocks do not and tracemalloc's
   tables do are blocks allocated *before* tracing began, freed unseen,
   replaced by traced ones: no growth at all. ``fn`` leaks when

   * **rule A, every repetition**: every measured repetition grew (the
     refleak hunter's rule), and the growth did not tail off (the last
     repetition grew by at least 1/``TAIL_OFF`` of the median: a cache
     finishing its fill adds less and less; then as many repetitions
     again are measured and judged instead); or
   * **rule B, robust slope without plateau**: with at least four
     repetitions, exactly one did not grow and it was not the last (the
     plateau test), the robust slope of the cumulative growth (the median
     growth per repetition, which one outlier cannot move) exceeds
     ``tolerance`` per call, and every other repetition grew by within 25%
     of that slope (a steady leak). This tolerates one quiet repetition in a
     real leak (an unrelated free in the same window) but never flags a
     series whose last repetition is flat, nor growth that varies and tails
     off as a cache fills.

   A cache that fills during warm-up (or during the first measured
   repetitions) and then stops growing ends with flat repetitions, so it is
   never flagged; a cache that keeps filling for longer than the run cannot
   be told from a leak, so give ``warmup`` enough calls to fill it.

``bytes_per_call`` is the mean growth per call over the measured
repetitions with its Student-t 95% confidence interval; ``blocks_per_call``
the mean growth in allocated blocks. The allocation sites that grew come
from a tracemalloc snapshot diff across the measured repetitions. When the
verdict is a leak, one more repetition runs between two objgraph-style type
tables (``gc.get_objects()`` and the untracked objects they refer to) to
name the object types that grew; that walk is the one cost that follows the
heap, paid only for a leak. The report never holds the contents of any
object: types, counts, sizes and code locations only.

Other threads that allocate while ``find_leaks`` runs add noise: measure in
a quiet process.
"""

from __future__ import annotations

import _thread
import gc
import os
import sys
import time

from hivemem._profile.render import Result, html_table, short_path, text_table
from hivemem._sizes import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    import array
    import tracemalloc
    from collections.abc import Callable, Iterator, Mapping
    from types import FrameType

__all__ = ["LeakReport", "SiteGrowth", "TypeGrowth", "describe_leak", "find_leaks", "refleak"]

DEFAULT_TOLERANCE = 32
"""Bytes per call a repetition may grow without counting as growth.

Measured noise of the calibrated window on CPython 3.10-3.13 is 0 bytes for
pure-Python code; 32 B keeps clear of an occasional dict or list resize
being split across repetitions, and stays under the smallest object a leak
can consist of (a 100-byte ``bytes`` is 133 B).
"""

_lock = _thread.allocate_lock()


def _after_fork_child() -> None:
    # A find_leaks call in another thread at fork time must not leave the child's lock
    # held, nor the child's heap frozen: that call never finishes in the child.
    global _lock
    _lock = _thread.allocate_lock()
    if _frozen_by_us:
        _unfreeze_heap()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)


class TypeGrowth(Result):
    """One object type whose count grew over the measured repetitions."""

    __slots__ = ("after", "before", "delta", "name")
    __module__ = "hivemem"

    name: str
    before: int
    after: int
    delta: int

    def __init__(self, name: str, before: int, after: int) -> None:
        self._set(name=name, before=before, after=after, delta=after - before)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "before": self.before, "after": self.after, "delta": self.delta}

    def __repr__(self) -> str:
        return f"TypeGrowth({self.name!r}, {self.before} -> {self.after}, delta={self.delta:+d})"


class SiteGrowth(Result):
    """One allocation site (file and line) whose traced memory grew."""

    __slots__ = ("count", "count_diff", "file", "line", "size", "size_diff")
    __module__ = "hivemem"

    file: str
    line: int
    size_diff: int
    count_diff: int
    size: int
    count: int

    def __init__(self, file: str, line: int, size_diff: int, count_diff: int, size: int, count: int) -> None:
        self._set(file=file, line=line, size_diff=size_diff, count_diff=count_diff, size=size, count=count)

    @property
    def where(self) -> str:
        return f"{short_path(self.file)}:{self.line}"

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "size_diff": self.size_diff,
            "count_diff": self.count_diff,
            "size": self.size,
            "count": self.count,
        }

    def __repr__(self) -> str:
        return f"SiteGrowth({self.where!r}, size_diff={format_size(self.size_diff, signed=True)!r})"


class LeakReport(Result):
    """What :func:`hivemem.find_leaks` measured, and its verdict.

    ``leaking``            the verdict (see ``rule`` and ``verdict`` for why)
    ``rule``               ``"every-repetition"``, ``"slope"`` or ``None``
    ``verdict``            one sentence citing the figures behind the verdict
    ``bytes_per_call``     mean traced growth per call over the measured repetitions
    ``bytes_per_call_ci``  its 95% confidence interval ``(low, high)``
    ``blocks_per_call``    mean growth of ``sys.getallocatedblocks()`` per call
    ``slope``              robust slope of cumulative growth: the median growth per call
                           of the repetitions (one outlier cannot move it)
    ``per_run``            bytes grown by each measured repetition (calibrated)
    ``per_run_blocks``     blocks grown by each measured repetition (calibrated)
    ``per_run_tables``     bytes tracemalloc's own tables grew by in each measured repetition
                           (calibrated): more than 0 with no new blocks means blocks
                           allocated before tracing began were freed, unseen by tracemalloc
    ``warmup_runs``        bytes grown by each warm-up repetition (not judged); repetitions
                           that were measured but tailed off are listed here too
    ``calibration``        ``(bytes, blocks)`` the measuring code itself adds per window
    ``growing_types``      tuple of :class:`TypeGrowth`, biggest growth first: one extra
                           repetition run only when the verdict is a leak (``types=True``)
    ``growing_sites``      tuple of :class:`SiteGrowth`, biggest growth first
    ``warmup``, ``repeat``, ``number``, ``tolerance``, ``seconds``  the run's parameters and cost
    """

    __slots__ = (
        "blocks_per_call",
        "bytes_per_call",
        "bytes_per_call_ci",
        "calibration",
        "function",
        "growing_sites",
        "growing_types",
        "leaking",
        "number",
        "per_run",
        "per_run_blocks",
        "per_run_tables",
        "repeat",
        "rule",
        "seconds",
        "slope",
        "tolerance",
        "verdict",
        "warmup",
        "warmup_runs",
    )
    __module__ = "hivemem"

    leaking: bool
    rule: str | None
    verdict: str
    bytes_per_call: float
    bytes_per_call_ci: tuple[float, float]
    blocks_per_call: float
    slope: float
    per_run: tuple[int, ...]
    per_run_blocks: tuple[int, ...]
    per_run_tables: tuple[int, ...]
    warmup_runs: tuple[int, ...]
    calibration: tuple[int, int]
    growing_types: tuple[TypeGrowth, ...]
    growing_sites: tuple[SiteGrowth, ...]
    function: str
    warmup: int
    repeat: int
    number: int
    tolerance: int
    seconds: float

    def __init__(
        self,
        *,
        per_run: tuple[int, ...] | list[int],
        per_run_blocks: tuple[int, ...] | list[int],
        per_run_tables: tuple[int, ...] | list[int] | None = None,
        warmup_runs: tuple[int, ...] | list[int] = (),
        number: int = 1,
        tolerance: int = DEFAULT_TOLERANCE,
        calibration: tuple[int, int] = (0, 0),
        growing_types: tuple[TypeGrowth, ...] | list[TypeGrowth] = (),
        growing_sites: tuple[SiteGrowth, ...] | list[SiteGrowth] = (),
        function: str = "",
        warmup: int = 0,
        seconds: float = 0.0,
    ) -> None:
        """Build a report from measured per-repetition growth; the verdict is computed here.

        Building a report from figures (rather than running ``find_leaks``)
        is how the rule is unit-tested, and how a caller re-judges saved
        figures with another tolerance. ``per_run_tables`` defaults to no
        growth of tracemalloc's tables.
        """
        from hivemem import _validate
        from hivemem._measure.stats import mean_ci

        number = _validate.count("number", number, maximum=MAX_NUMBER)
        tolerance = _validate.size("tolerance", tolerance)
        runs = tuple(int(v) for v in per_run)
        blocks = tuple(int(v) for v in per_run_blocks)
        tables = tuple(int(v) for v in per_run_tables) if per_run_tables is not None else (0,) * len(runs)
        if not runs:
            from hivemem._errors import InvalidArgument

            raise InvalidArgument("per_run is empty: a LeakReport needs at least one measured repetition")
        if len(blocks) != len(runs) or len(tables) != len(runs):
            from hivemem._errors import InvalidArgument

            raise InvalidArgument(
                f"per_run has {len(runs)} repetitions but per_run_blocks has {len(blocks)} and "
                f"per_run_tables {len(tables)}: one figure per repetition each"
            )
        mean, low, high = mean_ci([v / number for v in runs])
        slope = _median(runs) / number
        leaking, rule, verdict = _judge(runs, blocks, tables, number, tolerance)
        self._set(
            leaking=leaking,
            rule=rule,
            verdict=verdict,
            bytes_per_call=mean,
            bytes_per_call_ci=(low, high),
            blocks_per_call=sum(blocks) / len(blocks) / number,
            slope=slope,
            per_run=runs,
            per_run_blocks=blocks,
            per_run_tables=tables,
            warmup_runs=tuple(int(v) for v in warmup_runs),
            calibration=(int(calibration[0]), int(calibration[1])),
            growing_types=tuple(growing_types),
            growing_sites=tuple(growing_sites),
            function=function,
            warmup=warmup,
            repeat=len(runs),
            number=number,
            tolerance=tolerance,
            seconds=seconds,
        )

    def __bool__(self) -> bool:
        """A report is truthy when it found a leak: ``if hivemem.find_leaks(fn): ...``."""
        return self.leaking

    def headline(self) -> str:
        low, high = self.bytes_per_call_ci
        state = "LEAKING" if self.leaking else "no leak"
        name = f" {self.function}" if self.function else ""
        return (
            f"LeakReport{name}: {state}: {format_size(self.bytes_per_call)}/call "
            f"(95% CI {format_size(low)} .. {format_size(high)}), "
            f"{self.blocks_per_call:.2f} blocks/call over {self.repeat} repetitions"
            f" x {self.number} call(s) after {self.warmup} warm-up"
        )

    def _type_rows(self) -> list[tuple[str, str, str]]:
        return [(t.name, f"{t.delta:+d}", str(t.after)) for t in self.growing_types]

    def _site_rows(self) -> list[tuple[str, str, str]]:
        return [
            (s.where, format_size(s.size_diff, signed=True), f"{s.count_diff:+d}") for s in self.growing_sites
        ]

    def __str__(self) -> str:
        lines = [self.headline(), f"  verdict: {self.verdict}"]
        lines.append("  per repetition (bytes): " + ", ".join(f"{v:+d}" for v in self.per_run))
        lines.append("  per repetition (blocks): " + ", ".join(f"{v:+d}" for v in self.per_run_blocks))
        if self.warmup_runs:
            lines.append("  warm-up (bytes, not judged): " + ", ".join(f"{v:+d}" for v in self.warmup_runs))
        if self.growing_types:
            lines.append("  growing types (one more repetition):")
            lines += text_table(("type", "grew", "now"), self._type_rows(), indent="    ")
        if self.growing_sites:
            lines.append("  growing allocation sites:")
            lines += text_table(("where", "grew", "blocks"), self._site_rows(), indent="    ")
        return "\n".join(lines)

    __repr__ = __str__

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        yield "leaking", self.leaking
        yield "bytes_per_call", format_size(self.bytes_per_call)
        yield "ci95", tuple(format_size(v) for v in self.bytes_per_call_ci)
        yield "blocks_per_call", round(self.blocks_per_call, 2)
        yield "per_run", list(self.per_run)
        yield "verdict", self.verdict
        if self.growing_types:
            yield "growing_types", [f"{t.name} {t.delta:+d}" for t in self.growing_types]
        if self.growing_sites:
            yield (
                "growing_sites",
                [f"{s.where} {format_size(s.size_diff, signed=True)}" for s in self.growing_sites],
            )

    def _repr_html_(self) -> str:
        from html import escape

        color = "#b00020" if self.leaking else "#2e7d32"
        runs = html_table(
            ("repetition", "bytes", "blocks"),
            [
                (i + 1, f"{b:+d}", f"{k:+d}")
                for i, (b, k) in enumerate(zip(self.per_run, self.per_run_blocks, strict=True))
            ],
        )
        parts = [
            f"<div class='hivemem-leaks'><p style='color:{color}'><b>{escape(self.headline())}</b></p>",
            f"<p>{escape(self.verdict)}</p>",
            runs,
        ]
        if self.growing_types:
            parts.append(html_table(("type", "grew", "now"), self._type_rows(), caption="growing types"))
        if self.growing_sites:
            parts.append(
                html_table(("where", "grew", "blocks"), self._site_rows(), caption="growing allocation sites")
            )
        parts.append("</div>")
        return "".join(parts)

    def to_dict(self) -> dict[str, object]:
        """A JSON-safe dict of every field; sizes in bytes."""
        return {
            "leaking": self.leaking,
            "rule": self.rule,
            "verdict": self.verdict,
            "function": self.function,
            "bytes_per_call": self.bytes_per_call,
            "bytes_per_call_ci": list(self.bytes_per_call_ci),
            "blocks_per_call": self.blocks_per_call,
            "slope": self.slope,
            "per_run": list(self.per_run),
            "per_run_blocks": list(self.per_run_blocks),
            "per_run_tables": list(self.per_run_tables),
            "warmup_runs": list(self.warmup_runs),
            "calibration": {"bytes": self.calibration[0], "blocks": self.calibration[1]},
            "growing_types": [t.to_dict() for t in self.growing_types],
            "growing_sites": [s.to_dict() for s in self.growing_sites],
            "warmup": self.warmup,
            "repeat": self.repeat,
            "number": self.number,
            "tolerance": self.tolerance,
            "seconds": self.seconds,
        }


def _median(values: tuple[int, ...] | list[int]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _replaced(nbytes: int, blocks: int, tables: int, limit: int) -> bool:
    """Traced bytes grew, blocks did not, tracemalloc's tables did: untraced blocks freed unseen."""
    return nbytes > limit and blocks <= 0 and tables > 0


def _judge(
    runs: tuple[int, ...], blocks: tuple[int, ...], tables: tuple[int, ...], number: int, tolerance: int
) -> tuple[bool, str | None, str]:
    """Apply rules A and B (module docstring); return ``(leaking, rule, verdict sentence)``."""
    limit = tolerance * number
    tol = format_size(tolerance)
    n = len(runs)
    slope = _median(runs) / number
    replaced = [i for i in range(n) if _replaced(runs[i], blocks[i], tables[i], limit)]
    quiet = [i for i, v in enumerate(runs) if v <= limit or i in replaced]
    if not quiet and _tails_off(runs, blocks):
        return (
            False,
            None,
            f"not leaking: the growth tailed off: every one of {n} measured repetitions grew by more than "
            f"the tolerance of {tol}/call, but the last grew by {format_size(runs[-1] / number)}/call "
            f"and {blocks[-1]:+d} blocks, under 1/{TAIL_OFF} of the median growth "
            f"({format_size(slope)}/call, {_median(blocks):+g} blocks): a cache finishing its fill "
            "(give warmup more calls to see it flat)",
        )
    if not quiet:
        smallest = min(runs) / number
        return (
            True,
            "every-repetition",
            f"every one of {n} measured repetitions grew by more than the tolerance of {tol}/call "
            f"(smallest growth {format_size(smallest)}/call)",
        )
    if len(quiet) == 1 and quiet[0] != n - 1 and n >= 4 and slope > tolerance:
        steady = all(abs(v / number - slope) <= 0.25 * slope for i, v in enumerate(runs) if i != quiet[0])
        if steady:
            return (
                True,
                "slope",
                f"{n - 1} of {n} measured repetitions grew, each within 25% of the robust slope "
                f"(median growth) of {format_size(slope)}/call (> {tol}/call), and the last one grew: "
                f"a steady leak interrupted once (repetition {quiet[0] + 1}), not a plateau",
            )
    first = quiet[0]
    if replaced:
        why = (
            f"{len(replaced)} of {n} repetitions grew in traced bytes only by replacing blocks allocated "
            f"before tracing began (traced bytes grew, allocated blocks did not, tracemalloc's tables did: "
            f"repetition {', '.join(str(i + 1) for i in replaced)}), which is no growth"
        )
        if len(quiet) > len(replaced):
            why += f", and {len(quiet) - len(replaced)} more stayed within the tolerance of {tol}/call"
    elif quiet[-1] == n - 1 and len(quiet) < n:
        why = (
            f"it plateaued: repetition {quiet[-1] + 1} of {n} (the last) grew by "
            f"{format_size(runs[-1] / number, signed=True)}/call, within the tolerance of {tol}/call"
        )
    else:
        why = (
            f"repetition {first + 1} of {n} grew by {format_size(runs[first] / number, signed=True)}/call, "
            f"within the tolerance of {tol}/call"
        )
        if len(quiet) > 1:
            why += f", and {len(quiet) - 1} more repetition(s) stayed within it"
        elif n >= 4 and slope > tolerance:
            why += (
                f"; the others did not grow steadily (not all within 25% of the median growth of "
                f"{format_size(slope)}/call): growth that varies and tails off, as a cache filling"
            )
    return (False, None, f"not leaking: {why}")


TAIL_OFF = 8
"""A series whose last repetition grew by under 1/TAIL_OFF of its median growth tails off."""


def _tails_off(runs: tuple[int, ...] | list[int], blocks: tuple[int, ...] | list[int] = ()) -> bool:
    """Growth on every repetition that fades: a cache filling, not a steady leak.

    A leak of L bytes per call adds at least L on every repetition, so its
    last repetition is never far under the median one (a list or dict
    resize makes one repetition *bigger*, never the others smaller), and
    neither is its count of new blocks. A cache that fills during the
    measured repetitions adds less and less: fewer bytes, or, when its last
    repetition only resized a table, fewer new blocks.
    """
    if runs[-1] * TAIL_OFF < _median(runs):
        return True
    if blocks:
        median = _median(blocks)
        return median > 0 and blocks[-1] * TAIL_OFF < median
    return False


def _type_name(t: type) -> str:
    module = getattr(t, "__module__", "builtins")
    return t.__qualname__ if module == "builtins" else f"{module}.{t.__qualname__}"


def type_table(skip: object = None, objects: list[object] | tuple[()] | None = None) -> dict[str, int]:
    """objgraph-style type statistics: live objects by type name.

    Counts every object the garbage collector tracks (outside a frozen
    permanent generation) plus the untracked objects they refer to directly
    (``str``, ``bytes``, ``int``, ``float``, ... are untracked, and are
    exactly what small leaks are made of); each object once. Referents of
    frame objects are left out: they are the locals of running code, this
    function's and its caller's included, not what a leak keeps. *skip* is
    the caller's own bookkeeping, left out too. *objects* replaces the
    collector's list (a dry run over ``()`` fills the caches it touches).

    The table is a plain ``dict`` of ``str`` to ``int``, which the collector
    does not track, so a table held while the next one is counted adds
    nothing to it but itself (and *skip* removes that). Every loop runs in C
    (``map``, ``filterfalse``, ``Counter``): about 0.9 s of CPU per million objects.
    """
    from collections import Counter
    from itertools import compress, filterfalse, repeat
    from operator import is_not
    from types import FrameType

    get_referents = gc.get_referents
    objs = gc.get_objects() if objects is None else list(objects)
    counts = Counter(map(type, objs))
    walk = list(compress(objs, map(is_not, map(type, objs), repeat(FrameType))))
    del objs
    untracked: dict[int, type] = {}
    refs: list[object] = []
    for start in range(0, len(walk), 4096):
        refs = list(filterfalse(gc.is_tracked, get_referents(*walk[start : start + 4096])))
        untracked.update(zip(map(id, refs), map(type, refs), strict=True))
    del walk, refs
    if skip is not None:
        untracked.pop(id(skip), None)
    counts.update(untracked.values())
    del untracked
    table: dict[str, int] = {}
    for t, n in counts.items():
        name = _type_name(t)
        table[name] = table.get(name, 0) + n
    return table


def _growing_types(before: Mapping[str, int], after: Mapping[str, int], limit: int = 10) -> list[TypeGrowth]:
    grown = []
    for name, n in after.items():
        old = before.get(name, 0)
        if n > old:
            grown.append(TypeGrowth(name, old, n))
    grown.sort(key=lambda g: (-g.delta, g.name))
    return grown[:limit]


def _growing_sites(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, limit: int = 10
) -> list[SiteGrowth]:
    import tracemalloc

    ignore = (
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, os.path.join(os.path.dirname(__file__), "*")),
        tracemalloc.Filter(False, "<unknown>"),
    )
    a = after.filter_traces(ignore)
    b = before.filter_traces(ignore)
    out = []
    for stat in a.compare_to(b, "lineno"):
        if stat.size_diff <= 0:
            continue
        frame = stat.traceback[0]
        out.append(
            SiteGrowth(frame.filename, frame.lineno, stat.size_diff, stat.count_diff, stat.size, stat.count)
        )
    out.sort(key=lambda s: (-s.size_diff, s.file, s.line))
    return out[:limit]


def _traced() -> int:
    import _tracemalloc

    return int(_tracemalloc.get_traced_memory()[0])


def _tables() -> int:
    import _tracemalloc

    return int(_tracemalloc.get_tracemalloc_memory())


def _window(
    fn: Callable[..., object],
    args: tuple[object, ...],
    kwargs: Mapping[str, object],
    number: int,
    size: Callable[[], int] = _traced,
    tables: Callable[[], int] = _tables,
) -> tuple[int, int, int]:
    """One measured repetition: ``(bytes, blocks, tables)`` grown across *number* calls.

    *bytes* is what *size* reads (tracemalloc's traced memory), *blocks*
    ``sys.getallocatedblocks()`` and *tables* what *tables* reads (the memory
    of tracemalloc's own tables, a fixed size per traced block), each read
    after a full collection on both sides.

    On CPython 3.11+ a frame object exists only once something asks for it:
    ``sys._getframe(1)``, ``inspect.stack()``, ``warnings.warn(stacklevel=2)``
    and logging's caller lookup all create one for *this* frame, inside the
    window, where it would count as growth on every repetition (296 B on
    3.11/3.12, 312 B on 3.13). So this frame and its locals dict (which
    ``f_locals`` creates on 3.10-3.12) are made before the first reading,
    with every local already bound, and a function that looks up the stack
    adds nothing that outlives its call.
    """
    collect = gc.collect
    clear = _clear_type_cache
    settle = _threads.settle
    blocks = sys.getallocatedblocks
    loop = range(number)
    t0 = t1 = b0 = b1 = m0 = m1 = _ = 0
    sys._getframe().f_locals  # noqa: B018 - materialised before the readings, not inside them
    collect()
    clear()
    settle()
    b0 = blocks()
    m0 = tables()
    t0 = size()
    for _ in loop:
        fn(*args, **kwargs)
    collect()
    clear()
    settle()
    t1 = size()
    m1 = tables()
    b1 = blocks()
    return t1 - t0, b1 - b0, m1 - m0


# The interpreter's method cache (4096 slots) keeps a reference to each attribute name
# it caches. A name made afresh on each call (``PyObject_GetAttrString``, which a
# ``match`` statement with a class pattern uses on 3.11 and 3.12, and so does
# traceback formatting) lands in a new slot and stays there until that slot is reused:
# growth that fades out over thousands of calls. CPython's refleak hunter clears the
# cache between repetitions for the same reason; so does every window here.
_CLEAR_CACHES = getattr(sys, "_clear_internal_caches", None) or getattr(sys, "_clear_type_cache", None)


def _clear_type_cache() -> None:
    if _CLEAR_CACHES is not None:
        _CLEAR_CACHES()


def _typed_window(
    fn: Callable[..., object], args: tuple[object, ...], kwargs: Mapping[str, object], number: int
) -> list[TypeGrowth]:
    """One more measured repetition between two type tables: the types that grew across it.

    The heap stays frozen for the repetition and its collections (so they
    cost what *fn* made, and garbage older than the run, which a finalizer
    may free only on a later pass, is counted the same in both tables); it
    is unfrozen only while a table is counted, because the collector lists
    no frozen object.
    """
    before: dict[str, int] | None = None
    sys._getframe()  # this frame is counted the same way in both tables
    type_table(objects=())  # fills the ABC caches its Counter checks, which would otherwise show as growth
    frozen = _freeze_heap()
    try:
        _clear_type_cache()
        gc.collect()
        before = _whole_heap_table(frozen)
        _window(fn, args, kwargs, number)
        after = _whole_heap_table(frozen, before)
    finally:
        if frozen:
            _unfreeze_heap()
    return _growing_types(before, after)


def _whole_heap_table(frozen: bool, skip: object = None) -> dict[str, int]:
    """:func:`type_table` of every object, with the heap unfrozen and the collector paused meanwhile."""
    enabled = gc.isenabled()
    gc.disable()  # the table allocates a list per million objects: no collection mid-count
    if frozen:
        gc.unfreeze()
    try:
        return type_table(skip)
    finally:
        if frozen:
            gc.freeze()
        if enabled:
            gc.enable()


class _Threads:
    """Waits for threads that are exiting, so their last frees land in the window that made them.

    ``Thread.join()`` returns once the thread's lock is released, but the
    exiting thread frees its thread state (a few hundred bytes, traced)
    right after that, racing the measuring thread: the free then falls
    between two windows and the window that started the thread keeps the
    growth. On Linux the thread's entry in ``/proc/self/task`` disappears
    only after that free, so before each reading this waits, a few
    milliseconds at most, while the process has more OS threads than it
    had when the run began. Threads that stay (a pool made during warm-up)
    become the new baseline after one wait. Elsewhere it does nothing.
    """

    __slots__ = ("base",)

    TASKS = "/proc/self/task"
    POLLS = 20
    PAUSE = 0.00025

    def __init__(self) -> None:
        self.base = self.count()

    def count(self) -> int:
        try:
            return len(os.listdir(self.TASKS))
        except OSError:
            return 0

    def reset(self) -> None:
        self.base = self.count()

    def settle(self) -> None:
        base = self.base
        if not base:
            return
        n = self.count()
        polls = self.POLLS
        while n > base and polls:
            time.sleep(self.PAUSE)
            n = self.count()
            polls -= 1
        if n > base:
            self.base = n


_threads = _Threads()


def _repetitions(
    grown: array.array[int],
    fn: Callable[..., object],
    args: tuple[object, ...],
    kwargs: Mapping[str, object],
    number: int,
    size: Callable[[], int] = _traced,
    tables: Callable[[], int] = _tables,
    offset: tuple[int, ...] | None = None,
    limit: int = 0,
) -> int:
    """Fill *grown* with ``bytes, blocks, tables`` triples, one measured repetition each; how many ran.

    With *offset* (the calibration), stop once two repetitions were quiet
    (no new block, no more than *limit* bytes beyond the offset), or once a
    quiet one and the next kept no new block and no more than *limit* bytes
    between them: either rules out both leak rules, so the rest would only repeat the
    body (:func:`screen` runs a clean test's body ``warmup + 2`` times, not
    ``warmup + repeat``). The pair test is what clears a body when malloc's
    figure moves one chunk out of one window and back in the next (-48 B,
    then +48 B: a steady leak adds to both, so their sum is at least twice
    its growth per window). The checks run between windows, outside the
    readings.
    """
    i = 0
    sys._getframe().f_locals  # noqa: B018 - this caller's frame too, before the first window
    for i in range(len(grown) // 3):
        grown[3 * i], grown[3 * i + 1], grown[3 * i + 2] = _window(fn, args, kwargs, number, size, tables)
        if offset is not None:
            sizes, blocks, _ = _calibrated(grown[: 3 * (i + 1)], offset)
            if _screen_clear(blocks, sizes, limit):
                return i + 1
    return len(grown) // 3


def _screen_clear(blocks: list[int], sizes: list[int], limit: int) -> bool:
    """Whether calibrated windows rule out both leak rules (:func:`screen`): two kept no new block and
    at most *limit* bytes each (quiet), or a quiet one and the next kept no new block and the two at
    most *limit* bytes together."""
    quiet = [b <= 0 and m <= limit for b, m in zip(blocks, sizes, strict=True)]
    if sum(quiet) >= 2:
        return True
    # the first of the pair quiet by itself: a chunk moved out of a leaking window (100 B, then -100 B)
    # must not clear it
    return any(
        quiet[k] and blocks[k + 1] <= 0 and sizes[k] + sizes[k + 1] <= limit for k in range(len(quiet) - 1)
    )


def _noop() -> None:
    return None


def _calibration(
    number: int, size: Callable[[], int] = _traced, tables: Callable[[], int] = _tables
) -> tuple[int, ...]:
    """A window's own reading: per figure, the median of three empty windows, after one dropped."""
    cal = [_window(_noop, (), {}, number, size, tables) for _ in range(4)][1:]
    return tuple(sorted(c[k] for c in cal)[1] for k in range(3))


def _materialize_stack() -> None:
    """Create the frame object of every caller now (3.11+ creates them lazily).

    A function that walks the stack (``inspect.stack()``,
    ``traceback.extract_stack()``) would otherwise create them during the
    first repetition that runs it; they live as long as their callers, so
    they are growth once, not a leak, but they need not be growth at all.
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        frame = frame.f_back


# ------------------------------------------------------------------ the frozen heap

_frozen_by_us = False


def _runtime_frozen() -> int:
    """How many objects the interpreter itself keeps in the permanent generation.

    CPython 3.12 moves every immortal object a collection meets into the
    permanent generation (it must never be collected); the tracked ones are
    the ``__mro__`` and ``__bases__`` tuples of the static built-in types,
    375 of them on 3.12.1. A later collection puts them back, so unfreezing
    them does no harm. Any other frozen object was frozen by the program.
    """
    if sys.version_info[:2] != (3, 12):
        return 0
    seen: set[int] = set()
    immortal: set[int] = set()
    stack: list[type] = [object]
    heap_type = 1 << 9  # Py_TPFLAGS_HEAPTYPE
    getrefcount = sys.getrefcount
    while stack:
        t = stack.pop()
        if id(t) in seen or t.__flags__ & heap_type:
            continue  # a heap type is never immortal, nor is any subclass of it
        seen.add(id(t))
        stack.extend(type.__subclasses__(t))
        for tup in (t.__mro__, t.__bases__):
            if gc.is_tracked(tup) and getrefcount(tup) >= 1 << 30:
                immortal.add(id(tup))
    return len(immortal)


def _freeze_heap() -> bool:
    """Move every tracked object into the permanent generation for the run, if that is safe.

    After this a full collection walks only what was created since: the
    cost of a repetition follows what *fn* allocates, not the heap (a full
    collection of one million objects takes about 60 ms; of a frozen one,
    microseconds). Nothing is freed or moved in memory: frozen objects are
    only skipped by the cyclic collector, and ``gc.unfreeze()`` afterwards
    puts them back in the oldest generation, where a full collection leaves
    any survivor. Returns whether it froze, so the caller unfreezes exactly
    then. A permanent generation the program filled itself
    (``gc.freeze()`` before a fork) is left alone: unfreezing would undo it.
    """
    global _frozen_by_us
    count = gc.get_freeze_count()
    if count and count != _runtime_frozen():
        return False
    gc.freeze()
    _frozen_by_us = True
    return True


def _unfreeze_heap() -> None:
    global _frozen_by_us
    gc.unfreeze()
    _frozen_by_us = False


# ------------------------------------------------------------------ arguments

MAX_WARMUP = 1_000
"""Most warm-up repetitions ``find_leaks`` accepts (the refleak hunter uses 3)."""
MAX_REPEAT = 1_000
"""Most measured repetitions ``find_leaks`` accepts."""
MAX_NUMBER = 1_000_000
"""Most calls per repetition ``find_leaks`` accepts."""
MAX_FRAMES = 65_535
"""Most frames per traceback: tracemalloc's own bound."""


def _check_arguments(
    fn: object,
    warmup: object,
    repeat: object,
    tolerance: object,
    args: object,
    kwargs: object,
    number: object,
    frames: object,
    types: object,
) -> tuple[int, int, int, int, int]:
    """Validate ``find_leaks``'s arguments; return ``(warmup, repeat, number, frames, tolerance)``."""
    from hivemem import _validate
    from hivemem._errors import InvalidArgument

    if not callable(fn):
        raise InvalidArgument(f"fn={_validate.show(fn)}: expected a callable")
    w = _validate.count("warmup", warmup, minimum=0, maximum=MAX_WARMUP)
    r = _validate.count("repeat", repeat, minimum=2, maximum=MAX_REPEAT)
    n = _validate.count("number", number, minimum=1, maximum=MAX_NUMBER)
    f = _validate.count("frames", frames, minimum=1, maximum=MAX_FRAMES)
    tol = _validate.size("tolerance", tolerance)
    if not isinstance(args, tuple):
        raise InvalidArgument(f"args={_validate.show(args)}: expected a tuple")
    if kwargs is not None and not hasattr(kwargs, "keys"):
        raise InvalidArgument(f"kwargs={_validate.show(kwargs)}: expected a mapping or None")
    if not isinstance(types, bool):
        raise InvalidArgument(f"types={_validate.show(types)}: expected True or False")
    assert w is not None and r is not None and n is not None and f is not None and tol is not None
    return w, r, n, f, tol


def find_leaks(
    fn: Callable[..., object],
    *,
    warmup: int = 2,
    repeat: int = 5,
    tolerance: int | str = DEFAULT_TOLERANCE,
    args: tuple[object, ...] = (),
    kwargs: Mapping[str, object] | None = None,
    number: int = 1,
    frames: int = 1,
    types: bool = True,
) -> LeakReport:
    """Call *fn* repeatedly and return a :class:`hivemem.LeakReport` saying whether it leaks.

    *warmup* repetitions (0 to 1,000) run first and are not judged; *repeat*
    repetitions (2 to 1,000) are measured, each calling
    ``fn(*args, **kwargs)`` *number* times (1 to 1,000,000) between two full
    collections. *tolerance* (bytes per call, or a size string such as
    ``"1KB"``) is the growth a repetition may show without counting as
    growth. The verdict follows the refleak hunter's rule (every measured
    repetition grew) or a robust slope with a plateau test; see the module
    documentation and ``docs/profiler.md``. When every repetition grew but
    the growth tailed off (a cache finishing its fill), as many repetitions
    again are measured and judged instead.

    The cost follows what *fn* does, not the size of the heap: the heap is
    frozen for the run (``gc.freeze()``, undone afterwards) so collections
    walk only what *fn* created. With *types* (the default), a leaking
    verdict is followed by one more repetition between two objgraph-style
    type tables that name the growing types; that walk does cost in
    proportion to the heap (about 2 s per million objects), and only
    when a leak was found. ``types=False`` skips it.

    tracemalloc is started for the run (with *frames* frames per traceback,
    1 to 65,535) if it is not already tracing, and stopped again afterwards
    only in that case. Exceptions from *fn* propagate. Calls are serialized
    process-wide.
    """
    warmup, repeat, number, frames, tol = _check_arguments(
        fn, warmup, repeat, tolerance, args, kwargs, number, frames, types
    )
    kw: Mapping[str, object] = {} if kwargs is None else kwargs
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    if isinstance(module, str) and module not in ("builtins", "__main__"):
        name = f"{module}.{name}"

    import array
    import tracemalloc

    with _lock:
        t_start = time.perf_counter()
        _threads.reset()
        _materialize_stack()
        started = not tracemalloc.is_tracing()
        if started:
            tracemalloc.start(frames)
        frozen = False
        try:
            frozen = _freeze_heap()
            offset = _calibration(number)
            warm = [_window(fn, args, kw, number)[0] - offset[0] for _ in range(warmup)]
            # Everything the measured phase keeps is allocated before the snapshot,
            # so the snapshot diff does not see it.
            grown = array.array("q", bytes(8 * 3 * repeat))
            snap_before = tracemalloc.take_snapshot()
            _repetitions(grown, fn, args, kw, number)
            runs, blocks, tables = _calibrated(grown, offset)
            if all(v > tol * number for v in runs) and _tails_off(runs, blocks):
                # Still filling: those repetitions were warm-up after all; measure as many again.
                warm += runs
                _repetitions(grown, fn, args, kw, number)
                runs, blocks, tables = _calibrated(grown, offset)
            sites = _growing_sites(snap_before, tracemalloc.take_snapshot())
            del snap_before
        finally:
            if frozen:
                _unfreeze_heap()
            if started:
                tracemalloc.stop()
        grown_types: list[TypeGrowth] = []
        if types and _judge(tuple(runs), tuple(blocks), tuple(tables), number, tol)[0]:
            # After tracemalloc stopped (if it was ours): the tables allocate an int per
            # object, and tracing each of those would cost ten times the walk itself.
            grown_types = _typed_window(fn, args, kw, number)
        seconds = time.perf_counter() - t_start
    return LeakReport(
        per_run=runs,
        per_run_blocks=blocks,
        per_run_tables=tables,
        warmup_runs=warm,
        number=number,
        tolerance=tol,
        calibration=(offset[0], offset[1]),
        growing_types=grown_types,
        growing_sites=sites,
        function=name,
        warmup=warmup,
        seconds=seconds,
    )


class Screen:
    """What :func:`screen` measured: whether a leak is possible, with the figures behind it."""

    __slots__ = ("blocks", "clear", "malloc", "seconds", "warmup_blocks")

    def __init__(
        self, clear: bool, blocks: list[int], malloc: list[int], warmup_blocks: list[int], seconds: float
    ) -> None:
        self.clear = clear
        self.blocks = blocks
        self.malloc = malloc
        self.warmup_blocks = warmup_blocks
        self.seconds = seconds

    def to_dict(self) -> dict[str, object]:
        return {
            "clear": self.clear,
            "per_run_blocks": self.blocks,
            "per_run_malloc": self.malloc,
            "warmup_blocks": self.warmup_blocks,
            "seconds": self.seconds,
        }


def _malloc_reader() -> Callable[[], int] | None:
    """glibc's bytes in use (``mallinfo2``: heap and mmapped), or ``None`` where unavailable."""
    from hivemem._measure import native as _native

    if _native.trim_unavailable_reason() is not None:
        return None
    fn = _native.mallinfo2_function()
    if fn is None:
        return None

    def in_use() -> int:
        info = fn()
        return int(info.uordblks) + int(info.hblkhd)

    return in_use


def _zero() -> int:
    return 0


def screen(
    fn: Callable[..., object],
    *,
    warmup: int = 2,
    repeat: int = 5,
    tolerance: int = DEFAULT_TOLERANCE,
    args: tuple[object, ...] = (),
    kwargs: Mapping[str, object] | None = None,
    number: int = 1,
) -> Screen | None:
    """The repetitions of :func:`find_leaks` without tracemalloc: can *fn* leak at all?

    Each window reads ``sys.getallocatedblocks()`` (every object and
    ``PyMem`` block, exact, frees of old blocks included) and glibc's bytes
    in use (``mallinfo2``: every ``malloc`` block, where buffers that grow
    in place live), with the same care as :func:`find_leaks` (frozen heap,
    frames made beforehand, method cache cleared, exiting threads waited
    for). *fn* runs at full speed: tracing costs up to six times the
    function's own time on allocation-heavy code.

    The result is *clear* when two measured repetitions kept no new block
    and no more than *tolerance* malloc bytes per call, or one did and the
    next kept no new block and no more than *tolerance* malloc bytes per
    call between them (it stops measuring there): no rule of :func:`find_leaks` can then
    call it a leak (both need all repetitions but one to grow, and growth
    keeps new blocks or, in place, malloc bytes, on every repetition).
    Otherwise only :func:`find_leaks` can tell. Returns
    ``None`` where malloc's figures are unavailable (not glibc 2.33+), or
    when tracemalloc is already tracing (every allocation would be traced
    anyway): call :func:`find_leaks` then. Arguments are trusted (the
    caller validated them).
    """
    import tracemalloc

    malloc = _malloc_reader()
    if malloc is None or tracemalloc.is_tracing():
        return None
    kw: Mapping[str, object] = {} if kwargs is None else kwargs
    import array

    with _lock:
        t_start = time.perf_counter()
        _threads.reset()
        _materialize_stack()
        frozen = False
        try:
            frozen = _freeze_heap()
            offset = _calibration(number, malloc, _zero)
            warm = [_window(fn, args, kw, number, malloc, _zero)[1] - offset[1] for _ in range(warmup)]
            grown = array.array("q", bytes(8 * 3 * repeat))
            done = _repetitions(grown, fn, args, kw, number, malloc, _zero, offset, tolerance * number)
            sizes, blocks, _ = _calibrated(grown[: 3 * done], offset)
        finally:
            if frozen:
                _unfreeze_heap()
        return Screen(
            _screen_clear(blocks, sizes, tolerance * number),
            blocks,
            sizes,
            warm,
            time.perf_counter() - t_start,
        )


def _calibrated(grown: array.array[int], offset: tuple[int, ...]) -> tuple[list[int], list[int], list[int]]:
    """Split the ``bytes, blocks, tables`` triples in *grown* into three calibrated series."""
    n = len(grown) // 3
    sizes, blocks, tables = ([grown[3 * i + k] - offset[k] for i in range(n)] for k in range(3))
    return sizes, blocks, tables


def refleak(report: LeakReport) -> bool:
    """The refleak rule: every measured repetition grew (rule A of ``hivemem.find_leaks``)."""
    return report.leaking and report.rule == "every-repetition"


def describe_leak(report: LeakReport, *, what: str = "the function") -> str:
    """Failure text for a leak: growth per run, growing types and growing sites."""
    per_run = ", ".join(format_size(b, signed=True) for b in report.per_run)
    warm = ", ".join(format_size(b, signed=True) for b in report.warmup_runs) or "none"
    lines = [
        f"hivemem: {what} leaks: memory grew on every one of {len(report.per_run)} measured runs "
        f"by more than the tolerance ({format_size(report.tolerance)} per call)",
        f"  growth per run:  {per_run}  (warm-up runs, not judged: {warm})",
        f"  mean per call:   {format_size(report.bytes_per_call, signed=True)}",
    ]
    if report.growing_types:
        lines.append("  growing types:")
        for t in report.growing_types[:8]:
            lines.append(f"    {t.name:<30} {t.before:>8} -> {t.after:<8} ({t.delta:+d})")
        lines.append(f"    (counted across one more run of {report.number} call(s))")
    if report.growing_sites:
        lines.append("  growing allocation sites:")
        for site in report.growing_sites[:8]:
            grew = format_size(site.size_diff, signed=True)
            lines.append(f"    {grew:>11}  {site.count_diff:+7d} blocks  {site.where}")
    return "\n".join(lines)
