"""The pytest plugin's cost and accuracy, with pytest-memray's ``limit_memory`` in the same run.

Run: ``.venv/bin/python benchmarks/bench_pytest_plugin.py [--rounds 15] [--only PARTS]``
(pytest-memray comes from ``pip install -e .[bench]``; without it that row says so). Prints
tables and, last, the results as JSON; saves ``benchmarks/results/pytest_plugin.json``
(``--only`` replaces just those parts of the saved file). The parts:

``overhead``  A generated suite of 100 tests, each building 20k small dicts, runs in a
    fresh ``pytest`` process per configuration:

    ``baseline``  ``-p no:hivemem``: hivemem's plugin not loaded at all
    ``unused``    the plugin loaded (as installed), no marker, option or fixture
    ``rss``       ``--memory-limit=1GiB``: every test measured against an rss ceiling
    ``python``    ``pytestmark = memory_limit("1 GiB", kind="python")`` (tracemalloc; for information)
    ``memray``    ``pytestmark = pytest.mark.limit_memory("1 GB")`` with pytest-memray

    pytest-memray is disabled (``-p no:memray``) everywhere but its own row.
``variants``  The rss ceiling (``--memory-limit=1GiB``) against ``-p no:hivemem`` on
    suites of other shapes: many trivial tests, tests with 1 MiB function fixtures,
    tests that allocate and free 1-24 MiB, trivial tests in a process whose
    conftest built a large fragmented heap (a cost that grew with the heap would
    show there), and the trivial and dict suites under pytest-xdist ``-n 2``.
``real``      The same two configurations and ``unused`` on real third-party
    suites (``benchmarks/realsuites.py``: toolz 1.2.0, more-itertools 11.2.1,
    fetched from PyPI into ``benchmarks/.cache`` on first use).
``components`` Where the per-test cost goes, each part the best of many tries in
    one process (see :data:`COMPONENTS`), and the in-situ per-test cost.
``instructions`` User-space instructions per trivial test, plain and rss, counted by
    valgrind's callgrind where it is installed: a figure the shared machine's load cannot move.
``accuracy``  One session of tests that each allocate N MiB (a bytearray touched
    page by page) and free it, N from 1 to 500 MiB in ascending and then
    descending order, with ``--hivemem-report``; the rss-mode peak of each test
    must be N MiB +- 1 MiB.

Configurations run interleaved, ``--rounds`` times, because the machine is shared:
each figure is the **minimum** and the **median** over rounds of the session time
(collection plus running, not interpreter start-up, timed by a small plugin loaded
in every configuration), of the whole process's wall time, and of its CPU time
(user + system of the pytest process and the children it waited for, from
``os.wait4``: steadier than wall time when other jobs share the cores). Overhead is
relative to ``baseline``. Children run with bytecode cached (in the work
directory, ``PYTHONPYCACHEPREFIX``) as installed packages are, even where the
environment sets ``PYTHONDONTWRITEBYTECODE``; one untimed warm-up run per
configuration fills the cache. ``--src DIR`` runs the children against another
copy of hivemem's ``src``; ``--compare-src DIR`` adds an ``rss-compare`` configuration
running the ceiling with that copy (an older commit, say), interleaved with the others,
for a before/after comparison under the same load.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

MiB = 2**20
N_TESTS = 100
N_DICTS = 20_000

SUITE = """
import pytest
{mark}

def build():
    return [{{"id": i, "name": "x", "value": i * 2}} for i in range({n_dicts})]


@pytest.mark.parametrize("i", range({n_tests}))
def test_dicts(i):
    rows = build()
    assert len(rows) == {n_dicts}
"""

CONFIGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "baseline": ("", ("-p", "no:hivemem")),
    "unused": ("", ()),
    "rss": ("", ("--memory-limit=1GiB",)),
    "python": ('pytestmark = pytest.mark.memory_limit("1 GiB", kind="python")', ()),
    "memray": ('pytestmark = pytest.mark.limit_memory("1 GB")', ("-p", "no:hivemem")),
}

SLOW = ("python",)  # tracemalloc makes this row ~20x slower: timed in fewer rounds

ACCURACY_MIB = [1, 2, 3, 4, 5, 8, 10, 16, 20, 32, 50, 64, 100, 128, 200, 256, 300, 400, 500]

ACCURACY_SUITE = """
import pytest

MiB = 2**20
SIZES = {sizes!r}


