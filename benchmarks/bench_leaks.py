"""Leak checks that never cry wolf and cost what the function costs: the three figures.

1. **corpus**: every workload of ``tests/leak_workloads.py`` (9 originals, 28
   shaped leaks of 100 B to 100 KB per call, 24 look-alikes that inspect the
   stack, warn, log, chain exceptions, fill caches, start threads and event
   loops) through ``hivemem.find_leaks`` with its defaults, each in a fresh
   interpreter, on every CPython 3.10-3.13 found (the running one and
   ``~/.pyenv/versions/3.1x.*``). Prints a table per version; the figure is
   false leaks (a look-alike called leaking) and missed leaks.
2. **speed**: ``find_leaks(trivial)`` in a process holding 100k, 1M or 3M
   live objects, as containers (lists) or as class instances, plain or
   ``gc.freeze()``-d by the program; CPU time of the call, best of
   ``--repeat``. Also one leaking function at 1M (the verdict then walks the
   heap once to name the growing types). ``--baseline PATH`` also runs the
   same cases against another checkout's ``src`` (the code before this
   change) for comparison.
3. **suites**: two third-party suites (``benchmarks/realsuites.py``: toolz
   1.2.0, more-itertools 11.2.1), plain and with ``@pytest.mark.no_leaks``
   on every test (``no_leaks_everywhere.py`` adds it at collection time).
   Reports the CPU time of the pytest process (user + system, best of
   ``--rounds`` interleaved rounds), the ratio, and every leak verdict with
   the failure text, for a hand check.

Usage::

    .venv/bin/python benchmarks/bench_leaks.py                 # all three
    .venv/bin/python benchmarks/bench_leaks.py corpus speed    # some
    .venv/bin/python benchmarks/bench_leaks.py suites --suites toolz --rounds 3

Writes ``benchmarks/results/leaks.json`` (sections measured in this run
replace the old ones). The machine is shared: timing figures are CPU times,
best of several runs.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "src")
WORKLOADS = os.path.join(ROOT, "tests", "leak_workloads.py")
OUT = os.path.join(HERE, "results", "leaks.json")


def _env(src: str = SRC) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MALLOC_", "GLIBC_TUNABLES"))}
    env["PYTHONPATH"] = src
    return env


def _run_json(python: str, code: str, src: str = SRC, timeout: float = 600) -> dict[str, object]:
    out = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, env=_env(src), timeout=timeout, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{python} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ----------------------------------------------------------------- 1. corpus

ONE = r"""
import json, runpy, sys, warnings, hivemem
warnings.simplefilter("ignore")
ns = runpy.run_path({workloads!r}, run_name="leak_workloads")
fn = next(f for f in ns["ALL_LEAKS"] + ns["ALL_NON_LEAKS"] if f.__name__ == {name!r})
r = hivemem.find_leaks(fn)
print(json.dumps({{"leaking": r.leaking, "expected": fn in ns["ALL_LEAKS"], "rule": r.rule,
                  "bytes_per_call": r.bytes_per_call, "per_run": list(r.per_run),
                  "per_run_blocks": list(r.per_run_blocks), "warmup_runs": list(r.warmup_runs),
                  "seconds": r.seconds, "verdict": r.verdict}}))
"""

NAMES = r"""
import json, runpy
ns = runpy.run_path({workloads!r}, run_name="leak_workloads")
print(json.dumps({{"leaks": [f.__name__ for f in ns["ALL_LEAKS"]],
                  "non_leaks": [f.__name__ for f in ns["ALL_NON_LEAKS"]]}}))
