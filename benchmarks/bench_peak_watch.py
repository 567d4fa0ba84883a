"""What do the peak triggers that run in the program's own thread cost?

Two triggers keep a ``"peak"`` snapshot while a short peak is alive
(docs/profiler.md, "Allocation sites at the peak"):

* the line watch (``%%hivemem --trace``): a check at each line of the
  cell's own code; ``sys.monitoring`` on 3.12+, ``sys.settrace`` before;
* the gc callback (every traced ``Profiler``): a check at each collection.

Each workload runs as a "cell" (code exec'd in its own namespace) while
tracemalloc traces, best of ``--repeat`` by the thread's CPU time, without
and with the trigger. The profiler's snapshot thresholds are raised out of
reach, so the figures are the checks' own cost, not the snapshots' (those
are in ``benchmarks/results/peak_sites.json``). Workloads:

* ``own_loop``: a tight loop in the cell (a line event per iteration);
* ``listcomp``: a list comprehension of small bytearrays in the cell;
* ``foreign_calls``: the cell calls a function of another module 400,000
  times (what other code pays: nothing on 3.12+, a call event before);
* ``dicts``: 200,000 small dicts (gen-0 collections, for the gc callback).

Usage::

    .venv/bin/python benchmarks/bench_peak_watch.py            # this Python and ~/.pyenv's 3.10-3.13
    .venv/bin/python benchmarks/bench_peak_watch.py --repeat 3 --pythons .venv/bin/python

Prints a table and writes ``benchmarks/results/peak_watch.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")

WORKLOADS = {
    "own_loop": "s = 0\nfor i in range(300_000):\n    s += i * 2\n",
    "listcomp": "data = [bytearray(100) for _ in range(100_000)]\ndel data\n",
    "foreign_calls": "for i in range(100_000):\n    f(i); f(i); f(i); f(i)\n",
    "dicts": "rows = [{'id': i} for i in range(200_000)]\ndel rows\n",
}

CHILD = r"""
import json, sys, time, tracemalloc
from hivemem._profile.profiler import LineWatch, Profiler
workloads, repeat = json.loads(sys.argv[1]), int(sys.argv[2])
foreign = {}
exec("def f(x):\n    return x\n", foreign)

def run(name, code, trigger):
    best = float("inf")
    for _ in range(repeat):
        ns = {"f": foreign["f"]}
        compiled = compile(code, "<cell>", "exec")
        prof = Profiler(trace=True, interval=None).start()
        prof._peak_next = prof._peak_plateau = sys.maxsize  # checks only: no snapshot is ever due
        if trigger != "gc":
            prof._drop_gc_callback()
        watch = LineWatch(prof, ns).start() if trigger == "line" else None
        t = time.thread_time()
        exec(compiled, ns)
        best = min(best, time.thread_time() - t)
        if watch is not None:
            assert watch.active
            watch.stop()
        prof.stop()
    return best

out = {}
for name, code in workloads.items():
    base = run(name, code, "none")
    trig = "gc" if name == "dicts" else "line"
    with_trigger = run(name, code, trig)
    out[name] = {"trigger": trig, "cpu_base": base, "cpu_with": with_trigger, "ratio": with_trigger / base}
print(json.dumps(out))
"""


def measure(python: str, repeat: int) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.run(
        [python, "-c", CHILD, json.dumps(WORKLOADS), str(repeat)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    probe = "import sys; print(sys.version.split()[0])"
    version = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    return {"python": version.stdout.strip(), "workloads": json.loads(proc.stdout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pythons", nargs="*", default=None)
    args = parser.parse_args()
    others = glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[0-9]*/bin/python"))
    others = sorted(p for p in others if not p.startswith(sys.base_prefix))
    pythons = args.pythons or [sys.executable, *others]
    results = []
    for python in pythons:
        res = measure(python, args.repeat)
        res["executable"] = python
        results.append(res)
        if "error" in res:
            print(f"{python}: {res['error']}")
            continue
        for name, row in res["workloads"].items():  # type: ignore[attr-defined]
            print(
                f"{res['python']:8s} {name:14s} {row['trigger']:4s} base {row['cpu_base'] * 1e3:7.1f} ms"
                f"  with {row['cpu_with'] * 1e3:7.1f} ms  x{row['ratio']:.2f}"
            )
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", "peak_watch.json")
    with open(path, "w") as f:
        json.dump(
            {
                "benchmark": "peak_watch",
                "machine": platform.machine(),
                "taken": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "repeat": args.repeat,
                "note": "CPU seconds, best of repeat, on a shared loaded machine",
                "results": results,
            },
            f,
            indent=2,
        )
    print(f"written {path}")


if __name__ == "__main__":
    main()
