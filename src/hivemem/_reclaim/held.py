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

Passes that hold the application's own locks (``compact`` and
``dedup_strings``) go through a :class:`Hold`: one such pass at a time in
the process (the *gate*), every lock it takes recorded on the line that
takes it, and every lock released by clean-up code that runs to the end
even when an exception interrupts it once. Signals are deferred while a
pass holds the gate (:func:`defer_signals`), and ``fork()`` waits for the
pass to let go (see docs/containers.md, "Interrupts and fork").
"""

from __future__ import annotations

import _thread
import os
import sys
import time
from collections import deque
from itertools import compress
from operator import methodcaller

from hivemem._typing import cast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager
    from typing import Protocol, TypeVar

    _T = TypeVar("_T")

    class Lock(Protocol):
        """A registered lock: ``acquire()`` (with or without blocking and timeout) and ``release()``."""

        def acquire(self, blocking: bool = ..., timeout: float = ...) -> object: ...
        def release(self) -> object: ...


__all__ = [
    "FORK_WAIT",
    "Entry",
    "HeldSet",
    "Hold",
    "access_problem",
    "begin",
    "close",
    "defer_signals",
    "end",
    "finish",
    "give_back",
    "other_threads",
    "resume_signals",
    "signal_pending",
    "take_briefly",
]


class Entry:
    """One registration: the object (weak or strong), its optional lock and options."""

    __slots__ = ("_ref", "key", "lock", "options", "strong")

    def __init__(
        self, obj: object, ref: Callable[[], object] | None, lock: Lock | None, options: dict[str, object]
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
        # A class such as threading.Lock (a type on 3.13) has acquire/release as plain
        # functions; only an instance can be held.
        if lock is not None and (
            isinstance(lock, type)
            or not (callable(getattr(lock, "acquire", None)) and callable(getattr(lock, "release", None)))
        ):
            from hivemem._errors import InvalidArgument
            from hivemem._validate import show

            raise InvalidArgument(
                f"lock={show(lock)}: expected an object with acquire() and release(), "
                "such as threading.Lock() or threading.RLock()"
            )
        import weakref

        try:
            ref: Callable[[], object] | None = weakref.ref(obj, self._dead.append)
        except TypeError:  # dict, list, set, tuple: no weak references
            ref = None
        entry = Entry(obj, ref, cast("Lock | None", lock), options)  # checked above
        _locked(self._lock, self._put, id(obj), entry)
        return entry

    def _put(self, key: int, entry: Entry) -> None:
        self._purge()
        self._entries[key] = entry

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
        return _locked(self._lock, self._remove, obj)

    def _remove(self, obj: object) -> bool:
        self._purge()
        entry = self._entries.get(id(obj))
        if entry is None or entry.get() is not obj:
            return False
        del self._entries[id(obj)]
        return True

    def entries(self) -> list[tuple[object, Entry]]:
        """Live ``(object, entry)`` pairs, in registration order."""
        snapshot = _locked(self._lock, self._snapshot)
        out = []
        for entry in snapshot:
            obj = entry.get()
            if obj is not None:
                out.append((obj, entry))
        return out

    def _snapshot(self) -> list[Entry]:
        self._purge()
        return list(self._entries.values())

    def clear(self) -> None:
        _locked(self._lock, self._entries.clear)

    def __len__(self) -> int:
        return len(self.entries())

    def _after_fork(self) -> None:
        self._lock = _thread.allocate_lock()


_all_sets: list[HeldSet] = []


def _locked(lock: AbstractContextManager[object], fn: Callable[..., _T], *args: object) -> _T:
    """``fn(*args)`` while holding *lock*, released whatever line an exception comes from.

    On one line on purpose: a ``with`` block spread over lines emits a line
    event for its exit *before* calling ``__exit__``, outside the protected
    region, so an exception raised there (a trace function, as the
    fault-injection tests use) would leave the lock held. With the body on
    the ``with`` line there is no line event between acquiring and releasing.
    """
    with lock: return fn(*args)  # noqa: E701  # fmt: skip


def _after_fork_child() -> None:
    for s in _all_sets:
        s._after_fork()
    _gate_after_fork_child()
    _free_brief_locks()


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


def _acquire_untimed(lock: Lock) -> bool:
    """For a lock type whose ``acquire`` takes no timeout: try without waiting, or, if it takes no
    blocking argument either, call it plainly. Each attempt returns on the line that acquires."""
    try:
        return bool(lock.acquire(False))
    except TypeError:  # acquire() without a blocking argument
        return bool(lock.acquire())


#: Application locks a step holds for a moment without the gate (the ``caches`` step, while it
#: clears or shrinks one cache). A child forked meanwhile has no thread that would release them:
#: it frees them itself (the cache may be part-cleared there, never wrong: docs/caches.md).
_brief: list[Lock] = []


# Taking a lock and recording it, and forgetting a lock and releasing it, each happen inside ONE
# call into C: map(), compress() and deque() drive the lock's own C methods. CPython may switch
# threads after any call made from Python code, so with two calls a fork() in another thread could
# land between them and leave the child a held lock that no record names (or a record of a lock
# already released). A one-line expression is not enough: that only keeps trace functions out.
# Holds for C locks (threading.Lock, RLock); a lock type written in Python runs Python code inside
# acquire() and can still be switched away from there (docs/containers.md, "Interrupts and fork").
_TRY = methodcaller("acquire", False)
_RELEASE = methodcaller("release")

#: Threads inside a waiting :func:`take_briefly`: token -> the time by which it returns. A blocking
#: acquire gets the lock with the GIL released and then waits for the GIL before it can record it;
#: fork() waits until no such thread is left (so at most a lock wait plus this grace, in seconds).
_waiting: dict[object, float] = {}
_GIL_GRACE = 0.1


def _take_into(record: list[Lock], lock: Lock, timeout: float = 0.0, token: object = None) -> bool:
    """Acquire *lock* (waiting up to *timeout* seconds) and append it to *record*, with no thread
    switch between; *token*: this call's entry in ``_waiting``, removed in the same call."""
    size = len(record)
    acquire = _TRY if timeout <= 0.0 else methodcaller("acquire", True, timeout)
    taken = compress((lock,), map(acquire, (lock,)))  # lazy: nothing is acquired before extend() runs
    try:
        # One line: taken, recorded, unlisted and reported with no line event (so no interrupt) between.
        return (record.extend(taken), _waiting.pop(token, None), len(record) > size)[2]  # type: ignore[func-returns-value]
    except TypeError:  # acquire() without blocking/timeout arguments: a lock type written in Python
        _waiting.pop(token, None)
        return _acquire_untimed(lock) and record.append(lock) is None  # type: ignore[func-returns-value]


