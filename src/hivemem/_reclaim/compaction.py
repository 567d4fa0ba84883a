"""Heap compaction: rebuild registered containers so their survivors pack into few arenas.

The order is what makes it work (docs/containers.md): serialize the
survivors of every registered container first (pickle protocol 5, one memo
so objects shared between containers stay shared), empty the containers in
place, collect, trim, and only then load the contents back into the same
container objects. Loading after the release puts the survivors into fresh,
dense arenas; rebuilding first (``c[:] = loads(dumps(c))``) would put them
into the holes of the old, sparse arenas and pin those.

Nothing may be lost or changed, so before any container is emptied:

1. **Survey** (:func:`_survey`): walk the object graph below every container
   (``gc.get_referents``) and compare each object's reference count with
   the references the walk found inside the graph. An object with more
   references is also held from outside (a handler's ``cart =
   sessions["s1"]["cart"]``): rebuilding would leave that holder with the
   old copy, so the container is skipped with the reason. Containers that
   share objects are compacted together or not at all. Weakly referenced
   objects count as held from outside too. The survey also says whether
   every object is of a builtin type whose pickle always loads back.
2. **Serialize** under the memory ceiling (checked at every 64 KiB frame).
3. **Verify**: when the graph holds any other type, load the bytes once as
   a trial (frame by frame, under the ceiling) and drop the copy; a
   container whose contents pickle but do not load back (an ``Exception``
   whose ``__init__`` takes extra arguments, a ``__setstate__`` that raises)
   is skipped with the error. For builtin types only ``MemoryError`` can
   fail a load; for that, address space worth three times the serialized
   size is reserved (an untouched anonymous mapping: no RSS) and released
   before a retry.
4. **Swap**: empty, collect, trim, load, refill. Signals are deferred
   (main thread) from before the first lock is taken until the last is
   released; any exception during the swap puts every container back from
   the serialized bytes (idempotently: a container already refilled is
   emptied and refilled again, never doubled) before the error goes on.
"""

from __future__ import annotations

import gc
import sys

from hivemem._reclaim.containers import MIN_FREE
from hivemem._reclaim.containers import compact_registry as _registered
from hivemem._reclaim.held import access_problem, begin, close, defer_signals, finish, signal_pending
from hivemem._typing import cast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Callable
    from typing import Any

    from hivemem._reclaim.held import Entry, Hold

    #: What compactable() accepts (checked there): the kinds this module empties and refills.
    Container = list[Any] | dict[Any, Any] | set[Any] | deque[Any]
    #: A survey record, mutable and small on purpose (one per object met twice):
    #: [the object, references to it from inside the graph, its container's index, refcount or -1].
    Suspect = list[Any]

__all__ = ["compact_registered", "rescued"]

# Type categories for the survey.
_SKIP = 0  # no identity to split, or pickled by reference (identity kept): not walked
_PLAIN = 1  # builtin container whose pickle always loads back: walked
_SAFE = 2  # a class instance that loads back with no code of its own (see _loads_plainly): walked
_SAFE_DEL = 3  # the same, with a __del__
_CUSTOM = 4  # anything else with contents: walked, and the bytes must be verified by a trial load
_CUSTOM_DEL = 5  # the same, with a __del__ (which a trial copy would run)
_OPAQUE = 6  # anything else without GC support: no visible contents; verified

_FRAME = 64 * 1024
_CHUNK = 4096  # objects whose referents are fetched in one gc.get_referents call
_LOAD_TRIES = 3


class _Over(Exception):
    """The serialized copy (or the verification copy) would push RSS past the ceiling."""


class _Interrupted(Exception):
    """A deferred signal arrived before anything was changed: stop, change nothing."""


# ---------------------------------------------------------------------------- type table


def _base_categories() -> dict[type, int]:
    import types

    cats: dict[type, int] = dict.fromkeys(
        (str, bytes, int, float, complex, bool, type(None), type(Ellipsis), type(NotImplemented), range),
        _SKIP,
    )
    cats.update(dict.fromkeys((list, dict, set, frozenset, tuple, bytearray), _PLAIN))
    by_reference = (
        types.FunctionType,
        types.BuiltinFunctionType,
        types.ModuleType,
        types.MethodDescriptorType,
        types.WrapperDescriptorType,
        types.MethodWrapperType,
        types.ClassMethodDescriptorType,
    )
    cats.update(dict.fromkeys(by_reference, _SKIP))
    return cats


