"""Shared rendering for the profiler, leak and inspection results: text tables, HTML tables, JSON.

Results hold only types, sizes, counts and code locations, never the
contents of user objects, so whatever is rendered here is safe to paste.
``html`` is imported inside the functions that escape.
"""

from __future__ import annotations

from hivemem._frozen import Frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Any

__all__ = ["PAGE_CSS", "Result", "html_page", "html_summary", "html_table", "text_table"]

#: The style of every HTML page hivemem writes (profile, run, optimize, benchmark and pytest reports).
PAGE_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#212121;
max-width:1000px}
h1{font-size:1.4em;margin-bottom:.3em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ddd}
.hivemem-summary{font-size:1.05em;padding:8px 12px;margin:0 0 1em;border-left:4px solid #1565c0;
background:#e3f2fd}
.hivemem-summary.bad{border-left-color:#b00020;background:#fdecea}
.hivemem-summary.good{border-left-color:#2e7d32;background:#e8f5e9}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;font-size:.9em}
th{background:#f5f5f5;text-align:left}caption{text-align:left;font-weight:600;padding:4px 0}
.leak{color:#b00020;font-weight:600}.ok{color:#2e7d32}.muted{color:#757575;font-size:.85em}
tr.over{background:#fdd}
svg text{font-size:11px;fill:#424242}
"""


class Result(Frozen):
    """Base for frozen result objects (a :class:`Frozen`): ``to_json()``, ``__str__`` via ``__repr__``."""

    __slots__ = ()

    def to_dict(self) -> dict[str, object]:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def to_json(self, **kwargs: Any) -> str:
        """``to_dict()`` as JSON text (``indent=2`` unless given)."""
        import json

        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), default=str, **kwargs)

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        for key, value in self.to_dict().items():
            if not isinstance(value, (list, dict)):
                yield key, value


def text_table(header: Sequence[str], rows: Sequence[Sequence[object]], *, indent: str = "  ") -> list[str]:
    """Rows as aligned text lines; numbers (and sizes ending in a unit) align right."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    right = [all(_numeric(r[i]) for r in cells[1:]) if len(cells) > 1 else False for i in range(len(header))]
    lines = []
    for r in cells:
        parts = [
            c.rjust(w) if right[i] else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append((indent + "  ".join(parts)).rstrip())
    return lines


def _numeric(text: str) -> bool:
    head = text.split(" ")[0].lstrip("+-")
    return bool(head) and head.replace(".", "", 1).replace(",", "").isdigit()


def html_table(
    header: Sequence[str], rows: Sequence[Sequence[object]], *, caption: str = "", cls: str = ""
) -> str:
    """An escaped HTML table. Every cell is text, so nothing from a result is interpreted as markup."""
    from html import escape

    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    klass = f" class='{escape(cls)}'" if cls else ""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td style='text-align:right'>{escape(str(c))}</td>"
            if _numeric(str(c))
            else f"<td>{escape(str(c))}</td>"
            for c in r
        )
        + "</tr>"
        for r in rows
    )
    return f"<table{klass}>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_summary(text: str, *, verdict: bool | None = None) -> str:
    """The one-line summary every report page opens with; *verdict* colours it (None: neutral)."""
    from html import escape

    klass = "" if verdict is None else " good" if verdict else " bad"
    return f"<p class='hivemem-summary{klass}' role='status'>{escape(text)}</p>"


def html_page(
    title: str, body: str, *, summary: str = "", verdict: bool | None = None, subtitle: str = ""
) -> str:
    """A complete, self-contained HTML page: *title*, the one-line *summary* first, then *body*.

    No script, no external stylesheet, font or image: the page opens the same
    offline, in a mail attachment or a CI artifact viewer. *body* is HTML
    the caller has escaped; *title*, *summary* and *subtitle* are text.
    """
    from html import escape

    head = f"<h1>{escape(title)}</h1>"
    if summary:
        head += html_summary(summary, verdict=verdict)
    if subtitle:
        head += f"<p class='muted'>{escape(subtitle)}</p>"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{PAGE_CSS}</style></head><body>"
        f"{head}{body}</body></html>\n"
    )


def short_path(filename: str) -> str:
    """A code location's file, shortened to what follows ``site-packages/`` or the cwd."""
    import os

    for marker in ("site-packages/", "dist-packages/"):
        k = filename.rfind(marker)
        if k >= 0:
            return filename[k + len(marker) :]
    try:
        cwd = os.getcwd()
    except OSError:
        return filename
    if filename.startswith(cwd + os.sep):
        return filename[len(cwd) + 1 :]
    return filename
