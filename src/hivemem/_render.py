"""Shared rendering for the profiler, leak and inspection results: text tables, HTML tables, JSON.

Results hold only types, sizes, counts and code locations, never the
contents of user objects, so whatever is rendered here is safe to paste.
``html`` is imported inside the functions that escape.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["Result", "html_table", "text_table"]


class Result:
    """Base for frozen result objects: ``to_json()``, ``__str__`` via ``__repr__``, attribute lock."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen; cannot delete {name!r}")

    def _set(self, **values: object) -> None:
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def to_dict(self) -> dict[str, object]:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def to_json(self, **kwargs: object) -> str:
        """``to_dict()`` as JSON text (``indent=2`` unless given)."""
        import json

        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), default=str, **kwargs)  # type: ignore[arg-type]

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
