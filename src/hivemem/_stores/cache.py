"""``hivemem.Cache`` and ``hivemem.cache``: caches bounded in bytes that shrink under pressure.

A :class:`Cache` is a mapping whose entries each have a weight in bytes.
It is bounded by ``max_bytes`` (and ``maxsize`` entries if given) and
evicts least recently used entries first. Every cache registers itself,
held weakly, with the ``caches`` strategy: under pressure a pass asks it to
give back the bytes the pass still needs, least recently used first, and
never more; it is emptied only in a CRITICAL pass that needs all of it (see
docs/caches.md). :func:`cache` memoizes a function in one.

Layout and threads (docs/caches.md, "Threads"):

- ``_data`` maps the program's keys to entries; ``_order`` holds the
  entries themselves, least recently used first. ``_order`` hashes entries
  by identity, so nothing in it calls the program's code.
- One lock guards ``_order``, the byte total and the eviction counts. The
  program's code never runs while it is held: weighers, keys' ``__hash__``
  and ``__eq__`` (the ``_data`` lookups) and the destructors of evicted
  values (the last references are dropped after the lock is released).
- A hit takes no lock: one ``_data`` lookup, one ``move_to_end`` and one
  counter step, each a single C call that the GIL makes atomic. On a
  free-threaded build the hit takes the lock instead.
- An entry is visible when it is in both ``_data`` and ``_order``, and
  counted while it is in ``_order``. Inserts add to ``_order`` first and
  evictions remove from ``_order`` first, so a race or an interrupt can
  only leave an entry counted but unreachable (it ages out like any other)
  or reachable from ``_data`` but no longer counted (the next lookup of its
  key treats it as a miss and drops it). A key never maps to a value other
  than one the program stored for it.
"""

from __future__ import annotations

import _thread
import itertools
import operator
import sys
from collections import OrderedDict
from collections.abc import MutableMapping

from hivemem import _validate
from hivemem._errors import InvalidArgument
from hivemem._frozen import Frozen
from hivemem._sizes import format_size
from hivemem._stores.live import LiveSet
from hivemem._typing import Generic, cast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Hashable, Iterator, Sequence
    from typing import Any, ParamSpec, Protocol, TypeVar

    #: What the weigher's walk casts a container it knows the class of to.
    Items = Collection[object]
    Rows = Sequence[object]

    K = TypeVar("K")
    V = TypeVar("V")
    P = ParamSpec("P")
    R = TypeVar("R")

    class CachedFunction(Protocol[P, R]):
        """What :func:`cache` returns: the function, with its cache's controls."""

        cache: Cache[Hashable, R]

        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
        def __get__(self, obj: object, objtype: type | None = None) -> CachedFunction[..., R]: ...

        cache_info: Callable[[], CacheInfo]
        cache_clear: Callable[[], None]
        cache_parameters: Callable[[], dict[str, object]]

    class CacheDecorator(Protocol):
        """What ``hivemem.cache(...)`` returns: it keeps the decorated function's signature."""

        def __call__(self, fn: Callable[P, R], /) -> CachedFunction[P, R]: ...

else:
    K = V = object

__all__ = ["KEEP", "Cache", "CacheInfo", "cache", "live_caches", "weigh"]

#: Default share of its bytes a cache keeps, most recently used first, in a pressure pass below CRITICAL.
KEEP = 0.1
#: Objects the default weigher looks at in one value, beyond the value itself.
WALK = 64
#: How deep the default weigher descends into nested containers.
DEPTH = 8

_MISSING = object()
_getsizeof = sys.getsizeof
_FLAT = frozenset({bytes, str, bytearray, float, complex, int})
#: Shared with the whole program: evicting a reference to one frees nothing.
_FREE = frozenset({type(None), bool, type(Ellipsis), type(NotImplemented)})
_SEQUENCES = frozenset({list, tuple, set, frozenset})
#: The ints CPython shares (-5 to 256): a reference to one frees nothing.
_SMALL_INTS = frozenset(range(-5, 257))
#: Classes, functions, methods and modules are shared with the rest of the program: weighed alone.
_SHALLOW = (type, type(sys), type(len), type(lambda: None), type(KEEP.__add__))
_GIL = getattr(sys, "_is_gil_enabled", lambda: True)()
_BYTES_HEADER = _getsizeof(b"")


def _new_lock(cache: Cache[object, object]) -> None:
    cache._lock = _thread.RLock()


_live: LiveSet[Cache[Any, Any]] = LiveSet(on_fork=_new_lock)