def _release_from(record: list[Lock], index: int) -> None:
    """Remove ``record[index]`` and release it, with no thread switch between."""
    deque(map(_RELEASE, map(methodcaller("pop", index), (record,))), 0)


def take_briefly(lock: Lock | None, timeout: float = 0.0) -> bool:
    """Acquire *lock* without waiting, or waiting at most *timeout* seconds, recorded so that a
    forked child frees it (a wait releases the GIL, so the holder can finish and unlock).

    With a *timeout* the thread is listed in ``_waiting`` while it waits, and ``fork()`` waits for
    it (see ``_wait_for_takers``): the lock may be this thread's before it can be recorded.
    """
    if lock is None:
        return True
    if timeout <= 0.0:
        return _take_into(_brief, lock)
    token = object()
    # One line: listed, then taken and recorded (an interrupt before the take leaves only a listing
    # that expires on its own).
    until = time.monotonic() + timeout + _GIL_GRACE
    return (_waiting.update({token: until}), _take_into(_brief, lock, timeout, token))[1]


def _wait_for_takers() -> None:
    """Before a fork: let every thread inside a waiting :func:`take_briefly` record its lock or give up."""
    while _waiting:
        now = time.monotonic()
        for token, until in list(_waiting.items()):
            if until <= now:  # an interrupted caller's listing: expired
                _waiting.pop(token, None)
        if _waiting:
            time.sleep(0.0005)  # releases the GIL: the waiting thread can finish


def give_back(lock: Lock | None) -> None:
    """Release a lock taken with :func:`take_briefly`. Idempotent."""
    for i in range(len(_brief) - 1, -1, -1):
        if _brief[i] is lock:
            _release_from(_brief, i)
            return


def _free_brief_locks() -> None:
    _waiting.clear()  # the threads listed there do not exist in the child
    while _brief:
        _reinit(_brief.pop())


