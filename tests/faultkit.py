"""Fault injection for data-touching passes: workloads, a structural fingerprint, an injector.

Used by ``tests/test_faults_compaction.py``, ``tests/test_faults_dedup.py``
(in subprocesses, so that injected exceptions in ``__del__`` or gc callbacks
and real signals never reach pytest) and by ``benchmarks/bench_faults.py``
for the reported figures.

A workload is a set of containers of one class (list, dict, set, deque,
OrderedDict, subclasses with hooks, class instances, objects that need a
verified load, objects that never load back, containers sharing objects,
deep nesting, external aliases), built at a given size and depth. Its
:func:`shape` is everything the program could observe: types, values,
order, which objects are the same object (inside and between containers),
the containers' own identities and attributes, and the aliases held from
outside. A fault must never change it.
"""

from __future__ import annotations

import collections
import random
import sys
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "KINDS",
    "Injector",
    "SigintSender",
    "Workload",
    "build",
    "hivemem_state_clean",
    "points",
    "shape",
    "sweep",
]


# ---------------------------------------------------------------------------- classes in workloads


class Point:
    """A plain class: loads back without running its own code."""

    def __init__(self, x: int, y: object) -> None:
        self.x = x
        self.y = y


class Slotted:
    """Slots and a __del__: loads back plainly; a trial copy would run __del__."""

    __slots__ = ("a", "b")
    deaths = 0

    def __init__(self, a: object, b: object) -> None:
        self.a = a
        self.b = b

    def __del__(self) -> None:
        Slotted.deaths += 1


class Record:
    """Runs its own code when loaded (__setstate__): needs a verified load."""

    def __init__(self, key: str, values: list[int]) -> None:
        self.key = key
        self.values = values

    def __getstate__(self) -> dict[str, object]:
        return {"key": self.key, "values": self.values}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)


class AppError(ValueError):
    """An exception whose pickle loads back (its __init__ takes the args pickle gives it)."""


class ParseError(Exception):
    """Pickles, but loading calls ParseError(message) and __init__ needs two arguments."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class Fragile:
    """Pickles, but its __setstate__ raises: can never be loaded back."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __setstate__(self, state: dict[str, object]) -> None:
        raise RuntimeError("refusing to be loaded")


class Rows(list):  # type: ignore[type-arg]
    """A list subclass with attributes and hooks that a move must not fire."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.label = "rows"
        self.events = 0

    def clear(self) -> None:
        self.events += 1
        super().clear()

    def extend(self, items: object) -> None:
        self.events += 1
        super().extend(items)  # type: ignore[arg-type]


class Strict(dict):  # type: ignore[type-arg]
    """A dict subclass whose __setitem__ validates (and counts)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.writes = 0

    def __setitem__(self, key: object, value: object) -> None:
        if not isinstance(key, str):
            raise TypeError(f"keys must be str, got {key!r}")
        self.writes += 1
        super().__setitem__(key, value)


class Tags(set):  # type: ignore[type-arg]
    """A set subclass with an attribute."""

    owner = "tags"


# ---------------------------------------------------------------------------- workloads

KINDS = (
    "rows",
    "sessions",
    "alias",
    "sets",
    "deque",
    "odict",
    "subclasses",
    "objects",
    "verified",
    "unloadable",
    "shared",
    "deep",
    "locked",
    "keyed",
    "mixed",
)


