"""The caches strategy: registered caches, stdlib caches, allowlisted lru_cache discovery."""

from __future__ import annotations

import functools
import gc
import json
import linecache
import sys
import threading
import types

import pytest

import hivemem
from hivemem import AGGRESSIVE, CHEAP, MODERATE, Registry
from hivemem._reclaim.caches import _patterns, discover
from hivemem._reclaim.caches import cache_registry as _caches
from hivemem.strategies.caches import ClearCaches
from hivemem.testing import FakeReader

from .conftest import run_python, run_strategy


@pytest.fixture(autouse=True)
def _clean_registrations() -> object:
    saved = list(_patterns)
    _caches.clear()  # a test elsewhere may have left a registration behind
    yield
    _caches.clear()
    _patterns[:] = saved


def run(level: object = MODERATE) -> hivemem.StepResult:
    return run_strategy(ClearCaches(), level)


def test_registered_lru_cache_dict_and_clear_object_are_cleared() -> None:
    """lru_cache wrappers (cache_clear), dicts and any clear() object are emptied; entries are counted."""

    @functools.cache
    def square(x: int) -> int:
        return x * x

    class Custom:
        def __init__(self) -> None:
            self.items = [1, 2]

        def clear(self) -> None:
            self.items = []

        def __len__(self) -> int:
            return len(self.items)

    for i in range(5):
        square(i)
    table = {"a": 1, "b": 2, "c": 3}
    custom = Custom()
    for obj in (square, table, custom):
        assert hivemem.register_cache(obj) is obj
    step = run()
    assert step.stats["registered_caches"] == 3
    assert step.stats["registered_entries"] == 5 + 3 + 2
    assert square.cache_info().currsize == 0 and table == {} and custom.items == []
    assert "cleared 3 registered cache(s) (10 entries)" in step.summary


def test_register_cache_works_as_a_decorator() -> None:
    """register_cache returns its argument, so it stacks on top of @lru_cache."""

    @hivemem.register_cache
    @functools.lru_cache(maxsize=16)
    def f(x: int) -> int:
        return x

    f(1)
    run()
    assert f.cache_info().currsize == 0


def test_caches_do_not_run_at_cheap() -> None:
    """At CHEAP the strategy is skipped; registered caches keep their entries."""
    table = {"k": 1}
    hivemem.register_cache(table)
    step = run(CHEAP)
    assert step.skipped and "moderate" in step.skipped
    assert table == {"k": 1}


@pytest.mark.parametrize("bad", [42, object(), ["list has no clear"][0], None])
def test_register_cache_rejects_objects_without_clear(bad: object) -> None:
    """An object without clear()/cache_clear() raises InvalidArgument naming it; nothing is registered."""
    if isinstance(bad, str):
        bad = b"bytes"
    with pytest.raises(hivemem.InvalidArgument, match="cannot register"):
        hivemem.register_cache(bad)
    assert len(_caches) == 0


def test_weakly_held_cache_disappears_with_its_owner() -> None:
    """An lru_cache wrapper is held weakly: once the program drops it, the registration goes too."""

    @functools.cache
    def g(x: int) -> int:
        return x

    hivemem.register_cache(g)
    assert len(_caches) == 1
    del g
    gc.collect()
    assert len(_caches) == 0


def test_plain_dict_is_held_strongly_until_unregistered() -> None:
    """A dict cannot be weakly referenced: it stays registered until unregister_cache()."""
    table = {"a": 1}
    hivemem.register_cache(table)
    entry = _caches.entries()[0][1]
    assert entry.strong
    assert hivemem.unregister_cache(table) is True
    assert hivemem.unregister_cache(table) is False
    assert len(_caches) == 0


def test_cache_whose_lock_is_held_is_left_for_next_pass() -> None:
    """A registered lock that another thread holds is not waited for: the cache is skipped, intact."""
    lock = threading.Lock()
    table = {"a": 1}
    hivemem.register_cache(table, lock=lock)
    with lock:
        step = run()
    assert table == {"a": 1}
    assert step.stats["busy"] == 1
    assert "busy" in step.summary
    step = run()
    assert table == {} and not lock.locked()


