"""Figures for the stores' and pools' integrity: faults detected, values kept, and what the checks cost.

    .venv/bin/python benchmarks/bench_integrity.py                 # everything (~5-10 minutes)
    .venv/bin/python benchmarks/bench_integrity.py cost damage     # some sections
    .venv/bin/python benchmarks/bench_integrity.py --baseline main # the code to compare with

Each section runs in fresh interpreters, once with this tree's ``src`` and once
with the baseline's (``git archive <baseline> src``, default ``main``), so the
before and after are measured on the same machine in one run.

Sections:

``damage``      1,000 random flips, truncations, extensions, overwrites and
                deletions of SpillStore files across value kinds (bytes,
                bytearray, str, array.array, NumPy arrays incl. datetime64,
                memoryview, pickled objects; 1 B to 4 MiB), and 1,000 byte flips
                of CompressedStore blobs in memory (zlib and zstd): how many
                reads raise ``CorruptedValue``, how many return wrong data
``unpickle``    values that pickle but cannot be unpickled (an Exception whose
                ``__init__`` needs two arguments; a ``__setstate__`` that raises),
                spilled and compressed: how many are lost, how many say why
``fork``        children that read, delete, overwrite, spill and close a forked
                SpillStore: the parent's values and files afterwards
``pool``        2,000 trials of two threads releasing one pooled object at once:
                how often the next two ``acquire()`` calls return the same object
``cost``        spill and read-back throughput (MB/s of CPU time, best of 3),
                values from 256 B to 32 MiB, with the checks and without (baseline)

Results go to ``benchmarks/results/integrity.json``. CPU times are taken with
``time.process_time`` (user + system) because the machine is shared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import SRC, child_json, glibc_default_env, machine, save  # noqa: E402

REPO = os.path.dirname(HERE)


def baseline_src(ref: str) -> str:
    """The ``src`` directory of *ref*, extracted into a temporary directory."""
    out = tempfile.mkdtemp(prefix="hivemem-baseline-")
    archive = subprocess.run(["git", "-C", REPO, "archive", ref, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", out], input=archive.stdout, check=True)
    return os.path.join(out, "src")


def child(src: str, code: str, timeout: float = 900) -> dict[str, object]:
    """Run *code* with hivemem imported from *src*; it prints one JSON line."""
    prelude = f"import sys\nsys.path.insert(0, {src!r})\n"
    return child_json(prelude + textwrap.dedent(code), timeout=timeout, env=glibc_default_env())


# ----------------------------------------------------------------------------- shared child code
VALUES = """
import array, os, random
import numpy as np

KINDS = ["bytes", "bytearray", "str", "array", "ndarray", "datetime64", "memoryview", "pickle"]

