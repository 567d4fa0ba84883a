"""The pytest plugin's cost and accuracy, with pytest-memray's ``limit_memory`` in the same run.

Run: ``.venv/bin/python benchmarks/bench_pytest_plugin.py [--rounds 9]`` (pytest-memray
comes from ``pip install -e .[bench]``; without it that row says so). Prints a table
and, last, the results as JSON; saves ``benchmarks/results/pytest_plugin.json``.

**Overhead.** A generated suite of 100 tests, each building 20k small dicts, runs
in a fresh ``pytest`` process per configuration:

``baseline``      ``-p no:hivemem``: hivemem's plugin not loaded at all
``unused``        the plugin loaded (as installed), no marker, option or fixture
``rss``           ``pytestmark = pytest.mark.memory_limit("1 GiB")``: every test measured
``python``        the same with ``kind="python"`` (tracemalloc; for information)
``memray``        ``pytestmark = pytest.mark.limit_memory("1 GB")`` with pytest-memray

pytest-memray is disabled (``-p no:memray``) everywhere but its own row. The
configurations run interleaved, ``--rounds`` times, because the machine is
shared: each figure is the **minimum** (and the median) over rounds of the
session time (collection plus running, not interpreter start-up, timed by a
small plugin loaded in every configuration), of the whole process's wall time and of its CPU time
(user + system, less sensitive to other engineers' load). Overhead is
relative to ``baseline``. Children run with bytecode cached (in the work
directory, ``PYTHONPYCACHEPREFIX``) as installed packages are, even where the
environment sets ``PYTHONDONTWRITEBYTECODE``; one untimed warm-up run per
configuration fills the cache.

Two noise-free figures back the timed ones: the import cost of the plugin
module in a fresh interpreter, and the measured per-test cost of the rss-mode
hooks (span open/close plus report), times 100 tests.

**Accuracy.** One session of tests that each allocate N MiB (a bytearray
touched page by page) and free it, N from 1 to 500 MiB in ascending and then
descending order, with ``--hivemem-report``; the rss-mode peak of each test
must be N MiB +- 1 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

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
    "baseline": ("", ("-p", "no:hivemem", "-p", "no:memray")),
    "unused": ("", ("-p", "no:memray")),
    "rss": ('pytestmark = pytest.mark.memory_limit("1 GiB")', ("-p", "no:memray")),
    "python": ('pytestmark = pytest.mark.memory_limit("1 GiB", kind="python")', ("-p", "no:memray")),
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


PYCACHE = {"dir": ""}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "src") + os.pathsep + env.get("PYTHONPATH", "")
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


def run_suite(directory: str, args: tuple[str, ...]) -> tuple[float, float, float, str]:
    """Run pytest in *directory*; return (session seconds from a timer plugin, wall, CPU seconds, tail).

    The timer plugin (loaded in every configuration alike) times the session from
    ``pytest_sessionstart`` to ``pytest_sessionfinish`` with ``perf_counter``: pytest's
    own "in 0.50s" has only 10 ms resolution.
    """
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *PYTEST_FLAGS,
            "-p",
            "_hivemem_bench_timer",
            *args,
            "-c",
            os.devnull,
            "--rootdir",
            directory,
            directory,
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:]
    if proc.returncode != 0:
        raise RuntimeError(f"pytest failed in {directory} {args}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    m = re.search(r"BENCH_SESSION_SECONDS ([0-9.e-]+)", proc.stdout)
    if m is None:
        raise RuntimeError(f"no session time in {proc.stdout[-1000:]!r}")
    return float(m.group(1)), wall, cpu, tail


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
    session: dict[str, list[float]] = {name: [] for name in configs}
    wall: dict[str, list[float]] = {name: [] for name in configs}
    cpu: dict[str, list[float]] = {name: [] for name in configs}
    for name in configs:  # warm the page cache and .pyc files once
        run_suite(dirs[name], configs[name][1])
    for r in range(rounds):
        order = list(configs) if r % 2 == 0 else list(reversed(configs))
        for name in order:
            if name in SLOW and r >= max(slow_rounds, 1):
                continue
            s, w, c, _ = run_suite(dirs[name], configs[name][1])
            session[name].append(s)
            wall[name].append(w)
            cpu[name].append(c)
        ran = ", ".join(f"{n} {session[n][-1]:.3f}s" for n in order if len(session[n]) == r + 1)
        print(f"round {r + 1}/{rounds}: {ran}", flush=True)
    out: dict[str, object] = {}
    base_s_min, base_s_med = min(session["baseline"]), statistics.median(session["baseline"])
    base_w_min, base_w_med = min(wall["baseline"]), statistics.median(wall["baseline"])
    base_c_min = min(cpu["baseline"])
    for name in configs:
        s_min, s_med = min(session[name]), statistics.median(session[name])
        w_min, w_med = min(wall[name]), statistics.median(wall[name])
        out[name] = {
            "rounds": len(session[name]),
            "session_seconds_min": s_min,
            "session_seconds_median": s_med,
            "wall_seconds_min": w_min,
            "wall_seconds_median": w_med,
            "cpu_seconds_min": min(cpu[name]),
            "session_overhead_pct_min": 100 * (s_min / base_s_min - 1),
            "session_overhead_pct_median": 100 * (s_med / base_s_med - 1),
            "wall_overhead_pct_min": 100 * (w_min / base_w_min - 1),
            "wall_overhead_pct_median": 100 * (w_med / base_w_med - 1),
            "cpu_overhead_pct_min": 100 * (min(cpu[name]) / base_c_min - 1),
            "session_seconds_all": session[name],
        }
    if not memray:
        out["memray"] = {"unavailable": "pytest-memray is not installed (pip install -e .[bench])"}
    return out


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
import hivemem._pytest_runner, hivemem.testing
from hivemem import _pytest_meter
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

HOOK_COST = r"""
import time
import pytest

