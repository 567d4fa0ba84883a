"""Run a benchmark scenario in fresh interpreters and measure what each baseline returns.

A scenario is a module in ``benchmarks/scenarios/`` that defines:

``DESCRIPTION``   one line for tables
``TARGETED``      True when hivemem has a strategy aimed at this cause
``build()``       creates the bloat the way a real program would and returns
                  the state that survives (the program's live data)
``build_floor()`` builds only that surviving data directly, in a fresh
                  process: its RSS is the scenario's floor
``checksum(state) -> str``   the program's answers, computed from the state
``prepare(state)`` (optional) registers the state with hivemem
                  (``hivemem.compactable(...)``, ``register_cache(...)``),
                  as the application would at start-up; called for every
                  baseline so that registration costs the same everywhere

Baselines (each in its own fresh process, same build):

``nothing``   measure only
``gc``        ``gc.collect()``
``recipe``    the source report's recipe: ``gc.set_threshold(10, 1, 1)``,
              50 full collections, ``re.purge()``, ``linecache.clearcache()``
``optimize``  ``hivemem.optimize(target_mb=...)`` at the given aggressiveness

``reclaim = (before - after) / (before - floor)``. Every figure is RSS read
from ``/proc/self/statm`` in the child; CPU time is the child's process time
spent in the baseline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
BASELINES = ("nothing", "gc", "recipe", "optimize")

CHILD = r"""
import gc, json, os, sys, time
sys.path[:0] = [{src!r}, {here!r}]
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
import importlib
scenario = importlib.import_module('scenarios.' + {name!r})
mode = {mode!r}
out = {{'scenario': {name!r}, 'mode': mode}}
if mode == 'floor':
    state = scenario.build_floor()
    gc.collect()
    out['rss'] = rss()
    out['checksum'] = scenario.checksum(state)
else:
    state = scenario.build()
    if hasattr(scenario, 'prepare'):
        scenario.prepare(state)
    out['checksum_before'] = scenario.checksum(state)
    out['before'] = rss()
    t, c = time.perf_counter(), time.process_time()
    if mode == 'gc':
        gc.collect()
    elif mode == 'recipe':
        import re, linecache
        gc.set_threshold(10, 1, 1)
        for _ in range(50):
            gc.collect()
        re.purge()
        linecache.clearcache()
    elif mode == 'optimize':
        import hivemem
        report = hivemem.optimize(target_mb={target_mb!r}, aggressiveness={aggressiveness!r})
        out['report'] = report.to_dict()
        out['report_text'] = str(report)
    out['seconds'] = time.perf_counter() - t
    out['cpu_seconds'] = time.process_time() - c
    out['after'] = rss()
    out['checksum_after'] = scenario.checksum(state)
    {after_hook}
print('@@RESULT@@' + json.dumps(out))
"""


def run_child(
    name: str,
    mode: str,
    *,
    target_mb: float = 90,
    aggressiveness: str = "aggressive",
    after_hook: str = "",
    timeout: float = 600,
) -> dict[str, object]:
    """Run one scenario under one baseline (or ``floor``) in a fresh interpreter."""
    code = CHILD.format(
        src=SRC,
        here=HERE,
        name=name,
        mode=mode,
        target_mb=target_mb,
        aggressiveness=aggressiveness,
        after_hook=textwrap.dedent(after_hook) or "pass",
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"scenario {name} ({mode}) failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("@@RESULT@@")][-1]
    return json.loads(line[len("@@RESULT@@") :])  # type: ignore[no-any-return]


def run_scenario(
    name: str,
    *,
    baselines: tuple[str, ...] = BASELINES,
    target_mb: float = 90,
    aggressiveness: str = "aggressive",
) -> dict[str, object]:
    """Floor plus every baseline; returns before/after/reclaim/checksum per baseline."""
    floor = run_child(name, "floor")
    result: dict[str, object] = {"scenario": name, "floor": floor["rss"], "baselines": {}}
    for mode in baselines:
        r = run_child(name, mode, target_mb=target_mb, aggressiveness=aggressiveness)
        before, after = int(r["before"]), int(r["after"])  # type: ignore[call-overload]
        span = before - int(floor["rss"])  # type: ignore[call-overload]
        r["reclaim"] = (before - after) / span if span > 0 else None
        r["checksum_ok"] = r["checksum_before"] == r["checksum_after"] == floor["checksum"]
        result["baselines"][mode] = r  # type: ignore[index]
    return result


def save(name: str, data: object) -> str:
    """Write ``benchmarks/results/<name>.json`` and return its path."""
    path = os.path.join(HERE, "results", f"{name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2, default=str)
    return path


def machine() -> dict[str, object]:
    """The machine, Python and date a result was measured on (every table states them)."""
    import datetime
    import platform

    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "ram_bytes": os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"),
        "date": datetime.date.today().isoformat(),
    }


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(
        f[:-3]
        for f in os.listdir(os.path.join(HERE, "scenarios"))
        if f.endswith(".py") and f != "__init__.py"
    )
    for n in names:
        res = run_scenario(n)
        print(
            json.dumps(
                {
                    m: {k: v for k, v in r.items() if k not in ("report",)}
                    for m, r in res["baselines"].items()
                },
                indent=1,
            )
        )  # type: ignore[union-attr]
