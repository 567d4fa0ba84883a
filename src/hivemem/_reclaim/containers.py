"""Containers the application hands to hivemem: string deduplication and heap compaction.

``register_container(obj)`` lets ``dedup_strings`` replace equal ``str``
values inside *obj* (and its nested lists, dicts and tuples) by one
canonical instance. ``compactable(obj)`` lets ``compact`` rebuild *obj*'s
contents so that they pack into few pymalloc arenas. ``StringPool`` prevents
duplicates at ingestion. ``fragmentation()`` says how much of the heap is
free space trapped inside pymalloc arenas.

Holding: objects whose type allows weak references (subclasses of ``list``
and ``dict``, ``collections.deque``, ...) are held weakly; plain ``list``,
``dict`` and ``set`` objects cannot be, so they are held strongly until
``unregister_container(obj)`` / ``uncompactable(obj)``.

Threads: a container registered with ``lock=`` is touched only while
hivemem holds that lock (acquired without waiting; busy means "skip it this
pass"). A container registered without a lock is touched only while no
other Python thread runs; otherwise it is skipped with that reason. So a
concurrent writer never loses a write and a concurrent reader never sees a
container half rebuilt.
"""

from __future__ import annotations

import sys

from hivemem._errors import InvalidArgument
from hivemem._frozen import Frozen
from hivemem._reclaim.held import HeldSet

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import TypeVar

    T = TypeVar("T")

__all__ = [
    "MIN_FREE",
    "Fragmentation",
    "StringPool",
    "compact_registry",
    "compactable",
    "dedup_registry",
    "fragmentation",
    "register_container",
    "uncompactable",
    "unregister_container",
]

#: What register_container() registered: dedup_strings (_reclaim.dedup) walks it.
dedup_registry = HeldSet("container")
#: What compactable() registered: compact (_reclaim.compaction) rebuilds it.
compact_registry = HeldSet("compactable")

# ---------------------------------------------------------------------------- registration


def register_container(obj: T, *, lock: object = None, keys: bool = False) -> T:
    """Let ``dedup_strings`` merge equal strings inside *obj*; returns *obj*.

    *obj* is a ``list`` or ``dict`` (or a subclass); its nested lists, dicts
    and tuples are covered too. Deduplication keeps every container's size,
    order and equality; only ``str`` objects (exact type) are swapped for an
    equal instance, and a nested tuple referenced only by its parent may be
    replaced by an equal tuple. Dict keys are left alone unless
    ``keys=True``, which allows rebuilding a dict (same order and contents)
    to merge its keys.

    *lock*: the lock your code holds while it mutates *obj* (see the module
    docs). Plain lists and dicts are held strongly: call
    :func:`unregister_container` when done with them.
    """
    from hivemem._validate import show

    if not isinstance(obj, (list, dict)):
        raise InvalidArgument(
            f"register_container() expects a list or a dict (nested lists, dicts and tuples are "
            f"covered), got {type(obj).__name__}"
        )
    if not isinstance(keys, bool):
        raise InvalidArgument(f"keys={show(keys)}: expected True or False")
    dedup_registry.add(obj, lock, keys=keys)
    return obj


def unregister_container(obj: object) -> bool:
    """Stop deduplicating *obj*; returns whether it was registered."""
    return dedup_registry.remove(obj)


def _compactable_kind(obj: object) -> str | None:
    from collections import deque

    for kind in (list, dict, set, deque):
        if isinstance(obj, kind):
            return kind.__name__
    return None


def compactable(obj: T, *, lock: object = None) -> T:
    """Let ``compact`` rebuild *obj*'s contents to defragment the heap; returns *obj*.

    *obj* is a ``list``, ``dict``, ``set`` or ``collections.deque`` (or a
    subclass) that owns its contents. At the aggressive level ``compact``
    serializes the contents (pickle protocol 5), empties *obj* in place, lets
    the allocators release the emptied arenas and loads the contents back
    into the same object. *obj* keeps its identity and compares equal; **the
    objects inside get new identities**, so do not keep references to them
    across a compaction (look them up again). A container with an object
    inside, at any depth, that is also referenced (or weakly referenced)
    from elsewhere is skipped with the path of that object: it would be
    copied, not moved. Contents that cannot be pickled, or whose pickle
    does not load back, are skipped with the reason; nothing is emptied
    before every container is proved rebuildable (docs/containers.md).

    *lock*: the lock your code holds while it reads or mutates *obj*; held
    for the whole compaction. Without one, *obj* is compacted only when no
    other Python thread is running. Plain containers are held strongly until
    :func:`uncompactable`.
    """
    if _compactable_kind(obj) is None:
        raise InvalidArgument(
            f"compactable() expects a list, dict, set or collections.deque, got {type(obj).__name__}"
        )
    compact_registry.add(obj, lock)
    return obj


