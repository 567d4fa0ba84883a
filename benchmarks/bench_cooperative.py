"""Figures for the cooperative strategies, each heavy measurement in a fresh interpreter.

    .venv/bin/python benchmarks/bench_cooperative.py            # everything (~2-3 minutes)
    .venv/bin/python benchmarks/bench_cooperative.py pool lazy  # some sections

Sections:

``pool``      peak RSS (VmHWM, reset through /proc/self/clear_refs) and time of a
              buffer-churning loop with and without ``hivemem.BufferPool``
``lazy``      RSS and start-up time of a program that imports a heavy module
              lazily (never touched) or eagerly: numpy and asyncio
``unload``    what ``unload_modules`` gives back after http.server and its imports
              were used once and released, against the same pass without it
``compress``  300 MB of log-like text values: RSS before and after an aggressive
              ``optimize()`` (compress, then trim), and every value read back
``spill``     500 MB of 1 MiB bytes and array values: RSS before and after, and
              what reading one value back costs

Timings are the best of several runs (the machine is shared). Results go to
``benchmarks/results/cooperative.json``.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import PROC_FUNCS, SRC, child_json, machine, run_child, save  # noqa: E402

MiB = 2**20

PRELUDE = f"""
import json, os, sys, time
sys.path.insert(0, {SRC!r})
{PROC_FUNCS}"""


def child(code: str, timeout: float = 600) -> dict[str, object]:
    """Run *code* (after PRELUDE) in a fresh interpreter; it prints one JSON line."""
    return child_json(PRELUDE + textwrap.dedent(code), timeout=timeout)


# ----------------------------------------------------------------------------- pool
POOL = """
import random
import hivemem
mode, sizes_mib, count, inflight_max, fill = {mode!r}, {sizes!r}, {count!r}, {inflight!r}, {fill!r}
rng = random.Random(1)
sizes = [int(rng.choice(sizes_mib) * (1 << 20)) for _ in range(count)]
pool = hivemem.BufferPool("{max_bytes}") if mode == "pool" else None
inflight, total = [], 0
base = rss()
with open({path!r}, "rb", buffering=0) as f:
    reset_peak()
    t = time.perf_counter()
    for n in sizes:
        # a read loop: a fresh buffer per message, filled from a (cached) file, a few in flight
        buf = pool.acquire(n) if pool is not None else memoryview(bytearray(n))
        f.seek(0)
        total += f.readinto(buf if fill is None else buf[:fill])
        inflight.append(buf)
        if len(inflight) == inflight_max:
            old = inflight.pop(0)
            if pool is not None:
                pool.release(old)
            del old
    seconds = time.perf_counter() - t
result = {{"mode": mode, "seconds": seconds, "peak": peak(), "base": base, "end": rss(), "total": total}}
print(json.dumps(result))
"""

POOL_WORKLOADS = {
    # messages of 256 KiB-2 MiB, each buffer filled completely
    "medium": {"sizes": [0.25, 0.5, 1, 2], "count": 4000, "inflight": 8, "max_bytes": "64MB", "fill": None},
    # 4-40 MiB blobs (40 MiB is above glibc's largest mmap threshold: always a fresh mmap)
    "large": {"sizes": [4, 12, 40], "count": 150, "inflight": 4, "max_bytes": "256MB", "fill": None},
    # 40 MiB receive buffers sized for the largest message, 64 KiB of each used
    "scratch": {"sizes": [40], "count": 300, "inflight": 2, "max_bytes": "128MB", "fill": 65536},
}


def bench_pool(runs: int = 3) -> dict[str, object]:
    path = os.path.join(HERE, "results", ".pool-input.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(40 * MiB))
    out: dict[str, object] = {
        "workload": "read loop: a buffer per message, readinto() from a cached 40 MiB file, a few in flight"
    }
    try:
        for name, spec in POOL_WORKLOADS.items():
            row: dict[str, object] = {"spec": spec}
            for mode in ("plain", "pool"):
                results = [child(POOL.format(mode=mode, path=path, **spec)) for _ in range(runs)]
                best = min(results, key=lambda r: r["seconds"])  # type: ignore[arg-type, return-value]
                row[mode] = {
                    "seconds_best": best["seconds"],
                    "seconds_all": [r["seconds"] for r in results],
                    "peak_growth_best": min(int(r["peak"]) - int(r["base"]) for r in results),  # type: ignore[call-overload]
                    "total": best["total"],
                }
            assert row["plain"]["total"] == row["pool"]["total"]  # type: ignore[index]
            out[name] = row
    finally:
        os.unlink(path)
    return out


# ----------------------------------------------------------------------------- lazy
LAZY = """
t0 = time.perf_counter()
base = rss()
mode, name = {mode!r}, {name!r}
if mode == "eager":
    import importlib
    importlib.import_module(name)
elif mode == "lazy":
    import hivemem
    hivemem.lazy_import(name)
else:
    import hivemem
