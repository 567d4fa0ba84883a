"""Heap compaction: rebuild registered containers so their survivors pack into few arenas.

The order is what makes it work (MEMORY-FACTS): serialize the survivors of
every registered container first (pickle protocol 5, one memo so objects
shared between containers stay shared), empty the containers in place,
collect, trim, and only then load the contents back into the same container
objects. Loading after the release puts the survivors into fresh, dense
arenas; rebuilding first (``c[:] = loads(dumps(c))``) would put them into
the holes of the old, sparse arenas and pin those.

The serialized bytes are the safety copy until the load succeeds: anything
that goes wrong between emptying and refilling (an exception, a signal)
refills the containers from them before the error goes on.
"""

from __future__ import annotations

import sys

from hivemem._containers import MIN_FREE
from hivemem._containers import _compact as _registered
from hivemem._held import access_problem, release, try_lock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["compact_registered", "rescued"]

#: Types whose instances have no identity a program could depend on: copying
#: one during compaction cannot split shared state.
_VALUE_TYPES = (str, bytes, int, float, complex, bool, type(None), frozenset)


class _Over(Exception):
    """The serialized copy would push RSS past the ceiling."""


class _CappedWriter:
    """A pickle sink that appends to a bytearray and stops before RSS passes *ceiling*."""

    def __init__(self, rss: Callable[[], int], ceiling: int | None) -> None:
        self.buf = bytearray()
        self.rss = rss
        self.ceiling = ceiling

    def write(self, data: bytes) -> int:
        # The pickler writes in 64 KiB frames: one RSS read (~11 us) per frame.
        if self.ceiling is not None and self.rss() + len(data) > self.ceiling:
            raise _Over
        self.buf += data
        return len(data)


def _iter_values(obj: object) -> Iterable[object]:
    return obj.values() if isinstance(obj, dict) else obj  # type: ignore[return-value]


def _probe_iter(values: Iterable[object]) -> int:
    for v in values:
        return sys.getrefcount(v)
    return 0


def _is_value(v: object, depth: int = 0) -> bool:
    if isinstance(v, _VALUE_TYPES):
        return True
    return type(v) is tuple and depth < 8 and all(_is_value(x, depth + 1) for x in v)


def _shared_items(obj: object) -> int:
    """How many items with an identity (not plain values) are also referenced outside *obj*."""
    base = _probe_iter([object()])
    shared = 0
    for v in _iter_values(obj):
        if sys.getrefcount(v) > base and not _is_value(v):
            shared += 1
    return shared


def _contents(obj: object) -> object:
    """What gets pickled: the container itself for exact builtins, a plain copy of its items otherwise."""
    if type(obj) in (list, dict, set):
        return obj
    if isinstance(obj, dict):
        return dict(obj)
    if isinstance(obj, set):
        return set(obj)
    return list(obj)  # type: ignore[call-overload]


def _empty(obj: object) -> None:
    # The base types' methods: a subclass's clear()/extend() may have side
    # effects (events, validation) that a move of the same contents must not fire.
    if isinstance(obj, list):
        list.clear(obj)
    elif isinstance(obj, dict):
        dict.clear(obj)
    elif isinstance(obj, set):
        set.clear(obj)
    else:
        obj.clear()  # type: ignore[attr-defined]  # deque


def _refill(obj: object, contents: object) -> None:
    if isinstance(obj, list):
        list.extend(obj, contents)  # type: ignore[arg-type]
    elif isinstance(obj, dict):
        dict.update(obj, contents)  # type: ignore[call-overload]
    elif isinstance(obj, set):
        set.update(obj, contents)  # type: ignore[arg-type]
    else:
        obj.extend(contents)  # type: ignore[attr-defined]  # deque


_rescued: list[bytes] = []


def rescued() -> list[bytes]:
    """Serialized contents hivemem could not load back (should stay empty; see the logs)."""
    return list(_rescued)


def _load(buf: bytearray) -> list[object]:
    import gc
    import pickle

    for _attempt in range(3):
        try:
            value: list[object] = pickle.loads(buf)
            return value
        except MemoryError:
            gc.collect()
    value = pickle.loads(buf)  # the last attempt raises what it raises
    return value


