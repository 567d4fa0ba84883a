"""dedup_strings and StringPool: equal strings share one object; nothing else changes."""

from __future__ import annotations

import copy
import json
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hivemem
from hivemem import AGGRESSIVE, CHEAP, MODERATE
from hivemem._reclaim.containers import dedup_registry as registered
from hivemem._reclaim.dedup import _Dedup, dedup_registered
from hivemem.strategies.dedup_strings import DedupStrings

from .conftest import run_strategy


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> object:
    # pytest may run helper threads (xdist); unit tests decide explicitly
    monkeypatch.setattr("hivemem._reclaim.held.other_threads", lambda: 0)
    yield
    registered.clear()


def fresh(s: str) -> str:
    """A new str object equal to *s* (never the literal's interned instance)."""
    return "".join(list(s + "!"))[:-1]


def run(level: object = MODERATE) -> hivemem.StepResult:
    return run_strategy(DedupStrings(), level)


def test_duplicates_in_a_list_share_one_object() -> None:
    """Equal strings in rows become one object; sizes, order and values are unchanged."""
    rows = [[fresh("active"), fresh("GB")] for _ in range(100)]
    snapshot = json.loads(json.dumps(rows))  # new strings: deepcopy would share them
    hivemem.register_container(rows)
    step = run()
    assert rows == snapshot and len(rows) == 100
    assert len({id(r[0]) for r in rows}) == 1 and len({id(r[1]) for r in rows}) == 1
    assert step.stats["strings_merged"] == 2 * 99
    assert step.stats["allocator_bytes"] == 99 * (sys.getsizeof("active") + sys.getsizeof("GB"))
    assert "merged 198 duplicate strings" in step.summary


def test_strings_still_referenced_elsewhere_do_not_count_as_freed() -> None:
    """A duplicate also held outside the container is merged but its bytes are not counted as freed."""
    outside = fresh("value")
    rows = [fresh("value"), outside, fresh("value")]
    hivemem.register_container(rows)
    stats = dedup_registered()
    assert stats["strings_merged"] == 2
    assert stats["allocator_bytes"] == sys.getsizeof("value")  # only the third; `outside` lives on
    assert rows[1] is rows[0] and outside is not rows[0]


def test_dict_values_merged_keys_left_alone_by_default() -> None:
    """Dict values are merged in place; keys are not touched unless keys=True."""
    k1, k2 = fresh("name"), fresh("name")
    data = {"a": {k1: fresh("x")}, "b": {k2: fresh("x")}}
    snapshot = copy.deepcopy(data)
    hivemem.register_container(data)
    run()
    assert data == snapshot
    assert data["a"][k1] is data["b"][k2]
    assert next(iter(data["a"])) is k1 and next(iter(data["b"])) is k2


def test_keys_true_rebuilds_dicts_in_the_same_order() -> None:
    """With keys=True equal keys are merged too; every dict keeps its order and identity."""
    rows = [{fresh("id"): i, fresh("name"): fresh("n"), "z": 0} for i in range(50)]
    inner = [id(r) for r in rows]
    snapshot = copy.deepcopy(rows)
    hivemem.register_container(rows, keys=True)
    stats = dedup_registered()
    assert rows == snapshot and [id(r) for r in rows] == inner
    assert all(list(r) == ["id", "name", "z"] for r in rows)
    assert len({id(next(iter(r))) for r in rows}) == 1
    assert stats["keys_merged"] == 2 * 49


def test_owned_tuples_are_rebuilt_shared_tuples_left_alone() -> None:
    """A tuple held only by its parent is replaced by an equal tuple; a tuple held elsewhere is kept."""
    shared = (fresh("ss"), fresh("tt"))
    rows = [(fresh("ss"), fresh("tt")), (fresh("ss"), fresh("tt")), shared]
    hivemem.register_container(rows)
    stats = dedup_registered()
    assert rows[2] is shared
    assert rows[1][0] is rows[0][0] and rows[1][1] is rows[0][1]
    assert stats["tuples_rebuilt"] == 1
    assert rows == [("ss", "tt")] * 3