def touch(nbytes):
    buf = bytearray(nbytes)
    buf[::4096] = b"x" * len(range(0, nbytes, 4096))
    return buf


@pytest.mark.parametrize("n", SIZES, ids=[f"{{i:02d}}_{{n}}MiB" for i, n in enumerate(SIZES)])
def test_alloc(n):
    buf = touch(n * MiB)
    del buf
"""

PYTEST_FLAGS = ("-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:xdist")


PYCACHE = {"dir": "", "src": os.path.join(ROOT, "src"), "compare": ""}


def _env(base: dict[str, str] | None = None, src: str = "") -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = (src or PYCACHE["src"]) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTEST_ADDOPTS", None)
    # Users run with cached bytecode. This environment sets PYTHONDONTWRITEBYTECODE, which
    # would make every child compile hivemem (an editable install) from source; cache the
    # bytecode in the work directory instead, for every configuration alike.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if PYCACHE["dir"]:
        env["PYTHONPYCACHEPREFIX"] = PYCACHE["dir"]
        env["PYTHONPATH"] = os.path.dirname(PYCACHE["dir"]) + os.pathsep + env["PYTHONPATH"]
    return env


def have_memray() -> bool:
    try:
        import pytest_memray  # noqa: F401
    except ImportError:
        return False
    return True


TIMER_PLUGIN = """
import time

_t0 = [0.0]


def pytest_sessionstart(session):
    _t0[0] = time.perf_counter()


def pytest_sessionfinish(session):
    print("\\nBENCH_SESSION_SECONDS", time.perf_counter() - _t0[0])
