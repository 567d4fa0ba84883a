"""Leak and look-alike workloads for find_leaks (test_leaks.py, bench_profiler.py, bench_leaks.py).

Plain Python with no dependencies beyond the standard library, so any
interpreter from 3.10 on can run it.

* ``LEAKS`` and ``NON_LEAKS``: the original nine (a ``bytes`` of exactly N
  bytes kept per call, N - 33 bytes of payload plus the header; caches that
  fill and plateau; lazy initialisation; temporaries). The 9-of-9 figure at
  ``repeat`` 3, 5 and 10 is taken on these.
* ``SHAPED_LEAKS``: true leaks of at least 100 B, 1 KB, 10 KB and 100 KB
  per call in other shapes: dict growth, a doubly linked chain (cycles),
  closures, class attributes, C-allocated buffers (``bytearray``,
  ``array``), suspended generators (frames).
* ``LOOKALIKES``: code that does not leak but touches state a leak check can
  mistake for growth: the stack (``sys._getframe``, ``inspect.stack()``,
  caller ``f_locals``, ``traceback.extract_stack()``), warnings and logging
  with stack levels, exceptions with tracebacks and chaining, ``re``,
  ``functools``, ``typing`` and ABC caches, lazy imports, string interning,
  thread-local state, threads and pools, ``asyncio`` loops created and
  closed, logging handlers added and removed, classes made per call.

Every workload is deterministic. A cache here is bounded, so after the
warm-up it stops growing; a look-alike that needs more calls than the
default warm-up to fill its cache would be a leak for as long as the run.
"""

from __future__ import annotations

import array
import functools
import logging
import os
import re
import sys
import typing
import warnings

# ----------------------------------------------------------------- the original nine

_kept: list[bytes] = []


def _leak(n):
    def fn():
        _kept.append(b"x" * (n - 33))

    fn.__name__ = fn.__qualname__ = f"leak_{n}B"
    return fn


_cache: dict[str, str] = {}
_cache_n = [0]


def cache_plateau():
    """A dict cache capped at 250 entries, 100 new keys per call: full on the third call."""
    for _ in range(100):
        _cache_n[0] += 1
        if len(_cache) >= 250:
            del _cache[next(iter(_cache))]
        _cache[f"key-{_cache_n[0]:09d}"] = "v" * 50


@functools.lru_cache(maxsize=128)
def _square(key):
    return [key] * 10


_lru_n = [0]


def lru_cache_plateau():
    """functools.lru_cache(maxsize=128), 60 new keys per call: full on the third call."""
    for _ in range(60):
        _lru_n[0] += 1
        _square(f"k{_lru_n[0]:09d}")


_table = None


def lazy_init():
    """Builds a 5000-entry table on first call, then only reads it."""
    global _table
    if _table is None:
        _table = {i: str(i) * 20 for i in range(5000)}
    return len(_table)


_re_n = [0]


def re_cache_bounded():
    """Compiles 300 new patterns per call: re's bounded cache fills, then evicts."""
    for _ in range(300):
        _re_n[0] += 1
        re.compile(f"a{_re_n[0]:08d}b+")


def temporaries():
    """Allocates 10k strings and drops them."""
    return len([str(i) for i in range(10000)])


LEAKS = [_leak(100), _leak(1024), _leak(10 * 1024), _leak(100 * 1024)]
NON_LEAKS = [cache_plateau, lru_cache_plateau, lazy_init, re_cache_bounded, temporaries]

# ----------------------------------------------------------------- true leaks in other shapes

SIZES = (100, 1024, 10 * 1024, 100 * 1024)


def _named(fn, shape, n):
    fn.__name__ = fn.__qualname__ = f"{shape}_{n}B"
    fn.leak_bytes = n
    return fn


def _dict_growth(n):
    store: dict[int, bytes] = {}

    def fn():
        store[len(store)] = b"d" * (n - 33)

    return _named(fn, "dict_growth", n)


