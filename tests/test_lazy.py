from __future__ import annotations

import gc
import json
import sys
import threading
import types
from pathlib import Path

import pytest

import hivemem
from hivemem._stores.lazy import is_lazy, live_proxies
from hivemem.strategies.lazy import DropLazyProxies
from hivemem.testing import FakeReader

from .conftest import run_python


@pytest.fixture
def modpath(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("hm_lazy_")]:
        del sys.modules[name]


def _write(path: Path, name: str, body: str) -> None:
    (path / f"{name}.py").write_text(
        "import builtins\nbuiltins.hm_loads = getattr(builtins, 'hm_loads', []) + [__name__]\n" + body
    )


def _loads() -> list[str]:
    import builtins

    return list(getattr(builtins, "hm_loads", []))


def test_module_runs_only_on_first_attribute_access(modpath: Path) -> None:
    """The module's code runs on first attribute access, once; isinstance works before and after."""
    _write(modpath, "hm_lazy_a", "class Thing:\n    pass\nVALUE = 42\n")
    mod = hivemem.lazy_import("hm_lazy_a")
    assert isinstance(mod, types.ModuleType) and is_lazy(mod)
    assert mod.__name__ == "hm_lazy_a" and "hm_lazy_a" not in _loads()
    import hm_lazy_a  # type: ignore[import-not-found]

    assert hm_lazy_a is mod and is_lazy(mod)  # the import statement does not load it
    assert mod.VALUE == 42 and _loads().count("hm_lazy_a") == 1
    assert not is_lazy(mod) and type(mod) is types.ModuleType
    assert isinstance(mod.Thing(), mod.Thing)
    assert hivemem.lazy_import("hm_lazy_a") is mod


def test_from_import_loads_at_once(modpath: Path) -> None:
    """`from mod import name` reads the attribute, so it loads the module immediately."""
    _write(modpath, "hm_lazy_b", "X = 1\n")
    hivemem.lazy_import("hm_lazy_b")
    from hm_lazy_b import X  # type: ignore[import-not-found]

    assert X == 1 and "hm_lazy_b" in _loads()


