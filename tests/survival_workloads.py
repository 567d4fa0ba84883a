"""Workloads that grow a registered cache far past a real cgroup v1 memory limit.

Each runs in a fresh interpreter that first moves itself into a child memory
group (see :func:`memory_group`), then grows a cache registered with
``hivemem.register_cache`` (or, for ``unfreeable``, a plain list) well past the
group's limit. Without hivemem the kernel OOM-kills it; with ``hivemem.govern()``
it must finish with the same checksum as an unconstrained run (or, for
``unfreeable`` with ``escalation="raise"``, end in ``MemoryLimitExceeded``).

Classes (``kind``), each with sizes and rates given as parameters so that
variants can be built:

``cpu``         a CPU-bound main thread (pure-Python work between allocations,
                paced to ``rate`` MiB/s) caching ``size``-byte values
``sleepy``      the main thread sleeps ``pause`` seconds after each value
``strs``        ``str`` values of ``size``..``size2`` bytes (2-6 KiB), as fast as it can
``threads``     ``threads`` threads share one cache under a lock (registered with it)
``burst``       ``idle`` seconds at rest, then ``total`` MiB as fast as it can
``unfreeable``  a list that is never freed grows past the limit

Values are deterministic functions of their key, and every key is looked up
through the cache (recomputed on a miss), so the checksum proves that clearing
the cache changed no answer. ``tests/test_governor_survival.py`` runs one variant
of each class; ``benchmarks/bench_survival.py`` runs the matrix many times.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
MiB = 2**20

#: What the workload below and the survival child of ``benchmarks/bench_cache.py`` share (they
#: read the child's globals ``kind`` and ``keys``): a value as a deterministic function of its key
#: and size, its short digest, a CPU-bound wait, the per-thread digests of a threaded run, the
#: peak RSS (Linux ``VmHWM``).
CHILD_HELPERS = """
import hashlib, threading, time