def uncompactable(obj: object) -> bool:
    """Stop compacting *obj*; returns whether it was registered."""
    return compact_registry.remove(obj)


# ---------------------------------------------------------------------------- StringPool


class StringPool:
    """Intern strings at ingestion so equal values share one object.

    ``pool = hivemem.StringPool()``; ``row = [pool(v) for v in line.split(",")]``
    keeps one ``str`` per distinct value instead of one per row. Reading a
    CSV-like table of 2M rows with a few distinct values per column this way
    saved the RSS figure in ``benchmarks/results/strategies.json``
    (scenario ``duplicate_strings``).

    Anything that is not exactly a ``str`` is returned unchanged, so the pool
    can be applied to parsed JSON values. :meth:`pairs` is a ready
    ``object_pairs_hook`` for ``json.loads``. *max_size* bounds the number of
    distinct strings kept (beyond it new values pass through unpooled);
    *max_length* leaves longer strings alone (long values are rarely
    repeated); each is a whole number from 0 to 10**9, or ``None`` for no
    bound, checked at construction. The pool holds its strings until :meth:`clear` or until it is
    dropped; it never uses ``sys.intern`` (interned strings can be immortal).

    Counters: ``hits`` (values replaced by a pooled instance), ``misses``
    (new values pooled) and ``saved`` (``sys.getsizeof`` of the values
    replaced: the allocator bytes they would otherwise occupy if the caller
    kept them). Thread-safe for the pooled values; under concurrent use the
    counters may undercount.
    """

    __module__ = "hivemem"
    __slots__ = ("_table", "hits", "max_length", "max_size", "misses", "saved")

    def __init__(self, *, max_size: int | None = None, max_length: int | None = 1024) -> None:
        from hivemem._validate import count

        self._table: dict[str, str] = {}
        self.max_size = count("max_size", max_size, minimum=0, allow_none=True)
        self.max_length = count("max_length", max_length, minimum=0, allow_none=True)
        self.hits = 0
        self.misses = 0
        self.saved = 0

    def __call__(self, value: object) -> object:
        """The pooled instance equal to *value* (a ``str``), or *value* itself."""
        if type(value) is not str:
            return value
        table = self._table
        found = table.get(value)
        if found is not None:
            if found is not value:
                self.hits += 1
                self.saved += sys.getsizeof(value)
            return found
        if (self.max_length is not None and len(value) > self.max_length) or (
            self.max_size is not None and len(table) >= self.max_size
        ):
            return value
        found = table.setdefault(value, value)
        if found is value:
            self.misses += 1
        return found

    intern = __call__

    def map(self, values: Iterable[object]) -> list[object]:
        """``[pool(v) for v in values]``: a row of fields."""
        return [self(v) for v in values]

    def pairs(self, pairs: Iterable[tuple[object, object]]) -> dict[object, object]:
        """``json.loads(text, object_pairs_hook=pool.pairs)``: keys and string values pooled."""
        return {self(k): self(v) for k, v in pairs}

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, value: object) -> bool:
        return value in self._table

    @property
    def nbytes(self) -> int:
        """``sys.getsizeof`` of the distinct strings the pool holds."""
        return sum(map(sys.getsizeof, list(self._table)))

    def clear(self) -> None:
        """Forget every pooled string (strings still used elsewhere stay alive there)."""
        self._table = {}

    def to_dict(self) -> dict[str, object]:
        return {"distinct": len(self), "hits": self.hits, "misses": self.misses, "saved": self.saved}

    def __repr__(self) -> str:
        from hivemem._sizes import format_size

        return (
            f"StringPool(distinct={len(self):,}, hits={self.hits:,}, misses={self.misses:,}, "
            f"saved={format_size(self.saved)!r})"
        )


