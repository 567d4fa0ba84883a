"""Render saved JSON reports (``hivemem run``, ``OptimizationReport.to_json()``, ``hivemem bench``).

Three kinds are recognised by their fields: a run report (``"kind":
"hivemem-run"``), an optimize report (``before``/``after``/``steps``) and a
benchmark results file (``"kind": "hivemem-bench"``). Output is a terminal
table or a self-contained HTML page; sizes are formatted only here.
"""

from __future__ import annotations

from html import escape

from hivemem._sizes import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["UnknownReport", "kind_of", "render_html", "render_text", "write_report"]


class UnknownReport(Exception):
    """The JSON is none of the report kinds hivemem writes."""


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
    rows: list[tuple[str, ...]] = []
    for s in data.get("steps") or []:
        freed = format_size(s.get("freed"), signed=True) if s.get("freed") is not None else "-"
        secs = f"{s.get('seconds', 0):.3f}" if s.get("skipped") is None else "-"
        if s.get("error"):
            note = f"error: {s['error']}"
        elif s.get("skipped") is not None:
            note = f"skipped: {s['skipped']}"
        else:
            note = str(s.get("summary") or "")
        rows.append((str(s.get("name")), freed, secs, note))
    return rows


def _optimize_headline(data: dict[str, Any]) -> str:
    target = data.get("target")
    goal = "no target"
    if isinstance(target, int):
        goal = f"target {format_size(target)}: {'reached' if data.get('reached') else 'NOT reached'}"
    return (
        f"hivemem optimize: RSS {format_size(_rss(data.get('before')))} -> "
        f"{format_size(_rss(data.get('after')))} ({goal}) in {float(data.get('seconds') or 0):.2f} s"
    )


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for r in [header, *rows]:
        out.append(
            "  "
            + "  ".join(
                c.ljust(w) if i in (0, len(r) - 1) else c.rjust(w)
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
        from hivemem._runner import render_text as run_text

        text = run_text(data)
        opt = data.get("optimize")
        if isinstance(opt, dict):
            text += "\n" + "\n".join(
                _table(("step", "freed (RSS)", "seconds", "what happened"), _optimize_rows(opt))
            )
        return text
    if kind == "optimize":
        lines = [_optimize_headline(data)]
        lines += _table(("step", "freed (RSS)", "seconds", "what happened"), _optimize_rows(data))
        if data.get("explanation"):
            lines.append(f"  why: {data['explanation']}")
        return "\n".join(lines)
    machine = data.get("machine") or {}
    head = f"hivemem bench: {machine.get('date')}, Python {machine.get('python')}, {machine.get('platform')}"
    return "\n".join([head, *_table(_BENCH_HEADER, _bench_rows(data))])


def _html_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(data: Any) -> str:
    """A self-contained HTML page for any report kind."""
    kind = kind_of(data)
    assert isinstance(data, dict)
    parts: list[str] = []
    if kind == "run":
        from hivemem._runner import render_text as run_text

        parts.append(f"<pre>{escape(run_text(data))}</pre>")
        opt = data.get("optimize")
        if isinstance(opt, dict):
            parts.append(f"<h2>{escape(_optimize_headline(opt))}</h2>")
            parts.append(
                _html_table(("step", "freed (RSS)", "seconds", "what happened"), _optimize_rows(opt))
            )
        gov = data.get("governor")
        if isinstance(gov, dict) and gov.get("events"):
            parts.append(
                "<h2>governor events</h2><pre>" + escape("\n".join(map(str, gov["events"]))) + "</pre>"
            )
        if isinstance(data.get("profile"), dict):
            import json

            parts.append(
                "<h2>profile</h2><pre>"
                + escape(json.dumps(data["profile"], indent=1, default=str))
                + "</pre>"
            )
        title = f"hivemem run {data.get('script')}"
    elif kind == "optimize":
        title = _optimize_headline(data)
        parts.append(_html_table(("step", "freed (RSS)", "seconds", "what happened"), _optimize_rows(data)))
        if data.get("explanation"):
            parts.append(f"<p><b>why:</b> {escape(str(data['explanation']))}</p>")
    else:
        machine = data.get("machine") or {}
        title = "hivemem benchmarks"
        parts.append(f"<p>{escape(str(machine))}</p>")
        parts.append(_html_table(_BENCH_HEADER, _bench_rows(data)))
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td:first-child,td:last-child{text-align:left}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{escape(title)}</h1>{''.join(parts)}</body></html>\n"
    )


def write_report(data: object, path: str) -> None:
    """Write *data* as JSON (``.json``) or HTML (``.html``/``.htm``) to *path*."""
    if path.endswith((".html", ".htm")):
        text = render_html(data)
    else:
        import json

        text = json.dumps(data, indent=2, default=str) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