def live_caches() -> list[Cache[object, object]]:
    """Every :class:`Cache` still alive, in creation order (the ``caches`` strategy's work list)."""
    return _live.items()


# --------------------------------------------------------------------------- weights


def _sizeof(obj: object) -> int:
    try:
        return int(_getsizeof(obj))
    except Exception:  # a broken __sizeof__: the object's own header still exists
        return int(object.__sizeof__(obj))


def _ndarray(obj: object) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(obj, numpy.ndarray)


def _children(obj: object, cls: type) -> tuple[int, Iterator[object], int] | None:
    """``(extra bytes, iterator over what obj refers to, how many)`` for the walk; ``None``: a leaf."""
    if cls in _SEQUENCES:
        items = cast("Items", obj)  # list, tuple, set or frozenset
        n = len(items)
        if n > WALK and (cls is list or cls is tuple):
            # One item from each of WALK equal stretches, at a position that varies from stretch to
            # stretch (a fixed stride would alias with a row of alternating kinds).
            span = n // WALK
            picks = [i * span + (i * 2654435761) % span for i in range(WALK)]
            return 0, map(cast("Rows", obj).__getitem__, picks), n
        return 0, iter(items), n
    if isinstance(obj, dict):
        return 0, itertools.chain.from_iterable(obj.items()), 2 * len(obj)
    extra, refs = 0, list[object]()
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict):
        # The attribute names are interned and shared by every instance: only the values count.
        extra = _sizeof(attrs)
        refs.extend(attrs.values())
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if isinstance(name, str) and name not in ("__dict__", "__weakref__"):
                value = getattr(obj, name, _MISSING)
                if value is not _MISSING:
                    refs.append(value)
    return (extra, iter(refs), len(refs)) if refs or extra else None


def _node(obj: object, cls: type, seen: set[int], budget: list[int], depth: int) -> float:
    """The weight of *obj* (not a flat value, already in *seen*) and of what it refers to."""
    if isinstance(obj, _SHALLOW):
        return 0  # a class, function or module: shared with the program, freed with no entry
    size: float = _sizeof(obj)
    if type(obj) is memoryview:
        try:
            base = obj.obj
        except ValueError:  # a released view holds nothing else
            return size
        return size + (_walk_one(base, seen, budget, depth) if base is not None else 0)
    found: tuple[int, Iterator[object], int] | None
    if depth <= 0:
        return size
    if cls in _SEQUENCES or isinstance(obj, dict):
        found = _children(obj, cls)
    elif _ndarray(obj):
        # getsizeof counts the data an array owns; a view keeps its base (and its data) alive.
        array = cast("Any", obj)  # numpy is optional: no types for it
        base = array.base
        if base is not None:
            size += _walk_one(base, seen, budget, depth)
        if not array.dtype.hasobject:
            return size
        found = (0, iter(array.flat), array.size)
    else:
        try:
            found = _children(obj, cls)
        except Exception:
            return size
    if found is None:
        return size
    extra, refs, count = found
    walked = 0
    total = 0.0
    first: dict[int, float] = {}  # objects first met in this walk: their weight
    again: set[int] = set()  # ... met again in it
    getsizeof, flat, free, small = _getsizeof, _FLAT, _FREE, _SMALL_INTS
    try:
        for child in refs:
            if budget[0] <= 0:
                break
            budget[0] -= 1
            walked += 1
            ccls = type(child)
            if ccls in free or (ccls is int and child in small):
                continue  # a slot that weighs nothing
            key = id(child)
            if key in seen:
                if key in first:
                    again.add(key)
                continue
            seen.add(key)
            weight = getsizeof(child) if ccls in flat else _node(child, ccls, seen, budget, depth - 1)
            first[key] = weight
            total += weight
    except Exception:  # changed size while walked, or a child that cannot be iterated
        pass
    if walked and walked < count:
        # The items not reached weigh, per slot, what the objects met exactly once weighed per
        # slot reached (Good-Turing): ``[row] * 1000`` holds one row, not a thousand, while
        # a thousand distinct rows weigh a thousand times one. The walk is bounded.
        once = sum(w for k, w in first.items() if k not in again)
        total += (count - walked) * once / walked
    return size + extra + total


def _walk_one(obj: object, seen: set[int], budget: list[int], depth: int) -> float:
    cls = type(obj)
    if cls in _FREE or (cls is int and obj in _SMALL_INTS):
        return 0
    key = id(obj)
    if key in seen:
        return 0
    seen.add(key)
    budget[0] -= 1
    return _getsizeof(obj) if cls in _FLAT else _node(obj, cls, seen, budget, depth)