_STDLIB_VALUES = (
    ("datetime", ("date", "time", "datetime", "timedelta", "timezone")),
    ("decimal", ("Decimal",)),
    ("fractions", ("Fraction",)),
    ("uuid", ("UUID",)),
    ("ipaddress", ("IPv4Address", "IPv6Address", "IPv4Network", "IPv6Network")),
)


def _categorize(t: type, cats: dict[type, int]) -> int:
    """Category of a type not seen before in this pass (then cached in *cats*)."""
    cat = _CUSTOM
    if issubclass(t, type):
        cat = _SKIP  # a class: pickled by name
    else:
        enum = sys.modules.get("enum")
        if enum is not None and issubclass(t, enum.Enum):
            cat = _SKIP  # a member loads back as the same object
        for mod, names in _STDLIB_VALUES:
            m = sys.modules.get(mod)
            if m is not None and t in tuple(getattr(m, n, None) for n in names):
                cat = _SKIP  # immutable values: a copy is indistinguishable
        if cat == _CUSTOM:
            if not t.__flags__ & _HAVE_GC:
                cat = _OPAQUE
            elif _loads_plainly(t):
                cat = _SAFE
            if cat != _OPAQUE and _has_del(t):
                cat += 1
    cats[t] = cat
    return cat


_HAVE_GC = 1 << 14  # Py_TPFLAGS_HAVE_GC
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class defined in Python
# Methods through which a class takes part in its own pickling or attribute storage.
_PICKLE_HOOKS = (
    "__reduce__",
    "__reduce_ex__",
    "__getstate__",
    "__setstate__",
    "__getnewargs__",
    "__getnewargs_ex__",
    "__new__",
    "__getattribute__",
    "__getattr__",
)


def _loads_plainly(t: type) -> bool:
    """Instances of *t* load back running no code of *t*'s: only ``MemoryError`` can stop them.

    True for a Python class whose bases are Python classes and ``object``,
    with none of the pickle hooks (the default reduction: ``object.__new__``
    and the instance ``__dict__``/slots set back), no ``copyreg`` entry, and
    no ``__setattr__`` when it has slots (slot values are set back with
    ``setattr``). An ``Exception`` subclass, a ``dict`` subclass or a class
    with ``__setstate__`` runs code of its own when loaded: it is verified.
    """
    import copyreg

    if t in copyreg.dispatch_table or t.__mro__[-1] is not object:
        return False
    slots = setattr_ = False
    for c in t.__mro__[:-1]:
        if not c.__flags__ & _HEAPTYPE:
            return False  # a builtin base has its own reduction
        d = c.__dict__
        if any(name in d for name in _PICKLE_HOOKS):
            return False
        slots = slots or bool(d.get("__slots__"))
        setattr_ = setattr_ or "__setattr__" in d
    return not (slots and setattr_)


def _has_del(t: type) -> bool:
    return any("__del__" in c.__dict__ for c in t.__mro__ if c.__flags__ & _HEAPTYPE)


# ---------------------------------------------------------------------------- the survey


class _Survey:
    """What the walk below the candidate containers found."""

    __slots__ = (
        "cats",
        "custom",
        "finalized",
        "inner",
        "instances",
        "nbytes",
        "objects",
        "parent",
        "problems",
        "suspects",
        "weak",
    )

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))  # union-find over containers that share objects
        self.custom = [0] * n  # objects below each container whose loading must be verified
        self.finalized = [0] * n  # objects below each container whose class has a __del__
        self.objects = 0  # identity-bearing objects walked
        self.nbytes = 0  # a bound on their size (see _scan)
        self.instances = [0] * n  # class instances below each container
        self.problems: dict[int, str] = {}  # container index -> why it cannot be compacted
        # id -> [object, references found inside the graph, container index, reference count seen]
        self.suspects: dict[int, Suspect] = {}
        self.inner: list[tuple[int, int]] = []  # (outer, inner): a registered container inside one
        self.weak: list[tuple[int, type]] = []  # (container, type) of objects weakly held or opaque
        self.cats: dict[type, int] = {}  # every type met, and its category

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def _first_level(root: object) -> list[object]:
    """The contents of a registered container, read with the base type's methods.

    One reference per item, like ``gc.get_referents`` gives for nested
    objects; a subclass's attributes are not contents and are left out.
    """
    from collections import OrderedDict, deque

    if isinstance(root, list):
        return list.copy(root)
    if isinstance(root, OrderedDict):
        return [*OrderedDict.keys(root), *OrderedDict.values(root)]
    if isinstance(root, dict):
        return [*dict.keys(root), *dict.values(root)]
    if isinstance(root, set):
        return list(set.__iter__(root))
    if isinstance(root, deque):
        return list(deque.__iter__(root))
    raise TypeError(type(root).__name__)  # pragma: no cover - compactable() refuses others


