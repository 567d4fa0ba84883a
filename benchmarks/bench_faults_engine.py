"""Figures for the engine's and the inspection tools' fault safety, each in a fresh interpreter.

    .venv/bin/python benchmarks/bench_faults_engine.py                 # everything (~20-40 minutes)
    .venv/bin/python benchmarks/bench_faults_engine.py fd2 top         # some sections
    .venv/bin/python benchmarks/bench_faults_engine.py top --before    # also main's code, for the "before"

Sections:

``inject``  interrupt injection: an exception raised at every line event of ``_engine/engine.py`` over
            three kinds of pass (blocking, the governor's try-lock, dry run), and at every distinct
            step of the inspection tools' locking code; locks held afterwards (must be 0)
``fd2``     1,000 ``fragmentation()`` calls from 4 and 8 threads on small and large heaps, with a
            thread writing to fd 2 and children forked meanwhile: fd 2 unchanged, lines lost,
            children that saw hivemem's stream as their stderr
``status``  100 runs of concurrent ``status()`` (with ``top()``/``growth()``/``fragmentation()``
            mixes, 2-8 threads, heaps of 100k-1M objects of three shapes): the slowest call,
            and how many calls took more than 10 s
``top``     peak transient RSS (VmHWM reset through /proc/self/clear_refs) of ``top()`` called by
            4 threads at once on heaps of about 1M objects of three shapes; ``--before`` runs
            the same on the sources of the ``main`` branch (``git archive``)
``fuzz``    the argument fuzz of ``tests/argument_fuzz.py``: calls by outcome

Wall times are noisy on a shared machine; the RSS and count figures are not. Results go to
``benchmarks/results/faults_engine.json`` (sections measured in this run replace older ones).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from harness import PROC_FUNCS, SRC, child_json, machine, save  # noqa: E402

MiB = 2**20

PRELUDE = (
    """
import gc, json, os, sys, threading, time
sys.path[:0] = [{src!r}, {root!r}]
"""
    + PROC_FUNCS
    + """class Rec:
    def __init__(self, i):
        self.name = 'r%d' % i
        self.tags = [i, str(i)]