"""


def pythons() -> list[tuple[str, str]]:
    """``(version, executable)`` for the running CPython and every other 3.10-3.13 under pyenv."""
    found = {f"{sys.version_info[0]}.{sys.version_info[1]}": sys.executable}
    for minor in (10, 11, 12, 13):
        paths = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/3.{minor}.*/bin/python")))
        if paths:
            found.setdefault(f"3.{minor}", paths[-1])
    return sorted(found.items(), key=lambda kv: tuple(int(p) for p in kv[0].split(".")))


def corpus() -> dict[str, object]:
    names = _run_json(sys.executable, NAMES.format(workloads=WORKLOADS))
    all_names = list(names["leaks"]) + list(names["non_leaks"])  # type: ignore[call-overload]
    by_version: dict[str, object] = {}
    for version, python in pythons():
        rows = {}
        for name in all_names:
            rows[name] = _run_json(python, ONE.format(workloads=WORKLOADS, name=name))
        false_leaks = sorted(n for n, r in rows.items() if r["leaking"] and not r["expected"])
        missed = sorted(n for n, r in rows.items() if r["expected"] and not r["leaking"])
        print(f"\nCPython {version} ({python}): {len(rows)} workloads in fresh interpreters")
        print(f"  {'workload':30s} {'expected':>8s} {'verdict':>8s}  per repetition (bytes)")
        for name, r in rows.items():
            mark = "" if r["leaking"] == r["expected"] else "  <-- WRONG"
            per = ", ".join(f"{v:+d}" for v in r["per_run"])  # type: ignore[attr-defined]
            print(
                f"  {name:30s} {'leak' if r['expected'] else 'no leak':>8s} "
                f"{'LEAKING' if r['leaking'] else 'no leak':>8s}  {per}{mark}"
            )
        print(
            f"  => {len(false_leaks)} false leak verdicts on {len(names['non_leaks'])} look-alikes and "  # type: ignore[arg-type]
            f"non-leaks, {len(missed)} missed of {len(names['leaks'])} true leaks"  # type: ignore[arg-type]
        )
        by_version[version] = {
            "python": python,
            "full_version": _run_json(
                python, "import json, platform; print(json.dumps(platform.python_version()))"
            ),
            "workloads": rows,
            "false_leaks": false_leaks,
            "missed_leaks": missed,
            "non_leaks": len(names["non_leaks"]),  # type: ignore[arg-type]
            "leaks": len(names["leaks"]),  # type: ignore[arg-type]
        }
    return {"command": "python benchmarks/bench_leaks.py corpus", "by_version": by_version}


# ----------------------------------------------------------------- 2. speed

SPEED = r"""
import gc, json, sys, time
n, shape, freeze, repeat = {n}, {shape!r}, {freeze!r}, {repeat}
if shape == "containers":
    heap = [[i] for i in range(n)]
else:
    class Item:
        def __init__(self, i):
            self.i = i
            self.tags = None
    heap = [Item(i) for i in range(n)]
if freeze:
    gc.freeze()
import hivemem

def trivial():
    return None

kept = []
def leaky():
    kept.append(bytes(200))

objects = len(gc.get_objects()) + gc.get_freeze_count()
best = wall = None
for _ in range(repeat):
    c0, w0 = time.process_time(), time.perf_counter()
    r = hivemem.find_leaks(trivial)
    c, w = time.process_time() - c0, time.perf_counter() - w0
    assert not r.leaking
    best = c if best is None else min(best, c)
    wall = w if wall is None else min(wall, w)
leak = None
if {leak_too}:
    c0 = time.process_time()
    r = hivemem.find_leaks(leaky)
    leak = {{"cpu": time.process_time() - c0, "leaking": r.leaking,
             "types": [t.name for t in r.growing_types[:3]]}}
print(json.dumps({{"objects": objects, "frozen_by_program": freeze, "cpu": best, "wall": wall,
                  "freeze_count_after": gc.get_freeze_count(), "leaking_fn": leak}}))
"""

CASES = [
    (100_000, "containers", False),
    (1_000_000, "containers", False),
    (3_000_000, "containers", False),
    (1_000_000, "instances", False),
    (1_000_000, "containers", True),
    (3_000_000, "instances", True),
]


def speed(repeat: int, baseline: str | None) -> dict[str, object]:
    rows = []
    print("\nfind_leaks(trivial) CPU time, best of", repeat)
    sources = [("this change", SRC)] + ([("baseline", baseline)] if baseline else [])
    for n, shape, freeze in CASES:
        for label, src in sources:
            reps = repeat if label == "this change" else 1  # the baseline takes seconds per call
            res = _run_json(
                sys.executable,
                SPEED.format(
                    n=n,
                    shape=shape,
                    freeze=freeze,
                    repeat=reps,
                    leak_too=label == "this change" and n == 1_000_000,
                ),
                src=src,
                timeout=1800,
            )
            res.update({"n": n, "shape": shape, "code": label})
            rows.append(res)
            leak = res.get("leaking_fn")
            extra = (
                f"; a leaking fn: {leak['cpu'] * 1000:.0f} ms, types {leak['types']}"  # type: ignore[index]
                if leak
                else ""
            )
            print(
                f"  {label:11s} {n:>9,} {shape:10s} {'frozen by the program' if freeze else '':21s} "
                f"{res['objects']:>9,} gc objects: {res['cpu'] * 1000:8.1f} ms CPU "  # type: ignore[operator]
                f"({res['wall'] * 1000:.0f} ms wall){extra}"  # type: ignore[operator]
            )
    one_m = [r for r in rows if r["code"] == "this change" and r["n"] == 1_000_000]
    worst = max(r["cpu"] for r in one_m)  # type: ignore[type-var]
    return {
        "command": "python benchmarks/bench_leaks.py speed",
        "repeat": repeat,
        "rows": rows,
        "target_ms_at_1M": 100,
        "worst_ms_at_1M": worst * 1000,  # type: ignore[operator]
        "met": worst <= 0.1,  # type: ignore[operator]
    }


# ----------------------------------------------------------------- 3. real suites


def _pytest_cpu(cmd: list[str], env: dict[str, str], cwd: str) -> tuple[float, float, int, str]:
    """Run *cmd*; return (CPU seconds of the child, wall seconds, exit code, output tail)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, done.returncode, (done.stdout + done.stderr)[-2000:]