def test_register_cache_rejects_lock_without_acquire() -> None:
    """lock= must have acquire() and release()."""
    with pytest.raises(hivemem.InvalidArgument, match="acquire"):
        hivemem.register_cache({}, lock=object())


def test_failing_clear_is_recorded_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A cache whose clear() raises is counted as failed and logged; the other caches are still cleared."""

    class Broken:
        def clear(self) -> None:
            raise RuntimeError("nope")

    broken, table = Broken(), {"a": 1}
    hivemem.register_cache(broken)
    hivemem.register_cache(table)
    step = run()
    assert step.error is None
    assert step.stats["failed"] == 1 and table == {}
    assert "clearing cache" in caplog.text


def test_stdlib_caches_cleared_only_for_imported_modules() -> None:
    """Modules not imported stay unimported; imported ones (re) get their caches purged."""
    out = run_python(
        """
        import json, re, sys
        re.compile("hivemem-[0-9]+-test")
        assert "fnmatch" not in sys.modules and "urllib.parse" not in sys.modules
        from hivemem.strategies.caches import ClearCaches
        from hivemem._reclaim.caches import clear_stdlib
        done = clear_stdlib()
        print(json.dumps({"done": done, "fnmatch": "fnmatch" in sys.modules,
                          "urllib": "urllib.parse" in sys.modules, "re_cache": len(re._cache)}))
        """
    )
    r = json.loads(out)
    assert "re" in r["done"] and r["re_cache"] == 0
    assert not r["fnmatch"] and not r["urllib"]


def test_linecache_keeps_entries_without_a_file() -> None:
    """File-backed linecache entries go; hand-registered ones (mtime None, e.g. IPython cells) stay."""
    from hivemem._reclaim.caches import clear_stdlib

    linecache.getline(__file__, 1)
    linecache.cache["<cell-1>"] = (10, None, ["x = 1\n"], "<cell-1>")
    try:
        clear_stdlib()
        assert __file__ not in linecache.cache
        assert "<cell-1>" in linecache.cache
    finally:
        linecache.cache.pop("<cell-1>", None)


@pytest.fixture
def fake_module() -> types.ModuleType:
    """A module 'hm_fakeapp.parsers' with two lru_caches (one in a class) and an imported one."""
    mod = types.ModuleType("hm_fakeapp.parsers")

    @functools.cache
    def parse(x: int) -> int:
        return x

    class Parser:
        @staticmethod
        @functools.cache
        def tokens(x: int) -> int:
            return x

    @functools.cache
    def get_client() -> object:  # a singleton factory from another module
        return object()

    parse.__module__ = Parser.__module__ = "hm_fakeapp.parsers"
    Parser.tokens.__module__ = "hm_fakeapp.parsers"
    get_client.__module__ = "hm_elsewhere.clients"
    mod.parse, mod.Parser, mod.get_client = parse, Parser, get_client  # type: ignore[attr-defined]
    parse(1)
    Parser.tokens(2)
    get_client()
    sys.modules[mod.__name__] = mod
    yield mod
    del sys.modules[mod.__name__]


def test_discovered_lru_caches_only_when_allowlisted_and_aggressive(fake_module: types.ModuleType) -> None:
    """Without an allowlist nothing is discovered; with one, only at AGGRESSIVE, only matching modules."""
    m = fake_module
    assert discover() == []
    run(AGGRESSIVE)
    assert m.parse.cache_info().currsize == 1  # type: ignore[attr-defined]

    hivemem.register_cache("hm_fakeapp.*")
    step = run(MODERATE)
    assert "wait for an aggressive pass" in step.summary
    assert m.parse.cache_info().currsize == 1  # type: ignore[attr-defined]

    step = run(AGGRESSIVE)
    assert step.stats["discovered_caches"] == 2
    assert m.parse.cache_info().currsize == 0  # type: ignore[attr-defined]
    assert m.Parser.tokens.cache_info().currsize == 0  # type: ignore[attr-defined]
    assert m.get_client.cache_info().currsize == 1  # type: ignore[attr-defined]  # defined elsewhere: kept


@pytest.mark.parametrize(
    ("pattern", "module", "matches"),
    [
        ("hm_fakeapp.*", "hm_fakeapp", True),
        ("hm_fakeapp.*", "hm_fakeapp.parsers", True),
        ("hm_fakeapp.*", "hm_fakeapp2", False),
        ("hm_fakeapp", "hm_fakeapp.parsers", False),
        ("hm_fakeapp.parsers", "hm_fakeapp.parsers", True),
    ],
)
def test_allowlist_pattern_matching(pattern: str, module: str, matches: bool) -> None:
    """'pkg.*' covers the package and its submodules; a plain name covers only itself."""
    from hivemem._reclaim.caches import _matches

    assert _matches(module, [pattern]) is matches


@pytest.mark.parametrize("bad", ["*", "", "my app", "app.", "1app", "app.**"])
def test_allowlist_rejects_bad_patterns(bad: str) -> None:
    """Only dotted module names, optionally ending in '.*', are accepted (no blanket '*')."""
    with pytest.raises(hivemem.InvalidArgument, match="module pattern"):
        hivemem.register_cache(bad)
    assert bad not in hivemem._reclaim.caches.lru_cache_allowlist()


def test_unregister_pattern() -> None:
    """unregister_cache('pkg.*') removes the allowlist entry."""
    hivemem.register_cache("hm_other.*")
    assert hivemem.unregister_cache("hm_other.*") is True
    assert hivemem.unregister_cache("hm_other.*") is False


@pytest.mark.slow
def test_registered_caches_return_rss_with_optimize() -> None:
    """~150 MB in a registered lru_cache of 2 KiB strings: optimize() returns >= 90% of the growth.

    Tolerance: the issue's 0.9; the floor is the RSS before the cache was filled.
    """
    out = run_python(
        """
        import functools, json, hivemem
        base = hivemem.rss()
        @functools.lru_cache(maxsize=None)
        def render(i):
            return ("<td>%d</td>" % i) * 200
        for i in range(75_000):
            render(i)
        hivemem.register_cache(render)
        before = hivemem.rss()
        report = hivemem.optimize()
        print(json.dumps({"base": base, "before": before, "after": hivemem.rss(), "text": str(report)}))
        """
    )
    r = json.loads(out)
    assert r["before"] - r["base"] > 100 * 2**20, r
    assert (r["before"] - r["after"]) / (r["before"] - r["base"]) >= 0.9, r["text"]


# ----------------------------------------------------------------------------- shrinking, not clearing

MiB = 2**20


@pytest.fixture
def fresh_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the caches this test makes are alive for the strategy (others may wait for the collector)."""
    from hivemem._stores import cache as _cache
    from hivemem._stores.live import LiveSet

    monkeypatch.setattr(_cache, "_live", LiveSet(on_fork=_cache._new_lock))