class Workload:
    """Containers registered for compaction (and dedup), and what the program holds besides."""

    def __init__(self, kind: str, size: int, depth: int, seed: int) -> None:
        self.kind = kind
        self.size = size
        self.depth = depth
        self.containers: list[object] = []
        self.locks: list[object] = []  # parallel to containers (None: no lock)
        self.outside: dict[str, tuple[object, Callable[[], object]]] = {}  # name -> (object, where)
        self.rng = random.Random(seed)

    def add(self, container: object, lock: object = None) -> None:
        self.containers.append(container)
        self.locks.append(lock)

    def register(self, *, compact: bool = True, dedup: bool = False, keys: bool = False) -> None:
        import hivemem

        for obj, lock in zip(self.containers, self.locks, strict=True):
            if compact:
                hivemem.compactable(obj, lock=lock)
            if dedup and isinstance(obj, (list, dict)):
                hivemem.register_container(obj, lock=lock, keys=keys)

    def unregister(self) -> None:
        import hivemem

        for obj in self.containers:
            hivemem.uncompactable(obj)
            hivemem.unregister_container(obj)

    def shape(self) -> object:
        aliases = {name: obj is where() for name, (obj, where) in self.outside.items()}
        return (shape(self.containers), [id(c) for c in self.containers], aliases)

    def digest(self) -> object:
        """A fast fingerprint for big workloads without sets: the pickle (which records order,
        types and sharing) of every container, their identities and the aliases."""
        import hashlib
        import pickle

        aliases = {name: obj is where() for name, (obj, where) in self.outside.items()}
        data = hashlib.sha256(pickle.dumps(self.containers, protocol=5)).hexdigest()
        return (data, [id(c) for c in self.containers], aliases)

    def values(self) -> object:
        """A fast fingerprint that ignores which equal string object sits where (for dedup on
        workloads without shared objects): every container's repr (values, order, types of
        nesting) and identity, and the subclasses' attributes."""
        return [(repr(c), id(c), repr(getattr(c, "__dict__", None))) for c in self.containers]

    def locks_free(self) -> bool:
        for lock in self.locks:
            if lock is None:
                continue
            if not lock.acquire(False):  # type: ignore[attr-defined]
                return False
            lock.release()  # type: ignore[attr-defined]
        return True


def _s(rng: random.Random, choices: tuple[str, ...]) -> str:
    """A fresh str object (never a shared literal), so dedup has duplicates to merge."""
    return "".join(list(rng.choice(choices) + "!"))[:-1]


_WORDS = ("GB", "FR", "active", "pending", "click", "view", "Lyon", "Oslo")


def _row(rng: random.Random, i: int, depth: int) -> dict[str, object]:
    row: dict[str, object] = {"id": i, "name": _s(rng, _WORDS), "score": i * 0.5, "tags": [_s(rng, _WORDS)]}
    node = row
    for d in range(depth):
        child: dict[str, object] = {"level": d, "kind": _s(rng, _WORDS), "items": [i, d]}
        node["child"] = child
        node = child
    return row


