"""The one-liner on every scenario: ``hivemem.optimize(target_mb=90)``, and whether the explanation adds up.

For each scenario in ``benchmarks/scenarios/`` (fresh interpreters, see
``harness.py``): its floor, the ``nothing`` baseline (RSS once built) and the
``optimize`` baseline (the default call). Two tables come out:

* the one-liner: before, after, reclaim, whether the target was reached and
  at which level, wall and CPU seconds, answers unchanged;
* the explanation's parts (``_explain.rss_parts()``, read in the child right
  after each baseline): their sum, the smaps total, RSS read around them, and
  the difference in percent, for the built state and the optimized one.

``python benchmarks/bench_optimize.py [scenario ...] [--repeat N]`` prints both
tables as Markdown and merges the scenarios it ran into
``benchmarks/results/optimize.json`` (each keeps the machine and date it was
measured on).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import harness

MiB = 2**20


def _mib(n: object) -> str:
    return f"{int(n) / MiB:.1f}" if isinstance(n, int) else "-"  # type: ignore[call-overload]


def run(names: list[str], repeat: int = 1) -> dict[str, object]:
    out: dict[str, object] = {"scenarios": {}}
    machine = harness.machine()
    for name in names:
        print(f"... {name}", file=sys.stderr, flush=True)
        res = harness.run_scenario(name, baselines=("nothing", "optimize"), repeat=repeat)
        res["machine"] = machine
        out["scenarios"][name] = res  # type: ignore[index]
    return out


def merge(data: dict[str, object]) -> dict[str, object]:
    """This run's scenarios replace the same ones in ``results/optimize.json``; the others stay."""
    path = os.path.join(harness.HERE, "results", "optimize.json")
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError):
        old = {}
    scenarios = dict(old.get("scenarios") or {})
    scenarios.update(data["scenarios"])  # type: ignore[call-overload]
    return {"scenarios": dict(sorted(scenarios.items()))}


def tables(data: dict[str, object]) -> str:
    rows = [
        "| scenario | target | before MiB | after MiB | floor MiB | reclaim | reached | at level | s | cpu s "
        "| answers |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    parts = [
        "| scenario | state | RSS MiB | parts sum MiB | smaps total MiB | difference | other anon MiB "
        "| not resident MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, res in data["scenarios"].items():  # type: ignore[attr-defined]
        opt = res["baselines"]["optimize"]
        report = opt.get("report") or {}
        rows.append(
            f"| `{name}` | {res['target_mb']:g} MiB | {_mib(opt['before'])} | {_mib(opt['after'])} "
            f"| {_mib(res['floor'])} | {opt['reclaim']:.2f} | {'yes' if report.get('reached') else 'no'} "
            f"| {report.get('reached_at') or '-'} | {opt['seconds']:.2f} | {opt['cpu_seconds']:.2f} "
            f"| {'identical' if opt['checksum_ok'] else 'CHANGED'} |"
        )
        for state, mode in (("built", "nothing"), ("optimized", "optimize")):
            r = res["baselines"][mode]
            p = r.get("parts")
            if not p:
                continue
            diff = (r["parts_summed"] - r["parts_rss"]) / r["parts_rss"]
            parts.append(
                f"| `{name}` | {state} | {_mib(r['parts_rss'])} | {_mib(r['parts_summed'])} "
                f"| {_mib(p['total'])} "
                f"| {100 * diff:+.2f}% | {_mib(p.get('other_anon'))} | {_mib(p.get('not_resident'))} |"
            )
    return "\n".join(rows) + "\n\n" + "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", help="default: every scenario")
    parser.add_argument("--repeat", type=int, default=1, help="runs per baseline (fastest kept)")
    args = parser.parse_args(argv)
    data = run(args.scenarios or harness.scenario_names(), repeat=args.repeat)
    print(tables(data))
    print("wrote", harness.save("optimize", merge(data)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
