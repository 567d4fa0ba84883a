"""Survival under a real memory limit: a growing cache kills the process, unless the governor runs.

The limit is a real cgroup v1 group made under this process's own memory
group (see docs/design.md, "Real memory limits in tests"); the workload moves itself
into it first thing. Without the governor the kernel OOM-kills it (137) or
Python raises MemoryError; with the governor it finishes with the same
digest as an unconstrained run. Skipped, with the reason, where no group
can be made. The group is removed afterwards.

``benchmarks/bench_governor.py`` reuses :func:`run_survival` to report the
recovery time (crossing CRITICAL to back under its release threshold).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import pytest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

# The application: results for items 0..N-1 are 1 MiB each and cost ~10 ms of CPU to compute;
# the app caches every result (unbounded) and registers a strategy that evicts its oldest
# entries. Eviction only costs recomputation, never a different answer.
WORKLOAD = r"""
import hashlib, json, os, sys, threading, time
PROCS, GOVERN, ITEMS, WORK = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), int(sys.argv[4])
if PROCS != "-":
    with open(PROCS, "w") as f:
        f.write(str(os.getpid()))

# A fixed mmap threshold (as hivemem.set_malloc_thresholds offers) makes every 1 MiB result its
# own mapping, so an evicted result is back with the OS at once, not parked in malloc's heap.
try:
    import ctypes
    ctypes.CDLL(None).mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
except (OSError, AttributeError):
    pass

cache = {}
lock = threading.Lock()
computed = 0

def compute(i):
    global computed
    computed += 1
    data = hashlib.shake_256(b"item-%d" % i).digest(1 << 20)
    for _ in range(WORK):
        data = data[1:] + hashlib.sha256(data).digest()[:1]
    return data

def get(i):
    with lock:
        v = cache.get(i)
    if v is None:
        v = compute(i)
        with lock:
            cache[i] = v
    return v

events = []
if GOVERN:
    import hivemem

    class EvictOldest:
        "Drop the oldest cached results: as many bytes as RSS is over the pass's target."
        # Declared AGGRESSIVE (recomputing is expensive), so only CRITICAL passes evict: that
        # is what makes this run cross CRITICAL and gives a recovery time. Priority 5: the app
        # knows its cache is the first thing to drop.
        name, priority, aggressiveness = "app.cache", 5, hivemem.AGGRESSIVE

        def apply(self, ctx):
            need, n, freed = ctx.rss() - ctx.target, 0, 0
            with lock:
                while cache and freed < need:
                    freed += len(cache.pop(next(iter(cache))))
                    n += 1
            return hivemem.StrategyResult(f"evicted {n}", stats={"evicted": n, "bytes": freed})

    hivemem.register_strategy(EvictOldest())
    gov = hivemem.govern(interval=0.05)

t0 = time.monotonic()
digest = hashlib.sha256()
for i in list(range(ITEMS)) + list(reversed(range(ITEMS))):
    digest.update(hashlib.sha256(get(i)).digest())
result = {"digest": digest.hexdigest(), "seconds": time.monotonic() - t0, "computed": computed}
if GOVERN:
    gov.stop()
    result["budget"] = gov.budget
    result["limit_source"] = gov._limit.source
    result["events"] = [e.to_dict() for e in gov.events if e.kind in ("level", "act", "escalate")]
