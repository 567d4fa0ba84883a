"""The governor's real monitor thread: start/stop, context manager, govern(), fork, threads, raise."""

from __future__ import annotations

import os
import threading
import time

import hivemem
from hivemem import CHEAP, MemoryGovernor, Pressure, Registry, StrategyResult
from hivemem.testing import FakeReader

from .conftest import linux_only, run_python, wait_until

MiB = 2**20


class Halves:
    """Frees half the distance to 100 MB each time it runs (a cache that can always give some back)."""

    name, priority, aggressiveness = "halves", 50, CHEAP

    def __init__(self, reader: FakeReader) -> None:
        self.reader = reader
        self.starts: list[float] = []

    def apply(self, ctx: hivemem.StrategyContext) -> StrategyResult:
        self.starts.append(time.monotonic())
        over = self.reader.rss() - 100 * MiB
        self.reader.free(max(over // 2, 0))
        return StrategyResult("halved")


def _gov(reader: FakeReader, registry: Registry, **kw: object) -> MemoryGovernor:
    kw.setdefault("interval", 0.02)
    return MemoryGovernor(reader=reader, registry=registry, limit="1000MB", psi=False, **kw)  # type: ignore[arg-type]


def test_monitor_reacts_within_two_intervals_and_stop_is_prompt(
    reader: FakeReader, registry: Registry
) -> None:
    """Polling at 50 ms: HIGH is acted on within 2 intervals (+100 ms slack); stop() takes < 1 interval."""
    halves = Halves(reader)
    registry.register(halves)
    reader.set("300MB")
    gov = _gov(reader, registry, interval=0.05)
    with gov:
        assert gov.running and any(t.name == "hivemem-governor" for t in threading.enumerate())
        time.sleep(0.12)
        crossed = time.monotonic()
        reader.set("850MB")
        assert wait_until(lambda: halves.starts)
        assert halves.starts[0] - crossed <= 2 * 0.05 + 0.1
        assert wait_until(lambda: gov.level == Pressure.NORMAL)
        t0 = time.monotonic()
    stopped = time.monotonic() - t0
    assert not gov.running and stopped < 0.05
    assert not any(t.name == "hivemem-governor" for t in threading.enumerate())
    kinds = [e.kind for e in gov.events]
    assert kinds[0] == "start" and kinds[-1] == "stop" and "act" in kinds


def test_stop_returns_within_one_interval_even_mid_pass(reader: FakeReader, registry: Registry) -> None:
    """A pass stuck in a slow strategy does not hold stop(): it returns after one interval, False."""
    gate = threading.Event()

    class Slow:
        name, priority, aggressiveness = "slow", 1, CHEAP

        def apply(self, ctx: object) -> None:
            gate.wait(5)

    registry.register(Slow())
    reader.set("850MB")
    gov = _gov(reader, registry, interval=0.1).start()
    assert wait_until(lambda: gov.ticks >= 1)
    time.sleep(0.05)
    t0 = time.monotonic()
    ended = gov.stop()
    took = time.monotonic() - t0
    gate.set()
    assert ended is False and took < 0.1 + 0.05


def test_govern_replaces_the_previous_process_governor(reader: FakeReader, registry: Registry) -> None:
    """hivemem.govern() starts one process-wide governor; a second call stops the first."""
    first = hivemem.govern(0.5, reader=reader, registry=registry, limit="1000MB", psi=False, interval=0.05)
    try:
        assert first.running and first.budget == 500 * MiB
        second = hivemem.govern("400MB", reader=reader, registry=registry, limit="1000MB", psi=False)
        assert second.running and not first.running and second.budget == 400 * MiB
    finally:
        hivemem._governor.active._governed.stop()  # type: ignore[union-attr]


def test_threads_calling_optimize_never_overlap_the_monitor(reader: FakeReader, registry: Registry) -> None:
    """8 threads x optimize() while the monitor acts every 10 ms: never two passes at once; bounded time."""
    state = {"inside": 0, "overlap": 0, "runs": 0}
    lock = threading.Lock()

    class Probe:
        name, priority, aggressiveness = "probe", 10, CHEAP

        def apply(self, ctx: object) -> StrategyResult:
            with lock:
                state["inside"] += 1
                state["runs"] += 1
                if state["inside"] > 1:
                    state["overlap"] += 1
            time.sleep(0.0005)
            reader.set("850MB")  # keep the monitor busy at HIGH
            with lock:
                state["inside"] -= 1
            return StrategyResult("probed")

    registry.register(Probe())
    reader.set("850MB")
    gov = _gov(reader, registry, interval=0.01, cpu_budget=1.0, adaptive=False)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(30):
                gov.optimize()
        except BaseException as exc:
            errors.append(exc)

    t0 = time.monotonic()
    with gov:
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert time.monotonic() - t0 < 30
    assert errors == [] and state["overlap"] == 0
    assert state["runs"] >= 240 and gov.passes + gov.busy >= 1


@linux_only
def test_fork_child_has_no_monitor_by_default_or_a_fresh_one_on_restart() -> None:
    """after_fork='stop': the child has no governor thread; 'restart': it has its own, which ticks."""
    out = run_python(
        """
        import os, threading, time, hivemem
        from hivemem.testing import FakeReader
        reg = hivemem.Registry(builtins=False, entry_points=False)
        for mode in ("stop", "restart"):
            gov = hivemem.MemoryGovernor(reader=FakeReader("100MB"), registry=reg, limit="1GB",
                                         interval=0.02, after_fork=mode, psi="auto").start()
            time.sleep(0.05)
            pid = os.fork()
            if pid == 0:
                names = [t.name for t in threading.enumerate()]
                before = gov.ticks
                time.sleep(0.2)
                ok = (gov.running, "hivemem-governor" in names or gov.running, gov.ticks > before)
                print(mode, ok, flush=True)
                gov.stop()
                os._exit(0)
            os.waitpid(pid, 0)
            print("parent", mode, gov.running, flush=True)
            gov.stop()
        """
    )
    lines = out.split("\n")
    assert "stop (False, False, False)" in lines
    assert "restart (True, True, True)" in lines
    assert lines.count("parent stop True") == 1 and lines.count("parent restart True") == 1


@linux_only
def test_raise_policy_interrupts_a_sleeping_main_thread() -> None:
    """escalation='raise' from the monitor thread: the main thread, asleep, gets MemoryLimitExceeded."""
    out = run_python(
        """
        import time, hivemem
        from hivemem.testing import FakeReader
        reg = hivemem.Registry(builtins=False, entry_points=False)
        gov = hivemem.MemoryGovernor(reader=FakeReader("990MB"), registry=reg, limit="1000MB",
                                     interval=0.02, escalation="raise", psi=False).start()
        t0 = time.monotonic()
        try:
            time.sleep(10)
            print("slept through")
        except hivemem.MemoryLimitExceeded as exc:
            print("raised", exc.usage, exc.limit, round(time.monotonic() - t0, 1) < 2)
        gov.stop()
        import signal
        print("handler restored", signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        """
    )
    assert f"raised {990 * MiB} {1000 * MiB} True" in out
    assert "handler restored True" in out


def test_raise_policy_needs_the_main_thread(reader: FakeReader, registry: Registry) -> None:
    """start() with escalation='raise' off the main thread is refused (it installs a SIGINT bridge)."""
    gov = _gov(reader, registry, escalation="raise")
    errors: list[BaseException] = []

    def start() -> None:
        try:
            gov.start()
        except hivemem.InvalidArgument as exc:
            errors.append(exc)

    t = threading.Thread(target=start)
    t.start()
    t.join()
    assert errors and "main thread" in str(errors[0]) and not gov.running


@linux_only
def test_exit_policy_ends_the_process_with_a_report() -> None:
    """escalation='exit': exit code as configured, Fil-style report on stderr."""
    import os
    import subprocess
    import sys
    import textwrap

    from .conftest import SRC

    code = textwrap.dedent(
        """
        import time, hivemem
        from hivemem.testing import FakeReader
        reg = hivemem.Registry(builtins=False, entry_points=False)
        hivemem.govern(reader=FakeReader("990MB"), registry=reg, limit="1000MB", interval=0.02,
                       escalation="exit", exit_code=3, psi=False)
        time.sleep(10)
        print("survived")
        """
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 3 and "survived" not in proc.stdout
    assert "hivemem: out of memory budget, exiting (escalation='exit')" in proc.stderr
    assert "no strategy is allowed at this level" in proc.stderr


@linux_only
def test_a_pressure_event_wakes_the_monitor_at_once() -> None:
    """A POLLPRI on a trigger descriptor ticks with source 'psi' well before the 10 s poll interval."""
    import socket

    from hivemem._governor.monitor import Monitor
    from hivemem._measure.psi import PsiTrigger

    a, b = socket.socketpair()
    seen: list[tuple[str, float]] = []

    def tick(source: str) -> None:
        seen.append((source, time.monotonic()))
        b.recv(1, socket.MSG_OOB)  # consume it, as the kernel does for a PSI event

    trig = PsiTrigger(os.dup(b.fileno()), "socketpair", "some", 1, 500000)
    mon = Monitor(tick, 10.0, [trig], lambda: None)
    mon.start()
    try:
        time.sleep(0.05)
        sent = time.monotonic()
        a.send(b"!", socket.MSG_OOB)  # out-of-band data raises POLLPRI, like a PSI trigger
        assert wait_until(lambda: seen)
    finally:
        assert mon.stop(1.0)
        a.close()
        b.close()
    assert seen[0][0] == "psi" and seen[0][1] - sent < 0.5
    assert mon.wakeups == {"poll": 0, "psi": 1} and trig.fd == -1  # closed with the monitor
