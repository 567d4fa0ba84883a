"""``hivemem.Profiler``: memory over time, allocation sites, exact peaks, and a leak watch.

A sampling thread reads, at a configurable rate:

* RSS (one ``pread`` of ``/proc/self/statm``), and USS when asked
  (``/proc/self/smaps_rollup``, ~50 µs);
* tracemalloc's traced bytes, when it is tracing;
* ``sys.getallocatedblocks()``;
* the garbage collector's collection counts per generation.

Samples live in typed arrays (40-64 bytes each); past ``max_samples`` every
other sample is dropped and the stride doubles, so memory stays bounded for
long runs. tracemalloc snapshots are taken at chosen points
(``snapshot(label)``; ``"start"`` and ``"stop"`` automatically when
tracing). The exact peak comes from the kernel (``hivemem.reset_peak()`` at
start, ``VmHWM`` at the end) and from tracemalloc's own peak, not from the
samples. The profiler reports its own cost: tracemalloc's memory
(``tracemalloc.get_tracemalloc_memory()``) and the sampling thread's CPU
time (``time.thread_time()``) as a share of one core.

The leak watch (:meth:`Profiler.leak_watch`) fits a Theil-Sen slope to a
series of samples with Sen's 95% interval and runs a plateau test on the
last third: it reports a suspicion only when growth is significant over the
whole run, large enough to matter, and still going at the end.

This module is not loaded by ``import hivemem`` or ``hivemem.optimize()``;
it may import ``threading``.
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
    from collections.abc import Callable, Iterator, Sequence

    from hivemem._advice import Advice
    from hivemem._leaks import LeakReport

__all__ = ["LeakWatch", "Peak", "ProfileReport", "Profiler", "SiteDiff", "Timeline", "TopSites"]

_BY = ("lineno", "traceback", "file")
_KEY = {"lineno": "lineno", "traceback": "traceback", "file": "filename"}
_METRICS = ("rss", "uss", "traced", "blocks")
_MISSING = -1  # a field that was not sampled


# --------------------------------------------------------------------------- results


class Timeline(Result):
    """The samples, column by column: ``times`` (seconds since start) and one tuple per metric.

    ``rss``, ``uss``, ``traced`` are bytes, ``blocks`` a count; a metric that
    was not sampled is an empty tuple. ``gc`` holds cumulative collections per
    generation. ``marks`` are ``(time, label)`` pairs: snapshots and actions
    of the governor or ``optimize()`` while profiling. ``stride`` is how many
    sampling ticks each kept sample stands for (1 until ``max_samples`` was
    reached).
    """

    __slots__ = ("blocks", "gc", "interval", "marks", "rss", "stride", "times", "traced", "uss")
    __module__ = "hivemem"

    times: tuple[float, ...]
    rss: tuple[int, ...]
    uss: tuple[int, ...]
    traced: tuple[int, ...]
    blocks: tuple[int, ...]
    gc: tuple[tuple[int, ...], ...]
    marks: tuple[tuple[float, str], ...]
    interval: float | None
    stride: int

    def __init__(
        self,
        *,
        times: Sequence[float],
        rss: Sequence[int],
        uss: Sequence[int] = (),
        traced: Sequence[int] = (),
        blocks: Sequence[int] = (),
        gc: Sequence[Sequence[int]] = (),
        marks: Sequence[tuple[float, str]] = (),
        interval: float | None = None,
        stride: int = 1,
    ) -> None:
        self._set(
            times=tuple(times),
            rss=tuple(rss),
            uss=tuple(uss),
            traced=tuple(traced),
            blocks=tuple(blocks),
            gc=tuple(tuple(g) for g in gc),
            marks=tuple((float(t), str(label)) for t, label in marks),
            interval=interval,
            stride=stride,
        )

    def __len__(self) -> int:
        return len(self.times)

    @property
    def duration(self) -> float:
        return self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0

    def series(self, metric: str) -> tuple[int, ...]:
        """One metric's column (``"rss"``, ``"uss"``, ``"traced"``, ``"blocks"``)."""
        if metric not in _METRICS:
            from hivemem._errors import InvalidArgument

            raise InvalidArgument(f"unknown metric {metric!r}: expected one of {', '.join(_METRICS)}")
        return getattr(self, metric)  # type: ignore[no-any-return]

    def _summary(self) -> list[tuple[str, str, str, str]]:
        rows = []
        for metric in ("rss", "uss", "traced"):
            col = self.series(metric)
            if col:
                rows.append((metric, format_size(min(col)), format_size(max(col)), format_size(col[-1])))
        if self.blocks:
            rows.append(("blocks", str(min(self.blocks)), str(max(self.blocks)), str(self.blocks[-1])))
        return rows

    def __repr__(self) -> str:
        head = f"Timeline: {len(self)} samples over {self.duration:.2f} s"
        if self.stride > 1:
            head += f" (every {self.stride}th tick kept)"
        lines = [head, *text_table(("metric", "min", "max", "last"), self._summary())]
        if self.marks:
            lines.append("  marks: " + ", ".join(f"{label} @ {t:.2f} s" for t, label in self.marks))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from hivemem._htmlreport import svg_timeline

        return (
            "<div class='hivemem-timeline'>"
            + svg_timeline(self)
            + html_table(("metric", "min", "max", "last"), self._summary())
            + "</div>"
        )

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        yield "samples", len(self)
        yield "seconds", round(self.duration, 3)
        for metric, lo, hi, last in self._summary():
            yield metric, f"{lo} .. {hi} (last {last})"

    def to_dict(self) -> dict[str, object]:
        return {
            "times": list(self.times),
            "rss": list(self.rss),
            "uss": list(self.uss),
            "traced": list(self.traced),
            "blocks": list(self.blocks),
            "gc": [list(g) for g in self.gc],
            "marks": [{"time": t, "label": label} for t, label in self.marks],
            "interval": self.interval,
            "stride": self.stride,
        }