"""


class Run:
    """One timed pytest process: session seconds (timer plugin), wall, CPU seconds, minor faults."""

    __slots__ = ("cpu", "minflt", "session", "tail", "wall")

    def __init__(self, session: float, wall: float, cpu: float, minflt: int, tail: str) -> None:
        self.session, self.wall, self.cpu, self.minflt, self.tail = session, wall, cpu, minflt, tail


def run_command(cmd: list[str], env: dict[str, str], cwd: str | None = None) -> Run:
    """Run *cmd* (a pytest command loading the timer plugin) and time it.

    The timer plugin (loaded in every configuration alike) times the session from
    ``pytest_sessionstart`` to ``pytest_sessionfinish`` with ``perf_counter``: pytest's
    own "in 0.50s" has only 10 ms resolution. CPU time and minor page faults are the
    child's own (and its waited-for children's, such as xdist workers), from ``os.wait4``.
    """
    with tempfile.TemporaryFile("w+") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise RuntimeError(f"pytest failed: {' '.join(cmd)}\n{text[-3000:]}")
    m = re.search(r"BENCH_SESSION_SECONDS ([0-9.e-]+)", text)
    if m is None:
        raise RuntimeError(f"no session time in {text[-1000:]!r}")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    tail = next((line for line in reversed(lines) if "passed" in line or "failed" in line), lines[-1])
    cpu = usage.ru_utime + usage.ru_stime
    return Run(float(m.group(1)), wall, cpu, usage.ru_minflt, tail)


def run_suite(
    directory: str,
    args: tuple[str, ...],
    flags: tuple[str, ...] = PYTEST_FLAGS,
    memray: bool = False,
    src: str = "",
) -> Run:
    """Run pytest on the generated suite in *directory* (timer plugin on, pytest-memray off unless asked)."""
    cmd = [sys.executable, "-m", "pytest", *flags, "-p", "_hivemem_bench_timer", *args]
    if not memray:
        cmd += ["-p", "no:memray"]
    cmd += ["-c", os.devnull, "--rootdir", directory, directory]
    return run_command(cmd, _env(src=src))


def _stats(runs: dict[str, list[Run]], base: str) -> dict[str, dict[str, object]]:
    """Min and median of each figure per configuration, and overheads relative to *base*."""
    out: dict[str, dict[str, object]] = {}
    b = runs[base]
    b_s = (min(r.session for r in b), statistics.median(r.session for r in b))
    b_w = (min(r.wall for r in b), statistics.median(r.wall for r in b))
    b_c = (min(r.cpu for r in b), statistics.median(r.cpu for r in b))
    for name, rs in runs.items():
        s_ = (min(r.session for r in rs), statistics.median(r.session for r in rs))
        w = (min(r.wall for r in rs), statistics.median(r.wall for r in rs))
        c = (min(r.cpu for r in rs), statistics.median(r.cpu for r in rs))
        out[name] = {
            "rounds": len(rs),
            "session_seconds_min": s_[0],
            "session_seconds_median": s_[1],
            "wall_seconds_min": w[0],
            "wall_seconds_median": w[1],
            "cpu_seconds_min": c[0],
            "cpu_seconds_median": c[1],
            "minor_faults_median": statistics.median(r.minflt for r in rs),
            "session_ratio_min": s_[0] / b_s[0],
            "session_ratio_median": s_[1] / b_s[1],
            "wall_ratio_min": w[0] / b_w[0],
            "wall_ratio_median": w[1] / b_w[1],
            "cpu_ratio_min": c[0] / b_c[0],
            "cpu_ratio_median": c[1] / b_c[1],
            "session_overhead_pct_min": 100 * (s_[0] / b_s[0] - 1),
            "session_overhead_pct_median": 100 * (s_[1] / b_s[1] - 1),
            "wall_overhead_pct_min": 100 * (w[0] / b_w[0] - 1),
            "wall_overhead_pct_median": 100 * (w[1] / b_w[1] - 1),
            "cpu_overhead_pct_min": 100 * (c[0] / b_c[0] - 1),
            "cpu_overhead_pct_median": 100 * (c[1] / b_c[1] - 1),
            "session_seconds_all": [r.session for r in rs],
            "cpu_seconds_all": [r.cpu for r in rs],
            "tests": rs[-1].tail,
        }
    return out


def interleaved(
    configs: dict[str, Callable[[], Run]],
    rounds: int,
    label: str,
    skip: Callable[[str, int], bool] | None = None,
) -> dict[str, list[Run]]:
    """Run every configuration once untimed, then *rounds* times, alternating the order each round."""
    for run in configs.values():  # warm the page cache and the .pyc files
        run()
    runs: dict[str, list[Run]] = {name: [] for name in configs}
    for r in range(rounds):
        order = list(configs) if r % 2 == 0 else list(reversed(configs))
        done = []
        for name in order:
            if skip is not None and skip(name, r):
                continue
            runs[name].append(configs[name]())
            done.append(f"{name} {runs[name][-1].session:.3f}s/{runs[name][-1].cpu:.3f}cpu")
        print(f"{label} round {r + 1}/{rounds}: {', '.join(done)}", flush=True)
    return runs


def overhead(rounds: int, workdir: str, slow_rounds: int) -> dict[str, object]:
    configs = dict(CONFIGS)
    memray = have_memray()
    if not memray:
        del configs["memray"]
    dirs = {}
    for name, (mark, _) in configs.items():
        d = os.path.join(workdir, f"suite_{name}")
        os.makedirs(d)
        with open(os.path.join(d, "test_suite.py"), "w") as f:
            f.write(SUITE.format(mark=mark, n_tests=N_TESTS, n_dicts=N_DICTS))
        dirs[name] = d
    timed: dict[str, Callable[[], Run]] = {
        name: functools.partial(run_suite, dirs[name], configs[name][1], memray=name == "memray")
        for name in configs
    }
    if PYCACHE["compare"]:
        timed["rss-compare"] = functools.partial(
            run_suite, dirs["rss"], configs["rss"][1], src=PYCACHE["compare"]
        )
    runs = interleaved(
        timed,
        rounds,
        "overhead",
        skip=lambda name, r: name in SLOW and r >= max(slow_rounds, 1),
    )
    out: dict[str, object] = dict(_stats(runs, "baseline"))
    if not memray:
        out["memray"] = {"unavailable": "pytest-memray is not installed (pip install -e .[bench])"}
    return out


TRIVIAL = """
import pytest


@pytest.mark.parametrize("i", range({n}))
def test_trivial(i):
    assert i >= 0
"""

FIXTURES = """
import pytest


@pytest.fixture
def rows():
    return [bytes(4000) for _ in range(256)]  # 1 MiB in 4 KiB blocks from glibc's heap


@pytest.mark.parametrize("i", range(300))
def test_with_fixture(rows, i):
    assert len(rows[i % 256]) == 4000
"""

BIG = """
import pytest

MiB = 2**20
_raise = bytearray(31 * MiB)  # freeing it raises glibc's mmap threshold: blocks up to 31 MiB come
del _raise  # from its heap, and it keeps them when they are freed


