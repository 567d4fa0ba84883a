"""Figures for the built-in strategies, each measured in fresh interpreters.

    .venv/bin/python benchmarks/bench_strategies.py            # everything (~10 min on a quiet machine)
    .venv/bin/python benchmarks/bench_strategies.py --quick    # scenarios only, one run each
    .venv/bin/python benchmarks/bench_strategies.py sparse_survivors caches   # some scenarios

1. Scenarios (``benchmarks/scenarios/``): RSS after nothing, ``gc.collect()``,
   the 10-1-1 recipe and ``hivemem.optimize(aggressiveness="aggressive")``,
   with reclaim against a measured floor (``harness.run_scenario``).
2. Duplicate strings, prevention vs repair: the table read plainly and
   through ``hivemem.StringPool``; then ``dedup_strings`` alone (moderate)
   and ``dedup_strings`` + ``compact`` (aggressive), RSS and allocator bytes.
3. The cost of ``gc.set_threshold(10, 1, 1)`` on an allocation-heavy
   workload, against the default thresholds (best of 3 fresh runs each).
4. Extra collections: 1 full collection vs 50, objects and RSS returned.

Results go to ``benchmarks/results/strategies.json``.
"""

from __future__ import annotations

import os
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness

SCENARIOS = ("sparse_survivors", "glibc_fragmentation", "cyclic_garbage", "caches", "duplicate_strings")
BASELINES = ("nothing", "gc", "recipe", "optimize")
MiB = 2**20


def child(code: str, timeout: float = 900) -> dict[str, object]:
    """Run *code* in a fresh interpreter with hivemem and the scenarios importable; return its JSON line."""
    prelude = f"import sys; sys.path[:0] = [{harness.SRC!r}, {harness.HERE!r}]\n"
    return harness.child_json(prelude + textwrap.dedent(code), timeout=timeout)


