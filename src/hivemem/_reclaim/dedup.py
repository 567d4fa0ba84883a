"""Equal-string deduplication in registered containers, in the style of Java G1.

Walks every container registered with ``hivemem.register_container`` (and
its nested lists, dicts and tuples) with one table of canonical strings per
pass, and swaps each duplicate ``str`` for the canonical instance. Sizes,
order and equality never change. The table lives only for the pass.

Nothing else changes, whatever happens: every swap of one value for an
equal one is a single store (the base type's ``__setitem__``, so a
subclass's validating or counting hooks never run); merging dict keys
(``keys=True``) builds the merged dict aside, then replaces the contents in
one step that is put back if anything interrupts it. Signals are deferred
while the pass runs (main thread) and stop it at the next container; a fork
waits for the pass to end (see docs/containers.md).

Reference counts decide two things: whether a swapped duplicate is really
freed (only then its ``sys.getsizeof`` counts as allocator bytes), and
whether a nested tuple is owned by its parent alone (only then it is
replaced by an equal tuple of canonical strings). The counts an unshared
object has at each check are measured at run time with probes of the same
loop shape, so they hold across CPython versions.
"""

from __future__ import annotations

import sys

from hivemem._reclaim.containers import dedup_registry as _registered
from hivemem._reclaim.held import _tripped, access_problem, begin, close, defer_signals, finish

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from hivemem._reclaim.held import Hold

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


