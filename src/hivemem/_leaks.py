"""``hivemem.find_leaks``: call a function repeatedly and decide, with evidence, whether it leaks.

The rule is CPython's own refleak hunter (``python -m test -R 3:3``), made
exact for bytes:

1. **Calibrate.** The measuring code itself keeps a few integers alive; a
   no-op function measured the same way gives that offset (usually a few
   dozen bytes, one or two blocks), which is subtracted from every figure.
2. **Warm up.** ``warmup`` repetitions run first and are reported but not
   judged: caches fill, modules import, lazy singletons initialise.
3. **Measure.** Each of ``repeat`` repetitions runs ``gc.collect()``, reads
   ``sys.getallocatedblocks()`` and tracemalloc's traced bytes, calls
   ``fn`` ``number`` times, collects again and reads both again. The
   difference is that repetition's growth, exact to the byte.
4. **Decide.** ``fn`` leaks when

   * **rule A, every repetition**: every measured repetition grew by more
     than ``tolerance`` bytes per call (the refleak hunter's rule); or
   * **rule B, robust slope without plateau**: with at least four
     repetitions, exactly one stayed within tolerance and it was not the
     last (the plateau test), the robust slope of the cumulative growth (the
     median growth per repetition, which one outlier cannot move) exceeds
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
the mean growth in allocated blocks. The report also names the object types
whose counts grew (objgraph-style type statistics over ``gc.get_objects()``
and the untracked objects they refer to) and the allocation sites that grew
(a tracemalloc snapshot diff between the first and last measured
repetition). It never holds the contents of any object: types, counts,
sizes and code locations only.

Other threads that allocate while ``find_leaks`` runs add noise: measure in
a quiet process.
"""

from __future__ import annotations

import _thread
import gc
import os
import sys
import time

from hivemem._render import Result, html_table, short_path, text_table
from hivemem._sizes import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

__all__ = ["LeakReport", "SiteGrowth", "TypeGrowth", "find_leaks"]

DEFAULT_TOLERANCE = 32
"""Bytes per call a repetition may grow without counting as growth.

Measured noise of the calibrated window on CPython 3.10-3.13 is 0 bytes for
pure-Python code; 32 B keeps clear of an occasional dict or list resize
being split across repetitions, and stays under the smallest object a leak
can consist of (a 100-byte ``bytes`` is 133 B).
"""

_lock = _thread.allocate_lock()


