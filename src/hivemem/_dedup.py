"""Equal-string deduplication in registered containers, in the style of Java G1.

Walks every container registered with ``hivemem.register_container`` (and
its nested lists, dicts and tuples) with one table of canonical strings per
pass, and swaps each duplicate ``str`` for the canonical instance. Sizes,
order and equality never change. The table lives only for the pass.

Reference counts decide two things: whether a swapped duplicate is really
freed (only then its ``sys.getsizeof`` counts as allocator bytes), and
whether a nested tuple is owned by its parent alone (only then it is
replaced by an equal tuple of canonical strings). The counts an unshared
object has at each check are measured at run time with probes of the same
loop shape, so they hold across CPython versions.
"""

from __future__ import annotations

import sys

from hivemem._containers import _dedup as _registered
from hivemem._held import access_problem, release, try_lock

__all__ = ["dedup_registered"]

_MAX_DISTINCT = 1 << 20  # ~40 MB of table at most; beyond, only known values are merged
_MAX_TUPLE_DEPTH = 64
_MAX_NEST = 50  # nested lists/dicts walked recursively up to this depth, then through a work list


def _probe_list(seq: list[object]) -> int:
    for _i, v in enumerate(seq):
        return sys.getrefcount(v)
    return 0


def _probe_dict(d: dict[object, object]) -> int:
    for _k, v in d.items():
        return sys.getrefcount(v)
    return 0


def _probe_items(items: list[tuple[object, object]]) -> int:
    for k, _v in items:
        return sys.getrefcount(k)
    return 0


