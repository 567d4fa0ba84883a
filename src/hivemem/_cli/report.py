"""Render saved JSON reports (``hivemem run``, ``OptimizationReport.to_json()``, ``hivemem bench``).

Three kinds are recognised by their fields: a run report (``"kind":
"hivemem-run"``), an optimize report (``before``/``after``/``steps``) and a
benchmark results file (``"kind": "hivemem-bench"``). Output is a terminal
table or a self-contained HTML page; sizes are formatted only here.
"""

from __future__ import annotations

from html import escape

from hivemem._engine.report import STEP_HEADER, climb_text, headline_text, step_row
from hivemem._errors import InvalidArgument
from hivemem._profile.render import html_page, html_table
from hivemem._sizes import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["UnknownReport", "kind_of", "render_html", "render_text", "write_report"]


class UnknownReport(InvalidArgument):
    """The JSON is none of the report kinds hivemem writes (a :class:`hivemem.InvalidArgument`)."""


def kind_of(data: object) -> str:
    if isinstance(data, dict):
        if data.get("kind") in ("hivemem-run", "hivemem-bench"):
            return str(data["kind"])[len("hivemem-") :]
        if {"before", "after", "steps"} <= set(data):
            return "optimize"
    raise UnknownReport(
        "not a hivemem report: expected the JSON of `hivemem run --report`, "
        "OptimizationReport.to_json() or `hivemem bench`"
    )


def _rss(d: Any) -> int | None:
    if isinstance(d, dict):
        v = d.get("rss")
        return v if isinstance(v, int) else None
    return None


def _optimize_rows(data: dict[str, Any]) -> list[tuple[str, ...]]:
    return [step_row(s) for s in data.get("steps") or [] if isinstance(s, dict)]


def _optimize_lines(data: dict[str, Any]) -> list[str]:
    """The table, the levels climbed and the explanation of a saved optimize report."""
    lines = _table(STEP_HEADER, _optimize_rows(data), left=2)
    climb = climb_text([x for x in data.get("levels") or [] if isinstance(x, dict)])
    if climb:
        lines.append(f"  levels: {climb}")
    if data.get("explanation"):
        lines.append(f"  why: {data['explanation']}")
    return lines