def compact_registered(
    *,
    rss: Callable[[], int],
    ceiling: int | None,
    min_free: int = MIN_FREE,
    min_ratio: float = 0.2,
    trim: bool = True,
) -> dict[str, object]:
    """Compact every registered container (see :func:`compactable`). Returns JSON-safe stats.

    ``stats["skip"]`` holds a reason when nothing was done. *ceiling* bounds
    RSS while the serialized copy is built (``None``: no bound).
    """
    import gc
    import time

    from hivemem._native import malloc_trim, pymalloc_stats, trim_unavailable_reason
    from hivemem._sizes import format_size as fs

    entries = [(o, e) for o, e in _registered.entries() if len(o) > 0]  # type: ignore[arg-type]
    if not entries:
        return {"skip": "no non-empty container registered with hivemem.compactable()"}
    py = pymalloc_stats()
    if py is None:
        return {"skip": "pymalloc statistics unavailable: cannot tell whether rebuilding pays"}
    stats: dict[str, object] = {"pymalloc_free_before": py["free"], "pymalloc_arenas_before": py["arenas"]}
    ratio = py["free"] / py["arenas"] if py["arenas"] else 0.0
    if py["free"] < min_free or ratio < min_ratio:
        stats["skip"] = (
            f"pymalloc arenas hold {fs(py['free'])} free of {fs(py['arenas'])} ({ratio:.0%}): too little "
            f"fragmentation for rebuilding to pay (needs {fs(min_free)} and {min_ratio:.0%})"
        )
        return stats
    skipped: list[str] = []
    chosen: list[object] = []
    held: list[object] = []
    try:
        for obj, entry in entries:
            label = f"{type(obj).__name__} at {id(obj):#x} ({len(obj):,} items)"  # type: ignore[arg-type]
            problem = access_problem(entry)
            if problem is not None:
                skipped.append(f"{label}: {problem}")
                continue
            if not try_lock(entry.lock):
                skipped.append(f"{label}: its lock is held; left for the next pass")
                continue
            if entry.lock is not None:
                held.append(entry.lock)
            shared = _shared_items(obj)
            if shared:
                skipped.append(
                    f"{label}: {shared:,} items are also referenced from elsewhere; rebuilding would copy "
                    "them instead of moving them"
                )
                continue
            chosen.append(obj)
        del obj, entry, entries
        if not chosen:
            stats["skip"] = "; ".join(skipped) or "nothing to compact"
            stats["skipped"] = skipped
            return stats
        t0 = time.perf_counter()
        buf = _dump(chosen, rss, ceiling, skipped)
        stats["dump_seconds"] = time.perf_counter() - t0
        if buf is None:
            stats["skip"] = "; ".join(skipped)
            stats["skipped"] = skipped
            return stats
        stats["serialized_bytes"] = len(buf)
        items = sum(len(o) for o in chosen)  # type: ignore[misc, arg-type]
        t1 = time.perf_counter()
        refilled = False
        try:
            for obj in chosen:
                _empty(obj)
            gc.collect()
            if trim and trim_unavailable_reason() is None:
                malloc_trim(0)
            stats["release_seconds"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            loaded = _load(buf)
            for obj, contents in zip(chosen, loaded, strict=True):
                _refill(obj, contents)
            refilled = True
            del loaded, contents
            stats["load_seconds"] = time.perf_counter() - t2
        finally:
            if not refilled:
                _restore(chosen, buf)
        del buf
    finally:
        for lock in held:
            release(lock)
    after = pymalloc_stats()
    if after is not None:
        stats["pymalloc_free_after"] = after["free"]
        stats["pymalloc_arenas_after"] = after["arenas"]
    stats["containers"] = len(chosen)
    stats["items"] = items
    stats["skipped"] = skipped
    return stats


def _restore(chosen: list[object], buf: bytearray) -> None:
    """Put the serialized contents back after a failure between emptying and refilling."""
    try:
        loaded = _load(buf)
    except BaseException:
        _rescued.append(bytes(buf))
        import logging

        logging.getLogger("hivemem").error(
            "hivemem compact: could not load %d container(s) back; their serialized contents "
            "are kept in hivemem._containers.rescued()",
            len(chosen),
            exc_info=True,
        )
        raise
    for obj, contents in zip(chosen, loaded, strict=True):
        _empty(obj)  # a partial refill must not be doubled
        _refill(obj, contents)


def _dump(
    chosen: list[object], rss: Callable[[], int], ceiling: int | None, skipped: list[str]
) -> bytearray | None:
    """Serialize *chosen* together (one memo keeps objects shared between them shared).

    Containers that cannot be pickled are dropped from *chosen* with a reason.
    Returns ``None`` when nothing is left or the copy would pass *ceiling*.
    """
    import pickle

    from hivemem._sizes import format_size as fs

    while chosen:
        writer = _CappedWriter(rss, ceiling)
        try:
            pickle.Pickler(writer, protocol=5).dump([_contents(o) for o in chosen])
            return writer.buf
        except _Over:
            skipped.append(
                f"the serialized copy would pass the memory ceiling {fs(ceiling or 0)} "
                "(two copies must fit under the limit); nothing was changed"
            )
            return None
        except Exception:
            del writer
        # Find the culprits one by one; the others go on together.
        keep = []
        for obj in chosen:
            try:
                pickle.dumps(_contents(obj), protocol=5)
            except Exception as exc:
                skipped.append(
                    f"{type(obj).__name__} at {id(obj):#x}: cannot be pickled ({type(exc).__name__}: {exc})"
                )
            else:
                keep.append(obj)
        if len(keep) == len(chosen):  # fails only together: give up rather than guess
            skipped.append("the registered containers cannot be pickled together")
            return None
        chosen[:] = keep
    return None
