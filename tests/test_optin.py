"""The default optimize() may climb to aggressive, so aggressive strategies touch only what was opted in.

Each built-in strategy that runs at aggressive, or does more there, has a test
here: ``compact`` rebuilds only ``hivemem.compactable`` containers,
``unload_modules`` unloads only ``hivemem.allow_unload`` modules, ``caches``
clears unregistered lru_caches only in allowlisted modules, and ``hooks``
calls a CRITICAL hook only when the climb reaches aggressive.
"""

from __future__ import annotations

import json

import hivemem
from hivemem import AGGRESSIVE, CHEAP, MODERATE, MemoryGovernor, Registry, StrategyResult
from hivemem.strategies.hooks import ReleaseHooks
from hivemem.testing import FakeReader

from .conftest import linux_only, run_python

MiB = 2**20


def test_every_aggressive_builtin_is_audited() -> None:
    """The built-ins allowed only at aggressive are exactly the audited ones (a new one needs a test here)."""
    registry = Registry(entry_points=False)
    aggressive = {e.name for e, _ in registry.ordered() if e.aggressiveness == AGGRESSIVE}
    assert aggressive == {"compact", "unload_modules"}


@linux_only
def test_compact_rebuilds_only_registered_containers() -> None:
    """The one-liner compacts the registered list (new item identities, equal data), not its unlisted twin."""
    out = run_python(
        """
        import json, hivemem
        rows = [{"id": i, "name": f"user{i}"} for i in range(600_000)]
        registered, unregistered = rows[::50], rows[1::50]
        del rows
        hivemem.compactable(registered)
        ids_reg = [id(x) for x in registered]
        ids_unreg = [id(x) for x in unregistered]
        copy_reg, copy_unreg = [dict(x) for x in registered], [dict(x) for x in unregistered]
        report = hivemem.optimize(target_mb=1)
        print(json.dumps({
            "compact": [report.step("compact").level, report.step("compact").skipped],
            "reg_moved": sum(a != id(x) for a, x in zip(ids_reg, registered)),
            "unreg_moved": sum(a != id(x) for a, x in zip(ids_unreg, unregistered)),
            "reg_equal": registered == copy_reg, "unreg_equal": unregistered == copy_unreg,
            "n": len(registered),
        }))
        """
    )
    r = json.loads(out)
    assert r["compact"] == ["aggressive", None], r
    assert r["reg_moved"] == r["n"] and r["reg_equal"]
    assert r["unreg_moved"] == 0 and r["unreg_equal"]


@linux_only
def test_unload_only_allowlisted_modules(tmp_path: object) -> None:
    """The one-liner unloads an allow_unload module nothing uses, and leaves an identical unlisted one."""
    out = run_python(
        f"""
        import json, sys, hivemem
        sys.path.insert(0, {str(tmp_path)!r})
        for name in ("optin_allowed", "optin_kept"):
            with open({str(tmp_path)!r} + "/" + name + ".py", "w") as f:
                f.write("TABLE = list(range(1000))\\n")
        import optin_allowed, optin_kept
        del optin_allowed, optin_kept
        hivemem.allow_unload("optin_allowed")
        before = set(sys.modules)
        report = hivemem.optimize(target_mb=1)
        gone = sorted(before - set(sys.modules))
        print(json.dumps({{"gone": gone, "step": report.step("unload_modules").level}}))
        """
    )
    r = json.loads(out)
    assert r == {"gone": ["optin_allowed"], "step": "aggressive"}


@linux_only
def test_caches_clear_unregistered_lru_caches_only_where_allowlisted(tmp_path: object) -> None:
    """Allowlisted modules' lru_caches are cleared at aggressive only; other modules' are never touched."""
    out = run_python(
        f"""
        import json, sys, hivemem
        sys.path.insert(0, {str(tmp_path)!r})
        for name in ("optin_listed", "optin_other"):
            with open({str(tmp_path)!r} + "/" + name + ".py", "w") as f:
                f.write("import functools\\n@functools.lru_cache(maxsize=None)\\n"
                        "def square(x):\\n    return x * x\\n")
        import optin_listed, optin_other
        for i in range(100):
            optin_listed.square(i), optin_other.square(i)
        hivemem.register_cache("optin_listed")
        sizes = lambda: [optin_listed.square.cache_info().currsize, optin_other.square.cache_info().currsize]
        hivemem.optimize(target_mb=1, aggressiveness="moderate")
        at_moderate = sizes()
        hivemem.optimize(target_mb=1)
        print(json.dumps({{"moderate": at_moderate, "default": sizes()}}))
        """
    )
    r = json.loads(out)
    assert r == {"moderate": [100, 100], "default": [0, 100]}


def test_critical_hooks_run_only_when_the_climb_reaches_aggressive(reader: FakeReader) -> None:
    """A CRITICAL hook is called only when the pass climbs to aggressive; a HIGH one from moderate up."""

    class Frees:
        def __init__(self, name: str, level: object, nbytes: int) -> None:
            self.name, self.priority, self.aggressiveness, self.nbytes = name, 50, level, nbytes

        def apply(self, ctx: object) -> StrategyResult:
            reader.free(self.nbytes)
            return StrategyResult("freed")

    calls: list[str] = []

    def high(level: object) -> None:
        calls.append(f"high@{level}")

    def critical(level: object) -> None:
        calls.append(f"critical@{level}")

    registry = Registry(builtins=False, entry_points=False)
    registry.register(ReleaseHooks())
    registry.register(Frees("m", MODERATE, 300 * MiB))
    registry.register(Frees("a", AGGRESSIVE, 100 * MiB))
    hivemem.on_pressure("high", high)
    hivemem.on_pressure("critical", critical)
    try:
        report = MemoryGovernor(reader=reader, registry=registry).optimize(target_mb=250)
        assert report.reached_at == "moderate" and calls == ["high@high"]
        assert report.step("hooks").stats["more_at"] == "aggressive"  # critical hooks wait for aggressive
        calls.clear()
        reader.set("500MB")
        report = MemoryGovernor(reader=reader, registry=registry).optimize(target_mb=1)
        assert calls == ["high@high", "high@critical", "critical@critical"]
        assert [s.level for s in report.steps if s.name == "hooks"] == ["cheap", "moderate", "aggressive"]
    finally:
        hivemem.remove_pressure_hook(high)
        hivemem.remove_pressure_hook(critical)


def test_hooks_do_not_rerun_without_higher_hooks(reader: FakeReader) -> None:
    """With only MODERATE hooks, the hooks step runs once at cheap however far the pass climbs."""
    calls: list[object] = []

    def moderate(level: object) -> None:
        calls.append(level)

    registry = Registry(builtins=False, entry_points=False)
    registry.register(ReleaseHooks())
    hivemem.on_pressure("moderate", moderate)
    try:
        report = MemoryGovernor(reader=reader, registry=registry).optimize(target_mb=1)
    finally:
        hivemem.remove_pressure_hook(moderate)
    assert len(calls) == 1 and [s.level for s in report.steps if s.name == "hooks"] == ["cheap"]
    assert CHEAP < AGGRESSIVE  # the climb did go past cheap
    assert [x["level"] for x in report.levels] == ["cheap", "moderate", "aggressive"]
