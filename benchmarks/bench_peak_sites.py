"""Does ``hivemem run --profile`` list the script's own allocating line first, at the peak?

Every shape in ``tests/peak_workloads.py`` (a peak early or late, many small
blocks or one big one, in a thread, in an imported module, two phases,
alive at exit) is written at each size (``--sizes``, MiB) into a temporary
directory and run twice in fresh interpreters: ``python script.py`` and
``hivemem run --profile --report r.json script.py``. Per run the JSON keeps:

* ``ok``: the first allocation site of the report is the line marked ``# PEAK``;
* ``first``: that site's ``file:line`` and bytes; ``sites_traced`` and
  ``traced_peak``: bytes the kept snapshot's sites hold, and tracemalloc's
  exact peak (their ratio is how near the peak the snapshot was);
* ``snapshots``, ``snapshot_cpu``, ``snapshot_rss``: what the "peak"
  snapshots cost (count, CPU seconds, RSS held while one was taken);
* ``cpu_plain`` and ``cpu_profiled``: the child's user+system CPU seconds
  (``resource.getrusage(RUSAGE_CHILDREN)``), best of ``--repeat``.

Usage::

    .venv/bin/python benchmarks/bench_peak_sites.py                 # 30, 100 and 250 MiB
    .venv/bin/python benchmarks/bench_peak_sites.py --sizes 100 --repeat 1

Prints a table and writes ``benchmarks/results/peak_sites.json``.
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, ROOT)

from tests.peak_workloads import SHAPES, write  # noqa: E402


def _child_cpu(cmd: list[str], cwd: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, proc


def run_one(shape: str, mib: int, repeat: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="hivemem-peak-") as tmp:
        script, expected = write(shape, tmp, mib)
        plain = min(_child_cpu([sys.executable, script], tmp)[0] for _ in range(repeat))
        best: dict[str, object] | None = None
        for _ in range(repeat):
            out = os.path.join(tmp, "r.json")
            cmd = [sys.executable, "-m", "hivemem", "run", "--profile", "--report", out, script]
            cpu, proc = _child_cpu(cmd, tmp)
            if proc.returncode != 0:
                return {"shape": shape, "mib": mib, "ok": False, "error": proc.stderr[-2000:]}
            profile = json.loads(open(out).read())["profile"]
            rows = profile["top"]["rows"]
            peak, over = profile["peak"], profile["overhead"]
            result = {
                "shape": shape,
                "mib": mib,
                "expected": expected,
                "ok": bool(rows) and rows[0]["where"] == expected,
                "first": {"where": rows[0]["where"], "size": rows[0]["size"]} if rows else None,
                "sites": peak["sites"],
                "sites_traced": peak["sites_traced"],
                "traced_peak": peak["traced"],
                "snapshots": over["snapshots"],
                "snapshot_cpu": over["snapshot_cpu"],
                "snapshot_rss": over["snapshot_rss"],
                "cpu_plain": plain,
                "cpu_profiled": cpu,
            }
            if best is None or cpu < float(best["cpu_profiled"]):  # type: ignore[arg-type]
                best = result
        assert best is not None
        return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="30,100,250", help="peak sizes in MiB, comma-separated")
    parser.add_argument("--repeat", type=int, default=2, help="runs per case; the least CPU is kept")
    parser.add_argument("--only", default="", help="comma-separated shapes (default: all)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    shapes = [s for s in args.only.split(",") if s] or list(SHAPES)
    results = []
    head = ("shape", "MiB", "ok", "first site", "near", "snaps", "snap s", "cpu x")
    print("{:<20} {:>4}  {:<3} {:<22} {:>5} {:>5} {:>6} {:>6}".format(*head))
    for shape in shapes:
        for mib in sizes:
            r = run_one(shape, mib, args.repeat)
            results.append(r)
            if "error" in r:
                print(f"{shape:<20} {mib:>4}  FAILED: {str(r['error']).splitlines()[-1:]}")
                continue
            first = r["first"] or {}
            near = float(r["sites_traced"] or 0) / float(r["traced_peak"] or 1)  # type: ignore[arg-type]
            slow = float(r["cpu_profiled"]) / max(float(r["cpu_plain"]), 1e-3)  # type: ignore[arg-type]
            print(
                f"{shape:<20} {mib:>4}  {'yes' if r['ok'] else 'NO ':<3} {first.get('where')!s:<22} "
                f"{near:>5.0%} {r['snapshots']:>5} {float(r['snapshot_cpu']):>6.2f} {slow:>6.1f}"  # type: ignore[arg-type]
            )
    doc = {
        "benchmark": "peak_sites",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "command": " ".join([os.path.relpath(sys.executable, ROOT), *sys.argv]),
        "ok": sum(1 for r in results if r.get("ok")),
        "cases": len(results),
        "results": results,
    }
    path = os.path.join(HERE, "results", "peak_sites.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"{doc['ok']} of {doc['cases']} cases list the script's own line first; wrote {path}")
    return 0 if doc["ok"] == doc["cases"] else 1


if __name__ == "__main__":
    sys.exit(main())
