from __future__ import annotations

from pathlib import Path

import pytest

import hivemem
from hivemem import CHEAP, MODERATE, Registry, StrategyError, UnknownStrategy
from hivemem._engine.registry import _entry_point_specs

from .conftest import run_python


class Named:
    def __init__(self, name: str, priority: int = 50, aggressiveness: object = CHEAP) -> None:
        self.name = name
        self.priority = priority
        self.aggressiveness = aggressiveness
        self.calls = 0

    def apply(self, ctx: hivemem.StrategyContext) -> None:
        self.calls += 1


def test_order_is_priority_then_name(registry: Registry) -> None:
    """Strategies run by (priority, name), whatever the registration order."""
    for name, prio in [("zeta", 10), ("alpha", 20), ("beta", 10), ("gamma", 5)]:
        registry.register(Named(name, prio))
    assert registry.names() == ["gamma", "beta", "zeta", "alpha"]


def test_duplicate_name_rejected_unless_replace(registry: Registry) -> None:
    """A taken name raises StrategyError; replace=True swaps it."""
    registry.register(Named("x"))
    with pytest.raises(StrategyError, match="'x' is already registered"):
        registry.register(Named("x"))
    new = Named("x", 99)
    registry.register(new, replace=True)
    assert registry.get("x").strategy is new


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (Named("Bad Name"), "invalid strategy name"),
        (Named(""), "invalid strategy name"),
        (Named("ok", priority="high"), "priority must be an int"),  # type: ignore[arg-type]
        (Named("ok", priority=True), "priority must be an int"),  # type: ignore[arg-type]
        (Named("ok", aggressiveness="extreme"), "invalid aggressiveness 'extreme'"),
        (object(), "invalid strategy name None"),
    ],
)
def test_invalid_strategies_rejected(registry: Registry, obj: object, message: str) -> None:
    """Malformed strategies raise StrategyError naming the problem; nothing is registered."""
    with pytest.raises(StrategyError, match=message):
        registry.register(obj)
    assert len(registry) == 0


def test_missing_apply_rejected(registry: Registry) -> None:
    """A strategy needs a callable apply()."""

    class NoApply:
        name, priority, aggressiveness = "n", 1, CHEAP

    with pytest.raises(StrategyError, match="apply"):
        registry.register(NoApply())


def test_class_decorator_registers_instance(registry: Registry) -> None:
    """register() on a class instantiates it and returns the class, so it works as a decorator."""

    @registry.register
    class Deco:
        name, priority, aggressiveness = "deco", 1, "moderate"

        def apply(self, ctx: object) -> None:
            pass

    assert isinstance(registry.get("deco").strategy, Deco)
    assert registry.get("deco").aggressiveness is MODERATE


def test_enable_disable_unknown(registry: Registry) -> None:
    """Enable/disable by name; an unknown name raises UnknownStrategy listing the known ones."""
    registry.register(Named("a"))
    registry.disable("a")
    assert not registry.is_enabled("a")
    assert registry.ordered()[0][1] is False
    registry.enable("a")
    assert registry.is_enabled("a")
    with pytest.raises(UnknownStrategy, match="unknown strategy 'nope': expected one of a"):
        registry.disable("nope")
    registry.unregister("a")
    assert "a" not in registry


def test_ordered_subset_validates_all_names_first(registry: Registry) -> None:
    """A typo among several names raises before any strategy would run."""
    registry.register(Named("a"))
    with pytest.raises(UnknownStrategy):
        registry.ordered(["a", "b"])
    with pytest.raises(hivemem.InvalidArgument, match="not one string"):
        registry.ordered("a")


def test_builtins_present_in_default_registry() -> None:
    """The default registry has the gc and trim built-ins, gc first."""
    names = Registry(entry_points=False).names()
    assert "gc" in names and "trim" in names
    assert names.index("gc") < names.index("trim")


def test_builtins_are_the_modules_of_the_strategies_package() -> None:
    """Each module of hivemem.strategies is the built-in of its name, held in its STRATEGY constant."""
    import importlib
    import os

    import hivemem.strategies
    from hivemem._engine.registry import builtin_names

    folder = os.path.dirname(hivemem.strategies.__file__)
    files = sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_"))
    assert builtin_names() == files
    registry = Registry(entry_points=False)
    assert sorted(registry.names()) == files
    for name in files:
        module = importlib.import_module(f"hivemem.strategies.{name}")
        assert module.STRATEGY.name == name
        assert "STRATEGY" in module.__all__


