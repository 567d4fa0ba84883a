"""Faults against the engine and the inspection tools: interrupts at every line, concurrent callers, fd 2.

A ``KeyboardInterrupt`` raised at the Nth line event of ``_engine/engine.py`` (for
every N the pass reaches) must leave no lock held: the next ``optimize()``
runs. Concurrent ``fragmentation()`` calls must leave file descriptor 2
where it was and lose nothing another thread writes there; concurrent
``status()``/``top()``/``growth()`` share one heap walk.
"""

from __future__ import annotations

import os
import sys
import textwrap
import threading

import pytest

import hivemem
from hivemem._engine import engine as _engine
from hivemem.testing import FakeReader

from .conftest import linux_only, run_python

ENGINE_FILE = _engine.__file__


@pytest.fixture(autouse=True)
def _reset_engine_locks() -> object:
    """A failing test that left the engine lock held must not hang the tests after it."""
    yield
    if _engine._lock.locked() or _engine._running_here._is_owned():  # type: ignore[attr-defined]
        _engine._after_fork_child()  # resets both in place


class _Frees:
    """A strategy that 'returns' *amount* bytes through the fake reader."""

    aggressiveness = hivemem.CHEAP

    def __init__(self, reader: FakeReader, name: str, amount: str, priority: int) -> None:
        self.reader, self.name, self.amount, self.priority = reader, name, amount, priority

    def apply(self, ctx: hivemem.StrategyContext) -> str:
        self.reader.free(self.amount)
        return f"freed {self.amount}"


class _Raises:
    name, priority, aggressiveness = "raises", 15, hivemem.CHEAP

    def apply(self, ctx: hivemem.StrategyContext) -> None:
        raise RuntimeError("strategy failure")


class _Reenters:
    name, priority, aggressiveness = "reenters", 25, hivemem.CHEAP

    def __init__(self, gov: hivemem.MemoryGovernor) -> None:
        self.gov = gov

    def apply(self, ctx: hivemem.StrategyContext) -> None:
        self.gov.optimize()  # raises ReentrantOptimize, recorded as the step's error


class _Injected(BaseException):
    """Stands in for KeyboardInterrupt where pytest would treat a real one as a user abort."""


class _LineInjector:
    """A tracer counting line events in the engine's frames and raising at the Nth (0: count only)."""

    def __init__(self, at: int, exc: type[BaseException]) -> None:
        self.at, self.exc, self.seen = at, exc, 0

    def _local(self, frame: object, event: str, arg: object) -> object:
        if event == "line":
            self.seen += 1
            if self.seen == self.at:
                raise self.exc(f"injected at engine line event {self.at}")
        return self._local

    def __call__(self, frame: object, event: str, arg: object) -> object:
        if event == "call" and frame.f_code.co_filename == ENGINE_FILE:  # type: ignore[attr-defined]
            return self._local
        return None


def _setup() -> tuple[FakeReader, hivemem.MemoryGovernor]:
    reader = FakeReader(rss="500MB")
    registry = hivemem.Registry(builtins=False, entry_points=False)
    registry.register(_Frees(reader, "a", "10MB", 10))
    registry.register(_Raises())
    registry.register(_Frees(reader, "b", "10MB", 20))
    gov = hivemem.MemoryGovernor(reader=reader, registry=registry, limit="1000MB", target="100MB")
    registry.register(_Reenters(gov))
    return reader, gov


def _blocking_pass(reader: FakeReader, gov: hivemem.MemoryGovernor) -> object:
    """optimize() with callbacks, a listener, a failing and a re-entering strategy, and a missed target."""
    steps: list[object] = []
    return gov.optimize(on_step_start=steps.append, on_step=steps.append)


def _try_pass(reader: FakeReader, gov: hivemem.MemoryGovernor) -> object:
    """The governor's own pass: the engine lock taken without waiting (blocking=False)."""
    reader.set("900MB")  # above the governor's high-water mark: tick() acts
    return gov.tick()


def _dry_pass(reader: FakeReader, gov: hivemem.MemoryGovernor) -> object:
    return gov.optimize(dry_run=True, strategies=["a", "b"])


SCENARIOS = {"blocking": _blocking_pass, "try-lock": _try_pass, "dry-run": _dry_pass}