class Peak(Result):
    """The peak memory of a profiled run.

    ``rss``          exact peak RSS: the kernel's ``VmHWM`` after
                     ``hivemem.reset_peak()`` at start (``None`` when the reset
                     was not possible; then see ``sampled_rss``)
    ``rss_source``   where ``rss`` came from, or why it is missing
    ``traced``       tracemalloc's exact peak of traced memory since start (``None`` if not tracing)
    ``sampled_rss``  the largest sampled RSS, and ``sampled_at`` its time (s since start)
    """

    __slots__ = ("rss", "rss_source", "sampled_at", "sampled_rss", "traced")
    __module__ = "hivemem"

    rss: int | None
    rss_source: str
    traced: int | None
    sampled_rss: int | None
    sampled_at: float | None

    def __init__(
        self,
        *,
        rss: int | None,
        rss_source: str,
        traced: int | None = None,
        sampled_rss: int | None = None,
        sampled_at: float | None = None,
    ) -> None:
        self._set(
            rss=rss, rss_source=rss_source, traced=traced, sampled_rss=sampled_rss, sampled_at=sampled_at
        )

    def __repr__(self) -> str:
        parts = [f"rss={format_size(self.rss)!r} ({self.rss_source})"]
        if self.traced is not None:
            parts.append(f"traced={format_size(self.traced)!r}")
        if self.sampled_rss is not None:
            parts.append(f"sampled_rss={format_size(self.sampled_rss)!r}")
        return f"Peak({', '.join(parts)})"

    def _repr_html_(self) -> str:
        rows = [("rss (exact)", format_size(self.rss), self.rss_source)]
        if self.traced is not None:
            rows.append(("traced (exact)", format_size(self.traced), "tracemalloc peak since start"))
        if self.sampled_rss is not None:
            rows.append(("rss (sampled max)", format_size(self.sampled_rss), f"at {self.sampled_at:.2f} s"))
        return html_table(("peak", "bytes", "source"), rows, caption="Peak")

    def to_dict(self) -> dict[str, object]:
        return {
            "rss": self.rss,
            "rss_source": self.rss_source,
            "traced": self.traced,
            "sampled_rss": self.sampled_rss,
            "sampled_at": self.sampled_at,
        }


class TopSites(Result):
    """The largest allocation sites in one tracemalloc snapshot.

    ``rows`` are ``(where, size, count)``: *where* is ``file:line`` (``by="lineno"``),
    ``file`` (``by="file"``) or the frames ``file:line <- file:line ...`` most
    recent first (``by="traceback"``). ``total`` is all traced bytes in the snapshot.
    Source lines are not included: code locations only.
    """

    __slots__ = ("by", "label", "rows", "total")
    __module__ = "hivemem"

    rows: tuple[tuple[str, int, int], ...]
    by: str
    label: str
    total: int

    def __init__(self, rows: Sequence[tuple[str, int, int]], *, by: str, label: str, total: int) -> None:
        self._set(rows=tuple(rows), by=by, label=label, total=total)

    def _table(self) -> list[tuple[str, str, str, str]]:
        return [
            (where, format_size(size), str(count), f"{100 * size / self.total:.1f}%" if self.total else "-")
            for where, size, count in self.rows
        ]

    def __repr__(self) -> str:
        head = f"TopSites by {self.by} in snapshot {self.label!r}: {format_size(self.total)} traced"
        return "\n".join([head, *text_table(("where", "size", "blocks", "share"), self._table())])

    def _repr_html_(self) -> str:
        return html_table(
            ("where", "size", "blocks", "share"),
            self._table(),
            caption=f"largest allocation sites by {self.by} ({self.label}, {format_size(self.total)} traced)",
        )

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        yield "by", self.by
        yield "total", format_size(self.total)
        yield "rows", [f"{w} {s} ({c} blocks)" for w, s, c, _ in self._table()]

    def to_dict(self) -> dict[str, object]:
        return {
            "by": self.by,
            "label": self.label,
            "total": self.total,
            "rows": [{"where": w, "size": s, "count": c} for w, s, c in self.rows],
        }


