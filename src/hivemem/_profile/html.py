"""A self-contained HTML report: inline SVG timeline, peak, leak and top-site tables. No network, no CDN.

The page has no script, no external stylesheet, font or image: it opens the
same offline, in a mail attachment or in a CI artifact viewer. Every text
that comes from a measurement is escaped; reports hold only types, sizes,
counts and code locations, never the contents of user objects.
"""

from __future__ import annotations

from html import escape

from hivemem._profile.render import html_table
from hivemem._sizes import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from hivemem._profile.leaks import LeakReport
    from hivemem._profile.profiler import ProfileReport, Timeline

__all__ = ["render", "report_body", "summary_line", "svg_timeline"]

_W, _H = 820, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 72, 16, 16, 40
_COLORS = {"rss": "#1565c0", "uss": "#2e7d32", "traced": "#ef6c00", "peak": "#c62828", "mark": "#757575"}
_EVENT = "#6a1b9a"
_MAX_POINTS = 1200


def _thin(times: Sequence[float], values: Sequence[int]) -> list[tuple[float, int]]:
    """At most ~_MAX_POINTS points; each bucket keeps its min and max so peaks stay visible."""
    pts = list(zip(times, values, strict=False))
    if len(pts) <= _MAX_POINTS:
        return pts
    size = len(pts) / (_MAX_POINTS / 2)
    out: list[tuple[float, int]] = []
    start = 0.0
    while int(start) < len(pts):
        bucket = pts[int(start) : int(start + size)] or pts[int(start) : int(start) + 1]
        lo = min(bucket, key=lambda p: p[1])
        hi = max(bucket, key=lambda p: p[1])
        out.extend(sorted({lo, hi}))
        start += size
    return out


def svg_timeline(
    timeline: Timeline,
    *,
    peak: int | None = None,
    events: Sequence[float] = (),
    title: str = "memory over time",
) -> str:
    """An inline ``<svg>`` of RSS, USS and traced memory over time, the peak line, marks and events.

    Marks come from the timeline (snapshots, governor and ``optimize()``
    actions); *events* are extra times (seconds since start) drawn as
    purple lines.
    """
    times = timeline.times
    series = {name: getattr(timeline, name) for name in ("rss", "uss", "traced")}
    series = {k: v for k, v in series.items() if v and any(x >= 0 for x in v)}
    if not times or not series:
        return "<p class='muted'>no samples</p>"
    t0, t1 = times[0], times[-1]
    span = (t1 - t0) or 1.0
    top = max(max(v) for v in series.values())
    if peak is not None:
        top = max(top, peak)
    top = top * 1.05 or 1
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(t: float) -> float:
        return _LEFT + (t - t0) / span * plot_w

    def y(v: float) -> float:
        return _TOP + plot_h - v / top * plot_h

    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{_W}' height='{_H}' viewBox='0 0 {_W} {_H}' "
        f"role='img' aria-label='{escape(title)}'>",
        f"<title>{escape(title)}</title>",
        f"<rect x='{_LEFT}' y='{_TOP}' width='{plot_w}' height='{plot_h}' fill='#fafafa' stroke='#bdbdbd'/>",
    ]
    for i in range(5):
        v = top * i / 4
        yy = y(v)
        parts.append(
            f"<line x1='{_LEFT}' y1='{yy:.1f}' x2='{_LEFT + plot_w}' y2='{yy:.1f}' stroke='#eeeeee'/>"
            f"<text x='{_LEFT - 6}' y='{yy + 4:.1f}' text-anchor='end'>{escape(format_size(v))}</text>"
        )
        tt = t0 + span * i / 4
        parts.append(
            f"<text x='{x(tt):.1f}' y='{_TOP + plot_h + 16}' text-anchor='middle'>{tt - t0:.1f} s</text>"
        )
    for name, values in series.items():
        pts = [(t, v) for t, v in _thin(times, values) if v >= 0]
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
        parts.append(
            f"<polyline class='series-{name}' fill='none' stroke='{_COLORS[name]}' stroke-width='1.5' "
            f"points='{coords}'><title>{escape(name)}</title></polyline>"
        )
    if peak is not None:
        yy = y(peak)
        parts.append(
            f"<line class='peak' x1='{_LEFT}' y1='{yy:.1f}' x2='{_LEFT + plot_w}' y2='{yy:.1f}' "
            f"stroke='{_COLORS['peak']}' stroke-dasharray='6 4'><title>peak RSS "
            f"{escape(format_size(peak))}</title></line>"
        )
    for t, label in timeline.marks:
        xx = x(min(max(t, t0), t1))
        parts.append(
            f"<line class='mark' x1='{xx:.1f}' y1='{_TOP}' x2='{xx:.1f}' y2='{_TOP + plot_h}' "
            f"stroke='{_COLORS['mark']}' stroke-dasharray='2 3'>"
            f"<title>{escape(label)} @ {t:.2f} s</title></line>"
        )
    for t in events:
        xx = x(min(max(float(t), t0), t1))
        parts.append(
            f"<line class='event' x1='{xx:.1f}' y1='{_TOP}' x2='{xx:.1f}' y2='{_TOP + plot_h}' "
            f"stroke='{_EVENT}' stroke-width='2'><title>event @ {float(t):.2f} s</title></line>"
        )
    legend = [(n, _COLORS[n]) for n in series]
    if peak is not None:
        legend.append(("peak", _COLORS["peak"]))
    if timeline.marks:
        legend.append(("marks", _COLORS["mark"]))
    if events:
        legend.append(("events", _EVENT))
    lx = _LEFT
    for name, color in legend:
        parts.append(
            f"<rect x='{lx}' y='{_H - 14}' width='12' height='4' fill='{color}'/>"
            f"<text x='{lx + 16}' y='{_H - 8}'>{escape(name)}</text>"
        )
        lx += 24 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _leak_table(leaks: Sequence[LeakReport]) -> str:
    rows = []
    for r in leaks:
        low, high = r.bytes_per_call_ci
        rows.append(
            (
                r.function or "?",
                "LEAKING" if r.leaking else "no",
                format_size(r.bytes_per_call),
                f"{format_size(low)} .. {format_size(high)}",
                f"{r.blocks_per_call:.2f}",
                ", ".join(f"{v:+d}" for v in r.per_run),
                r.verdict,
            )
        )
    return html_table(
        ("function", "leaking", "bytes/call", "95% CI", "blocks/call", "per repetition (bytes)", "verdict"),
        rows,
        caption="find_leaks",
    )