print(json.dumps({{"rss": rss(), "import_seconds": time.perf_counter() - t0}}))
"""


def bench_lazy(runs: int = 5) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in ("numpy", "asyncio"):
        row: dict[str, object] = {}
        for mode in ("none", "eager", "lazy"):
            rss, wall = [], []
            for _ in range(runs):
                t = time.perf_counter()
                r = child(LAZY.format(mode=mode, name=name))
                wall.append(time.perf_counter() - t)
                rss.append(int(r["rss"]))  # type: ignore[call-overload]
            row[mode] = {"rss": min(rss), "startup_seconds_best": min(wall)}
        row["rss_saved_by_lazy"] = row["eager"]["rss"] - row["lazy"]["rss"]  # type: ignore[index]
        row["startup_saved_seconds"] = (
            row["eager"]["startup_seconds_best"] - row["lazy"]["startup_seconds_best"]  # type: ignore[index]
        )
        out[name] = row
    return out


# ----------------------------------------------------------------------------- unload
UNLOAD = """
import gc, hivemem
sys.path.insert(0, {here!r})
from scenarios import heavy_import as scenario
state = scenario.build()
scenario.prepare(state)
with_unload = {with_unload!r}
gc.collect()
hivemem.optimize(strategies=["gc", "trim"])  # same starting point for both runs
from hivemem._measure.native import pymalloc_stats
before, py_before = rss(), pymalloc_stats()["allocated"]
names = ["gc", "unload_modules", "trim"] if with_unload else ["gc", "trim"]
report = hivemem.optimize(strategies=names, aggressiveness="aggressive")
after, py_after = rss(), pymalloc_stats()["allocated"]
step = {{s.name: s.to_dict() for s in report.steps}}.get("unload_modules", {{}})
import http.server
again = http.server.BaseHTTPRequestHandler.date_time_string(None, 0)
print(json.dumps({{"before": before, "after": after, "pymalloc_freed": py_before - py_after, "step": step,
                  "reimport_ok": again == state["answer"]}}))
"""


def bench_unload(runs: int = 3) -> dict[str, object]:
    out: dict[str, object] = {"modules": "http.server + http.client, email.*, html, socketserver, mimetypes"}
    for with_unload in (False, True):
        results = [child(UNLOAD.format(here=HERE, with_unload=with_unload)) for _ in range(runs)]
        drops = [int(r["before"]) - int(r["after"]) for r in results]  # type: ignore[call-overload]
        key = "with_unload" if with_unload else "without_unload"
        best = results[drops.index(max(drops))]
        out[key] = {
            "rss_freed_best": max(drops),
            "rss_freed_all": drops,
            "pymalloc_live_bytes_freed": best["pymalloc_freed"],
            "reimport_ok": best["reimport_ok"],
        }
        if with_unload:
            stats = best["step"].get("stats", {})  # type: ignore[attr-defined]
            out[key]["unloaded"] = stats.get("unloaded")  # type: ignore[index]
            out[key]["kept"] = stats.get("kept")  # type: ignore[index]
            out[key]["seconds"] = best["step"].get("seconds")  # type: ignore[attr-defined, index]
    with_, without = out["with_unload"], out["without_unload"]
    out["unload_gives_back_rss"] = with_["rss_freed_best"] - without["rss_freed_best"]  # type: ignore[index]
    out["unload_gives_back_to_pymalloc"] = (
        with_["pymalloc_live_bytes_freed"] - without["pymalloc_live_bytes_freed"]  # type: ignore[index]
    )
    return out


# ----------------------------------------------------------------------------- stores
def bench_store(name: str, raw: int, after_hook: str = "") -> dict[str, object]:
    r = run_child(name, "optimize", target_mb=64, aggressiveness="aggressive", after_hook=after_hook)
    before, after = int(r["before"]), int(r["after"])  # type: ignore[call-overload]
    steps = {s["name"]: s for s in r["report"]["steps"]}  # type: ignore[index]
    key = "compress" if name == "compressible_values" else "spill"
    out = {
        "raw_bytes": raw,
        "rss_before": before,
        "rss_after": after,
        "rss_drop": before - after,
        "drop_fraction_of_raw": (before - after) / raw,
        "checksum_ok": r["checksum_before"] == r["checksum_after"],
        "pass_seconds": r["seconds"],
        "step": {k: steps[key].get(k) for k in ("freed", "seconds", "summary", "stats")},
        "trim_freed": steps.get("trim", {}).get("freed"),
    }
    for extra in ("read_one_rss", "read_one_len"):
        if extra in r:
            out[extra] = r[extra]
    return out


READ_ONE = """
v = state[3]
out['read_one_len'] = len(memoryview(v).cast('B'))
out['read_one_rss'] = rss() - out['after']
"""


def main(sections: list[str]) -> None:
    results: dict[str, object] = {"machine": machine()}
    path = os.path.join(HERE, "results", "cooperative.json")
    if os.path.exists(path):
        with open(path) as f:
            results.update({k: v for k, v in json.load(f).items() if k != "machine"})
    if "pool" in sections:
        results["pool"] = bench_pool()
    if "lazy" in sections:
        results["lazy"] = bench_lazy()
    if "unload" in sections:
        results["unload"] = bench_unload()
    if "compress" in sections:
        results["compress"] = bench_store("compressible_values", 300 * MiB)
    if "spill" in sections:
        results["spill"] = bench_store("spillable_dataset", 500 * MiB, READ_ONE)
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1, default=str))
    print("saved", save("cooperative", results))


if __name__ == "__main__":
    main(sys.argv[1:] or ["pool", "lazy", "unload", "compress", "spill"])
