"""An identity-keyed, thread-safe set of weak references: the cooperative strategies' work lists.

``weakref.WeakSet`` hashes its items, which fails for mappings (unhashable)
and for proxies (their hash is the wrapped object's). This set keys by
``id()`` and forgets an entry once its object has died (a dead entry is
never returned, and is purged on the next listing), so registering an object
never keeps it alive.
"""

from __future__ import annotations

import _thread
import os
import weakref

from hivemem._typing import Generic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")
else:
    T = None

__all__ = ["LiveSet"]

_all_sets: list[weakref.ref[LiveSet[Any]]] = []  # every LiveSet, whatever it holds


class LiveSet(Generic["T"]):
    """Objects registered with :meth:`add`, held weakly, listed by :meth:`items` in registration order.

    *on_fork(obj)* is called for every live object in a forked child, to
    re-create locks that another thread may have held at the fork.
    """

    def __init__(self, on_fork: Callable[[T], object] | None = None) -> None:
        self._lock = _thread.allocate_lock()
        self._refs: dict[int, weakref.ref[T]] = {}
        self._purge_at = 64
        self._on_fork = on_fork
        _all_sets.append(weakref.ref(self))

    def add(self, obj: T) -> None:
        with self._lock:
            self._refs[id(obj)] = weakref.ref(obj)
            if len(self._refs) >= self._purge_at:  # dead entries are purged in batches, not by callbacks
                self._purge()

    def _purge(self) -> None:
        # No weakref callbacks: one could fire from a GC inside add() while this lock is held.
        for key in [k for k, r in self._refs.items() if r() is None]:
            del self._refs[key]
        self._purge_at = max(2 * len(self._refs), 64)

    def discard(self, obj: T) -> None:
        with self._lock:
            ref = self._refs.get(id(obj))
            if ref is not None and ref() is obj:
                del self._refs[id(obj)]

    def items(self) -> list[T]:
        """The live objects, in registration order."""
        with self._lock:
            self._purge()
            refs = list(self._refs.values())
        return [obj for obj in (r() for r in refs) if obj is not None]

    def __len__(self) -> int:
        return len(self.items())

    def _after_fork(self) -> None:
        self._lock = _thread.allocate_lock()
        if self._on_fork is not None:
            for obj in self.items():
                self._on_fork(obj)


def _after_fork_child() -> None:
    for ref in list(_all_sets):
        live = ref()
        if live is not None:
            live._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)
