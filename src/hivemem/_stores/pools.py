"""Object and buffer pools whose idle objects the ``pools`` strategy drops under pressure.

A pool keeps released objects for reuse, so a loop that needs a fresh
buffer every iteration stops asking malloc (and the kernel, for blocks of
128 KiB and more) for memory each time. The price of a pool is the memory its
idle objects hold; under pressure the ``pools`` strategy drops idle objects
beyond each pool's floor (``min_idle`` / ``min_bytes``).

Both pools are thread-safe (one lock each; factories, resets and object
destruction run outside it) and fork-safe (the lock is re-created in a
forked child). Registering a pool with the strategy holds it weakly: a pool
nobody references is freed as usual.

A double release is refused with :class:`hivemem.InvalidArgument` before
anything changes: an object already idle, or being released by another
thread right now (its ``reset`` runs outside the lock), cannot be released
again, so two later ``acquire()`` calls never return the same object.
"""

from __future__ import annotations

import _thread

from hivemem import _validate
from hivemem._errors import InvalidArgument
from hivemem._sizes import format_size
from hivemem._stores.live import LiveSet
from hivemem._typing import Generic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
    from typing import Any, TypeVar

    T = TypeVar("T")
else:
    T = None

__all__ = ["BufferPool", "ObjectPool", "live_pools"]


def _new_lock(pool: ObjectPool[object] | BufferPool) -> None:
    pool._lock = _thread.allocate_lock()


_live: LiveSet[ObjectPool[Any] | BufferPool] = LiveSet(on_fork=_new_lock)


def _track(pool: ObjectPool[Any] | BufferPool) -> None:
    _live.add(pool)


def live_pools() -> list[ObjectPool[object] | BufferPool]:
    """Every pool still alive in this process (the ``pools`` strategy's work list)."""
    return _live.items()


def _check_count(name: str, value: object, minimum: int) -> int:
    return _validate.count(name, value, minimum=minimum)


def _check_size(name: str, value: object) -> int:
    return _validate.size(name, value)


class _Lease(Generic[T]):
    """``with pool.borrow() as obj:`` — acquire on enter, release on a clean exit.

    When the block raises, the object is discarded rather than pooled: its
    state is unknown.
    """

    __slots__ = ("_args", "_obj", "_pool")

    def __init__(self, pool: ObjectPool[T] | BufferPool, args: tuple[int, ...]) -> None:
        self._pool = pool
        self._args = args
        self._obj: object = None

    def __enter__(self) -> T:
        self._obj = self._pool.acquire(*self._args)
        return self._obj  # type: ignore[return-value]

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        obj, self._obj = self._obj, None
        if exc_type is None:
            self._pool.release(obj)  # type: ignore[arg-type]
        else:
            self._pool.discard(obj)  # type: ignore[arg-type]


class _Pool:
    """What both pools share: the lock, the counts, ``len()`` and truth."""

    _lock: _thread.LockType

    def _init_pool(self) -> None:
        """The lock, and ``created``/``reused``/``dropped`` at 0."""
        self._lock = _thread.allocate_lock()
        self.created = 0
        self.reused = 0
        self.dropped = 0

    @property
    def idle(self) -> int:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.idle

    def __bool__(self) -> bool:
        return True  # a pool with nothing idle is still a pool: ``if pool:`` must not be False