def make(kind, size, rng):
    size = max(size, 8)
    if kind == "bytes":
        return rng.randbytes(size)
    if kind == "bytearray":
        return bytearray(rng.randbytes(size))
    if kind == "str":
        text = "".join(rng.choice("abcdefghij\\u00e9\\u4e2d ") for _ in range(min(size, 200)))
        return text * max(1, size // 200)
    if kind == "array":
        one = array.array("d", (rng.random() for _ in range(max(1, min(size // 8, 4096)))))
        return one * max(1, size // 32768)
    if kind == "ndarray":
        dtype = rng.choice(["<f8", "<i2", ">u4"])
        n = max(1, size // np.dtype(dtype).itemsize)
        return np.random.default_rng(rng.randrange(2**32)).integers(0, 200, n).astype(dtype)
    if kind == "datetime64":
        return np.arange(0, max(1, size // 8)).astype("M8[s]")
    if kind == "memoryview":
        return memoryview(array.array("i", range(max(1, size // 4))))
    return {"rows": [(i, str(i) * 3) for i in range(max(1, size // 40))]}

def same(a, b):
    if isinstance(b, np.ndarray):
        if not isinstance(a, np.ndarray):
            return False
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(b, memoryview):
        return isinstance(a, memoryview) and a.format == b.format and a.tobytes() == b.tobytes()
    return type(a) is type(b) and a == b

def stored_path(store, key):
    entry = store._data[key]
    return getattr(entry, "stored", None) or getattr(entry, "path", None)
"""

# ----------------------------------------------------------------------------- damage
DAMAGE = """
import json, hivemem
rng = random.Random({seed})
DAMAGES = ["flip", "flip", "flip", "truncate", "truncate", "extend", "overwrite", "span", "delete"]
outcome = {{"detected": 0, "silent": 0, "other_error": 0, "unchanged": 0}}
others = {{}}
by_damage = {{}}
base = os.environ.get("TMPDIR", "/tmp")
trials = 0
while trials < {trials}:
    store = hivemem.SpillStore(min_size=0)
    batch = []
    for _ in range(50):
        kind = rng.choice(KINDS)
        size = int(2 ** rng.uniform(0, 22))  # 1 B to 4 MiB, log-uniform
        key = (trials + len(batch), kind)
        value = make(kind, size, rng)
        store[key] = value
        batch.append((key, value))
    store.spill()
    for key, value in batch:
        path = stored_path(store, key)
        if path is None:  # this build could not spill it
            outcome["not_spilled"] = outcome.get("not_spilled", 0) + 1
            trials += 1
            continue
        size = os.path.getsize(path)
        os.chmod(path, 0o600)
        how = rng.choice(DAMAGES)
        if how == "delete":
            os.unlink(path)
        else:
            with open(path, "r+b") as f:
                if how == "flip":
                    at = rng.randrange(size); f.seek(at); b = f.read(1)[0]; f.seek(at)
                    f.write(bytes([b ^ (1 << rng.randrange(8))]))
                elif how == "truncate":
                    f.truncate(rng.randrange(size))
                elif how == "extend":
                    f.seek(0, 2); f.write(rng.randbytes(rng.randint(1, 4096)))
                elif how == "overwrite":
                    f.write(rng.randbytes(size))
                else:
                    at = rng.randrange(size); f.seek(at)
                    f.write(rng.randbytes(rng.randint(1, size - at)))
        try:
            got = store.peek(key) if rng.random() < 0.5 else store[key]
            if same(got, value):
                result = "unchanged"
            else:
                result = "silent"
        except hivemem.HivememError:
            result = "detected"
        except Exception as exc:
            result = "other_error"
            others[type(exc).__name__] = others.get(type(exc).__name__, 0) + 1
        outcome[result] += 1
        by_damage.setdefault(how, {{}}).setdefault(result, 0)
        by_damage[how][result] += 1
        trials += 1
    store.close()
print(json.dumps({{"trials": trials, **outcome, "other_errors": others, "by_damage": by_damage}}))
"""

BLOB_DAMAGE = """
import ctypes, json, sys, hivemem
from hivemem._stores import compressed as _compress
rng = random.Random({seed})
codecs = ["zlib", "zstd"] if _compress.zstd_available() else ["zlib"]
outcome = {{"detected": 0, "silent": 0, "other_error": 0, "unchanged": 0}}
others = {{}}
header = sys.getsizeof(b"") - 1
for trial in range({trials}):
    codec = codecs[trial % len(codecs)]
    store = hivemem.CompressedStore(codec=codec, min_ratio=0, min_size=0)
    kind = rng.choice([k for k in KINDS if k != "memoryview"])
    value = make(kind, int(2 ** rng.uniform(3, 20)), rng)
    try:
        store["k"] = value
    except Exception:  # this build cannot store it (datetime64 before the fix)
        outcome["not_stored"] = outcome.get("not_stored", 0) + 1
        continue
    store.compress()
    entry = store._data["k"]
    blob = entry.blob if hasattr(entry, "blob") else entry.stored  # the baseline's field, or ours
    if not isinstance(blob, bytes):
        outcome["not_compressed"] = outcome.get("not_compressed", 0) + 1
        continue
    at = rng.randrange(len(blob))
    ctypes.memmove(id(blob) + header + at, bytes([blob[at] ^ (1 << rng.randrange(8))]), 1)
    try:
        got = store["k"]
        outcome["unchanged" if same(got, value) else "silent"] += 1
    except hivemem.HivememError:
        outcome["detected"] += 1
    except Exception as exc:
        outcome["other_error"] += 1
        others[type(exc).__name__] = others.get(type(exc).__name__, 0) + 1
print(json.dumps({{"trials": {trials}, "codecs": codecs, **outcome, "other_errors": others}}))
"""


def bench_damage(srcs: dict[str, str], trials: int = 1000) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, src in srcs.items():
        out[name] = {
            "spill_files": child(src, VALUES + DAMAGE.format(seed=1, trials=trials)),
            "compressed_blobs": child(src, VALUES + BLOB_DAMAGE.format(seed=2, trials=trials)),
        }
    return out


# ----------------------------------------------------------------------------- unpicklable
FILLED_STORE = """
def filled_store(kind, values):
    # a SpillStore ("spill") or CompressedStore that takes every value (no size or ratio floor)
    if kind == "spill":
        store = hivemem.SpillStore(min_size=0)
    else:
        store = hivemem.CompressedStore(min_size=0, min_ratio=0)
    for k, v in values.items():
        store[k] = v
    return store
"""

UNPICKLE = """
import json, hivemem

class ParseError(Exception):
    def __init__(self, line, reason):
        super().__init__(f"{line}: {reason}")
        self.line, self.reason = line, reason

class RefusesState:
    def __init__(self, n):
        self.rows = list(range(n))
    def __setstate__(self, state):
        raise RuntimeError("schema changed")

def values():
    out = {}
    for i in range(100):
        out[("parse", i)] = ParseError(i, "bad token" * 100)
        out[("state", i)] = RefusesState(2000 + i)
        out[("list", i)] = [ParseError(i, "x")] * (200 + i)
    return out

result = {}
for name in ("spill", "compress"):
    vals = values()
    store = filled_store(name, vals)
    try:
        store.spill() if name == "spill" else store.compress()
    except Exception as exc:
        result[name + "_pass_error"] = repr(exc)
    lost = reason = 0
    for k, v in vals.items():
        try:
            ok = store[k] is v
        except Exception:
            ok = False
        lost += not ok
        reason += "cannot be unpickled" in store.status(k)
    result[name] = {"values": len(vals), "lost": lost, "reason_recorded": reason}
print(json.dumps(result))
"""


def bench_unpickle(srcs: dict[str, str]) -> dict[str, object]:
    return {name: child(src, FILLED_STORE + UNPICKLE) for name, src in srcs.items()}


# ----------------------------------------------------------------------------- fork
FORK = """
import json, os, tempfile, numpy as np, hivemem
OPS = ["read", "delete", "overwrite", "spill", "close", "all"]
base = tempfile.mkdtemp(prefix="hivemem-bench-fork-")
trials = changed = in_parent_dir = left_after_close = child_errors = 0
for trial in range({trials}):
    op = OPS[trial % len(OPS)]
    store = hivemem.SpillStore(directory=base, min_size=0)
    values = {{i: os.urandom(5000 + i) for i in range(20)}}
    values["np"] = np.arange(3000.0 + trial)
    for k, v in values.items():
        store[k] = v
    store.spill()
    files = sorted(os.listdir(store.directory))
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            if op in ("read", "all"):
                store[0]; store["np"]; store.peek(3)
            if op in ("delete", "all"):
                del store[1]; del store["np"]
            if op in ("overwrite", "all"):
                store[2] = b"child" * 3000; store[4] = np.zeros(10)
            if op in ("spill", "all"):
                store["new"] = os.urandom(20000); store.spill()
            if op in ("close", "all"):
                store.close()
        except Exception:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    child_errors += os.WEXITSTATUS(status) != 0
    try:
        same = all(bool(np.array_equal(store.peek(k), v)) if k == "np" else store.peek(k) == v
                   for k, v in values.items())
    except Exception:  # a value the child broke
        same = False
    changed += not same
    in_parent_dir += sorted(os.listdir(store.directory)) != files
    store.close()  # also removes what children that left through os._exit() left
    left_after_close += bool(os.listdir(base))
    for name in os.listdir(base):  # so the next trial starts clean
        __import__("shutil").rmtree(os.path.join(base, name), ignore_errors=True)
    trials += 1
os.rmdir(base)
print(json.dumps({{"trials": trials, "parent_values_changed": changed,
                  "parent_directory_changed": in_parent_dir,
                  "files_left_after_parent_close": left_after_close, "child_errors": child_errors}}))
"""


def bench_fork(srcs: dict[str, str], trials: int = 60) -> dict[str, object]:
    return {name: child(src, FORK.format(trials=trials)) for name, src in srcs.items()}


# ----------------------------------------------------------------------------- pool
POOL = """
import json, sys, threading, time, hivemem
sys.setswitchinterval(1e-6)
corrupted = refused = 0
for trial in range({trials}):
    pool = hivemem.ObjectPool(list, maxsize=8, reset=lambda o: (o.clear(), time.sleep(0)))
    obj = pool.acquire()
    start = threading.Barrier(2)
    def release():
        global refused
        start.wait()
        try:
            pool.release(obj)
        except hivemem.HivememError:
            refused += 1
    threads = [threading.Thread(target=release) for _ in range(2)]
    for t in threads: t.start()
    for t in threads: t.join()
    corrupted += pool.acquire() is pool.acquire()
print(json.dumps({{"trials": {trials}, "corrupted": corrupted, "refused": refused}}))
"""


def bench_pool(srcs: dict[str, str], trials: int = 2000) -> dict[str, object]:
    return {name: child(src, POOL.format(trials=trials)) for name, src in srcs.items()}


# ----------------------------------------------------------------------------- cost
COST = """
import json, pickle, time, hivemem
store_kind, kind, count, size = {store!r}, {kind!r}, {count!r}, {size!r}
rng = random.Random(5)
if kind == "text":
    words = ["GET", "POST", "/api/v1/items", "/health", "200", "404", "latency_ms=", "user=", "INFO", "WARN"]
    line = lambda: " ".join(rng.choice(words) + str(rng.randrange(1000)) for _ in range(8))
    chunk = "\\n".join(line() for _ in range(4000))
    values = {{i: (chunk[i % 97:] + chunk)[:size] for i in range(count)}}
elif kind == "lowentropy":
    values = {{i: np.random.default_rng(i).integers(0, 16, size // 8) for i in range(count)}}
else:
    values = {{i: make(kind, size, rng) for i in range(count)}}

def nbytes(v):
    if isinstance(v, str):
        return len(v.encode("utf-8", "surrogatepass"))
    if isinstance(v, (bytes, bytearray)):
        return len(v)
    if hasattr(v, "nbytes"):
        return v.nbytes
    if isinstance(v, array.array):
        return v.itemsize * len(v)
    return len(pickle.dumps(v, protocol=5))

total = sum(nbytes(v) for v in values.values())
store = filled_store(store_kind, values)
w, c = time.perf_counter(), time.process_time()
done = store.spill() if store_kind == "spill" else store.compress()
put_wall, put_cpu = time.perf_counter() - w, time.process_time() - c
w, c = time.perf_counter(), time.process_time()
got = [store[k] for k in values]
get_wall, get_cpu = time.perf_counter() - w, time.process_time() - c
ok = all(same(g, values[k]) for k, g in zip(values, got))
print(json.dumps({{"bytes": total, "put_wall": put_wall, "put_cpu": put_cpu, "get_wall": get_wall,
                  "get_cpu": get_cpu, "ok": ok, "done": {{k: v for k, v in done.items() if k != "error"}}}}))
"""

KiB, MiB = 1024, 2**20
COST_WORKLOADS: dict[str, tuple[str, str, int, int]] = {
    # name: (store, kind, count, size)
    "spill bytes 256 B x 40,000": ("spill", "bytes", 40_000, 256),
    "spill bytes 16 KiB x 4,000": ("spill", "bytes", 4_000, 16 * KiB),
    "spill bytes 1 MiB x 128": ("spill", "bytes", 128, MiB),
    "spill bytes 32 MiB x 6": ("spill", "bytes", 6, 32 * MiB),
    "spill bytearray 1 MiB x 128": ("spill", "bytearray", 128, MiB),
    "spill ndarray 1 MiB x 128 (mapped)": ("spill", "ndarray", 128, MiB),
    "spill ndarray 32 MiB x 4 (mapped)": ("spill", "ndarray", 4, 32 * MiB),
    "spill pickled dicts ~8 KiB x 4,000": ("spill", "pickle", 4_000, 8 * KiB),
    "compress log text 256 KiB x 128": ("compress", "text", 128, 256 * KiB),
    "compress ndarray 1 MiB x 64 (pickled)": ("compress", "lowentropy", 64, MiB),
    "compress pickled dicts ~8 KiB x 2,000": ("compress", "pickle", 2_000, 8 * KiB),
}


def bench_cost(srcs: dict[str, str], runs: int = 3) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, (store, kind, count, size) in COST_WORKLOADS.items():
        code = VALUES + FILLED_STORE + COST.format(store=store, kind=kind, count=count, size=size)
        results: dict[str, list[dict[str, object]]] = {src_name: [] for src_name in srcs}
        for _ in range(runs):  # alternate, so load on the shared machine hits both alike
            for src_name, src in srcs.items():
                results[src_name].append(child(src, code))
        row: dict[str, object] = {}
        for src_name, rs in results.items():
            total = int(rs[0]["bytes"])  # type: ignore[call-overload]
            put = min(float(r["put_cpu"]) for r in rs)  # type: ignore[arg-type]
            get = min(float(r["get_cpu"]) for r in rs)  # type: ignore[arg-type]
            row[src_name] = {
                "bytes": total,
                "store_mb_per_s": total / 1e6 / max(put, 1e-9),
                "read_back_mb_per_s": total / 1e6 / max(get, 1e-9),
                "store_cpu_best": put,
                "read_back_cpu_best": get,
                "store_wall_best": min(float(r["put_wall"]) for r in rs),  # type: ignore[arg-type]
                "read_back_wall_best": min(float(r["get_wall"]) for r in rs),  # type: ignore[arg-type]
                "all_identical": all(bool(r["ok"]) for r in rs),
                "done": rs[0]["done"],
            }
        out[name] = row
    return out


def main(argv: list[str]) -> None:
    ref = "main"
    if "--baseline" in argv:
        i = argv.index("--baseline")
        ref = argv[i + 1]
        del argv[i : i + 2]
    sections = argv or ["damage", "unpickle", "fork", "pool", "cost"]
    baseline = baseline_src(ref)
    srcs = {"baseline": baseline, "this": SRC}
    results: dict[str, object] = {"machine": machine(), "baseline": ref}
    path = os.path.join(HERE, "results", "integrity.json")
    if os.path.exists(path):
        with open(path) as f:
            results.update({k: v for k, v in json.load(f).items() if k not in ("machine", "baseline")})
    runners = {"damage": bench_damage, "unpickle": bench_unpickle, "fork": bench_fork, "pool": bench_pool}
    try:
        for section in sections:
            results[section] = bench_cost(srcs) if section == "cost" else runners[section](srcs)
            print(section, json.dumps(results[section], indent=1), flush=True)
    finally:
        import shutil

        shutil.rmtree(os.path.dirname(baseline), ignore_errors=True)
    print("saved", save("integrity", results))


if __name__ == "__main__":
    main(sys.argv[1:])
