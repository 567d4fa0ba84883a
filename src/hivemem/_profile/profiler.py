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
from _tracemalloc import get_traced_memory as _get_traced

# Imported here, not where used: the peak path runs inside gc callbacks and the line watch, which
# may fire while the program is itself importing a module. A first import from there nests in the
# program's module lock and corrupts it on CPython 3.11 (KeyError in importlib's _blocking_on).
from hivemem._measure.native import malloc_trim, trim_unavailable_reason
from hivemem._profile.render import Result, html_table, short_path, text_table
from hivemem._sizes import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    import tracemalloc
    import weakref
    from collections.abc import Callable, Iterator, Sequence
    from types import CodeType, FrameType
    from typing import Any

    from _typeshed import TraceFunction

    from hivemem._measure.reader import Reader
    from hivemem._measure.usage import MemoryUsage
    from hivemem._profile.advice import Advice
    from hivemem._profile.leaks import LeakReport

__all__ = ["LeakWatch", "Peak", "ProfileReport", "Profiler", "SiteDiff", "Timeline", "TopSites"]

_BY = ("lineno", "traceback", "file")
_KEY = {"lineno": "lineno", "traceback": "traceback", "file": "filename"}
_METRICS = ("rss", "uss", "traced", "blocks")
_MISSING = -1  # a field that was not sampled
_MAX_FRAMES = 65_535  # tracemalloc.start() refuses more
# The "peak" snapshot. A snapshot costs about 1 µs of CPU per trace and tracemalloc's copy of the
# traces holds about 160 bytes per trace while it is taken (measured), so they are rationed:
# a new one when traced memory has doubled since the last (all of them together then cost about
# twice the last one), or has grown by a quarter and stopped growing (less than 4 KiB since the
# previous sample: the top of a plateau, where peaks usually are); each at least 1 MiB above the
# last; never more CPU than half the CPU time the program itself used plus one second, and never
# when the copy would not fit under the memory limit.
_PEAK_DOUBLE = 2.0
_PEAK_PLATEAU = 1.25
_PEAK_STILL = 4 << 10
_PEAK_STILL_CPU = 0.005
_PEAK_MIN_STEP = 1 << 20
_PEAK_CPU_SHARE = 0.5
_PEAK_CPU_GRACE = 1.0
_COPY_PER_TRACE = 160
_LOCK_WAIT = 0.05  # check_peak(): the longest wait for the sample lock (held for microseconds)
_SNAPSHOT_WAIT = 30.0  # ... and for a snapshot another thread is taking
_LIMIT_SHARE = 0.9


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
        column: tuple[int, ...] = getattr(self, metric)
        return column

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
        from hivemem._profile.html import svg_timeline

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
    ``sites``        the snapshot the report's allocation sites come from: the one holding
                     the most traced bytes (``"peak"`` when the sampler caught the peak),
                     taken at ``sites_at`` (s since start) with ``sites_traced`` bytes in
                     its sites; ``None`` without snapshots. ``sites_skipped`` says why the
                     sampler did not take a later, larger snapshot, when it did not.
    """

    __slots__ = (
        "rss",
        "rss_source",
        "sampled_at",
        "sampled_rss",
        "sites",
        "sites_at",
        "sites_skipped",
        "sites_traced",
        "traced",
    )
    __module__ = "hivemem"

    rss: int | None
    rss_source: str
    traced: int | None
    sampled_rss: int | None
    sampled_at: float | None
    sites: str | None
    sites_at: float | None
    sites_traced: int | None
    sites_skipped: str | None

    def __init__(
        self,
        *,
        rss: int | None,
        rss_source: str,
        traced: int | None = None,
        sampled_rss: int | None = None,
        sampled_at: float | None = None,
        sites: str | None = None,
        sites_at: float | None = None,
        sites_traced: int | None = None,
        sites_skipped: str | None = None,
    ) -> None:
        self._set(
            rss=rss,
            rss_source=rss_source,
            traced=traced,
            sampled_rss=sampled_rss,
            sampled_at=sampled_at,
            sites=sites,
            sites_at=sites_at,
            sites_traced=sites_traced,
            sites_skipped=sites_skipped,
        )

    @property
    def sites_note(self) -> str:
        """One sentence: which snapshot the allocation sites come from, against the traced peak."""
        if self.sites is None:
            return "no tracemalloc snapshot: profile with trace=True for allocation sites"
        held = format_size(self.sites_traced)
        text = f"sites from snapshot {self.sites!r} at {self.sites_at or 0:.2f} s holding {held}"
        if self.traced:
            share = (self.sites_traced or 0) / self.traced
            text += f", {share:.0%} of the exact traced peak of {format_size(self.traced)}"
        if self.sites_skipped:
            text += f"; a later snapshot was skipped: {self.sites_skipped}"
        return text

    def __repr__(self) -> str:
        parts = [f"rss={format_size(self.rss)!r} ({self.rss_source})"]
        if self.traced is not None:
            parts.append(f"traced={format_size(self.traced)!r}")
        if self.sampled_rss is not None:
            parts.append(f"sampled_rss={format_size(self.sampled_rss)!r}")
        if self.sites is not None:
            parts.append(self.sites_note)
        return f"Peak({', '.join(parts)})"

    def _repr_html_(self) -> str:
        rows = [("rss (exact)", format_size(self.rss), self.rss_source)]
        if self.traced is not None:
            rows.append(("traced (exact)", format_size(self.traced), "tracemalloc peak since start"))
        if self.sampled_rss is not None:
            rows.append(("rss (sampled max)", format_size(self.sampled_rss), f"at {self.sampled_at:.2f} s"))
        if self.sites is not None:
            rows.append(("allocation sites", format_size(self.sites_traced), self.sites_note))
        return html_table(("peak", "bytes", "source"), rows, caption="Peak")

    def to_dict(self) -> dict[str, object]:
        return {
            "rss": self.rss,
            "rss_source": self.rss_source,
            "traced": self.traced,
            "sampled_rss": self.sampled_rss,
            "sampled_at": self.sampled_at,
            "sites": self.sites,
            "sites_at": self.sites_at,
            "sites_traced": self.sites_traced,
            "sites_skipped": self.sites_skipped,
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
        from hivemem._measure.stats import plateau, theil_sen

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
        kept = values[-1] - values[0]  # a run that ends where it started retained nothing
        suspected = low > 0 and growth >= min_growth and not flat and kept >= min_growth
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
        elif kept < min_growth:
            evidence = (
                f"returned: the last sample is {unit(kept)} from the first, under the threshold of "
                f"{unit(min_growth)}; {figures}"
            )
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
    """What profiling cost: tracemalloc's own memory, the sampler's CPU, the samples' storage.

    ``tracemalloc_memory`` is the most tracemalloc used for itself, read now
    (or at stop) and at each ``"peak"`` snapshot.

    ``snapshots`` is how many ``"peak"`` snapshots the sampler took, ``snapshot_cpu``
    their CPU seconds (part of ``sampler_cpu``) and ``snapshot_rss`` the most RSS
    tracemalloc's copy of the traces held while one was taken.
    """

    __slots__ = (
        "core_fraction",
        "per_sample",
        "sampler_cpu",
        "samples",
        "snapshot_cpu",
        "snapshot_rss",
        "snapshots",
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
    snapshot_cpu: float
    snapshots: int
    snapshot_rss: int

    def __init__(
        self,
        *,
        tracemalloc_memory: int | None,
        sampler_cpu: float,
        wall: float,
        samples: int,
        storage: int,
        snapshot_cpu: float = 0.0,
        snapshots: int = 0,
        snapshot_rss: int = 0,
    ) -> None:
        self._set(
            tracemalloc_memory=tracemalloc_memory,
            sampler_cpu=sampler_cpu,
            wall=wall,
            core_fraction=sampler_cpu / wall if wall > 0 else 0.0,
            samples=samples,
            per_sample=sampler_cpu / samples if samples else 0.0,
            storage=storage,
            snapshot_cpu=snapshot_cpu,
            snapshots=snapshots,
            snapshot_rss=snapshot_rss,
        )

    def __repr__(self) -> str:
        tm = format_size(self.tracemalloc_memory) if self.tracemalloc_memory is not None else "not tracing"
        snaps = ""
        if self.snapshots:
            snaps = (
                f", peak snapshots={self.snapshots} ({self.snapshot_cpu * 1e3:.1f} ms CPU, "
                f"held up to {format_size(self.snapshot_rss)} RSS)"
            )
        return (
            f"Overhead(sampler={100 * self.core_fraction:.3f}% of one core "
            f"({self.sampler_cpu * 1e3:.1f} ms CPU in {self.wall:.1f} s, "
            f"{self.per_sample * 1e6:.0f} µs/sample), tracemalloc={tm}, "
            f"samples={format_size(self.storage)}{snaps})"
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
            "snapshot_cpu": self.snapshot_cpu,
            "snapshots": self.snapshots,
            "snapshot_rss": self.snapshot_rss,
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
        from hivemem._profile.html import report_body

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
        from hivemem._profile.html import render

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

_live: list[weakref.ref[Profiler]] = []  # weak references to every started profiler, for fork handling


def _after_fork_child() -> None:
    # The sampling thread does not exist in the child; profilers there are stopped.
    for ref in list(_live):
        prof = ref()
        if prof is not None:
            prof._forked()
    _live.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)


# A traceback as tracemalloc hands it over: ((filename, lineno), ...), most recent frame first.
_Frames = tuple[tuple[str, int], ...]


def _sys_monitoring() -> Any:
    """``sys.monitoring`` (3.12+), which the type checker, set to 3.10, does not know."""
    return vars(sys)["monitoring"]


# Traces are grouped in chunks so the grouping's own (traced) memory stays under ~1 MiB at any heap size.
_CHUNK = 32_768
# hivemem's own frames: anything under the package root (this file is in hivemem/_profile/).
_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class _Sites:
    """One tracemalloc snapshot reduced to its allocation sites; the raw traces are not kept.

    ``sites`` maps a traceback (most recent frame first) to ``[bytes, blocks]``;
    traces whose most recent frame is in tracemalloc or hivemem are left out,
    as ``tracemalloc.Filter`` would. ``traced`` is tracemalloc's traced total
    when the snapshot was taken, ``total`` the bytes the kept sites hold.
    """

    __slots__ = ("at", "held", "left", "sites", "total", "traced", "traces")

    def __init__(self, at: float, sites: dict[_Frames, list[int]], traced: int) -> None:
        self.at = at
        self.sites = sites
        self.traced = traced
        self.total = sum(v[0] for v in sites.values())
        self.held = self.left = 0  # RSS the copy of the traces held, and left behind once freed
        self.traces = 0  # how many traces the snapshot had

    def grouped(self, by: str) -> dict[Any, list[int]]:
        out: dict[Any, list[int]] = {}
        if by == "traceback":
            out.update(self.sites)
            return out
        for frames, (size, count) in self.sites.items():
            key: object = frames[:1] if by == "lineno" else frames[0][0] if frames else ""
            cur = out.get(key)
            if cur is None:
                out[key] = [size, count]
            else:
                cur[0] += size
                cur[1] += count
        return out


def _take_sites(at: float, rss: Callable[[], int] | None = None, rss0: int | None = None) -> _Sites:
    """Take a tracemalloc snapshot and group it by traceback, in bounded extra traced memory.

    ``Snapshot.statistics()`` and ``filter_traces()`` walk every trace in
    Python and allocate per trace (about 3 s for a million traces while
    tracing, measured); sorting chunks by traceback and summing each run in C
    takes a tenth of that and allocates per site, not per trace.
    """
    import tracemalloc

    if rss0 is None:
        rss0 = rss() if rss is not None else 0
    # no call that releases the GIL between the caller's decision and the copy of the traces: another
    # thread could free the peak meanwhile (docs/profiler.md, "Allocation sites at the peak")
    traced = tracemalloc.get_traced_memory()[0]
    snap = tracemalloc.take_snapshot()
    held = rss() - rss0 if rss is not None else 0
    sites, traces = _group(snap)
    del snap
    out = _Sites(at, sites, traced)
    out.traces = traces
    if rss is not None:
        out.held, out.left = held, rss() - rss0
    return out


def _group(snap: tracemalloc.Snapshot) -> tuple[dict[_Frames, list[int]], int]:
    """A tracemalloc ``Snapshot``'s sites by traceback, without tracemalloc's and hivemem's own; and its
    number of traces."""
    import tracemalloc
    from itertools import groupby
    from operator import itemgetter

    raw = getattr(getattr(snap, "traces", None), "_traces", None)
    sites: dict[_Frames, list[int]] = {}
    traces = len(raw) if isinstance(raw, list) else 0
    if isinstance(raw, list) and (not raw or (isinstance(raw[0], tuple) and len(raw[0]) >= 3)):
        key, size = itemgetter(2), itemgetter(1)
        for i in range(0, len(raw), _CHUNK):
            chunk = raw[i : i + _CHUNK]
            chunk.sort(key=key)
            for frames, run in groupby(chunk, key):
                group = list(run)
                cur = sites.get(frames)
                if cur is None:
                    sites[frames] = [sum(map(size, group)), len(group)]
                else:
                    cur[0] += sum(map(size, group))
                    cur[1] += len(group)
            del chunk
    else:  # pragma: no cover - a tracemalloc whose Snapshot layout differs: the public, slower path
        for stat in snap.statistics("traceback"):
            frames = tuple((f.filename, f.lineno) for f in reversed(stat.traceback))
            sites[frames] = [stat.size, stat.count]
    del raw
    own = tracemalloc.__file__
    for frames in [f for f in sites if not f or f[0][0] == own or f[0][0].startswith(_HERE)]:
        del sites[frames]
    return sites, traces


def _where(frames: str | _Frames, by: str) -> str:
    if isinstance(frames, str):  # by == "file": the key is a file name
        return short_path(frames)
    return " <- ".join(f"{short_path(f)}:{n}" for f, n in frames)


class Profiler:
    """Sample this process's memory over time and keep tracemalloc snapshots at chosen points.

    ``interval`` seconds between samples (default 0.1 = 10 Hz; ``None``: no
    thread, call :meth:`sample` yourself). ``trace=True`` starts tracemalloc
    with ``frames`` frames per traceback (stopped again at :meth:`stop` only
    if the profiler started it); with ``peak_sites=True`` (the default) the
    sampler then also keeps a ``"peak"`` snapshot while traced memory is high,
    and :meth:`report` lists the allocation sites of the snapshot nearest the
    traced peak (docs/profiler.md, "Allocation sites at the peak").
    ``uss=True`` also samples USS. *reader* and *clock* are injectable for
    tests (see :class:`hivemem.testing.FakeReader`).

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
        peak_sites: bool = True,
        reader: Reader | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        from hivemem import _validate
        from hivemem._errors import InvalidArgument

        interval = _validate.seconds("interval", interval, allow_none=True)
        _validate.callable_or_none("clock", clock)
        for name, value in (("trace", trace), ("uss", uss), ("peak_sites", peak_sites)):
            if not isinstance(value, bool):
                raise InvalidArgument(f"{name}={_validate.show(value)}: expected True or False")
        frames = _validate.count("frames", frames, maximum=_MAX_FRAMES)
        max_samples = _validate.count("max_samples", max_samples, minimum=16)
        if reader is not None and not (
            callable(getattr(reader, "rss", None)) and callable(getattr(reader, "usage", None))
        ):
            raise InvalidArgument(f"reader {reader!r} must have rss() and usage() methods")
        self.interval = interval
        self.trace = trace
        self.peak_sites = peak_sites
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
        self._snapshots: dict[str, _Sites] = {}
        self._peak_plateau = sys.maxsize  # ... and above which it keeps one where growth stops
        self._sample_prev = (0, 0)  # traced bytes and snapshot count at the previous sample
        self._check_prev = (0, 0, 0.0)  # ... and thread CPU time at the previous check_peak(sampled=True)
        self._peak_next = sys.maxsize  # traced bytes above which the sampler keeps a new "peak" snapshot
        self._peak_busy = _thread.allocate_lock()
        self._peak_threads: set[int] = set()  # threads in _peak_snapshot (a signal may nest a call)
        self._snap_cpu = 0.0  # CPU seconds spent taking the automatic "peak" snapshots
        self._snap_count = 0
        self._snap_rss = 0  # the most RSS a snapshot's copy of the traces held at once
        self._snap_error: str | None = None
        self._tm_max = 0  # the most memory tracemalloc used for itself, read at each "peak" snapshot
        self._snap_skipped: str | None = None
        self._copy_per_trace = _COPY_PER_TRACE
        self._limit = 0
        self._stride = 1
        self._tick = 0
        self._t0 = 0.0
        self._cpu0 = 0.0
        self._wall0 = 0.0
        self._t_end: float | None = None
        self._started_tracing = False
        self._peak_reset: bool | str = False
        self._sampler_cpu = 0.0
        self._thread: threading.Thread | None = None
        self._stop_flag: threading.Event | None = None
        self._running = False
        self._listener: Callable[..., object] | None = None
        # the running governor (duck-typed: read from its module) and our listener on it
        self._gov_sub: tuple[Any, Callable[..., object]] | None = None

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
        self._cpu0 = time.process_time()
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
            if self.peak_sites and self._reader is None:
                try:
                    from hivemem._measure.limits import memory_limit

                    self._limit = memory_limit().bytes
                except Exception:  # no limit known: only the CPU budget bounds the snapshots
                    self._limit = 0
            self._arm_peak(self._snapshots["start"].traced)
            if self.peak_sites:
                gc.callbacks.append(self._on_gc)
        return self

    def _drop_gc_callback(self) -> None:
        callbacks = gc.callbacks
        for i in range(len(callbacks) - 1, -1, -1):
            if callbacks[i] == self._on_gc:
                del callbacks[i]

    def stop(self) -> Profiler:
        """Stop sampling (after one last sample), take the ``"stop"`` snapshot, stop tracemalloc if ours."""
        import tracemalloc

        if not self._running:
            return self
        self._drop_gc_callback()
        if self._thread is not None:
            if self._stop_flag is not None:
                self._stop_flag.set()
            self._thread.join()
            self._thread = None
        self.sample(_peak=False)
        self._t_end = self._clock()
        # the peaks first: the "stop" snapshot's own copy of the traces must not count
        self._peak_at_stop = self._read_peak()
        if self.trace and tracemalloc.is_tracing():
            self.snapshot("stop")
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
        self._drop_gc_callback()
        self._running = False
        self._thread = None
        self._lock = _thread.allocate_lock()
        self._peak_busy = _thread.allocate_lock()
        self._peak_threads = set()

    def _run(self, stop: threading.Event) -> None:
        wait = stop.wait
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
            from hivemem._measure.usage import peak_reset_failure, reset_peak

            return True if reset_peak() else (peak_reset_failure() or "reset_peak() failed")
        fn = getattr(reader, "reset_peak", None)
        if callable(fn):
            fn()
            return True
        return "the injected reader has no reset_peak()"

    def _usage(self) -> MemoryUsage:
        if self._reader is None:
            from hivemem._measure.usage import usage

            return usage()
        return self._reader.usage()

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
            if self._snap_rss >= _PEAK_MIN_STEP:
                source += (
                    f"; includes up to {format_size(self._snap_rss)} that tracemalloc's copy of the "
                    "traces held while a peak snapshot was taken"
                )
        else:
            source = f"not exact: {self._peak_reset or 'profiler never started'}; see sampled_rss"
        label = self._sites_label()
        snap = self._snapshots.get(label) if label is not None else None
        return Peak(
            rss=kernel,
            rss_source=source,
            traced=traced,
            sampled_rss=sampled,
            sampled_at=at,
            sites=label,
            sites_at=snap.at if snap is not None else None,
            sites_traced=snap.total if snap is not None else None,
            sites_skipped=self._snap_skipped or self._snap_error,
        )

    # ------------------------------------------------------------------ sampling

    def sample(self, *, _peak: bool = True) -> None:
        """Take one sample now (the thread calls this; call it yourself with ``interval=None``).

        While tracing with ``peak_sites=True``, a sample that finds traced
        memory 10% (and at least 1 MiB) above the last ``"peak"`` snapshot
        takes a new one, so the allocation sites at the traced peak are kept
        after the program frees them.
        """
        import _tracemalloc

        reader = self._reader
        now = self._clock() - self._t0
        if reader is None:
            from hivemem._measure.usage import rss as read_rss

            rss = read_rss()
        else:
            rss = reader.rss()
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
        if _peak and traced != _MISSING:
            prev, self._sample_prev = self._sample_prev, (traced, self._snap_count)
            if self._peak_due(traced, prev):
                self._peak_snapshot(now, rss, blocks)

    def check_peak(self, *, sampled: bool = False) -> bool:
        """Keep a ``"peak"`` snapshot now if traced memory is a quarter above the last one.

        Call it where you know memory is high. With ``sampled=True`` it judges
        as the sampling thread does (doubled since the last snapshot, or grown
        by a quarter and no longer growing since the previous sampled call
        while this thread ran 5 ms of CPU): ``hivemem run --profile`` calls it
        so from a CPU-time signal handler, which sees a peak the main thread
        holds for a few milliseconds after a long C call. Returns whether a
        snapshot was kept. It never raises; it waits for a snapshot another
        thread is taking (the memory it wants to see stays alive meanwhile)
        but never for one of its own thread.
        """
        import _tracemalloc

        if not (self._running and self.trace and self.peak_sites and _tracemalloc.is_tracing()):
            return False
        traced = _tracemalloc.get_traced_memory()[0]
        if sampled:
            cpu = time.thread_time()
            prev_traced, prev_count, prev_cpu = self._check_prev
            if cpu - prev_cpu < _PEAK_STILL_CPU and traced < self._peak_next:
                return False  # too little of this thread's work since the last call to judge growth
            self._check_prev = (traced, self._snap_count, cpu)
            if not self._peak_due(traced, (prev_traced, prev_count)):
                return False
        elif traced < self._peak_plateau:
            return False
        # A signal handler that interrupted its own thread inside ``with self._lock`` would wait for
        # itself: wait briefly (another thread holds it for microseconds), then give up.
        if not self._lock.acquire(timeout=_LOCK_WAIT):
            return False
        self._lock.release()
        before = self._snap_count
        try:
            now, rss = self._clock() - self._t0, self._rss_now()
            self._peak_snapshot(now, rss, sys.getallocatedblocks(), wait=True)
        except Exception:  # never raise into the caller, least of all a signal handler
            return False
        return self._snap_count > before and self._snap_error is None

    def _check_live(self, boundary: bool) -> None:
        """Keep a "peak" snapshot now, from the thread that holds the memory, if traced memory doubled
        since the last one, or, at a *boundary* (a statement of the watched code just ended), grew by
        a quarter. Called by the gc callback and the line watch (docs/profiler.md, "Allocation sites
        at the peak"); never raises and never waits for the sample lock (its own thread may hold it)."""
        try:
            import _tracemalloc

            if not (self._running and _tracemalloc.is_tracing()):
                return
            traced = _tracemalloc.get_traced_memory()[0]
            if traced < (self._peak_plateau if boundary else self._peak_next):
                return
            if not self._lock.acquire(False):
                return
            self._lock.release()
            now, rss = self._clock() - self._t0, self._rss_now()
            self._peak_snapshot(now, rss, sys.getallocatedblocks(), wait=True)
        except Exception:  # never raise into the program's allocation or line
            pass

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        """``gc.callbacks`` entry: a collection runs in the thread whose allocations triggered it, while
        what it allocated is alive, so growth of containers is seen in any thread, however loaded."""
        if phase == "start" and _get_traced()[0] >= self._peak_next:
            self._check_live(False)

    def _peak_due(self, traced: int, prev: tuple[int, int]) -> bool:
        """Traced memory has doubled since the last "peak" snapshot, or grew by a quarter and stopped.

        *prev* is the traced memory and the snapshot count at the caller's
        previous look: growth is not judged across a snapshot, which holds up
        the program while it runs.
        """
        if traced < self._peak_plateau:
            return False
        if traced >= self._peak_next:
            return True
        prev_traced, prev_count = prev
        return (
            prev_count == self._snap_count
            and not self._peak_busy.locked()
            and traced - prev_traced < _PEAK_STILL
        )

    def _arm_peak(self, traced: int) -> None:
        if self.peak_sites:
            self._peak_next = max(int(traced * _PEAK_DOUBLE), traced + _PEAK_MIN_STEP)
            self._peak_plateau = max(int(traced * _PEAK_PLATEAU), traced + _PEAK_MIN_STEP)

    def _peak_snapshot(self, now: float, rss: int, blocks: int, *, wait: bool = False) -> None:
        """Replace the ``"peak"`` snapshot with one taken now, within the budgets; never raises."""
        program_cpu = time.process_time() - self._cpu0 - self._snap_cpu
        if self._snap_cpu > _PEAK_CPU_SHARE * max(program_cpu, 0.0) + _PEAK_CPU_GRACE:
            self._snap_skipped = "its CPU budget was spent"
            return  # a later sample tries again, as long as memory is still this high
        limit = self._limit
        if limit and rss + blocks * self._copy_per_trace > _LIMIT_SHARE * limit:
            self._snap_skipped = (
                f"copying {blocks:,} traces at {self._copy_per_trace} bytes each would pass "
                f"{_LIMIT_SHARE:.0%} of the memory limit of {format_size(limit)}"
            )
            return
        me = _thread.get_ident()
        if me in self._peak_threads:
            return  # a signal handler interrupted this thread's own snapshot (or its start)
        self._peak_threads.add(me)  # before acquiring: a nested call in this thread must never wait
        try:
            if wait:
                if not self._peak_busy.acquire(timeout=_SNAPSHOT_WAIT):
                    return
                import _tracemalloc

                if _tracemalloc.get_traced_memory()[0] < self._peak_plateau:
                    self._peak_busy.release()  # the snapshot we waited for already covers this
                    return
                self._peak_snapshot_locked(None)  # RSS may have moved while waiting: read it again
            elif self._peak_busy.acquire(False):
                self._peak_snapshot_locked(rss)
        finally:
            self._peak_threads.discard(me)

    def _peak_snapshot_locked(self, rss: int | None) -> None:
        """Take the "peak" snapshot, holding ``_peak_busy``, which this releases; *rss* was read just
        before the decision (``None``: read it now)."""
        try:
            cpu0 = time.thread_time()
            try:
                sites = self._take("peak", peak=True, rss0=rss)
            except Exception as exc:  # never break the host program; the report says why sites are older
                self._snap_error = f"{type(exc).__name__}: {exc}"
                self._peak_next = self._peak_plateau = sys.maxsize
            else:
                self._arm_peak(sites.traced)
                self._snap_skipped = None
                if sites.traces and sites.held > 0:
                    self._copy_per_trace = max(_COPY_PER_TRACE, sites.held // sites.traces)
            finally:
                self._snap_cpu += time.thread_time() - cpu0
                self._snap_count += 1
        finally:
            self._peak_busy.release()

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
        from hivemem._engine.engine import subscribe

        def on_pass(report: object) -> None:
            freed = getattr(report, "freed", None)
            self.mark(f"optimize: {format_size(freed, signed=True)}" if freed is not None else "optimize")

        self._listener = on_pass
        subscribe(on_pass)
        from hivemem._governor.active import governed

        gov = governed()
        if gov is not None and callable(getattr(gov, "subscribe", None)):

            def on_event(event: object) -> None:
                kind = getattr(event, "kind", None)
                if kind in ("level", "escalate", "throttle"):
                    self.mark(f"governor {kind}: {getattr(event, 'level', '')}")

            try:
                gov.subscribe(on_event)
                self._gov_sub = (gov, on_event)
            except Exception:
                self._gov_sub = None

    def _unsubscribe(self) -> None:
        from hivemem._engine.engine import unsubscribe

        if self._listener is not None:
            unsubscribe(self._listener)
            self._listener = None
        if self._gov_sub is not None:
            gov, fn = self._gov_sub
            try:
                gov.unsubscribe(fn)
            except Exception:
                pass
            self._gov_sub = None

    # ------------------------------------------------------------------ snapshots

    def snapshot(self, label: str | None = None) -> str:
        """Keep a tracemalloc snapshot under *label* (default ``"snapshot N"``); returns the label.

        Only its allocation sites are kept (bytes and blocks per traceback),
        not the traces. ``"start"``, ``"stop"`` and ``"peak"`` are the labels
        the profiler uses itself.
        """
        import tracemalloc

        if not tracemalloc.is_tracing():
            from hivemem._errors import Unavailable

            raise Unavailable("tracemalloc is not tracing: use Profiler(trace=True) or tracemalloc.start()")
        if label is None:
            with self._lock:
                label = f"snapshot {len(self._snapshots) + 1}"
        self._take(str(label))
        return str(label)

    def _take(self, label: str, *, peak: bool = False, rss0: int | None = None) -> _Sites:
        """Take snapshot *label*; a ``"peak"`` one replaces the kept one only if it holds more (the
        memory may have been freed between the decision and the copy), and the kept one is returned."""
        sites = _take_sites(self._clock() - self._t0, self._rss_now if peak else None, rss0)
        if peak:
            import tracemalloc

            self._snap_rss = max(self._snap_rss, sites.held)
            self._tm_max = max(self._tm_max, tracemalloc.get_tracemalloc_memory())
            if sites.left >= _PEAK_MIN_STEP and self._reader is None:
                # tracemalloc copies the traces with malloc (about 160 bytes each, measured): give
                # the pages back rather than leave the profiled program's RSS inflated.
                if trim_unavailable_reason() is None:
                    malloc_trim(0)
        with self._lock:
            old = self._snapshots.get(label) if peak else None
            if old is not None and old.total > sites.total:
                return old
            self._snapshots.pop(label, None)  # a replaced label moves to the end: labels stay in time order
            self._snapshots[label] = sites
            if peak:
                self._marks[:] = [m for m in self._marks if m[1] != "snapshot peak"]
            self._marks.append((sites.at, f"snapshot {label}"))
        return sites

    def _rss_now(self) -> int:
        if self._reader is None:
            from hivemem._measure.usage import rss

            return rss()
        return int(self._reader.rss())

    @property
    def snapshots(self) -> tuple[str, ...]:
        """Labels of the kept snapshots, oldest first."""
        return tuple(self._snapshots)

    def _snap(self, label: str | None) -> tuple[str, _Sites]:
        if label is None:
            if not self._snapshots:
                if not self._running:
                    from hivemem._errors import Unavailable

                    raise Unavailable("no tracemalloc snapshot was kept: profile with trace=True")
                label = self.snapshot()
            else:
                label = next(reversed(self._snapshots))
        try:
            return label, self._snapshots[label]
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
        """The *n* largest allocation sites in a snapshot (the latest, or a new one while running).

        ``snapshot="peak"`` reads the one the sampler kept nearest the traced peak.
        """
        from hivemem import _validate

        self._check_by(by)
        n = _validate.count("n", n, minimum=0)
        label, snap = self._snap(snapshot)
        grouped = snap.grouped(by)
        best = sorted(grouped.items(), key=lambda kv: (-kv[1][0], -kv[1][1]))[:n]
        rows = [(_where(key, by), size, count) for key, (size, count) in best]
        return TopSites(rows, by=by, label=label, total=snap.total)

    def diff(self, a: str, b: str | None = None, *, by: str = "lineno", n: int = 10) -> SiteDiff:
        """What grew from snapshot *a* to snapshot *b* (default: the latest), biggest growth first."""
        from hivemem import _validate

        self._check_by(by)
        n = _validate.count("n", n, minimum=0)
        la, sa = self._snap(a)
        lb, sb = self._snap(b)
        old, new = sa.grouped(by), sb.grouped(by)
        grown = []
        for key, (size, count) in new.items():
            before = old.get(key, (0, 0))
            if size > before[0]:
                grown.append((key, size - before[0], count - before[1], size))
        grown.sort(key=lambda r: (-r[1], -r[2]))
        rows = [(_where(key, by), d, c, size) for key, d, c, size in grown[:n]]
        return SiteDiff(rows, a=la, b=lb, by=by, total_diff=sb.total - sa.total)

    def _sites_label(self) -> str | None:
        """The snapshot holding the most traced bytes: the one nearest the traced peak."""
        with self._lock:
            if not self._snapshots:
                return None
            return max(self._snapshots.items(), key=lambda kv: kv[1].total)[0]

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
        if tm is not None:
            tm = max(tm, self._tm_max)
        end = self._t_end if self._t_end is not None and not self._running else self._clock()
        return Overhead(
            tracemalloc_memory=tm,
            sampler_cpu=self._sampler_cpu,
            wall=end - self._t0,
            samples=self._tick,
            storage=storage,
            snapshot_cpu=self._snap_cpu,
            snapshots=self._snap_count,
            snapshot_rss=self._snap_rss,
        )

    def report(self, *, top: int = 10, advice: bool = True) -> ProfileReport:
        """Everything measured, in one :class:`ProfileReport` (with evidence-backed advice)."""
        tops = growth = None
        label = self._sites_label()
        if label is not None:
            tops = self.top(top, snapshot=label)  # the sites at the traced peak, not after the frees
            if len(self._snapshots) >= 2:
                growth = self.diff(next(iter(self._snapshots)), n=top)
        leak = self.leak_watch("traced") if self.trace and self._snapshots else self.leak_watch("rss")
        tips: list[Advice] = []
        if advice:
            from hivemem._profile.advice import advise

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


# --------------------------------------------------------------------------- line watch

_TOOL_IDS = (4, 3)  # sys.monitoring tools left free by convention (0-2 and 5 are named ones)
# Line events a function's code reports before its lines go quiet (its returns still check): a hot
# loop is watched for its first iterations, then costs nothing.
_HOT_LINES = 1000


class LineWatch:
    """Check traced memory at each line event of one namespace's code, and nowhere else.

    The code whose frames run with *namespace* as their globals (a notebook's
    cells and the functions they define) calls ``Profiler._check_live`` at
    every new line: a statement of top-level code that just ended keeps a
    ``"peak"`` snapshot when traced memory grew by a quarter, any line when it
    doubled, so a peak that lives a few milliseconds is seen while it is alive
    however loaded the machine is. A function's return checks too, and after
    ``_HOT_LINES`` line events a code object's lines go quiet, so a hot loop
    is watched only for its first iterations. On Python 3.12+ it uses ``sys.monitoring``
    (LINE events set locally on that code, any thread; other code pays one
    callback the first time it starts); before 3.12 ``sys.settrace`` in the
    calling thread, whose call event costs every function call of that
    thread (docs/profiler.md, "Allocation sites at the peak", has the
    figures). It stands aside when another tool holds the hook: ``active``
    says whether it watches.
    """

    def __init__(self, profiler: Profiler, namespace: dict[str, object]) -> None:
        self._prof = profiler
        self._ns = namespace
        self._tool: int | None = None
        self._codes: dict[object, None] = {}
        self._tracer: object = None
        self.active = False

    def start(self) -> LineWatch:
        if self.active:
            return self
        if sys.version_info >= (3, 12):
            self._start_monitoring()
        else:
            self._start_settrace()
        return self

    def stop(self) -> None:
        if not self.active:
            return
        self.active = False
        if self._tool is not None:
            mon = _sys_monitoring()
            tool, self._tool = self._tool, None
            mon.set_events(tool, 0)
            for code in self._codes:
                mon.set_local_events(tool, code, 0)
            self._codes.clear()
            for event in (mon.events.PY_START, mon.events.LINE, mon.events.PY_RETURN):
                mon.register_callback(tool, event, None)
            mon.free_tool_id(tool)
        elif sys.gettrace() is self._tracer:
            sys.settrace(None)
        self._tracer = None

    def __enter__(self) -> LineWatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_monitoring(self) -> None:
        mon = _sys_monitoring()
        events = mon.events
        for tool in _TOOL_IDS:
            try:
                mon.use_tool_id(tool, "hivemem")
            except ValueError:  # another tool holds it
                continue
            break
        else:
            return
        ns, codes, prof, check = self._ns, self._codes, self._prof, self._prof._check_live
        getframe, disable = sys._getframe, mon.DISABLE
        local = events.LINE | events.PY_RETURN
        hits: dict[object, int] = {}

        def on_start(code: CodeType, offset: int) -> object:
            try:
                if getframe(1).f_globals is ns:
                    if code not in codes:
                        codes[code] = None
                        mon.set_local_events(tool, code, local)
                    return None
            except Exception:  # never raise into the program
                pass
            return disable  # other code: this callback never runs there again

        def on_line(code: CodeType, lineno: int) -> object:
            if code.co_name == "<module>":
                if _get_traced()[0] >= prof._peak_plateau:
                    check(True)
            elif _get_traced()[0] >= prof._peak_next:
                check(False)
            n = hits[code] = hits.get(code, 0) + 1
            # a line not yet reported still reports once: each statement after a hot loop is checked
            return disable if n > _HOT_LINES else None

        def on_return(code: CodeType, offset: int, value: object) -> None:
            if code.co_name != "<module>" and _get_traced()[0] >= prof._peak_plateau:
                check(True)  # a function's end: its locals and its result are still alive

        mon.restart_events()  # lines a previous watch quietened are watched again
        mon.register_callback(tool, events.PY_START, on_start)
        mon.register_callback(tool, events.LINE, on_line)
        mon.register_callback(tool, events.PY_RETURN, on_return)
        mon.set_events(tool, events.PY_START)
        self._tool, self.active = tool, True

    def _start_settrace(self) -> None:
        if sys.gettrace() is not None:  # a debugger or coverage: theirs, not ours
            return
        ns, prof, check = self._ns, self._prof, self._prof._check_live
        hits: dict[object, int] = {}

        def top(frame: FrameType, event: str, arg: object) -> TraceFunction | None:
            if event == "line" and _get_traced()[0] >= prof._peak_plateau:
                check(True)
            return top

        def inner(frame: FrameType, event: str, arg: object) -> TraceFunction | None:
            if event == "line":
                if _get_traced()[0] >= prof._peak_next:
                    check(False)
                code = frame.f_code
                n = hits[code] = hits.get(code, 0) + 1
                if n > _HOT_LINES:
                    frame.f_trace_lines = False  # this call's lines go quiet; its return still checks
            elif event == "return" and _get_traced()[0] >= prof._peak_plateau:
                check(True)  # a function's end: its locals and its result are still alive
            return inner

        def on_call(frame: FrameType, event: str, arg: object) -> TraceFunction | None:
            if frame.f_globals is not ns:
                return None
            return top if frame.f_code.co_name == "<module>" else inner

        self._tracer = on_call
        sys.settrace(on_call)
        self.active = True