def _scan(
    refs: list[object],
    i: int,
    base: int,
    survey: _Survey,
    cats: dict[type, int],
    skip: set[type],
    stack: list[object],
) -> None:
    """Check each referent: a new object is pushed; one with more references than *base* is a suspect.

    *base* is the reference count of an object held only by its parent, as
    seen here (parent + *refs* + the loop variable + getrefcount's argument),
    measured by :func:`_calibrate` with this very function. *skip* holds the
    types of category ``_SKIP`` (one set lookup per string or number).
    """
    getrefcount = sys.getrefcount
    suspects = survey.suspects
    push = stack.append
    custom = finalized = walked = instances = 0
    for r in refs:
        t = type(r)
        if t in skip:
            continue
        s = suspects.get(id(r))
        if s is not None:  # met before: one more reference from inside the graph
            s[1] += 1
            if s[3] == -1:  # a registered container, met inside container i (or itself)
                survey.inner.append((i, s[2]))
            elif s[2] != i:
                survey.union(i, s[2])
            continue
        cat = cats.get(t)
        if cat is None:
            cat = _categorize(t, cats)
            if cat == _SKIP:
                skip.add(t)
                continue
        walked += 1
        if cat != _PLAIN:
            instances += 1
            if cat >= _CUSTOM:
                custom += 1
            if cat == _SAFE_DEL or cat == _CUSTOM_DEL:
                finalized += 1
            if _weakly_held(r):
                survey.weak.append((i, t))
        refs_now = getrefcount(r)
        if refs_now > base:
            suspects[id(r)] = [r, 1, i, refs_now]
        if cat != _OPAQUE:
            push(r)
    survey.custom[i] += custom
    survey.instances[i] += instances
    survey.finalized[i] += finalized
    survey.objects += walked
    # A bound on their size without a getsizeof per object (which doubled the walk's cost):
    # a header per object and a slot per reference, dicts' hash entries included.
    survey.nbytes += 64 * walked + 48 * len(refs)


def _weakly_held(obj: object) -> bool:
    """Weak references die with the old object; an object array hides its items from the walk."""
    import weakref

    if type(obj).__weakrefoffset__ and weakref.getweakrefcount(obj):
        return True
    dtype = getattr(type(obj), "dtype", None) and getattr(obj, "dtype", None)
    return bool(getattr(dtype, "hasobject", False))


def _walk(roots: list[Container], base: int, survey: _Survey) -> None:
    get_referents = gc.get_referents
    cats = survey.cats = _base_categories()
    skip = {t for t, c in cats.items() if c == _SKIP}
    root_index = {id(r): i for i, r in enumerate(roots)}
    # A registered container met inside another is a boundary: it keeps its identity.
    for key, i in root_index.items():
        survey.suspects[key] = [roots[i], 0, i, -1]
    for i, root in enumerate(roots):
        stack: list[object] = []
        refs = _first_level(root)
        _scan(refs, i, base, survey, cats, skip, stack)
        del refs
        while stack:
            if signal_pending():
                raise _Interrupted
            batch = stack[-_CHUNK:]
            del stack[-_CHUNK:]
            refs = get_referents(*batch)
            del batch
            _scan(refs, i, base, survey, cats, skip, stack)
            del refs
    for key in root_index:
        del survey.suspects[key]


def _extra_refs(suspects: dict[int, Suspect], bias: int) -> list[tuple[object, int, int]]:
    """``(object, container, references from outside the graph)`` for every suspect that has some."""
    getrefcount = sys.getrefcount
    out = []
    for record in suspects.values():
        obj = record[0]
        extra = getrefcount(obj) - record[1] - bias
        if extra > 0:
            out.append((obj, record[2], extra))
        del obj
    return out


def _calibrate() -> tuple[int, int]:
    """Reference counts of an object held only by its parent, as :func:`_scan` and
    :func:`_extra_refs` see it (so they hold on every CPython version)."""
    survey = _Survey(1)
    holder: list[list[object]] = [[]]
    refs = gc.get_referents(holder)
    cats = _base_categories()
    _scan(refs, 0, -1, survey, cats, {t for t, c in cats.items() if c == _SKIP}, [])
    del refs
    (record,) = survey.suspects.values()
    base = int(record[3])
    del record
    ((_obj, _i, raw),) = _extra_refs(survey.suspects, 0)
    del _obj
    # raw = references the probe had beyond the one its holder gives: the bias.
    return base, raw