class ObjectPool(_Pool, Generic[T]):
    """A pool of reusable objects made by *factory*.

    ``acquire()`` returns an idle object (the most recently released one, whose
    memory is most likely still in cache) or a new one from ``factory()``;
    ``release(obj)`` calls ``reset(obj)`` (if given) and keeps the object for
    reuse, up to *maxsize* idle objects (more are dropped). ``with
    pool.borrow() as obj:`` does both. Acquiring never blocks: the pool bounds
    the idle objects it keeps, not how many may be in use.

    Under pressure the ``pools`` strategy calls :meth:`shrink`, which drops the
    idle objects beyond *min_idle*. If ``reset`` raises, the object is
    dropped and the error propagates to the caller of ``release``.
    """

    __module__ = "hivemem"

    def __init__(
        self,
        factory: Callable[[], T],
        *,
        maxsize: int,
        reset: Callable[[T], object] | None = None,
        min_idle: int = 0,
    ) -> None:
        if not callable(factory):
            raise InvalidArgument(
                f"factory={factory!r} is not callable: expected a function returning a new object"
            )
        if reset is not None and not callable(reset):
            raise InvalidArgument(
                f"reset={reset!r} is not callable: expected None or a function of one object"
            )
        _check_count("maxsize", maxsize, 1)
        _check_count("min_idle", min_idle, 0)
        if min_idle > maxsize:
            raise InvalidArgument(f"min_idle={min_idle!r} is larger than maxsize={maxsize!r}")
        self._factory = factory
        self._reset = reset
        self.maxsize = maxsize
        self.min_idle = min_idle
        self._idle: list[T] = []
        self._idle_ids: set[int] = set()  # id() of each idle object: the double-release check is O(1)
        self._releasing: set[int] = set()  # id() of objects whose reset is running now
        self.in_use = 0
        self._init_pool()
        _track(self)

    def acquire(self) -> T:
        """An idle object, or a new one from the factory."""
        with self._lock:
            self.in_use += 1
            if self._idle:
                self.reused += 1
                obj = self._idle.pop()
                self._idle_ids.discard(id(obj))
                return obj
        try:
            obj = self._factory()
        except BaseException:
            with self._lock:
                self.in_use -= 1
            raise
        with self._lock:
            self.created += 1
        return obj

    def release(self, obj: T) -> None:
        """Give *obj* back: reset it and keep it for reuse (or drop it when the pool is full).

        Releasing an object that is already idle, or that another thread is
        releasing at this moment, raises :class:`hivemem.InvalidArgument`
        and changes nothing.
        """
        key = id(obj)  # stable: the caller's reference keeps obj alive for the whole call
        with self._lock:  # checked and claimed under the lock, before reset runs
            if key in self._idle_ids or key in self._releasing:
                raise InvalidArgument(f"{_short(obj)} was already released to this pool")
            self._releasing.add(key)
        try:
            if self._reset is not None:
                self._reset(obj)
        except BaseException:
            with self._lock:
                self._releasing.discard(key)
                self.in_use = max(self.in_use - 1, 0)
                self.dropped += 1
            raise
        with self._lock:
            self._releasing.discard(key)
            self.in_use = max(self.in_use - 1, 0)
            if len(self._idle) < self.maxsize:
                self._idle.append(obj)
                self._idle_ids.add(key)
                return
            self.dropped += 1
        del obj  # destroyed outside the lock

    def discard(self, obj: T) -> None:
        """Forget an acquired object instead of pooling it (it is broken, or kept for good)."""
        with self._lock:
            self.in_use = max(self.in_use - 1, 0)
            self.dropped += 1

    def borrow(self) -> _Lease[T]:
        """``with pool.borrow() as obj:`` acquires, and releases on a clean exit."""
        return _Lease(self, ())

    def shrink(self, keep: int | None = None) -> int:
        """Drop idle objects beyond *keep* (default ``min_idle``), oldest first; return how many."""
        keep = self.min_idle if keep is None else _check_count("keep", keep, 0)
        with self._lock:
            excess = len(self._idle) - keep
            if excess <= 0:
                return 0
            gone = self._idle[:excess]
            del self._idle[:excess]
            for obj in gone:
                self._idle_ids.discard(id(obj))
            self.dropped += excess
        del gone  # destroyed outside the lock
        return excess

    def clear(self) -> int:
        """Drop every idle object; return how many."""
        return self.shrink(0)

    @property
    def idle(self) -> int:
        """Objects waiting for reuse."""
        return len(self._idle)

    def stats(self) -> dict[str, int]:
        """``idle``, ``in_use``, ``created``, ``reused``, ``dropped`` counts (JSON-safe)."""
        with self._lock:
            return {
                "idle": len(self._idle),
                "in_use": self.in_use,
                "created": self.created,
                "reused": self.reused,
                "dropped": self.dropped,
            }

    def __repr__(self) -> str:
        name = getattr(self._factory, "__qualname__", None) or repr(self._factory)
        return (
            f"ObjectPool({name}, maxsize={self.maxsize}, idle={len(self._idle)}, in_use={self.in_use}, "
            f"created={self.created}, reused={self.reused})"
        )


def _short(obj: object) -> str:
    return f"{type(obj).__name__} object at {id(obj):#x}"


