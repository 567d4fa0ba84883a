"""install_signal_handler(): a signal wakes a worker that runs one pass; the report is kept privately."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import hivemem
from hivemem._governor import signals as _signals
from hivemem.testing import FakeReader

from .conftest import linux_only, run_python

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGUSR2"), reason="needs SIGUSR2 (POSIX)")


class Gate:
    """A strategy that blocks until released and counts its runs, with the thread it ran on."""

    name = "gate"
    priority = 10
    aggressiveness = "cheap"

    def __init__(self, block: bool = False) -> None:
        self.calls = 0
        self.threads: list[int] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not block:
            self.release.set()

    def apply(self, ctx: object) -> hivemem.StrategyResult:
        self.calls += 1
        self.threads.append(threading.get_ident())
        self.started.set()
        assert self.release.wait(10)
        return hivemem.StrategyResult("gated")


def _governor(gate: Gate) -> hivemem.MemoryGovernor:
    registry = hivemem.Registry(builtins=False, entry_points=False)
    registry.register(gate)
    return hivemem.MemoryGovernor(registry=registry, reader=FakeReader(rss="500MB"))


def _wait(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "run"
    monkeypatch.setenv("HIVEMEM_RUNTIME_DIR", str(directory))
    yield directory
    hivemem.uninstall_signal_handler()


def _send(n: int = 1) -> None:
    for _ in range(n):
        os.kill(os.getpid(), signal.SIGUSR2)


def test_signal_runs_one_pass_in_a_worker_thread(runtime: Path) -> None:
    """The pass runs off the main thread; its report lands in a 0600 file in a 0700 directory."""
    gate = Gate()
    path = hivemem.install_signal_handler(signal.SIGUSR2, governor=_governor(gate))
    assert path == str(runtime / f"{os.getpid()}.json")
    _send()
    _wait(lambda: os.path.exists(path))
    assert gate.calls == 1
    assert gate.threads[0] != threading.main_thread().ident
    assert stat.S_IMODE(os.stat(runtime).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    status = _signals.read_status(os.getpid())
    assert status is not None
    assert status["pid"] == os.getpid()
    assert status["trigger"] == "signal"
    assert status["stale"] is False
    assert status["signals"] == {"signal": "SIGUSR2", "received": 1, "passes": 1, "coalesced": 0}
    assert status["report"]["steps"][0]["name"] == "gate"  # type: ignore[index]
    assert status["headline"].startswith("hivemem optimize: RSS 500.0 MiB")  # type: ignore[union-attr]


class Step:
    """A strategy at one level that records that it ran."""

    priority = 10

    def __init__(self, level: str, ran: list[str]) -> None:
        self.name = f"step_{level}"
        self.aggressiveness = level
        self.ran = ran

    def apply(self, ctx: object) -> hivemem.StrategyResult:
        self.ran.append(self.aggressiveness)
        return hivemem.StrategyResult("ran")


@pytest.mark.parametrize(
    ("target", "ceiling", "levels"),
    [
        ("100MB", None, ["cheap", "moderate", "aggressive"]),  # a target missed: climbs to the top
        ("100MB", "moderate", ["cheap", "moderate"]),  # the governor's own ceiling holds
        (None, None, ["cheap", "moderate"]),  # no target: one pass at moderate, as optimize()
    ],
)
def test_signal_pass_climbs_as_optimize_does(
    runtime: Path, target: str | None, ceiling: str | None, levels: list[str]
) -> None:
    """With a target the signal's pass climbs cheap, moderate, aggressive up to the governor's ceiling."""
    ran: list[str] = []
    registry = hivemem.Registry(builtins=False, entry_points=False)
    for level in ("cheap", "moderate", "aggressive"):
        registry.register(Step(level, ran))
    gov = hivemem.MemoryGovernor(
        registry=registry, reader=FakeReader(rss="500MB"), target=target, aggressiveness=ceiling
    )
    path = hivemem.install_signal_handler(signal.SIGUSR2, governor=gov)
    _send()
    _wait(lambda: os.path.exists(path))
    assert sorted(set(ran), key=["cheap", "moderate", "aggressive"].index) == levels
    assert ran == sorted(ran, key=["cheap", "moderate", "aggressive"].index)  # in level order
    by_signal = ran[:]
    ran.clear()
    gov.optimize()
    assert ran == by_signal  # the same steps, in the same order, as optimize()


class SeesLimit:
    """A strategy that records the limit its pass was given."""

    name, priority, aggressiveness = "sees_limit", 10, "cheap"

    def __init__(self) -> None:
        self.limits: list[int | None] = []

    def apply(self, ctx: hivemem.StrategyContext) -> hivemem.StrategyResult:
        self.limits.append(ctx.limit)
        return hivemem.StrategyResult("ran")


def test_signal_pass_works_under_the_governors_limit(runtime: Path) -> None:
    """A governor given limit= passes it to its signal's pass, as optimize() does."""
    step = SeesLimit()
    registry = hivemem.Registry(builtins=False, entry_points=False)
    registry.register(step)
    gov = hivemem.MemoryGovernor(registry=registry, reader=FakeReader(rss="500MB"), limit="700MB")
    assert gov.limit == 700 * 2**20
    path = hivemem.install_signal_handler(signal.SIGUSR2, governor=gov)
    _send()
    _wait(lambda: os.path.exists(path))
    gov.optimize()
    assert step.limits == [700 * 2**20, 700 * 2**20]