def _engine_free() -> None:
    """No engine lock is held, by anyone, and a new pass runs to its end in another thread."""
    assert not _engine._lock.locked(), "the engine lock was left held"
    assert not _engine._running_here._is_owned(), "this thread still counts as running a pass"  # type: ignore[attr-defined]
    done: list[object] = []
    _, gov = _setup()
    worker = threading.Thread(target=lambda: done.append(gov.optimize(target="1MB")), daemon=True)
    worker.start()
    worker.join(10)
    assert done and isinstance(done[0], hivemem.OptimizationReport), "a new optimize() did not finish in 10 s"
    # and this thread can run one too (no stale re-entrancy mark)
    assert isinstance(gov.optimize(strategies=["a"]), hivemem.OptimizationReport)


def _count_line_events(scenario: str) -> int:
    reader, gov = _setup()
    listener_calls: list[object] = []
    hivemem.add_listener(listener_calls.append)
    tracer = _LineInjector(0, _Injected)
    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        SCENARIOS[scenario](reader, gov)
    finally:
        sys.settrace(old)
        hivemem.remove_listener(listener_calls.append)
    return tracer.seen


def _inject_everywhere(scenario: str, exc: type[BaseException]) -> int:
    total = _count_line_events(scenario)
    assert total > 20, f"the {scenario} pass reached only {total} engine lines"
    interrupted = 0
    for n in range(1, total + 1):
        reader, gov = _setup()
        calls: list[object] = []
        hivemem.add_listener(calls.append)
        tracer = _LineInjector(n, exc)
        old = sys.gettrace()
        sys.settrace(tracer)
        try:
            SCENARIOS[scenario](reader, gov)
        except exc:
            interrupted += 1
        finally:
            sys.settrace(old)
            hivemem.remove_listener(calls.append)
        _engine_free()
    # Lines inside a strategy's try block are caught and recorded as the step's error; every other
    # injection must have reached the caller.
    assert interrupted >= total // 2, f"{interrupted} of {total} injections reached the caller"
    return total


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_an_interrupt_at_any_engine_line_leaves_no_lock_held(scenario: str) -> None:
    """A BaseException at every line event of _engine/engine.py leaves no lock held; optimize() runs after."""
    _inject_everywhere(scenario, _Injected)


def test_a_keyboard_interrupt_at_any_engine_line_leaves_no_lock_held() -> None:
    """The same with a real KeyboardInterrupt over the blocking pass (pytest sees none of them escape)."""
    _inject_everywhere("blocking", KeyboardInterrupt)


def test_an_interrupted_pass_in_another_thread_does_not_block_this_one() -> None:
    """An interrupt that kills a pass in a worker thread leaves the lock free for the main thread."""
    _, gov = _setup()
    errors: list[BaseException] = []

    def interrupted_pass() -> None:
        sys.settrace(_LineInjector(12, _Injected))
        try:
            gov.optimize()
        except _Injected as exc:
            errors.append(exc)
        finally:
            sys.settrace(None)

    t = threading.Thread(target=interrupted_pass)
    t.start()
    t.join(10)
    assert errors, "the injection was not reached"
    _engine_free()


def test_reentrant_optimize_is_refused_not_deadlocked() -> None:
    """optimize() from inside a strategy is recorded as ReentrantOptimize; the outer pass completes."""
    _, gov = _setup()
    report = gov.optimize()
    errors = {s.name: s.error for s in report.steps}
    assert errors["reenters"] is not None and errors["reenters"].startswith("ReentrantOptimize")
    assert errors["raises"] == "RuntimeError: strategy failure"
    _engine_free()


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"on_step": 5}, "on_step=5"),
        ({"on_step_start": "print"}, "on_step_start='print'"),
        ({"strategies": "a"}, "one string"),
        ({"strategies": [1]}, "1 is not a strategy name"),
        ({"strategies": 7}, "strategies=7"),
        ({"dry_run": 1}, "dry_run"),
    ],
)
def test_optimize_checks_every_argument_before_any_strategy_runs(kwargs: dict[str, object], bad: str) -> None:
    """A bad optimize() argument raises InvalidArgument naming it, and no strategy has run."""
    reader, gov = _setup()
    gov.registry.register(_Frees(reader, "first", "1MB", 1))
    with pytest.raises(hivemem.InvalidArgument, match=bad.replace("(", r"\(").replace("[", r"\[")):
        gov.optimize(**kwargs)  # type: ignore[arg-type]
    assert reader.rss() == 500 * 2**20  # "first" would have freed 1 MB