def suites(names: list[str], rounds: int) -> dict[str, object]:
    sys.path.insert(0, HERE)
    import realsuites

    out: dict[str, object] = {}
    for name in names:
        suite = realsuites.SUITES[name]
        env = suite.env()
        env["PYTHONPATH"] = os.pathsep.join([str(suite.root), HERE])
        plain_cmd = suite.command()
        plain: list[float] = []
        leaks: list[float] = []
        walls: dict[str, list[float]] = {"plain": [], "no_leaks": []}
        verdicts: list[dict[str, object]] = []
        tests = 0
        for _ in range(rounds):  # interleaved: plain, then no_leaks, each round
            cpu, wall, code, tail = _pytest_cpu(plain_cmd, env, str(suite.root))
            if code != 0:
                raise RuntimeError(f"{suite.name} fails without hivemem (exit {code}):\n{tail}")
            plain.append(cpu)
            walls["plain"].append(wall)
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
                report = f.name
            leak_env = dict(env, HIVEMEM_NO_LEAKS_OUT=report)
            cpu, wall, _, _ = _pytest_cpu(
                suite.command("-p", "no_leaks_everywhere"), leak_env, str(suite.root)
            )
            leaks.append(cpu)
            walls["no_leaks"].append(wall)
            with open(report) as f:
                results = json.load(f)
            os.unlink(report)
            tests = len(results)
            verdicts = [
                {
                    "nodeid": r["nodeid"],
                    "per_run": r["leak"].get("per_run"),
                    "failure": r.get("longrepr", ""),
                }
                for r in results
                if r.get("leak", {}).get("leaking")
            ]
            screened = sum(1 for r in results if r.get("leak", {}).get("method") == "screen")
            traced = sum(1 for r in results if r.get("leak", {}).get("method") == "tracemalloc")
            other_failures = [
                r["nodeid"]
                for r in results
                if r["outcome"] == "failed" and not r.get("leak", {}).get("leaking")
            ]
        ratio = min(leaks) / min(plain)
        print(
            f"\n{suite.name} {suite.version}: {tests} tests; CPU best of {rounds}: plain {min(plain):.2f} s, "
            f"no_leaks on every test {min(leaks):.2f} s = {ratio:.2f}x "
            f"(wall {min(walls['plain']):.1f} s / {min(walls['no_leaks']):.1f} s)"
        )
        print(f"  leak checks: {screened} cleared by the untraced screen, {traced} measured with tracemalloc")
        print(f"  leak verdicts: {len(verdicts)}; other failures: {len(other_failures)}")
        for v in verdicts:
            print(f"  LEAK {v['nodeid']}: per repetition {v['per_run']}")
        out[name] = {
            "suite": f"{suite.name} {suite.version}",
            "tests": tests,
            "rounds": rounds,
            "plain_cpu": plain,
            "no_leaks_cpu": leaks,
            "wall": walls,
            "ratio_best": ratio,
            "screened": screened,
            "traced": traced,
            "leak_verdicts": verdicts,
            "other_failures": other_failures,
            "target_ratio": 5.0,
        }
    return {"command": "python benchmarks/bench_leaks.py suites", "suites": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("parts", nargs="*", default=["corpus", "speed", "suites"])
    parser.add_argument("--repeat", type=int, default=5, help="speed: calls per case (best kept)")
    parser.add_argument("--rounds", type=int, default=2, help="suites: interleaved rounds (best kept)")
    parser.add_argument("--suites", default="toolz,more-itertools")
    parser.add_argument("--baseline", default=None, help="speed: a src directory with the code to compare")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    result: dict[str, object] = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            result = json.load(f)
    result.update(
        {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        }
    )
    if "corpus" in args.parts:
        result["corpus"] = corpus()
    if "speed" in args.parts:
        result["speed"] = speed(args.repeat, args.baseline)
    if "suites" in args.parts:
        result["suites"] = suites(args.suites.split(","), args.rounds)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"\nwrote {os.path.relpath(args.out, ROOT)}")


if __name__ == "__main__":
    main()