@pytest.mark.parametrize("mib", [1, 24, 2, 16, 4, 8, 3, 12, 6, 20] * 4)
def test_alloc(mib):
    buf = bytearray(mib * MiB)
    buf[::4096] = b"x" * len(range(0, len(buf), 4096))
    rows = [str(i) * 40 for i in range(mib * 4000)]  # about 100 bytes each, from pymalloc and glibc
    assert len(rows) == mib * 4000
    del buf, rows
"""

HEAP_CONFTEST = """
# A large parent heap: 300,000 blocks of 600 bytes from glibc, every other one freed,
# so glibc holds 150,000 free chunks (about 90 MiB) among 90 MiB of live ones.
_blocks = [bytearray(600) for _ in range(300_000)]
KEEP = _blocks[::2]
del _blocks
"""

VARIANTS: dict[str, tuple[str, dict[str, str], tuple[str, ...]]] = {
    "trivial": (
        "2000 tests that each assert one comparison",
        {"test_trivial.py": TRIVIAL.format(n=2000)},
        (),
    ),
    "fixtures": (
        "300 tests, each with a function-scoped fixture of 1 MiB in 4 KiB blocks",
        {"test_fixtures.py": FIXTURES},
        (),
    ),
    "big": (
        "40 tests that each allocate and free 1-24 MiB (a touched bytearray and strings)",
        {"test_big.py": BIG},
        (),
    ),
    "large-heap": (
        "1000 trivial tests; conftest.py built a fragmented 180 MiB heap with 150,000 free chunks",
        {"conftest.py": HEAP_CONFTEST, "test_trivial.py": TRIVIAL.format(n=1000)},
        (),
    ),
    "trivial-xdist": (
        "the 2000 trivial tests under pytest-xdist -n 2",
        {"test_trivial.py": TRIVIAL.format(n=2000)},
        ("-n", "2"),
    ),
    "dicts-xdist": (
        "the 100-test dict suite under pytest-xdist -n 2",
        {"test_suite.py": SUITE.format(mark="", n_tests=N_TESTS, n_dicts=N_DICTS)},
        ("-n", "2"),
    ),
}

XDIST_FLAGS = PYTEST_FLAGS[:-2]  # without "-p no:xdist"


def variants(rounds: int, workdir: str, names: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in names:
        what, files, extra = VARIANTS[name]
        d = os.path.join(workdir, f"variant_{name}")
        os.makedirs(d)
        for fname, text in files.items():
            with open(os.path.join(d, fname), "w") as f:
                f.write(text)
        flags = XDIST_FLAGS if "-n" in extra else PYTEST_FLAGS
        configs: dict[str, Callable[[], Run]] = {
            "plain": functools.partial(run_suite, d, ("-p", "no:hivemem", *extra), flags),
            "rss": functools.partial(run_suite, d, ("--memory-limit=1GiB", *extra), flags),
        }
        if PYCACHE["compare"]:
            configs["rss-compare"] = functools.partial(
                run_suite, d, ("--memory-limit=1GiB", *extra), flags, src=PYCACHE["compare"]
            )
        runs = interleaved(configs, rounds, name)
        stats = _stats(runs, "plain")
        out[name] = {"suite": what, "pytest_args": list(extra), **stats}
        _print_ratio(name, stats)
    return out


def real_suites(rounds: dict[str, int], workdir: str, with_memray: bool = False) -> dict[str, object]:
    """The ceiling on real third-party suites: plain, plugin unused, --memory-limit on every test."""
    import realsuites

    out: dict[str, object] = {}
    for name, n in rounds.items():
        suite = realsuites.SUITES[name]
        env = _env(suite.env())
        env["PYTHONPATH"] += os.pathsep + workdir  # the timer plugin

        which = [("plain", ("-p", "no:hivemem", "-p", "no:memray")), ("unused", ("-p", "no:memray"))]
        which.append(("rss", ("-p", "no:memray", "--memory-limit=1GiB")))
        if with_memray and have_memray():  # every test traced by pytest-memray, for comparison
            which.append(("memray", ("-p", "no:hivemem", "--memray")))
        configs: dict[str, Callable[[], Run]] = {
            name: functools.partial(
                run_command, suite.command("-p", "_hivemem_bench_timer", *args), env, str(suite.root)
            )
            for name, args in which
        }
        if PYCACHE["compare"]:
            other = _env(suite.env(), src=PYCACHE["compare"])
            other["PYTHONPATH"] += os.pathsep + workdir
            configs["rss-compare"] = functools.partial(
                run_command,
                suite.command("-p", "_hivemem_bench_timer", "-p", "no:memray", "--memory-limit=1GiB"),
                other,
                str(suite.root),
            )
        runs = interleaved(configs, n, name)
        stats = _stats(runs, "plain")
        out[name] = {"suite": f"{suite.name} {suite.version}", **stats}
        _print_ratio(name, stats)
    return out


def _print_ratio(name: str, stats: dict[str, dict[str, object]]) -> None:
    for config, r in stats.items():
        print(
            f"  {name:<14} {config:<7} "
            f"session {r['session_seconds_min']:.3f}/{r['session_seconds_median']:.3f}s "
            f"({r['session_ratio_min']:.3f}x/{r['session_ratio_median']:.3f}x)  "
            f"cpu {r['cpu_seconds_min']:.3f}/{r['cpu_seconds_median']:.3f}s "
            f"({r['cpu_ratio_min']:.3f}x/{r['cpu_ratio_median']:.3f}x)  {r['tests']}",
            flush=True,
        )


PLUGIN_IMPORT = r"""
import sys, time
import pytest
t = time.perf_counter()
import hivemem.pytest_plugin
dt = time.perf_counter() - t
print(dt, sorted(m for m in sys.modules if m.startswith("hivemem")))
"""

ACTIVATION = r"""
import time
import pytest
import hivemem.pytest_plugin
t = time.perf_counter()
import hivemem._pytest.runner, hivemem.testing
from hivemem._pytest import meter as _pytest_meter
_pytest_meter.rss_clock()
print(time.perf_counter() - t)
"""

SCAN = r"""
import sys, time
import pytest

