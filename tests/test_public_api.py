from __future__ import annotations

import ast
import json
from pathlib import Path

import hivemem

from .conftest import run_python

EXPECTED = [
    "AGGRESSIVE",
    "Aggressiveness",
    "BufferPool",
    "CHEAP",
    "Cache",
    "CompressedStore",
    "CorruptedValue",
    "Fragmentation",
    "GCPauses",
    "GovernorEvent",
    "HivememError",
    "HivememWarning",
    "InvalidArgument",
    "InvalidSize",
    "LazyProxy",
    "LeakDetected",
    "LeakReport",
    "MODERATE",
    "MemoryCeilingExceeded",
    "MemoryGovernor",
    "MemoryLimit",
    "MemoryLimitExceeded",
    "MemoryUsage",
    "ObjectPool",
    "OptimizationReport",
    "PluginWarning",
    "Pressure",
    "ProcReader",
    "ProcessMemory",
    "ProcessTree",
    "ProfileReport",
    "Profiler",
    "ReentrantOptimize",
    "Registry",
    "SpillStore",
    "StepResult",
    "Strategy",
    "StrategyContext",
    "StrategyError",
    "StrategyResult",
    "StringPool",
    "Unavailable",
    "UnknownStrategy",
    "add_listener",
    "after_fork_child",
    "allow_unload",
    "cache",
    "compactable",
    "disable_strategy",
    "disallow_unload",
    "enable_strategy",
    "find_leaks",
    "format_size",
    "fragmentation",
    "freeze",
    "gc_pauses",
    "gc_tuning",
    "govern",
    "growth",
    "install_signal_handler",
    "lazy_import",
    "list_strategies",
    "load_ipython_extension",
    "memory_limit",
    "on_pressure",
    "optimize",
    "parse_size",
    "prepare_fork",
    "process_tree",
    "register_cache",
    "register_container",
    "register_strategy",
    "remove_listener",
    "remove_pressure_hook",
    "reset_peak",
    "rss",
    "set_malloc_thresholds",
    "sizeof",
    "status",
    "top",
    "uncompactable",
    "unfreeze",
    "uninstall_signal_handler",
    "unload_modules",
    "unregister_cache",
    "unregister_container",
    "unregister_strategy",
    "usage",
    "why",
]


def test_all_is_exactly_the_public_surface() -> None:
    """__all__ is sorted and pinned; every name in it resolves."""
    assert hivemem.__all__ == EXPECTED
    assert sorted(hivemem.__all__) == hivemem.__all__
    assert set(hivemem._LAZY) == set(hivemem.__all__)
    for name in hivemem.__all__:
        assert getattr(hivemem, name) is not None, name


def _type_checking_imports() -> dict[str, str]:
    """Public name -> "module:attribute" as imported in __init__.py's TYPE_CHECKING block."""
    tree = ast.parse(Path(hivemem.__file__).read_text(encoding="utf-8"))
    blocks = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
    ]
    assert len(blocks) == 1
    found: dict[str, str] = {}
    for stmt in blocks[0].body:
        assert isinstance(stmt, ast.ImportFrom), ast.dump(stmt)
        assert stmt.module is not None and stmt.level == 0
        for alias in stmt.names:
            public = alias.asname or alias.name
            assert public not in found, public
            found[public] = f"{stmt.module}:{alias.name}"
    return found


def test_type_checking_block_mirrors_lazy_table() -> None:
    """The TYPE_CHECKING imports name exactly _LAZY's entries, from the same module and attribute."""
    expected = {}
    for name, spec in hivemem._LAZY.items():
        module, _, attr = spec.partition(":")
        expected[name] = f"{module}:{attr or name}"
    assert _type_checking_imports() == expected


def test_public_classes_say_hivemem() -> None:
    """Public classes report hivemem as their module, so reprs and tracebacks are short."""
    for name in hivemem.__all__:
        obj = getattr(hivemem, name)
        if isinstance(obj, type):
            assert obj.__module__ == "hivemem", name


def test_error_tree() -> None:
    """Every hivemem error derives from HivememError and the natural builtin."""
    assert issubclass(hivemem.InvalidSize, (hivemem.HivememError, ValueError))
    assert issubclass(hivemem.InvalidArgument, ValueError)
    assert issubclass(hivemem.UnknownStrategy, LookupError)
    assert issubclass(hivemem.StrategyError, TypeError)
    assert issubclass(hivemem.Unavailable, OSError)
    assert issubclass(hivemem.CorruptedValue, (hivemem.HivememError, OSError))
    assert issubclass(hivemem.PluginWarning, hivemem.HivememWarning)
    assert issubclass(hivemem.HivememWarning, UserWarning)
    err = hivemem.MemoryLimitExceeded("over", usage=5, limit=4)
    assert (err.usage, err.limit) == (5, 4)


def test_unknown_attribute() -> None:
    """A missing name raises AttributeError as for any module."""
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hivemem.nope  # noqa: B018


def test_import_is_light() -> None:
    """import hivemem pulls in no heavy or optional module (pympler, objgraph, psutil, typing, ...)."""
    out = run_python(
        """
        import sys
        before = set(sys.modules)
        import hivemem
        added = sorted(set(sys.modules) - before)
        import json
        print(json.dumps(added))
        """
    )
    added = json.loads(out)
    assert set(added) <= {"hivemem", "__future__"}, added


def test_optimize_stays_off_heavy_modules() -> None:
    """After optimize() no heavy module (pympler, objgraph, psutil, typing, ...) is loaded."""
    out = run_python(
        """
        import sys
        import hivemem
        hivemem.optimize(target_mb=1)
        hivemem.usage()
        loaded = sorted(sys.modules)
        import json
        print(json.dumps(loaded))
        """
    )
    loaded = set(json.loads(out))
    for heavy in ("pympler", "objgraph", "psutil", "typing", "importlib.metadata", "dataclasses", "enum"):
        assert heavy not in loaded, heavy