def weigh(value: object) -> int:
    """Bytes *value* keeps alive: the default weigher of :class:`Cache`.

    Exact, at the cost of one ``sys.getsizeof``, for ``bytes``, ``str`` and
    ``bytearray`` (the object with its buffer), ``float`` and ``int``.
    A ``memoryview`` weighs itself plus the object it views (a slice keeps
    its whole base alive); a NumPy array weighs its header plus the data it
    owns, and a view adds its base. Shared singletons (``None``, small ints)
    weigh 0.

    Containers (``list``, ``tuple``, ``set``, ``frozenset``, ``dict``) and
    other objects (through ``__dict__`` and ``__slots__``) are walked, in a
    **bounded walk**: at most :data:`WALK` objects and :data:`DEPTH` levels,
    each object counted once. A long list or tuple is sampled over its whole
    length (one item from each of :data:`WALK` stretches). The items a walk
    does not reach are weighed from those it did: per item, what the objects
    met exactly once weighed (so ``[row] * 1000`` weighs about one row, and
    a list of a million distinct floats, sampled with 64 ``getsizeof``
    calls, what the million floats do). The walk is an estimate for
    containers whose items differ in size; pass a ``weigher`` when you know
    better. Classes, functions and modules are shared with the rest of the
    program and weigh nothing. Never raises: an object whose
    ``__sizeof__`` fails weighs its bare header. Measured costs are in
    docs/caches.md ("Which cache to use").
    """
    cls = type(value)
    if type(value) is bytes:
        return _BYTES_HEADER + len(value)  # what getsizeof says, without the call
    if cls in _FLAT:
        return 0 if cls is int and value in _SMALL_INTS else _getsizeof(value)
    if cls in _FREE:
        return 0
    return int(_node(value, cls, {id(value)}, [WALK], DEPTH))


_weight_of: Callable[[_Entry[Any, Any]], int] = operator.attrgetter("weight")


class _Entry(Generic[K, V]):
    """One entry: hashed by identity in ``_order``, so ordering never calls the program's code."""

    __slots__ = ("key", "value", "weight")

    def __init__(self, key: K, value: V, weight: int) -> None:
        self.key = key
        self.value = value
        self.weight = weight


#: Bytes of bookkeeping freed with each entry: the entry object and ``_order``'s node for it
#: (four pointer-sized fields). The two hash tables are not counted: they keep their size
#: after an eviction, and shrink only when rebuilt.
ENTRY_OVERHEAD = _getsizeof(_Entry(None, None, 0)) + 4 * ((sys.maxsize.bit_length() + 1) // 8)


class CacheInfo(Frozen):
    """What a :class:`Cache` did, read at one moment (``cache.info()``, ``f.cache_info()``).

    ``hits`` / ``misses``  lookups that found / did not find their key
    ``maxsize``            the entry bound (``None``: none)
    ``currsize``           entries now (also ``entries``)
    ``bytes``              their weights summed; ``max_bytes`` the bound (``None``: none)
    ``evicted_size``       entries evicted to stay within ``max_bytes``/``maxsize``
    ``evicted_pressure``   entries evicted by pressure passes and :meth:`Cache.shrink`
    ``evicted_size_bytes`` / ``evicted_pressure_bytes``  their weights
    ``too_large``          values not stored because they alone weigh more than ``max_bytes``
    """

    __slots__ = (
        "bytes",
        "currsize",
        "evicted_pressure",
        "evicted_pressure_bytes",
        "evicted_size",
        "evicted_size_bytes",
        "hits",
        "max_bytes",
        "maxsize",
        "misses",
        "too_large",
    )
    __module__ = "hivemem"

    hits: int
    misses: int
    maxsize: int | None
    currsize: int
    bytes: int
    max_bytes: int | None
    evicted_size: int
    evicted_pressure: int
    evicted_size_bytes: int
    evicted_pressure_bytes: int
    too_large: int

    def __init__(
        self,
        *,
        hits: int,
        misses: int,
        maxsize: int | None,
        currsize: int,
        bytes: int,
        max_bytes: int | None,
        evicted_size: int,
        evicted_pressure: int,
        evicted_size_bytes: int,
        evicted_pressure_bytes: int,
        too_large: int,
    ) -> None:
        values = locals()
        self._set(**{name: values[name] for name in self.__slots__})

    @property
    def entries(self) -> int:
        """Entries now (``currsize``)."""
        return self.currsize

    @property
    def evictions(self) -> int:
        """Entries evicted, by both causes."""
        return self.evicted_size + self.evicted_pressure

    @property
    def hit_ratio(self) -> float | None:
        """``hits / (hits + misses)``, or ``None`` before the first lookup."""
        looked = self.hits + self.misses
        return None if not looked else self.hits / looked

    def to_dict(self) -> dict[str, int | None]:
        """Every field, JSON-safe."""
        return {name: getattr(self, name) for name in self.__slots__}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CacheInfo) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"CacheInfo(hits={self.hits}, misses={self.misses}, maxsize={self.maxsize}, "
            f"currsize={self.currsize}, bytes={self.bytes}, max_bytes={self.max_bytes}, "
            f"evicted_size={self.evicted_size}, evicted_pressure={self.evicted_pressure})"
        )