def _optimize_html(data: dict[str, Any]) -> str:
    html = html_table(STEP_HEADER, _optimize_rows(data))
    climb = climb_text([x for x in data.get("levels") or [] if isinstance(x, dict)])
    if climb:
        html += f"<p><b>levels:</b> {escape(climb)}</p>"
    if data.get("explanation"):
        html += f"<p><b>why:</b> {escape(str(data['explanation']))}</p>"
    return html


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], *, left: int = 1) -> list[str]:
    """Cells padded to the widest: the first *left* columns and the last to the left, figures to the right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for r in [header, *rows]:
        out.append(
            "  "
            + "  ".join(
                c.ljust(w) if i < left or i == len(r) - 1 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
        )
    return out


def _bench_rows(data: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for sc in data.get("scenarios") or []:
        floor = sc.get("floor")
        for mode, r in (sc.get("baselines") or {}).items():
            reclaim = r.get("reclaim")
            rows.append(
                (
                    str(sc.get("scenario")),
                    mode,
                    format_size(r.get("before")),
                    format_size(r.get("after")),
                    format_size(floor),
                    f"{reclaim:.2f}" if isinstance(reclaim, (int, float)) else "-",
                    f"{r.get('seconds', 0):.2f}",
                    "ok" if r.get("checksum_ok") else "CHANGED",
                )
            )
    return rows


_BENCH_HEADER = ("scenario", "baseline", "before", "after", "floor", "reclaim", "seconds", "answers")


def render_text(data: Any) -> str:
    """A terminal rendering of any report kind."""
    kind = kind_of(data)
    assert isinstance(data, dict)
    if kind == "run":
        from hivemem._cli.runner import render_text as run_text

        text = run_text(data)
        events = _event_rows(data)
        if events:
            text += "\n  governor events:\n" + "\n".join(
                _table(_EVENT_HEADER, [r[:1] + r[2:] for r in events])
            )
        opt = data.get("optimize")
        if isinstance(opt, dict):
            text += "\n" + "\n".join(_optimize_lines(opt))
        return text
    if kind == "optimize":
        return "\n".join([headline_text(data), *_optimize_lines(data)])
    machine = data.get("machine") or {}
    head = f"hivemem bench: {machine.get('date')}, Python {machine.get('python')}, {machine.get('platform')}"
    return "\n".join([head, *_table(_BENCH_HEADER, _bench_rows(data))])


_EVENT_HEADER = ("time", "kind", "level", "RSS before", "RSS after", "what happened")


def _clock(wall: object) -> str:
    import time

    if not isinstance(wall, (int, float)):
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall * 1000) % 1000:03d}"


def _event_rows(data: dict[str, Any]) -> list[tuple[str, ...]]:
    """Governor events as rows: wall-clock time, seconds since the run started, kind, level, RSS, message."""
    gov = data.get("governor")
    if not isinstance(gov, dict):
        return []
    started = data.get("started")
    rows: list[tuple[str, ...]] = []
    for event in gov.get("events") or []:
        if not isinstance(event, dict):
            rows.append(("-", "-", "?", "", "", "", str(event)))
            continue
        wall = event.get("wall_time")
        since = (
            f"+{wall - started:.3f} s"
            if isinstance(wall, (int, float)) and isinstance(started, (int, float))
            else "-"
        )
        before, after = event.get("rss_before"), event.get("rss_after")
        rows.append(
            (
                _clock(wall),
                since,
                str(event.get("kind", "")),
                str(event.get("level", "")),
                format_size(before) if before is not None else "",
                format_size(after) if after is not None else "",
                str(event.get("message") or ""),
            )
        )
    return rows


def _run_summary(data: dict[str, Any]) -> tuple[str, bool | None]:
    status = data.get("exit_status")
    start, end = data.get("start") or {}, data.get("end") or {}
    text = (
        f"{data.get('script')}: exit status {status} after {float(data.get('seconds') or 0):.2f} s; "
        f"RSS {format_size(_rss(start))} at start, peak {format_size(data.get('peak'))}, "
        f"{format_size(_rss(end))} at exit"
    )
    ok = status == 0
    gov = data.get("governor")
    if isinstance(gov, dict):
        text += f"; governor: {len(gov.get('events') or [])} events"
    opt = data.get("optimize")
    if isinstance(opt, dict):
        reached = bool(opt.get("reached"))
        text += (
            f"; final optimize {'reached' if reached else 'did NOT reach'} {format_size(data.get('target'))}"
        )
        ok = ok and reached
    profile = data.get("profile")
    if isinstance(profile, dict):
        rows = (profile.get("top") or {}).get("rows") or []
        if rows:
            text += f"; top site at the peak {rows[0].get('where')} ({format_size(rows[0].get('size'))})"
    return text, ok


def _run_facts(data: dict[str, Any]) -> list[tuple[str, str]]:
    start, end = data.get("start") or {}, data.get("end") or {}
    rows = [
        ("script", f"{'-m ' if data.get('module') else ''}{data.get('script')}"),
        ("arguments", " ".join(map(str, data.get("argv") or [])) or "(none)"),
        ("started", _clock(data.get("started"))),
        (
            "wall / CPU time",
            f"{float(data.get('seconds') or 0):.2f} s / {float(data.get('cpu_seconds') or 0):.2f} s",
        ),
        ("exit status", str(data.get("exit_status"))),
        ("RSS at start", format_size(_rss(start))),
        ("peak RSS (exact)", format_size(data.get("peak"))),
        ("RSS at exit", format_size(_rss(end))),
    ]
    if data.get("error"):
        rows.append(("the script raised", str(data["error"])))
    limit = data.get("limit")
    if isinstance(limit, dict) and limit.get("bytes"):
        rows.append(("memory limit", f"{format_size(limit['bytes'])} from {limit.get('source')}"))
    rows.append(("python, pid", f"{data.get('python')}, {data.get('pid')}"))
    return rows


def _profile_html(profile: dict[str, Any], data: dict[str, Any]) -> str:
    """The profile of a run, from its JSON: timeline (with governor events), peak, sites, growth, cost."""
    from hivemem._profile.html import svg_timeline
    from hivemem._profile.profiler import Timeline

    if profile.get("error"):
        return f"<h2>Profile</h2><p class='leak'>the profile failed: {escape(str(profile['error']))}</p>"
    parts = ["<h2>Profile</h2>"]
    tl = profile.get("timeline") or {}
    peak = profile.get("peak") or {}
    try:
        timeline = Timeline(
            times=tl.get("times") or [],
            rss=tl.get("rss") or [],
            uss=tl.get("uss") or [],
            traced=tl.get("traced") or [],
            marks=[(m["time"], m["label"]) for m in tl.get("marks") or []],
            interval=tl.get("interval"),
            stride=int(tl.get("stride") or 1),
        )
        events = []
        started = profile.get("started")
        for event in ((data.get("governor") or {}).get("events") or []) if isinstance(started, float) else []:
            if isinstance(event, dict) and isinstance(event.get("wall_time"), (int, float)):
                if event.get("kind") not in ("start", "stop"):
                    events.append(event["wall_time"] - started)
        rss_peak = peak.get("rss") if peak.get("rss") is not None else peak.get("sampled_rss")
        parts.append(svg_timeline(timeline, peak=rss_peak, events=events))
    except (KeyError, TypeError, ValueError) as exc:
        parts.append(f"<p class='muted'>no timeline: {escape(str(exc))}</p>")
    peak_rows = [("peak RSS (exact)", format_size(peak.get("rss")), str(peak.get("rss_source") or ""))]
    if peak.get("traced") is not None:
        peak_rows.append(
            ("peak traced (exact)", format_size(peak["traced"]), "tracemalloc's peak since start")
        )
    parts.append(html_table(("peak", "bytes", "source"), peak_rows, caption="peak"))
    top = profile.get("top") or {}
    if top.get("rows"):
        note = f"snapshot {top.get('label')!r}"
        if peak.get("sites_at") is not None:
            note += f" at {float(peak['sites_at']):.2f} s"
        note += f", {format_size(top.get('total'))} traced"
        if peak.get("traced"):
            note += f" of an exact traced peak of {format_size(peak['traced'])}"
        if peak.get("sites_skipped"):
            note += f"; a later snapshot was skipped: {peak['sites_skipped']}"
        total = top.get("total") or 0
        rows = [
            (
                str(r.get("where")),
                format_size(r.get("size")),
                str(r.get("count")),
                f"{100 * (r.get('size') or 0) / total:.1f}%" if total else "-",
            )
            for r in top["rows"]
        ]
        parts.append(
            html_table(("where", "size", "blocks", "share"), rows, caption=f"top allocation sites ({note})")
        )
    growth = profile.get("growth") or {}
    if growth.get("rows"):
        rows = [
            (
                str(r.get("where")),
                format_size(r.get("size_diff"), signed=True),
                f"{int(r.get('count_diff') or 0):+d}",
                format_size(r.get("size")),
            )
            for r in growth["rows"]
        ]
        caption = f"what grew from {growth.get('a')!r} to {growth.get('b')!r}"
        parts.append(html_table(("where", "grew", "blocks", "now"), rows, caption=caption))
    leak = profile.get("leak") or {}
    if leak.get("evidence"):
        klass = "leak" if leak.get("suspected") else "ok"
        parts.append(f"<p class='{klass}'>leak watch: {escape(str(leak['evidence']))}</p>")
    over = profile.get("overhead") or {}
    if over:
        cost = (
            f"profiler cost: sampler {100 * float(over.get('core_fraction') or 0):.2f}% of one core; "
            f"tracemalloc {format_size(over.get('tracemalloc_memory'))}; "
            f"{over.get('snapshots', 0)} peak snapshots in {float(over.get('snapshot_cpu') or 0):.2f} s CPU, "
            f"holding up to {format_size(over.get('snapshot_rss') or 0)} RSS while taken"
        )
        parts.append(f"<p class='muted'>{escape(cost)}</p>")
    return "".join(parts)


def render_html(data: Any) -> str:
    """A self-contained HTML page for any report kind, opening with a one-line summary."""
    kind = kind_of(data)
    assert isinstance(data, dict)
    parts: list[str] = []
    if kind == "run":
        title = f"hivemem run {data.get('script')}"
        summary, verdict = _run_summary(data)
        parts.append(html_table(("figure", "value"), _run_facts(data), caption="run"))
        if isinstance(data.get("profile"), dict):
            parts.append(_profile_html(data["profile"], data))
        events = _event_rows(data)
        if events:
            gov = data.get("governor") or {}
            parts.append("<h2>Governor events</h2>")
            parts.append(f"<p class='muted'>{escape(str(gov.get('repr', '')))}</p>")
            header = (_EVENT_HEADER[0], "since start", *_EVENT_HEADER[1:])
            parts.append(html_table(header, events, caption=f"{len(events)} events, wall-clock times"))
        opt = data.get("optimize")
        if isinstance(opt, dict):
            parts.append(f"<h2>{escape(headline_text(opt))}</h2>")
            parts.append(_optimize_html(opt))
    elif kind == "optimize":
        title = "hivemem optimize"
        summary, verdict = (
            headline_text(data),
            (bool(data.get("reached")) if data.get("target") else None),
        )
        parts.append(_optimize_html(data))
    else:
        machine = data.get("machine") or {}
        title = "hivemem benchmarks"
        rows = _bench_rows(data)
        changed = sum(1 for r in rows if r[-1] != "ok")
        summary = f"{len(data.get('scenarios') or [])} scenarios, {len(rows)} baselines; " + (
            "every answer identical" if not changed else f"{changed} baselines CHANGED an answer"
        )
        verdict = not changed
        parts.append(f"<p class='muted'>{escape(', '.join(f'{k}: {v}' for k, v in machine.items()))}</p>")
        parts.append(html_table(_BENCH_HEADER, rows))
    return html_page(title, "".join(parts), summary=summary, verdict=verdict)


def write_report(data: object, path: str) -> None:
    """Write *data* as JSON (``.json``) or HTML (``.html``/``.htm``) to *path*."""
    if path.endswith((".html", ".htm")):
        text = render_html(data)
    else:
        import json

        text = json.dumps(data, indent=2, default=str) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