_BASE, _BIAS = _calibrate()


def _value_like(obj: object, depth: int = 0) -> bool:
    """No identity a program could depend on: copying it splits nothing."""
    t = type(obj)
    if type(obj) is tuple or type(obj) is frozenset:
        return depth < 64 and all(_value_like(x, depth + 1) for x in obj)
    cat = _base_categories().get(t)
    if cat == _SKIP:
        return True
    if cat is None and _categorize(t, {}) == _SKIP:
        return True
    try:  # a __reduce__ that names a global: pickled by reference, identity kept
        return isinstance(obj.__reduce_ex__(5), str)
    except Exception:
        return False


def _survey(roots: list[Container], labels: list[str]) -> _Survey:
    """Walk below *roots*; ``problems`` says which containers cannot be compacted and why."""
    survey = _Survey(len(roots))
    _walk(roots, _BASE, survey)
    shared: dict[int, list[tuple[object, int]]] = {}
    for obj, i, extra in _extra_refs(survey.suspects, _BIAS):
        if not _value_like(obj):
            shared.setdefault(i, []).append((obj, extra))
        del obj
    survey.suspects.clear()
    for i, found in shared.items():
        first = found[0][0]
        where = _path(roots[i], first, labels[i])
        survey.problems[i] = (
            f"{len(found):,} object(s) inside are also referenced from outside it (first: {where}, "
            f"of type {type(first).__name__}); rebuilding would leave those holders with the old copy"
        )
    for i, t in survey.weak:
        if i not in survey.problems:
            what = "is weakly referenced" if t.__weakrefoffset__ else "holds objects hivemem cannot see"
            survey.problems[i] = f"a {t.__name__} inside {what}; rebuilding would change what its holders see"
    survey.weak.clear()
    for outer, inner in survey.inner:
        survey.problems.setdefault(
            outer,
            "contains itself; rebuilding would point that reference at a copy"
            if outer == inner
            else f"contains the registered container {labels[inner]}, which keeps its identity; "
            "rebuilding this one would copy it",
        )
    groups: dict[int, list[int]] = {}
    for i in range(len(roots)):
        groups.setdefault(survey.find(i), []).append(i)
    for members in groups.values():
        if any(survey.custom[i] for i in members) and any(survey.finalized[i] for i in members):
            names = sorted(t.__name__ for t, c in survey.cats.items() if c in (_SAFE_DEL, _CUSTOM_DEL))
            for i in members:
                survey.problems.setdefault(
                    i,
                    "its objects need a trial load to prove they load back (a class runs its own "
                    f"code when loaded), and {', '.join(names[:3])} has __del__, which would run "
                    "on the trial copies",
                )
    return survey


def _path(root: object, target: object, label: str, limit: int = 100_000) -> str:
    """Where *target* sits below *root*, as an expression (``rows[3]['cart']``), or a fallback."""
    name = type(root).__name__
    todo: list[tuple[object, str]] = [(root, name)]
    seen = 0
    while todo and seen < limit:
        obj, path = todo.pop()
        seen += 1
        if isinstance(obj, dict):
            children = [(v, f"{path}[{k!r}]") for k, v in dict.items(obj)]
        elif isinstance(obj, (list, tuple)):
            children = [(v, f"{path}[{n}]") for n, v in enumerate(obj)]
        elif isinstance(obj, (set, frozenset)):
            children = [(v, f"{path} (an item)") for v in obj]
        elif hasattr(obj, "__dict__"):
            children = [(v, f"{path}.{k}") for k, v in vars(obj).items()]
        else:
            continue
        for child, where in children:
            if child is target:
                return where
        todo.extend((c, w) for c, w in reversed(children) if not isinstance(c, (str, bytes, int, float)))
    return f"depth > 1 in {name}"


# ---------------------------------------------------------------------------- containers


def _contents(obj: Container) -> Container:
    """What gets pickled: the container itself for exact builtins, a plain copy otherwise.

    Copies use the base type's methods: a subclass's overrides are not run.
    """
    from collections import OrderedDict, deque

    if type(obj) in (list, dict, set):
        return obj
    if isinstance(obj, OrderedDict):
        return OrderedDict(OrderedDict.items(obj))
    if isinstance(obj, dict):
        return dict.copy(obj)
    if isinstance(obj, set):
        return set.copy(obj)
    if isinstance(obj, deque):
        return list(deque.__iter__(obj))
    return list.copy(obj)