class _Dedup:
    """One deduplication pass over several containers, sharing one table of canonical strings."""

    def __init__(self, max_distinct: int = _MAX_DISTINCT) -> None:
        self.table: dict[str, str] = {}
        self.max_distinct = max_distinct
        self.merged = 0
        self.allocator_bytes = 0
        self.tuples = 0
        self.keys = 0
        self.containers = 0
        # Reference counts of an object held only by its container, as seen
        # at the checks below (``refs = getrefcount(v)`` inside a loop of the
        # same shape), measured now so they hold on every CPython version.
        self.base_list = _probe_list([object()])
        self.base_dict = _probe_dict({0: object()})
        self.base_items = _probe_items([(object(), 0)])
        self._keys_too = False
        self._depth = 0

    def canon(self, s: str) -> str:
        table = self.table
        found = table.get(s)
        if found is None:
            if len(table) < self.max_distinct:
                table[s] = s
            return s
        return found

    def run(self, root: object, keys: bool) -> None:
        self._keys_too = keys
        self._depth = 0
        stack: list[object] = [root]
        seen: set[int] = {id(root)}
        while stack:
            self._visit(stack.pop(), stack, seen)

    def _visit(self, obj: object, stack: list[object], seen: set[int]) -> None:
        self.containers += 1
        if isinstance(obj, list):
            self._list(obj, stack, seen)
        elif isinstance(obj, dict):
            self._dict(obj, stack, seen, self._keys_too)

    def _queue(self, v: object, shared: bool, stack: list[object], seen: set[int]) -> None:
        """Walk a nested list/dict now (depth first, so a 2M-row table needs no 2M-entry
        work list); past _MAX_NEST levels, queue it. One reachable by another path too
        is walked once."""
        if shared:
            if id(v) in seen:
                return
            seen.add(id(v))
        if self._depth < _MAX_NEST:
            self._depth += 1
            try:
                self._visit(v, stack, seen)
            finally:
                self._depth -= 1
        else:
            stack.append(v)

    def _list(self, seq: list[object], stack: list[object], seen: set[int]) -> None:
        base, table, full = self.base_list, self.table, self.max_distinct
        getrefcount, getsizeof = sys.getrefcount, sys.getsizeof
        merged = freed = 0
        for i, v in enumerate(seq):
            t = type(v)
            if t is str:
                c = table.get(v)  # type: ignore[call-overload]
                if c is None:
                    if len(table) < full:
                        table[v] = v  # type: ignore[index, assignment]
                elif c is not v:
                    refs = getrefcount(v)
                    merged += 1
                    if refs <= base:  # only this slot held it: the swap frees it
                        freed += getsizeof(v)
                    seq[i] = c
            elif t is tuple:
                refs = getrefcount(v)
                new = self._tuple(v, refs <= base, 0, stack, seen)  # type: ignore[arg-type]
                if new is not v:
                    seq[i] = new
            elif t is list or t is dict:
                refs = getrefcount(v)
                self._queue(v, refs > base, stack, seen)
        self.merged += merged
        self.allocator_bytes += freed

    def _dict(self, d: dict[object, object], stack: list[object], seen: set[int], keys: bool) -> None:
        base, table, full = self.base_dict, self.table, self.max_distinct
        getrefcount, getsizeof = sys.getrefcount, sys.getsizeof
        merged = freed = 0
        for k, v in d.items():
            t = type(v)
            if t is str:
                c = table.get(v)  # type: ignore[call-overload]
                if c is None:
                    if len(table) < full:
                        table[v] = v  # type: ignore[index, assignment]
                elif c is not v:
                    refs = getrefcount(v)
                    merged += 1
                    if refs <= base:
                        freed += getsizeof(v)
                    d[k] = c  # same key: no resize, no reorder
            elif t is tuple:
                refs = getrefcount(v)
                new = self._tuple(v, refs <= base, 0, stack, seen)  # type: ignore[arg-type]
                if new is not v:
                    d[k] = new
            elif t is list or t is dict:
                refs = getrefcount(v)
                self._queue(v, refs > base, stack, seen)
        self.merged += merged
        self.allocator_bytes += freed
        if keys:
            self._keys(d)

    def _keys(self, d: dict[object, object]) -> None:
        table = self.table
        differs = 0
        for k in d:
            if type(k) is str:
                c = table.get(k)
                if c is None:
                    self.canon(k)
                elif c is not k:
                    differs += 1
        if not differs:
            return
        items = list(d.items())
        d.clear()
        for k, v in items:
            if type(k) is str:
                c = table.get(k, k)
                if c is not k:
                    self.keys += 1
                    self.merged += 1
                    refs = sys.getrefcount(k)
                    if refs <= self.base_items:  # only the items list held it
                        self.allocator_bytes += sys.getsizeof(k)
                    k = c
            d[k] = v

    def _tuple(
        self, t: tuple[object, ...], owned: bool, depth: int, stack: list[object], seen: set[int]
    ) -> object:
        """Return an equal tuple with canonical strings (a new one only when *owned*), else *t*."""
        if depth > _MAX_TUPLE_DEPTH:
            return t
        if not owned:  # shared elsewhere: rebuilding would add a tuple, not swap one
            if id(t) in seen:
                return t
            seen.add(id(t))
        items: list[object] | None = None
        base = self.base_list
        for i, v in enumerate(t):
            ty = type(v)
            new: object = v
            if ty is str:
                if owned:
                    new = self.canon(v)  # type: ignore[arg-type]
                    if new is not v:  # freed with the old tuple when only it holds v
                        refs = sys.getrefcount(v)
                        self.merged += 1
                        if refs <= base:
                            self.allocator_bytes += sys.getsizeof(v)
            elif ty is tuple:
                refs = sys.getrefcount(v)
                new = self._tuple(v, owned and refs <= base, depth + 1, stack, seen)  # type: ignore[arg-type]
            elif ty is list or ty is dict:
                refs = sys.getrefcount(v)
                self._queue(v, refs > base, stack, seen)
            if new is not v:
                if items is None:
                    items = list(t)
                items[i] = new
        if items is None:
            return t
        self.tuples += 1
        return tuple(items)


def dedup_registered(max_distinct: int = _MAX_DISTINCT) -> dict[str, object]:
    """Run deduplication over every registered container; returns JSON-safe stats."""
    work = _Dedup(max_distinct)
    skipped: list[str] = []
    for obj, entry in _registered.entries():
        label = f"{type(obj).__name__} at {id(obj):#x}"
        problem = access_problem(entry)
        if problem is not None:
            skipped.append(f"{label}: {problem}")
            continue
        if not try_lock(entry.lock):
            skipped.append(f"{label}: its lock is held; left for the next pass")
            continue
        try:
            work.run(obj, bool(entry.options.get("keys")))
        except RuntimeError as exc:  # changed size during iteration: a writer without the lock
            skipped.append(f"{label}: changed while deduplicating ({exc}); partly done, nothing lost")
        finally:
            release(entry.lock)
    return {
        "strings_merged": work.merged,
        "allocator_bytes": work.allocator_bytes,
        "tuples_rebuilt": work.tuples,
        "keys_merged": work.keys,
        "containers_walked": work.containers,
        "distinct": len(work.table),
        "table_full": len(work.table) >= work.max_distinct,
        "skipped": skipped,
    }