class TrackingReader(FakeReader):
    """RSS = a base plus the bytes the given caches report: eviction shows at once, as if trimmed."""

    def __init__(self, base: int, caches: list[hivemem.Cache[object, object]]) -> None:
        super().__init__(base)
        self.caches = caches

    def rss(self) -> int:
        return super().rss() + sum(c.bytes for c in self.caches)

    def usage(self) -> hivemem.MemoryUsage:
        u = super().usage()
        return hivemem.MemoryUsage(rss=self.rss(), peak=u.peak, source="fake", unavailable=u.unavailable)


def mib_cache(n: int, *, keep: float = 0.1, maxsize: int | None = None) -> hivemem.Cache[int, bytes]:
    """A cache of *n* entries that each weigh 1 MiB (by a custom weigher; the values are tiny)."""
    c: hivemem.Cache[int, bytes] = hivemem.Cache(None, weigher=lambda v: MiB, keep=keep, maxsize=maxsize)
    for k in range(n):
        c[k] = b"%d" % k
    return c


def caches_only() -> Registry:
    registry = Registry(builtins=False, entry_points=False)
    registry.register(ClearCaches())
    return registry


@pytest.mark.usefixtures("fresh_caches")
def test_pass_evicts_what_it_needs_least_recently_used_first() -> None:
    """A pass needing 30 MiB of a 100 MiB cache evicts its 30 oldest entries, no more; clears nothing else."""
    c = mib_cache(100)
    c[0]  # the oldest key is now the most recently used
    table = {"kept": 1}
    hivemem.register_cache(table)
    reader = TrackingReader(500 * MiB, [c])  # type: ignore[list-item]
    gov = hivemem.MemoryGovernor(reader=reader, registry=caches_only())
    report = gov.optimize(target=600 * MiB - 30 * MiB)
    step = report.step("caches")
    assert step.stats["shrunk_bytes"] == 30 * MiB and step.stats["needed"] == 30 * MiB
    assert len(c) == 70 and 0 in c and 1 not in c and 30 not in c and 31 in c
    assert c.info().evicted_pressure == 30 and c.info().evicted_size == 0
    assert table == {"kept": 1}  # shrinking paid: the clear-only cache keeps its entries
    assert "shrinking paid the need" in step.summary and report.reached


