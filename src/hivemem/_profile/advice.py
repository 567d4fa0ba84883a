"""Recommendations with evidence: every piece of advice cites the measured figure it comes from.

An :class:`Advice` cannot be built without a figure: ``figure`` names what
was measured, ``value`` is the measurement, ``source`` where it was read.
:func:`advise` measures, then advises only where a figure crosses a
threshold; no measurement, no advice.
"""

from __future__ import annotations

import gc
from typing import cast

from hivemem._profile.render import Result
from hivemem._sizes import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from hivemem._profile.profiler import LeakWatch, TopSites

__all__ = ["Advice", "advise", "deep_size", "lru_cache_contents", "lru_caches"]

MIN_SIZE = 16 << 20
"""Default threshold: figures below 16 MiB are not worth a user's time."""


class Advice(Result):
    """One recommendation and the measurement behind it.

    ``text``    what to do, with the figure in it
    ``figure``  the name of the measured figure (``"pymalloc free"``, ``"lru_cache size"``, ...)
    ``value``   the measured value (bytes unless the figure says otherwise)
    ``source``  where the figure was read (``sys._debugmallocstats()``, ``mallinfo2()``, ...)
    """

    __slots__ = ("figure", "source", "text", "value")
    __module__ = "hivemem"

    text: str
    figure: str
    value: float
    source: str

    def __init__(self, text: str, *, figure: str, value: float, source: str) -> None:
        from hivemem._errors import InvalidArgument

        if not figure or not source or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidArgument(
                f"advice {text!r} needs a measured figure: got figure={figure!r}, value={value!r}, "
                f"source={source!r}"
            )
        self._set(text=text, figure=figure, value=value, source=source)

    def __repr__(self) -> str:
        return f"Advice({self.text!r}, figure={self.figure!r}, value={self.value!r}, source={self.source!r})"

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        yield "text", self.text
        yield "figure", self.figure
        yield "value", self.value
        yield "source", self.source

    def _repr_html_(self) -> str:
        from html import escape

        return f"<p class='hivemem-advice'>{escape(self.text)} <small>[{escape(self.source)}]</small></p>"

    def to_dict(self) -> dict[str, object]:
        return {"text": self.text, "figure": self.figure, "value": self.value, "source": self.source}


def _qualname(fn: object) -> str:
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    return f"{module}.{name}"


def lru_cache_contents(obj: object) -> list[object] | None:
    """What a ``functools.lru_cache`` wrapper holds in its cache, or ``None`` for other objects.

    The C implementation keeps its entries where pympler cannot see them;
    the garbage collector's ``get_referents`` can. Left out: the wrapper's
    ``__dict__``, the wrapped function, types, callables and the bare
    ``object()`` marker, which are code rather than cached data.
    """
    import functools

    if type(obj) is not type(functools.lru_cache(maxsize=None)(len)):
        return None
    skip = {id(getattr(obj, "__dict__", None)), id(getattr(obj, "__wrapped__", None))}
    return [
        r
        for r in gc.get_referents(obj)
        if id(r) not in skip and not isinstance(r, type) and not callable(r) and type(r) is not object
    ]


def deep_size(*objs: object) -> int:
    """pympler's ``asizeof`` over *objs* together (shared objects counted once), in bytes."""
    from pympler import asizeof

    measure = cast("Callable[..., int]", asizeof.asizeof)  # pympler has no type annotations
    return int(measure(*objs))