class Item:  # what the runner needs from a pytest item
    def __init__(self):
        self.stash = pytest.Stash()
        self.nodeid = "x"
    def iter_markers(self):
        return iter((MARK,))

class Config:
    def getoption(self, name):
        return None
    def getini(self, name):
        return {"memory_limit": "", "hivemem_top": "0"}[name]

class Call:
    when = "call"

class Report:
    outcome = "passed"
    def __init__(self):
        self.sections = []

MARK = pytest.mark.memory_limit("1 GiB").mark
from hivemem._pytest_runner import Runner

runner = Runner(Config())
N = 2000
best = float("inf")
for _ in range(7):
    items = [Item() for _ in range(N)]
    t = time.perf_counter()
    for item in items:
        runner.pytest_runtest_setup(item)
        gen = runner.pytest_runtest_call(item)
        next(gen)
        try:
            next(gen)
        except StopIteration:
            pass
        gen = runner.pytest_runtest_makereport(item, Call())
        next(gen)
        class Outcome:
            def get_result(self):
                return Report()
        try:
            gen.send(Outcome())
        except StopIteration:
            pass
    best = min(best, (time.perf_counter() - t) / N)
print(best)
"""


def _py(code: str, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=_env(), check=True
    ).stdout


def noise_free(baseline_session: float, suite_dir: str) -> dict[str, object]:
    """Component costs, each the best of several tries: what the timed rows cannot resolve."""
    imports, activations = [], []
    loaded = ""
    for _ in range(7):
        out = _py(PLUGIN_IMPORT).split(maxsplit=1)
        imports.append(float(out[0]))
        loaded = out[1].strip()
        activations.append(float(_py(ACTIVATION)))
    scan_line = next(
        line for line in _py(SCAN, suite_dir, os.devnull).splitlines() if line.startswith("SCAN")
    )
    scan = float(scan_line.split()[1])
    per_test = float(_py(HOOK_COST).strip())
    unused = min(imports) + scan
    rss = min(activations) + per_test * N_TESTS
    return {
        "plugin_import_seconds_best": min(imports),
        "modules_loaded_by_plugin_import": loaded,
        "collection_scan_seconds_best": scan,
        "unused_cost_seconds": unused,
        "unused_cost_pct_of_baseline_session": 100 * unused / baseline_session,
        "activation_seconds_best": min(activations),
        "rss_hooks_seconds_per_test_best": per_test,
        "rss_cost_seconds": rss,
        "rss_cost_pct_of_baseline_session": 100 * rss / baseline_session,
        "baseline_session_seconds": baseline_session,
    }


def accuracy(workdir: str) -> dict[str, object]:
    d = os.path.join(workdir, "accuracy")
    os.makedirs(d)
    sizes = ACCURACY_MIB + list(reversed(ACCURACY_MIB))
    with open(os.path.join(d, "test_accuracy.py"), "w") as f:
        f.write(ACCURACY_SUITE.format(sizes=sizes))
    report = os.path.join(d, "report.json")
    run_suite(d, ("-p", "no:memray", f"--hivemem-report={report}"))  # one session, both orders
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


def main() -> None:
    import harness

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per configuration")
    parser.add_argument("--slow-rounds", type=int, default=3, help="rounds for the python-kind row")
    parser.add_argument("--no-save", action="store_true", help="print only")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hivemem-bench-pytest-") as workdir:
        PYCACHE["dir"] = os.path.join(workdir, "pycache")
        with open(os.path.join(workdir, "_hivemem_bench_timer.py"), "w") as f:
            f.write(TIMER_PLUGIN)
        over = overhead(ns.rounds, workdir, ns.slow_rounds)
        base = over["baseline"]
        assert isinstance(base, dict)
        direct = noise_free(float(base["session_seconds_min"]), os.path.join(workdir, "suite_unused"))
        acc = accuracy(workdir)
    results = {
        "machine": harness.machine(),
        "suite": f"{N_TESTS} tests, each building {N_DICTS} small dicts",
        "rounds": ns.rounds,
        "statistic": "min and median over interleaved rounds (shared machine)",
        "overhead": over,
        "noise_free": direct,
        "accuracy": acc,
        "command": f"benchmarks/bench_pytest_plugin.py --rounds {ns.rounds} --slow-rounds {ns.slow_rounds}",
    }
    print()
    print(
        f"{'config':<10} {'session min':>12} {'median':>8} {'overhead min':>13} {'median':>8} "
        f"{'wall min':>9} {'cpu min':>8} {'cpu ovh':>8}"
    )
    for name, row in over.items():
        if "unavailable" in row:  # type: ignore[operator]
            print(f"{name:<10} {row['unavailable']}")  # type: ignore[index]
            continue
        r = row  # type: ignore[assignment]
        print(
            f"{name:<10} {r['session_seconds_min']:>11.3f}s {r['session_seconds_median']:>7.3f}s "  # type: ignore[index]
            f"{r['session_overhead_pct_min']:>12.1f}% {r['session_overhead_pct_median']:>7.1f}% "  # type: ignore[index]
            f"{r['wall_seconds_min']:>8.3f}s {r['cpu_seconds_min']:>7.3f}s "  # type: ignore[index]
            f"{r['cpu_overhead_pct_min']:>7.1f}%"  # type: ignore[index]
        )
    d = direct
    print(
        f"unused, by component: plugin import {d['plugin_import_seconds_best'] * 1e3:.2f} ms + "
        f"collection scan {d['collection_scan_seconds_best'] * 1e3:.3f} ms = "
        f"{d['unused_cost_pct_of_baseline_session']:.2f}% of the baseline session"
    )
    print(
        f"rss, by component: activation {d['activation_seconds_best'] * 1e3:.1f} ms + "
        f"{d['rss_hooks_seconds_per_test_best'] * 1e6:.1f} us per test x {N_TESTS} = "
        f"{d['rss_cost_pct_of_baseline_session']:.2f}% of the baseline session"
    )
    worst = acc["worst_abs_error_mib"]
    print(f"accuracy: worst |peak - N| = {worst:.3f} MiB over N in {ACCURACY_MIB} (both orders)")
    if not ns.no_save:
        print("saved", harness.save("pytest_plugin", results))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