def value(k, n):
    if kind == "strs":
        return ("%015x|" % k) * (n // 16)
    return (b"%015d|" % k) * (n // 16)

def digest_of(v):
    raw = v if isinstance(v, bytes) else v.encode()
    return hashlib.blake2b(raw[:64] + raw[-64:], digest_size=8).digest() + len(v).to_bytes(4, "little")

def spin(seconds):
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        for j in range(50):
            x += j * j
    return x

def thread_digests(nthreads, count, fetch):
    # each thread fetches its own count keys (offset by 10**7 a thread); one digest a thread
    parts = [None] * nthreads
    def worker(t):
        hh = hashlib.sha256()
        for k in keys(count, offset=t * 10**7):
            hh.update(digest_of(fetch(k)))
        parts[t] = hh.hexdigest()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(nthreads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return parts

def peak_rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None
"""

WORKLOAD = (
    r"""
import hashlib, json, os, sys, threading, time
P = json.loads(sys.argv[1])
if P["procs"]:
    with open(P["procs"], "w") as f:
        f.write(str(os.getpid()))
MiB = 2**20
kind, size, total = P["kind"], P["size"], P["total_mib"] * MiB
"""
    + CHILD_HELPERS
    + r"""cache, lock, keep = {}, threading.Lock(), []
gov = None
if P["govern"]:
    import hivemem
    if kind == "threads":
        hivemem.register_cache(cache, lock=lock)
    else:
        hivemem.register_cache(cache)
    gov = hivemem.govern(**P["options"])
    sources = [s["kind"] for s in gov.sources]
    if P.get("trace"):  # every event (and with "ticks" every tick) on stderr, as it happens
        t00 = time.perf_counter()
        def trace(e):
            steps = " ".join(
                f"{s.name}:{(s.freed or 0) >> 20}/{(s.malloc_released or 0) >> 20}/{s.seconds * 1000:.1f}"
                for s in e.steps if s.ran
            )
            sys.stderr.write(f"{time.perf_counter() - t00:7.3f} {e.describe()[:160]} | {steps}\n")
        gov.subscribe(trace)
        if P["trace"] == "ticks":
            from hivemem._engine import engine as _engine
            orig_run_one = _engine._run_one
            def run_one(strategy, name, *a, **k):
                now = time.perf_counter() - t00
                sys.stderr.write(f"{now:7.3f}   step {name} start rss={hivemem.rss() >> 20}\n")
                r = orig_run_one(strategy, name, *a, **k)
                sys.stderr.write(f"{time.perf_counter() - t00:7.3f}   step {name} end\n")
                return r
            _engine._run_one = run_one
            orig_tick = gov.tick
            def tick(source="manual"):
                lvl = orig_tick(source)
                st = gov.status()
                sys.stderr.write(
                    f"{time.perf_counter() - t00:7.3f} tick {source} {lvl.name} rss={st['rss'] >> 20} "
                    f"rate={st['rate'] / 2**20:.0f} wait={st['wait'] * 1000:.1f}ms\n"
                )
                return lvl
            gov.tick = tick

def sizes(seed):
    if kind == "strs":
        lo, hi = size, P.get("size2", size)
        return lambda k: lo + (k * 2654435761 + seed) % (hi - lo + 1)
    return lambda k: size

REFERENCE = P.get("reference", False)  # compute every value, keep none: the answers, cheaply

def get(k, n):
    v = cache.get(k)
    if v is None:
        v = value(k, n)
        if REFERENCE:
            pass
        elif kind == "unfreeable":
            keep.append(v)
        else:
            cache[k] = v
    return v

def get_locked(k, n):
    with lock:
        v = cache.get(k)
    if v is None:
        v = value(k, n)
        if not REFERENCE:
            with lock:
                cache[k] = v
    return v

def keys(count, offset=0):
    # mostly new keys, some re-reads of recent ones (hits or recomputations)
    for i in range(count):
        yield offset + (i if i % 4 else max(i - 8, 0))

result = {"kind": kind}
t0 = time.perf_counter()
h = hashlib.sha256()
try:
    if kind in ("cpu", "sleepy", "strs", "unfreeable", "burst"):
        n_of = sizes(0)
        avg = size if kind != "strs" else (size + P.get("size2", size)) // 2
        count = total // avg
        rate = P.get("rate_mib_s")
        if kind == "burst":
            time.sleep(P.get("idle", 1.0))
        start = time.perf_counter()
        done = 0
        for k in keys(count):
            n = n_of(k)
            h.update(digest_of(get(k, n)))
            done += n
            if kind == "cpu" and rate:
                due = start + done / (rate * MiB)
                lag = due - time.perf_counter()
                if lag > 0:
                    spin(lag)
            elif kind == "sleepy":
                time.sleep(P.get("pause", 0.001))
            elif kind == "unfreeable" and rate:
                due = start + done / (rate * MiB)
                lag = due - time.perf_counter()
                if lag > 0:
                    spin(lag)
        result["grow_seconds"] = time.perf_counter() - start
    elif kind == "threads":
        nthreads = P.get("threads", 4)
        count = total // size // nthreads
        for p in thread_digests(nthreads, count, lambda k: get_locked(k, size)):
            h.update(p.encode())
except BaseException as exc:
    if type(exc).__name__ != "MemoryLimitExceeded":
        raise
    result["raised"] = type(exc).__name__
    result["usage"] = exc.usage if isinstance(exc.usage, int) else None
    result["limit"] = exc.limit
    result["message"] = str(exc)[:300]
    report = getattr(exc, "report", None)
    result["report"] = str(report)[-2000:] if report is not None else None
    keep.clear()
result["digest"] = h.hexdigest()
result["seconds"] = time.perf_counter() - t0
result["peak_rss"] = peak_rss()
if gov is not None:
    gov.stop()
    result["sources"] = sources
    result["budget"] = gov.budget
    result["passes"] = gov.passes
    result["ticks"] = gov.ticks
    result["cpu"] = gov.cpu.get("spent_total")
    kinds = {}
    for e in gov.events:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    result["event_kinds"] = kinds
    if P.get("events"):
        result["events"] = [e.to_dict() for e in gov.events][-P["events"]:]
print("@@RESULT@@" + json.dumps(result, default=str))
"""
)

#: One variant of each class against a 400 MiB group (the matrix the issue names).
MATRIX: dict[str, dict[str, object]] = {
    "cpu": {"kind": "cpu", "size": MiB, "rate_mib_s": 500, "total_mib": 1200},
    "sleepy": {"kind": "sleepy", "size": MiB, "pause": 0.001, "total_mib": 1200},
    "strs": {"kind": "strs", "size": 2048, "size2": 6144, "total_mib": 1200},
    "threads": {"kind": "threads", "size": 256 * 1024, "threads": 4, "total_mib": 1200},
    "burst": {"kind": "burst", "size": MiB, "idle": 1.0, "total_mib": 600},
    "unfreeable": {"kind": "unfreeable", "size": MiB, "rate_mib_s": 500, "total_mib": 1200},
}

#: Other sizes, rates, thread counts and limits of the same classes (held-out style).
VARIANTS: dict[str, dict[str, object]] = {
    "cpu-256k-300": {"kind": "cpu", "size": 256 * 1024, "rate_mib_s": 300, "total_mib": 1000},
    "cpu-4m-800": {"kind": "cpu", "size": 4 * MiB, "rate_mib_s": 800, "total_mib": 1600},
    "sleepy-64k": {"kind": "sleepy", "size": 64 * 1024, "pause": 0.0002, "total_mib": 900},
    "strs-600": {"kind": "strs", "size": 600, "size2": 1500, "total_mib": 900, "limit_mib": 256},
    "strs-pymalloc": {"kind": "strs", "size": 120, "size2": 400, "total_mib": 700, "limit_mib": 300},
    "threads-8-64k": {"kind": "threads", "size": 64 * 1024, "threads": 8, "total_mib": 1000},
    "threads-2-1m": {"kind": "threads", "size": MiB, "threads": 2, "total_mib": 1500, "limit_mib": 600},
    "burst-128k": {"kind": "burst", "size": 128 * 1024, "idle": 0.5, "total_mib": 700},
    "burst-256-4m": {"kind": "burst", "size": 4 * MiB, "idle": 1.5, "total_mib": 500, "limit_mib": 256},
    "unfreeable-fast": {"kind": "unfreeable", "size": MiB, "total_mib": 1200},
    "unfreeable-600-slow": {
        "kind": "unfreeable",
        "size": 256 * 1024,
        "rate_mib_s": 100,
        "total_mib": 1200,
        "limit_mib": 600,
    },
}


def v1_memory_group() -> tuple[str | None, str]:
    """This process's own cgroup v1 memory directory if a child group can be made there, else (None, why)."""
    if not sys.platform.startswith("linux"):
        return None, f"cgroups are Linux only ({sys.platform})"
    from hivemem._measure.limits import cgroup_dirs

    own = cgroup_dirs().get("v1")
    if own is None:
        return None, "no cgroup v1 memory controller for this process"
    if not os.access(own, os.W_OK):
        return None, f"cannot create a child memory cgroup in {own} (not writable)"
    return own, ""


class NoGroup(Exception):
    """No child memory group can be made here (the reason is the message)."""


@contextlib.contextmanager
def memory_group(limit_bytes: int, tag: str = "survival") -> Iterator[str]:
    """A child cgroup v1 memory group limited to *limit_bytes*; yields its ``cgroup.procs``; removed after."""
    own, why = v1_memory_group()
    if own is None:
        raise NoGroup(why)
    path = os.path.join(own, f"hivemem-governor-{tag}-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.mkdir(path)
    except OSError as exc:
        raise NoGroup(f"cannot create a child memory cgroup in {own}: {exc}") from None
    try:
        with open(os.path.join(path, "memory.limit_in_bytes"), "w") as f:
            f.write(str(limit_bytes))
        yield os.path.join(path, "cgroup.procs")
    finally:
        for _ in range(100):  # removable once its last task has exited
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.1)


def run(
    params: dict[str, object],
    *,
    govern: bool = False,
    reference: bool = False,
    procs: str = "",
    options: dict[str, object] | None = None,
    events: int = 0,
    trace: bool | str = False,
    timeout: float = 300,
) -> dict[str, object]:
    """Run one workload; returns its result plus ``returncode`` and the ``stderr`` tail.

    ``reference=True`` keeps no value (no cache, no list): the answers without the memory.
    """
    opts = dict(options or {})
    if params["kind"] == "unfreeable":
        opts.setdefault("escalation", "raise")
    p = dict(
        params, govern=govern, procs=procs, options=opts, events=events, trace=trace, reference=reference
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", WORKLOAD, json.dumps(p)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    out: dict[str, object] = {"returncode": proc.returncode, "wall": time.perf_counter() - t}
    lines = [x for x in proc.stdout.splitlines() if x.startswith("@@RESULT@@")]
    if lines:
        out.update(json.loads(lines[-1][len("@@RESULT@@") :]))
    if proc.returncode != 0:
        out["stderr"] = proc.stderr[-1500:]
    if trace:
        out["trace"] = proc.stderr
    return out


def limit_of(params: dict[str, object]) -> int:
    """The group limit for a variant, bytes (400 MiB unless it says otherwise)."""
    return int(params.get("limit_mib", 400)) * MiB  # type: ignore[call-overload]


def run_limited(params: dict[str, object], *, govern: bool, **kw: object) -> dict[str, object]:
    """:func:`run` inside a fresh child group with the variant's limit."""
    with memory_group(limit_of(params)) as procs:
        return run(params, govern=govern, procs=procs, **kw)  # type: ignore[arg-type]
