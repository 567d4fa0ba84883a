from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

import hivemem
from hivemem._reclaim import hooks as _hooks
from hivemem.strategies.hooks import ReleaseHooks, pressure_of
from hivemem.testing import FakeReader


@pytest.fixture(autouse=True)
def no_hooks() -> Iterator[None]:
    saved = list(_hooks._hooks)
    _hooks._hooks.clear()
    yield
    _hooks._hooks[:] = saved


def _ctx(level: str | None = None, aggressiveness: str = "moderate") -> hivemem.StrategyContext:
    return hivemem.StrategyContext(
        target=None,
        aggressiveness=hivemem.Aggressiveness.parse(aggressiveness),
        reader=FakeReader(),
        level=level,
    )


def test_decorator_returns_function_and_runs_at_or_above_level() -> None:
    """A hook for HIGH runs at HIGH and CRITICAL, not at MODERATE; the decorator returns the function."""
    calls: list[hivemem.Pressure] = []

    @hivemem.on_pressure("high")
    def release(level: hivemem.Pressure) -> None:
        calls.append(level)

    assert callable(release)
    assert _hooks.run_hooks("moderate") == []
    ran = _hooks.run_hooks("critical")
    assert [r.name for r in ran] == [f"{__name__}.{release.__qualname__}"]
    assert calls == [hivemem.Pressure.CRITICAL]
    _hooks.run_hooks(hivemem.Pressure.HIGH)
    assert calls[-1] is hivemem.Pressure.HIGH


@pytest.mark.parametrize(
    ("registered", "current", "runs"),
    [
        ("normal", "normal", True),
        ("moderate", "normal", False),
        ("critical", "high", False),
        ("high", "high", True),
    ],
)
def test_level_boundaries(registered: str, current: str, runs: bool) -> None:
    """Levels compare with >=: exactly at the level runs, one below does not."""
    calls: list[object] = []
    hivemem.on_pressure(registered, calls.append)
    _hooks.run_hooks(current)
    assert bool(calls) is runs


def test_bound_method_is_held_weakly() -> None:
    """Registering a bound method does not keep its object alive; the hook vanishes with it."""

    class Cache:
        def __init__(self) -> None:
            self.cleared = 0

        def clear(self, level: object) -> None:
            self.cleared += 1

    cache = Cache()
    hivemem.on_pressure("moderate", cache.clear)
    assert _hooks.run_hooks("high")[0].ok
    assert cache.cleared == 1
    del cache
    gc.collect()
    assert _hooks.hooks() == []
    assert _hooks.run_hooks("critical") == []


def test_raising_hook_is_recorded_and_others_run() -> None:
    """A hook that raises is recorded with its error; the hooks after it still run."""
    calls: list[str] = []

    def bad(level: object) -> None:
        raise RuntimeError("boom")

    hivemem.on_pressure("moderate", bad)
    hivemem.on_pressure("moderate", lambda level: calls.append("after"))
    ran = _hooks.run_hooks("high")
    assert [r.error for r in ran] == ["RuntimeError: boom", None]
    assert calls == ["after"]
    assert ran[0].to_dict()["error"] == "RuntimeError: boom"


def test_remove_and_reregister() -> None:
    """remove_pressure_hook unregisters; registering again replaces the level instead of duplicating."""

    def hook(level: object) -> None:
        pass

    hivemem.on_pressure("moderate", hook)
    hivemem.on_pressure("critical", hook)
    assert _hooks.hooks() == [(f"{__name__}.{hook.__qualname__}", hivemem.Pressure.CRITICAL)]
    assert hivemem.remove_pressure_hook(hook) is True
    assert hivemem.remove_pressure_hook(hook) is False


@pytest.mark.parametrize(("level", "callback"), [("urgent", print), ("high", 42)])
def test_bad_input(level: str, callback: object) -> None:
    """An unknown level or a non-callable callback raises InvalidArgument and registers nothing."""
    with pytest.raises(hivemem.InvalidArgument):
        hivemem.on_pressure(level, callback)  # type: ignore[arg-type]
    assert _hooks.hooks() == []


@pytest.mark.parametrize(
    ("level", "aggressiveness", "expected"),
    [
        (None, "cheap", "moderate"),
        (None, "moderate", "high"),
        (None, "aggressive", "critical"),
        ("normal", "aggressive", "normal"),
        ("critical", "cheap", "critical"),
    ],
)
def test_strategy_level_mapping(level: str | None, aggressiveness: str, expected: str) -> None:
    """The governor's level wins; a direct optimize() maps aggressiveness to a pressure level."""
    assert pressure_of(_ctx(level, aggressiveness)) == expected


def test_strategy_runs_hooks_and_reports() -> None:
    """The hooks strategy runs the matching hooks and reports failures in stats, never raising."""
    hivemem.on_pressure("high", lambda level: None)
    hivemem.on_pressure("critical", lambda level: 1 / 0)
    result = ReleaseHooks().apply(_ctx(level="high"))
    assert result.skipped is None and result.stats["ran"] == 1
    result = ReleaseHooks().apply(_ctx(level="critical"))
    assert result.stats["failed"] == 1 and "ZeroDivisionError" in result.summary
    assert ReleaseHooks().apply(_ctx(level="normal")).skipped


def test_optimize_runs_hooks_through_registry() -> None:
    """hivemem.optimize() at the default aggressiveness runs HIGH hooks (and not CRITICAL ones)."""
    calls: list[str] = []
    hivemem.on_pressure("high", lambda level: calls.append("high"))
    hivemem.on_pressure("critical", lambda level: calls.append("critical"))
    report = hivemem.optimize(strategies=["hooks"])
    assert calls == ["high"]
    assert report.steps[0].stats["ran"] == 1


def test_concurrent_registration_and_runs() -> None:
    """Registering, removing and running hooks from many threads loses nothing and raises nothing."""
    errors: list[BaseException] = []
    counts = [0] * 8

    def worker(i: int) -> None:
        def hook(level: object) -> None:
            counts[i] += 1

        try:
            for _ in range(200):
                hivemem.on_pressure("moderate", hook)
                _hooks.run_hooks("high")
                hivemem.remove_pressure_hook(hook)
        except BaseException as exc:  # pragma: no cover - the assertion reports it
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(c >= 200 for c in counts)
    assert _hooks.hooks() == []


def test_bare_decorator_registers_at_moderate() -> None:
    """@hivemem.on_pressure without arguments registers the function at MODERATE."""

    @hivemem.on_pressure
    def hook(level: object) -> None:
        pass

    assert _hooks.hooks() == [(f"{__name__}.{hook.__qualname__}", hivemem.Pressure.MODERATE)]