class SiteDiff(Result):
    """What grew between two snapshots: ``rows`` of ``(where, size_diff, count_diff, size)``."""

    __slots__ = ("a", "b", "by", "rows", "total_diff")
    __module__ = "hivemem"

    rows: tuple[tuple[str, int, int, int], ...]
    a: str
    b: str
    by: str
    total_diff: int

    def __init__(
        self, rows: Sequence[tuple[str, int, int, int]], *, a: str, b: str, by: str, total_diff: int
    ) -> None:
        self._set(rows=tuple(rows), a=a, b=b, by=by, total_diff=total_diff)

    def _table(self) -> list[tuple[str, str, str, str]]:
        return [(w, format_size(d, signed=True), f"{c:+d}", format_size(s)) for w, d, c, s in self.rows]

    def __repr__(self) -> str:
        total = format_size(self.total_diff, signed=True)
        head = f"SiteDiff {self.a!r} -> {self.b!r} by {self.by}: {total} traced"
        return "\n".join([head, *text_table(("where", "grew", "blocks", "now"), self._table())])

    def _repr_html_(self) -> str:
        return html_table(
            ("where", "grew", "blocks", "now"),
            self._table(),
            caption=f"growth {self.a} -> {self.b} ({format_size(self.total_diff, signed=True)})",
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "a": self.a,
            "b": self.b,
            "by": self.by,
            "total_diff": self.total_diff,
            "rows": [{"where": w, "size_diff": d, "count_diff": c, "size": s} for w, d, c, s in self.rows],
        }


class LeakWatch(Result):
    """A leak suspicion (or its absence) over a long run, with the statistics behind it.

    ``suspected``     growth is significant, large enough, and has not plateaued
    ``metric``        the series judged (``"rss"``, ``"traced"``, ``"blocks"``, ``"uss"``)
    ``slope``         Theil-Sen slope, units per second; ``slope_ci`` Sen's 95% interval
    ``growth``        slope x duration: the fitted growth over the run
    ``tail_slope``    Theil-Sen slope over the last third; ``plateaued`` when its
                      interval reaches zero (no evidence of growth at the end)
    ``samples``, ``duration``, ``min_growth``   the evidence's size and the threshold
    ``evidence``      one sentence citing those figures
    """

    __slots__ = (
        "duration",
        "evidence",
        "growth",
        "metric",
        "min_growth",
        "plateaued",
        "samples",
        "slope",
        "slope_ci",
        "suspected",
        "tail_slope",
    )
    __module__ = "hivemem"

    suspected: bool
    metric: str
    slope: float
    slope_ci: tuple[float, float]
    growth: float
    tail_slope: float
    plateaued: bool
    samples: int
    duration: float
    min_growth: int
    evidence: str

    def __init__(
        self,
        times: Sequence[float],
        values: Sequence[float],
        *,
        metric: str = "rss",
        min_growth: int = 1 << 20,
        min_samples: int = 10,
        min_duration: float = 10.0,
    ) -> None:
        from hivemem._robust import plateau, theil_sen

        n = len(times)
        duration = times[-1] - times[0] if n > 1 else 0.0
        unit = (lambda v: f"{v:,.0f} blocks") if metric == "blocks" else format_size
        if n < min_samples or duration < min_duration or duration <= 0:
            self._set(
                suspected=False,
                metric=metric,
                slope=0.0,
                slope_ci=(0.0, 0.0),
                growth=0.0,
                tail_slope=0.0,
                plateaued=True,
                samples=n,
                duration=duration,
                min_growth=min_growth,
                evidence=(
                    f"not enough evidence: {n} samples over {duration:.1f} s "
                    f"(need {min_samples} samples over {min_duration:g} s)"
                ),
            )
            return
        slope, low, high = theil_sen(times, values)
        flat, tail, _tail_low = plateau(times, values)
        growth = slope * duration
        suspected = low > 0 and growth >= min_growth and not flat
        figures = (
            f"{metric} slope {unit(slope)}/s (95% CI {unit(low)}/s .. {unit(high)}/s) over {n} samples "
            f"in {duration:.1f} s = {unit(growth)} fitted growth; last third: {unit(tail)}/s"
        )
        if suspected:
            evidence = f"leak suspected: {figures}, still growing at the end"
        elif low <= 0:
            evidence = f"no significant growth: {figures}"
        elif growth < min_growth:
            evidence = f"growth below the threshold of {unit(min_growth)}: {figures}"
        else:
            evidence = f"plateaued: {figures}; the last third shows no significant growth"
        self._set(
            suspected=suspected,
            metric=metric,
            slope=slope,
            slope_ci=(low, high),
            growth=growth,
            tail_slope=tail,
            plateaued=flat,
            samples=n,
            duration=duration,
            min_growth=min_growth,
            evidence=evidence,
        )

    def __bool__(self) -> bool:
        return self.suspected

    def __repr__(self) -> str:
        return f"LeakWatch({'SUSPECTED' if self.suspected else 'no leak'}: {self.evidence})"

    def _repr_html_(self) -> str:
        from html import escape

        color = "#b00020" if self.suspected else "#2e7d32"
        return f"<p class='hivemem-leakwatch' style='color:{color}'>{escape(repr(self))}</p>"

    def to_dict(self) -> dict[str, object]:
        return {
            "suspected": self.suspected,
            "metric": self.metric,
            "slope": self.slope,
            "slope_ci": list(self.slope_ci),
            "growth": self.growth,
            "tail_slope": self.tail_slope,
            "plateaued": self.plateaued,
            "samples": self.samples,
            "duration": self.duration,
            "min_growth": self.min_growth,
            "evidence": self.evidence,
        }


