"""The survival matrix: growth that kills a process in a real cgroup v1 group, with and without hivemem.

Each workload of ``tests/survival_workloads.py`` (the six classes the governor must survive, and
variants with other sizes, rates, thread counts and limits) runs:

* once without hivemem in its group: it must be killed (SIGKILL, exit -9) or fail with MemoryError;
* once unconstrained in ``reference`` mode (no value kept): its answers;
* ``--runs`` times (10) with ``hivemem.govern()`` and default settings in a fresh group: it must finish
  with the reference's checksum, or for ``unfreeable`` (``escalation="raise"``) end in a clean
  ``MemoryLimitExceeded`` below the limit.

    .venv/bin/python benchmarks/bench_survival.py [--runs 10] [--only cpu,burst,...] [--matrix-only]

Prints a table and saves JSON to ``benchmarks/results/survival.json``: per workload the outcome of
every run, its peak RSS, seconds, passes and the governor's wake sources. Needs root (or a writable
memory group of our own); skipped with the reason elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results", "survival.json")
sys.path[:0] = [ROOT, os.path.join(ROOT, "src")]

from tests import survival_workloads as sw  # noqa: E402


def judge(params: dict[str, object], run: dict[str, object], digest: str | None) -> bool:
    """Did this governed run survive as it must?"""
    if params["kind"] == "unfreeable":
        usage = run.get("usage")
        return (
            run.get("returncode") == 0
            and run.get("raised") == "MemoryLimitExceeded"
            and isinstance(usage, int)
            and usage < sw.limit_of(params)
        )
    return run.get("returncode") == 0 and run.get("digest") == digest


def bench(name: str, params: dict[str, object], runs: int) -> dict[str, object]:
    out: dict[str, object] = {"params": params, "limit_bytes": sw.limit_of(params)}
    bare = sw.run_limited(params, govern=False)
    out["without_hivemem"] = {
        "returncode": bare["returncode"],
        "killed": bare["returncode"] == -9 or "MemoryError" in str(bare.get("stderr", "")),
    }
    digest = None
    if params["kind"] != "unfreeable":
        ref = sw.run(params, reference=True)
        digest = str(ref.get("digest"))
        out["reference_digest"] = digest
    rows = []
    for _ in range(runs):
        r = sw.run_limited(params, govern=True)
        rows.append(
            {
                "ok": judge(params, r, digest),
                "returncode": r.get("returncode"),
                "raised": r.get("raised"),
                "usage": r.get("usage"),
                "peak_rss": r.get("peak_rss"),
                "seconds": r.get("seconds"),
                "passes": r.get("passes"),
                "sources": r.get("sources"),
                "stderr": r.get("stderr", "")[-400:] if r.get("returncode") != 0 else None,
            }
        )
    out["runs"] = rows
    out["survived"] = sum(1 for row in rows if row["ok"])
    out["of"] = runs
    peaks = [int(row["peak_rss"]) for row in rows if row.get("peak_rss")]  # type: ignore[call-overload]
    out["peak_rss_max"] = max(peaks) if peaks else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--only", default="")
    ap.add_argument("--matrix-only", action="store_true", help="the six classes, no variants")
    args = ap.parse_args()
    workloads = dict(sw.MATRIX)
    if not args.matrix_only:
        workloads.update(sw.VARIANTS)
    if args.only:
        wanted = set(args.only.split(","))
        workloads = {k: v for k, v in workloads.items() if k in wanted}
    own, why = sw.v1_memory_group()
    results: dict[str, object] = {"python": sys.version.split()[0], "machine": os.uname().release}
    if own is None:
        results["skipped"] = why
        print(json.dumps(results, indent=2))
        return
    if os.path.exists(RESULTS) and args.only:
        with open(RESULTS) as f:
            results.update(json.load(f))
    results.setdefault("workloads", {})
    t = time.perf_counter()
    for name, params in workloads.items():
        res = bench(name, params, args.runs)
        results["workloads"][name] = res  # type: ignore[index]
        bare = res["without_hivemem"]
        print(
            f"{name:<22} without: {'killed' if bare['killed'] else 'NOT killed'} ({bare['returncode']})  "  # type: ignore[index]
            f"with govern(): {res['survived']}/{res['of']}  peak {int(res['peak_rss_max'] or 0) >> 20} MiB "  # type: ignore[call-overload]
            f"of {int(res['limit_bytes']) >> 20} MiB",  # type: ignore[call-overload]
            flush=True,
        )
    results["bench_seconds"] = time.perf_counter() - t
    results["command"] = "python benchmarks/bench_survival.py " + " ".join(sys.argv[1:])
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