class Scan:
    def pytest_collection_modifyitems(self, session, config, items):
        from hivemem import pytest_plugin
        best = float("inf")
        for _ in range(50):
            t = time.perf_counter()
            pytest_plugin.pytest_collection_modifyitems(config, items)
            best = min(best, time.perf_counter() - t)
        assert not config.stash[pytest_plugin.ACTIVE]
        print("SCAN", best, len(items))

pytest.main(["--collect-only", "-q", "-p", "no:memray", "-p", "no:cacheprovider", "-c", sys.argv[2],
             "--rootdir", sys.argv[1], sys.argv[1]], plugins=[Scan()])
"""

COMPONENTS = r"""
import json, os, resource, time

import pytest

N = 20000


def best(fn, n=N, tries=7):
    low = float("inf")
    for _ in range(tries):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        low = min(low, (time.perf_counter() - t) / n)
    return low * 1e6


class Item:  # what the runner needs from a pytest item
    def __init__(self, parent):
        self.stash = pytest.Stash()
        self.nodeid = "x"
        self.parent = parent

    def iter_markers(self):
        return iter(())


class Call:
    def __init__(self, when):
        self.when = when


class Report:
    def __init__(self, when):
        self.when = when
        self.outcome = "passed"
        self.sections = []
        self.nodeid = "x"
        self.duration = 0.001


class Outcome:
    def __init__(self, report):
        self.report = report

    def get_result(self):
        return self.report


def runner_per_test(runner, n=2000, tries=7):
    # Every runner hook a passing test goes through, called as pluggy would, without pluggy.
    low = float("inf")
    for _ in range(tries):
        parent = object()
        items = [Item(parent) for _ in range(n)]
        reports = [(Report("setup"), Report("call"), Report("teardown")) for _ in range(n)]
        t = time.perf_counter()
        for item, reps in zip(items, reports):
            runner.pytest_runtest_setup(item)
            for rep in reps[:1]:
                gen = runner.pytest_runtest_makereport(item, Call(rep.when))
                next(gen)
                try:
                    gen.send(Outcome(rep))
                except StopIteration:
                    pass
                if runner.keep_records:
                    runner.record(rep)
            gen = runner.pytest_runtest_call(item)
            next(gen)
            try:
                next(gen)
            except StopIteration:
                pass
            for rep in reps[1:]:
                gen = runner.pytest_runtest_makereport(item, Call(rep.when))
                next(gen)
                try:
                    gen.send(Outcome(rep))
                except StopIteration:
                    pass
                if runner.keep_records:
                    runner.record(rep)
        low = min(low, (time.perf_counter() - t) / n)
    return low * 1e6


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    # After the suite ran with --memory-limit: the heap and the clock are as a real session leaves them.
    from hivemem._measure import usage as _measure
    from hivemem._measure import native as _native
    from hivemem._measure import procfs
    from hivemem._pytest import meter as m

    clock = m.rss_clock()
    runner = session.config.pluginmanager.get_plugin("hivemem-runner")
    out = {"trims_in_session": clock.trims}
    out["reset: write 5 to /proc/self/clear_refs (kept fd)"] = best(_measure.reset_peak_kept_fd)
    out["baseline: pread /proc/self/statm (kept fd)"] = best(_measure.rss)
    out["peak: pread /proc/self/status, parse VmHWM (kept fd)"] = best(procfs.read_hwm)
    out["checkpoint: statm pread and the gate, no trim"] = best(clock.checkpoint)
    out["runner hooks per passing test, pluggy not counted"] = runner_per_test(runner)
    out["not used: getrusage(RUSAGE_THREAD).ru_maxrss"] = best(
        lambda: resource.getrusage(resource.RUSAGE_THREAD).ru_maxrss
    )
    out["not used: os.getpid() (was called per reset and per read)"] = best(os.getpid)
    mallinfo = _native.mallinfo2_function()
    if mallinfo is not None:
        out["not used: mallinfo2() (the old per-test gate)"] = best(mallinfo, n=200)
    out["when the gate fires: malloc_trim(0)"] = best(lambda: _native.malloc_trim(0), n=20)
    print("\nBENCH_COMPONENTS " + json.dumps(out))