def test_signals_during_a_pass_start_no_second_pass(runtime: Path) -> None:
    """Three signals arriving while a pass runs are coalesced: the strategy runs once."""
    gate = Gate(block=True)
    hivemem.install_signal_handler("USR2", governor=_governor(gate))
    _send()
    assert gate.started.wait(10)
    _send(3)
    time.sleep(0.1)  # let the handler run for each of them
    gate.release.set()
    _wait(lambda: _signals.stats()["coalesced"] == 3)
    time.sleep(0.2)  # a wrongly queued second pass would start now
    assert gate.calls == 1
    assert _signals.stats() == {"received": 4, "passes": 1, "coalesced": 3}


def test_signal_while_another_thread_optimizes_starts_nothing(runtime: Path) -> None:
    """A signal during a pass started elsewhere in the process is coalesced into that pass."""
    gate = Gate(block=True)
    gov = _governor(gate)
    hivemem.install_signal_handler(signal.SIGUSR2, governor=gov)
    other = threading.Thread(target=gov.optimize)
    other.start()
    assert gate.started.wait(10)
    _send()
    _wait(lambda: _signals.stats()["coalesced"] == 1)
    gate.release.set()
    other.join(10)
    assert gate.calls == 1
    status = _signals.read_status(os.getpid())
    assert status is not None and status["trigger"] == "optimize"


def test_every_pass_updates_the_status_file(runtime: Path) -> None:
    """After install, a pass run by optimize() (not a signal) also becomes the last report."""
    gate = Gate()
    gov = _governor(gate)
    hivemem.install_signal_handler(governor=gov)
    gov.optimize(target="1MB")
    status = _signals.read_status(os.getpid())
    assert status is not None
    assert status["trigger"] == "optimize"
    assert status["report"]["target"] == 2**20  # type: ignore[index]


def test_uninstall_restores_handler_and_removes_file(runtime: Path) -> None:
    """uninstall puts the previous handler back, stops the worker and deletes the status file."""

    def mine(signum: int, frame: object) -> None:
        pass

    old = signal.signal(signal.SIGUSR2, mine)
    try:
        gate = Gate()
        path = hivemem.install_signal_handler(signal.SIGUSR2, governor=_governor(gate))
        worker = _signals._state.worker
        assert signal.getsignal(signal.SIGUSR2) is _signals._handler
        _send()
        _wait(lambda: os.path.exists(path))
        hivemem.uninstall_signal_handler()
        assert signal.getsignal(signal.SIGUSR2) is mine
        assert not os.path.exists(path)
        assert not worker.is_alive()  # type: ignore[attr-defined]
        assert _signals.read_status(os.getpid()) is None
    finally:
        signal.signal(signal.SIGUSR2, old)


@pytest.mark.parametrize(
    ("sig", "message"),
    [
        (signal.SIGKILL, "cannot be caught"),
        ("SIGNOPE", "unknown signal 'SIGNOPE'"),
        (0, "invalid signal number 0"),
        (1.5, "signal must be a signal number or name"),
    ],
)
def test_bad_signal_changes_nothing(runtime: Path, sig: object, message: str) -> None:
    """A bad signal is refused with a message naming it, and no handler or thread is installed."""
    before = signal.getsignal(signal.SIGUSR2)
    with pytest.raises(hivemem.InvalidArgument, match=message):
        hivemem.install_signal_handler(sig)  # type: ignore[arg-type]
    assert signal.getsignal(signal.SIGUSR2) is before
    assert _signals._state.worker is None


def test_bad_governor_is_refused(runtime: Path) -> None:
    """Something that is not a governor is refused before anything is installed."""
    with pytest.raises(hivemem.InvalidArgument, match=r"governor must be a hivemem\.MemoryGovernor"):
        hivemem.install_signal_handler(governor=object())
    assert _signals._state.worker is None


