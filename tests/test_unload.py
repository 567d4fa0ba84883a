from __future__ import annotations

import gc
import importlib
import sys
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

import hivemem
from hivemem._reclaim.unload import unload_allowlist
from hivemem.strategies.unload_modules import UnloadModules
from hivemem.testing import FakeReader

BODY = """
import os
from hm_unl_pkg import helper
DATA = [str(i) * 10 for i in range(1000)]
class Thing:
    def m(self):
        return helper.f()
def use():
    return Thing().m()
"""


@pytest.fixture
def pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    root = tmp_path / "hm_unl_pkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "heavy.py").write_text(BODY)
    (root / "helper.py").write_text("def f():\n    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("hm_unl_pkg.heavy")
    yield "hm_unl_pkg"
    hivemem.disallow_unload()
    for name in [n for n in sys.modules if n.startswith("hm_unl_pkg")]:
        del sys.modules[name]


def _mod(name: str) -> object:
    return sys.modules[name]


def _ctx() -> hivemem.StrategyContext:
    return hivemem.StrategyContext(target=None, aggressiveness=hivemem.AGGRESSIVE, reader=FakeReader())


def test_nothing_is_unloaded_without_opt_in(pkg: str) -> None:
    """With an empty allowlist the strategy skips, saying it is opt-in, and every module stays."""
    assert unload_allowlist() == []
    result = UnloadModules().apply(_ctx())
    assert result.skipped and "opt-in" in result.skipped
    assert "hm_unl_pkg.heavy" in sys.modules


def test_unused_modules_are_unloaded_and_freed(pkg: str) -> None:
    """Allowlisted modules nothing references are removed, their objects freed, and re-import works."""
    func = weakref.ref(sys.modules["hm_unl_pkg.heavy"].use)  # type: ignore[attr-defined]
    hivemem.allow_unload("hm_unl_pkg", "hm_unl_pkg.*")
    done = hivemem.unload_modules()
    assert done["unloaded"] == ["hm_unl_pkg", "hm_unl_pkg.heavy", "hm_unl_pkg.helper"], done["kept"]
    assert not any(n.startswith("hm_unl_pkg") for n in sys.modules)
    gc.collect()
    assert func() is None  # the module's function really died
    fresh = importlib.import_module("hm_unl_pkg.heavy")
    assert fresh.use() == 42


def test_dry_run_changes_nothing(pkg: str) -> None:
    """dry_run=True reports what would go and removes nothing."""
    hivemem.allow_unload("hm_unl_pkg*")
    done = hivemem.unload_modules(dry_run=True)
    assert len(done["unloaded"]) == 3  # type: ignore[arg-type]
    assert "hm_unl_pkg.heavy" in sys.modules


def test_live_instance_keeps_module(pkg: str) -> None:
    """An instance of the module's class keeps it (and its package) loaded, with the reason."""
    thing = sys.modules["hm_unl_pkg.heavy"].Thing()  # type: ignore[attr-defined]
    hivemem.allow_unload("hm_unl_pkg", "hm_unl_pkg.*")
    done = hivemem.unload_modules()
    kept = done["kept"]
    assert "Thing object" in kept["hm_unl_pkg.heavy"]  # type: ignore[index]
    assert "submodule" in kept["hm_unl_pkg"]  # type: ignore[index]
    assert "hm_unl_pkg.heavy" in sys.modules and thing.m() == 42


def test_function_held_elsewhere_keeps_module(pkg: str) -> None:
    """A function stored outside the module (a callback registry) keeps its module loaded."""
    registry = {"cb": sys.modules["hm_unl_pkg.helper"].f}  # type: ignore[attr-defined]
    hivemem.allow_unload("hm_unl_pkg.*")
    done = hivemem.unload_modules()
    assert done["unloaded"] == ["hm_unl_pkg.heavy"] and "hm_unl_pkg.helper" in sys.modules
    assert "dict" in done["kept"]["hm_unl_pkg.helper"]  # type: ignore[index]
    assert registry["cb"]() == 42


def test_reference_from_running_code_keeps_module(pkg: str) -> None:
    """A module held only by a running thread's locals (invisible to gc) is kept: refcounts disagree."""
    ready, release = threading.Event(), threading.Event()

    def run() -> None:
        helper = sys.modules["hm_unl_pkg.helper"]
        ready.set()
        release.wait()
        del helper

    t = threading.Thread(target=run)
    t.start()
    ready.wait()
    try:
        hivemem.allow_unload("hm_unl_pkg.helper", "hm_unl_pkg.heavy")
        # heavy is the only other referrer; let it go too
        done = hivemem.unload_modules(dry_run=True)
        assert "hm_unl_pkg.helper" in done["kept"], done  # type: ignore[operator]
    finally:
        release.set()
        t.join()


def test_extension_and_hivemem_modules_are_refused(pkg: str) -> None:
    """Extension modules, built-ins and hivemem itself are never unloaded, whatever the allowlist says."""
    import _json  # noqa: F401 - an extension or built-in module

    hivemem.allow_unload("_json", "hivemem*", "sys")
    done = hivemem.unload_modules(dry_run=True)
    assert done["unloaded"] == []
    assert {"_json", "hivemem", "sys"} <= set(done["kept"])  # type: ignore[arg-type]


@pytest.mark.parametrize("pattern", ["", "  ", 3])
def test_bad_patterns(pattern: object) -> None:
    """An empty or non-string pattern raises InvalidArgument and changes nothing."""
    with pytest.raises(hivemem.InvalidArgument):
        hivemem.allow_unload("ok.module", pattern)  # type: ignore[arg-type]
    assert unload_allowlist() == []


def test_strategy_reports_unloaded_and_kept(pkg: str) -> None:
    """The strategy lists the unloaded modules and, when nothing can go, says why in its skip reason."""
    keep = sys.modules["hm_unl_pkg.heavy"].Thing()  # type: ignore[attr-defined]
    hivemem.allow_unload("hm_unl_pkg", "hm_unl_pkg.*")
    result = UnloadModules().apply(_ctx())
    assert result.skipped and "Thing object" in result.skipped
    del keep
    result = UnloadModules().apply(_ctx())
    assert result.stats["unloaded"] == ["hm_unl_pkg", "hm_unl_pkg.heavy", "hm_unl_pkg.helper"]