@pytest.mark.usefixtures("fresh_caches")
def test_two_caches_give_in_proportion_to_their_bytes() -> None:
    """The need is split by size: 60 and 30 MiB caches give 20 and 10 MiB of a 30 MiB need."""
    big, small = mib_cache(60), mib_cache(30)
    reader = TrackingReader(0, [big, small])  # type: ignore[list-item]
    hivemem.MemoryGovernor(reader=reader, registry=caches_only()).optimize(target=60 * MiB)
    assert (len(big), len(small)) == (40, 20)


@pytest.mark.parametrize(
    ("level", "left"),
    [("high", 10), ("critical", 0)],
)
@pytest.mark.usefixtures("fresh_caches")
def test_only_critical_empties_a_cache(level: str, left: int) -> None:
    """A HIGH pass needing more than the cache holds keeps its most recent 10%; a CRITICAL pass empties it."""
    from hivemem._engine.engine import run_pass

    c = mib_cache(100)
    reader = TrackingReader(0, [c])  # type: ignore[list-item]
    report = run_pass(
        caches_only(), reader, target=1, aggressiveness=hivemem.AGGRESSIVE, level=level, limit=None
    )
    assert report is not None
    assert len(c) == left
    if left:
        assert list(c) == list(range(90, 100))  # the most recently used stay
        assert report.step("caches").stats["more_at"] == "aggressive"
        for _ in range(5):  # pass after pass below CRITICAL: it never empties
            run_pass(caches_only(), reader, target=1, aggressiveness=MODERATE, level=level)
        assert len(c) == 1


@pytest.mark.usefixtures("fresh_caches")
def test_governor_high_pass_shrinks_instead_of_clearing() -> None:
    """At HIGH the governor's pass takes RSS to HIGH's release threshold by evicting, and no further."""
    c = mib_cache(300)
    reader = TrackingReader(520 * MiB, [c])  # type: ignore[list-item]
    gov = hivemem.MemoryGovernor(reader=reader, registry=caches_only(), limit="1000MB", psi=False)
    gov.tick()  # 820 MB: HIGH, whose pass aims at 700 MB
    act = next(e for e in gov.events if e.kind == "act")
    assert act.rss_after == 700 * MiB and len(c) == 180
    assert c.info().evicted_pressure == 120


@pytest.mark.usefixtures("fresh_caches")
def test_climbing_optimize_empties_only_at_the_aggressive_level() -> None:
    """optimize(target) runs caches at moderate (floor kept), then again at aggressive, which may empty it."""
    c = mib_cache(50)
    reader = TrackingReader(10 * MiB, [c])  # type: ignore[list-item]
    report = hivemem.MemoryGovernor(reader=reader, registry=caches_only()).optimize(target=10 * MiB)
    runs = [s for s in report.steps if s.name == "caches" and s.ran]
    assert [s.level for s in runs] == ["moderate", "aggressive"]
    assert len(c) == 0 and report.reached