def build(kind: str, size: int = 20, depth: int = 2, seed: int = 0) -> Workload:
    """A fresh workload of *kind* with about *size* items per container, nested *depth* deep."""
    w = Workload(kind, size, depth, seed)
    rng = w.rng
    n = max(size, 1)
    if kind == "rows":
        w.add([_row(rng, i, depth) for i in range(n)])
    elif kind == "sessions":
        w.add({f"s{i}": {"user": _s(rng, _WORDS), "cart": [_s(rng, _WORDS)]} for i in range(n)})
    elif kind == "alias":  # a handler holds a nested list: must be skipped, the alias kept
        sessions = {f"s{i}": {"user": _s(rng, _WORDS), "cart": []} for i in range(n)}
        w.add(sessions)
        w.outside["cart"] = (sessions["s1" if n > 1 else "s0"]["cart"], lambda: _cart(sessions, n))
        w.add([_row(rng, i, depth) for i in range(n)])  # an independent container still compacts
    elif kind == "sets":
        w.add({(i, _s(rng, _WORDS), frozenset({i, i + 1})) for i in range(n)})
        w.add(Tags(f"t{i}" for i in range(n)))
    elif kind == "deque":
        w.add(collections.deque(([i, _s(rng, _WORDS)] for i in range(n)), maxlen=n + 5))
        w.add(collections.deque({"i": i} for i in range(n)))
    elif kind == "odict":
        od: collections.OrderedDict[str, object] = collections.OrderedDict(
            (f"k{i}", [i, _s(rng, _WORDS)]) for i in range(n)
        )
        od.move_to_end("k0")  # its order now differs from the underlying dict's
        w.add(od)
        w.add(collections.defaultdict(list, {f"d{i}": [i] for i in range(n)}))
        w.add(collections.Counter({f"c{i}": i for i in range(n)}))
    elif kind == "subclasses":
        w.add(Rows([_row(rng, i, depth) for i in range(n)]))
        w.add(Strict({f"k{i}": [i] for i in range(n)}))
    elif kind == "objects":
        w.add([Point(i, [_s(rng, _WORDS), {"n": i}]) for i in range(n)])
        w.add([Slotted(i, (i, _s(rng, _WORDS))) for i in range(n)])
    elif kind == "verified":
        w.add([Record(f"r{i}", [i, i + 1]) for i in range(n)])
        w.add({f"e{i}": AppError(f"bad {i}") for i in range(n)})
    elif kind == "unloadable":
        w.add([ParseError(i, "unexpected token") for i in range(n)])
        w.add([Fragile(i) for i in range(n)])
        w.add([_row(rng, i, depth) for i in range(n)])  # still compacts
    elif kind == "shared":
        common = [[_s(rng, _WORDS), i] for i in range(n)]
        a = [{"ref": common[i], "i": i} for i in range(n)]
        b = {f"b{i}": common[(i * 7) % n] for i in range(n)}
        w.add(a)
        w.add(b)
        del common
        lock = threading.Lock()
        c = [[i] for i in range(n)]
        d = [{"c": c[i % n]} for i in range(n)]  # shares with c; c's lock is held during 'held' runs
        w.add(c, lock)
        w.add(d, lock)
    elif kind == "deep":
        root: list[object] = []
        node = root
        for d in range(depth * 20 + 5):
            child: list[object] = [d, _s(rng, _WORDS)]
            node.append(child)
            node = child
        w.add(root)
        w.add([_row(rng, i, depth * 3) for i in range(n)])
    elif kind == "locked":
        lock = threading.RLock()
        w.add([_row(rng, i, depth) for i in range(n)], lock)
        w.add({f"k{i}": (i, _s(rng, _WORDS)) for i in range(n)}, lock)
    elif kind == "keyed":  # equal keys that are distinct objects: dedup(keys=True) merges them
        keys = ("country", "status", "kind")
        w.add([{_s(rng, keys): i, _s(rng, keys) + "2": _s(rng, _WORDS)} for i in range(n)])
        w.add(Strict({_s(rng, keys) + str(i): _s(rng, _WORDS) for i in range(n)}))
        w.add({_s(rng, keys) + str(i): {_s(rng, keys): [i]} for i in range(n)}, threading.Lock())
    elif kind == "mixed":
        for k in (
            "rows",
            "sessions",
            "sets",
            "deque",
            "odict",
            "subclasses",
            "objects",
            "verified",
            "shared",
        ):
            sub = build(k, size, depth, seed)
            for c, lk in zip(sub.containers, sub.locks, strict=True):
                w.add(c, lk)
    else:
        raise ValueError(f"unknown workload kind {kind!r}; expected one of {KINDS}")
    return w


def _cart(sessions: dict[str, dict[str, object]], n: int) -> object:
    return sessions["s1" if n > 1 else "s0"]["cart"]


# ---------------------------------------------------------------------------- fingerprint

_ATOMS = (str, bytes, int, float, bool, type(None), complex)


def shape(obj: object) -> object:
    """Everything a program could observe about *obj*: values, order, types, sharing, attributes."""
    import gc

    memo: dict[int, int] = {}
    keep: list[object] = []  # objects made on the way (an exception's __dict__) keep their ids
    enabled = gc.isenabled()
    gc.disable()  # the fingerprint makes many tuples: collections would make it quadratic
    try:
        return _shape(obj, memo, 0, keep)
    finally:
        if enabled:
            gc.enable()


def _shape(o: object, memo: dict[int, int], depth: int, keep: list[object]) -> object:
    t = type(o)
    if t in _ATOMS:
        return (t.__name__, o)
    if depth > 500:
        raise RecursionError("workload nested deeper than the fingerprint walks")
    key = id(o)
    if key in memo:
        return ("same-as", memo[key])
    memo[key] = len(memo)
    keep.append(o)
    body: object
    if isinstance(o, dict):
        body = [(_shape(k, memo, depth + 1, keep), _shape(v, memo, depth + 1, keep)) for k, v in o.items()]
    elif isinstance(o, (list, tuple, collections.deque)):
        body = [_shape(x, memo, depth + 1, keep) for x in o]
    elif isinstance(o, (set, frozenset)):
        body = sorted(repr(_shape(x, {}, depth + 1, keep)) for x in o)
    elif isinstance(o, BaseException):
        body = (repr(o.args), _shape(getattr(o, "__dict__", {}), memo, depth + 1, keep))
    else:
        body = None
    extra: list[object] = []
    if isinstance(o, collections.deque):
        extra.append(o.maxlen)
    if isinstance(o, collections.defaultdict):
        extra.append(o.default_factory)
    d = getattr(o, "__dict__", None)
    if isinstance(d, dict) and not isinstance(o, BaseException):
        extra.append(_shape(dict(d), memo, depth + 1, keep))
    for name in getattr(t, "__slots__", ()):
        extra.append((name, _shape(getattr(o, name, None), memo, depth + 1, keep)))
    return (t.__qualname__, memo[key], body, extra)