# ---------------------------------------------------------------------------- fragmentation


class Fragmentation(Frozen):
    """How much of the heap is free space allocators hold but cannot give back. Bytes.

    ``pymalloc_arenas``   bytes in pymalloc's arenas (small objects, <= 512 B)
    ``pymalloc_live``     bytes of live blocks in them
    ``pymalloc_free``     free blocks and unused pools inside them: an arena
                          returns to the OS only when all of it is free, so
                          this is fragmentation that ``compact`` can undo
    ``malloc_free``       free bytes inside glibc malloc's heap, what
                          ``malloc_trim`` can return (``None`` off glibc)
    ``ratio``             ``pymalloc_free / pymalloc_arenas``

    Why freed memory stays in the arenas, and what gives it back: docs/design.md, "Fragmentation".
    """

    __module__ = "hivemem"
    __slots__ = ("malloc_free", "pymalloc_arenas", "pymalloc_free", "pymalloc_live")

    pymalloc_arenas: int
    pymalloc_live: int
    pymalloc_free: int
    malloc_free: int | None

    def __init__(
        self, *, pymalloc_arenas: int, pymalloc_live: int, pymalloc_free: int, malloc_free: int | None
    ):
        self._set(
            pymalloc_arenas=pymalloc_arenas,
            pymalloc_live=pymalloc_live,
            pymalloc_free=pymalloc_free,
            malloc_free=malloc_free,
        )

    @property
    def ratio(self) -> float:
        return self.pymalloc_free / self.pymalloc_arenas if self.pymalloc_arenas else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "pymalloc_arenas": self.pymalloc_arenas,
            "pymalloc_live": self.pymalloc_live,
            "pymalloc_free": self.pymalloc_free,
            "malloc_free": self.malloc_free,
            "ratio": self.ratio,
        }

    def advice(self) -> str:
        """One sentence for people."""
        from hivemem._sizes import format_size as fs

        text = (
            f"{fs(self.pymalloc_free)} of {fs(self.pymalloc_arenas)} in pymalloc arenas is free space "
            f"({self.ratio:.0%} fragmentation)"
        )
        if self.pymalloc_free >= MIN_FREE:
            text += (
                "; register the containers that hold your data with hivemem.compactable(...) and "
                "run optimize(aggressiveness='aggressive') to pack them into fewer arenas"
            )
        if self.malloc_free:
            text += f"; {fs(self.malloc_free)} is free inside malloc's heap (the trim strategy returns it)"
        return text + "."

    def __str__(self) -> str:
        return self.advice()

    def __repr__(self) -> str:
        from hivemem._sizes import format_size as fs

        malloc = fs(self.malloc_free) if self.malloc_free is not None else None
        return (
            f"Fragmentation(pymalloc_free={fs(self.pymalloc_free)!r}, pymalloc_arenas="
            f"{fs(self.pymalloc_arenas)!r}, ratio={self.ratio:.2f}, malloc_free={malloc!r})"
        )

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        yield from self.to_dict().items()

    def _repr_html_(self) -> str:
        from html import escape

        return f"<p>{escape(self.advice())}</p>"


def fragmentation() -> Fragmentation:
    """Measure fragmentation now (``sys._debugmallocstats`` and glibc's ``mallinfo2``; ~ms).

    Raises :class:`hivemem.Unavailable` where pymalloc's statistics cannot
    be read (a build without pymalloc, or ``PYTHONMALLOC=malloc``).
    """
    from hivemem._measure.native import malloc_info, pymalloc_stats

    py = pymalloc_stats()
    if py is None:
        from hivemem._errors import Unavailable

        raise Unavailable(
            "pymalloc statistics are unavailable (pymalloc off or sys._debugmallocstats missing)"
        )
    libc = malloc_info()
    return Fragmentation(
        pymalloc_arenas=py["arenas"],
        pymalloc_live=py["allocated"],
        pymalloc_free=py["free"],
        malloc_free=None if libc is None else libc["free"],
    )


MIN_FREE = 16 * 2**20  # below this, fragmentation is not worth a rebuild