def test_module_optimize_rejects_a_non_callable_on_step_before_running() -> None:
    """hivemem.optimize(on_step=5) raises at the call, before the first strategy (the docs' promise)."""
    with pytest.raises(hivemem.InvalidArgument, match="on_step=5"):
        hivemem.optimize(on_step=5, on_step_start=lambda name: pytest.fail(f"{name} ran"))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ fd 2


#: For a child that checks fd 2 (here and in ``benchmarks/bench_faults_engine.py``): ident(fd) names
#: the file behind fd; writer(pause) writes numbered lines to fd 2 (recorded in written) until stop
#: is set; fd2_of_child() forks and returns what the child's fd 2 points at.
FD2_KIT = """
import os, threading, time
def ident(fd):
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)
stop = threading.Event()
written = []
def writer(pause=0.0):
    i = 0
    while not stop.is_set():
        os.write(2, b"line %d\\n" % i)
        written.append(i)
        i += 1
        if pause:
            time.sleep(pause)
def fd2_of_child():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, os.readlink("/proc/self/fd/2").encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    target = os.read(r, 4096).decode()
    os.close(r)
    return target
"""


@linux_only
@pytest.mark.parametrize("path", ["memstream", "fd2-fallback"])
def test_concurrent_fragmentation_never_moves_fd2_nor_loses_stderr(path: str) -> None:
    """1,000 fragmentation() calls from 4 threads leave fd 2 alone; other threads' stderr all arrives.

    The fallback (where CPython lacks the FILE * entry point) keeps fd 2 and forked children
    right too, but may drop a line another thread writes during the few ms of the call.
    """
    out = run_python(
        FD2_KIT
        + textwrap.dedent(f"""
        import sys, tempfile
        import hivemem, hivemem._measure.native
        if {path == "fd2-fallback"}:
            hivemem._measure.native._memstream = False  # as if _PyObject_DebugMallocStats were missing
        with tempfile.TemporaryFile() as err:
            os.dup2(err.fileno(), 2)
            before = ident(2)
            def caller():
                for _ in range(250):
                    hivemem.fragmentation()
            w = threading.Thread(target=writer)
            w.start()
            callers = [threading.Thread(target=caller) for _ in range(4)]
            for t in callers: t.start()
            children = []  # children forked in the middle inherit the real stderr
            while any(t.is_alive() for t in callers) and len(children) < 20:
                children.append(fd2_of_child())
            for t in callers: t.join()
            stop.set(); w.join()
            after = ident(2)
            err.seek(0)
            lines = err.read().decode().splitlines()
        got = [int(l.split()[1]) for l in lines if l.startswith("line ")]
        print(before == after, got == written, len(written) > 0,
              len(children) > 0 and not any("memfd" in c for c in children),
              "Small block" not in "".join(lines))
        """)
    )
    fd2_same, lossless, wrote, children_ok, stats_hidden = out.split()
    assert (fd2_same, wrote, children_ok) == ("True", "True", "True"), out
    if path == "memstream":
        assert (lossless, stats_hidden) == ("True", "True"), out


def test_pymalloc_stats_do_not_touch_fd2() -> None:
    """pymalloc_stats() reads CPython's figures without duplicating or replacing fd 2."""
    from hivemem._measure import native as _native

    if _native._stats_private() is _native._MISSING:
        pytest.skip("this CPython has no _PyObject_DebugMallocStats or libc no open_memstream")
    before = os.fstat(2)
    calls: list[tuple[object, ...]] = []
    real_dup2 = os.dup2
    try:
        os.dup2 = lambda *a: calls.append(a) or real_dup2(*a)  # type: ignore[assignment,func-returns-value]
        stats = _native.pymalloc_stats()
    finally:
        os.dup2 = real_dup2
    assert calls == []
    assert stats is not None and stats["allocated"] > 0 and stats["arenas"] >= stats["allocated"]
    assert os.fstat(2).st_ino == before.st_ino


def test_fallback_passes_on_what_other_threads_wrote() -> None:
    """The fd-2 fallback writes back lines another thread sent while fd 2 pointed at the stats file."""
    from hivemem._measure import native as _native

    text = "warning from a thread\nSmall block threshold = 512, in 32 size classes.\n"
    r, w = os.pipe()
    saved = os.dup(2)
    try:
        os.dup2(w, 2)
        rest = _native._pass_on_foreign_lines(text)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(w)
    with os.fdopen(r, "rb") as f:
        assert f.read() == b"warning from a thread\n"
    assert rest.startswith("Small block threshold")
