"""Core overhead figures: import cost, the optimize() footprint, rss()/usage() latency.

Run: ``.venv/bin/python benchmarks/core_overhead.py`` (prints JSON). Each
figure is the median of several fresh interpreters, compared with a bare
interpreter doing the same reads of /proc.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

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

CASES = {
    "bare": "pass",
    "import hivemem": "import hivemem",
    "import hivemem + optimize()": "import hivemem\nhivemem.optimize()\nhivemem.usage()",
    "import psutil (reference)": "import psutil",
}


def measure(body: str, runs: int = 9) -> tuple[float, float]:
    mem, secs = [], []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(body=body)], capture_output=True, text=True, check=True
        ).stdout.split()
        mem.append(int(out[0]))
        secs.append(float(out[1]))
    return statistics.median(mem), statistics.median(secs)


def latency(stmt: str, number: int = 20000) -> float:
    import timeit

    import hivemem  # noqa: F401

    best = min(timeit.repeat(stmt, setup="import hivemem", number=number, repeat=5))
    return best / number


def main() -> None:
    results: dict[str, object] = {}
    bare_mem, bare_t = measure(CASES["bare"])
    for name, body in CASES.items():
        mem, secs = measure(body)
        results[name] = {"rss_bytes_over_bare": mem - bare_mem, "seconds_over_bare": secs - bare_t}
    results["rss() seconds per call"] = latency("hivemem.rss()")
    results["usage() seconds per call"] = latency("hivemem.usage()", number=2000)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