def _probe_items(d: dict[object, object]) -> int:
    for k, _v in dict.items(d):
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
        self.base_items = _probe_items({object(): 0})
        self._keys_too = False
        self._depth = 0
        self.hold: Hold | None = None  # the pass's hold: a fork during a key swap repairs from it

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
        if _tripped[0]:  # a deferred signal: stop between two containers
            raise _Interrupted
        self.containers += 1
        # A subclass's __iter__/__setitem__ are not run: the base type's are.
        if isinstance(obj, list):
            exact = type(obj) is list
            pairs = enumerate(obj if exact else list.__iter__(obj))
            self._slots(obj, pairs, list.__setitem__, exact, self.base_list, stack, seen)
        elif isinstance(obj, dict):
            # Same key: no resize, no reorder, no subclass hook.
            self._slots(obj, dict.items(obj), dict.__setitem__, False, self.base_dict, stack, seen)
            if self._keys_too:
                self._keys(obj)

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

    # _slots and _tuple walk the program's own containers: their items are of any type.
    def _slots(
        self,
        obj: Any,
        pairs: Iterable[tuple[Any, Any]],
        setitem: Callable[[Any, Any, Any], None],
        exact: bool,
        base: int,
        stack: list[object],
        seen: set[int],
    ) -> None:
        """Merge the ``str`` values of a list's or dict's *pairs* (slot, value), writing through *setitem*
        (``obj[slot] = ...`` when *exact*); walk its tuples, lists and dicts. *base*: the reference
        count of a value only its slot holds, probed with the same loop over the same kind of *pairs*."""
        table, full = self.table, self.max_distinct
        getrefcount, getsizeof = sys.getrefcount, sys.getsizeof
        merged = freed = 0
        for slot, v in pairs:
            t = type(v)
            if t is str:
                c = table.get(v)
                if c is None:
                    if len(table) < full:
                        table[v] = v
                elif c is not v:
                    refs = getrefcount(v)
                    merged += 1
                    if refs <= base:  # only this slot held it: the swap frees it
                        freed += getsizeof(v)
                    if exact:
                        obj[slot] = c
                    else:
                        setitem(obj, slot, c)
            elif t is tuple:
                refs = getrefcount(v)
                new = self._tuple(v, refs <= base, 0, stack, seen)
                if new is not v:
                    setitem(obj, slot, new)
            elif t is list or t is dict:
                refs = getrefcount(v)
                self._queue(v, refs > base, stack, seen)
        self.merged += merged
        self.allocator_bytes += freed

    def _keys(self, d: dict[object, object]) -> None:
        """Merge *d*'s ``str`` keys: the merged dict is built aside, then swapped in at once."""
        from collections import OrderedDict

        if isinstance(d, OrderedDict):
            return  # its own order list holds the keys: a swap under it would corrupt it
        table = self.table
        differs = 0
        for k in dict.keys(d):
            if type(k) is str:
                c = table.get(k)
                if c is None:
                    self.canon(k)
                elif c is not k:
                    differs += 1
        if not differs:
            return
        merged: dict[object, object] = {}
        merged_keys = freed = 0
        base = self.base_items
        for k, v in dict.items(d):
            if type(k) is str:
                c = table.get(k, k)
                if c is not k:
                    merged_keys += 1
                    if sys.getrefcount(k) <= base:  # only d (and this loop) held it
                        freed += sys.getsizeof(k)
                    k = c
            merged[k] = v
        if len(merged) != len(d):  # pragma: no cover - equal keys are never two keys
            return
        if _tripped[0]:
            raise _Interrupted
        _swap_contents(d, merged, self.hold)
        self.keys += merged_keys
        self.merged += merged_keys
        self.allocator_bytes += freed

    def _tuple(
        self, t: tuple[Any, ...], owned: bool, depth: int, stack: list[object], seen: set[int]
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
                    new = self.canon(v)
                    if new is not v:  # freed with the old tuple when only it holds v
                        refs = sys.getrefcount(v)
                        self.merged += 1
                        if refs <= base:
                            self.allocator_bytes += sys.getsizeof(v)
            elif ty is tuple:
                refs = sys.getrefcount(v)
                new = self._tuple(v, owned and refs <= base, depth + 1, stack, seen)
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


class _Interrupted(Exception):
    """A deferred signal arrived: stop at a point where every container is whole."""


def _swap_contents(d: dict[object, object], merged: dict[object, object], hold: Hold | None) -> None:
    """Make *d* hold exactly *merged*'s items (same order), in one step that cannot leave it short.

    The table ``dict.update`` needs is allocated once (``dict.copy``) and
    freed just before *d* is emptied, so the refill finds the memory. If
    anything interrupts the swap, it is done again (idempotent) before the
    error goes on; a fork that cuts it is completed in the child.
    """
    if hold is not None:
        hold.repair = lambda: _refill_dict(d, merged)
    try:
        probe = dict.copy(merged)
        # One expression: the probe's table is freed and d refilled with no line in between.
        probe.clear() or dict.clear(d) or dict.update(d, merged)  # type: ignore[func-returns-value]
    except BaseException:
        finish(lambda: _refill_dict(d, merged))
        raise
    finally:
        if hold is not None:
            hold.repair = None


def _refill_dict(d: dict[object, object], merged: dict[object, object]) -> None:
    import gc

    for attempt in range(3):
        try:
            dict.clear(d) or dict.update(d, merged)
            return
        except MemoryError:
            if attempt == 2:
                raise
            gc.collect()


def dedup_registered(max_distinct: int = _MAX_DISTINCT) -> dict[str, object]:
    """Run deduplication over every registered container; returns JSON-safe stats.

    A signal that arrives meanwhile (main thread) stops the pass at the next
    container, whole, and is delivered when it returns.
    """
    work = _Dedup(max_distinct)
    skipped: list[str] = []
    token = object()
    try:
        defer_signals(token)
        hold = begin()
        if hold is None:
            skipped.append("another pass that holds application locks (or a fork) is under way")
        else:
            work.hold = hold
            _run_all(work, hold, skipped)
        close(token)  # here and in finally: see hivemem._reclaim.held.close()
    except _Interrupted:
        skipped.append("interrupted by a signal; every container is whole (partly deduplicated)")
    finally:
        close(token)
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


def _run_all(work: _Dedup, hold: Hold, skipped: list[str]) -> None:
    from functools import partial

    for obj, entry in _registered.entries():
        label = f"{type(obj).__name__} at {id(obj):#x}"
        problem = access_problem(entry)
        if problem is not None:
            skipped.append(f"{label}: {problem}")
            continue
        if not hold.take(entry.lock):
            skipped.append(f"{label}: its lock is held; left for the next pass")
            continue
        try:
            work.run(obj, bool(entry.options.get("keys")))
        except RuntimeError as exc:  # changed size during iteration: a writer without the lock
            skipped.append(f"{label}: changed while deduplicating ({exc}); partly done, nothing lost")
        finally:
            finish(partial(hold.drop, entry.lock))