def access_problem(entry: Entry) -> str | None:
    """Why a data-touching strategy may not touch this entry's object right now, or ``None``.

    With a lock: the caller must acquire it (:meth:`Hold.take`). Without one, the
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


# ---------------------------------------------------------------------------- one pass at a time

#: Longest time ``fork()`` waits for a pass that holds application locks to let go (seconds).
FORK_WAIT = 10.0

_gate = _thread.allocate_lock()


class Hold:
    """What one data-touching pass holds: the gate, the application locks it took, a repair.

    ``locks`` lists the locks in the order they were taken; ``repair`` is
    called in a fork child when the fork happened while the pass was still
    under way (only after :data:`FORK_WAIT` ran out): it must put every
    container back as the program left it. Only one ``Hold`` is open in a
    process at a time.
    """

    __slots__ = ("locks", "owner", "repair")

    def __init__(self) -> None:
        self.locks: list[Lock] = []
        self.owner = _thread.get_ident()
        self.repair: Callable[[], None] | None = None

    def take(self, lock: Lock | None) -> bool:
        """Acquire *lock* without waiting; on success it is recorded before anything can interrupt."""
        if lock is None:
            return True
        locks = self.locks
        if any(held is lock for held in locks):  # several containers under one lock
            return True
        # One call: no line event, interrupt or thread switch between taking the lock and recording it.
        return _take_into(locks, lock)

    def drop(self, lock: Lock | None) -> None:
        """Release *lock* now if this pass holds it. Idempotent."""
        locks = self.locks
        for i in range(len(locks) - 1, -1, -1):
            if locks[i] is lock:
                _release_from(locks, i)
                return

    def release_all(self) -> None:
        """Release every lock taken, newest first. Idempotent: call it again if it was interrupted."""
        locks = self.locks
        while locks:
            _release_from(locks, -1)


class _GateState:
    hold: Hold | None = None  # the open pass, if any
    fork_waited = False  # the fork hook holds the gate (released after the fork)


_state = _GateState()


def begin() -> Hold | None:
    """Open a pass: take the gate without waiting. ``None`` when another pass or a fork has it.

    Close it with :func:`close` (see there for the pattern that cannot leak).
    """
    hold = Hold()
    # One line of C calls: the gate is never taken without being recorded.
    opened = _gate.acquire(False) and setattr(_state, "hold", hold) is None  # type: ignore[func-returns-value]
    return hold if opened else None


def end() -> None:
    """Release the calling thread's open pass: its application locks, then the gate. Idempotent."""
    hold = _state.hold
    if hold is None or hold.owner != _thread.get_ident():
        return
    hold.release_all()
    # One expression: no line event between forgetting the pass and releasing the gate.
    setattr(_state, "hold", None) or _gate.release()  # type: ignore[func-returns-value]


def close(token: object) -> None:
    """End the calling thread's pass and resume the signals *token* deferred. Idempotent.

    Call it twice: as the last statement of the ``try`` body and in the
    ``finally``. One exception at any line (the fault-injection model) then
    still leaves nothing held: if it lands in the first call or anywhere
    before, the ``finally`` call does the work; if it lands on the
    ``finally`` line, the first call already did. (A single call in
    ``finally`` can be skipped by an exception raised at its own line.)
    """
    end()
    resume_signals(token)


def finish(cleanup: Callable[[], None]) -> None:
    """Run an idempotent *cleanup* so that it completes even if one exception interrupts it.

    ``try: f() finally: f()``: an interrupt inside the first call leaves the
    second to complete the work. For clean-up on an error path (after the
    exception that started it); on the normal path use the :func:`close`
    pattern, since an exception at this function's own first line would skip
    both calls.
    """
    try:
        cleanup()
    finally:
        cleanup()


def _before_fork() -> None:
    _wait_for_takers()
    hold = _state.hold
    if hold is not None and hold.owner == _thread.get_ident():
        return  # forking from inside the pass itself: the child repairs
    _state.fork_waited = _gate.acquire(True, FORK_WAIT)


def _after_fork_parent() -> None:
    if _state.fork_waited:
        _state.fork_waited = False
        _gate.release()


