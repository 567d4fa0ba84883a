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
from hivemem._caches import _caches, _patterns, discover
from hivemem.strategies.caches import ClearCaches
from hivemem.testing import FakeReader

from .conftest import run_python


@pytest.fixture(autouse=True)
def _clean_registrations() -> object:
    saved = list(_patterns)
    _caches.clear()  # a test elsewhere may have left a registration behind
    yield
    _caches.clear()
    _patterns[:] = saved


def run(level: object = MODERATE) -> hivemem.StepResult:
    registry = Registry(builtins=False, entry_points=False)
    registry.register(ClearCaches())
    report = hivemem.MemoryGovernor(reader=FakeReader("100MB"), registry=registry).optimize(
        aggressiveness=level
    )
    return report.step("caches")


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
        from hivemem._caches import clear_stdlib
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
    from hivemem._caches import clear_stdlib

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
    from hivemem._caches import _matches

    assert _matches(module, [pattern]) is matches


@pytest.mark.parametrize("bad", ["*", "", "my app", "app.", "1app", "app.**"])
def test_allowlist_rejects_bad_patterns(bad: str) -> None:
    """Only dotted module names, optionally ending in '.*', are accepted (no blanket '*')."""
    with pytest.raises(hivemem.InvalidArgument, match="module pattern"):
        hivemem.register_cache(bad)
    assert bad not in hivemem._caches.lru_cache_allowlist()


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