print(json.dumps(result))
"""


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int) -> Iterator[str]:
    """A child cgroup v1 memory group with *limit_bytes*; yields its cgroup.procs path; removed after.
    Skips the test where no group can be made (the reason is the skip message)."""
    from .survival_workloads import NoGroup, memory_group

    with contextlib.ExitStack() as stack:
        try:
            procs = stack.enter_context(memory_group(limit_bytes))
        except NoGroup as exc:
            pytest.skip(str(exc))
        yield procs


def run_survival(
    procs: str, *, govern: bool, items: int, work: int, timeout: float = 300
) -> dict[str, object]:
    """Run the workload once; returns its JSON result plus ``returncode`` and ``stderr`` tail."""
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.run(
        [sys.executable, "-c", WORKLOAD, procs, "1" if govern else "0", str(items), str(work)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    out: dict[str, object] = {"returncode": proc.returncode, "stderr": proc.stderr[-2000:]}
    if proc.returncode == 0:
        out.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def recovery_times(events: list[dict[str, object]]) -> list[float]:
    """Seconds from each entry into CRITICAL to the level event that leaves it."""
    times, entered = [], None
    for e in events:
        if e["kind"] != "level":
            continue
        data = e["data"]
        if data["to"] == "critical":  # type: ignore[index]
            entered = e["time"]
        elif data["from"] == "critical" and entered is not None:  # type: ignore[index]
            times.append(float(e["time"]) - float(entered))  # type: ignore[arg-type]
            entered = None
    return times


LIMIT = 200 * 2**20
ITEMS, WORK = 300, 6


@pytest.mark.slow
def test_governor_keeps_a_growing_cache_alive_under_a_real_limit() -> None:
    """200 MiB cgroup, 300 MiB of cache: killed or MemoryError without; same digest with; the app's
    CRITICAL-only strategy ran; any CRITICAL episode ends within 5 s."""
    reference = run_survival("-", govern=False, items=ITEMS, work=WORK)
    assert reference["returncode"] == 0, reference["stderr"]
    with memory_cgroup(LIMIT) as procs:
        bare = run_survival(procs, govern=False, items=ITEMS, work=WORK)
    assert bare["returncode"] == -9 or "MemoryError" in str(bare["stderr"]), bare
    with memory_cgroup(LIMIT) as procs:
        governed = run_survival(procs, govern=True, items=ITEMS, work=WORK)
    assert governed["returncode"] == 0, governed["stderr"]
    assert governed["digest"] == reference["digest"]
    assert governed["budget"] == LIMIT and "cgroup v1" in str(governed["limit_source"])
    events: list[dict[str, object]] = governed["events"]  # type: ignore[assignment]
    critical_passes = [e for e in events if e["kind"] == "act" and e["data"]["pass_level"] == "critical"]  # type: ignore[index]
    # The app's strategy runs at CRITICAL only: the workload needed it. The governor usually runs those
    # passes ahead of the level (growth projected), so CRITICAL itself may never be entered; when it
    # is, it is left within 5 s.
    assert critical_passes, "no CRITICAL pass ran: the test would prove nothing"
    recoveries = recovery_times(events)
    assert all(r < 5.0 for r in recoveries)


# ----------------------------------------------------------------------------- the survival matrix

#: One smaller variant of each class of tests/survival_workloads.py, in a 256 MiB group (the
#: benchmark runs the full matrix, 10 times each, and more variants: benchmarks/bench_survival.py).
_256 = {"limit_mib": 256}
SMALL = {
    "cpu": {"kind": "cpu", "size": 2**20, "rate_mib_s": 500, "total_mib": 700} | _256,
    "sleepy": {"kind": "sleepy", "size": 512 * 1024, "pause": 0.0005, "total_mib": 700} | _256,
    "strs": {"kind": "strs", "size": 2048, "size2": 6144, "total_mib": 700} | _256,
    "threads": {"kind": "threads", "size": 256 * 1024, "threads": 4, "total_mib": 700} | _256,
    "burst": {"kind": "burst", "size": 2**20, "idle": 1.0, "total_mib": 500} | _256,
    "unfreeable": {
        "kind": "unfreeable",
        "size": 2**20,
        "rate_mib_s": 500,
        "total_mib": 700,
        "limit_mib": 256,
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_default_governor_survives_each_growth_class(name: str) -> None:
    """hivemem.govern() with default settings: each class finishes with the unconstrained answers, and
    unfreeable growth with escalation='raise' ends in MemoryLimitExceeded below the limit, not SIGKILL."""
    from .survival_workloads import NoGroup, limit_of, run, run_limited

    params = SMALL[name]
    try:
        governed = run_limited(params, govern=True)
    except NoGroup as exc:
        pytest.skip(str(exc))
    if name == "unfreeable":
        assert governed["returncode"] == 0, governed.get("stderr")
        assert governed.get("raised") == "MemoryLimitExceeded"
        assert int(governed["usage"]) < limit_of(params) == governed["limit"]  # type: ignore[call-overload]
        assert governed.get("report")  # the last pass's report travels with the exception
        return
    reference = run(params, reference=True)
    assert reference["returncode"] == 0, reference.get("stderr")
    assert governed["returncode"] == 0, governed.get("stderr")
    assert governed["digest"] == reference["digest"]
    assert int(governed["peak_rss"]) < limit_of(params)  # type: ignore[call-overload]