"""


def _py(code: str, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=_env(), check=True
    ).stdout


def components(workdir: str, variants_out: dict[str, object]) -> dict[str, object]:
    """Where the per-test cost goes: each part the best of many tries, inside a session that just ran."""
    with open(os.path.join(workdir, "_hivemem_bench_components.py"), "w") as f:
        f.write(COMPONENTS)
    d = os.path.join(workdir, "components")
    os.makedirs(d)
    with open(os.path.join(d, "test_suite.py"), "w") as f:
        f.write(SUITE.format(mark="", n_tests=N_TESTS, n_dicts=N_DICTS))
    out: dict[str, object] = {}
    for label, directory in (("after the 100-test dict suite", d),):
        cmd = [sys.executable, "-m", "pytest", *PYTEST_FLAGS, "-p", "_hivemem_bench_timer"]
        cmd += ["-p", "_hivemem_bench_components", "--memory-limit=1GiB", "-s"]
        cmd += ["-c", os.devnull, "--rootdir", directory, directory]
        text = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=True).stdout
        line = next(x for x in text.splitlines() if x.startswith("BENCH_COMPONENTS "))
        out[label] = json.loads(line.split(" ", 1)[1])
    imports, activations = [], []
    loaded = ""
    for _ in range(7):
        res = _py(PLUGIN_IMPORT).split(maxsplit=1)
        imports.append(float(res[0]))
        loaded = res[1].strip()
        activations.append(float(_py(ACTIVATION)))
    scan_line = next(line for line in _py(SCAN, d, os.devnull).splitlines() if line.startswith("SCAN"))
    out["collection scan seconds (best of 50), unused plugin, 100 tests"] = float(scan_line.split()[1])
    out["plugin import seconds (best of 7)"] = min(imports)
    out["modules loaded by the plugin import"] = loaded
    out["activation seconds (best of 7): import the runner, open the clock"] = min(activations)
    trivial = variants_out.get("trivial")
    if isinstance(trivial, dict):
        plain, rss = trivial["plain"], trivial["rss"]
        n = 2000
        out["in situ: CPU per test, rss minus plain, trivial suite (min over rounds)"] = (
            1e6 * (rss["cpu_seconds_min"] - plain["cpu_seconds_min"]) / n
        )
        out["in situ: CPU per test, rss minus plain, trivial suite (median over rounds)"] = (
            1e6 * (rss["cpu_seconds_median"] - plain["cpu_seconds_median"]) / n
        )
    return out


def accuracy(workdir: str) -> dict[str, object]:
    d = os.path.join(workdir, "accuracy")
    os.makedirs(d)
    sizes = ACCURACY_MIB + list(reversed(ACCURACY_MIB))
    with open(os.path.join(d, "test_accuracy.py"), "w") as f:
        f.write(ACCURACY_SUITE.format(sizes=sizes))
    report = os.path.join(d, "report.json")
    run_suite(d, (f"--hivemem-report={report}",))  # one session, both orders
    with open(report) as f:
        doc = json.load(f)
    tests = sorted(doc["tests"], key=lambda t: int(t["nodeid"].rsplit("[", 1)[1].split("_")[0]))
    rows = []
    for idx, (n, t) in enumerate(zip(sizes, tests, strict=True)):
        assert t["nodeid"].endswith(f"_{n}MiB]"), t["nodeid"]
        err_mib = (t["peak"] - n * MiB) / MiB
        rows.append(
            {
                "mib": n,
                "order": "ascending" if idx < len(ACCURACY_MIB) else "descending",
                "peak_bytes": t["peak"],
                "error_mib": round(err_mib, 4),
            }
        )
    worst = max(abs(float(r["error_mib"])) for r in rows)  # type: ignore[arg-type]
    return {
        "rows": rows,
        "worst_abs_error_mib": worst,
        "within_1_mib": worst <= 1.0,
        "method": tests[0]["method"],
    }


def instructions(workdir: str) -> dict[str, object]:
    """Instructions per trivial test, plain and with the rss ceiling, counted by valgrind: no noise.

    Two sessions of 300 and 600 trivial tests per configuration; the difference
    divided by 300 is the per-test cost without start-up and collection. Only
    user-space instructions count: the ``/proc`` reads and writes and page faults
    are the kernel's (see ``components``).
    """
    import shutil

    if shutil.which("valgrind") is None:
        return {"unavailable": "valgrind is not installed"}
    refs: dict[str, dict[int, int]] = {"plain": {}, "rss": {}}
    for n in (300, 600):
        d = os.path.join(workdir, f"instructions_{n}")
        os.makedirs(d)
        with open(os.path.join(d, "test_trivial.py"), "w") as f:
            f.write(TRIVIAL.format(n=n))
        for config, args in (("plain", ("-p", "no:hivemem")), ("rss", ("--memory-limit=1GiB",))):
            run_suite(d, args)  # bytecode cached, as in the timed runs
            cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={os.path.join(d, config + '.cg')}"]
            cmd += [sys.executable, "-m", "pytest", *PYTEST_FLAGS, "-p", "no:memray", *args]
            cmd += ["-c", os.devnull, "--rootdir", d, d]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=True)
            m = re.search(r"I\s+refs:\s+([0-9,]+)", proc.stderr)
            if m is None:
                raise RuntimeError(f"no instruction count from valgrind: {proc.stderr[-1000:]}")
            refs[config][n] = int(m.group(1).replace(",", ""))
            print(f"instructions: {config} {n} tests: {refs[config][n]:,}", flush=True)
    plain = (refs["plain"][600] - refs["plain"][300]) / 300
    rss = (refs["rss"][600] - refs["rss"][300]) / 300
    return {
        "tool": "valgrind --tool=callgrind (user-space instructions)",
        "instructions_per_test_plain": plain,
        "instructions_per_test_rss": rss,
        "rss_extra_per_test": rss - plain,
        "rss_extra_pct_of_plain_per_test": 100 * (rss - plain) / plain,
        "rss_one_time_extra": (refs["rss"][300] - refs["plain"][300]) - 300 * (rss - plain),
        "raw": refs,
    }


PARTS = ("overhead", "variants", "real", "components", "instructions", "accuracy")


def main() -> None:
    import harness

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per configuration")
    parser.add_argument("--slow-rounds", type=int, default=3, help="rounds for the python-kind row")
    parser.add_argument("--variant-rounds", type=int, default=9, help="rounds per suite variant")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="which suite variants")
    parser.add_argument(
        "--real", default="toolz=9,more-itertools=5", help="real suites and their rounds (name=rounds,...)"
    )
    parser.add_argument(
        "--real-memray", action="store_true", help="also time pytest-memray's --memray on the real suites"
    )
    parser.add_argument("--only", default=",".join(PARTS), help=f"parts to run, of {', '.join(PARTS)}")
    parser.add_argument("--src", default=PYCACHE["src"], help="hivemem's src directory for the children")
    parser.add_argument(
        "--compare-src",
        default="",
        help="another copy of src (an older commit): adds an interleaved rss-compare configuration",
    )
    parser.add_argument("--no-save", action="store_true", help="print only")
    ns = parser.parse_args()
    parts = [p for p in ns.only.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}: expected some of {', '.join(PARTS)}")
    PYCACHE["src"] = os.path.abspath(ns.src)
    PYCACHE["compare"] = os.path.abspath(ns.compare_src) if ns.compare_src else ""
    results: dict[str, object] = {}
    saved = os.path.join(HERE, "results", "pytest_plugin.json")
    if not ns.no_save and os.path.exists(saved):
        with open(saved) as f:
            results = json.load(f)  # parts not run this time keep their figures and their date
    stamp = {"machine": harness.machine(), "src": PYCACHE["src"], "compare_src": PYCACHE["compare"]}
    with tempfile.TemporaryDirectory(prefix="hivemem-bench-pytest-") as workdir:
        PYCACHE["dir"] = os.path.join(workdir, "pycache")
        with open(os.path.join(workdir, "_hivemem_bench_timer.py"), "w") as f:
            f.write(TIMER_PLUGIN)
        if "overhead" in parts:
            over = overhead(ns.rounds, workdir, ns.slow_rounds)
            results.update(
                machine=stamp["machine"],
                suite=f"{N_TESTS} tests, each building {N_DICTS} small dicts",
                rounds=ns.rounds,
                statistic="min and median over interleaved rounds (shared machine)",
                overhead=over,
                command=f"benchmarks/bench_pytest_plugin.py --only overhead --rounds {ns.rounds} "
                f"--slow-rounds {ns.slow_rounds}",
            )
            results.pop("noise_free", None)  # replaced by "components"
            _print_overhead(over)
        if "variants" in parts:
            names = [n for n in ns.variants.split(",") if n]
            results["variants"] = {
                **stamp,
                "rounds": ns.variant_rounds,
                "command": f"benchmarks/bench_pytest_plugin.py --only variants --variant-rounds "
                f"{ns.variant_rounds} --variants {','.join(names)}",
                "suites": variants(ns.variant_rounds, workdir, names),
            }
        if "real" in parts:
            rounds = {k: int(v) for k, v in (x.split("=") for x in ns.real.split(",") if x)}
            results["real_suites"] = {
                **stamp,
                "command": f"benchmarks/bench_pytest_plugin.py --only real --real {ns.real}"
                + (" --real-memray" if ns.real_memray else ""),
                "suites": real_suites(rounds, workdir, ns.real_memray),
            }
        if "components" in parts:
            var = results.get("variants")
            suites = var.get("suites", {}) if isinstance(var, dict) else {}
            results["components"] = {
                **stamp,
                "command": "benchmarks/bench_pytest_plugin.py --only components",
                "microseconds": components(workdir, suites),
            }
            _print_components(results["components"]["microseconds"])  # type: ignore[index]
        if "instructions" in parts:
            results["instructions"] = {
                **stamp,
                "command": "benchmarks/bench_pytest_plugin.py --only instructions",
                **instructions(workdir),
            }
            print(json.dumps(results["instructions"], indent=1))
        if "accuracy" in parts:
            acc = accuracy(workdir)
            results["accuracy"] = {
                **acc,
                **stamp,
                "command": "benchmarks/bench_pytest_plugin.py --only accuracy",
            }
            worst = acc["worst_abs_error_mib"]
            print(f"accuracy: worst |peak - N| = {worst:.3f} MiB over N in {ACCURACY_MIB} (both orders)")
    if not ns.no_save:
        print("saved", harness.save("pytest_plugin", results))
    print(json.dumps(results))


def _print_components(comp: dict[str, object]) -> None:
    for key, value in comp.items():
        if isinstance(value, dict):
            print(f"  {key}:")
            for k, v in value.items():
                print(f"    {v:>10.3f}  {k}")
        elif isinstance(value, float):
            print(f"  {value:>12.6f}  {key}")
        else:
            print(f"  {key}: {value}")


def _print_overhead(over: dict[str, object]) -> None:
    print()
    print(
        f"{'config':<10} {'session min':>12} {'median':>8} {'overhead min':>13} {'median':>8} "
        f"{'cpu min':>8} {'median':>8} {'cpu ovh':>8} {'median':>8}"
    )
    for name, row in over.items():
        assert isinstance(row, dict)
        if "unavailable" in row:
            print(f"{name:<10} {row['unavailable']}")
            continue
        print(
            f"{name:<10} {row['session_seconds_min']:>11.3f}s {row['session_seconds_median']:>7.3f}s "
            f"{row['session_overhead_pct_min']:>12.1f}% {row['session_overhead_pct_median']:>7.1f}% "
            f"{row['cpu_seconds_min']:>7.3f}s {row['cpu_seconds_median']:>7.3f}s "
            f"{row['cpu_overhead_pct_min']:>7.1f}% {row['cpu_overhead_pct_median']:>7.1f}%"
        )


if __name__ == "__main__":
    main()