def test_builtins_load_on_first_use() -> None:
    """Constructing a registry imports no strategy module; first use imports them all."""
    out = run_python(
        """
        import sys
        from hivemem._engine.registry import Registry, builtin_names
        reg = Registry(entry_points=False)
        before = sorted(m for m in sys.modules if m.startswith("hivemem.strategies."))
        reg.names()
        after = sorted(m for m in sys.modules if m.startswith("hivemem.strategies."))
        print(before, len(after) == len(builtin_names()) > 0)
        """
    )
    assert out.strip() == "[] True"


def test_module_level_api_roundtrip() -> None:
    """register_strategy / disable / enable / unregister act on the process-wide registry."""
    s = Named("test-module-level", 500)
    hivemem.register_strategy(s)
    try:
        listed = {d["name"]: d for d in hivemem.list_strategies()}
        assert listed["test-module-level"]["origin"] == "user"
        hivemem.disable_strategy("test-module-level")
        assert {d["name"]: d for d in hivemem.list_strategies()}["test-module-level"]["enabled"] is False
        hivemem.enable_strategy("test-module-level")
    finally:
        hivemem.unregister_strategy("test-module-level")
    assert "test-module-level" not in [d["name"] for d in hivemem.list_strategies()]


def _dist(site: Path, dist: str, body: str) -> None:
    d = site / f"{dist}.dist-info"
    d.mkdir(parents=True)
    (d / "entry_points.txt").write_text(body)


def test_entry_points_load_and_broken_plugin_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plugins load from the hivemem.strategies group; a broken one warns with its name, never raises."""
    site = tmp_path / "site"
    pkg = site / "goodplug.py"
    site.mkdir()
    pkg.write_text(
        "class S:\n"
        "    name = 'goodplug'\n    priority = 200\n    aggressiveness = 'cheap'\n"
        "    def apply(self, ctx):\n        return None\n"
    )
    _dist(site, "goodplug-1.0", "[hivemem.strategies]\ngoodplug = goodplug:S\n\n[console_scripts]\nx = y:z\n")
    _dist(site, "badplug-2.0", "[hivemem.strategies]\nbadplug = does_not_exist_mod:S\n")
    _dist(site, "zzclash-1.0", "[hivemem.strategies]\nclash = goodplug:S\n")
    monkeypatch.syspath_prepend(str(site))
    specs = _entry_point_specs("hivemem.strategies", [str(site)])
    assert sorted(s[0] for s in specs) == ["badplug", "clash", "goodplug"]
    reg = Registry(builtins=False, entry_points=False)
    with pytest.warns(hivemem.PluginWarning) as record:
        reg._load_entry_points([str(site)])
    messages = [str(w.message) for w in record]
    assert any("badplug" in m and "ModuleNotFoundError" in m for m in messages)
    assert any("clash" in m and "taken" in m for m in messages)
    assert {w.message.plugin for w in record} == {"badplug", "clash"}  # type: ignore[union-attr]
    assert reg.names() == ["goodplug"]
    assert "entry point" in reg.get("goodplug").origin


def test_strategy_protocol_runtime_check() -> None:
    """hivemem.Strategy is a runtime-checkable protocol that the built-ins satisfy."""
    from hivemem.strategies.gc import GarbageCollect

    assert isinstance(GarbageCollect(), hivemem.Strategy)
    assert not isinstance(object(), hivemem.Strategy)


def test_levels_parse_and_order() -> None:
    """Aggressiveness and Pressure parse names and numbers and compare in order."""
    assert hivemem.Aggressiveness.parse("Aggressive") is hivemem.AGGRESSIVE
    assert hivemem.Aggressiveness(2) is MODERATE
    assert CHEAP < MODERATE < hivemem.AGGRESSIVE
    P = hivemem.Pressure
    assert P.NORMAL < P.MODERATE < P.HIGH < P.CRITICAL
    assert P.parse("critical") >= P.HIGH
    with pytest.raises(hivemem.InvalidArgument, match="'extreme'"):
        hivemem.Aggressiveness.parse("extreme")
    with pytest.raises(hivemem.InvalidArgument):
        P.parse(True)
    assert repr(P.HIGH) == "hivemem.Pressure.HIGH" and str(CHEAP) == "cheap"