def lru_caches(min_size: int = 0) -> list[tuple[str, int, int, int | None]]:
    """Every ``functools.lru_cache`` wrapper alive: ``(name, deep bytes, entries, maxsize)``, biggest first.

    The deep size is pympler's ``asizeof`` over what the wrapper holds (its
    cache table, keys and results), not the wrapped function. Caches with
    no entries are skipped without being sized.
    """
    import functools

    wrapper_type = type(functools.lru_cache(maxsize=None)(len))
    found = []
    for obj in gc.get_objects():
        if type(obj) is wrapper_type:
            info = obj.cache_info()
            if info.currsize:
                found.append((obj, info))
    if not found:
        return []
    out = []
    for obj, info in found:
        held = lru_cache_contents(obj) or []  # the same figure hivemem.sizeof(obj).cache gives
        size = deep_size(*held) if held else 0
        if size >= min_size:
            out.append((_qualname(obj), size, info.currsize, info.maxsize))
    out.sort(key=lambda row: -row[1])
    return out


def advise(
    *,
    leak: LeakWatch | None = None,
    top: TopSites | None = None,
    min_size: int = MIN_SIZE,
    allocator: bool = True,
    caches: bool = True,
    pymalloc: dict[str, int] | None = None,
    malloc: dict[str, int] | None = None,
) -> list[Advice]:
    """Measure and return the advice the figures support (possibly none).

    *pymalloc* and *malloc* are figures the caller already measured
    (``pymalloc_stats()``, ``malloc_info()``), so the advice cites exactly
    the numbers shown next to it; they are measured here when not given.
    """
    tips: list[Advice] = []
    if allocator:
        tips += _allocator_advice(min_size, pymalloc, malloc)
    if caches:
        for name, size, entries, maxsize in lru_caches(min_size)[:5]:
            bound = "unbounded (maxsize=None)" if maxsize is None else f"maxsize={maxsize}"
            tips.append(
                Advice(
                    f"lru_cache {name} holds {format_size(size)} in {entries} entries, {bound}: "
                    + (
                        "give it a maxsize or register it with hivemem.register_cache"
                        if maxsize is None
                        else "lower its maxsize or register it with hivemem.register_cache"
                    ),
                    figure=f"lru_cache {name} size",
                    value=size,
                    source="pympler.asizeof over the cache's entries",
                )
            )
    if leak is not None and leak.suspected:
        where = ""
        if top is not None and top.rows:
            where = f"; the largest allocation site is {top.rows[0][0]} ({format_size(top.rows[0][1])})"
        tips.append(
            Advice(
                f"{leak.metric} keeps growing ({leak.evidence}){where}: check the code path with "
                "hivemem.find_leaks(fn) and compare snapshots with Profiler(trace=True).diff()",
                figure=f"{leak.metric} slope (bytes/s)"
                if leak.metric != "blocks"
                else "blocks slope (blocks/s)",
                value=leak.slope,
                source="Theil-Sen slope over the profiler's samples",
            )
        )
    return tips


def _allocator_advice(
    min_size: int, stats: dict[str, int] | None, info: dict[str, int] | None
) -> list[Advice]:
    # Why free space inside pymalloc arenas calls for compactable and malloc's free bytes
    # for a trim: docs/design.md#fragmentation.
    from hivemem._measure.native import malloc_info, pymalloc_stats

    tips = []
    if stats is None:
        stats = pymalloc_stats()
    if stats is not None and stats["free"] >= min_size:
        share = stats["free"] / stats["arenas"] if stats["arenas"] else 0.0
        tips.append(
            Advice(
                f"{format_size(stats['free'])} free inside pymalloc arenas ({100 * share:.0f}% of "
                f"{format_size(stats['arenas'])} in {stats['arena_count']} arenas): register the containers "
                "that hold your data with hivemem.compactable so they can be rebuilt into fewer arenas",
                figure="pymalloc free",
                value=stats["free"],
                source="sys._debugmallocstats()",
            )
        )
    if info is None:
        info = malloc_info()
    if info is not None and info["free"] >= min_size:
        tips.append(
            Advice(
                f"glibc malloc holds {format_size(info['free'])} free "
                f"({format_size(info['releasable'])} at the top of the heap): hivemem.optimize() runs "
                "malloc_trim, which returns free pages to the OS",
                figure="malloc free",
                value=info["free"],
                source="mallinfo2()",
            )
        )
    return tips