def _after_fork_child() -> None:
    # A find_leaks call in another thread at fork time must not leave the child's lock held.
    global _lock
    _lock = _thread.allocate_lock()


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
    ``warmup_runs``        bytes grown by each warm-up repetition (not judged)
    ``calibration``        ``(bytes, blocks)`` the measuring code itself adds per window
    ``growing_types``      tuple of :class:`TypeGrowth`, biggest growth first
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
        figures with another tolerance.
        """
        from hivemem._robust import mean_ci

        runs = tuple(int(v) for v in per_run)
        blocks = tuple(int(v) for v in per_run_blocks)
        if not runs:
            from hivemem._errors import InvalidArgument

            raise InvalidArgument("per_run is empty: a LeakReport needs at least one measured repetition")
        mean, low, high = mean_ci([v / number for v in runs])
        ordered = sorted(runs)
        mid = len(ordered) // 2
        median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        slope = median / number
        leaking, rule, verdict = _judge(runs, number, tolerance, slope)
        self._set(
            leaking=leaking,
            rule=rule,
            verdict=verdict,
            bytes_per_call=mean,
            bytes_per_call_ci=(low, high),
            blocks_per_call=(sum(blocks) / len(blocks) / number) if blocks else 0.0,
            slope=slope,
            per_run=runs,
            per_run_blocks=blocks,
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
        if self.warmup_runs:
            lines.append("  warm-up (bytes, not judged): " + ", ".join(f"{v:+d}" for v in self.warmup_runs))
        if self.growing_types:
            lines.append("  growing types:")
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


def _judge(runs: tuple[int, ...], number: int, tolerance: int, slope: float) -> tuple[bool, str | None, str]:
    """Apply rules A and B (module docstring); return ``(leaking, rule, verdict sentence)``."""
    limit = tolerance * number
    tol = format_size(tolerance)
    quiet = [i for i, v in enumerate(runs) if v <= limit]
    n = len(runs)
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
    if quiet[-1] == n - 1 and len(quiet) < n:
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


def _type_name(t: type) -> str:
    module = getattr(t, "__module__", "builtins")
    return t.__qualname__ if module == "builtins" else f"{module}.{t.__qualname__}"


def type_counts(skip: object = None) -> dict[type, int]:
    """objgraph-style type statistics: live objects by type.

    Counts every object the garbage collector tracks plus the untracked
    objects they refer to directly (``str``, ``bytes``, ``int``, ``float``,
    ... are untracked, and are exactly what small leaks are made of). Each
    object is counted once. *skip* (and what only it refers to) is left out:
    the caller's own bookkeeping.
    """
    counts: dict[type, int] = {}
    skipped = {id(skip), id(counts)} if skip is not None else {id(counts)}
    seen: set[int] = set()
    skipped.add(id(seen))
    skipped.add(id(skipped))
    objs = gc.get_objects()
    is_tracked = gc.is_tracked
    get_referents = gc.get_referents
    for obj in objs:
        if id(obj) in skipped:
            continue
        t = type(obj)
        counts[t] = counts.get(t, 0) + 1
        for ref in get_referents(obj):
            if not is_tracked(ref):
                key = id(ref)
                if key not in seen:
                    seen.add(key)
                    rt = type(ref)
                    counts[rt] = counts.get(rt, 0) + 1
    del objs, seen
    return counts


def _growing_types(before: dict[type, int], after: dict[type, int], limit: int = 10) -> list[TypeGrowth]:
    grown = []
    for t, n in after.items():
        old = before.get(t, 0)
        if n > old:
            grown.append(TypeGrowth(_type_name(t), old, n))
    grown.sort(key=lambda g: (-g.delta, g.name))
    return grown[:limit]


def _growing_sites(before: object, after: object, limit: int = 10) -> list[SiteGrowth]:
    import tracemalloc

    ignore = (
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, os.path.join(os.path.dirname(__file__), "*")),
        tracemalloc.Filter(False, "<unknown>"),
    )
    a = after.filter_traces(ignore)  # type: ignore[attr-defined]
    b = before.filter_traces(ignore)  # type: ignore[attr-defined]
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


def _window(
    fn: Callable[..., object], args: tuple[object, ...], kwargs: Mapping[str, object], number: int
) -> tuple[int, int]:
    """One measured repetition: ``(bytes, blocks)`` grown across *number* calls, after full collections."""
    import _tracemalloc

    collect = gc.collect
    blocks = sys.getallocatedblocks
    traced = _tracemalloc.get_traced_memory
    loop = range(number)
    collect()
    b0 = blocks()
    t0 = traced()[0]
    for _ in loop:
        fn(*args, **kwargs)
    collect()
    t1 = traced()[0]
    b1 = blocks()
    return t1 - t0, b1 - b0


def _noop() -> None:
    return None


def _check_count(name: str, value: object, minimum: int, maximum: int = 10**6) -> int:
    from hivemem._errors import InvalidArgument
    from hivemem._validate import show

    # Bounded: warmup=10**30 ran forever, repeat=2**63 overflowed a list size.
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidArgument(f"{name} must be an integer >= {minimum} and <= {maximum:,}, got {show(value)}")
    return value


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

    *warmup* repetitions run first and are not judged; *repeat* repetitions
    are measured, each calling ``fn(*args, **kwargs)`` *number* times between
    two full collections. *tolerance* (bytes per call, or a size string such
    as ``"1KB"``) is the growth a repetition may show without counting as
    growth. The verdict follows the refleak hunter's rule (every measured
    repetition grew) or a robust slope with a plateau test; see the module
    documentation and ``docs/profiler.md``.

    tracemalloc is started for the run (with *frames* frames per traceback)
    if it is not already tracing, and stopped again afterwards only in that
    case. *types* turns the objgraph-style type statistics off for very large
    heaps (they walk every object twice). Exceptions from *fn* propagate.
    Calls are serialized process-wide.
    """
    from hivemem._errors import InvalidArgument
    from hivemem._sizes import parse_size

    if not callable(fn):
        raise InvalidArgument(f"fn must be callable, got {fn!r}")
    warmup = _check_count("warmup", warmup, 0)
    repeat = _check_count("repeat", repeat, 2)
    number = _check_count("number", number, 1)
    frames = _check_count("frames", frames, 1, 1000)
    tol = parse_size(tolerance)
    if not isinstance(args, tuple):
        raise InvalidArgument(f"args must be a tuple, got {args!r}")
    kw: Mapping[str, object] = {} if kwargs is None else kwargs
    if not hasattr(kw, "keys"):
        raise InvalidArgument(f"kwargs must be a mapping, got {kwargs!r}")
    if not isinstance(types, bool):
        raise InvalidArgument(f"types must be True or False, got {types!r}")
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    if isinstance(module, str) and module not in ("builtins", "__main__"):
        name = f"{module}.{name}"

    import array
    import tracemalloc

    with _lock:
        started = not tracemalloc.is_tracing()
        if started:
            tracemalloc.start(frames)
        t_start = time.perf_counter()
        try:
            cal = [_window(_noop, (), {}, number) for _ in range(4)][1:]
            cal_bytes = sorted(c[0] for c in cal)[1]
            cal_blocks = sorted(c[1] for c in cal)[1]
            warm = [_window(fn, args, kw, number)[0] - cal_bytes for _ in range(warmup)]
            # Everything the measured phase keeps is allocated before the "before"
            # statistics, so neither the type counts nor the snapshot diff see it.
            grown = array.array("q", bytes(8 * 2 * repeat))
            grown_types: list[TypeGrowth] = []
            snap_before = tracemalloc.take_snapshot()
            counts_before: dict[type, int] = {}
            if types:
                gc.collect()
                counts_before = type_counts()
            for i in range(repeat):
                grown[2 * i], grown[2 * i + 1] = _window(fn, args, kw, number)
            if types:
                gc.collect()
                grown_types = _growing_types(counts_before, type_counts(skip=counts_before))
            counts_before.clear()
            sites = _growing_sites(snap_before, tracemalloc.take_snapshot())
            del snap_before
        finally:
            if started:
                tracemalloc.stop()
        seconds = time.perf_counter() - t_start
    return LeakReport(
        per_run=[grown[2 * i] - cal_bytes for i in range(repeat)],
        per_run_blocks=[grown[2 * i + 1] - cal_blocks for i in range(repeat)],
        warmup_runs=warm,
        number=number,
        tolerance=tol,
        calibration=(cal_bytes, cal_blocks),
        growing_types=grown_types,
        growing_sites=sites,
        function=name,
        warmup=warmup,
        seconds=seconds,
    )