# ---------------------------------------------------------------------------- hivemem's own state


def hivemem_state_clean() -> list[str]:
    """What hivemem left behind that it must not: a held gate, signal handlers, rescued bytes."""
    import signal

    from hivemem._reclaim import compaction as _compaction
    from hivemem._reclaim import held as _held

    problems = []
    if not _held._gate.acquire(False):
        problems.append("hivemem's gate is held")
    else:
        _held._gate.release()
    if _held._state.hold is not None:
        problems.append("a pass is still recorded as open")
    if _held._deferral or _held._owner:
        problems.append(f"signal deferral left on ({len(_held._deferral)} handlers replaced)")
    if any(_held._tripped):
        problems.append("deferred signals left pending")
    if threading.current_thread() is threading.main_thread():
        handler = signal.getsignal(signal.SIGINT)
        if handler is not signal.default_int_handler:
            problems.append(f"SIGINT handler is {handler!r}")
    if _compaction._rescued:
        problems.append(f"{len(_compaction._rescued)} rescued buffer(s)")
    return problems


# ---------------------------------------------------------------------------- injection


class Injector:
    """A trace function that raises *exc* at the *n*-th line event in hivemem's or this kit's code.

    ``n=0`` only counts: ``sequence`` lists the (file, line) of every line
    event. hivemem's ``_measure/native.py`` (reading allocator statistics before and
    after a pass, touching no data) is left out to keep sweeps short.
    """

    def __init__(self, n: int = 0, exc: type[BaseException] = KeyboardInterrupt) -> None:
        import os

        import hivemem

        self.n = n
        self.exc = exc
        self.events = 0
        self.fired = False
        self.sequence: list[tuple[str, int]] = []
        self.prefixes = (os.path.dirname(hivemem.__file__), __file__.removesuffix("c"))
        self.skip = os.path.join(os.path.dirname(hivemem.__file__), "_measure", "native.py")

    def __enter__(self) -> Injector:
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(None)

    def _global(self, frame: object, event: str, arg: object) -> object:
        name = frame.f_code.co_filename  # type: ignore[attr-defined]
        if name.startswith(self.prefixes) and name != self.skip:
            return self._local
        return None

    def _local(self, frame: object, event: str, arg: object) -> object:
        if event == "line":
            self.events += 1
            if self.n == 0:
                self.sequence.append((frame.f_code.co_filename, frame.f_lineno))  # type: ignore[attr-defined]
            elif self.events == self.n:
                self.fired = True
                raise self.exc()
        return self._local


class SigintSender:
    """A daemon thread that, while ``sending`` is set, waits ``delay`` seconds and then sends this
    process SIGINT every 15 ms (``sent`` counts them) until it is cleared; ``stop`` ends it.

    For the SIGINT trials, in their subprocess: hivemem is told no other thread runs (this
    one touches no data), so a pass does not wait for it.
    """

    def __init__(self) -> None:
        import hivemem._reclaim.held

        hivemem._reclaim.held.other_threads = lambda: 0
        self.sending = False
        self.stop = False
        self.sent = 0
        self.delay = 0.0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        import os
        import signal
        import time

        while not self.stop:
            if not self.sending:
                time.sleep(0.002)
                continue
            time.sleep(self.delay)
            while self.sending:
                os.kill(os.getpid(), signal.SIGINT)
                self.sent += 1
                time.sleep(0.015)

    @staticmethod
    def drain() -> None:
        """Take a SIGINT sent just before ``sending`` was cleared."""
        import time

        while True:
            try:
                time.sleep(0.05)
                return
            except KeyboardInterrupt:
                pass