class Overhead(Result):
    """What profiling cost: tracemalloc's own memory, the sampler's CPU, the samples' storage."""

    __slots__ = (
        "core_fraction",
        "per_sample",
        "sampler_cpu",
        "samples",
        "storage",
        "tracemalloc_memory",
        "wall",
    )
    __module__ = "hivemem"

    tracemalloc_memory: int | None
    sampler_cpu: float
    wall: float
    core_fraction: float
    samples: int
    per_sample: float
    storage: int

    def __init__(
        self, *, tracemalloc_memory: int | None, sampler_cpu: float, wall: float, samples: int, storage: int
    ) -> None:
        self._set(
            tracemalloc_memory=tracemalloc_memory,
            sampler_cpu=sampler_cpu,
            wall=wall,
            core_fraction=sampler_cpu / wall if wall > 0 else 0.0,
            samples=samples,
            per_sample=sampler_cpu / samples if samples else 0.0,
            storage=storage,
        )

    def __repr__(self) -> str:
        tm = format_size(self.tracemalloc_memory) if self.tracemalloc_memory is not None else "not tracing"
        return (
            f"Overhead(sampler={100 * self.core_fraction:.3f}% of one core "
            f"({self.sampler_cpu * 1e3:.1f} ms CPU in {self.wall:.1f} s, "
            f"{self.per_sample * 1e6:.0f} µs/sample), tracemalloc={tm}, "
            f"samples={format_size(self.storage)})"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "tracemalloc_memory": self.tracemalloc_memory,
            "sampler_cpu": self.sampler_cpu,
            "wall": self.wall,
            "core_fraction": self.core_fraction,
            "samples": self.samples,
            "per_sample": self.per_sample,
            "storage": self.storage,
        }


class ProfileReport(Result):
    """Everything one profiled run measured: ``timeline``, ``peak``, ``top`` sites, ``growth``
    between the first and last snapshot, ``leak`` watch, ``overhead`` and ``advice``.

    ``to_html()`` renders a self-contained page (no network); ``to_json()`` the same data.
    """

    __slots__ = ("advice", "growth", "leak", "overhead", "peak", "started", "timeline", "top")
    __module__ = "hivemem"

    timeline: Timeline
    peak: Peak
    top: TopSites | None
    growth: SiteDiff | None
    leak: LeakWatch
    overhead: Overhead
    advice: tuple[Advice, ...]
    started: float

    def __init__(
        self,
        *,
        timeline: Timeline,
        peak: Peak,
        leak: LeakWatch,
        overhead: Overhead,
        top: TopSites | None = None,
        growth: SiteDiff | None = None,
        advice: Sequence[Advice] = (),
        started: float = 0.0,
    ) -> None:
        self._set(
            timeline=timeline,
            peak=peak,
            top=top,
            growth=growth,
            leak=leak,
            overhead=overhead,
            advice=tuple(advice),
            started=started,
        )

    def __repr__(self) -> str:
        parts = [
            f"ProfileReport: {len(self.timeline)} samples over {self.timeline.duration:.2f} s",
            f"  peak: {self.peak!r}",
            f"  leak watch: {self.leak!r}",
            f"  overhead: {self.overhead!r}",
        ]
        if self.top is not None:
            parts.append("  " + repr(self.top).replace("\n", "\n  "))
        if self.growth is not None:
            parts.append("  " + repr(self.growth).replace("\n", "\n  "))
        for a in self.advice:
            parts.append(f"  advice: {a.text}")
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        from hivemem._htmlreport import report_body

        return report_body(self)

    def to_html(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        events: Sequence[float] = (),
        leaks: Sequence[LeakReport] = (),
    ) -> str:
        """The report as one self-contained HTML page; written to *path* when given.

        *events* are extra times (seconds since start) to mark on the timeline,
        e.g. when your own code or another governor acted; *leaks* are
        :class:`hivemem.LeakReport` results to tabulate.
        """
        from hivemem._htmlreport import render

        page = render(self, events=events, leaks=leaks)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(page)
        return page

    def to_dict(self) -> dict[str, object]:
        return {
            "started": self.started,
            "timeline": self.timeline.to_dict(),
            "peak": self.peak.to_dict(),
            "top": self.top.to_dict() if self.top is not None else None,
            "growth": self.growth.to_dict() if self.growth is not None else None,
            "leak": self.leak.to_dict(),
            "overhead": self.overhead.to_dict(),
            "advice": [a.to_dict() for a in self.advice],
        }


