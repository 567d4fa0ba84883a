"""Registrations of user objects (caches, containers) that strategies may touch.

An object is held by a weak reference when its type allows it (user classes,
``functools.lru_cache`` wrappers, cachetools caches, subclasses of ``dict``
and ``list``), so registering it never keeps it alive. Plain ``dict``,
``list``, ``set`` and ``tuple`` objects cannot be weakly referenced: those
are held strongly until unregistered (``unregister_*(obj)``), and each entry
says so (``strong=True``) so a leak is visible in ``registered()``.

Entries are keyed by ``id(obj)``; a weak entry is dropped once its object
dies (and ``get()`` returns ``None`` from that moment), so a recycled id
never points at a stranger.

Threads: every registry has its own ``_thread`` lock; entries are returned
as snapshots. After ``fork()`` the registries are kept (the child has the
same objects) but the locks are re-created, since a parent thread may have
held one at fork time.
"""

from __future__ import annotations

import _thread
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Entry", "HeldSet", "access_problem", "other_threads", "release", "try_lock"]


class Entry:
    """One registration: the object (weak or strong), its optional lock and options."""

    __slots__ = ("_ref", "key", "lock", "options", "strong")

    def __init__(
        self, obj: object, ref: Callable[[], object] | None, lock: object, options: dict[str, object]
    ) -> None:
        self.key = id(obj)
        self._ref = ref
        self.strong = ref is None
        self.lock = lock
        self.options = options
        if ref is None:
            self._ref = _Strong(obj)

    def get(self) -> object:
        """The registered object, or ``None`` once a weakly held one has died."""
        assert self._ref is not None
        return self._ref()


class _Strong:
    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __call__(self) -> object:
        return self.obj


class HeldSet:
    """A thread-safe set of registered objects, weak where the type allows."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._lock = _thread.allocate_lock()
        self._entries: dict[int, Entry] = {}
        self._dead: list[object] = []
        _all_sets.append(self)

    def add(self, obj: object, lock: object = None, **options: object) -> Entry:
        """Register *obj* (again: its lock and options are replaced)."""
        if lock is not None and not (
            callable(getattr(lock, "acquire", None)) and callable(getattr(lock, "release", None))
        ):
            from hivemem._errors import InvalidArgument

            raise InvalidArgument(
                f"lock={lock!r}: expected an object with acquire() and release(), "
                "such as threading.Lock() or threading.RLock()"
            )
        import weakref

        try:
            ref: Callable[[], object] | None = weakref.ref(obj, self._dead.append)
        except TypeError:  # dict, list, set, tuple: no weak references
            ref = None
        entry = Entry(obj, ref, lock, options)
        with self._lock:
            self._purge()
            self._entries[id(obj)] = entry
        return entry

    def _purge(self) -> None:
        # A weak reference's callback may run inside any allocation, even while
        # this set's lock is held, so it only appends to ``_dead`` (atomic);
        # the entries are dropped here, under the lock.
        while self._dead:
            ref = self._dead.pop()
            for key, entry in list(self._entries.items()):
                if entry._ref is ref:
                    del self._entries[key]

    def remove(self, obj: object) -> bool:
        """Forget *obj*; returns whether it was registered."""
        with self._lock:
            self._purge()
            entry = self._entries.get(id(obj))
            if entry is None or entry.get() is not obj:
                return False
            del self._entries[id(obj)]
            return True

    def entries(self) -> list[tuple[object, Entry]]:
        """Live ``(object, entry)`` pairs, in registration order."""
        with self._lock:
            self._purge()
            snapshot = list(self._entries.values())
        out = []
        for entry in snapshot:
            obj = entry.get()
            if obj is not None:
                out.append((obj, entry))
        return out

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self.entries())

    def _after_fork(self) -> None:
        self._lock = _thread.allocate_lock()


_all_sets: list[HeldSet] = []


def _after_fork_child() -> None:
    for s in _all_sets:
        s._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)


def other_threads() -> int:
    """How many Python threads other than the calling one are running now.

    Reads ``sys._current_frames()`` (every thread state with a frame), so it
    counts threads started with ``_thread`` too, and never imports
    ``threading``. Where that call is missing, assumes other threads exist.
    """
    frames = getattr(sys, "_current_frames", None)
    if frames is None:  # pragma: no cover - every CPython has it
        return 1
    return max(len(frames()) - 1, 0)


def try_lock(lock: object, timeout: float = 0.0) -> bool:
    """Acquire *lock* without waiting, or waiting at most *timeout* seconds (never deadlocks).

    A wait releases the GIL, so the thread holding the lock can finish and
    unlock; a lock whose ``acquire`` takes no timeout is tried without waiting.
    """
    if lock is None:
        return True
    if timeout > 0.0:
        try:
            return bool(lock.acquire(True, timeout))  # type: ignore[attr-defined]
        except TypeError:
            pass
    try:
        return bool(lock.acquire(False))  # type: ignore[attr-defined]
    except TypeError:  # acquire() without a blocking argument
        return bool(lock.acquire())  # type: ignore[attr-defined]


def release(lock: object) -> None:
    if lock is not None:
        lock.release()  # type: ignore[attr-defined]


def access_problem(entry: Entry) -> str | None:
    """Why a data-touching strategy may not touch this entry's object right now, or ``None``.

    With a lock: the caller must acquire it (``try_lock``). Without one, the
    object is touched only while no other Python thread runs: another thread
    could otherwise read a half-rebuilt container or lose a write.
    """
    if entry.lock is not None:
        return None
    n = other_threads()
    if n:
        return (
            f"{n} other Python thread(s) running and it was registered without lock=; "
            "pass the lock your code holds while it mutates the container"
        )
    return None
