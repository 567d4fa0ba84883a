"""Dask: each worker's RSS before and after hivemem's GovernorPlugin acts, results unchanged.

The workload of ``tests/test_dask.py``: a ``LocalCluster`` of 2 worker
processes on 127.0.0.1 (1 thread, ``memory_limit="600MiB"`` each). Each
worker runs one task that fills it to 0.65 of its limit with 1-4 KiB blocks,
keeps 1 in 64 on the worker and frees the rest: the freed blocks stay in
malloc's heap (above hivemem's MODERATE entry at Dask's target 0.60, below
Dask's spill at 0.70, so Dask itself does nothing).

Two clusters, same workload, same run:

``plugin``     ``client.register_plugin(GovernorPlugin(interval=0.2))``
``no plugin``  Dask alone (control: what Dask's own memory manager does)

"before" is the worker's peak RSS (the kernel's VmHWM, read in the task),
"after" is its RSS ``--wait`` seconds after the task returned (default 5).
The kept data is hashed in the task and again after the wait.

Usage::

    .venv/bin/python benchmarks/bench_dask.py

Writes ``benchmarks/results/dask.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE), os.path.join(os.path.dirname(HERE), "src")]

from harness import run_header, write_out  # noqa: E402

MiB = 2**20


def worker_rss() -> int:
    import hivemem

    return hivemem.rss()


def run(with_plugin: bool, wait: float) -> dict[str, object]:
    from tests.test_dask import bloat, digest_of_kept, local_cluster

    from hivemem.integrations import dask as hd

    with local_cluster() as client:
        if with_plugin:
            client.register_plugin(hd.GovernorPlugin(interval=0.2))
        workers = sorted(client.scheduler_info()["workers"])
        idle = client.run(worker_rss)
        futures = {w: client.submit(bloat, i, workers=[w], pure=False) for i, w in enumerate(workers)}
        results = {w: f.result() for w, f in futures.items()}
        time.sleep(wait)
        after = client.run(worker_rss)
        digests = {w: client.submit(digest_of_kept, workers=[w], pure=False).result() for w in workers}
        state = hd.reports(client) if with_plugin else {}
        out = {}
        for w in workers:
            acts = [e for e in state.get(w, {}).get("events", []) if e["kind"] == "act"]
            out[w] = {
                "idle_rss": idle[w],
                "peak_rss": results[w][1],
                "rss_after": after[w],
                "result_unchanged": digests[w] == results[w][0],
                "governor_passes": len(acts),
                "governor_acts": [
                    {"rss_before": e["rss_before"], "rss_after": e["rss_after"], "level": e["level"]}
                    for e in acts
                ],
            }
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wait", type=float, default=5.0)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "dask.json"))
    args = ap.parse_args()
    import logging

    from tests.test_dask import FILL

    logging.getLogger("distributed").setLevel(logging.ERROR)
    with_plugin = run(True, args.wait)
    control = run(False, args.wait)
    print("worker                    peak RSS   RSS after   result unchanged   (limit 600 MiB)")
    for label, data in (("plugin", with_plugin), ("no plugin", control)):
        for i, (_w, d) in enumerate(sorted(data.items())):
            print(
                f"{label:10} worker {i}:   {d['peak_rss'] / MiB:8.1f} M  {d['rss_after'] / MiB:8.1f} M   "  # type: ignore[operator]
                f"{d['result_unchanged']}"
            )
    result = {
        **run_header("dask"),
        "workload": (
            f"1-4 KiB blocks up to {FILL} of the limit, 1 in 64 kept; memory_limit 600MiB; wait {args.wait} s"
        ),
        "plugin": with_plugin,
        "no_plugin": control,
    }
    write_out(args.out, result)


if __name__ == "__main__":
    main()