# --------------------------------------------------------------------------- the profiler

_live: list[object] = []  # weak references to every started profiler, for fork handling


def _after_fork_child() -> None:
    # The sampling thread does not exist in the child; profilers there are stopped.
    for ref in list(_live):
        prof = ref()  # type: ignore[operator]
        if prof is not None:
            prof._forked()
    _live.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)


def _where(frames: Sequence[object], by: str) -> str:
    if by == "file":
        return short_path(frames[0].filename)  # type: ignore[attr-defined]
    if by == "lineno":
        f = frames[0]
        return f"{short_path(f.filename)}:{f.lineno}"  # type: ignore[attr-defined]
    return " <- ".join(f"{short_path(f.filename)}:{f.lineno}" for f in frames)  # type: ignore[attr-defined]


class Profiler:
    """Sample this process's memory over time and keep tracemalloc snapshots at chosen points.

    ``interval`` seconds between samples (default 0.1 = 10 Hz; ``None``: no
    thread, call :meth:`sample` yourself). ``trace=True`` starts tracemalloc
    with ``frames`` frames per traceback (stopped again at :meth:`stop` only
    if the profiler started it). ``uss=True`` also samples USS. *reader* and
    *clock* are injectable for tests (see :class:`hivemem.testing.FakeReader`).

    >>> with hivemem.Profiler(trace=True) as prof:   # doctest: +SKIP
    ...     work()
    >>> prof.report()                                # doctest: +SKIP
    """

    __module__ = "hivemem"

    def __init__(
        self,
        *,
        interval: float | None = 0.1,
        trace: bool = False,
        frames: int = 1,
        uss: bool = False,
        max_samples: int = 100_000,
        reader: object = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        from hivemem._errors import InvalidArgument
        from hivemem._validate import MAX_SECONDS, callable_or_none, show

        if interval is not None and (
            isinstance(interval, bool)
            or not isinstance(interval, (int, float))
            or not 0 < interval <= MAX_SECONDS  # finite: the sampling thread waits this long
        ):
            raise InvalidArgument(
                f"interval must be a positive number of seconds (at most {MAX_SECONDS:g}) or None, "
                f"got {show(interval)}"
            )
        callable_or_none("clock", clock)
        for name, value in (("trace", trace), ("uss", uss)):
            if not isinstance(value, bool):
                raise InvalidArgument(f"{name} must be True or False, got {value!r}")
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise InvalidArgument(f"frames must be an integer >= 1, got {frames!r}")
        if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 16:
            raise InvalidArgument(f"max_samples must be an integer >= 16, got {max_samples!r}")
        if reader is not None and not (
            callable(getattr(reader, "rss", None)) and callable(getattr(reader, "usage", None))
        ):
            raise InvalidArgument(f"reader {reader!r} must have rss() and usage() methods")
        self.interval = None if interval is None else float(interval)
        self.trace = trace
        self.frames = frames
        self.uss = uss
        self.max_samples = max_samples
        self._reader = reader
        self._clock: Callable[[], float] = clock if clock is not None else time.monotonic
        self._lock = _thread.allocate_lock()
        self._reset()

    def _reset(self) -> None:
        import array

        self._t = array.array("d")
        self._rss = array.array("q")
        self._uss = array.array("q")
        self._traced = array.array("q")
        self._blocks = array.array("q")
        self._gc = array.array("q")
        self._marks: list[tuple[float, str]] = []
        self._snapshots: dict[str, tuple[float, object]] = {}
        self._stride = 1
        self._tick = 0
        self._t0 = 0.0
        self._wall0 = 0.0
        self._t_end: float | None = None
        self._started_tracing = False
        self._peak_reset: bool | str = False
        self._sampler_cpu = 0.0
        self._thread: object = None
        self._stop_flag: object = None
        self._running = False
        self._listener: Callable[..., object] | None = None
        self._gov_sub: tuple[object, Callable[..., object]] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> Profiler:
        """Reset the peaks, start tracing if asked, take the first sample, start the thread."""
        import tracemalloc
        import weakref

        if self._running:
            from hivemem._errors import InvalidArgument

            raise InvalidArgument("this Profiler is already running; stop() it first")
        with self._lock:
            self._reset()
        if self.trace and not tracemalloc.is_tracing():
            tracemalloc.start(self.frames)
            self._started_tracing = True
        if tracemalloc.is_tracing():
            tracemalloc.reset_peak()
        self._peak_reset = self._reset_rss_peak()
        self._t0 = self._clock()
        self._wall0 = time.time()
        self._running = True
        _live.append(weakref.ref(self))
        self._subscribe()
        self.sample()
        if self.interval is not None:
            import threading

            stop = threading.Event()
            thread = threading.Thread(target=self._run, args=(stop,), name="hivemem-profiler", daemon=True)
            self._stop_flag, self._thread = stop, thread
            thread.start()
        if tracemalloc.is_tracing() and self.trace:
            self.snapshot("start")  # after the thread started, so its own allocations are not "growth"
        return self

    def stop(self) -> Profiler:
        """Stop sampling (after one last sample), take the ``"stop"`` snapshot, stop tracemalloc if ours."""
        import tracemalloc

        if not self._running:
            return self
        if self._thread is not None:
            self._stop_flag.set()  # type: ignore[attr-defined]
            self._thread.join()  # type: ignore[attr-defined]
            self._thread = None
        self.sample()
        self._t_end = self._clock()
        if self.trace and tracemalloc.is_tracing():
            self.snapshot("stop")
        self._peak_at_stop = self._read_peak()
        self._unsubscribe()
        if self._started_tracing:
            self._tm_memory = tracemalloc.get_tracemalloc_memory()
            tracemalloc.stop()
            self._started_tracing = False
        self._running = False
        return self

    def __enter__(self) -> Profiler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _forked(self) -> None:
        self._running = False
        self._thread = None
        self._lock = _thread.allocate_lock()

    def _run(self, stop: object) -> None:
        wait = stop.wait  # type: ignore[attr-defined]
        interval = self.interval
        thread_time = time.thread_time
        base = self._sampler_cpu
        cpu0 = thread_time()
        try:
            while not wait(interval):
                try:
                    self.sample()
                except Exception:  # never break the host program; the gap shows in the timeline
                    pass
                self._sampler_cpu = base + thread_time() - cpu0
        finally:
            self._sampler_cpu = base + thread_time() - cpu0

    # ------------------------------------------------------------------ peaks

    def _reset_rss_peak(self) -> bool | str:
        reader = self._reader
        if reader is None:
            from hivemem._measure import _peak_state, reset_peak

            return True if reset_peak() else (_peak_state.reset_failed or "reset_peak() failed")
        fn = getattr(reader, "reset_peak", None)
        if callable(fn):
            fn()
            return True
        return "the injected reader has no reset_peak()"

    def _usage(self) -> object:
        if self._reader is None:
            from hivemem._measure import usage

            return usage()
        return self._reader.usage()  # type: ignore[attr-defined]

    def _read_peak(self) -> tuple[int | None, int | None]:
        import tracemalloc

        kernel = getattr(self._usage(), "peak", None) if self._peak_reset is True else None
        traced = tracemalloc.get_traced_memory()[1] if tracemalloc.is_tracing() else None
        return kernel, traced

    def peak(self) -> Peak:
        """The exact peak RSS (kernel high-water mark since start) and tracemalloc's peak since start."""
        kernel, traced = self._read_peak() if self._running else getattr(self, "_peak_at_stop", (None, None))
        with self._lock:
            rss = list(self._rss)
            times = list(self._t)
        sampled = max(rss) if rss else None
        at = times[rss.index(sampled)] if sampled is not None else None
        if self._peak_reset is True:
            source = "kernel VmHWM since start (hivemem.reset_peak)"
        else:
            source = f"not exact: {self._peak_reset or 'profiler never started'}; see sampled_rss"
        return Peak(rss=kernel, rss_source=source, traced=traced, sampled_rss=sampled, sampled_at=at)

    # ------------------------------------------------------------------ sampling

    def sample(self) -> None:
        """Take one sample now (the thread calls this; call it yourself with ``interval=None``)."""
        import _tracemalloc

        reader = self._reader
        now = self._clock() - self._t0
        if reader is None:
            from hivemem._measure import rss as read_rss

            rss = read_rss()
        else:
            rss = reader.rss()  # type: ignore[attr-defined]
        uss = _MISSING
        if self.uss:
            uss = getattr(self._usage(), "uss", None) or _MISSING
        traced = _tracemalloc.get_traced_memory()[0] if _tracemalloc.is_tracing() else _MISSING
        blocks = sys.getallocatedblocks()
        stats = gc.get_stats()
        with self._lock:
            self._tick += 1
            if (self._tick - 1) % self._stride:
                return
            self._t.append(now)
            self._rss.append(rss)
            self._uss.append(uss)
            self._traced.append(traced)
            self._blocks.append(blocks)
            for g in range(3):
                self._gc.append(stats[g]["collections"] if g < len(stats) else 0)
            if len(self._t) >= self.max_samples:
                self._decimate()

    def _decimate(self) -> None:
        for name in ("_t", "_rss", "_uss", "_traced", "_blocks"):
            arr = getattr(self, name)
            setattr(self, name, arr[::2])
        gcs = self._gc
        self._gc = type(gcs)("q", [v for i in range(0, len(gcs) // 3, 2) for v in gcs[3 * i : 3 * i + 3]])
        self._stride *= 2

    def mark(self, label: str) -> None:
        """Put a labelled mark on the timeline now (shown in the HTML report)."""
        with self._lock:
            self._marks.append((self._clock() - self._t0, str(label)))

    def _subscribe(self) -> None:
        from hivemem._engine import subscribe

        def on_pass(report: object) -> None:
            freed = getattr(report, "freed", None)
            self.mark(f"optimize: {format_size(freed, signed=True)}" if freed is not None else "optimize")

        self._listener = on_pass
        subscribe(on_pass)
        gov = getattr(sys.modules.get("hivemem._governor"), "_governed", None)
        if gov is not None and callable(getattr(gov, "subscribe", None)):

            def on_event(event: object) -> None:
                if getattr(event, "kind", None) in ("level", "escalate", "throttle"):
                    self.mark(f"governor {event.kind}: {getattr(event, 'level', '')}")  # type: ignore[attr-defined]

            try:
                gov.subscribe(on_event)
                self._gov_sub = (gov, on_event)
            except Exception:
                self._gov_sub = None

    def _unsubscribe(self) -> None:
        from hivemem._engine import unsubscribe

        if self._listener is not None:
            unsubscribe(self._listener)
            self._listener = None
        if self._gov_sub is not None:
            gov, fn = self._gov_sub
            try:
                gov.unsubscribe(fn)  # type: ignore[attr-defined]
            except Exception:
                pass
            self._gov_sub = None

    # ------------------------------------------------------------------ snapshots

    def snapshot(self, label: str | None = None) -> str:
        """Keep a tracemalloc snapshot under *label* (default ``"snapshot N"``); returns the label."""
        import tracemalloc

        if not tracemalloc.is_tracing():
            from hivemem._errors import Unavailable

            raise Unavailable("tracemalloc is not tracing: use Profiler(trace=True) or tracemalloc.start()")
        snap = tracemalloc.take_snapshot().filter_traces(
            (
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, os.path.join(os.path.dirname(__file__), "*")),
            )
        )
        with self._lock:
            name = label if label is not None else f"snapshot {len(self._snapshots) + 1}"
            self._snapshots[name] = (self._clock() - self._t0, snap)
            self._marks.append((self._snapshots[name][0], f"snapshot {name}"))
        return name

    @property
    def snapshots(self) -> tuple[str, ...]:
        """Labels of the kept snapshots, oldest first."""
        return tuple(self._snapshots)

    def _snap(self, label: str | None) -> tuple[str, object]:
        if label is None:
            if not self._snapshots:
                if not self._running:
                    from hivemem._errors import Unavailable

                    raise Unavailable("no tracemalloc snapshot was kept: profile with trace=True")
                label = self.snapshot()
            else:
                label = next(reversed(self._snapshots))
        try:
            return label, self._snapshots[label][1]
        except KeyError:
            from hivemem._errors import InvalidArgument

            raise InvalidArgument(
                f"no snapshot {label!r}: expected one of {', '.join(map(repr, self._snapshots)) or 'none'}"
            ) from None

    @staticmethod
    def _check_by(by: str) -> None:
        if by not in _BY:
            from hivemem._errors import InvalidArgument

            raise InvalidArgument(f"by must be one of {', '.join(map(repr, _BY))}, got {by!r}")

    def top(self, n: int = 10, *, by: str = "lineno", snapshot: str | None = None) -> TopSites:
        """The *n* largest allocation sites in a snapshot (the latest, or a new one while running)."""
        self._check_by(by)
        label, snap = self._snap(snapshot)
        stats = snap.statistics(_KEY[by])  # type: ignore[attr-defined]
        total = sum(s.size for s in stats)
        rows = [(_where(s.traceback, by), s.size, s.count) for s in stats[: max(int(n), 0)]]
        return TopSites(rows, by=by, label=label, total=total)

    def diff(self, a: str, b: str | None = None, *, by: str = "lineno", n: int = 10) -> SiteDiff:
        """What grew from snapshot *a* to snapshot *b* (default: the latest), biggest growth first."""
        self._check_by(by)
        la, sa = self._snap(a)
        lb, sb = self._snap(b)
        stats = sb.compare_to(sa, _KEY[by])  # type: ignore[attr-defined]
        total = sum(s.size_diff for s in stats)
        grown = [s for s in stats if s.size_diff > 0][: max(int(n), 0)]
        rows = [(_where(s.traceback, by), s.size_diff, s.count_diff, s.size) for s in grown]
        return SiteDiff(rows, a=la, b=lb, by=by, total_diff=total)

    # ------------------------------------------------------------------ results

    def timeline(self) -> Timeline:
        """Every kept sample so far, with the marks."""
        with self._lock:
            gcs = list(self._gc)
            return Timeline(
                times=list(self._t),
                rss=list(self._rss),
                uss=[v for v in self._uss] if self.uss else (),
                traced=list(self._traced) if any(v != _MISSING for v in self._traced) else (),
                blocks=list(self._blocks),
                gc=[gcs[i : i + 3] for i in range(0, len(gcs), 3)],
                marks=sorted(self._marks),
                interval=self.interval,
                stride=self._stride,
            )

    def leak_watch(
        self, metric: str = "rss", *, min_growth: int | str | None = None, min_duration: float = 10.0
    ) -> LeakWatch:
        """Score sustained growth of *metric* over the samples: Theil-Sen slope plus a plateau test.

        *min_growth* (bytes, or blocks for ``"blocks"``) is the fitted growth
        over the run below which nothing is suspected: default 1 MiB for RSS
        and USS (page-granular, noisy), 64 KiB for traced memory, 1000 blocks.
        Runs shorter than *min_duration* seconds are never suspected: a
        short burst of growth is work, not a leak.
        """
        from hivemem._sizes import parse_size
        from hivemem._validate import seconds

        seconds("min_duration", min_duration, allow_zero=True)
        tl = self.timeline()
        values = tl.series(metric)
        times = tl.times
        if metric in ("uss", "traced"):
            pairs = [(t, v) for t, v in zip(times, values, strict=False) if v != _MISSING]
            times, values = tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
        default = {"rss": 1 << 20, "uss": 1 << 20, "traced": 64 << 10, "blocks": 1000}[metric]
        threshold = default if min_growth is None else parse_size(min_growth)
        return LeakWatch(times, values, metric=metric, min_growth=threshold, min_duration=min_duration)

    def overhead(self) -> Overhead:
        """The profiler's own cost so far."""
        import tracemalloc

        with self._lock:
            storage = sum(
                a.buffer_info()[1] * a.itemsize
                for a in (self._t, self._rss, self._uss, self._traced, self._blocks, self._gc)
            )
        if tracemalloc.is_tracing():
            tm: int | None = tracemalloc.get_tracemalloc_memory()
        else:
            tm = getattr(self, "_tm_memory", None)
        end = self._t_end if self._t_end is not None and not self._running else self._clock()
        return Overhead(
            tracemalloc_memory=tm,
            sampler_cpu=self._sampler_cpu,
            wall=end - self._t0,
            samples=self._tick,
            storage=storage,
        )

    def report(self, *, top: int = 10, advice: bool = True) -> ProfileReport:
        """Everything measured, in one :class:`ProfileReport` (with evidence-backed advice)."""
        tops = growth = None
        if self._snapshots:
            tops = self.top(top)
            if len(self._snapshots) >= 2:
                growth = self.diff(next(iter(self._snapshots)), n=top)
        leak = self.leak_watch("traced") if self.trace and self._snapshots else self.leak_watch("rss")
        tips: list[Advice] = []
        if advice:
            from hivemem._advice import advise

            tips = advise(leak=leak, top=tops)
        return ProfileReport(
            timeline=self.timeline(),
            peak=self.peak(),
            top=tops,
            growth=growth,
            leak=leak,
            overhead=self.overhead(),
            advice=tips,
            started=self._wall0,
        )

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        rate = f"{1 / self.interval:g} Hz" if self.interval else "manual"
        with self._lock:
            n = len(self._t)
            last = self._rss[-1] if n else None
        return (
            f"Profiler({state}, {rate}, samples={n}, rss={format_size(last)!r}, trace={self.trace}, "
            f"snapshots={len(self._snapshots)})"
        )