def _empty(obj: Container) -> None:
    # The base types' methods: a subclass's clear()/extend() may have side
    # effects (events, validation) that a move of the same contents must not fire.
    from collections import OrderedDict, deque

    if isinstance(obj, list):
        list.clear(obj)
    elif isinstance(obj, OrderedDict):
        OrderedDict.clear(obj)  # dict.clear would leave its own order list behind
    elif isinstance(obj, dict):
        dict.clear(obj)
    elif isinstance(obj, set):
        set.clear(obj)
    else:
        deque.clear(obj)


def _refill(obj: Container, contents: Any) -> None:  # contents: unpickled, as _contents made them
    from collections import OrderedDict, deque

    if isinstance(obj, list):
        list.extend(obj, contents)
    elif isinstance(obj, OrderedDict):
        setitem = OrderedDict.__setitem__
        for k, v in OrderedDict.items(contents):
            setitem(obj, k, v)
    elif isinstance(obj, dict):
        dict.update(obj, contents)
    elif isinstance(obj, set):
        set.update(obj, contents)
    else:
        deque.extend(obj, contents)


# ---------------------------------------------------------------------------- serialized copies


class _CappedWriter:
    """A pickle sink that appends to a bytearray and stops before RSS passes *ceiling*."""

    def __init__(self, rss: Callable[[], int], ceiling: int | None) -> None:
        self.buf = bytearray()
        self.rss = rss
        self.ceiling = ceiling

    def write(self, data: bytes) -> int:
        # The pickler writes in 64 KiB frames: one RSS read (~11 us) per frame.
        if signal_pending():
            raise _Interrupted
        if self.ceiling is not None and self.rss() + len(data) > self.ceiling:
            raise _Over
        self.buf += data
        return len(data)


class _CappedReader:
    """Feeds a buffer to an Unpickler frame by frame, stopping before RSS passes *ceiling*."""

    def __init__(self, buf: bytearray, rss: Callable[[], int], ceiling: int | None) -> None:
        self.view = memoryview(buf)
        self.pos = 0
        self.rss = rss
        self.ceiling = ceiling
        self.frames = 0

    def _check(self) -> None:
        self.frames += 1
        if signal_pending():
            raise _Interrupted
        # The copy being built grows ~10x faster than the bytes read (docs/containers.md).
        if self.ceiling is not None and self.rss() + 16 * _FRAME > self.ceiling:
            raise _Over

    def read(self, n: int = -1) -> bytes:
        if n > 64:
            self._check()
        end = len(self.view) if n < 0 else min(self.pos + n, len(self.view))
        data = bytes(self.view[self.pos : end])
        self.pos = end
        return data

    def readinto(self, b: bytearray) -> int:
        self._check()
        n = min(len(b), len(self.view) - self.pos)
        b[:n] = self.view[self.pos : self.pos + n]
        self.pos += n
        return n

    def readline(self) -> bytes:
        rest = self.view[self.pos :]
        idx = bytes(rest[:4096]).find(b"\n")
        end = self.pos + (idx + 1 if idx >= 0 else len(rest))
        data = bytes(self.view[self.pos : end])
        self.pos = end
        return data

    def close(self) -> None:
        self.view.release()


def _dump(objs: list[Container], rss: Callable[[], int], ceiling: int | None) -> bytearray:
    """Serialize *objs*' contents together (one memo keeps objects shared between them shared)."""
    import pickle

    writer = _CappedWriter(rss, ceiling)
    pickle.Pickler(writer, protocol=5).dump([_contents(o) for o in objs])
    return writer.buf


def _trial_load(buf: bytearray, rss: Callable[[], int], ceiling: int | None) -> None:
    """Load *buf* once and drop the copy: raises what the real load would raise."""
    import pickle

    reader = _CappedReader(buf, rss, ceiling)
    try:
        copy = pickle.Unpickler(reader).load()
        del copy
    finally:
        reader.close()


def _load(buf: bytearray, reserve: object) -> list[object]:
    """``pickle.loads(buf)``; after a MemoryError the reserved address space is given back and
    the load retried (twice more, collecting in between)."""
    import pickle

    for attempt in range(_LOAD_TRIES):
        try:
            value: list[object] = pickle.loads(buf)
            return value
        except MemoryError:
            if attempt == _LOAD_TRIES - 1:
                raise
            _release_reserve(reserve)
            gc.collect()
    raise AssertionError("unreachable")  # pragma: no cover


