"""The argument fuzz table: public functions and constructors, odd values, and a runner.

``_targets()`` lists ``Target(label, call(value), check(result))`` for every public function and
constructor that takes a size, fraction, interval, window, level, count or callable; ``ODD`` the
values. ``run_all()`` calls each with each value in fresh interpreters (a hung call cannot be
stopped from inside a process), and classifies the outcome. ``tests/test_fuzz_arguments.py``
asserts on it; ``benchmarks/bench_faults_engine.py`` counts it. No pytest here: the children stay
small, so calls whose cost grows with the heap (leak checks) stay fast.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import hivemem
from hivemem.testing import FakeReader


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


ODD: list[tuple[str, object]] = [
    ("None", None),
    ("-1", -1),
    ("0", 0),
    ("-0.0", -0.0),
    ("1", 1),
    ("0.5", 0.5),
    ("-0.5", -0.5),
    ("1.5", 1.5),
    ("100", 100),
    ("nan", math.nan),
    ("inf", math.inf),
    ("-inf", -math.inf),
    ("10**400", 10**400),
    ("-10**400", -(10**400)),
    ("1e308", 1e308),
    ("-1e308", -1e308),
    ("5e-324", 5e-324),
    ("2**64", 2**64),
    ("2**63", 2**63),
    ("2**31", 2**31),
    ("True", True),
    ("False", False),
    ("'abc'", "abc"),
    ("''", ""),
    ("'5'", "5"),
    ("'90MB'", "90MB"),
    ("'-5MB'", "-5MB"),
    ("'1e400MB'", "1e400MB"),
    ("'nanMB'", "nanMB"),
    ("'infGB'", "infGB"),
    ("'10 parsecs'", "10 parsecs"),
    ("'5s'", "5s"),
    ("b'5'", b"5"),
    ("[]", []),
    ("[1]", [1]),
    ("{}", {}),
    ("object", _Opaque()),
    ("complex", 1 + 2j),
]

CALL_TIMEOUT = 30.0  # seconds; a call that takes longer is a hang
MiB = 2**20


def _noop(*args: object) -> None:
    return None


def _empty_registry() -> hivemem.Registry:
    return hivemem.Registry(builtins=False, entry_points=False)


def _governor(**kwargs: object) -> hivemem.MemoryGovernor:
    base: dict[str, object] = {
        "reader": FakeReader(rss="10MB"),
        "registry": _empty_registry(),
        "budget": "1GB",
        "psi": False,
        "interval": 0.01,
    }
    base.update(kwargs)
    return hivemem.MemoryGovernor(**base)


def _runs_governor(gov: object) -> None:
    """Start the accepted governor, let its thread tick, stop it: the thread must have survived."""
    assert isinstance(gov, hivemem.MemoryGovernor)
    gov.start()
    monitor = gov._monitor
    try:
        assert monitor is not None and monitor.thread is not None
        time.sleep(0.03)
        gov.tick()
        assert monitor.thread.is_alive(), "the governor's monitor thread died"
    finally:
        gov.stop()
    if monitor is not None and monitor.thread is not None:
        monitor.thread.join(10)
        assert not monitor.thread.is_alive(), "the monitor thread did not end within 10 s of stop()"


def _runs_profiler(prof: object) -> None:
    assert isinstance(prof, hivemem.Profiler)
    prof.start()
    try:
        time.sleep(0.03)
        thread = prof._thread
        assert thread is None or thread.is_alive(), "the profiler's sampling thread died"
        prof.sample()
    finally:
        prof.stop()
    prof.report(advice=False)


def _uses_store(store: object) -> None:
    """An accepted store compresses/spills and reads back what it was given."""
    value = b"hivemem " * 4096
    store["k"] = value
    if isinstance(store, hivemem.CompressedStore):
        store.compress()
    elif isinstance(store, hivemem.SpillStore):
        store.spill()
    assert store["k"] == value
    if isinstance(store, hivemem.SpillStore):
        store.close()


def _uses_cache(cache: object) -> None:
    """An accepted Cache keeps what fits and returns it unchanged."""
    value = b"hivemem " * 64
    cache["k"] = value  # type: ignore[index]
    assert cache.get("k", value) == value  # type: ignore[attr-defined]


def _memoized(**kwargs: object) -> None:
    """An accepted cache() decorator memoizes: a second call is a hit with the same answer."""
    f = hivemem.cache(**kwargs)(lambda x: x * 2)  # type: ignore[arg-type]
    assert f(21) == f(21) == 42
    assert f.cache_info().hits >= 0


def _uses_pool(pool: object) -> None:
    if isinstance(pool, hivemem.BufferPool):
        buf = pool.acquire(64)
        pool.release(buf)
    elif isinstance(pool, hivemem.ObjectPool):
        obj = pool.acquire()
        pool.release(obj)
        pool.clear()


def _stop(gov: object) -> None:
    gov.stop()


def _register_then_remove(value: object) -> object:
    hivemem.add_listener(value)
    hivemem.remove_listener(value)
    return None


def _on_pressure(level: object = "moderate", callback: object = _noop) -> object:
    fn = hivemem.on_pressure(level, callback)
    hivemem.remove_pressure_hook(fn)
    return fn


def _container(**kwargs: object) -> object:
    data = {"a": 1}
    hivemem.register_container(data, **kwargs)
    hivemem.unregister_container(data)
    return data


def _cache(**kwargs: object) -> object:
    data: dict[str, int] = {}
    hivemem.register_cache(data, **kwargs)
    hivemem.unregister_cache(data)
    return data


def _find_leaks(**kwargs: object) -> object:
    return hivemem.find_leaks(_noop, **{"warmup": 0, "repeat": 2, "types": False, **kwargs})


def _malloc_thresholds(**kwargs: object) -> object:
    # Validation happens before glibc is called; a recording mallopt keeps this process's malloc as it is.
    from hivemem._measure import native as _native

    real = _native.mallopt
    _native.mallopt = lambda param, value: True
    try:
        return hivemem.set_malloc_thresholds(**kwargs)
    finally:
        _native.mallopt = real


def _signal_handler(signum: object) -> object:
    name = hivemem.install_signal_handler(signum)
    hivemem.uninstall_signal_handler(name)
    return name


def _track(**kwargs: object) -> object:
    from hivemem import widgets

    class Widget:
        pass

    w = Widget()
    widgets.track(w, **kwargs)
    widgets.untrack(w)
    return w


def _gc_tuning(*thresholds: object, **kwargs: object) -> object:
    with hivemem.gc_tuning(*thresholds, **kwargs) as tuning:
        pass
    return tuning


def _prometheus(**kwargs: object) -> object:
    import prometheus_client  # ImportError: reported as skipped

    from hivemem.integrations import prometheus

    metrics = prometheus.install(prometheus_client.CollectorRegistry(), **kwargs)
    metrics.close() if hasattr(metrics, "close") else None
    return metrics


def _dask() -> object:
    from hivemem.integrations import dask  # imports distributed: only when a dask target runs

    return dask


def _dask_plugin(**kwargs: object) -> object:
    import distributed  # noqa: F401 - ImportError: reported as skipped

    from hivemem.integrations import dask

    return dask.GovernorPlugin(**kwargs)


@dataclass(frozen=True)
class Target:
    label: str
    call: Callable[[object], object]
    check: Callable[[object], None] | None = None
    documented: tuple[type[BaseException], ...] = ()  # exceptions outside the tree the docs promise


def _targets() -> list[Target]:
    from hivemem import testing, widgets

    t: list[Target] = [
        Target("parse_size(v)", lambda v: hivemem.parse_size(v)),
        Target("format_size(v)", lambda v: hivemem.format_size(v)),
        Target("format_size(1, signed=v)", lambda v: hivemem.format_size(1, signed=v)),
        Target("Aggressiveness(v)", lambda v: hivemem.Aggressiveness(v)),
        Target("Pressure(v)", lambda v: hivemem.Pressure(v)),
    ]
    for arg in ("target_mb", "target", "strategies", "aggressiveness", "on_step_start", "on_step"):
        t.append(
            Target(
                f"optimize({arg}=v, dry_run=True)",
                lambda v, a=arg: hivemem.optimize(**{a: v, "dry_run": True}),
            )
        )
        t.append(
            Target(f"MemoryGovernor().optimize({arg}=v)", lambda v, a=arg: _governor().optimize(**{a: v}))
        )
    t.append(Target("MemoryGovernor().optimize(dry_run=v)", lambda v: _governor().optimize(dry_run=v)))
    for arg in (
        "target",
        "budget",
        "limit",
        "interval",
        "spike_window",
        "cpu_budget",
        "cpu_window",
        "escalation",
        "on_escalate",
        "exit_code",
        "psi",
        "psi_trigger",
        "after_fork",
        "adaptive",
        "demote_after",
        "retry_every",
        "min_yield",
        "never_demote",
        "max_events",
        "aggressiveness",
        "thresholds",
        "level_aggressiveness",
        "reader",
        "registry",
        "clock",
        "cpu_clock",
    ):
        t.append(Target(f"MemoryGovernor({arg}=v)", lambda v, a=arg: _governor(**{a: v}), _runs_governor))
    t.append(
        Target(
            "govern(budget=v)",
            lambda v: hivemem.govern(v, reader=FakeReader("10MB"), registry=_empty_registry(), psi=False),
            _stop,
        )
    )
    for arg in ("interval", "trace", "frames", "uss", "max_samples", "reader", "clock"):
        t.append(Target(f"Profiler({arg}=v)", lambda v, a=arg: hivemem.Profiler(**{a: v}), _runs_profiler))

    def profiled(method: str, **fixed: object) -> Callable[[object], object]:
        def call(v: object) -> object:
            prof = hivemem.Profiler(interval=None)
            prof.start()
            try:
                prof.snapshot("a") if method == "diff" else None
                arg = next(iter(fixed))
                return getattr(prof, method)(**{arg: v})
            finally:
                prof.stop()

        return call

    t += [
        Target("Profiler.diff(n=v)", profiled("diff", n=0)),
        Target("Profiler.leak_watch(min_growth=v)", profiled("leak_watch", min_growth=0)),
        Target("Profiler.leak_watch(min_duration=v)", profiled("leak_watch", min_duration=0)),
        Target("Profiler.report(top=v)", profiled("report", top=0)),
        Target("Profiler.top(n=v)", profiled("top", n=0)),
    ]
    for arg in ("warmup", "repeat", "tolerance", "number", "frames", "types", "args", "kwargs"):
        t.append(Target(f"find_leaks({arg}=v)", lambda v, a=arg: _find_leaks(**{a: v})))
    t.append(Target("find_leaks(v)", lambda v: hivemem.find_leaks(v, warmup=0, repeat=2, types=False)))
    for arg in ("warmup", "repeat", "tolerance"):
        t.append(
            Target(
                f"testing.assert_no_leaks({arg}=v)",
                lambda v, a=arg: testing.assert_no_leaks(_noop, **{"warmup": 0, "repeat": 2, a: v}),
            )
        )

    def peak_below(v: object) -> object:
        with testing.assert_peak_below(v, reader=FakeReader("10MB")) as ceiling:
            pass
        return ceiling

    t += [
        Target("testing.assert_peak_below(v)", peak_below),
        Target(
            "testing.assert_peak_below('1GB', kind=v)", lambda v: testing.assert_peak_below("1GB", kind=v)
        ),
        Target("testing.MemoryMeter(kind=v)", lambda v: testing.MemoryMeter(v)),
        Target(
            "testing.MemoryMeter().measurement(limit=v)",
            lambda v: testing.MemoryMeter(reader=FakeReader("10MB")).measurement(v),
        ),
        Target("testing.FakeReader(rss=v)", lambda v: FakeReader(v)),
        Target("testing.FakeReader().set(v)", lambda v: FakeReader("1GB").set(v)),
        Target("testing.FakeReader().grow(v)", lambda v: FakeReader("1GB").grow(v)),
        Target("testing.FakeReader().free(v)", lambda v: FakeReader("1GB").free(v)),
        Target("BufferPool(max_bytes=v)", lambda v: hivemem.BufferPool(v), _uses_pool),
        Target(
            "BufferPool('1MB', min_bytes=v)", lambda v: hivemem.BufferPool("1MB", min_bytes=v), _uses_pool
        ),
        Target("BufferPool('1MB', zero=v)", lambda v: hivemem.BufferPool("1MB", zero=v), _uses_pool),
        Target("BufferPool('1MB').acquire(v)", lambda v: hivemem.BufferPool("1MB").acquire(v)),
        Target("BufferPool('1MB').borrow(v)", lambda v: hivemem.BufferPool("1MB").borrow(v)),
        Target("BufferPool('1MB').shrink(v)", lambda v: hivemem.BufferPool("1MB").shrink(v)),
        Target("ObjectPool(factory=v)", lambda v: hivemem.ObjectPool(v, maxsize=4), _uses_pool),
        Target("ObjectPool(maxsize=v)", lambda v: hivemem.ObjectPool(list, maxsize=v), _uses_pool),
        Target("ObjectPool(reset=v)", lambda v: hivemem.ObjectPool(list, maxsize=4, reset=v), _uses_pool),
        Target(
            "ObjectPool(min_idle=v)", lambda v: hivemem.ObjectPool(list, maxsize=4, min_idle=v), _uses_pool
        ),
        Target("ObjectPool().shrink(keep=v)", lambda v: hivemem.ObjectPool(list, maxsize=4).shrink(v)),
        Target("CompressedStore(level=v)", lambda v: hivemem.CompressedStore(level=v), _uses_store),
        Target(
            "CompressedStore(codec='zlib', level=v)",
            lambda v: hivemem.CompressedStore(codec="zlib", level=v),
            _uses_store,
        ),
        Target("CompressedStore(codec=v)", lambda v: hivemem.CompressedStore(codec=v), _uses_store),
        Target("CompressedStore(min_ratio=v)", lambda v: hivemem.CompressedStore(min_ratio=v), _uses_store),
        Target("CompressedStore(min_size=v)", lambda v: hivemem.CompressedStore(min_size=v), _uses_store),
        Target("CompressedStore().compress(nbytes=v)", lambda v: hivemem.CompressedStore().compress(v)),
        Target(
            "CompressedStore().compress(stop=v)",
            lambda v: hivemem.CompressedStore({"k": b"x" * 9000}).compress(stop=v),
        ),
        Target(
            "SpillStore(min_size=v)",
            lambda v: hivemem.SpillStore(directory=_tmpdir(), min_size=v),
            _uses_store,
        ),
        Target(
            "SpillStore(strict=v)", lambda v: hivemem.SpillStore(directory=_tmpdir(), strict=v), _uses_store
        ),
        Target("SpillStore(directory=v)", lambda v: hivemem.SpillStore(directory=v), _uses_store),
        Target("SpillStore().spill(nbytes=v)", lambda v: _spill(nbytes=v)),
        Target("SpillStore().spill(stop=v)", lambda v: _spill(stop=v)),
        Target("Cache(max_bytes=v)", lambda v: _uses_cache(hivemem.Cache(v))),
        Target("Cache('1MB', maxsize=v)", lambda v: _uses_cache(hivemem.Cache("1MB", maxsize=v))),
        Target("Cache('1MB', weigher=v)", lambda v: _uses_cache(hivemem.Cache("1MB", weigher=v))),
        Target("Cache('1MB', keep=v)", lambda v: _uses_cache(hivemem.Cache("1MB", keep=v))),
        Target("cache(max_bytes=v)", lambda v: _memoized(max_bytes=v)),
        Target("cache(maxsize=v)", lambda v: _memoized(max_bytes="1MB", maxsize=v)),
        Target("cache(typed=v)", lambda v: _memoized(max_bytes="1MB", typed=v)),
        Target("cache(weigher=v)", lambda v: _memoized(max_bytes="1MB", weigher=v)),
        Target("cache(keep=v)", lambda v: _memoized(max_bytes="1MB", keep=v)),
        Target("StringPool(max_size=v)", lambda v: hivemem.StringPool(max_size=v).intern("abc" * 3)),
        Target("StringPool(max_length=v)", lambda v: hivemem.StringPool(max_length=v).intern("abc" * 3)),
        Target("StringPool().intern(v)", lambda v: hivemem.StringPool().intern(v)),
        Target("gc_tuning(v)", lambda v: _gc_tuning(v)),
        Target("gc_tuning(700, 10, v)", lambda v: _gc_tuning(700, 10, v)),
        Target("gc_tuning(enabled=v)", lambda v: _gc_tuning(enabled=v)),
        Target("gc_pauses(clock=v)", lambda v: _gc_pauses(v)),
        Target("GCPauses(clock=v)", lambda v: hivemem.GCPauses(v).start().stop()),
        Target("remove_pressure_hook(v)", lambda v: hivemem.remove_pressure_hook(v)),
        Target("on_pressure(level=v)", lambda v: _on_pressure(level=v)),
        Target("on_pressure(callback=v)", lambda v: _on_pressure(callback=v)),
        Target("add_listener(v)", _register_then_remove),
        Target("register_container(lock=v)", lambda v: _container(lock=v)),
        Target("register_container(keys=v)", lambda v: _container(keys=v)),
        Target("register_cache(lock=v)", lambda v: _cache(lock=v)),
        Target("status(types=v)", lambda v: hivemem.status(types=v, advice=False)),
        Target("status(advice=v)", lambda v: hivemem.status(types=0, advice=v)),
        Target("status(min_advice=v)", lambda v: hivemem.status(types=0, min_advice=v)),
        Target("top(n=v)", lambda v: hivemem.top(v)),
        Target("top(by=v)", lambda v: hivemem.top(3, by=v)),
        Target("growth(limit=v)", lambda v: hivemem.growth(v)),
        Target("why(max_depth=v)", lambda v: hivemem.why(_WHY_TARGET, max_depth=v)),
        Target("process_tree(pid=v)", lambda v: hivemem.process_tree(v)),
        Target("process_tree(children=v)", lambda v: hivemem.process_tree(children=v)),
        Target("memory_limit(root=v)", lambda v: hivemem.memory_limit(root=v)),
        Target("set_malloc_thresholds(mmap_threshold=v)", lambda v: _malloc_thresholds(mmap_threshold=v)),
        Target("set_malloc_thresholds(trim_threshold=v)", lambda v: _malloc_thresholds(trim_threshold=v)),
        Target("set_malloc_thresholds(arena_max=v)", lambda v: _malloc_thresholds(arena_max=v)),
        Target("install_signal_handler(v)", _signal_handler),
        Target("unload_modules(dry_run=v)", lambda v: hivemem.unload_modules(dry_run=v)),
        # A well-formed name of a module that does not exist: ModuleNotFoundError, as ``import`` does.
        Target("lazy_import(v)", lambda v: hivemem.lazy_import(v), documented=(ModuleNotFoundError,)),
        Target("allow_unload(v)", lambda v: (hivemem.allow_unload(v), hivemem.disallow_unload(v))),
        Target("widgets.track(level=v)", lambda v: _track(level=v)),
        Target("widgets.track(on_dispose=v)", lambda v: _track(on_dispose=v)),
        Target("widgets.track(disposable=v)", lambda v: _track(disposable=v)),
        Target("widgets.dispose_hidden(level=v)", lambda v: widgets.dispose_hidden(v)),
        Target("LazyProxy(factory=v)", lambda v: hivemem.LazyProxy(v)),
        Target("LazyProxy(droppable=v)", lambda v: hivemem.LazyProxy(list, droppable=v)),
        Target("prometheus.install(refresh_interval=v)", lambda v: _prometheus(refresh_interval=v)),
        Target("prometheus.install(namespace=v)", lambda v: _prometheus(namespace=v)),
        Target("dask.thresholds_for(target=v)", lambda v: _dask().thresholds_for(target=v)),
        Target("dask.thresholds_for(spill=v)", lambda v: _dask().thresholds_for(spill=v)),
        Target("dask.thresholds_for(pause=v)", lambda v: _dask().thresholds_for(pause=v)),
        Target("dask.GovernorPlugin(interval=v)", lambda v: _dask_plugin(interval=v)),
        Target("dask.GovernorPlugin(budget=v)", lambda v: _dask_plugin(budget=v)),
    ]
    return t


_WHY_TARGET = ["held by the fuzz module"]
_TMP: list[str] = []


def _tmpdir() -> str:
    path = tempfile.mkdtemp(prefix="hivemem-fuzz-")
    _TMP.append(path)
    return path


def _spill(**kwargs: object) -> object:
    store = hivemem.SpillStore({"k": b"x" * 9000}, directory=_tmpdir())
    try:
        return store.spill(**kwargs)
    finally:
        store.close()


def _gc_pauses(clock: object) -> object:
    import gc

    pauses = hivemem.gc_pauses(clock)
    try:
        gc.collect(0)
    finally:
        pauses.stop()
    return pauses


@dataclass
class Outcome:
    label: str
    value: str
    kind: str  # "ok", "refused", "escaped", "hang", "thread died"
    detail: str = ""


def _call_with_timeout(fn: Callable[[], object], timeout: float) -> tuple[str, object]:
    box: list[tuple[str, object]] = []

    def run() -> None:
        try:
            box.append(("ok", fn()))
        except BaseException as exc:  # reported, never swallowed silently
            box.append(("raised", exc))

    thread = threading.Thread(target=run, daemon=True, name="hivemem-fuzz-call")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return "hang", None
    return box[0]


def run_one(target: Target, label: str, value: object, timeout: float = CALL_TIMEOUT) -> Outcome:
    died: list[str] = []
    old_hook = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        died.append(f"{args.thread.name if args.thread else '?'}: {args.exc_type.__name__}: {args.exc_value}")

    threading.excepthook = hook
    try:

        def call() -> object:
            result = target.call(value)
            if target.check is not None:
                target.check(result)
            return result

        status, result = _call_with_timeout(call, timeout)
    finally:
        threading.excepthook = old_hook
    if status == "hang":
        return Outcome(target.label, label, "hang", f"no return within {timeout:g} s")
    if died:
        return Outcome(target.label, label, "thread died", "; ".join(died))
    if status == "ok":
        return Outcome(target.label, label, "ok")
    exc = result
    if isinstance(exc, ImportError) and target.label.startswith(("prometheus.", "dask.")):
        return Outcome(target.label, label, "skipped", str(exc))
    if isinstance(exc, hivemem.HivememError):
        return Outcome(target.label, label, "refused", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, target.documented):
        return Outcome(target.label, label, "documented", f"{type(exc).__name__}: {exc}")
    return Outcome(target.label, label, "escaped", f"{type(exc).__name__}: {exc}")


def _pairs(labels: list[str]) -> list[tuple[Target, str, object]]:
    by_label = {t.label: t for t in _targets()}
    return [(by_label[label], value_label, value) for label in labels for value_label, value in ODD]


def child_main(labels: list[str], start: int) -> None:
    """In a fresh interpreter: run the calls from index *start*, one JSON line each; stop at a hang.

    A hung call cannot be stopped from inside the process (and can hold locks the next calls
    need), so the child exits at the first one and the parent starts a new child after it.
    """
    import json
    import logging
    import sys
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    for i, (target, value_label, value) in enumerate(_pairs(labels)[start:], start):
        outcome = run_one(target, value_label, value)
        sys.stdout.write(json.dumps({"i": i, **outcome.__dict__}) + "\n")
        sys.stdout.flush()
        if outcome.kind == "hang":
            os._exit(3)
    _clean_tmp_dirs()


def run_all(labels: list[str] | None = None) -> list[Outcome]:
    """Every (target, odd value) call, in fresh interpreters; the outcomes (the benchmark counts them)."""
    import json
    import subprocess
    import sys

    labels = TARGET_LABELS if labels is None else labels
    total = len(labels) * len(ODD)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.path.join(root, "src") + os.pathsep + root}
    outcomes: list[Outcome] = []
    scratch = tempfile.mkdtemp(prefix="hivemem-fuzz-cwd-")  # relative paths given as odd values land here
    while len(outcomes) < total:
        start = len(outcomes)
        code = f"from tests.argument_fuzz import child_main; child_main({labels!r}, {start})"
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            cwd=scratch,
            timeout=CALL_TIMEOUT * 3 + 10 * (total - start),
        )
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                if row.pop("i") == len(outcomes):
                    outcomes.append(Outcome(**row))
        if len(outcomes) == start:  # the child died inside a call: that call crashed the process
            target, value_label, _ = _pairs(labels)[start]
            tail = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
            outcomes.append(Outcome(target.label, value_label, "crash", tail[0]))
    import shutil

    shutil.rmtree(scratch, ignore_errors=True)
    return outcomes


def _clean_tmp_dirs() -> None:
    import shutil

    for path in _TMP:
        shutil.rmtree(path, ignore_errors=True)


TARGET_LABELS = [t.label for t in _targets()]
#: Outcomes that keep the promise: it worked, it refused with a hivemem error, the optional
#: package is not installed, or the exception is the documented one (a missing module).
ACCEPTABLE = ("ok", "refused", "skipped", "documented")