def build_heap(n, shape):
    '''About n gc-tracked objects ("strings": n/5 lists holding 10n untracked strings).'''
    if shape == 'mixed':
        return [[str(i), i, {{'a': [i], 'b': (i, 'x')}}] for i in range(n // 4)]
    if shape == 'records':
        return [Rec(i) for i in range(n // 2)]
    if shape == 'strings':
        return [[('s%d' % i) * 3 for i in range(j, j + 50)] for j in range(0, n * 10, 50)]
    raise ValueError(shape)
"""
)


def child(code: str, *, src: str = SRC, timeout: float = 3600) -> dict[str, object]:
    """Run *code* (after PRELUDE) in a fresh interpreter; its last stdout line is JSON."""
    return child_json(PRELUDE.format(src=src, root=ROOT) + textwrap.dedent(code), timeout=timeout, cwd=ROOT)


# ----------------------------------------------------------------------------- inject
INJECT = """
import logging
logging.disable(logging.CRITICAL)
from tests import test_faults_engine as t, test_inspect as ti
from hivemem._engine import engine as _engine
from hivemem._profile import inspect as _inspect
out = {}
for scenario in sorted(t.SCENARIOS):
    points = t._inject_everywhere(scenario, KeyboardInterrupt)   # asserts no lock held after each
    out[scenario] = points
class _MP:
    def setattr(self, obj, name, value):
        setattr(obj, name, value)
real = _inspect._walk_heap
for call in ("top", "growth"):
    ti.test_an_interrupt_at_any_line_of_the_walk_leaves_no_lock_held(call, _MP(), None)
_inspect._walk_heap = real
held = int(_engine._lock.locked()) + int(_inspect._walk_lock.locked()) + int(_inspect._growth_lock.locked())
print(json.dumps({"engine_points": out, "engine_total": sum(out.values()), "held_after": held}))
"""


def bench_inject() -> dict[str, object]:
    t0 = time.perf_counter()
    res = child(INJECT)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    res["method"] = (
        "sys.settrace raising KeyboardInterrupt at the Nth line event of _engine/engine.py frames, "
        "N = 1..all reached; after each: engine lock and re-entrancy mark free, a new optimize() "
        "finishes in another thread within 10 s"
    )
    return res


# ----------------------------------------------------------------------------- fd2
FD2 = """
import hivemem, hivemem._measure.native
if {fallback}:
    hivemem._measure.native._memstream = False
heap = build_heap({objects}, 'mixed')
gc.collect()
err = open(os.path.join({tmp!r}, 'stderr-%d' % os.getpid()), 'w+b')
real_err = os.dup(2)
os.dup2(err.fileno(), 2)
before = ident(2)
per = {calls} // {threads}
def caller():
    for _ in range(per):
        hivemem.fragmentation()
w = threading.Thread(target=writer, args=(0.0005,))
w.start()
t0 = time.perf_counter()
callers = [threading.Thread(target=caller) for _ in range({threads})]
for t in callers: t.start()
bad_children = forks = 0
while any(t.is_alive() for t in callers):
    bad_children += 'memfd' in fd2_of_child()
    forks += 1
    time.sleep(0.01)
for t in callers: t.join()
seconds = time.perf_counter() - t0
stop.set(); w.join()
after = ident(2)
err.seek(0)
lines = err.read().decode().splitlines()
os.dup2(real_err, 2)
got = [int(l.split()[1]) for l in lines if l.startswith('line ')]
print(json.dumps({{'calls': per * {threads}, 'threads': {threads}, 'objects': len(gc.get_objects()),
    'fd2_unchanged': before == after, 'lines_written': len(written),
    'lines_lost': len(set(written) - set(got)),
    'stats_leaked_to_stderr': sum('Small block' in l for l in lines), 'forks': forks,
    'children_with_stolen_fd2': bad_children, 'seconds': round(seconds, 2)}}))
"""


def bench_fd2() -> dict[str, object]:
    sys.path[:0] = [ROOT, SRC]
    from tests.test_faults_engine import FD2_KIT

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fallback in (False, True):
            for threads, objects in ((4, 10_000), (8, 10_000), (4, 1_000_000)):
                code = FD2.format(fallback=fallback, objects=objects, calls=1000, threads=threads, tmp=tmp)
                row = child(FD2_KIT + code)
                row["path"] = "fd2 fallback (forced)" if fallback else "open_memstream"
                rows.append(row)
                print(f"  fd2 {row}", flush=True)
    return {"runs": rows}


# ----------------------------------------------------------------------------- status
STATUS = """
import hivemem
heap = build_heap({objects}, {shape!r})
gc.collect()
hivemem.status()  # imports and first growth() baseline out of the way
hivemem.growth()
mixes = {{
    'status x2': [hivemem.status] * 2,
    'status x4': [hivemem.status] * 4,
    'status+top+growth+fragmentation': [hivemem.status, hivemem.top, hivemem.growth, hivemem.fragmentation],
    'status x8': [hivemem.status] * 8,
}}
calls = mixes[{mix!r}]
times = []
cpu0 = time.process_time()
for run in range({runs}):
    start = threading.Barrier(len(calls))
    def call(fn):
        start.wait()
        t = time.perf_counter()
        fn()
        times.append((fn.__name__, time.perf_counter() - t))
    ts = [threading.Thread(target=call, args=(fn,)) for fn in calls]
    for t in ts: t.start()
    for t in ts: t.join()
status_times = [s for n, s in times if n == 'status']
print(json.dumps({{'objects': len(gc.get_objects()), 'shape': {shape!r}, 'mix': {mix!r}, 'runs': {runs},
    'calls': len(times), 'slowest_s': round(max(s for _, s in times), 2),
    'slowest_status_s': round(max(status_times), 2),
    'median_status_s': round(sorted(status_times)[len(status_times) // 2], 2),
    'over_10s': sum(s > 10 for _, s in times), 'cpu_s': round(time.process_time() - cpu0, 1)}}))
"""

STATUS_VARIANTS = [
    (1_000_000, "records", "status x2", 25),
    (300_000, "mixed", "status+top+growth+fragmentation", 25),
    (200_000, "strings", "status x4", 25),
    (100_000, "mixed", "status x8", 25),
]


def bench_status() -> dict[str, object]:
    rows = []
    for objects, shape, mix, runs in STATUS_VARIANTS:
        row = child(STATUS.format(objects=objects, shape=shape, mix=mix, runs=runs))
        rows.append(row)
        print(f"  status {row}", flush=True)
    return {
        "runs": rows,
        "total_runs": sum(r["runs"] for r in rows),  # type: ignore[misc]
        "runs_over_10s": sum(r["over_10s"] for r in rows),  # type: ignore[misc]
    }


# ----------------------------------------------------------------------------- top
TOP = """
import hivemem
heap = build_heap({objects}, {shape!r})
gc.collect()
hivemem.top(1)
base = rss()
reset_peak()
times = []
cpu0 = time.process_time()
def call():
    t = time.perf_counter()
    hivemem.top()
    times.append(time.perf_counter() - t)
ts = [threading.Thread(target=call) for _ in range({threads})]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps({{'objects': len(gc.get_objects()), 'shape': {shape!r}, 'threads': {threads},
    'base_rss': base, 'peak_rise': peak() - base, 'slowest_s': round(max(times), 2),
    'cpu_s': round(time.process_time() - cpu0, 2)}}))
"""

TOP_VARIANTS = [(1_000_000, "mixed"), (1_000_000, "records"), (200_000, "strings")]


def _main_sources() -> str:
    """The ``main`` branch's src/ in a temporary directory (read from git, nothing checked out)."""
    out = tempfile.mkdtemp(prefix="hivemem-main-src-")
    archive = subprocess.run(["git", "-C", ROOT, "archive", "main", "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", out], input=archive.stdout, check=True)
    return os.path.join(out, "src")


def bench_top(before: bool) -> dict[str, object]:
    rows = []
    sources = [("after", SRC)] + ([("before (main)", _main_sources())] if before else [])
    for label, src in sources:
        for objects, shape in TOP_VARIANTS:
            for threads in (1, 4):
                try:
                    row = child(
                        TOP.format(objects=objects, shape=shape, threads=threads), src=src, timeout=900
                    )
                except subprocess.TimeoutExpired:
                    row = {"objects": objects, "shape": shape, "threads": threads, "timeout_s": 900}
                row["code"] = label
                rows.append(row)
                print(f"  top {row}", flush=True)
    return {"runs": rows}


# ----------------------------------------------------------------------------- fuzz
def bench_fuzz() -> dict[str, object]:
    sys.path.insert(0, ROOT)
    from collections import Counter

    from tests.argument_fuzz import ACCEPTABLE, ODD, TARGET_LABELS, run_all

    t0 = time.perf_counter()
    outcomes = run_all()
    kinds = Counter(o.kind for o in outcomes)
    bad = [f"{o.label} <- {o.value}: {o.kind}: {o.detail}" for o in outcomes if o.kind not in ACCEPTABLE]
    return {
        "targets": len(TARGET_LABELS),
        "values": len(ODD),
        "calls": len(outcomes),
        "outcomes": dict(kinds),
        "escapes": bad,
        "seconds": round(time.perf_counter() - t0, 1),
    }


SECTIONS = {"inject": bench_inject, "fd2": bench_fd2, "status": bench_status, "fuzz": bench_fuzz}


def main(argv: list[str]) -> None:
    before = "--before" in argv
    wanted = [a for a in argv if not a.startswith("--")] or [*SECTIONS, "top"]
    path = os.path.join(HERE, "results", "faults_engine.json")
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, ValueError):
        results = {}
    results["machine"] = machine()
    for name in wanted:
        print(f"{name} ...", flush=True)
        t0 = time.perf_counter()
        results[name] = bench_top(before) if name == "top" else SECTIONS[name]()
        results[name]["measured"] = machine()["date"]  # type: ignore[index]
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
        save("faults_engine", results)
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1, default=str)[:6000])


if __name__ == "__main__":
    main(sys.argv[1:])