def size_class(nbytes: int) -> int:
    """The capacity a request of *nbytes* gets: 64 bytes at least, then 4 classes per power of two.

    Rounding up at most 25% lets a request reuse a slightly larger buffer
    without the 2x waste of power-of-two classes.
    """
    if nbytes <= 64:
        return 64
    step = 1 << max((nbytes - 1).bit_length() - 3, 0)
    return -(-nbytes // step) * step


class BufferPool(_Pool):
    """A pool of ``bytearray`` buffers, bounded by the bytes its idle buffers hold.

    ``acquire(nbytes)`` returns a writable ``memoryview`` of exactly *nbytes*
    over a pooled ``bytearray`` (``view.obj``) whose capacity is *nbytes*
    rounded up by at most 25% (:func:`size_class`). ``release(view)`` (or the
    bytearray itself) keeps the buffer for reuse and releases the view, so a
    use after release raises ``ValueError`` instead of writing into a buffer
    someone else now holds. Views sliced from it stay valid: drop them
    before releasing.

    *max_bytes* bounds the idle buffers (a size: ``"64MB"``); when a release
    would exceed it, the oldest idle buffers are dropped first, and a buffer
    larger than *max_bytes* is never kept. Reused buffers keep their old
    contents unless ``zero=True``. Under pressure the ``pools`` strategy drops
    idle buffers down to *min_bytes*, oldest first.
    """

    __module__ = "hivemem"

    def __init__(self, max_bytes: int | str, *, min_bytes: int | str = 0, zero: bool = False) -> None:
        self.max_bytes = _check_size("max_bytes", max_bytes)
        self.min_bytes = _check_size("min_bytes", min_bytes)
        if self.max_bytes <= 0:
            raise InvalidArgument(f"max_bytes={max_bytes!r}: expected a size above zero, such as '64MB'")
        if self.min_bytes > self.max_bytes:
            raise InvalidArgument(f"min_bytes={min_bytes!r} is larger than max_bytes={max_bytes!r}")
        if not isinstance(zero, bool):
            raise InvalidArgument(f"zero={zero!r}: expected True or False")
        self.zero = zero
        self._idle: dict[int, list[bytearray]] = {}
        self._order: list[bytearray] = []  # idle buffers, oldest first
        self.idle_bytes = 0
        self._init_pool()
        _track(self)

    def acquire(self, nbytes: int) -> memoryview:
        """A writable view of exactly *nbytes* (0 to 1 PiB) over a pooled (or new) buffer."""
        _validate.count("nbytes", nbytes, minimum=0, maximum=_validate.MAX_SIZE)
        cap = size_class(nbytes)
        buf = None
        with self._lock:
            stack = self._idle.get(cap)
            if stack:
                buf = stack.pop()
                self._remove_order(buf)
                self.idle_bytes -= cap
                self.reused += 1
        if buf is None:
            buf = bytearray(cap)
            with self._lock:
                self.created += 1
        view = memoryview(buf)[:nbytes]
        if self.zero and nbytes:
            view[:] = bytes(nbytes)
        return view

    def _remove_order(self, buf: bytearray) -> None:
        for i in range(len(self._order) - 1, -1, -1):
            if self._order[i] is buf:
                del self._order[i]
                return

    def release(self, buffer: memoryview | bytearray) -> None:
        """Keep *buffer* (a view from :meth:`acquire` or its bytearray) for reuse."""
        if isinstance(buffer, memoryview):
            try:
                buf = buffer.obj
            except ValueError:  # a released view: released to the pool already, or by its owner
                raise InvalidArgument(
                    "release() got a view that was already released: each view from acquire() is "
                    "released once"
                ) from None
            if not isinstance(buf, bytearray):
                raise InvalidArgument(
                    f"release() expects a view from BufferPool.acquire(), got a view of {_validate.show(buf)}"
                )
            buffer.release()
        elif isinstance(buffer, bytearray):
            buf = buffer
        else:
            raise InvalidArgument(f"release() expects a memoryview or bytearray, got {type(buffer).__name__}")
        cap = len(buf)
        gone: list[bytearray] = []
        with self._lock:
            if any(b is buf for b in self._idle.get(cap, ())):
                raise InvalidArgument(f"{_short(buf)} was already released to this pool")
            if cap > self.max_bytes:
                self.dropped += 1
                return
            while self.idle_bytes + cap > self.max_bytes and self._order:
                gone.append(self._pop_oldest())
            self._idle.setdefault(cap, []).append(buf)
            self._order.append(buf)
            self.idle_bytes += cap
        del gone

    def discard(self, buffer: memoryview | bytearray) -> None:
        """Forget an acquired buffer instead of pooling it."""
        if isinstance(buffer, memoryview):
            buffer.release()
        with self._lock:
            self.dropped += 1

    def _pop_oldest(self) -> bytearray:
        buf = self._order.pop(0)
        stack = self._idle[len(buf)]
        for i in range(len(stack)):
            if stack[i] is buf:
                del stack[i]
                break
        if not stack:
            del self._idle[len(buf)]
        self.idle_bytes -= len(buf)
        self.dropped += 1
        return buf

    def borrow(self, nbytes: int) -> _Lease[memoryview]:
        """``with pool.borrow(n) as view:`` acquires, and releases on a clean exit."""
        return _Lease(self, (nbytes,))

    def shrink(self, keep_bytes: int | str | None = None) -> int:
        """Drop idle buffers, oldest first, until at most *keep_bytes* (default ``min_bytes``) stay idle.

        Returns the bytes dropped.
        """
        keep = self.min_bytes if keep_bytes is None else _check_size("keep_bytes", keep_bytes)
        gone: list[bytearray] = []
        with self._lock:
            while self.idle_bytes > keep and self._order:
                gone.append(self._pop_oldest())
        freed = sum(len(b) for b in gone)
        del gone
        return freed

    def clear(self) -> int:
        """Drop every idle buffer; return the bytes dropped."""
        return self.shrink(0)

    @property
    def idle(self) -> int:
        """Idle buffers waiting for reuse."""
        return len(self._order)

    def stats(self) -> dict[str, int]:
        """``idle``, ``idle_bytes``, ``created``, ``reused``, ``dropped`` (JSON-safe)."""
        with self._lock:
            return {
                "idle": len(self._order),
                "idle_bytes": self.idle_bytes,
                "created": self.created,
                "reused": self.reused,
                "dropped": self.dropped,
            }

    def __repr__(self) -> str:
        return (
            f"BufferPool(max_bytes={format_size(self.max_bytes)!r}, idle={len(self._order)}, "
            f"idle_bytes={format_size(self.idle_bytes)!r}, created={self.created}, reused={self.reused})"
        )