def test_cycles_and_shared_sublists_are_walked_once() -> None:
    """A container that contains itself, or a sublist reachable twice, does not loop forever."""
    a: list[object] = [fresh("x")]
    a.append(a)
    sub = [fresh("x")]
    a.extend([sub, sub, {"k": sub}])
    hivemem.register_container(a)
    stats = dedup_registered()
    assert a[0] is sub[0]
    assert stats["containers_walked"] == 3  # a, sub, the dict


def test_register_container_rejects_other_types() -> None:
    """Tuples, sets and strings cannot be registered: InvalidArgument names the type."""
    for bad in ((1, 2), {1}, "abc"):
        with pytest.raises(hivemem.InvalidArgument, match=type(bad).__name__):
            hivemem.register_container(bad)
    with pytest.raises(hivemem.InvalidArgument, match="keys="):
        hivemem.register_container([], keys="yes")  # type: ignore[arg-type]
    assert len(registered) == 0


def test_plain_list_held_strongly_subclass_weakly() -> None:
    """A list is held until unregister_container(); a list subclass is held weakly and goes with it."""

    class Rows(list):  # type: ignore[type-arg]
        pass

    plain, sub = [1], Rows([2])
    hivemem.register_container(plain)
    hivemem.register_container(sub)
    strong = {type(o).__name__: e.strong for o, e in registered.entries()}
    assert strong == {"list": True, "Rows": False}
    del sub
    assert [type(o).__name__ for o, _ in registered.entries()] == ["list"]
    assert hivemem.unregister_container(plain) is True
    assert hivemem.unregister_container(plain) is False


def test_skipped_at_cheap_and_without_containers() -> None:
    """Runs at MODERATE and above; with nothing registered it skips with the reason."""
    assert "moderate" in (run(CHEAP).skipped or "")
    assert "no container registered" in (run(MODERATE).skipped or "")


def test_unlocked_container_skipped_while_other_threads_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a lock, a container is left alone when another Python thread exists, with the reason."""
    monkeypatch.setattr("hivemem._reclaim.held.other_threads", lambda: 2)
    rows = [fresh("ab"), fresh("ab")]
    hivemem.register_container(rows)
    step = run(AGGRESSIVE)
    assert rows[0] is not rows[1]
    assert step.skipped is not None and "2 other Python thread(s)" in step.skipped


def test_concurrent_writer_with_lock_loses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread appending and rewriting under the registered lock while dedup runs: every write survives."""
    monkeypatch.setattr("hivemem._reclaim.held.other_threads", lambda: 1)
    lock = threading.Lock()
    rows: list[object] = [fresh("v") for _ in range(20_000)]
    hivemem.register_container(rows, lock=lock)
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        i = 0
        while not stop.is_set():
            with lock:
                rows.append(f"w{i}")
                rows[i % 1000] = f"r{i}"
                written.append(i)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        deadline = time.monotonic() + 2
        passes = 0
        while time.monotonic() < deadline and passes < 20:
            dedup_registered()
            passes += 1
    finally:
        stop.set()
        t.join()
    n = len(written)
    assert len(rows) == 20_000 + n
    assert rows[20_000:] == [f"w{i}" for i in range(n)]
    last = {}
    for i in range(n):
        last[i % 1000] = f"r{i}"
    assert all(rows[k] == v for k, v in last.items())
    assert all(v == "v" for v in rows[len(last) : 20_000])


text = st.sampled_from(["GB", "FR", "active", "pending", "2024-01-01", "", "x", "é€"]).map(fresh)
leaves = text | st.integers() | st.none() | st.booleans()
nested = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(text, inner, max_size=5) | st.tuples(inner, inner)
    ),
    max_leaves=40,
)


def mutable_ids(obj: object) -> list[int]:
    out: list[int] = []
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, list):
            out.append(id(o))
            stack.extend(o)
        elif isinstance(o, dict):
            out.append(id(o))
            stack.extend(o.values())
        elif isinstance(o, tuple):
            stack.extend(o)
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(nested, max_size=8) | st.dictionaries(text, nested, max_size=6), st.booleans())
def test_dedup_round_trip_keeps_equality_structure_and_identity(data: object, keys: bool) -> None:
    """Property: after dedup the data compares equal, every list/dict keeps its identity, size and order."""
    snapshot = copy.deepcopy(data)
    ids = mutable_ids(data)
    work = _Dedup()
    work.run(data, keys)
    assert data == snapshot
    assert json.dumps(data, default=repr) == json.dumps(snapshot, default=repr)  # order too
    assert mutable_ids(data) == ids


