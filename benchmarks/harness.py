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
``TARGET_MB``     (optional) the target given to ``optimize()`` (default 90:
                  the README's one-liner, ``hivemem.optimize(target_mb=90)``)
``AGGRESSIVENESS`` (optional) a ceiling passed to ``optimize()``; by default
                  none is passed, so the baseline is the default call, which
                  climbs cheap -> moderate -> aggressive as far as the target needs
``WHY``           (optional) an honest sentence for the table when hivemem is
                  not expected to reach reclaim 0.9 on this scenario
``GOVERN``        (optional) keyword arguments for ``hivemem.govern()`` in the
                  ``governor`` baseline (default: ``budget`` = ``TARGET_MB``, or
                  1.5 x the measured floor)

Baselines (each in its own fresh process, same build):

``nothing``   measure only
``gc``        ``gc.collect()``
``recipe``    the 10-1-1 recipe often recommended: ``gc.set_threshold(10, 1, 1)``,
              50 full collections, ``re.purge()``, ``linecache.clearcache()``
``optimize``  ``hivemem.optimize(target_mb=...)``, the default call (plus
              ``aggressiveness=`` only where the scenario sets a ceiling); the
              child also records RSS in parts (``_explain.rss_parts()``) right
              after, for the table that checks the parts add up to RSS
``governor``  ``hivemem.govern()`` started before the build and running
              throughout; "after" is read once the build is done and RSS is
              under the budget, or 5 s later (only when this build of hivemem
              has ``govern``). Its "before" is RSS when the build ended, with
              the governor already at work; its reclaim is measured from the
              ``nothing`` run's "before" (what the program reached unmanaged)

``reclaim = (before - after) / (before - floor)``. Every figure is RSS read
from ``/proc/self/statm`` in the child; CPU time is the child's process time
spent in the baseline (for ``governor``: the whole process's CPU time minus
the same build's CPU time in the ``nothing`` run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
BASELINES = ("nothing", "gc", "recipe", "optimize", "governor")
#: The README's one-liner, ``hivemem.optimize(target_mb=90)``: the optimize baseline's default target.
DEFAULT_TARGET_MB = 90

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
    governor = None
    if mode == 'governor':
        import hivemem
        if 'govern' not in hivemem._LAZY:
            print('@@RESULT@@' + json.dumps({{'scenario': {name!r}, 'mode': mode,
                  'unavailable': 'this build of hivemem has no hivemem.govern()'}}))
            raise SystemExit(0)
        governor = hivemem.govern(**{govern!r})
    c_build, t_build = time.process_time(), time.perf_counter()
    state = scenario.build()
    out['build_seconds'] = time.perf_counter() - t_build
    out['build_cpu_seconds'] = time.process_time() - c_build
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
        options = {{}} if {aggressiveness!r} is None else {{'aggressiveness': {aggressiveness!r}}}
        report = hivemem.optimize(target_mb={target_mb!r}, **options)
        out['report'] = report.to_dict()
        out['report_text'] = str(report)
    elif mode == 'governor':
        # let it settle: until RSS is under the budget, or {settle!r} s have passed
        budget = getattr(governor, 'budget', None) or 0
        deadline = t + {settle!r}
        while time.perf_counter() < deadline and not (budget and rss() <= budget):
            time.sleep(0.05)
        out['budget'] = budget
    out['seconds'] = time.perf_counter() - t
    out['cpu_seconds'] = time.process_time() - c
    out['after'] = rss()
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                out['peak'] = int(line.split()[1]) * 1024
    if governor is not None:
        out['process_cpu_seconds'] = time.process_time()
        out['governor'] = repr(governor)
        events = list(getattr(governor, 'events', ()) or ())
        out['governor_events'] = len(events)
        stop = getattr(governor, 'stop', None)
        if callable(stop):
            stop()
    if mode in ('nothing', 'optimize'):
        # RSS in parts, read after the baseline's own figures: do they add up? (docs/optimize.md)
        from hivemem._measure.explain import SUMMED, rss_parts
        rss_parts()  # warm up: the first call loads what it needs
        parts_rss = rss()
        parts = rss_parts()
        if parts is not None:
            out['parts'] = parts
            out['parts_summed'] = sum(parts.get(k, 0) for k in SUMMED)
            out['parts_rss'] = (parts_rss + rss()) // 2
    out['checksum_after'] = scenario.checksum(state)
    {after_hook}
print('@@RESULT@@' + json.dumps(out, default=str))
"""


def load(name: str) -> object:
    """Import ``benchmarks/scenarios/<name>.py`` (for its constants; nothing is built)."""
    import importlib

    for path in (SRC, HERE):
        if path not in sys.path:
            sys.path.insert(0, path)
    return importlib.import_module("scenarios." + name)


def scenario_names() -> list[str]:
    """Every scenario module present, sorted (engineers add them as strategies land)."""
    return sorted(
        f[:-3]
        for f in os.listdir(os.path.join(HERE, "scenarios"))
        if f.endswith(".py") and not f.startswith("_")
    )


def run_child(
    name: str,
    mode: str,
    *,
    target_mb: float | None = None,
    aggressiveness: str | None = None,
    govern: dict[str, object] | None = None,
    settle: float = 5.0,
    after_hook: str = "",
    timeout: float = 600,
) -> dict[str, object]:
    """Run one scenario under one baseline (or ``floor``) in a fresh interpreter."""
    code = CHILD.format(
        settle=settle,
        src=SRC,
        here=HERE,
        name=name,
        mode=mode,
        target_mb=target_mb,
        aggressiveness=aggressiveness,
        govern=dict(govern or {}),
        after_hook=textwrap.dedent(after_hook) or "pass",
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"scenario {name} ({mode}) failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("@@RESULT@@")][-1]
    return json.loads(line[len("@@RESULT@@") :])  # type: ignore[no-any-return]


def _best(runs: list[dict[str, object]], mode: str = "") -> dict[str, object]:
    """The run with the least wall time in the baseline; every run's 'after' is kept alongside.

    For the governor the wall time is only the settling wait and its result varies
    from run to run (when its CPU budget allows a pass), so the run with the median
    'after' is kept instead.
    """
    if mode == "governor" and all("after" in r for r in runs):
        best = dict(sorted(runs, key=lambda r: int(r["after"]))[len(runs) // 2])  # type: ignore[call-overload]
        best["chosen"] = "median after"
    else:
        best = dict(min(runs, key=lambda r: float(r.get("seconds", 0.0))))  # type: ignore[arg-type]
    if len(runs) > 1:
        best["runs"] = len(runs)
        best["after_all"] = [r.get("after") for r in runs]
        best["seconds_all"] = [r.get("seconds") for r in runs]
    return best


def run_scenario(
    name: str,
    *,
    baselines: tuple[str, ...] = BASELINES,
    target_mb: float | None = None,
    aggressiveness: str | None = None,
    repeat: int = 1,
) -> dict[str, object]:
    """Floor plus every baseline; returns before/after/reclaim/checksum per baseline.

    *target_mb* and *aggressiveness* default to the scenario's ``TARGET_MB``
    and ``AGGRESSIVENESS``; without either, the baseline is the default call,
    ``optimize(target_mb=DEFAULT_TARGET_MB)``. A caller that names a level
    and no target (``bench_strategies.py``: ``aggressiveness="aggressive"``)
    gets a pass without a target, as before. With *repeat* > 1 each baseline
    runs that many times and the fastest run is kept (timings are noisy on a
    shared machine).
    """
    mod = load(name)
    scenario_target = getattr(mod, "TARGET_MB", None)
    level = aggressiveness or getattr(mod, "AGGRESSIVENESS", None)
    if target_mb is None:
        target_mb = scenario_target
        if target_mb is None and level is None:
            target_mb = DEFAULT_TARGET_MB
    floor = run_child(name, "floor")
    govern = getattr(mod, "GOVERN", None)
    if govern is None:
        # default budget: the scenario's target, or 1.5x the floor (CRITICAL, at 0.95 of it, sits above it)
        budget = (
            int(scenario_target * 2**20) if scenario_target else int(1.5 * int(floor["rss"]))  # type: ignore[call-overload]
        )
        govern = {"budget": budget}
    result: dict[str, object] = {
        "scenario": name,
        "description": getattr(mod, "DESCRIPTION", name),
        "targeted": bool(getattr(mod, "TARGETED", False)),
        "why": getattr(mod, "WHY", None),
        "target_mb": target_mb,
        "aggressiveness": level,
        "govern": govern,
        "floor": floor["rss"],
        "baselines": {},
    }
    build_cpu = None
    for mode in baselines:
        runs = [
            run_child(name, mode, target_mb=target_mb, aggressiveness=level, govern=govern)
            for _ in range(max(1, repeat))
        ]
        r = _best(runs, mode)
        if "unavailable" in r:
            result["baselines"][mode] = r  # type: ignore[index]
            continue
        before, after = int(r["before"]), int(r["after"])  # type: ignore[call-overload]
        unmanaged = result["baselines"].get("nothing")  # type: ignore[attr-defined]
        if mode == "governor" and unmanaged:
            before = int(unmanaged["before"])
            r["before_unmanaged"] = before
        span = before - int(floor["rss"])  # type: ignore[call-overload]
        r["reclaim"] = (before - after) / span if span > 0 else None
        r["checksum_ok"] = r["checksum_before"] == r["checksum_after"] == floor["checksum"]
        if mode == "nothing":
            build_cpu = r.get("build_cpu_seconds")
        if mode == "governor" and build_cpu is not None:
            # the governor works during the build too: charge it the extra CPU over a plain build
            r["cpu_seconds"] = float(r["build_cpu_seconds"]) - float(build_cpu) + float(r["cpu_seconds"])  # type: ignore[arg-type]
        result["baselines"][mode] = r  # type: ignore[index]
    return result


#: A child's own memory figures (Linux /proc), for child code to include: its RSS now, a reset of
#: the kernel's peak RSS (VmHWM) and the peak since.
PROC_FUNCS = """
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
def reset_peak():
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
def peak():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
"""


def glibc_default_env() -> dict[str, str]:
    """This environment less glibc tunables (Dask's Nanny sets MALLOC_TRIM_THRESHOLD_, for one):
    children measured with it start from glibc's defaults."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}


def child_json(
    code: str, *, timeout: float, env: dict[str, str] | None = None, cwd: str | None = None
) -> dict[str, object]:
    """Run *code* in a fresh interpreter; its last stdout line is JSON. A failed child raises
    RuntimeError with the tails of its output."""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_header(benchmark: str) -> dict[str, object]:
    """How a result written to ``--out`` starts: the benchmark, the command that ran it, Python,
    platform and local time."""
    import platform
    import time

    return {
        "benchmark": benchmark,
        "command": " ".join([os.path.relpath(sys.executable, os.getcwd()), *sys.argv]),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_out(path: str, result: object) -> None:
    """Write *result* as JSON to *path* (a ``--out`` argument) and say where."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"saved {os.path.relpath(path)}")


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

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        libc = " ".join(platform.libc_ver())
    except Exception:
        libc = ""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "ram_bytes": os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"),
        "libc": libc,
        "date": datetime.date.today().isoformat(),
    }


if __name__ == "__main__":
    for n in sys.argv[1:] or scenario_names():
        res = run_scenario(n)
        print(
            json.dumps(
                {
                    m: {k: v for k, v in r.items() if k not in ("report",)}
                    for m, r in res["baselines"].items()  # type: ignore[attr-defined]
                },
                indent=1,
            )
        )
