"""hivemem.Cache and hivemem.cache: a byte-bounded LRU mapping and memoizer, safe under threads and faults."""

from __future__ import annotations

import functools
import gc
import json
import os
import sys
import threading
from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hivemem
from hivemem._stores import cache as _cache
from hivemem._stores.cache import ENTRY_OVERHEAD, WALK, live_caches, weigh

from .conftest import run_python


def check(c: hivemem.Cache[object, object]) -> dict[object, object]:
    """Assert the cache's invariants; return what it shows (key -> value)."""
    with c._lock:
        order = list(c._order)
        assert c._bytes == sum(e.weight for e in order)
    shown = {k: e.value for k, e in list(c._data.items()) if e in c._order}
    for e in order:
        assert e.weight >= 0
    assert len(c) == len(order)
    for key, entry in list(c._data.items()):
        assert entry.key == key
    return shown


def value_for(key: int, size: int = 100) -> bytes:
    """A value that says which key it belongs to."""
    return (b"%08d" % key) * (size // 8)


# --------------------------------------------------------------------------- mapping


def test_mapping_basics_and_lru_order() -> None:
    """Set, get, del, pop, popitem, len, in and iteration behave as a mapping, least recently used first."""
    c: hivemem.Cache[str, bytes] = hivemem.Cache("1 MiB")
    for k in "abcd":
        c[k] = k.encode() * 10
    assert list(c) == ["a", "b", "c", "d"]
    assert c["a"] == b"a" * 10  # a read makes "a" the most recently used
    assert list(c) == ["b", "c", "d", "a"]
    assert "b" in c and c.peek("b") == b"b" * 10 and list(c) == ["b", "c", "d", "a"]  # neither touches
    del c["b"]
    assert c.pop("c") == b"c" * 10 and c.pop("zz", None) is None
    with pytest.raises(KeyError):
        c.pop("zz")
    with pytest.raises(KeyError):
        del c["zz"]
    assert c.popitem() == ("d", b"d" * 10)
    assert c.get("missing") is None and c.get("missing", b"!") == b"!"
    assert c.keys() == ["a"] and c.values() == [b"a" * 10] and c.items() == [("a", b"a" * 10)]
    assert c == {"a": b"a" * 10}
    c.clear()
    assert len(c) == 0 and c.bytes == 0
    with pytest.raises(KeyError):
        c.popitem()
    check(c)


def test_replacing_a_key_keeps_one_entry_and_its_weight() -> None:
    """Storing a key again replaces the value and its weight; it is not an eviction."""
    c: hivemem.Cache[str, bytes] = hivemem.Cache(None)
    c["k"] = b"x" * 1000
    c["k"] = b"y" * 10
    assert len(c) == 1 and c["k"] == b"y" * 10
    assert c.bytes == weigh(b"y" * 10) + weigh("k") + ENTRY_OVERHEAD
    assert c.info().evictions == 0
    check(c)


def test_max_bytes_evicts_least_recently_used_and_counts_size_evictions() -> None:
    """Inserting past max_bytes evicts from the least recently used end; bytes never exceed the bound."""
    one = weigh(value_for(0)) + weigh(0) + ENTRY_OVERHEAD
    c: hivemem.Cache[int, bytes] = hivemem.Cache(10 * one)
    for k in range(10):
        c[k] = value_for(k)
    assert c[0] == value_for(0)  # 0 is now the most recent: 1 goes first
    c[10] = value_for(10)
    assert 1 not in c and 0 in c and len(c) == 10
    for k in range(11, 30):
        c[k] = value_for(k)
        assert c.bytes <= c.max_bytes  # type: ignore[operator]
    info = c.info()
    assert info.evicted_size == 20 and info.evicted_size_bytes == 20 * one and info.evicted_pressure == 0
    assert sorted(c) == list(range(20, 30))
    check(c)


def test_maxsize_bounds_entries_and_zero_stores_nothing() -> None:
    """maxsize bounds the number of entries; maxsize=0 caches nothing, like lru_cache(maxsize=0)."""
    c: hivemem.Cache[int, int] = hivemem.Cache(None, maxsize=3)
    for k in range(5):
        c[k] = k
    assert list(c) == [2, 3, 4] and c.info().evicted_size == 2
    z: hivemem.Cache[int, int] = hivemem.Cache(None, maxsize=0)
    z[1] = 1
    assert len(z) == 0 and z.info().evictions == 0


def test_value_heavier_than_max_bytes_is_refused_and_cache_unchanged() -> None:
    """A value that alone outweighs max_bytes raises InvalidArgument naming both; the old value stays."""
    c: hivemem.Cache[str, bytes] = hivemem.Cache("4 KiB")
    c["k"] = b"small"
    with pytest.raises(hivemem.InvalidArgument, match=r"weighs .* more than max_bytes=4.0 KiB"):
        c["k"] = b"x" * 10_000
    assert c["k"] == b"small" and c.info().too_large == 1
    check(c)


def test_info_counts_hits_misses_and_reset() -> None:
    """info() counts hits and misses of reads; reset_stats() starts them again; to_dict is JSON-safe."""
    c: hivemem.Cache[int, int] = hivemem.Cache("1 MiB")
    c[1] = 1
    c[1], c.get(1), c.get(2)
    with pytest.raises(KeyError):
        c[3]
    info = c.info()
    assert (info.hits, info.misses, info.entries, info.hit_ratio) == (2, 2, 1, 0.5)
    assert json.loads(json.dumps(info.to_dict()))["hits"] == 2
    assert "hits=2" in repr(info) and "entries=1" in repr(c)
    c.reset_stats()
    assert (c.info().hits, c.info().misses, c.info().hit_ratio) == (0, 0, None)
    with pytest.raises(AttributeError):
        info.hits = 5  # type: ignore[misc]


def test_cache_is_generic_and_reports_hivemem_module() -> None:
    """hivemem.Cache[str, bytes] works at run time; the class says it lives in hivemem."""
    assert hivemem.Cache[str, bytes] is not None
    assert hivemem.Cache.__module__ == "hivemem"
    assert _cache.CacheInfo.__module__ == "hivemem"


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize(
    "value",
    [b"", b"x" * 1024, "text" * 300, "\u00e9" * 500, "\U0001f600" * 100, bytearray(5000), 10**30, 1.5],
)
def test_default_weigher_is_getsizeof_for_flat_values(value: object) -> None:
    """bytes, str, bytearray, big ints and floats weigh exactly sys.getsizeof."""
    assert weigh(value) == sys.getsizeof(value)


def test_default_weigher_numpy_and_memoryview() -> None:
    """An array weighs header + the data it owns; a view or memoryview adds the base it keeps alive."""
    np = pytest.importorskip("numpy")
    a = np.zeros(100_000)
    assert weigh(a) == sys.getsizeof(a) >= a.nbytes
    view = a[10:20]
    assert weigh(view) == sys.getsizeof(view) + sys.getsizeof(a)
    blob = b"z" * 100_000
    mv = memoryview(blob)[5:10]
    assert weigh(mv) == sys.getsizeof(mv) + sys.getsizeof(blob)
    released = memoryview(b"abc")
    released.release()
    assert weigh(released) == sys.getsizeof(released)


def test_default_weigher_shared_and_singletons_count_once() -> None:
    """Small ints, None and booleans weigh nothing; one object referenced twice counts once."""
    assert weigh(None) == weigh(True) == weigh(7) == 0
    s = "y" * 1000
    assert weigh([s, s, s]) == sys.getsizeof([s, s, s]) + sys.getsizeof(s)
    d = {"k": s}
    assert weigh(d) == sys.getsizeof(d) + sys.getsizeof("k") + sys.getsizeof(s)


def test_default_weigher_walk_is_bounded_and_extrapolates(monkeypatch: pytest.MonkeyPatch) -> None:
    """A million floats cost at most WALK getsizeof calls and weigh within 1% of their true size."""
    floats = [float(i) for i in range(1_000_000)]
    calls = [0]
    real = sys.getsizeof

    def counting(obj: object, *default: int) -> int:
        calls[0] += 1
        return real(obj, *default)

    monkeypatch.setattr(_cache, "_getsizeof", counting)
    w = weigh(floats)
    assert calls[0] <= WALK + 2
    true = real(floats) + 1_000_000 * real(1.5)
    assert abs(w - true) / true < 0.01


def test_default_weigher_walks_objects_and_survives_broken_sizeof() -> None:
    """Instances weigh their attributes (dict or slots); a raising __sizeof__ never escapes."""

    class Plain:
        def __init__(self) -> None:
            self.blob = b"p" * 5000

    class Slotted:
        __slots__ = ("blob",)

        def __init__(self) -> None:
            self.blob = b"s" * 5000

    class Broken:
        def __sizeof__(self) -> int:
            raise RuntimeError("no size")

    assert weigh(Plain()) > 5000
    assert weigh(Slotted()) > 5000
    assert weigh(Broken()) > 0
    deep: list[object] = []
    for _ in range(10_000):
        deep = [deep]
    assert weigh(deep) > 0  # depth-bounded: no RecursionError


def test_entry_weight_is_value_key_and_overhead() -> None:
    """With the default weigher an entry weighs its value, its key and ENTRY_OVERHEAD bytes."""
    c: hivemem.Cache[str, bytes] = hivemem.Cache(None)
    c["key" * 100] = b"v" * 4096
    assert c.bytes == sys.getsizeof(b"v" * 4096) + sys.getsizeof("key" * 100) + ENTRY_OVERHEAD


def test_custom_weigher_sets_the_weight() -> None:
    """A custom weigher's result is the entry's weight, in its own units; numpy integers are accepted."""
    c: hivemem.Cache[str, list[int]] = hivemem.Cache(10, weigher=len)
    c["a"] = [1] * 4
    c["b"] = [1] * 4
    c["c"] = [1] * 4
    assert list(c) == ["b", "c"] and c.bytes == 8
    np = pytest.importorskip("numpy")
    n: hivemem.Cache[str, int] = hivemem.Cache(None, weigher=lambda v: np.int64(v))
    n["x"] = 7
    assert n.bytes == 7


@pytest.mark.parametrize("bad", [-1, 1.5, "12", None, True, 2**60, float("nan"), [3]])
def test_weigher_returning_a_bad_value_raises_and_changes_nothing(bad: object) -> None:
    """A weigher returning anything but a whole number of bytes raises InvalidArgument; nothing changes."""
    flag = [False]

    def weigher(v: object) -> object:
        return bad if flag[0] else 10

    c: hivemem.Cache[str, str] = hivemem.Cache(1000, weigher=weigher)  # type: ignore[arg-type]
    c["a"] = "1"
    before = (c.items(), c.info())
    flag[0] = True
    with pytest.raises(hivemem.InvalidArgument, match=r"weigher .* returned"):
        c["a"] = "2"
    with pytest.raises(hivemem.InvalidArgument):
        c["b"] = "2"
    assert (c.items(), c.info()) == before
    check(c)


def test_weigher_that_raises_is_wrapped_and_changes_nothing() -> None:
    """A weigher that raises becomes an InvalidArgument chained to its error; MemoryError passes as is."""
    errors: list[BaseException] = [ValueError("boom")]

    def weigher(v: object) -> int:
        if errors:
            raise errors[0]
        return 1

    c: hivemem.Cache[str, str] = hivemem.Cache(1000, weigher=weigher)
    with pytest.raises(hivemem.InvalidArgument, match="raised ValueError: boom") as exc:
        c["a"] = "x"
    assert isinstance(exc.value.__cause__, ValueError)
    errors[0] = MemoryError()
    with pytest.raises(MemoryError):
        c["a"] = "x"
    assert len(c) == 0 and c.bytes == 0
    errors.clear()
    c["a"] = "x"
    assert c["a"] == "x"


def test_unhashable_key_raises_typeerror_and_changes_nothing() -> None:
    """An unhashable key raises TypeError, as a dict does, before anything is stored."""
    c: hivemem.Cache[object, int] = hivemem.Cache(1000)
    with pytest.raises(TypeError):
        c[[1, 2]] = 3
    assert len(c) == 0 and c.bytes == 0


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_bytes": "lots"}, "max_bytes"),
        ({"max_bytes": -5}, "invalid size"),
        ({"max_bytes": float("nan")}, "invalid size"),
        ({"max_bytes": True}, "invalid size"),
        ({"max_bytes": 2**60}, "max_bytes"),
        ({"max_bytes": 10, "maxsize": -1}, "maxsize"),
        ({"max_bytes": 10, "maxsize": 2.5}, "maxsize"),
        ({"max_bytes": 10, "maxsize": True}, "maxsize"),
        ({"max_bytes": 10, "weigher": 5}, "weigher"),
        ({"max_bytes": 10, "keep": 1.5}, "keep"),
        ({"max_bytes": 10, "keep": -0.1}, "keep"),
        ({"max_bytes": 10, "keep": float("nan")}, "keep"),
    ],
)
def test_bad_arguments_raise_before_anything_is_made(kwargs: dict[str, object], match: str) -> None:
    """Every argument is checked; a bad one raises a hivemem error naming it, and no cache is registered."""
    before = len(live_caches())
    with pytest.raises(hivemem.HivememError, match=match):
        hivemem.Cache(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(hivemem.HivememError, match=match):
        hivemem.cache(**kwargs)  # type: ignore[arg-type]
    assert len(live_caches()) == before


def test_decorator_arguments_are_checked() -> None:
    """typed must be a bool, the decorated object callable, and max_bytes is required."""
    with pytest.raises(hivemem.InvalidArgument, match="typed"):
        hivemem.cache(max_bytes=10, typed="yes")  # type: ignore[arg-type]
    with pytest.raises(hivemem.InvalidArgument, match="decorates a callable"):
        hivemem.cache(max_bytes=10)(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hivemem.cache(lambda: 1)  # type: ignore[call-arg, arg-type]


@pytest.mark.parametrize("bad", [-1, "x", float("inf"), None])
def test_shrink_checks_its_argument(bad: object) -> None:
    """shrink(nbytes) needs a size; the cache is unchanged after a bad one."""
    c: hivemem.Cache[int, int] = hivemem.Cache(None)
    c[1] = 1000
    with pytest.raises(hivemem.HivememError):
        c.shrink(bad)  # type: ignore[arg-type]
    assert len(c) == 1


# --------------------------------------------------------------------------- shrinking


def test_shrink_evicts_least_recently_used_never_more_than_asked() -> None:
    """shrink(n) evicts oldest first until n bytes are gone, overshooting by less than one entry."""
    c: hivemem.Cache[int, bytes] = hivemem.Cache(None)
    for k in range(100):
        c[k] = value_for(k, 1000)
    c[0]  # most recently used now
    one = c.bytes // 100
    got = c.shrink(int(one * 30.5))
    assert got["entries"] == 31 and one * 30.5 <= got["bytes"] < one * 31.5
    assert 0 in c and all(k not in c for k in range(1, 32)) and 32 in c
    assert got["released"] == got["bytes"]  # no one else held those values
    info = c.info()
    assert (
        info.evicted_pressure == 31 and info.evicted_pressure_bytes == got["bytes"] and info.evicted_size == 0
    )
    check(c)


def test_shrink_keeps_its_floor_and_empties_only_with_keep_zero() -> None:
    """shrink(n, keep=0.25) stops at a quarter of the bytes; keep=0 with n >= bytes empties the cache."""
    c: hivemem.Cache[int, bytes] = hivemem.Cache(None)
    for k in range(100):
        c[k] = value_for(k, 1000)
    total = c.bytes
    c.shrink(10 * total, keep=0.25)
    assert 0.24 * total <= c.bytes <= 0.26 * total and 99 in c
    c.shrink(c.bytes)
    assert len(c) == 0 and c.bytes == 0 and c.info().evicted_pressure == 100


def test_released_counts_only_values_nobody_else_holds() -> None:
    """A value the program still references is evicted but not counted as released."""
    c: hivemem.Cache[int, bytes] = hivemem.Cache(None)
    held = value_for(1, 10_000)
    c[1] = held
    c[2] = value_for(2, 10_000)
    got = c.shrink(c.bytes)
    assert got["entries"] == 2
    assert got["released"] == c.info().evicted_pressure_bytes - (weigh(held) + weigh(1) + ENTRY_OVERHEAD)


# --------------------------------------------------------------------------- model check


ops = st.lists(
    st.tuples(
        st.sampled_from(["set", "get", "del", "shrink", "peek", "pop", "clear"]),
        st.integers(0, 15),
        st.integers(0, 3000),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops=ops, cap=st.integers(0, 12_000), maxsize=st.one_of(st.none(), st.integers(0, 8)))
def test_behaves_like_a_weighted_lru_model(
    ops: list[tuple[str, int, int]], cap: int, maxsize: int | None
) -> None:
    """Any sequence of operations leaves the same contents, order and bytes as a simple weighted LRU model."""
    c: hivemem.Cache[int, bytes] = hivemem.Cache(cap, maxsize=maxsize, weigher=len)
    model: OrderedDict[int, bytes] = OrderedDict()
    for op, key, size in ops:
        if op == "set":
            value = value_for(key, size)
            if len(value) > cap:
                with pytest.raises(hivemem.InvalidArgument):
                    c[key] = value
                continue
            c[key] = value
            if maxsize == 0:
                continue
            model.pop(key, None)
            model[key] = value
            while sum(map(len, model.values())) > cap or (maxsize is not None and len(model) > maxsize):
                model.popitem(last=False)
        elif op == "get":
            assert c.get(key) == model.get(key)
            if key in model:
                model.move_to_end(key)
        elif op == "peek":
            assert c.peek(key) == model.get(key)
        elif op in ("del", "pop"):
            assert c.pop(key, None) == model.pop(key, None)
        elif op == "shrink":
            c.shrink(size)
            gone = 0
            while model and gone < size:
                gone += len(model.popitem(last=False)[1])
        else:
            c.clear()
            model.clear()
        assert list(c.items()) == list(model.items())
        assert c.bytes == sum(map(len, model.values()))
    check(c)


# --------------------------------------------------------------------------- decorator


def test_decorator_memoizes_like_lru_cache() -> None:
    """Positional and keyword arguments make keys as lru_cache does; kwarg order matters; 1 == 1.0."""
    calls: list[tuple[object, ...]] = []

    @hivemem.cache(max_bytes="1 MiB")
    def f(a: object, b: object = 0) -> str:
        calls.append((a, b))
        return f"{a}-{b}"

    ref = functools.lru_cache(maxsize=None)(f.__wrapped__)  # type: ignore[attr-defined]
    for args, kwargs in [((1,), {}), ((1,), {}), ((1.0,), {}), ((1, 2), {}), ((1,), {"b": 2})]:
        assert f(*args, **kwargs) == ref(*args, **kwargs)
    assert f(a=1, b=2) == "1-2" and f(b=2, a=1) == "1-2"
    ref(a=1, b=2), ref(b=2, a=1)
    info, want = f.cache_info(), ref.cache_info()
    assert (info.hits, info.misses, info.currsize) == (want.hits, want.misses, want.currsize)
    assert f.__name__ == "f" and f.cache_parameters()["max_bytes"] == 2**20


def test_typed_caches_types_apart() -> None:
    """typed=True keeps f(1) and f(1.0) apart, like lru_cache(typed=True)."""

    @hivemem.cache(max_bytes=10_000, typed=True)
    def f(x: float) -> str:
        return repr(x)

    assert (f(1), f(1.0), f(x=1), f(x=1.0)) == ("1", "1.0", "1", "1.0")
    assert f.cache_info().misses == 4 and f.cache_info().currsize == 4


def test_unhashable_argument_raises_and_exceptions_are_not_cached() -> None:
    """An unhashable argument raises TypeError; a function that raises is called again next time."""
    calls = [0]

    @hivemem.cache(max_bytes=10_000)
    def f(x: object) -> object:
        calls[0] += 1
        if x == "fail":
            raise ValueError(x)
        return x

    with pytest.raises(TypeError):
        f([1])
    for _ in range(2):
        with pytest.raises(ValueError):
            f("fail")
    assert calls[0] == 2 and f.cache_info().currsize == 0


def test_cache_clear_empties_and_resets_statistics() -> None:
    """cache_clear() empties the cache and resets hits and misses, like lru_cache."""

    @hivemem.cache(max_bytes=10_000)
    def f(x: int) -> int:
        return x

    f(1), f(1)
    f.cache_clear()
    info = f.cache_info()
    assert (info.hits, info.misses, info.currsize, info.bytes) == (0, 0, 0, 0)


def test_methods_and_recursion() -> None:
    """It decorates methods (self is part of the key) and recursive functions."""

    class Box:
        def __init__(self, n: int) -> None:
            self.n = n

        @hivemem.cache(max_bytes=10_000)
        def times(self, k: int) -> int:
            return self.n * k

    a, b = Box(2), Box(3)
    assert (a.times(5), b.times(5), a.times(5)) == (10, 15, 10)
    assert Box.times.cache_info().hits == 1
    assert a.times.cache_info().currsize == 2  # a bound method reaches the function's attributes

    @hivemem.cache(max_bytes="1 MiB")
    def fib(n: int) -> int:
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert fib(200) == 280571172992510140037611932413038677189525
    assert fib.cache_info().misses == 201


def test_oversized_result_is_returned_not_stored() -> None:
    """A result heavier than max_bytes is returned and counted in too_large, not stored."""

    @hivemem.cache(max_bytes=1000)
    def f(n: int) -> bytes:
        return b"x" * n

    assert f(5000) == b"x" * 5000 and f(10) == b"x" * 10
    assert f.cache_info().too_large == 1 and f.cache_info().currsize == 1


def test_decorator_weigher_failure_raises_hivemem_error() -> None:
    """A weigher failing on a result raises InvalidArgument from the call; nothing is stored."""

    @hivemem.cache(max_bytes=1000, weigher=lambda v: -1)
    def f(x: int) -> int:
        return x

    with pytest.raises(hivemem.InvalidArgument, match="returned -1"):
        f(1)
    assert f.cache_info().currsize == 0


# --------------------------------------------------------------------------- threads


def test_no_lock_is_held_while_the_function_runs() -> None:
    """The function may use its own cache from another thread while it runs: no deadlock."""
    out: list[int] = []

    @hivemem.cache(max_bytes=10_000)
    def f(x: int) -> int:
        if x == 0:
            t = threading.Thread(target=lambda: out.append(f(1)))
            t.start()
            t.join(10)
            assert not t.is_alive(), "deadlock: a lock was held while calling the function"
        return x

    assert f(0) == 0 and out == [1]


def test_two_threads_missing_one_key_both_compute() -> None:
    """Two threads that miss the same key at once both call the function; one result stays."""
    barrier = threading.Barrier(2, timeout=10)
    calls = [0]

    @hivemem.cache(max_bytes=10_000)
    def f(x: int) -> int:
        calls[0] += 1
        barrier.wait()
        return x * 2

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(f(4))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [8, 8] and calls[0] == 2 and f.cache_info().currsize == 1
    check(f.cache)


class Probe:
    """A key or value that records whether the cache's lock was held when its code ran."""

    held: list[bool] = []  # noqa: RUF012 - shared on purpose

    def __init__(self, cache: hivemem.Cache[object, object], n: int) -> None:
        self.cache, self.n = cache, n

    def _note(self) -> None:
        Probe.held.append(self.cache._lock._is_owned())  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        self._note()
        return hash(self.n)

    def __eq__(self, other: object) -> bool:
        self._note()
        return isinstance(other, Probe) and other.n == self.n

    def __del__(self) -> None:
        self._note()


def test_user_code_never_runs_under_the_lock() -> None:
    """Keys' __hash__/__eq__, the weigher and evicted values' destructors all run with the lock free."""
    Probe.held.clear()
    c: hivemem.Cache[object, object] = hivemem.Cache(None, maxsize=3)

    def weigher(v: object) -> int:
        Probe.held.append(c._lock._is_owned())  # type: ignore[attr-defined]
        return 100

    c._weigher = weigher
    for n in range(10):
        c[Probe(c, n)] = Probe(c, -n)
        c.get(Probe(c, n))
        c.get(Probe(c, n - 1))
    c.pop(Probe(c, 9))
    c.shrink(100)
    c.clear()
    gc.collect()
    assert len(Probe.held) > 50
    assert not any(Probe.held)


def test_destructor_that_reenters_the_cache_does_not_deadlock() -> None:
    """An evicted value whose __del__ writes to the same cache works, and the cache stays consistent."""
    c: hivemem.Cache[object, object] = hivemem.Cache(None, maxsize=5)

    class Writer:
        def __init__(self, n: int) -> None:
            self.n = n

        def __del__(self) -> None:
            c[f"from-del-{self.n}"] = self.n

    for n in range(20):
        c[n] = Writer(n)
    c.shrink(10**9, keep=0.4)
    check(c)
    assert len(c) <= 5


def test_concurrent_readers_writers_and_shrinkers_keep_invariants() -> None:
    """8 threads reading, writing, deleting and shrinking: every key shows its own value, bytes add up."""
    import random

    c: hivemem.Cache[int, bytes] = hivemem.Cache(200_000)
    stop = threading.Event()
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                k = rng.randrange(300)
                r = rng.random()
                if r < 0.5:
                    v = c.get(k)
                    assert v is None or v.startswith(b"%08d" % k)
                elif r < 0.9:
                    c[k] = value_for(k, rng.randrange(8, 4000))
                elif r < 0.97:
                    c.pop(k, None)
                else:
                    c.shrink(rng.randrange(50_000), keep=rng.choice([0.0, 0.5]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # many more interleavings
    try:
        for t in threads:
            t.start()
        stop.wait(1.5)
        stop.set()
        for t in threads:
            t.join(10)
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors
    shown = check(c)
    assert c.bytes <= 200_000
    for k, v in shown.items():
        assert v.startswith(b"%08d" % k)  # type: ignore[attr-defined]


def test_free_threaded_hit_path_takes_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a GIL the hit path moves the entry under the lock; behaviour is the same."""
    monkeypatch.setattr(_cache, "_GIL", False)
    c: hivemem.Cache[int, int] = hivemem.Cache(None)
    assert c._touch == c._locked_touch
    c[1], c[2] = 1, 2
    assert c[1] == 1 and list(c) == [2, 1]


# --------------------------------------------------------------------------- faults


def _interrupt_each_line(action: object, c: hivemem.Cache[int, bytes], limit: int = 3000) -> int:
    """Run *action* again and again, raising KeyboardInterrupt at its 1st, 2nd, ... line in _cache."""
    interrupted = 0
    for n in range(1, limit):
        seen = [0]

        def tracer(frame: object, event: str, arg: object, n: int = n, seen: list[int] = seen) -> object:
            if frame.f_code.co_filename != _cache.__file__:  # type: ignore[attr-defined]
                return tracer
            if event == "line":
                seen[0] += 1
                if seen[0] == n:
                    raise KeyboardInterrupt
            return tracer

        sys.settrace(tracer)
        try:
            action(n)  # type: ignore[operator]
        except KeyboardInterrupt:
            interrupted += 1
        else:
            sys.settrace(None)
            if seen[0] < n:
                return interrupted  # n is past the last line: every line was interrupted once
        finally:
            sys.settrace(None)
        shown = check(c)
        for k, v in shown.items():
            assert v == value_for(k, len(v)), (n, k)  # never a wrong value for a key
    raise AssertionError("the action never ran to the end")


@pytest.mark.parametrize("op", ["set", "shrink", "pop", "clear", "get", "popitem"])
def test_interrupt_at_every_line_leaves_the_cache_consistent(op: str) -> None:
    """A KeyboardInterrupt at any line of an operation leaves bytes exact and every key with its own value."""
    c: hivemem.Cache[int, bytes] = hivemem.Cache(20_000)

    def fill() -> None:
        for k in range(40):
            c[k % 25] = value_for(k % 25, 500 + 37 * k)

    fill()

    def action(n: int) -> None:
        k = n % 25
        if op == "set":
            c[k] = value_for(k, 2000 + n % 7)
        elif op == "shrink":
            c.shrink(3000, keep=0.2)
        elif op == "pop":
            c.pop(k, None)
        elif op == "clear":
            c.clear()
        elif op == "get":
            c.get(k)
        elif op == "popitem" and len(c):
            c.popitem()
        if len(c) < 10:
            sys.settrace(None)
            fill()

    assert _interrupt_each_line(action, c) >= 3
    # An insert interrupted before its evictions leaves the bound exceeded until the next one evicts.
    c[99] = value_for(99, 100)
    assert c[99] == value_for(99, 100) and c.bytes <= 20_000
    check(c)


def test_memory_error_mid_insert_leaves_the_cache_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    """A MemoryError while an entry is made propagates, and the cache shows what it showed before."""
    c: hivemem.Cache[int, bytes] = hivemem.Cache(None)
    c[1] = value_for(1)
    before = c.items()

    def no_memory(*args: object) -> None:
        raise MemoryError

    monkeypatch.setattr(_cache, "_Entry", no_memory)
    with pytest.raises(MemoryError):
        c[2] = value_for(2)
    monkeypatch.undo()
    assert c.items() == before
    check(c)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_while_another_thread_holds_the_lock() -> None:
    """A child forked while a parent thread holds the cache's lock can use the cache at once."""
    out = run_python(
        """
        import os, signal, threading, hivemem
        c = hivemem.Cache("1 MiB")
        c[1] = b"one"
        held, done = threading.Event(), threading.Event()
        def hold():
            with c._lock:
                held.set()
                done.wait(10)
        t = threading.Thread(target=hold)
        t.start()
        held.wait(10)
        pid = os.fork()
        if pid == 0:
            signal.alarm(10)
            c[2] = b"two"
            c.shrink(1)
            os._exit(0 if c.get(2) == b"two" and len(c) == 1 else 3)
        _, status = os.waitpid(pid, 0)
        done.set()
        t.join()
        print(os.waitstatus_to_exitcode(status))
        """
    )
    assert out.strip() == "0"


# --------------------------------------------------------------------------- holding and import


def test_caches_are_held_weakly() -> None:
    """A cache, or a decorated function, nobody references any more leaves the live list."""
    gc.collect()
    before = len(live_caches())
    c: hivemem.Cache[int, int] = hivemem.Cache(100)

    @hivemem.cache(max_bytes=100)
    def f(x: int) -> int:
        return x

    assert len(live_caches()) == before + 2
    del c, f
    gc.collect()
    assert len(live_caches()) == before


def test_import_stays_cheap_and_optimize_does_not_load_the_cache_module() -> None:
    """import hivemem and optimize() never load _cache; using hivemem.cache does not load typing."""
    out = run_python(
        """
        import json, sys, hivemem
        hivemem.optimize(target_mb=1)
        after_optimize = "hivemem._stores.cache" in sys.modules
        @hivemem.cache(max_bytes="1 MiB")
        def f(x):
            return x
        f(1)
        print(json.dumps([after_optimize, "typing" in sys.modules, "dataclasses" in sys.modules]))
        """
    )
    assert json.loads(out) == [False, False, False]


def test_default_weigher_samples_long_lists_and_repeats_do_not_multiply() -> None:
    """A long list is sampled over its length; a list repeating one object weighs about that object once."""
    row = b"r" * 10_000
    repeated = [row] * 100_000
    assert weigh(repeated) < sys.getsizeof(repeated) + 2 * sys.getsizeof(row)
    mixed = [b"s" * 10 for _ in range(5000)] + [b"L" * 10_000 for _ in range(5000)]
    true = sys.getsizeof(mixed) + sum(sys.getsizeof(x) for x in mixed)
    assert abs(weigh(mixed) - true) / true < 0.05  # the first 64 items alone would say half


def test_default_weigher_sampling_does_not_alias_with_alternating_rows() -> None:
    """A long row alternating floats and strings weighs within 10% of the sum of its parts."""
    row = tuple(float(j) if j % 2 else f"s{j:014d}" for j in range(256))
    true = sys.getsizeof(row) + sum(sys.getsizeof(x) for x in row)
    assert abs(weigh(row) - true) / true < 0.10


def test_copy_is_independent_and_pickling_is_refused() -> None:
    """copy() makes an independent cache with the same entries and order; pickle and deepcopy refuse."""
    import copy
    import pickle

    c: hivemem.Cache[int, bytes] = hivemem.Cache("1 MiB", maxsize=10)
    for k in range(5):
        c[k] = value_for(k)
    c[0]
    twin = copy.copy(c)
    assert twin.items() == c.items() and twin.bytes == c.bytes and twin.maxsize == 10
    twin[9] = value_for(9)
    del twin[1]
    assert 9 not in c and 1 in c
    check(c), check(twin)
    for attempt in (pickle.dumps, copy.deepcopy):
        with pytest.raises(TypeError, match="cannot be pickled"):
            attempt(c)
    check(c)


def test_typed_keys_do_not_count_the_types() -> None:
    """typed=True adds the argument types to the key; classes are shared, so they weigh nothing."""

    @hivemem.cache(max_bytes=None, typed=True)
    def f(x: int) -> int:
        return x

    @hivemem.cache(max_bytes=None)
    def g(x: int) -> int:
        return x

    f(1000), g(1000)
    assert f.cache_info().bytes - g.cache_info().bytes < 200