@pytest.mark.usefixtures("fresh_caches")
def test_clear_only_caches_are_cleared_when_shrinking_falls_short() -> None:
    """When the hivemem caches cannot pay, lru_caches and plain dicts are cleared whole, as before."""

    @functools.cache
    def square(x: int) -> int:
        return x * x

    for i in range(10):
        square(i)
    hivemem.register_cache(square)
    c = mib_cache(10)
    reader = TrackingReader(100 * MiB, [c])  # type: ignore[list-item]
    step = (
        hivemem.MemoryGovernor(reader=reader, registry=caches_only())
        .optimize(target=50 * MiB, aggressiveness=MODERATE)
        .step("caches")
    )
    assert square.cache_info().currsize == 0 and len(c) == 1
    assert step.stats["registered_caches"] == 1


@pytest.mark.usefixtures("fresh_caches")
def test_without_a_target_hivemem_caches_are_emptied_like_the_rest() -> None:
    """optimize() without a target has no need to size by: every cache is emptied (pressure evictions)."""
    c = mib_cache(10)
    hivemem.register_cache(c)  # registering it too changes nothing: it is shrunk, not cleared twice
    step = run()
    assert len(c) == 0 and c.info().evicted_pressure == 10
    assert step.stats["shrunk_entries"] == 10 and step.stats["registered_caches"] == 0


@pytest.mark.usefixtures("fresh_caches")
def test_decorated_function_cache_shrinks_under_a_pass() -> None:
    """A hivemem.cache function's results are evicted oldest first by a pass with a target."""

    @hivemem.cache(max_bytes=None, weigher=lambda v: MiB)
    def f(x: int) -> int:
        return x

    for i in range(20):
        f(i)
    reader = TrackingReader(0, [f.cache])  # type: ignore[list-item]
    hivemem.MemoryGovernor(reader=reader, registry=caches_only()).optimize(target=15 * MiB)
    assert list(f.cache) == list(range(5, 20))


# ----------------------------------------------------------------------------- dicts, evict="oldest"


def test_dict_evicts_oldest_inserted_until_the_need_is_met() -> None:
    """A dict registered with evict='oldest' loses its oldest entries, about the bytes needed."""
    from hivemem._reclaim.caches import evict_oldest
    from hivemem._stores.cache import weigh

    d = {i: b"v" * 1000 for i in range(100)}
    one = weigh(0) + weigh(b"v" * 1000)
    got = evict_oldest(d, 10 * one)
    assert got["entries"] == 10
    assert got["bytes"] == sum(weigh(k) + weigh(b"v" * 1000) for k in range(10))
    assert list(d) == list(range(10, 100))
    got = evict_oldest(d, 10**9, keep=5)
    assert list(d) == list(range(95, 100)) and got["entries"] == 85


