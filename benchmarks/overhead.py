"""What hivemem itself costs, and what the 10-1-1 GC recipe costs.

Each function runs fresh interpreters and returns a JSON-safe dict:

``import_cost()``        ``import hivemem`` (and a process that ran ``optimize()``
                         once) over a bare interpreter: RSS and seconds, medians
``latency()``            ``rss()`` and ``usage()`` per call, best of 5 repeats
``governor_cpu()``       process CPU time of a process running ``hivemem.govern()``
                         at its default interval, against an idle twin
``optimize_per_gb()``    ``optimize()`` wall time over heaps of live small objects
                         of growing size: seconds per GiB of heap
``recipe_slowdown()``    allocation-heavy workloads (JSON decoding, object trees)
                         with CPython's default GC thresholds against
                         ``gc.set_threshold(10, 1, 1)``

Run ``python benchmarks/overhead.py`` to print them all as JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")


def _python(code: str, timeout: float = 600) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


PROBE = r"""
import sys, time
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * 4096
base = rss()
t = time.perf_counter()
{body}
dt = time.perf_counter() - t
print(rss() - base, dt)
"""

IMPORT_CASES = {
    "bare": "pass",
    "import hivemem": "import hivemem",
    "import hivemem + optimize()": "import hivemem\nhivemem.optimize()\nhivemem.usage()",
    "import psutil (reference)": "import psutil",
}


def import_cost(runs: int = 9) -> dict[str, object]:
    """RSS and seconds over a bare interpreter, medians of *runs* fresh interpreters each."""
    raw: dict[str, tuple[float, float]] = {}
    for name, body in IMPORT_CASES.items():
        mem, secs = [], []
        for _ in range(runs):
            out = _python(PROBE.format(body=body)).split()
            mem.append(int(out[0]))
            secs.append(float(out[1]))
        raw[name] = (statistics.median(mem), statistics.median(secs))
    bare_mem, bare_t = raw["bare"]
    return {
        name: {"rss_bytes_over_bare": m - bare_mem, "seconds_over_bare": s - bare_t, "runs": runs}
        for name, (m, s) in raw.items()
        if name != "bare"
    }


def latency() -> dict[str, float]:
    """Seconds per call of ``rss()`` and ``usage()`` (best of 5 repeats, in a fresh interpreter)."""
    out = _python(
        "import timeit, json, hivemem\n"
        "r = min(timeit.repeat('hivemem.rss()', globals=globals(), number=20000, repeat=5)) / 20000\n"
        "u = min(timeit.repeat('hivemem.usage()', globals=globals(), number=2000, repeat=5)) / 2000\n"
        "print(json.dumps({'rss() seconds per call': r, 'usage() seconds per call': u}))\n"
    )
    return json.loads(out)  # type: ignore[no-any-return]


GOVERNED = r"""
import time, json, sys
import hivemem
gov = None
if {governed!r}:
    gov = hivemem.govern()
t0, c0 = time.perf_counter(), time.process_time()
time.sleep({seconds!r})
cpu, wall = time.process_time() - c0, time.perf_counter() - t0
info = {{'cpu_seconds': cpu, 'wall_seconds': wall}}
if gov is not None:
    info['interval'] = gov.interval
    info['governor'] = repr(gov)
    gov.stop()
print(json.dumps(info))
"""


def governor_cpu(seconds: float = 30.0) -> dict[str, object]:
    """Process CPU time of an idle process with ``hivemem.govern()`` (default options) vs an idle twin.

    Both run at the same time, so machine noise hits both. The share is of one core.
    """
    import hivemem

    if "govern" not in hivemem._LAZY:
        return {"unavailable": "this build of hivemem has no hivemem.govern()"}
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", GOVERNED.format(governed=governed, seconds=seconds)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name, governed in (("governed", True), ("idle twin", False))
    }
    res = {name: json.loads(p.communicate(timeout=seconds + 60)[0]) for name, p in procs.items()}
    extra = res["governed"]["cpu_seconds"] - res["idle twin"]["cpu_seconds"]
    return {
        "seconds": seconds,
        "interval": res["governed"].get("interval"),
        "governed_cpu_seconds": res["governed"]["cpu_seconds"],
        "idle_cpu_seconds": res["idle twin"]["cpu_seconds"],
        "extra_cpu_seconds": extra,
        "share_of_one_core": extra / res["governed"]["wall_seconds"],
    }


PER_GB = r"""
import json, time, hivemem
n = {n!r}
heap = [{{'id': i, 'name': 'x%d' % i, 'tags': [i, i + 1]}} for i in range(n)]
rss = hivemem.rss()
t = time.perf_counter()
report = hivemem.optimize(aggressiveness={level!r})
print(json.dumps({{'objects': n, 'rss': rss, 'seconds': time.perf_counter() - t,
                  'steps': {{s.name: s.seconds for s in report.steps if s.ran}}}}))