def _count_of(counter: itertools.count[int]) -> int:
    # itertools.count steps atomically in C; its repr is the only public read of its value.
    return int(repr(counter)[6:-1])


class Cache(MutableMapping[K, V]):
    """A thread-safe mapping bounded in bytes that evicts least recently used entries first.

    ``Cache(max_bytes, *, maxsize=None, weigher=None, keep=0.1)``

    *max_bytes* bounds the weights summed (a size: ``"64 MiB"``, ``2**26``;
    ``None``: only *maxsize* and pressure bound it); *maxsize* bounds the
    entries. Each entry weighs ``weigher(value)`` bytes; the default,
    :func:`weigh`, adds the key's weight and :data:`ENTRY_OVERHEAD` bytes of
    bookkeeping to the value's. A weigher that raises or returns anything
    but a whole number of bytes makes the insert raise
    :class:`hivemem.InvalidArgument`, with the cache unchanged; so does a
    value that alone weighs more than *max_bytes*.

    Under pressure the ``caches`` strategy asks the cache for the bytes its
    pass still needs (least recently used first, never more); below CRITICAL
    it keeps at least the *keep* share of its bytes, most recently used.

    Reads (``cache[key]``, ``get``) count hits and misses and make the entry
    the most recently used; ``key in cache``, :meth:`peek`, ``len``,
    iteration, :meth:`items` and :meth:`values` do neither. Iteration and
    the views are snapshots, least recently used first.
    """

    __module__ = "hivemem"

    def __init__(
        self,
        max_bytes: int | str | None,
        *,
        maxsize: int | None = None,
        weigher: Callable[[V], int] | None = None,
        keep: float = KEEP,
    ) -> None:
        self._max_bytes = _validate.size("max_bytes", max_bytes, allow_none=True)
        self._maxsize = _validate.count("maxsize", maxsize, minimum=0, allow_none=True)
        self._weigher = _validate.callable_or_none("weigher", weigher)
        self.keep = _validate.fraction("keep", keep, allow_zero=True)
        self._lock = _thread.RLock()
        self._data: dict[object, _Entry[K, V]] = {}
        self._order: OrderedDict[_Entry[K, V], None] = OrderedDict()
        self._bytes = 0
        self._hits = itertools.count()
        self._misses = itertools.count()
        self._hits_base = self._misses_base = 0
        self._evicted = {"size": 0, "pressure": 0}
        self._evicted_bytes = {"size": 0, "pressure": 0}
        self._too_large = 0
        # The hit path's two C calls, bound once (docs/caches.md, "Which cache to use").
        self._touch: Callable[[_Entry[K, V]], None] = self._order.move_to_end if _GIL else self._locked_touch
        _live.add(self)

    # ------------------------------------------------------------------ reading
    @property
    def max_bytes(self) -> int | None:
        """The bound on the weights summed, or ``None``."""
        return self._max_bytes

    @property
    def maxsize(self) -> int | None:
        """The bound on entries, or ``None``."""
        return self._maxsize

    @property
    def bytes(self) -> int:
        """The entries' weights summed, now."""
        return self._bytes

    def _locked_touch(self, entry: _Entry[K, V]) -> None:
        with self._lock:
            self._order.move_to_end(entry)

    def _stale(self, key: object, entry: _Entry[K, V]) -> None:
        """*entry* left ``_order`` but is still in ``_data`` (a race or an interrupt): drop it there."""
        next(self._misses)
        self._discard(key, entry)

    def __getitem__(self, key: K) -> V:
        entry = self._data.get(key)
        if entry is not None:
            try:
                self._touch(entry)
            except KeyError:
                self._stale(key, entry)
            else:
                next(self._hits)
                return entry.value
        else:
            next(self._misses)
        raise KeyError(key)

    def get(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        """The value for *key* (a hit, now most recently used), or *default* (a miss)."""
        entry = self._data.get(key)
        if entry is not None:
            try:
                self._touch(entry)
            except KeyError:
                self._stale(key, entry)
                return default
            next(self._hits)
            return entry.value
        next(self._misses)
        return default

    def peek(self, key: K, default: V | None = None) -> V | None:
        """The value for *key*, or *default*, without counting a hit or miss or touching recency."""
        entry = self._data.get(key)
        if entry is None or entry not in self._order:
            return default
        return entry.value

    def __contains__(self, key: object) -> bool:
        entry = self._data.get(key)
        return entry is not None and entry in self._order

    def __len__(self) -> int:
        return len(self._order)

    def _snapshot(self) -> list[_Entry[K, V]]:
        with self._lock:
            return list(self._order)

    def __iter__(self) -> Iterator[K]:
        return iter([e.key for e in self._snapshot()])

    def items(self) -> list[tuple[K, V]]:  # type: ignore[override]
        """``(key, value)`` pairs, least recently used first: a snapshot."""
        return [(e.key, e.value) for e in self._snapshot()]

    def values(self) -> list[V]:  # type: ignore[override]
        """Values, least recently used first: a snapshot."""
        return [e.value for e in self._snapshot()]

    def keys(self) -> list[K]:  # type: ignore[override]
        """Keys, least recently used first: a snapshot."""
        return [e.key for e in self._snapshot()]

    # ------------------------------------------------------------------ writing
    def _weigh(self, key: K, value: V) -> int:
        """The entry's weight, checked; raises InvalidArgument before anything changes."""
        if self._weigher is None:
            return weigh(value) + weigh(key) + ENTRY_OVERHEAD
        try:
            weight = self._weigher(value)
        except MemoryError:
            raise  # not the weigher's fault: the process is out of memory
        except Exception as exc:
            raise InvalidArgument(
                f"weigher {_validate.show(self._weigher)} raised {type(exc).__name__}: {exc} "
                f"for the value of key {_validate.show(key)}; the entry was not stored"
            ) from exc
        number = -1
        if not isinstance(weight, bool):
            try:
                number = operator.index(weight)  # int, numpy.int64, ...
            except Exception:
                pass
        if not 0 <= number <= _validate.MAX_SIZE:
            raise InvalidArgument(
                f"weigher {_validate.show(self._weigher)} returned {_validate.show(weight)} for the "
                f"value of key {_validate.show(key)}: expected a whole number of bytes between 0 "
                f"and {_validate.MAX_SIZE:,}; the entry was not stored"
            )
        return number

    def __setitem__(self, key: K, value: V) -> None:
        self._put(key, value, strict=True)

    def _put(self, key: K, value: V, *, strict: bool = False) -> bool:
        """Store *value* under *key*; ``False`` (nothing changed) when it alone outweighs max_bytes.

        With *strict* an oversized value raises :class:`hivemem.InvalidArgument` instead.
        """
        weight = self._weigh(key, value)
        hash(key)  # an unhashable key raises TypeError here, before anything changes
        if self._max_bytes is not None and weight > self._max_bytes:
            with self._lock:
                self._too_large += 1
            if strict:
                raise InvalidArgument(
                    f"the value for key {_validate.show(key)} weighs {format_size(weight)}, more than "
                    f"max_bytes={format_size(self._max_bytes)}: it was not stored"
                )
            return False
        if self._maxsize == 0:
            return True  # like lru_cache(maxsize=0): nothing is ever stored
        entry = _Entry(key, value, weight)
        with self._lock:
            try:
                self._order[entry] = None
                self._bytes += weight
            except BaseException:
                self._resync()
                raise
        victims: list[_Entry[K, V]] = []
        old = self._data.pop(key, None)
        winner = self._data.setdefault(key, entry)
        with self._lock:
            try:
                if old is not None and self._order.pop(old, _MISSING) is not _MISSING:
                    self._bytes -= old.weight  # replaced: not an eviction
                if winner is not entry and self._order.pop(entry, _MISSING) is not _MISSING:
                    self._bytes -= weight  # another thread stored the same key in between: its entry stays
                alive = entry in self._order
                self._pop_over_bounds(victims)
            except BaseException:
                self._resync()
                raise
        if not alive:
            self._discard(key, entry)
        self._forget(victims)
        return True

    def _pop_over_bounds(self, victims: list[_Entry[K, V]]) -> None:
        """With the lock held: pop least recently used entries until both bounds hold."""
        order, cap, most = self._order, self._max_bytes, self._maxsize
        total = self._bytes
        if (cap is None or total <= cap) and (most is None or len(order) <= most):
            return
        gone = 0
        while order and ((cap is not None and total > cap) or (most is not None and len(order) > most)):
            entry = order.popitem(last=False)[0]
            victims.append(entry)
            total -= entry.weight
            gone += entry.weight
        self._bytes = total
        self._evicted["size"] += len(victims)
        self._evicted_bytes["size"] += gone

    def _resync(self) -> None:
        """With the lock held, after an interrupt mid-update: recount the bytes from ``_order``."""
        self._bytes = sum(map(_weight_of, self._order))

    def _discard(self, key: object, entry: _Entry[K, V]) -> None:
        """Remove *key* from ``_data`` if it still maps to *entry* (never a newer entry)."""
        current = self._data.pop(key, None)
        if current is not None and current is not entry:
            self._data.setdefault(key, current)  # a newer entry: put it back

    def _forget(self, victims: list[_Entry[K, V]]) -> None:
        """Take popped entries out of ``_data`` (:meth:`_discard` for each).

        Runs without the lock: the keys' ``__hash__``/``__eq__`` run here, and the values'
        destructors when the caller drops *victims*.
        """
        data = self._data
        for entry in victims:
            current = data.pop(entry.key, None)
            if current is not None and current is not entry:
                data.setdefault(entry.key, current)  # a newer entry: put it back

    @staticmethod
    def _released(victims: list[_Entry[K, V]]) -> int:
        """The weight of *victims* whose values nothing else references (freed with the entry)."""
        getrefcount = sys.getrefcount
        # References: the entry's slot and getrefcount's own argument.
        return sum([e.weight for e in victims if getrefcount(e.value) <= 2])

    def __delitem__(self, key: K) -> None:
        if self._pop_entry(key) is None:
            raise KeyError(key)

    def _pop_entry(self, key: object) -> _Entry[K, V] | None:
        entry = self._data.pop(key, None)
        if entry is None:
            return None
        with self._lock:
            try:
                if self._order.pop(entry, _MISSING) is _MISSING:
                    return None  # already evicted: the key was not visible
                self._bytes -= entry.weight
            except BaseException:
                self._resync()
                raise
        return entry

    def pop(self, key: K, default: object = _MISSING) -> V:
        """Remove *key* and return its value (or *default*; ``KeyError`` without one)."""
        entry = self._pop_entry(key)
        if entry is None:
            if default is _MISSING:
                raise KeyError(key)
            return default  # type: ignore[return-value]
        return entry.value

    def popitem(self) -> tuple[K, V]:
        """Remove and return the least recently used ``(key, value)``; ``KeyError`` when empty."""
        with self._lock:
            if not self._order:
                raise KeyError("popitem(): the cache is empty")
            try:
                entry = self._order.popitem(last=False)[0]
                self._bytes -= entry.weight
            except BaseException:
                self._resync()
                raise
        self._discard(entry.key, entry)
        return entry.key, entry.value

    def clear(self) -> None:
        """Remove every entry (statistics are kept; ``cache_clear()`` of :func:`cache` resets them)."""
        self._drop_all(None)

    def _drop_all(self, cause: str | None) -> tuple[int, int, int]:
        with self._lock:
            gone = list(self._order)
            try:
                self._order.clear()
                self._bytes = 0
            except BaseException:
                self._resync()
                raise
            weight = sum(map(_weight_of, gone))
            if cause is not None:
                self._evicted[cause] += len(gone)
                self._evicted_bytes[cause] += weight
        self._data.clear()
        released = self._released(gone) if cause is not None else 0
        return len(gone), weight, released

    # ------------------------------------------------------------------ pressure
    def shrink(self, nbytes: int | str, *, keep: float = 0.0) -> dict[str, int]:
        """Evict least recently used entries until *nbytes* of weight are gone; never more.

        Stops rather than leave less than the *keep* share of the bytes held
        now (``0.0``: may empty the cache). The last entry evicted may
        take the total past *nbytes* by less than its own weight. Counted as
        pressure evictions. Returns ``entries`` and ``bytes`` evicted, and
        ``released``: the weight of evicted values nothing else referenced
        (those went back to Python's allocators at once).
        """
        budget = _validate.size("nbytes", nbytes)
        share = _validate.fraction("keep", keep, allow_zero=True)
        assert budget is not None
        got = self._evict(budget, int(self._bytes * share))
        del got["more"]
        return got

    def _evict(self, budget: int, floor: int, most: int | None = None) -> dict[str, int]:
        """``shrink`` with the floor in bytes (a pass fixes it once, however often it asks).

        *most* bounds the entries evicted in this call (a pass slicing its work asks
        again); ``more`` in the result says the call stopped there, not at the
        budget, the floor or an empty cache.
        """
        if budget and floor <= 0 and budget >= self._bytes and most is None:
            entries, weight, released = self._drop_all("pressure")
            return {"entries": entries, "bytes": weight, "released": released, "more": 0}
        victims: list[_Entry[K, V]] = []
        gone = more = 0
        with self._lock:
            try:
                order = self._order
                while order and gone < budget:
                    if most is not None and len(victims) >= most:
                        more = 1
                        break
                    entry = order.popitem(last=False)[0]
                    if self._bytes - entry.weight < floor:  # it would go below the floor: put it back
                        order[entry] = None
                        order.move_to_end(entry, last=False)
                        break
                    victims.append(entry)
                    self._bytes -= entry.weight
                    gone += entry.weight
                self._evicted["pressure"] += len(victims)
                self._evicted_bytes["pressure"] += gone
            except BaseException:
                self._resync()
                raise
        self._forget(victims)
        return {"entries": len(victims), "bytes": gone, "released": self._released(victims), "more": more}

    # ------------------------------------------------------------------ reports
    def info(self) -> CacheInfo:
        """Hits, misses, entries, bytes and evictions by cause, read now."""
        with self._lock:
            return CacheInfo(
                hits=_count_of(self._hits) - self._hits_base,
                misses=_count_of(self._misses) - self._misses_base,
                maxsize=self._maxsize,
                currsize=len(self._order),
                bytes=self._bytes,
                max_bytes=self._max_bytes,
                evicted_size=self._evicted["size"],
                evicted_pressure=self._evicted["pressure"],
                evicted_size_bytes=self._evicted_bytes["size"],
                evicted_pressure_bytes=self._evicted_bytes["pressure"],
                too_large=self._too_large,
            )

    def reset_stats(self) -> None:
        """Start hits, misses, evictions and ``too_large`` from zero again."""
        with self._lock:
            self._hits_base = _count_of(self._hits)
            self._misses_base = _count_of(self._misses)
            self._evicted = {"size": 0, "pressure": 0}
            self._evicted_bytes = {"size": 0, "pressure": 0}
            self._too_large = 0

    def __repr__(self) -> str:
        bound = "None" if self._max_bytes is None else repr(format_size(self._max_bytes))
        info = self.info()
        return (
            f"Cache(entries={info.currsize:,}, bytes={format_size(info.bytes)!r}, max_bytes={bound}, "
            f"hits={info.hits:,}, misses={info.misses:,}, evictions={info.evictions:,})"
        )

    # A cache is a mapping, compared by content like a dict; it is not hashable.
    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> Cache[K, V]:
        """A new cache with the same bounds, weigher and entries (same recency order), fresh statistics."""
        twin: Cache[K, V] = Cache(
            self._max_bytes, maxsize=self._maxsize, weigher=self._weigher, keep=self.keep
        )
        for entry in self._snapshot():
            twin._put(entry.key, entry.value)
        return twin

    __copy__ = copy

    def __reduce_ex__(self, protocol: object) -> tuple[object, ...]:
        # Copying the instance dict would share its tables and lock between two caches.
        raise TypeError(
            "a hivemem.Cache cannot be pickled or deep-copied (it holds a lock and live tables); "
            "use cache.copy(), or dict(cache.items()) for its contents"
        )


# --------------------------------------------------------------------------- the decorator

_KWARGS = object()  # separates positional from keyword arguments in a key
_FAST = frozenset({int, str})


def cache(
    *,
    max_bytes: int | str | None,
    maxsize: int | None = None,
    typed: bool = False,
    weigher: Callable[[Any], int] | None = None,
    keep: float = KEEP,
) -> CacheDecorator:
    """Memoize a function in a :class:`Cache`: ``@hivemem.cache(max_bytes="64 MiB")``.

    Keys are built as ``functools.lru_cache`` builds them: the positional
    arguments, then the keyword arguments in the order given (``f(a=1, b=2)``
    and ``f(b=2, a=1)`` are two entries); with ``typed=True`` arguments of
    different types are cached apart (``f(1)`` and ``f(1.0)``). Every
    argument must be hashable. *max_bytes*, *maxsize*, *weigher* and *keep*
    are :class:`Cache`'s. A result that alone weighs more than *max_bytes* is
    returned and not stored (``cache_info().too_large``).

    The wrapper has ``cache_info()``, ``cache_clear()`` (which also resets
    the statistics), ``cache_parameters()``, ``cache`` (the :class:`Cache`)
    and ``__wrapped__``. It holds no lock while the function runs: two
    threads that miss the same key at once both call the function, and the
    result stored last stays, as with ``functools.lru_cache``. Exceptions
    are not cached.
    """
    if not isinstance(typed, bool):
        raise InvalidArgument(f"typed={_validate.show(typed)}: expected True or False")
    store: Cache[object, object] = Cache(max_bytes, maxsize=maxsize, weigher=weigher, keep=keep)

    def decorate(fn: Callable[P, R]) -> CachedFunction[P, R]:
        if not callable(fn):
            raise InvalidArgument(
                f"hivemem.cache(...) decorates a callable, got {_validate.show(fn)}; "
                "write @hivemem.cache(max_bytes=...) above a def"
            )
        wrapper = _typed_wrapper(fn, store) if typed else _wrapper(fn, store)
        return _finish(wrapper, fn, store, typed)

    return decorate


def _wrapper(fn: Callable[..., object], store: Cache[object, object]) -> Callable[..., object]:
    lookup, touch, put = store._data.get, store._touch, store._put
    hits, misses = store._hits, store._misses
    fast, mark = _FAST, _KWARGS

    def wrapper(*args: object, **kwargs: object) -> object:
        if kwargs:
            key: object = (*args, mark, *kwargs.items())
        elif len(args) == 1 and type(args[0]) in fast:
            key = args[0]
        else:
            key = args
        entry = lookup(key)
        if entry is not None:
            try:
                touch(entry)
            except KeyError:
                store._stale(key, entry)
            else:
                next(hits)
                return entry.value
        else:
            next(misses)
        value = fn(*args, **kwargs)
        put(key, value)
        return value

    return wrapper


# _wrapper but for the key, on purpose: a hit costs ~250 ns (docs/caches.md, "Which cache to use");
# a shared inner call adds a call per hit, and one wrapper testing ``typed`` made untyped hits ~13 ns slower.
def _typed_wrapper(fn: Callable[..., object], store: Cache[object, object]) -> Callable[..., object]:
    lookup, touch, put = store._data.get, store._touch, store._put
    hits, misses = store._hits, store._misses
    mark = _KWARGS

    def wrapper(*args: object, **kwargs: object) -> object:
        key: object = (
            *args,
            mark,
            *kwargs.items(),
            *[type(a) for a in args],
            *[type(v) for v in kwargs.values()],
        )
        entry = lookup(key)
        if entry is not None:
            try:
                touch(entry)
            except KeyError:
                store._stale(key, entry)
            else:
                next(hits)
                return entry.value
        else:
            next(misses)
        value = fn(*args, **kwargs)
        put(key, value)
        return value

    return wrapper


def _finish(
    wrapper: Callable[..., object], fn: Callable[P, R], store: Cache[object, object], typed: bool
) -> CachedFunction[P, R]:
    import functools

    functools.update_wrapper(wrapper, fn)

    def cache_info() -> CacheInfo:
        """Hits, misses, entries, bytes and evictions by cause (see ``hivemem.Cache.info``)."""
        return store.info()

    def cache_clear() -> None:
        """Empty the cache and reset its statistics, like ``functools.lru_cache``."""
        store.clear()
        store.reset_stats()

    def cache_parameters() -> dict[str, object]:
        """``max_bytes``, ``maxsize``, ``typed``, ``weigher`` and ``keep``, as given."""
        return {
            "max_bytes": store.max_bytes,
            "maxsize": store.maxsize,
            "typed": typed,
            "weigher": store._weigher,
            "keep": store.keep,
        }

    done = cast("CachedFunction[P, R]", wrapper)  # the attributes it lacks are set here
    done.cache = cast("Cache[Hashable, R]", store)
    done.cache_info = cache_info
    done.cache_clear = cache_clear
    done.cache_parameters = cache_parameters
    return done