def _reserve(nbytes: int) -> object:
    """Address space for the reload's retry: a private anonymous mapping never written.

    It costs no RSS, but counts against ``RLIMIT_AS`` and, under strict
    overcommit, against the commit limit: being able to map it proves the
    reload will find the memory even if other threads take what the emptied
    containers gave back.
    """
    import mmap

    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    return mmap.mmap(-1, max(nbytes, mmap.PAGESIZE), flags=flags)


def _release_reserve(reserve: object) -> None:
    close = getattr(reserve, "close", None)
    if close is not None:
        close()


# ---------------------------------------------------------------------------- the swap


class _Swap:
    """The containers being rebuilt and the way back, kept until every one is full again.

    All of them come back from one load, or objects they share would be
    split. ``started`` is set *before* the first container is emptied and
    ``done[i]`` *after* container ``i`` holds its contents again, so a
    restore knows what to put back whatever line was interrupted: every
    container not done, emptied first (idempotent, never doubled), from the
    same loaded copy as the ones already done.
    """

    __slots__ = ("buf", "done", "loaded", "objs", "reserve", "started")

    def __init__(self, objs: list[Container], buf: bytearray, reserve: object) -> None:
        self.objs = objs
        self.buf = buf
        self.reserve = reserve
        self.loaded: list[Any] | None = None
        self.started = False
        self.done = [False] * len(objs)

    def run(self, trim: bool, stats: dict[str, object]) -> None:
        import time

        from hivemem._measure.native import malloc_trim, trim_unavailable_reason

        t1 = time.perf_counter()
        self.started = True  # first: from here a restore puts every container back
        for obj in self.objs:
            _empty(obj)
        gc.collect()
        if trim and trim_unavailable_reason() is None:
            malloc_trim(0)
        stats["release_seconds"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        self.loaded = _load(self.buf, self.reserve)
        self.fill()
        stats["load_seconds"] = time.perf_counter() - t2

    def fill(self) -> None:
        """Refill every container not yet done from ``loaded``."""
        loaded, done = self.loaded, self.done
        assert loaded is not None
        for i, obj in enumerate(self.objs):
            if not done[i]:
                _empty(obj)  # a partial refill must not be doubled
                _refill(obj, loaded[i])
                done[i] = True

    def restore(self) -> None:
        """Put every container back. Idempotent; retries a load that runs out of memory."""
        if not self.started or all(self.done):
            return
        if self.loaded is None:
            self.loaded = _load(self.buf, self.reserve)
        self.fill()

    def close(self) -> None:
        self.loaded = None
        _release_reserve(self.reserve)


_rescued: list[_Swap] = []


def rescued() -> list[bytearray]:
    """Serialized contents hivemem could not load back yet (stays empty; docs/containers.md)."""
    return [swap.buf for swap in _rescued]


def _give_up(swap: _Swap) -> None:
    """Last resort when even the restore failed: keep the swap (its bytes, no copy: that needs
    memory) for the next pass to retry, and say so."""
    _rescued.append(swap)
    try:
        import logging

        logging.getLogger("hivemem").error(
            "hivemem compact: could not load %d container(s) back after %d attempts; their "
            "serialized contents (%d bytes) are kept in memory and the next compaction pass "
            "retries: see 'If a reload fails' in docs/containers.md",
            len(swap.objs),
            _LOAD_TRIES,
            len(swap.buf),
            exc_info=True,
        )
    except Exception:  # pragma: no cover - logging itself out of memory
        pass


def _retry_rescued(stats: dict[str, object]) -> None:
    """Put back the containers of a swap that could not be restored, if they are still empty."""
    lock_of = {id(o): e.lock for o, e in _registered.entries()}
    token = object()
    restored = 0
    try:
        defer_signals(token)
        hold = begin()
        if hold is not None:
            for swap in list(_rescued):
                if any(len(o) for o in swap.objs):
                    continue  # written to since: left as the program has it
                if not all(hold.take(lock_of.get(id(o))) for o in swap.objs):
                    continue
                swap.restore()
                _rescued.remove(swap)
                restored += len(swap.objs)
                stats["rescued_restored"] = restored
        close(token)
    except MemoryError:
        stats["rescued_pending"] = len(_rescued)
    finally:
        close(token)


# ---------------------------------------------------------------------------- the pass


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
    RSS while the serialized and verification copies are built (``None``:
    no bound). A signal that arrives while it runs (main thread) is
    delivered when it returns; one that arrives before the swap stops the
    pass with nothing changed.
    """
    from hivemem._measure.native import pymalloc_stats
    from hivemem._sizes import format_size as fs

    pending: dict[str, object] = {}
    if _rescued:
        _retry_rescued(pending)
    entries = [(cast("Container", o), e) for o, e in _registered.entries()]  # kinds checked there
    entries = [(o, e) for o, e in entries if len(o) > 0]
    if not entries:
        return {"skip": "no non-empty container registered with hivemem.compactable()"}
    py = pymalloc_stats()
    if py is None:
        return {"skip": "pymalloc statistics unavailable: cannot tell whether rebuilding pays"}
    stats: dict[str, object] = {
        "pymalloc_free_before": py["free"],
        "pymalloc_arenas_before": py["arenas"],
        **pending,
    }
    ratio = py["free"] / py["arenas"] if py["arenas"] else 0.0
    if py["free"] < min_free or ratio < min_ratio:
        stats["skip"] = (
            f"pymalloc arenas hold {fs(py['free'])} free of {fs(py['arenas'])} ({ratio:.0%}): too little "
            f"fragmentation for rebuilding to pay (needs {fs(min_free)} and {min_ratio:.0%})"
        )
        return stats
    token = object()
    try:
        defer_signals(token)
        hold = begin()
        if hold is None:
            stats["skip"] = "another pass that holds application locks (or a fork) is under way"
        else:
            _pass(hold, entries, rss, ceiling, trim, stats)
        close(token)  # here and in finally: see close()
    except _Interrupted:
        stats["skip"] = "interrupted by a signal before anything was changed"
    finally:
        close(token)
    after = pymalloc_stats()
    if after is not None:
        stats["pymalloc_free_after"] = after["free"]
        stats["pymalloc_arenas_after"] = after["arenas"]
    return stats


def _pass(
    hold: Hold,
    entries: list[tuple[Container, Entry]],
    rss: Callable[[], int],
    ceiling: int | None,
    trim: bool,
    stats: dict[str, object],
) -> None:
    import time

    from hivemem._sizes import format_size

    skipped: list[str] = []
    stats["skipped"] = skipped
    candidates: list[Container] = []
    labels: list[str] = []
    for obj, entry in entries:
        label = f"{type(obj).__name__} at {id(obj):#x} ({len(obj):,} items)"
        problem = access_problem(entry)
        if problem is not None:
            skipped.append(f"{label}: {problem}")
        elif not hold.take(entry.lock):
            skipped.append(f"{label}: its lock is held; left for the next pass")
        else:
            candidates.append(obj)
            labels.append(label)
    del entries
    if not candidates:
        stats["skip"] = "; ".join(skipped) or "nothing to compact"
        return
    t0 = time.perf_counter()
    survey = _survey(candidates, labels)
    stats["survey_seconds"] = time.perf_counter() - t0
    stats["objects"] = survey.objects
    chosen = _drop(candidates, labels, survey, skipped)
    if not chosen:
        stats["skip"] = "; ".join(skipped)
        return
    t1 = time.perf_counter()
    buf = _serialize(candidates, chosen, labels, survey, rss, ceiling, skipped, stats)
    verify = stats.get("verify_seconds", 0.0)
    stats["dump_seconds"] = time.perf_counter() - t1 - (verify if isinstance(verify, float) else 0.0)
    if buf is None:
        stats["skip"] = "; ".join(skipped)
        return
    objs = [candidates[i] for i in chosen]
    stats["serialized_bytes"] = len(buf)
    stats["verified"] = any(survey.custom[i] for i in chosen)
    # The whole reload (its objects, the unpickler's memo and list over-allocation) must be
    # possible from the reserve alone: docs/containers.md, "MemoryError".
    need = _reload_bytes(survey, chosen, len(buf))
    stats["reserved_bytes"] = need
    t2 = time.perf_counter()
    try:
        reserve = _reserve(need)
    except (OSError, MemoryError, OverflowError, ValueError) as exc:
        skipped.append(
            f"not enough address space to guarantee the reload ({format_size(need)} could not be "
            f"reserved before emptying anything: {type(exc).__name__}); nothing was changed"
        )
        stats["skip"] = "; ".join(skipped)
        return
    stats["reserve_seconds"] = time.perf_counter() - t2
    swap = _Swap(objs, buf, reserve)
    del buf
    hold.repair = swap.restore  # a fork that cuts the swap: the child puts everything back
    try:
        swap.run(trim, stats)
    except BaseException:
        try:
            finish(swap.restore)
        except BaseException:
            _give_up(swap)
            raise
        raise
    finally:
        hold.repair = None
        swap.close()
    stats["containers"] = len(objs)
    stats["items"] = sum(len(o) for o in objs)


def _reload_bytes(survey: _Survey, chosen: list[int], serialized: int) -> int:
    """Address space a reload may need, from nothing: a bound on the objects walked (over every
    candidate: an upper bound for the chosen), an instance dictionary per class instance
    (loading materializes it), and 16 times the serialized size for what the walk does not
    visit (strings and numbers), the unpickler's memo and over-allocated lists.

    Checked on twelve shapes (dicts, lists of ints, big ints, floats, empty dicts and lists,
    short strings, tuples, nesting, bytes, sets, class instances): the bound was 1.2 to 15
    times the load's peak (docs/containers.md, "Nothing lost").
    """
    instances = sum(survey.instances[i] for i in chosen)
    return survey.nbytes + 120 * instances + 16 * serialized + 2**20


def _drop(candidates: list[Container], labels: list[str], survey: _Survey, skipped: list[str]) -> list[int]:
    """Indexes of the containers to compact: problems dropped, with whatever shares objects with them."""
    bad_groups: dict[int, int] = {}
    for i, reason in survey.problems.items():
        skipped.append(f"{labels[i]}: {reason}")
        bad_groups.setdefault(survey.find(i), i)
    chosen = []
    for i in range(len(candidates)):
        if i in survey.problems:
            continue
        group = survey.find(i)
        if group in bad_groups:
            skipped.append(
                f"{labels[i]}: shares objects with {labels[bad_groups[group]]}, which is skipped; "
                "compacting one without the other would split them"
            )
            continue
        chosen.append(i)
    return chosen


def _serialize(
    candidates: list[Container],
    chosen: list[int],
    labels: list[str],
    survey: _Survey,
    rss: Callable[[], int],
    ceiling: int | None,
    skipped: list[str],
    stats: dict[str, object],
) -> bytearray | None:
    """Serialize (and, if needed, verify) the chosen containers together.

    Containers that cannot be pickled, or whose bytes do not load back, are
    dropped from *chosen* with their whole group. Returns ``None`` when
    nothing is left or a copy would pass *ceiling*.
    """
    import time

    from hivemem._sizes import format_size as fs

    while chosen:
        verify = any(survey.custom[i] for i in chosen)
        try:
            buf = _dump([candidates[i] for i in chosen], rss, ceiling)
            if verify:
                t0 = time.perf_counter()
                _trial_load(buf, rss, ceiling)
                stats["verify_seconds"] = time.perf_counter() - t0
            return buf
        except _Over:
            skipped.append(
                f"the {'verification' if verify else 'serialized'} copy would pass the memory ceiling "
                f"{fs(ceiling or 0)} (the copies must fit under the limit); nothing was changed"
            )
            return None
        except _Interrupted:
            raise
        except Exception:
            pass
        # Find the culprits group by group; the others go on together.
        keep = []
        for group in sorted({survey.find(i) for i in chosen}):
            members = [i for i in chosen if survey.find(i) == group]
            verify_group = any(survey.custom[i] for i in members)
            problem = _check_group([candidates[i] for i in members], verify_group, rss, ceiling)
            if problem is None:
                keep.extend(members)
            else:
                skipped.extend(f"{labels[i]}: {problem}" for i in members)
        if len(keep) == len(chosen):  # fails only together: give up rather than guess
            skipped.append("the registered containers cannot be serialized and loaded back together")
            return None
        chosen[:] = keep
    return None


def _check_group(
    objs: list[Container], verify: bool, rss: Callable[[], int], ceiling: int | None
) -> str | None:
    """Why this group of containers cannot be moved through pickle, or ``None``."""
    try:
        buf = _dump(objs, rss, ceiling)
    except (_Over, _Interrupted):
        raise
    except MemoryError:
        return "ran out of memory while serializing (MemoryError); nothing was changed"
    except Exception as exc:
        return f"cannot be pickled ({type(exc).__name__}: {exc})"
    try:
        if verify:
            _trial_load(buf, rss, ceiling)
    except (_Over, _Interrupted):
        raise
    except Exception as exc:
        return f"pickles but does not load back ({type(exc).__name__}: {exc}); nothing was changed"
    return None