# ------------------------------------------------------------------ StringPool


def test_string_pool_returns_one_object_per_value_and_counts_savings() -> None:
    """pool(s) returns the first equal instance; hits, misses and saved bytes are exact."""
    pool = hivemem.StringPool()
    a, b, c = fresh("active"), fresh("active"), fresh("GB")
    assert pool(a) is a and pool(b) is a and pool(c) is c
    assert (pool.hits, pool.misses, len(pool)) == (1, 2, 2)
    assert pool.saved == sys.getsizeof(b)
    assert pool.nbytes == sys.getsizeof(a) + sys.getsizeof(c)
    assert "hits=1" in repr(pool) and pool.to_dict()["distinct"] == 2


def test_string_pool_passes_through_non_str_and_respects_bounds() -> None:
    """Non-str values come back unchanged; max_length and max_size leave strings unpooled."""
    pool = hivemem.StringPool(max_size=1, max_length=3)

    class S(str):
        pass

    sub = S("ab")
    assert pool(5) == 5 and pool(None) is None and pool(sub) is sub
    assert pool(fresh("abcd")) == "abcd" and len(pool) == 0  # too long
    first = pool(fresh("ab"))
    other = fresh("cd")
    assert pool(other) is other and len(pool) == 1  # pool full
    assert pool(fresh("ab")) is first
    pool.clear()
    assert len(pool) == 0


def test_string_pool_json_hook_and_map() -> None:
    """pairs() pools keys and string values of parsed JSON; map() pools a row."""
    pool = hivemem.StringPool()
    docs = [json.loads('{"country": "GB", "n": 1}', object_pairs_hook=pool.pairs) for _ in range(3)]
    assert len({id(next(iter(d))) for d in docs}) == 1
    assert len({id(d["country"]) for d in docs}) == 1
    rows = [pool.map(line.split(",")) for line in ["GB,x", "GB,y"]]
    assert rows[0][0] is rows[1][0]


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_string_pool_rejects_bad_bounds(bad: object) -> None:
    """max_size/max_length must be non-negative ints or None."""
    with pytest.raises(hivemem.InvalidArgument, match="max_size"):
        hivemem.StringPool(max_size=bad)  # type: ignore[arg-type]


@given(st.lists(st.text(max_size=5).map(fresh), max_size=50))
def test_string_pool_round_trip(values: list[str]) -> None:
    """Property: pooled values are equal to the originals, in order, and equal values share one object."""
    pool = hivemem.StringPool()
    out = [pool(v) for v in values]
    assert out == values
    by_value: dict[str, int] = {}
    for v in out:
        assert by_value.setdefault(v, id(v)) == id(v)


ODD = [None, -1, 0, 1.5, float("nan"), float("inf"), 10**400, 1e308, "10", "10MB", True, [], object()]


@pytest.mark.parametrize("value", ODD)
@pytest.mark.parametrize("name", ["max_size", "max_length"])
def test_string_pool_bounds_work_or_raise_hivemem_error(name: str, value: object) -> None:
    """Every odd bound either builds a working pool or raises InvalidArgument naming it, at the call."""
    try:
        pool = hivemem.StringPool(**{name: value})  # type: ignore[arg-type]
    except hivemem.InvalidArgument as exc:
        assert name in str(exc)
        return
    assert value is None or (type(value) is int and 0 <= value <= 10**9)
    assert pool(fresh("ab")) == "ab"


@pytest.mark.parametrize("value", [*ODD, 1, "yes"])
def test_register_container_keys_works_or_raises_hivemem_error(value: object) -> None:
    """keys= must be a bool; anything else is refused at the call, nothing registered."""
    rows: list[object] = []
    try:
        hivemem.register_container(rows, keys=value)  # type: ignore[arg-type]
    except hivemem.InvalidArgument as exc:
        assert "keys=" in str(exc) and len(str(exc)) < 300
        assert len(registered) == 0
        return
    assert isinstance(value, bool)