def points(sequence: list[tuple[str, int]], mode: str, critical: tuple[str, ...] = ()) -> list[int]:
    """Event indexes (1-based) to inject at.

    ``all``: every event. ``lines``: the first event of every distinct line.
    ``critical``: ``lines`` plus the first three events of every line in a file
    whose name ends with one of *critical* (the code that locks and defers: a
    loop's first, second and later rounds).
    """
    if mode == "all":
        return list(range(1, len(sequence) + 1))
    seen: dict[tuple[str, int], int] = {}
    chosen = set()
    for i, where in enumerate(sequence, 1):
        n = seen.get(where, 0)
        seen[where] = n + 1
        if n == 0 or (mode == "critical" and n < 3 and where[0].endswith(critical)):
            chosen.add(i)
    return sorted(chosen)


def sweep(
    kind: str,
    run: Callable[[], object],
    *,
    size: int = 5,
    depth: int = 2,
    mode: str = "lines",
    exc: type[BaseException] = KeyboardInterrupt,
    compact: bool = True,
    dedup: bool = False,
    keys: bool = False,
    critical: tuple[str, ...] = (),
) -> dict[str, object]:
    """Inject *exc* at each chosen line event of ``run()`` over fresh *kind* workloads.

    Returns the number of events, injection points, injections that fired,
    and every damage found (a changed shape, a lock left held, hivemem state
    left behind), which must be empty.
    """
    from hivemem._reclaim.containers import compact_registry as _compact
    from hivemem._reclaim.containers import dedup_registry as _dedup

    def fresh() -> Workload:
        w = build(kind, size, depth)
        return w

    for _warm in range(2):  # the first run imports what it needs: count on a later one
        w = fresh()
        w.register(compact=compact, dedup=dedup, keys=keys)
        try:
            run()
        finally:
            _compact.clear()
            _dedup.clear()
    w = fresh()
    before = w.shape()  # held during every run: it references the strings (refcounts decide paths)
    w.register(compact=compact, dedup=dedup, keys=keys)
    _settle()
    counter = Injector(0)
    try:
        with counter:
            run()
    finally:
        _compact.clear()
        _dedup.clear()
    del w, before
    chosen = points(counter.sequence, mode, critical)
    damaged: list[str] = []
    unfired: list[str] = []  # points a run did not reach (it took a shorter path)
    fired = 0
    for n in chosen:
        w = fresh()
        before = w.shape()
        w.register(compact=compact, dedup=dedup, keys=keys)
        _settle()
        inj = Injector(n, exc)
        try:
            with inj:
                run()
        except exc:
            pass
        except BaseException as e:  # any other escape is a finding
            damaged.append(f"event {n} {counter.sequence[n - 1]}: raised {type(e).__name__}: {e}")
        finally:
            _compact.clear()
            _dedup.clear()
        fired += inj.fired
        if not inj.fired:
            unfired.append(f"event {n} of {inj.events}")
        where = counter.sequence[n - 1] if n <= len(counter.sequence) else ("?", 0)
        # Strings are compared by value: dedup may swap one for an equal one, nothing else.
        if w.shape() != before:
            damaged.append(f"event {n} {where}: data changed")
        if not w.locks_free():
            damaged.append(f"event {n} {where}: a lock was left held")
        for p in hivemem_state_clean():
            damaged.append(f"event {n} {where}: {p}")
        _reset_state()
    return {
        "kind": kind,
        "size": size,
        "mode": mode,
        "exception": exc.__name__,
        "events": len(counter.sequence),
        "distinct_lines": len(set(counter.sequence)),
        "points": len(chosen),
        "fired": fired,
        "damaged": damaged,
        "unfired": unfired[:20],
    }


def _settle() -> None:
    """Collect garbage and forget dead weak entries now, so that every traced run takes the
    same path (a registry purge inside one run would shift the event numbers)."""
    import gc

    from hivemem._reclaim.containers import compact_registry as _compact
    from hivemem._reclaim.containers import dedup_registry as _dedup

    gc.collect()
    _compact.entries()
    _dedup.entries()


def _reset_state() -> None:
    """After a finding, leave a clean state so one damage is not counted for every later point."""
    from hivemem._reclaim import compaction as _compaction

    _compaction._rescued.clear()