def _gate_after_fork_child() -> None:
    """In the child: a fresh gate; a pass the fork cut (no parent thread runs it here) is undone."""
    global _gate
    _gate = _thread.allocate_lock()
    _state.fork_waited = False
    hold = _state.hold
    if hold is None:
        return
    if hold.owner == _thread.get_ident():
        # Forked from inside the pass (an object's own code did it): the pass goes on in this
        # very thread, here too, and ends normally; it still holds the gate.
        _gate.acquire()
        return
    _state.hold = None
    if hold.repair is not None:
        try:
            hold.repair()
        except Exception:  # pragma: no cover - reported, never raised into the child
            import logging

            logging.getLogger("hivemem").exception("hivemem: could not repair containers after fork")
    for lock in reversed(hold.locks):
        _reinit(lock)
    hold.locks.clear()


def _reinit(lock: Lock) -> None:
    """Free a lock the child inherited held by a thread that does not exist in the child."""
    reinit = getattr(lock, "_at_fork_reinit", None)  # _thread locks and RLocks (3.9+)
    try:
        if callable(reinit):
            reinit()
        else:
            lock.release()
    except Exception:  # pragma: no cover - an exotic lock type: nothing more can be done
        pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_parent, after_in_child=_after_fork_child
    )


# ---------------------------------------------------------------------------- deferred signals

_tripped = bytearray(65)  # [0]: any signal deferred; [n]: signal n arrived while deferred
_deferral: list[tuple[int, object]] = []  # (signal, handler replaced) while deferring
_owner: list[object] = []  # the token of the deferral in force (at most one)


def _record(signum: int, frame: object) -> None:
    # Allocates nothing: two stores into a preallocated bytearray.
    _tripped[signum] = 1
    _tripped[0] = 1


def defer_signals(token: object) -> None:
    """Defer every signal that has a Python handler (SIGINT's KeyboardInterrupt included).

    Works in the main thread only (the only thread that runs Python signal
    handlers; other threads never see KeyboardInterrupt); elsewhere, or when
    a deferral is already in force, does nothing. *token* (any object the
    caller made) identifies this deferral to :func:`resume_signals`, which
    must follow in a ``finally`` whatever this call did or did not finish.
    """
    import signal

    if _owner or _deferral:
        return
    _deliver()  # any left over from a pass whose delivery was cut short
    try:
        # SIGINT first, and recorded with the owner on the same line: from here on
        # Ctrl-C is only recorded, and resume_signals(token) will put it back.
        _deferral.append((signal.SIGINT, signal.signal(signal.SIGINT, _record))) or _owner.append(token)  # type: ignore[func-returns-value]
    except (ValueError, OSError, AttributeError):  # not the main thread, or no SIGINT
        return
    for sig in signal.valid_signals():
        if sig == signal.SIGINT or sig >= len(_tripped):
            continue
        handler = signal.getsignal(sig)
        if callable(handler) and handler is not _record:
            try:
                _deferral.append((sig, signal.signal(sig, _record)))
            except (ValueError, OSError):
                pass


def signal_pending() -> bool:
    """A deferred signal arrived: a pass should stop at its next safe point."""
    return bool(_tripped[0])


def resume_signals(token: object) -> None:
    """Put back the handlers *token*'s deferral replaced, then deliver every signal that
    arrived meanwhile, in number order. Idempotent; does nothing while another deferral is
    in force."""
    if _owner and _owner[0] is token:
        _restore_handlers()
        _owner.clear()
    if not _owner:
        _deliver()


def _deliver() -> None:
    """Raise the signals that arrived while deferred; each flag is cleared as its signal goes."""
    if not _tripped[0]:
        return
    import signal

    while _tripped[0]:
        pending = [n for n in range(1, len(_tripped)) if _tripped[n]]
        if not pending:
            _tripped[0] = 0
            break
        sig, last = pending[0], len(pending) == 1
        # One expression: the flags are cleared and the program's own handler runs (inside
        # raise_signal, as if the signal came just now) with no line in between.
        _tripped.__setitem__(0, 0 if last else 1) or _tripped.__setitem__(sig, 0) or signal.raise_signal(sig)  # type: ignore[func-returns-value]


def _restore_handlers() -> None:
    import signal

    while _deferral:
        sig, handler = _deferral[-1]
        if signal.getsignal(sig) is _record:
            signal.signal(sig, handler)  # type: ignore[arg-type]
        _deferral.pop()