def report_body(
    report: ProfileReport, *, events: Sequence[float] = (), leaks: Sequence[LeakReport] = ()
) -> str:
    """The report's content as an HTML fragment (what notebooks show)."""
    peak = report.peak
    peak_line = peak.rss if peak.rss is not None else peak.sampled_rss
    tl = report.timeline
    parts = ["<div class='hivemem-profile'>"]
    summary = [
        ("samples", f"{len(tl)} over {tl.duration:.2f} s"),
        ("peak RSS", f"{format_size(peak.rss)} ({peak.rss_source})"),
    ]
    if peak.traced is not None:
        summary.append(("peak traced", format_size(peak.traced)))
    if peak.sampled_rss is not None:
        summary.append(
            ("largest sampled RSS", f"{format_size(peak.sampled_rss)} at {peak.sampled_at or 0:.2f} s")
        )
    ov = report.overhead
    summary.append(
        (
            "profiler overhead",
            f"{100 * ov.core_fraction:.3f}% of one core; tracemalloc "
            + (format_size(ov.tracemalloc_memory) if ov.tracemalloc_memory is not None else "off"),
        )
    )
    parts.append(html_table(("figure", "value"), summary, caption="summary"))
    parts.append("<h2>Timeline</h2>")
    parts.append(svg_timeline(tl, peak=peak_line, events=events))
    klass = "leak" if report.leak.suspected else "ok"
    parts.append(f"<h2>Leak watch</h2><p class='{klass}'>{escape(report.leak.evidence)}</p>")
    if leaks:
        parts.append(_leak_table(leaks))
    if report.advice:
        parts.append("<h2>Advice</h2><ul>")
        for a in report.advice:
            parts.append(
                f"<li>{escape(a.text)} "
                f"<span class='muted'>[{escape(a.figure)}: {escape(a.source)}]</span></li>"
            )
        parts.append("</ul>")
    if report.top is not None:
        parts.append("<h2>Top allocation sites</h2>")
        if report.peak.sites is not None:
            parts.append(f"<p class='muted'>{escape(report.peak.sites_note)}</p>")
        parts.append(report.top._repr_html_())
    if report.growth is not None:
        parts.append("<h2>What grew</h2>")
        parts.append(report.growth._repr_html_())
    parts.append("</div>")
    return "".join(parts)


def summary_line(report: ProfileReport) -> tuple[str, bool | None]:
    """The one line a profile page opens with: peak, the top site at the peak, the leak verdict."""
    peak = report.peak
    parts = [f"peak RSS {format_size(peak.rss if peak.rss is not None else peak.sampled_rss)}"]
    if peak.traced is not None:
        parts.append(f"traced peak {format_size(peak.traced)}")
    if report.top is not None and report.top.rows:
        where, size, _ = report.top.rows[0]
        parts.append(f"top site {where} ({format_size(size)} in snapshot {report.top.label!r})")
    leak = report.leak
    parts.append("leak suspected" if leak.suspected else "no leak suspected")
    return "; ".join(parts) + f" over {report.timeline.duration:.2f} s", (False if leak.suspected else None)


def render(report: ProfileReport, *, events: Sequence[float] = (), leaks: Sequence[LeakReport] = ()) -> str:
    """A complete, self-contained HTML page for *report*."""
    import time

    from hivemem._profile.render import html_page

    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(report.started)) if report.started else ""
    summary, verdict = summary_line(report)
    if leaks and any(r.leaking for r in leaks):
        summary += f"; find_leaks: {sum(1 for r in leaks if r.leaking)} of {len(leaks)} LEAKING"
        verdict = False
    return html_page(
        "hivemem profile",
        report_body(report, events=events, leaks=leaks),
        summary=summary,
        verdict=verdict,
        subtitle=f"started {started}; every figure measured",
    )
