"""Pre-fork sharing: summed PSS and USS of forked workers with and without ``hivemem.prepare_fork()``.

A parent builds a shared, read-mostly structure (``--objects`` small dicts,
600k by default), forks ``--workers`` workers (4) and each worker serves
``--requests`` requests: it reads a few random entries of the shared
structure and allocates per-request objects, then runs one full
``gc.collect()``, as a long-running worker eventually does. While the workers
are alive the parent reads every process's ``/proc/<pid>/smaps_rollup``
through ``hivemem.process_tree()``.

Modes, each in a fresh parent process, same data, same run:

``plain``         nothing special (CPython's defaults)
``prepare_fork``  ``hivemem.prepare_fork()`` early (before building the data)
                  and again right before each fork; workers re-enable GC
                  (``after_fork_child``, run automatically at fork)

Usage::

    .venv/bin/python benchmarks/bench_prefork.py            # 4 workers, 600k dicts, 3 repeats
    .venv/bin/python benchmarks/bench_prefork.py --quick    # smaller, for a smoke run

Prints a table and writes ``benchmarks/results/prefork.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
MiB = 2**20


def parent(mode: str, workers: int, objects: int, requests: int) -> dict[str, object]:
    """Build the shared data, fork the workers, measure the tree; runs in a fresh process."""
    import gc
    import random

    import hivemem

    if mode == "prepare_fork":
        hivemem.prepare_fork()  # early: no collection punches holes into what follows
    t0 = time.perf_counter()
    shared = {
        f"user:{i}": {"id": i, "name": f"user {i}", "tags": [i % 7, i % 11], "score": i * 0.5}
        for i in range(objects)
    }
    keys = list(shared)
    build_seconds = time.perf_counter() - t0
    parent_before = hivemem.usage()

    pids, ready = [], []
    for n in range(workers):
        if mode == "prepare_fork":
            hivemem.prepare_fork()  # just before the fork, as gunicorn's pre_fork hook does
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # ---- worker
            os.close(r)
            rng = random.Random(n)
            total = 0
            t = time.perf_counter()
            for _ in range(requests):
                for key in rng.sample(keys, 20):  # read-mostly: touch a few shared entries
                    total += shared[key]["id"]
                scratch = [{"row": j, "cells": [j, str(j)]} for j in range(2000)]  # per-request objects
                total += len(scratch)
                del scratch
            serve = time.perf_counter() - t
            t = time.perf_counter()
            gc.collect()  # a full collection, as every long-lived worker eventually runs
            gc_seconds = time.perf_counter() - t
            os.write(
                w, json.dumps({"serve_seconds": serve, "gc_seconds": gc_seconds, "total": total}).encode()
            )
            os.close(w)
            time.sleep(600)  # stay alive until measured and killed
            os._exit(0)
        os.close(w)
        pids.append(pid)
        ready.append(r)
    reports = []
    for r in ready:
        reports.append(json.loads(os.read(r, 4096)))
        os.close(r)
    tree = hivemem.process_tree()
    for pid in pids:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    procs = {p.pid: p for p in tree}
    me = procs[os.getpid()]
    kids = [procs[p] for p in pids]
    sums = {k: sum(getattr(p, k) or 0 for p in kids) for k in ("rss", "pss", "uss", "swap")}
    return {
        "mode": mode,
        "workers": workers,
        "objects": objects,
        "requests": requests,
        "build_seconds": build_seconds,
        "parent_rss_before_fork": parent_before.rss,
        "parent": {k: getattr(me, k) for k in ("rss", "pss", "uss", "swap")},
        "workers_each": [{k: getattr(p, k) for k in ("pid", "rss", "pss", "uss", "swap")} for p in kids],
        "workers_sum": sums,
        "tree_sum": dict(tree.total),
        "worker_gc_seconds": [rep["gc_seconds"] for rep in reports],
        "worker_serve_seconds": [rep["serve_seconds"] for rep in reports],
        "answers_equal": len({rep["total"] for rep in reports}) == workers or workers == 1,
    }


def run_parent(mode: str, args: argparse.Namespace) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--parent",
        mode,
        "--workers",
        str(args.workers),
        "--objects",
        str(args.objects),
        "--requests",
        str(args.requests),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, timeout=900)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--objects", type=int, default=600_000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="100k objects, 50 requests, 1 repeat")
    ap.add_argument("--parent", choices=("plain", "prepare_fork"), help=argparse.SUPPRESS)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "prefork.json"))
    args = ap.parse_args()
    if args.parent:
        print(json.dumps(parent(args.parent, args.workers, args.objects, args.requests)))
        return
    if args.quick:
        args.objects, args.requests, args.repeat = 100_000, 50, 1
    runs: dict[str, list[dict[str, object]]] = {"plain": [], "prepare_fork": []}
    for i in range(args.repeat):
        order = ("plain", "prepare_fork") if i % 2 == 0 else ("prepare_fork", "plain")
        for mode in order:
            runs[mode].append(run_parent(mode, args))

    def med(mode: str, group: str, key: str) -> int:
        return int(statistics.median(r[group][key] for r in runs[mode]))  # type: ignore[index]

    summary: dict[str, dict[str, int]] = {}
    for mode in runs:
        summary[mode] = {
            "workers_pss": med(mode, "workers_sum", "pss"),
            "workers_uss": med(mode, "workers_sum", "uss"),
            "workers_rss": med(mode, "workers_sum", "rss"),
            "tree_pss": med(mode, "tree_sum", "pss"),
            "tree_uss": med(mode, "tree_sum", "uss"),
        }
    print(
        f"{args.workers} workers, {args.objects} shared dicts, {args.requests} requests each, "
        f"then a full gc.collect(); median of {args.repeat} run(s), same data, same run"
    )
    print(f"{'':14} {'workers PSS':>12} {'workers USS':>12} {'workers RSS':>12} {'parent+workers PSS':>19}")
    for mode, s in summary.items():
        print(
            f"{mode:14} {s['workers_pss'] / MiB:10.1f} M {s['workers_uss'] / MiB:10.1f} M "
            f"{s['workers_rss'] / MiB:10.1f} M {s['tree_pss'] / MiB:17.1f} M"
        )
    plain, prep = summary["plain"], summary["prepare_fork"]
    ratio = prep["workers_pss"] / plain["workers_pss"]
    print(
        f"prepare_fork(): workers' PSS {plain['workers_pss'] / MiB:.0f} -> {prep['workers_pss'] / MiB:.0f} "
        f"MiB ({ratio:.2f}x), USS {plain['workers_uss'] / MiB:.0f} -> "
        f"{prep['workers_uss'] / MiB:.0f} MiB; parent+workers PSS {plain['tree_pss'] / MiB:.0f} -> "
        f"{prep['tree_pss'] / MiB:.0f} MiB"
    )
    gc_ms = {
        mode: 1000 * statistics.median(s for r in runs[mode] for s in r["worker_gc_seconds"])  # type: ignore[attr-defined]
        for mode in runs
    }
    print(
        f"a worker's full gc.collect(): {gc_ms['plain']:.1f} ms plain, {gc_ms['prepare_fork']:.1f} ms with it"
    )
    sys.path.insert(0, HERE)  # here, not at the top: the measured parent process stays as it was
    from harness import run_header, write_out

    result = {
        **run_header("prefork"),
        "workers": args.workers,
        "objects": args.objects,
        "requests": args.requests,
        "repeat": args.repeat,
        "summary": summary,
        "ratio_workers_pss": prep["workers_pss"] / plain["workers_pss"],
        "ratio_tree_pss": prep["tree_pss"] / plain["tree_pss"],
        "worker_gc_ms_median": gc_ms,
        "runs": runs,
    }
    write_out(args.out, result)


if __name__ == "__main__":
    main()