def scenarios(names: tuple[str, ...]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in names:
        res = harness.run_scenario(name, baselines=BASELINES, aggressiveness="aggressive")
        for r in res["baselines"].values():  # type: ignore[attr-defined]
            r.pop("report", None)
        out[name] = res
        print(f"\n{name}: floor {res['floor'] / MiB:.1f} MiB", flush=True)
        for mode, r in res["baselines"].items():  # type: ignore[attr-defined]
            reclaim = "-" if r["reclaim"] is None else f"{r['reclaim']:.3f}"
            print(
                f"  {mode:9s} {r['before'] / MiB:8.1f} -> {r['after'] / MiB:8.1f} MiB  reclaim {reclaim:>6}  "
                f"{r['seconds']:6.2f} s  data intact: {r['checksum_ok']}",
                flush=True,
            )
    return out


DUP = """
import gc, json, sys, time
import hivemem
from scenarios import duplicate_strings as d
mode = {mode!r}
base = hivemem.rss()
t = time.perf_counter()
if mode == "pool":
    import csv, io
    pool = hivemem.StringPool()
    rows = [pool.map(r) for r in csv.reader(io.StringIO(d._text()))]
else:
    rows = d.build()
    pool = None
gc.collect()
out = {{"mode": mode, "build_seconds": time.perf_counter() - t, "rss": hivemem.rss(), "base": base}}
if pool is not None:
    out["pool"] = pool.to_dict()
frag = hivemem.fragmentation()
out["pymalloc_live"] = frag.pymalloc_live
out["pymalloc_free"] = frag.pymalloc_free
if mode in ("moderate", "aggressive"):
    hivemem.register_container(rows)
    hivemem.compactable(rows)
    report = hivemem.optimize(aggressiveness=mode)
    step = report.step("dedup_strings")
    out["dedup"] = step.stats
    out["dedup_seconds"] = step.seconds
    out["dedup_rss_freed"] = step.freed
    out["after"] = hivemem.rss()
    out["report"] = str(report)
    frag = hivemem.fragmentation()
    out["pymalloc_free_after"] = frag.pymalloc_free
print(json.dumps(out, default=str))
"""


def duplicate_strings() -> dict[str, object]:
    runs = {m: child(DUP.format(mode=m)) for m in ("plain", "pool", "moderate", "aggressive")}
    plain, pool = runs["plain"], runs["pool"]
    saved_rss = int(plain["rss"]) - int(pool["rss"])  # type: ignore[call-overload]
    saved_alloc = int(plain["pymalloc_live"]) - int(pool["pymalloc_live"])  # type: ignore[call-overload]
    print("\nduplicate strings (2M rows x 4 columns)")
    print(f"  read plainly:           RSS {int(plain['rss']) / MiB:8.1f} MiB")  # type: ignore[call-overload]
    print(
        f"  read through StringPool: RSS {int(pool['rss']) / MiB:8.1f} MiB  "  # type: ignore[call-overload]
        f"(saves {saved_rss / MiB:.1f} MiB RSS, {saved_alloc / MiB:.1f} MiB of live pymalloc blocks; "
        f"pool.saved {int(pool['pool']['saved']) / MiB:.1f} MiB)"  # type: ignore[index, call-overload]
    )
    for m in ("moderate", "aggressive"):
        r = runs[m]
        dd = r["dedup"]
        print(
            f"  after the fact, {m:10s}: RSS {int(r['rss']) / MiB:8.1f} -> {int(r['after']) / MiB:8.1f} MiB; "  # type: ignore[call-overload]
            f"dedup merged {dd['strings_merged']:,} strings, "  # type: ignore[index]
            f"{int(dd['allocator_bytes']) / MiB:.1f} MiB freed "  # type: ignore[index, call-overload]
            f"in the allocator, dedup step's RSS change {int(r['dedup_rss_freed'] or 0) / MiB:+.1f} MiB",  # type: ignore[call-overload]
            flush=True,
        )
    return {"runs": runs, "pool_saves_rss": saved_rss, "pool_saves_pymalloc_live": saved_alloc}


GC_COST = """
import gc, json, time
import hivemem
thresholds = {thresholds!r}
if thresholds:
    gc.set_threshold(*thresholds)
def workload():
    # allocation-heavy: parse-like churn of small containers, a tenth kept
    kept = []
    for i in range(400_000):
        row = {{"id": i, "tags": [i, i + 1], "meta": {{"n": i}}}}
        if i % 10 == 0:
            kept.append(row)
    return kept
t, c = time.perf_counter(), time.process_time()
with hivemem.gc_pauses() as pauses:
    kept = workload()
out = {{"thresholds": list(gc.get_threshold()), "seconds": time.perf_counter() - t,
        "cpu_seconds": time.process_time() - c, "gc": pauses.to_dict(), "rss": hivemem.rss()}}
print(json.dumps(out))
"""


def gc_threshold_cost(repeat: int = 3) -> dict[str, object]:
    res: dict[str, object] = {}
    print(f"\ngc.set_threshold(10, 1, 1) on an allocation-heavy workload (400k rows, best of {repeat})")
    for label, th in (("default", None), ("10-1-1", (10, 1, 1))):
        runs = [child(GC_COST.format(thresholds=th)) for _ in range(repeat)]
        best = min(runs, key=lambda r: float(r["seconds"]))  # type: ignore[arg-type]
        best["all_seconds"] = [r["seconds"] for r in runs]
        res[label] = best
        g = best["gc"]
        print(
            f"  {label:8s} thresholds {best['thresholds']}: {best['seconds']:.2f} s wall, "
            f"{g['collections']:,} collections, {g['seconds']:.2f} s in gc ({g['fraction']:.0%}), "  # type: ignore[index]
            f"max pause {g['max_seconds'] * 1e3:.1f} ms, RSS {int(best['rss']) / MiB:.1f} MiB",  # type: ignore[index, call-overload]
            flush=True,
        )
    return res


EXTRA_PASSES = """
import gc, json, sys, time
import hivemem
gc.disable()
class Node:
    def __init__(self, i):
        self.me = self
        self.data = [i] * 4
for i in range(500_000):
    Node(i)
before = hivemem.rss()
t = time.perf_counter(); first = gc.collect(); t1 = time.perf_counter() - t
after_one = hivemem.rss()
blocks = sys.getallocatedblocks()
t = time.perf_counter(); more = [gc.collect() for _ in range(49)]; t49 = time.perf_counter() - t
print(json.dumps({"before": before, "after_one": after_one, "after_fifty": hivemem.rss(),
                  "first_collected": first, "more_collected": sum(more),
                  "blocks_delta": sys.getallocatedblocks() - blocks,
                  "first_seconds": t1, "extra_49_seconds": t49}))
"""


def extra_passes() -> dict[str, object]:
    r = child(EXTRA_PASSES)
    print("\none full collection vs 50 (500k cyclic objects)")
    print(
        f"  pass 1: {r['first_collected']:,} objects, RSS {int(r['before']) / MiB:.1f} -> "  # type: ignore[call-overload]
        f"{int(r['after_one']) / MiB:.1f} MiB in {float(r['first_seconds']) * 1e3:.0f} ms; "  # type: ignore[arg-type]
        f"passes 2-50: {r['more_collected']} objects, RSS {int(r['after_fifty']) / MiB:.1f} MiB, "  # type: ignore[call-overload]
        f"{float(r['extra_49_seconds']) * 1e3:.0f} ms spent",  # type: ignore[arg-type]
        flush=True,
    )
    return r


def markdown(data: dict[str, object]) -> str:
    """The scenario table for docs/strategies.md."""
    lines = [
        "| scenario | floor | before | nothing | `gc.collect()` | recipe | `optimize()` "
        "| reclaim (gc / recipe / optimize) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, res in data["scenarios"].items():  # type: ignore[attr-defined]
        b = res["baselines"]
        cells = [f"{b[m]['after'] / MiB:.0f} MiB" for m in BASELINES]
        rec = " / ".join(
            f"{b[m]['reclaim']:.3f}".replace("-0.000", "0.000") for m in ("gc", "recipe", "optimize")
        )
        lines.append(
            f"| `{name}` | {res['floor'] / MiB:.0f} MiB | {b['optimize']['before'] / MiB:.0f} MiB | "
            + " | ".join(cells)
            + f" | {rec} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    names = tuple(a for a in argv if not a.startswith("-")) or SCENARIOS
    data: dict[str, object] = {"machine": harness.machine(), "scenarios": scenarios(names)}
    if not quick and names == SCENARIOS:
        data["duplicate_strings_paths"] = duplicate_strings()
        data["gc_threshold_cost"] = gc_threshold_cost()
        data["extra_gc_passes"] = extra_passes()
    path = harness.save("strategies", data)
    print("\n" + markdown(data))
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