def test_only_from_the_main_thread(runtime: Path) -> None:
    """Installing from another thread raises Unavailable (Python only handles signals in the main thread)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            hivemem.install_signal_handler()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], hivemem.Unavailable)
    assert "main thread" in str(errors[0])


def test_public_directory_is_refused_without_breaking_the_pass(
    runtime: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A runtime directory readable by others gets no status file; the pass still runs; one warning."""
    runtime.mkdir(mode=0o755)
    os.chmod(runtime, 0o755)
    gate = Gate()
    gov = _governor(gate)
    hivemem.install_signal_handler(governor=gov)
    with caplog.at_level("WARNING", logger="hivemem"):
        gov.optimize()
        gov.optimize()
    assert gate.calls == 2
    assert os.listdir(runtime) == []
    warnings = [r for r in caplog.records if "status file" in r.getMessage()]
    assert len(warnings) == 1 and "mode 755; expected 700" in warnings[0].getMessage()


def test_symlinked_directory_is_refused(tmp_path: Path, runtime: Path) -> None:
    """A symlink planted where the runtime directory goes is not followed."""
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    runtime.symlink_to(target)
    with pytest.raises(hivemem.Unavailable, match="not a directory"):
        _signals._private_dir()


def test_status_of_a_reused_pid_is_stale(runtime: Path) -> None:
    """A status file whose recorded start time differs from the live process's is marked stale."""
    runtime.mkdir(mode=0o700)
    payload = {"pid": os.getpid(), "start_time": -1, "report": {}}
    (runtime / f"{os.getpid()}.json").write_text(json.dumps(payload))
    status = _signals.read_status(os.getpid())
    assert status is not None and status["stale"] is True
    assert _signals.read_status(2**22 + 7) is None


@linux_only
def test_forked_child_answers_its_own_signal(tmp_path: Path) -> None:
    """After fork the child has its own pipe and worker: its signal runs a pass in the child only."""
    out = run_python(
        """
        import json, os, signal, time
        import hivemem
        from hivemem._governor import signals as _signals
        hivemem.install_signal_handler(signal.SIGUSR2)
        pid = os.fork()
        if pid == 0:
            os.kill(os.getpid(), signal.SIGUSR2)
            deadline = time.monotonic() + 20
            while _signals.read_status(os.getpid()) is None and time.monotonic() < deadline:
                time.sleep(0.01)
            status = _signals.read_status(os.getpid())
            ok = status is not None and status["pid"] == os.getpid() and status["trigger"] == "signal"
            os._exit(0 if ok else 5)
        _, code = os.waitpid(pid, 0)
        time.sleep(0.2)
        print(json.dumps([os.waitstatus_to_exitcode(code), _signals.stats()["passes"]]))
        """,
        env={"HIVEMEM_RUNTIME_DIR": str(tmp_path / "run")},
    )
    assert json.loads(out) == [0, 0]


@linux_only
def test_hivemem_status_shows_the_kept_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``hivemem status PID`` of a process sent SIGUSR2 shows that pass's report and the signal counts."""
    import subprocess
    import sys

    from hivemem._cli.main import main

    from .conftest import SRC

    run_dir = tmp_path / "run"
    monkeypatch.setenv("HIVEMEM_RUNTIME_DIR", str(run_dir))
    code = (
        "import hivemem, signal, sys, time; hivemem.install_signal_handler(signal.SIGUSR2); "
        "print('ready', flush=True); time.sleep(60)"
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert main(["status", str(proc.pid)]) == 0
        assert "no optimize report kept" in capsys.readouterr().out
        os.kill(proc.pid, signal.SIGUSR2)
        _wait(lambda: _signals.read_status(proc.pid) is not None)
        assert main(["status", str(proc.pid)]) == 0
        out = capsys.readouterr().out
        assert "last optimize pass, kept by the process (signal," in out
        assert "hivemem optimize: RSS" in out
        assert re.search(r"^    step +level +freed \(RSS\) +what happened$", out, re.M), out
        assert re.search(r"^    gc +moderate +[-+]?[0-9.]+ [KMG]?i?B  collected", out, re.M), out
        assert "signals: 1 received, 1 passes, 0 coalesced" in out
        assert main(["status", str(proc.pid), "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["last_report"]["pid"] == proc.pid
        assert info["last_report"]["stale"] is False
        assert {"gc", "trim"} <= {s["name"] for s in info["last_report"]["report"]["steps"]}
    finally:
        proc.kill()
        proc.communicate()
    assert main(["status", str(proc.pid)]) != 0  # gone: the usual "no process" error, no traceback