class _Node:
    __slots__ = ("next", "payload", "prev")

    def __init__(self, payload, prev):
        self.payload = payload
        self.prev = prev
        self.next = None


def _linked_cycles(n):
    head = _Node(b"", None)
    last = [head]

    def fn():
        node = _Node(b"c" * (n - 33), last[0])  # node <-> previous node: a cycle per link
        last[0].next = node
        last[0] = node

    return _named(fn, "linked_cycles", n)


def _closures(n):
    callbacks = []

    def fn():
        payload = b"k" * (n - 33)

        def callback():
            return len(payload)

        callbacks.append(callback)

    return _named(fn, "closures", n)


def _class_attributes(n):
    registry = type("Registry", (), {})

    def fn():
        setattr(registry, f"entry_{len(registry.__dict__):08d}", b"a" * (n - 33))

    return _named(fn, "class_attributes", n)


def _bytearrays(n):
    kept = []

    def fn():
        kept.append(bytearray(n))

    return _named(fn, "bytearray", n)


def _arrays(n):
    kept = []

    def fn():
        kept.append(array.array("d", bytes(8 * -(-n // 8))))  # n bytes (rounded up) of C doubles

    return _named(fn, "c_array", n)


def _generators(n):
    suspended = []

    def gen(size):
        payload = b"g" * size
        yield len(payload)
        yield 0

    def fn():
        g = gen(n - 33)
        next(g)  # its frame, holding the payload, stays alive
        suspended.append(g)

    return _named(fn, "generator_frames", n)


_SHAPES = (_dict_growth, _linked_cycles, _closures, _class_attributes, _bytearrays, _arrays, _generators)
SHAPED_LEAKS = [make(n) for make in _SHAPES for n in SIZES]

# ----------------------------------------------------------------- look-alikes: the stack


def frame_of_caller():
    """sys._getframe(1) and its code name: creates the caller's frame object on 3.11+."""
    return sys._getframe(1).f_code.co_name


def caller_locals():
    """Reads the caller's and grand-caller's f_locals (a dict made on demand on 3.10-3.12)."""
    f = sys._getframe(1)
    return len(f.f_locals) + len(f.f_back.f_locals)


def inspect_stack():
    """inspect.stack() with source context: every frame object up the stack, linecache."""
    import inspect

    return len(inspect.stack())


def traceback_stack():
    """traceback.extract_stack() and format_stack()."""
    import traceback

    return len(traceback.extract_stack()) + len(traceback.format_stack(limit=5))


def warn_stacklevel():
    """warnings.warn with stacklevel 1, 2 and 3 under the default filters (shown once per place)."""
    for level in (1, 2, 3):
        warnings.warn("look-alike warning", UserWarning, stacklevel=level)


def warn_always_ignored():
    """A warning under a temporary 'ignore' filter: catch_warnings resets every registry."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.warn("ignored", DeprecationWarning, stacklevel=2)


_logger = logging.getLogger("hivemem.lookalike")
_logger.propagate = False
_devnull = open(os.devnull, "w")  # lives as long as the module
_logger.addHandler(logging.StreamHandler(_devnull))
_logger.setLevel(logging.DEBUG)


def log_stacklevel():
    """logging with stacklevel 1-3, stack_info=True and exception info, to /dev/null."""
    for level in (1, 2, 3):
        _logger.info("look-alike %d", level, stacklevel=level)
    _logger.warning("with the stack", stack_info=True)
    try:
        {}["missing"]
    except KeyError:
        _logger.exception("caught")


def logging_handler_churn():
    """Adds a new handler to a fixed logger, logs through it, removes and closes it."""
    handler = logging.StreamHandler(_devnull)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(funcName)s %(message)s"))
    _logger.addHandler(handler)
    _logger.info("through a temporary handler")
    _logger.removeHandler(handler)
    handler.close()


# ----------------------------------------------------------------- look-alikes: exceptions


def exception_chaining():
    """Raises, chains (from and implicit context) and formats exceptions with tracebacks."""
    import traceback

    try:
        try:
            try:
                1 / 0  # noqa: B018
            except ZeroDivisionError as exc:
                raise ValueError("wrapped") from exc
        except ValueError:
            raise KeyError("context") from None
    except KeyError as exc:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return len(text)


def exception_frame_cycle():
    """Keeps the caught exception in a local: exception -> traceback -> frame -> local, a cycle."""
    try:
        raise RuntimeError("cycle")
    except RuntimeError as exc:
        kept = exc
    return kept.args


def traceback_with_locals():
    """TracebackException(capture_locals=True) of a nested failure."""
    import traceback

    def inner(depth):
        if depth == 0:
            raise LookupError("deep")
        return inner(depth - 1)

    try:
        inner(5)
    except LookupError as exc:
        te = traceback.TracebackException.from_exception(exc, capture_locals=True)
        return len(list(te.format()))
    return 0


def exception_group():
    """ExceptionGroup (3.11+; a plain exception list before) split and formatted."""
    import builtins
    import traceback

    eg = getattr(builtins, "ExceptionGroup", None)
    errors = [ValueError(i) for i in range(5)]
    if eg is None:
        return len(errors)
    try:
        raise eg("several", errors)
    except Exception as exc:
        parts = exc.split(ValueError)  # type: ignore[attr-defined]
        return len(parts) + len(traceback.format_exception(type(exc), exc, exc.__traceback__))


def swallowed_lookups():
    """getattr/hasattr misses, dict KeyErrors and int() ValueErrors, all caught."""
    n = 0
    for i in range(200):
        n += hasattr(n, f"attr{i % 7}")
        try:
            int("x" * (i % 3 + 1))
        except ValueError:
            n += 1
    return n


# ----------------------------------------------------------------- look-alikes: caches


_patterns = [f"(?P<w{i}>[a-z]{{{i % 5 + 1}}})\\d+" for i in range(700)]
_pattern_n = [0]


def re_churn_fixed_set():
    """Cycles 100 patterns per call through a fixed set of 700: more than re's cache holds."""
    for _ in range(100):
        _pattern_n[0] = (_pattern_n[0] + 1) % len(_patterns)
        re.match(_patterns[_pattern_n[0]], "abc123")


@functools.cache
def _fib(k):
    return k if k < 2 else _fib(k - 1) + _fib(k - 2)


@functools.singledispatch
def _describe(obj):
    return "object"


@_describe.register
def _(obj: int):
    return "int"


class _Lazy:
    @functools.cached_property
    def value(self):
        return [0] * 50


def functools_caches():
    """functools.cache on a bounded key set, singledispatch, cached_property on temporaries."""
    n = _fib(150)
    for value in (1, "s", 2.0, b"b", (1,), None):
        _describe(value)
    return n + len(_Lazy().value) + len(functools.partial(max, 1)(2, 3).__class__.__name__)


def classes_per_call():
    """A class per call dispatched, registered with an ABC check, then dropped (cyclic garbage)."""
    import collections.abc

    cls = type("Temp", (), {"__len__": lambda self: 0, "__iter__": lambda self: iter(())})
    obj = cls()
    return (
        isinstance(obj, collections.abc.Sized),
        isinstance(obj, collections.abc.Mapping),
        _describe(obj),
        issubclass(cls, collections.abc.Iterable),
    )


def dataclass_and_namedtuple():
    """Builds a dataclass and a namedtuple type per call and instantiates them."""
    import collections
    import dataclasses

    point = collections.namedtuple("Point", "x y")
    box = dataclasses.make_dataclass("Box", [("w", int), ("h", int, dataclasses.field(default=1))])
    return point(1, 2).x + box(3).h


def typing_caches():
    """typing subscriptions (cached), get_type_hints, and a churn over 300 parameter combinations."""

    def annotated(a: typing.Optional[typing.Dict[str, int]], b: list[int]) -> typing.Union[int, str]:  # noqa: UP006, UP007, UP045
        return 0

    hints = typing.get_type_hints(annotated)
    names = (int, str, bytes, float, bool, complex)
    out = 0
    for i in range(60):
        out += len(typing.Tuple[names[i % 6], names[(i // 6) % 6], names[(i // 36) % 6]].__args__)  # noqa: UP006
        out += len(typing.Callable[[names[i % 6]], names[(i + 1) % 6]].__args__)
    return out + len(hints) + len(typing.Literal["a", "b"].__args__)


def lazy_imports():
    """Imports modules on first call only (decimal, fractions, xml.dom.minidom, json)."""
    import decimal
    import fractions
    import importlib
    import json

    dom = importlib.import_module("xml.dom.minidom")
    return decimal.Decimal(1) > 0, fractions.Fraction(1, 3) < 1, json.dumps([1]), dom.__name__


_words = [f"identifier_{i}" for i in range(300)]


def string_interning():
    """sys.intern of a bounded set of built strings; setattr with bounded names on temporaries."""

    class Bag:
        pass

    bag = Bag()
    total = 0
    for w in _words:
        s = sys.intern("".join([w[:5], w[5:]]))
        setattr(bag, s, 1)
        total += len(s)
    return total


# ----------------------------------------------------------------- look-alikes: threads, asyncio


def thread_local_short_threads():
    """Two short-lived threads each set thread-local state, then exit and are joined."""
    import threading

    local = _thread_local()

    def work():
        local.buffer = bytearray(4096)
        local.name = threading.current_thread().name

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@functools.lru_cache(maxsize=1)
def _thread_local():
    import threading

    return threading.local()


def thread_pool():
    """A ThreadPoolExecutor made, used for 20 tasks, and shut down per call."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        return sum(pool.map(abs, range(-10, 10)))


def asyncio_run():
    """asyncio.run: a new event loop with tasks, a gather and a sleep, closed at the end."""
    import asyncio

    async def child(i):
        await asyncio.sleep(0)
        return i

    async def main():
        return sum(await asyncio.gather(*(child(i) for i in range(10))))

    return asyncio.run(main())


def asyncio_loop_manual():
    """new_event_loop / run_until_complete / close, with a call_soon and a future."""
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        fut = loop.create_future()
        loop.call_soon(fut.set_result, 7)
        return loop.run_until_complete(fut)
    finally:
        loop.close()


LOOKALIKES = [
    frame_of_caller,
    caller_locals,
    inspect_stack,
    traceback_stack,
    warn_stacklevel,
    warn_always_ignored,
    log_stacklevel,
    logging_handler_churn,
    exception_chaining,
    exception_frame_cycle,
    traceback_with_locals,
    exception_group,
    swallowed_lookups,
    re_churn_fixed_set,
    functools_caches,
    classes_per_call,
    dataclass_and_namedtuple,
    typing_caches,
    lazy_imports,
    string_interning,
    thread_local_short_threads,
    thread_pool,
    asyncio_run,
    asyncio_loop_manual,
]

ALL_LEAKS = LEAKS + SHAPED_LEAKS
ALL_NON_LEAKS = NON_LEAKS + LOOKALIKES

# Smaller sets for the unit tests (the benchmark runs everything on every version).
SMALL_LEAKS = [fn for fn in ALL_LEAKS if getattr(fn, "leak_bytes", 0) == 100 or fn.__name__ == "leak_100B"]
STACK_LOOKALIKES = [
    frame_of_caller,
    caller_locals,
    inspect_stack,
    traceback_stack,
    warn_stacklevel,
    log_stacklevel,
    exception_chaining,
    traceback_with_locals,
    exception_group,
    classes_per_call,
]