def test_registered_dict_shrinks_in_a_pass_and_keeps_a_floor_below_critical() -> None:
    """A pass with a target evicts part of an evict='oldest' dict; below CRITICAL it keeps 10% of it."""
    from hivemem._engine.engine import run_pass

    d = {i: b"x" * 10_000 for i in range(100)}
    hivemem.register_cache(d, evict="oldest")
    reader = FakeReader(10 * MiB)
    run_pass(caches_only(), reader, target=10 * MiB - 200_000, aggressiveness=MODERATE, level="high")
    assert 75 <= len(d) <= 85 and 99 in d and 0 not in d
    start = len(d)
    run_pass(caches_only(), reader, target=1, aggressiveness=MODERATE, level="high")
    assert len(d) == -(-start // 10) and 99 in d  # a tenth of what it held when the pass began
    run_pass(caches_only(), reader, target=1, aggressiveness=AGGRESSIVE, level="critical")
    assert d == {}


def test_registered_dict_with_busy_lock_is_left_alone() -> None:
    """evict='oldest' honours lock=: when another thread holds it, the dict is left for the next pass."""
    from hivemem._engine.engine import run_pass

    lock = threading.Lock()
    d = {i: b"x" * 10_000 for i in range(100)}
    hivemem.register_cache(d, lock=lock, evict="oldest")
    with lock:
        report = run_pass(caches_only(), FakeReader(10 * MiB), target=1, aggressiveness=MODERATE)
    assert report is not None and len(d) == 100 and report.step("caches").stats["busy"] >= 1
    assert not lock.locked()


@pytest.mark.parametrize(
    ("obj", "evict", "match"),
    [
        ({}, "newest", "evict="),
        ({}, None, "evict="),
        (functools.lru_cache(maxsize=None)(abs), "oldest", "cleared whole"),
        ("myapp.*", "oldest", "module pattern"),
    ],
)
def test_register_cache_checks_evict(obj: object, evict: object, match: str) -> None:
    """evict must be 'clear' or 'oldest', and 'oldest' needs a dict; nothing is registered otherwise."""
    with pytest.raises(hivemem.InvalidArgument, match=match):
        hivemem.register_cache(obj, evict=evict)  # type: ignore[arg-type]
    assert len(_caches) == 0 and "myapp.*" not in _patterns


@pytest.mark.parametrize(("level", "yields"), [("high", True), ("critical", False), (None, False)])
@pytest.mark.usefixtures("fresh_caches")
def test_governor_passes_below_critical_evict_in_slices(
    monkeypatch: pytest.MonkeyPatch, level: str | None, yields: bool
) -> None:
    """Below CRITICAL a governor pass evicts in batches and releases the GIL between slices; same result."""
    from hivemem._engine.engine import run_pass
    from hivemem.strategies import caches as strategy

    sleeps: list[float] = []
    monkeypatch.setattr(strategy, "SLICE", 0.0)  # every batch ends a slice
    monkeypatch.setattr(strategy.time, "sleep", sleeps.append)
    c = mib_cache(1000)
    reader = TrackingReader(0, [c])  # type: ignore[list-item]
    run_pass(caches_only(), reader, target=400 * MiB, aggressiveness=MODERATE, level=level)
    assert list(c) == list(range(600, 1000))
    assert c.info().evicted_pressure == 600
    assert (len(sleeps) >= 600 // strategy.BATCH - 1) is yields and (not sleeps) is not yields


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")
def test_a_child_forked_while_the_caches_step_holds_a_cache_lock_can_take_it() -> None:
    """A registered cache's lock, held by a caches step in another thread at fork(), is free in the
    child (no thread there would ever release it); the parent's step still releases its own."""
    from tests.conftest import run_python

    out = run_python(
        """
        import json, os, threading
        import hivemem
        from hivemem._reclaim.caches import clear_registered
        lock = threading.Lock()
        cache = {i: bytes(100) for i in range(50_000)}
        hivemem.register_cache(cache, lock=lock)
        holding, go_on = threading.Event(), threading.Event()
        real_clear = dict.clear
        class Slow(dict):
            def clear(self):
                holding.set()
                go_on.wait(10)
                real_clear(self)
        slow = Slow(cache)
        hivemem.unregister_cache(cache)
        hivemem.register_cache(slow, lock=lock)
        t = threading.Thread(target=clear_registered)
        t.start()
        assert holding.wait(10)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            got = lock.acquire(timeout=2)
            os.write(w, b"1" if got else b"0")
            os._exit(0)
        os.waitpid(pid, 0)
        child_got = os.read(r, 1) == b"1"
        parent_locked_during = lock.locked()
        go_on.set()
        t.join()
        print(json.dumps([child_got, parent_locked_during, lock.locked(), len(slow)]))
        """
    )
    child_got, locked_during, locked_after, left = json.loads(out.strip().splitlines()[-1])
    assert child_got is True  # freed in the child
    assert locked_during is True and locked_after is False  # the parent's step held it, then let go
    assert left == 0