def test_first_load_is_thread_safe(modpath: Path) -> None:
    """Eight threads touching a slow module at once all see it complete; its code runs once."""
    _write(modpath, "hm_lazy_c", "import time\ntime.sleep(0.2)\nDONE = 'yes'\n")
    mod = hivemem.lazy_import("hm_lazy_c")
    seen: list[object] = []
    barrier = threading.Barrier(8)

    def touch() -> None:
        barrier.wait()
        try:
            seen.append(mod.DONE)
        except Exception as exc:  # pragma: no cover - the assertion shows it
            seen.append(exc)

    threads = [threading.Thread(target=touch) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == ["yes"] * 8
    assert _loads().count("hm_lazy_c") == 1


def test_failing_module_stays_lazy_and_retries(modpath: Path) -> None:
    """A module whose code raises propagates the error on access and loads on a later retry."""
    (modpath / "hm_lazy_flag.txt").write_text("fail")
    flag = modpath / "hm_lazy_flag.txt"
    _write(
        modpath,
        "hm_lazy_d",
        f"import pathlib\nif pathlib.Path({str(flag)!r}).read_text() == 'fail':\n"
        "    raise RuntimeError('boom')\nOK = 1\n",
    )
    mod = hivemem.lazy_import("hm_lazy_d")
    with pytest.raises(RuntimeError, match="boom"):
        mod.OK  # noqa: B018
    assert is_lazy(mod)
    flag.write_text("ok")
    assert mod.OK == 1


def test_package_submodule_and_attributes_set_before_load(modpath: Path) -> None:
    """A lazy submodule is bound on its parent; attributes set before loading survive the load."""
    pkg = modpath / "hm_lazy_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    _write(pkg, "sub", "Y = 2\n")
    sub = hivemem.lazy_import("hm_lazy_pkg.sub")
    import hm_lazy_pkg  # type: ignore[import-not-found]

    assert hm_lazy_pkg.sub is sub and is_lazy(sub)
    sub.extra = "kept"
    assert sub.Y == 2 and sub.extra == "kept"


@pytest.mark.parametrize("name", ["", ".relative", 3])
def test_bad_names(name: object) -> None:
    """An empty, relative or non-string name raises InvalidArgument."""
    with pytest.raises(hivemem.InvalidArgument):
        hivemem.lazy_import(name)  # type: ignore[arg-type]


def test_missing_module_fails_now() -> None:
    """A module that does not exist raises ModuleNotFoundError at lazy_import time, not later."""
    with pytest.raises(ModuleNotFoundError):
        hivemem.lazy_import("hm_lazy_no_such_module")


def test_untouched_lazy_module_loads_none_of_its_imports() -> None:
    """In a fresh interpreter, a lazily imported http.server pulls in none of its own imports until used."""
    out = run_python(
        """
        import json, sys, hivemem
        server = hivemem.lazy_import("http.server")
        before = sorted(m for m in ("socketserver", "html", "email.utils") if m in sys.modules)
        server.SimpleHTTPRequestHandler  # first use
        after = sorted(m for m in ("socketserver", "html", "email.utils") if m in sys.modules)
        print(json.dumps([before, after]))
        """
    )
    before, after = json.loads(out)
    assert before == [] and after == ["email.utils", "html", "socketserver"]


def test_proxy_builds_once_and_behaves_like_target() -> None:
    """A LazyProxy builds on first use, once, and forwards attributes, operators, isinstance and calls."""
    calls: list[int] = []

    def build() -> list[int]:
        calls.append(1)
        return [3, 1, 2]

    p = hivemem.LazyProxy(build)
    assert "not built" in repr(p) and not hivemem.LazyProxy.is_built(p) and calls == []
    assert isinstance(p, list) and len(p) == 3 and sorted(p) == [1, 2, 3]
    assert p[0] == 3 and 2 in p and p + [4] == [3, 1, 2, 4]  # noqa: RUF005 - the proxy's __add__ is under test and p == [3, 1, 2]
    p.append(5)
    assert hivemem.LazyProxy.unwrap(p) == [3, 1, 2, 5] and calls == [1]
    n = hivemem.LazyProxy(lambda: 7)
    assert (
        n + 1 == 8 and 1 + n == 8 and -n == -7 and n * 2 == 14 and hash(n) == hash(7) and f"{n:03d}" == "007"
    )
    f = hivemem.LazyProxy(lambda: lambda x: x * 2)
    assert f(4) == 8


def test_proxy_build_is_thread_safe() -> None:
    """Sixteen threads racing on an unbuilt proxy call the factory exactly once."""
    calls: list[int] = []
    barrier = threading.Barrier(16)

    def build() -> dict[str, int]:
        calls.append(1)
        import time

        time.sleep(0.05)
        return {"v": 1}

    p = hivemem.LazyProxy(build)
    results: list[int] = []

    def use() -> None:
        barrier.wait()
        results.append(p["v"])

    threads = [threading.Thread(target=use) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [1] * 16 and calls == [1]


def test_droppable_proxy_dropped_by_strategy_and_rebuilt() -> None:
    """The lazy strategy drops built droppable proxies only; the next use rebuilds through the factory."""
    gc.collect()
    keep = hivemem.LazyProxy(lambda: bytearray(1000))
    drop = hivemem.LazyProxy(lambda: bytearray(1000), droppable=True)
    len(keep), len(drop)
    ctx = hivemem.StrategyContext(target=None, aggressiveness=hivemem.MODERATE, reader=FakeReader())
    result = DropLazyProxies().apply(ctx)
    assert result.stats["dropped"] == 1
    assert hivemem.LazyProxy.is_built(keep) and not hivemem.LazyProxy.is_built(drop)
    assert len(drop) == 1000 and hivemem.LazyProxy.builds(drop) == 2
    assert DropLazyProxies().apply(ctx).stats["dropped"] == 1


def test_droppable_registration_is_weak() -> None:
    """Registering a droppable proxy does not keep it alive."""
    p = hivemem.LazyProxy(dict, droppable=True)
    assert any(x is p for x in live_proxies())
    ident = id(p)
    del p
    gc.collect()
    assert ident not in {id(x) for x in live_proxies()}


@pytest.mark.parametrize(("factory", "droppable"), [(None, False), (dict, "yes")])
def test_proxy_bad_arguments(factory: object, droppable: object) -> None:
    """A non-callable factory or a non-bool droppable raises InvalidArgument."""
    with pytest.raises(hivemem.InvalidArgument):
        hivemem.LazyProxy(factory, droppable=droppable)  # type: ignore[arg-type]
