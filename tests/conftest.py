from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import pytest

import hivemem
from hivemem.testing import FakeReader

# A shell that starts a command in the background without job control (`cmd &` in a script, nohup)
# makes it ignore SIGINT, and a Python that inherits SIG_IGN keeps it instead of raising
# KeyboardInterrupt. The interrupt tests send real SIGINTs to this process and its children: give the
# session Python's own handler, which the children then start with too.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def run_python(code: str, *, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    """Run *code* in a fresh interpreter (real RSS tests must not share our heap); return stdout."""
    # glibc tunables left in our environment (Dask's Nanny sets MALLOC_TRIM_THRESHOLD_, for one)
    # would change what the real-RSS tests measure: children start from glibc's defaults.
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    full_env["PYTHONPATH"] = SRC + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def wait_until(cond: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll *cond* every 5 ms until it is true (True) or *timeout* seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return False


@pytest.fixture
def reader() -> FakeReader:
    return FakeReader(rss="500MB")


@pytest.fixture
def registry() -> hivemem.Registry:
    return hivemem.Registry(builtins=False, entry_points=False)


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; Linux only")


def run_strategy(strategy: hivemem.Strategy, level: object) -> hivemem.StepResult:
    """One optimize pass at *level* with *strategy* alone registered (a fake 100 MB reader): its step."""
    registry = hivemem.Registry(builtins=False, entry_points=False)
    registry.register(strategy)
    report = hivemem.MemoryGovernor(reader=FakeReader("100MB"), registry=registry).optimize(
        aggressiveness=level
    )
    return report.step(strategy.name)
