"""REPL inspection: sizeof against a hand computation, why's reference chains, top, growth, status, advice."""

from __future__ import annotations

import functools
import importlib
import json
import shutil
import sys
import textwrap
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest

import hivemem
from hivemem._profile.advice import Advice, advise, lru_caches
from hivemem._profile.inspect import SizeOf, Why

from .conftest import wait_until

SECRET = "hunter2-TOP-SECRET"


def hand_deep_size(obj: object) -> int:
    """Deep size by hand: each distinct object reachable through containers, getsizeof rounded up to 8."""
    seen: dict[int, object] = {}
    stack = [obj]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen[id(x)] = x
        if isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, (list, tuple, set, frozenset)):
            stack.extend(x)
    return sum((sys.getsizeof(v) + 7) // 8 * 8 for v in seen.values())


_shared = "shared-" + "s" * 40
NESTED = [
    {"alpha": [1, 2, (3, 4.5)], "beta": "xyz" * 10, "gamma": {"x": b"12345"}},
    [[i, str(i) * 3, float(i)] for i in range(50)],
    {"s": {1, 2, 3, "a"}, "f": frozenset({"q", "r"}), "t": (_shared, _shared, [_shared])},
    [[[["deep"]]], {"k": {"k2": {"k3": ("v", 10**30)}}}],
    {i: ("é" * i, b"\x00" * i) for i in range(20)},
]


@pytest.mark.parametrize("obj", NESTED, ids=["mixed", "rows", "sets-shared", "deep", "unicode-bytes"])
def test_sizeof_matches_hand_computation(obj: object) -> None:
    """sizeof agrees exactly with a hand computation on nested containers (pympler had layout bugs)."""
    result = hivemem.sizeof(obj)
    assert result.size == hand_deep_size(obj)
    assert result.flat == sys.getsizeof(obj)
    assert int(result) == result.size
    assert result.type == type(obj).__name__


def test_sizeof_counts_shared_objects_once() -> None:
    """An object referenced twice is counted once; a bigger payload makes the deep size grow by its size."""
    payload = b"x" * 10_000
    once = hivemem.sizeof([payload]).size
    twice = hivemem.sizeof([payload, payload]).size
    assert twice - once == 8  # one more list slot, not another 10 kB
    assert hivemem.sizeof([b"y" * 20_000]).size - once == 10_000


def test_sizeof_report() -> None:
    """SizeOf has a readable repr, HTML and JSON, and shows no contents."""
    r = hivemem.sizeof({"password": SECRET})
    assert repr(r).startswith("SizeOf(dict: deep ")
    assert json.loads(r.to_json())["flat"] == r.flat
    for text in (repr(r), r._repr_html_(), r.to_json()):
        assert SECRET not in text
    assert isinstance(r, SizeOf)


# ----------------------------------------------------------------- why()


@pytest.fixture
def whymod(tmp_path: Path) -> object:
    """A module whose global holds the target through two containers: registry["users"][1]."""
    (tmp_path / "hivemem_whymod.py").write_text(
        textwrap.dedent(
            f"""
            registry = {{"users": [b"first", bytearray(b"{SECRET}"), b"third"]}}
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("hivemem_whymod")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("hivemem_whymod", None)


def test_why_module_global_through_two_containers(whymod: object) -> None:
    """why() finds module global -> dict -> list -> object, naming the global, the key type and the index."""
    target = whymod.registry["users"][1]  # type: ignore[attr-defined]
    w = hivemem.why(target)
    assert w.found and w.root == "module"
    descs = [d for d, _ in w.chain]
    edges = [e for _, e in w.chain]
    assert descs[0] == "module hivemem_whymod"
    assert edges == ["__dict__", ".registry", "[a str key]", "[1]", ""]
    assert descs[2].startswith("dict of 1") and descs[3].startswith("list of 3")
    assert descs[-1].startswith("bytearray of 18")
    assert "hivemem_whymod --__dict__-->" in w.path()
    for text in (repr(w), w._repr_html_(), w.to_json(), w.dot, repr(list(w.__rich_repr__()))):
        assert SECRET not in text
    assert 'n0 -> n1 [label="__dict__"]' in w.dot


def test_why_frame_local() -> None:
    """An object held only by a local variable of running code is traced to that frame."""

    def holder() -> Why:
        only_here = [object()]
        return hivemem.why(only_here)

    w = holder()
    assert w.found and w.root == "frame"
    assert w.chain[0][0].startswith("frame of holder()")
    assert w.chain[0][1] == "local variable 'only_here'"


def _build_deep() -> None:
    global _DEEP
    deep: list[object] = [object()]
    for _ in range(6):
        deep = [deep]
    _DEEP = deep


def _dig() -> object:
    node = _DEEP
    while isinstance(node, list):
        node = node[0]
    return node


def test_why_depth_limit() -> None:
    """A chain longer than max_depth is reported as not found, plainly."""
    _build_deep()
    w = hivemem.why(_dig(), max_depth=3)
    assert not w.found and w.root is None
    assert "no chain" in repr(w)
    assert hivemem.why(_dig(), max_depth=20).found
    with pytest.raises(hivemem.InvalidArgument, match="max_depth"):
        hivemem.why(_dig(), max_depth=0)


_DEEP: object = None
_GLOBAL_HOLDER: list[object] = []


def test_why_graph_without_graphviz(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Graphviz 'dot', why(graph=True) draws nothing and says so; the DOT source is still there."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    _GLOBAL_HOLDER.append(object())
    w = hivemem.why(_GLOBAL_HOLDER[-1], graph=True)
    assert w.image is None and "not installed" in w.image_note
    assert w.dot.startswith("digraph why {")
    assert "not installed" in repr(w)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
def test_why_graph_with_graphviz(tmp_path: Path) -> None:
    """With Graphviz installed, why(graph=path) writes the image there."""
    _GLOBAL_HOLDER.append(object())
    w = hivemem.why(_GLOBAL_HOLDER[-1], graph=str(tmp_path / "why.svg"))
    assert w.image == str(tmp_path / "why.svg")
    assert (tmp_path / "why.svg").read_text().lstrip().startswith("<?xml")


# ----------------------------------------------------------------- top(), growth()


class _Marker:
    pass


def test_growth_names_the_type_that_grew() -> None:
    """growth() reports the types whose count rose since the previous call, with the exact increase."""
    hivemem.growth()
    held = [_Marker() for _ in range(1000)]
    g = hivemem.growth(limit=50)
    rows = {name: (count, delta) for name, count, delta in g.rows}
    assert rows[f"{__name__}._Marker"][1] == 1000
    assert not g.first
    assert f"{__name__}._Marker" in repr(g)
    again = hivemem.growth(limit=50)
    assert f"{__name__}._Marker" not in {name for name, _, _ in again.rows}
    assert json.loads(g.to_json())["first"] is False
    del held
    with pytest.raises(hivemem.InvalidArgument, match="limit"):
        hivemem.growth(limit=0)


def test_top_by_size_and_count() -> None:
    """top() ranks types by shallow size or count; allocation sites appear only while tracing."""
    import tracemalloc

    by_size = hivemem.top(5)
    sizes = [s for _, _, s in by_size.rows]
    assert sizes == sorted(sizes, reverse=True) and len(by_size.rows) == 5
    assert by_size.total_objects > 1000 and not by_size.sites
    assert "not tracing" in repr(by_size)
    by_count = hivemem.top(3, by="count")
    counts = [c for _, c, _ in by_count.rows]
    assert counts == sorted(counts, reverse=True)
    tracemalloc.start()
    try:
        keep = [bytearray(500) for _ in range(300)]
        traced = hivemem.top(3)
        assert traced.sites and traced.sites[0][0].endswith("test_inspect.py:" + str(_line_of("keep = [")))
        del keep
    finally:
        tracemalloc.stop()
    with pytest.raises(hivemem.InvalidArgument, match=r"by='age': expected 'size' or 'count'"):
        hivemem.top(by="age")


def _line_of(text: str) -> int:
    for i, line in enumerate(Path(__file__).read_text().splitlines(), 1):
        if line.strip().startswith(text):
            return i
    raise AssertionError(text)


# ----------------------------------------------------------------- status() and advice


class _FakeGovernor:
    level = hivemem.Pressure.parse("high") if "high" in [m.name for m in hivemem.Pressure.members()] else 1
    running = True
    budget = 512 << 20
    events: tuple[object, ...] = ()


def test_status_one_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    """status() shows usage, limit and source, pressure from a running governor, fragmentation, types."""
    import hivemem._governor.active as governor

    monkeypatch.setattr(governor, "_governed", _FakeGovernor(), raising=False)
    s = hivemem.status(types=5, advice=False)
    assert s.usage.rss and s.usage.rss > 0
    assert s.limit is not None and s.limit.bytes > 0
    assert s.pressure == getattr(_FakeGovernor.level, "name", str(_FakeGovernor.level))
    assert s.governor["running"] is True and s.governor["budget"] == 512 << 20
    assert "pymalloc_free" in s.fragmentation
    assert s.types is not None and len(s.types.rows) == 5
    text = repr(s)
    for word in ("rss", "limit", "pressure", "pymalloc", "governor", "biggest types"):
        assert word in text, word
    data = json.loads(s.to_json())
    assert data["pressure"] == s.pressure and data["usage"]["rss"] == s.usage.rss
    assert dict(s.__rich_repr__())["pressure"] == s.pressure


def test_status_without_governor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a governor, pressure is reported as not available and nothing breaks."""
    import hivemem._governor.active as governor

    monkeypatch.setattr(governor, "_governed", None, raising=False)
    s = hivemem.status(types=0, advice=False)
    assert s.pressure is None and s.types is None
    assert "no governor running" in repr(s)


def test_advice_cites_its_figure() -> None:
    """Every piece of advice carries a measured figure and source; advice without one cannot be built."""
    tips = advise(min_size=1)
    assert tips, "with a 1-byte threshold some allocator figure must qualify"
    for tip in tips:
        assert tip.figure and tip.source and tip.value >= 1
        assert json.loads(tip.to_json())["value"] == tip.value
    with pytest.raises(hivemem.InvalidArgument, match="needs a measured figure"):
        Advice("just trust me", figure="", value=0, source="")
    with pytest.raises(hivemem.InvalidArgument, match="needs a measured figure"):
        Advice("free up memory", figure="x", value=True, source="y")  # type: ignore[arg-type]


def test_no_advice_below_threshold() -> None:
    """With a threshold above every figure, no advice is given."""
    assert advise(min_size=1 << 50) == []


def test_pymalloc_advice_matches_measured_free(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pymalloc advice quotes exactly the free bytes that status() measured and recommends compactable."""
    import hivemem._measure.native as native

    fake = {
        "arenas": 600 << 20,
        "allocated": 50 << 20,
        "free": 540 << 20,
        "overhead": 10 << 20,
        "arena_count": 600,
    }
    monkeypatch.setattr(native, "pymalloc_stats", lambda: dict(fake))
    s = hivemem.status(types=0)
    tip = next(a for a in s.advice if a.figure == "pymalloc free")
    assert tip.value == 540 << 20
    assert tip.text.startswith("540.0 MiB free inside pymalloc arenas")
    assert "hivemem.compactable" in tip.text
    assert "540.0 MiB free of 600.0 MiB" in repr(s)


@functools.lru_cache(maxsize=None)  # noqa: UP033 - the advice is about exactly this spelling
def _unbounded(i: int) -> str:
    return SECRET + str(i) * 500


def test_lru_cache_advice() -> None:
    """An unbounded lru_cache over the threshold is named with its measured size and entry count."""
    for i in range(2000):
        _unbounded(i)
    try:
        caches = {name: (size, n, maxsize) for name, size, n, maxsize in lru_caches(1 << 20)}
        name = f"{__name__}._unbounded"
        size, n, maxsize = caches[name]
        assert n == 2000 and maxsize is None and size > 2000 * 500
        tips = advise(min_size=1 << 20, allocator=False)
        tip = next(t for t in tips if name in t.text)
        assert "give it a maxsize or register it" in tip.text and tip.value == size
        assert SECRET not in tip.text
    finally:
        _unbounded.cache_clear()


# ----------------------------------------------------------------- rendering


class _Checker(HTMLParser):
    VOID = frozenset({"br", "hr", "img", "meta", "input", "link", "col", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unbalanced </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


def test_every_result_renders_and_hides_secrets(whymod: object) -> None:
    """Each inspection result has a repr, balanced HTML, rich repr and JSON, none showing object contents."""
    secret_holder = {"token": SECRET * 3}
    results = [
        hivemem.status(types=3, min_advice=1),
        hivemem.top(3),
        hivemem.sizeof(secret_holder),
        hivemem.why(whymod.registry["users"][1]),  # type: ignore[attr-defined]
        hivemem.growth(),
    ]
    for r in results:
        html = r._repr_html_()
        checker = _Checker()
        checker.feed(html)
        checker.close()
        assert not checker.errors and not checker.stack, (type(r).__name__, checker.errors, checker.stack)
        rich = list(r.__rich_repr__())
        assert rich and all(isinstance(item, tuple) and len(item) == 2 for item in rich)
        for text in (repr(r), html, r.to_json(), repr(rich)):
            assert SECRET not in text, type(r).__name__
        assert type(r).__module__ == "hivemem"


def test_inspect_not_loaded_by_import() -> None:
    """pympler and objgraph are imported only when sizeof()/why() run."""
    from .conftest import run_python

    out = run_python(
        "import sys, hivemem; hivemem.status(types=3, advice=False); "
        "print(sorted(m for m in ('pympler', 'objgraph') if m in sys.modules))"
    )
    assert out.strip() == "[]"


# ----------------------------------------------------------------- lru_cache sizes


def test_sizeof_an_lru_cache_counts_its_entries_like_status() -> None:
    """sizeof(lru_cache wrapper) includes the entries the C cache hides, the same figure status() cites."""

    @functools.lru_cache(maxsize=None)  # noqa: UP033 - the spelling the issue measured
    def load(i: int) -> bytes:
        return b"%d" % i * 100

    for i in range(2000):
        load(i)
    result = hivemem.sizeof(load)
    payload = sum(sys.getsizeof(load(i)) for i in range(2000))
    assert result.cache is not None and result.cache >= payload
    assert result.size >= result.cache + result.flat
    assert "2,000 entries" in result.note and "2,000 entries" in repr(result)
    figures = {name: size for name, size, _, _ in lru_caches() if name.endswith("load")}
    assert list(figures.values()) == [result.cache]
    assert result.to_dict()["cache"] == result.cache


def test_sizeof_a_method_with_an_lru_cache_counts_the_shared_cache() -> None:
    """A bound method of an lru_cache'd method reports the class-wide cache and says it is shared."""

    class Repo:
        @functools.lru_cache(maxsize=64)  # noqa: B019 - the pattern under test
        def get(self, i: int) -> str:
            return "v" * i

    repo = Repo()
    for i in range(50):
        repo.get(i)
    result = hivemem.sizeof(repo.get)
    assert result.cache is not None and result.cache >= sum(sys.getsizeof("v" * i) for i in range(50))
    assert "shared by every instance" in result.note


def test_sizeof_of_other_objects_has_no_cache_figure() -> None:
    """Plain objects keep the pympler figure; cache is None and no note is added."""
    result = hivemem.sizeof([1, 2, 3])
    assert result.cache is None and result.note == ""
    assert repr(result).endswith(")") and ";" not in repr(result)


# ----------------------------------------------------------------- the heap walk


def test_type_table_counts_each_untracked_object_once() -> None:
    """Unique, shared and repeated untracked referents are each counted once (complex: an untracked type)."""
    from hivemem._profile.inspect import type_table

    before = type_table(sizes=True).get(complex, [0, 0])[0]
    unique = [complex(i, 1) for i in range(5000)]
    shared = [complex(i, 2) for i in range(3000)]
    also = list(shared)  # each held by two lists
    one = complex(7, 7)
    repeated = [one] * 100  # one object, 100 references from one list
    table = type_table(sizes=True)
    count, size = table[complex]
    assert count - before == 5000 + 3000 + 1
    assert size >= (count - before) * sys.getsizeof(one)
    del unique, shared, also, repeated


def test_concurrent_walks_are_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight threads calling top()/growth()/status() at once cost at most two heap walks, not eight."""
    import threading
    import time

    from hivemem._profile import inspect as _inspect

    walks: list[int] = []
    real = _inspect._walk_heap

    def slow_walk(sizes: bool) -> dict[type, list[int]]:
        walks.append(threading.get_ident())
        time.sleep(0.5)
        return real(sizes)

    monkeypatch.setattr(_inspect, "_walk_heap", slow_walk)
    start = threading.Barrier(8)
    results: list[object] = []

    def call(fn: object) -> None:
        start.wait()
        results.append(fn())  # type: ignore[operator]

    calls = [hivemem.top] * 4 + [lambda: hivemem.status(advice=False)] * 2 + [hivemem.growth] * 2
    threads = [threading.Thread(target=call, args=(fn,)) for fn in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 8
    assert 1 <= len(walks) <= 2, f"{len(walks)} walks for 8 concurrent callers"


def test_callers_that_queue_before_any_walk_starts_share_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Callers that all find no walk running (they arrived together) and queue for the lock take the
    first walk's result: one walk, not one each in turn; a walk older than a caller is not reused."""
    from hivemem._profile import inspect as _inspect

    walks: list[int] = []
    real = _inspect._walk_heap

    def counted(sizes: bool) -> dict[type, list[int]]:
        walks.append(threading.get_ident())
        return real(sizes)

    monkeypatch.setattr(_inspect, "_walk_heap", counted)
    results: list[object] = []
    _inspect._walk_lock.acquire()  # as if a caller had just taken it, before it could start its walk
    try:
        threads = [threading.Thread(target=lambda: results.append(hivemem.top(3))) for _ in range(6)]
        for t in threads:
            t.start()
        assert wait_until(lambda: _walk_lock_waiters(threads), timeout=10)
    finally:
        _inspect._walk_lock.release()
    for t in threads:
        t.join(30)
    assert len(results) == 6 and all(len(r.rows) == 3 for r in results)  # type: ignore[attr-defined]
    assert len(walks) == 1, f"{len(walks)} walks for 6 queued callers"
    hivemem.top(3)  # a later caller walks again: the last table is never served stale
    assert len(walks) == 2


def _walk_lock_waiters(threads: list[threading.Thread]) -> bool:
    """Whether every thread is inside type_table (blocked on the walk lock the test holds)."""
    frames = sys._current_frames()
    return all(t.ident in frames and "code type_table" in repr(frames[t.ident]) for t in threads)


def test_an_interrupted_walk_does_not_strand_the_callers_waiting_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the walking thread is interrupted, threads waiting on its result walk themselves, promptly."""
    import threading
    import time

    from hivemem._profile import inspect as _inspect

    real = _inspect._walk_heap
    first = threading.Event()

    def interrupted_once(sizes: bool) -> dict[type, list[int]]:
        if not first.is_set():
            first.set()
            time.sleep(0.3)
            raise KeyboardInterrupt("simulated Ctrl-C in the walking thread")
        return real(sizes)

    monkeypatch.setattr(_inspect, "_walk_heap", interrupted_once)
    errors: list[BaseException] = []

    def leader() -> None:
        try:
            hivemem.top()
        except KeyboardInterrupt as exc:
            errors.append(exc)

    t = threading.Thread(target=leader)
    t.start()
    first.wait(5)
    t0 = time.monotonic()
    joined = hivemem.top(3)  # waits on the leader's walk, which dies
    assert time.monotonic() - t0 < 10
    t.join(5)
    assert errors and len(joined.rows) == 3
    assert not _inspect._walk_lock.locked()


@pytest.fixture
def free_walk_locks() -> object:
    """Release the inspection locks a failing test left held, so the next test fails instead of hanging."""
    from hivemem._profile import inspect as _inspect

    yield
    for lock in (_inspect._walk_lock, _inspect._growth_lock):
        if lock.locked():
            lock.release()


def _inspect_free() -> None:
    import threading

    from hivemem._profile import inspect as _inspect

    assert not _inspect._walk_lock.locked(), "the heap-walk lock was left held"
    assert not _inspect._growth_lock.locked(), "the growth lock was left held"
    done: list[object] = []
    t = threading.Thread(target=lambda: done.extend([hivemem.top(2), hivemem.growth(2)]), daemon=True)
    t.start()
    t.join(30)
    assert len(done) == 2, "top()/growth() did not finish in 30 s after an interrupt"


@pytest.mark.parametrize("call", ["top", "growth"])
def test_an_interrupt_at_any_line_of_the_walk_leaves_no_lock_held(
    call: str, monkeypatch: pytest.MonkeyPatch, free_walk_locks: None
) -> None:
    """KeyboardInterrupt at every line of the walk's locking code leaves no lock held; calls run after."""
    from hivemem._profile import inspect as _inspect

    # The walk itself holds no lock; a small fixed table keeps a few hundred runs fast.
    monkeypatch.setattr(_inspect, "_walk_heap", lambda sizes: {int: [3, 84], str: [2, 100], list: [1, 56]})

    watched = {"type_table", "_lead_walk", "growth", "_growth_locked", "top"}
    here = _inspect.__file__

    def run(at: int) -> int:
        # Loops repeat lines thousands of times: inject at the first event of each distinct step
        # (previous line -> line) in each function. A step, not a line: leaving a with block goes back
        # to the with statement's line, and that second visit is the one that matters.
        lines: set[tuple[str, int, int]] = set()
        previous: dict[int, int] = {}

        def local(frame: object, event: str, arg: object) -> object:
            if event == "line":
                code, line = frame.f_code, frame.f_lineno  # type: ignore[attr-defined]
                where = (code.co_name, previous.get(id(frame), 0), line)
                previous[id(frame)] = line
                if where not in lines:
                    lines.add(where)
                    if len(lines) == at:
                        raise KeyboardInterrupt(f"injected at line {where}")
            return local

        def tracer(frame: object, event: str, arg: object) -> object:
            code = frame.f_code  # type: ignore[attr-defined]
            if event == "call" and code.co_filename == here and code.co_name in watched:
                return local
            return None

        old = sys.gettrace()
        sys.settrace(tracer)
        try:
            getattr(hivemem, call)()
        except KeyboardInterrupt:
            pass
        finally:
            sys.settrace(old)
        return len(lines)

    total = run(0)
    assert total >= 8
    for n in range(1, total + 1):
        run(n)
        _inspect_free()