"""


def optimize_per_gb(
    sizes: tuple[int, ...] = (1_000_000, 2_000_000, 4_000_000), level: str = "moderate"
) -> dict[str, object]:
    """``optimize()`` wall time on heaps of live small objects (nothing to free: pure cost).

    The heap is live dicts with a string and a list each (~350 B per object
    with its parts), so every strategy that walks the heap pays full price.
    Seconds per GiB is the least-squares slope of seconds over RSS.
    """
    points = [json.loads(_python(PER_GB.format(n=n, level=level))) for n in sizes]
    xs = [p["rss"] / 2**30 for p in points]
    ys = [p["seconds"] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return {"aggressiveness": level, "points": points, "seconds_per_gib": slope}


SLOWDOWN = r"""
import gc, json, time
if {recipe!r}:
    gc.set_threshold(10, 1, 1)
workload = {workload!r}
t, c = time.perf_counter(), time.process_time()
if workload == 'json':
    doc = json.dumps([{{'id': i, 'tags': [i, i + 1], 'meta': {{'n': i}}}} for i in range(200)])
    for _ in range(2000):
        json.loads(doc)
else:
    class Node:
        def __init__(self, parent):
            self.parent = parent
            self.children = []
    live = []
    for i in range(300_000):
        root = Node(None)
        root.children = [Node(root) for _ in range(3)]
        if i % 10 == 0:
            live.append(root)
print(json.dumps({{'seconds': time.perf_counter() - t, 'cpu_seconds': time.process_time() - c,
                  'collections': [s['collections'] for s in gc.get_stats()]}}))
"""

WORKLOADS = {
    "json": "parse a 200-record JSON document 2,000 times (a service decoding requests)",
    "objects": "300k small object trees with parent links (cycles), 1 in 10 kept",
}


def recipe_slowdown(repeat: int = 3) -> dict[str, object]:
    """Allocation-heavy workloads with CPython's default GC thresholds vs ``gc.set_threshold(10, 1, 1)``.

    Best CPU time of *repeat* fresh interpreters each, run alternately so machine noise hits both.
    """
    out: dict[str, object] = {"repeat": repeat, "workloads": {}}
    for workload, what in WORKLOADS.items():
        runs: dict[str, list[dict[str, object]]] = {"default": [], "10-1-1": []}
        for _ in range(repeat):
            for name, recipe in (("default", False), ("10-1-1", True)):
                runs[name].append(json.loads(_python(SLOWDOWN.format(recipe=recipe, workload=workload))))
        best = {name: min(rs, key=lambda r: float(r["cpu_seconds"])) for name, rs in runs.items()}  # type: ignore[arg-type]
        out["workloads"][workload] = {  # type: ignore[index]
            "workload": what,
            "default": best["default"],
            "10-1-1": best["10-1-1"],
            "slowdown": float(best["10-1-1"]["cpu_seconds"]) / float(best["default"]["cpu_seconds"]),  # type: ignore[arg-type]
        }
    return out


def main() -> None:
    t = time.perf_counter()
    results = {
        "import": import_cost(),
        "latency": latency(),
        "optimize_per_gb": optimize_per_gb(),
        "recipe_slowdown": recipe_slowdown(),
        "governor_cpu": governor_cpu(10.0),
    }
    results["seconds"] = time.perf_counter() - t
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
