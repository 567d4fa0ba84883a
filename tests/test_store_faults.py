"""Fault injection for SpillStore, CompressedStore and the pools: nothing lost, nothing wrong, ever.

Damaged, truncated and deleted spill files; damaged compressed blobs; values
that pickle but cannot be unpickled; fork; descriptors near the limit; a
KeyboardInterrupt at every line the stores run; racing double releases;
absurd arguments.
"""

from __future__ import annotations

import array
import copyreg
import ctypes
import gc
import json
import os
import pickle
import random
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hivemem
from hivemem._stores import compressed as _compress
from hivemem._stores import lru as _lrustore
from hivemem._stores import spill as _spill

from .conftest import linux_only, run_python
from .faultkit import ParseError  # pickles, but cannot be loaded back

np = pytest.importorskip("numpy")
hnp = pytest.importorskip("hypothesis.extra.numpy")

CODECS = ["zlib", "zstd"] if _compress.zstd_available() else ["zlib"]


@pytest.fixture(autouse=True)
def _pickle_own_reduce() -> Iterator[None]:
    """ParseError must not load back. tblib (which ``distributed`` installs when tests/test_dask.py is
    collected) registers a reducer for every exception class that exists at that moment, and with it
    ParseError loads without calling ``__init__``: a store would then rightly spill it. These tests
    are about the object that cannot be loaded, so pickle's own path is used for it here."""
    saved = copyreg.dispatch_table.pop(ParseError, None)
    yield
    if saved is not None:
        copyreg.dispatch_table[ParseError] = saved


class RefusesState:
    """Pickles, but its __setstate__ raises on load."""

    def __init__(self) -> None:
        self.rows = list(range(2000))

    def __setstate__(self, state: object) -> None:
        raise RuntimeError("schema changed")


def _values() -> dict[str, object]:
    rng = random.Random(7)
    return {
        "bytes": rng.randbytes(20_000),
        "bytearray": bytearray(rng.randbytes(20_000)),
        "str": "ünïcode \ud800 text " * 2000,
        "array": array.array("d", (rng.random() for _ in range(3000))),
        "ndarray": np.arange(6000, dtype=np.int32).reshape(60, 100),
        "datetime64": np.array(["2024-05-01T12:00"] * 2000, dtype="M8[ms]"),
        "memoryview": memoryview(array.array("i", range(3000))),
        "pickle": {"rows": [(i, str(i)) for i in range(2000)]},
    }


def _same(a: object, b: object) -> bool:
    if isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
        )
    if isinstance(b, memoryview):
        return isinstance(a, memoryview) and a.format == b.format and a.tolist() == b.tolist()
    return type(a) is type(b) and a == b


def _damage(path: str, how: str, rng: random.Random) -> None:
    """Change a spill file the way another process or a failing disk might."""
    size = os.path.getsize(path)
    os.chmod(path, 0o600)
    if how == "delete":
        os.unlink(path)
        return
    with open(path, "r+b") as f:
        if how == "flip":
            at = rng.randrange(size)
            f.seek(at)
            byte = f.read(1)[0]
            f.seek(at)
            f.write(bytes([byte ^ (1 << rng.randrange(8))]))
        elif how == "truncate":
            f.truncate(rng.randrange(size))
        elif how == "extend":
            f.seek(0, 2)
            f.write(b"\0" * rng.randint(1, 64))
        elif how == "overwrite":  # same length, other content: only the checksum can tell
            f.write(rng.randbytes(size))


@pytest.fixture
def spilled(tmp_path: Path) -> Any:
    store = hivemem.SpillStore(directory=tmp_path, min_size=0)
    values = _values()
    for key, value in values.items():
        store[key] = value
    assert store.spill()["spilled"] == len(values)
    yield store, values
    store.close()


@pytest.mark.parametrize("how", ["flip", "truncate", "extend", "overwrite", "delete"])
@pytest.mark.parametrize("kind", list(_values()))
def test_damaged_spill_file_raises_never_returns_wrong_data(spilled: Any, kind: str, how: str) -> None:
    """A flipped, truncated, extended, overwritten or deleted spill file raises CorruptedValue (key, file)."""
    store, values = spilled
    path = store._data[kind].stored
    _damage(path, how, random.Random(f"{kind}-{how}"))
    for read in (store.peek, store.__getitem__, store.peek):
        with pytest.raises(hivemem.CorruptedValue) as info:
            read(kind)
        assert info.value.key == kind and info.value.path == path
        assert repr(kind) in str(info.value) and path in str(info.value)
    assert store.status(kind).startswith("damaged: ")
    for other, value in values.items():  # the other values are untouched
        if other != kind:
            assert _same(store.peek(other), value), other
    del store[kind]  # a damaged key can be deleted, and the others still read
    assert kind not in store


def test_missing_file_status_says_so(spilled: Any) -> None:
    """status() of a value whose file was deleted says "damaged ... missing", not "on disk"."""
    store, _ = spilled
    os.unlink(store._data["bytes"].stored)
    assert "missing" in store.status("bytes") and "on disk" not in store.status("bytes")


def test_random_damage_is_always_detected(tmp_path: Path) -> None:
    """300 random flips and truncations across every value kind: every one raises, none reads back."""
    rng = random.Random(12)
    silent = 0
    with hivemem.SpillStore(directory=tmp_path, min_size=0) as store:
        for trial in range(300):
            kind, value = rng.choice(list(_values().items()))
            key = (trial, kind)
            store[key] = value
            store.spill()
            _damage(store._data[key].stored, rng.choice(["flip", "flip", "truncate", "overwrite"]), rng)
            try:
                got = store.peek(key)
            except hivemem.CorruptedValue:
                continue
            silent += 1
            assert not _same(got, value)  # unreachable unless the damage was a no-op
        assert silent == 0


def test_damage_detected_when_reads_are_not_mapped(spilled: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the descriptor-free mapper (other platforms), mapped kinds are read whole and still checked."""
    monkeypatch.setattr(_spill, "_MAPPER", False)
    store, values = spilled
    assert _same(store.peek("ndarray"), values["ndarray"])
    assert _same(store.peek("memoryview"), values["memoryview"])
    _damage(store._data["ndarray"].stored, "flip", random.Random(1))
    with pytest.raises(hivemem.CorruptedValue):
        store.peek("ndarray")


def _flip_in_place(blob: bytes, at: int) -> None:
    """Change one byte of an immutable bytes object (simulates memory corruption; CPython only)."""
    offset = sys.getsizeof(b"") - 1  # header size: where the bytes start
    ctypes.memmove(id(blob) + offset + at, bytes([blob[at] ^ 0x20]), 1)


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="writes into a bytes object's buffer")
@pytest.mark.parametrize("codec", CODECS)
def test_damaged_compressed_blob_raises(codec: str) -> None:
    """200 random byte flips in compressed blobs: every one raises CorruptedValue naming the key."""
    rng = random.Random(3)
    store = hivemem.CompressedStore(codec=codec, min_ratio=0, min_size=0)
    for trial in range(200):
        kind, value = rng.choice([(k, v) for k, v in _values().items() if k != "memoryview"])
        key = (trial, kind)
        store[key] = value
        assert store.compress()["compressed"] == 1, store.status(key)
        blob = store._data[key].stored
        _flip_in_place(blob, rng.randrange(len(blob)))
        with pytest.raises(hivemem.CorruptedValue) as info:
            store[key]
        assert info.value.key == key and info.value.path is None
        assert store.status(key).startswith("damaged: ")
        del store[key]


def test_compressed_length_mismatch_raises() -> None:
    """A blob that decompresses to another length than was compressed is refused."""
    store = hivemem.CompressedStore(codec="zlib", min_ratio=0, min_size=0)
    store["k"] = b"abc" * 1000
    store.compress()
    entry = store._data["k"]
    entry.stored = blob = __import__("zlib").compress(b"abc" * 999)
    entry.crc = __import__("zlib").crc32(blob)
    with pytest.raises(hivemem.CorruptedValue, match="decompresses to 2,997 bytes, 3,000"):
        store.peek("k")


@pytest.mark.parametrize("value", [ParseError(3, "unexpected token"), RefusesState()], ids=type)
def test_value_that_cannot_be_unpickled_stays_in_spill_store(tmp_path: Path, value: object) -> None:
    """A value that pickles but cannot be unpickled is never spilled: it stays, with the reason."""
    with hivemem.SpillStore(directory=tmp_path, min_size=0) as store:
        store["v"] = value
        store["list"] = [value] * 10
        done = store.spill()
        assert done["spilled"] == 0 and done["kept"] == 2
        assert store["v"] is value and store["list"][0] is value  # type: ignore[index]
        assert "pickles but cannot be unpickled" in store.status("v")
        assert os.listdir(store.directory) == []
    strict = hivemem.SpillStore(directory=tmp_path, strict=True)
    with pytest.raises(hivemem.InvalidArgument, match="cannot be unpickled"):
        strict["v"] = value
    assert len(strict) == 0
    strict.close()


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("value", [ParseError(3, "unexpected token"), RefusesState()], ids=type)
def test_value_that_cannot_be_unpickled_stays_in_compressed_store(codec: str, value: object) -> None:
    """CompressedStore keeps a value that pickles but cannot be unpickled as it is, with the reason."""
    store = hivemem.CompressedStore(codec=codec, min_ratio=0, min_size=0)
    store["v"] = [value] * 50
    store["ok"] = b"x" * 10_000
    done = store.compress()
    assert done["compressed"] == 1 and done["kept"] == 1
    assert store["v"][0] is value  # type: ignore[index]
    assert "pickles but cannot be unpickled" in store.status("v")


def test_datetime64_and_other_dtypes_round_trip(tmp_path: Path) -> None:
    """datetime64, timedelta64, structured and 0-d arrays spill (mapped) and compress, bit-identical."""
    arrays = [
        np.array(["2024-01-01", "NaT"] * 500, dtype="M8[ns]"),
        np.arange(1000, dtype="m8[s]"),
        np.zeros(500, dtype=[("a", "<i4"), ("b", ">f8")]),
        np.array(3.5),
        np.arange(2000, dtype=">u2"),
    ]
    with hivemem.SpillStore(directory=tmp_path, min_size=0) as store:
        for i, a in enumerate(arrays):
            store[i] = a
        assert store.spill()["spilled"] == len(arrays)
        for i, a in enumerate(arrays):
            got = store[i]
            assert got.dtype == a.dtype and got.shape == a.shape  # type: ignore[attr-defined]
            assert got.tobytes() == a.tobytes()  # type: ignore[attr-defined]
    comp = hivemem.CompressedStore(min_ratio=0, min_size=0)
    for i, a in enumerate(arrays):
        comp[i] = a
    assert comp.raw_bytes == sum(a.nbytes for a in arrays)
    comp.compress()
    assert all(comp[i].tobytes() == a.tobytes() for i, a in enumerate(arrays))  # type: ignore[attr-defined]


def test_mutation_during_spill_never_fails_the_checksum(tmp_path: Path) -> None:
    """A thread writing into a bytearray while it is spilled: the file always passes its checksum."""
    with hivemem.SpillStore(directory=tmp_path, min_size=0) as store:
        stop = threading.Event()
        bufs = [bytearray(3 * 2**20) for _ in range(8)]

        def scribble() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                for b in bufs:
                    b[n % len(b)] = n & 0xFF
                    b[-(n % 1000) - 1] = n & 0x7F

        t = threading.Thread(target=scribble)
        t.start()
        try:
            for round_ in range(5):
                for i, b in enumerate(bufs):
                    store[(round_, i)] = b
                store.spill()
        finally:
            stop.set()
            t.join()
        for key in store:
            assert len(store.peek(key)) == 3 * 2**20  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- closed stores
@pytest.mark.parametrize("make", [hivemem.SpillStore, hivemem.CompressedStore], ids=["spill", "compress"])
def test_use_after_close_raises_closed(make: Any) -> None:
    """After close(), reads, writes, deletes, status, iteration and passes say the store is closed."""
    store = make()
    store["a"] = b"a" * 10_000
    store.close()
    store.close()  # idempotent
    calls = {
        "getitem": lambda: store["a"],
        "peek": lambda: store.peek("a"),
        "status": lambda: store.status("a"),
        "delitem": lambda: store.__delitem__("a"),
        "setitem": lambda: store.__setitem__("b", b"b"),
        "contains": lambda: "a" in store,
        "iter": lambda: list(store),
        "pass": store.spill if make is hivemem.SpillStore else store.compress,
    }
    for name, call in calls.items():
        with pytest.raises(hivemem.InvalidArgument, match="is closed"):
            call()
        assert name
    assert len(store) == 0 and "closed" in repr(store)


def test_relative_directory_survives_chdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative directory is resolved at construction: reads and cleanup work after os.chdir()."""
    (tmp_path / "spill").mkdir()
    monkeypatch.chdir(tmp_path)
    store = hivemem.SpillStore(directory="spill", min_size=0)
    assert os.path.isabs(store.directory)
    store["k"] = b"k" * 10_000
    store.spill()
    monkeypatch.chdir("/")
    assert store["k"] == b"k" * 10_000
    store["k"] = b"j" * 10_000
    store.spill()
    store.close()
    assert os.listdir(tmp_path / "spill") == []


# ----------------------------------------------------------------------------- fork and processes
@linux_only
def test_forked_child_cannot_break_the_parent(tmp_path: Path) -> None:
    """A child that reads, deletes, overwrites, spills and closes leaves the parent's values and files be."""
    out = run_python(
        f"""
        import json, os, numpy as np, hivemem
        base = {str(tmp_path)!r}
        store = hivemem.SpillStore(directory=base, min_size=0)
        values = {{i: os.urandom(8000 + i) for i in range(12)}}
        values["np"] = np.arange(4000.0)
        for k, v in values.items():
            store[k] = v
        store.spill()
        files = sorted(os.listdir(store.directory))
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            res = {{}}
            try:
                res["read"] = store[0] == values[0]
                del store[1]
                store[2] = b"child" * 4000
                res["peek_np"] = bool(np.array_equal(store.peek("np"), values["np"]))
                res["status"] = store.status(3)
                store["new"] = os.urandom(30000)
                res["spill"] = store.spill()["spilled"]
                res["own_dir"] = store.directory
                res["own_files"] = len(os.listdir(store.directory))
                store.close()
                res["own_dir_left"] = os.path.exists(res["own_dir"])
            except BaseException as exc:
                res["error"] = repr(exc)
            os.write(w, json.dumps(res).encode())
            os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        child = json.loads(os.read(r, 65536))
        same = all(
            bool(np.array_equal(store.peek(k), v)) if k == "np" else store.peek(k) == v
            for k, v in values.items()
        )
        files_same = sorted(os.listdir(store.directory)) == files
        base_now = sorted(os.listdir(base))
        print(json.dumps({{"child": child, "same": same, "files_same": files_same, "base": base_now,
                          "parent_dir": os.path.basename(store.directory)}}))
        """
    )
    res = json.loads(out)
    child = res["child"]
    assert "error" not in child, child
    assert child["read"] and child["peek_np"] and child["spill"] == 3 and child["own_files"] == 3
    assert "read-only" in child["status"] and not child["own_dir_left"]
    assert res["same"] and res["files_same"]
    assert res["base"] == [res["parent_dir"]]  # nothing of the child's is left


@linux_only
def test_child_reading_a_value_the_parent_removed_gets_a_clear_error(tmp_path: Path) -> None:
    """After fork, a file the parent removes reads in the child as CorruptedValue naming the parent."""
    out = run_python(
        f"""
        import os, hivemem
        store = hivemem.SpillStore(directory={str(tmp_path)!r}, min_size=0)
        store["k"] = b"k" * 10000
        store.spill()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.read(r, 1)
            try:
                store["k"]
                os._exit(1)
            except hivemem.CorruptedValue as exc:
                os._exit(0 if str(os.getppid()) in str(exc) and "removed it since" in str(exc) else 2)
        store["k"]  # the parent reads it back: its file goes
        os.write(w, b"x")
        print(os.waitpid(pid, 0)[1])
        """
    )
    assert out.strip() == "0"


@linux_only
def test_child_exit_removes_only_its_own_directory(tmp_path: Path) -> None:
    """A child that spills and exits normally removes its own directory, never the parent's."""
    out = run_python(
        f"""
        import os, sys, hivemem
        store = hivemem.SpillStore(directory={str(tmp_path)!r}, min_size=0)
        store["a"] = b"a" * 10000
        store.spill()
        pid = os.fork()
        if pid == 0:
            store["b"] = b"b" * 10000
            store.spill()
            sys.exit(0)  # atexit and finalizers run in the child
        os.waitpid(pid, 0)
        left = sorted(os.listdir({str(tmp_path)!r}))
        print(left == [os.path.basename(store.directory)], store["a"] == b"a" * 10000)
        """
    )
    assert out.split() == ["True", "True"]


@linux_only
def test_four_processes_share_one_directory(tmp_path: Path) -> None:
    """4 processes spilling into one directory at once each read back exactly their own values."""
    code = f"""
        import hashlib, os, hivemem
        store = hivemem.SpillStore(directory={str(tmp_path)!r}, min_size=0)
        seed = os.getpid()
        values = {{i: hashlib.sha256(f"{{seed}}-{{i}}".encode()).digest() * (100 + i) for i in range(200)}}
        for k, v in values.items():
            store[k] = v
        for _ in range(3):
            store.spill()
            assert all(store[k] == v for k, v in values.items())
        store.close()
        print("ok")
        """
    procs = [threading.Thread(target=lambda: results.append(run_python(code))) for _ in range(4)]
    results: list[str] = []
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [r.strip() for r in results] == ["ok"] * 4
    assert os.listdir(tmp_path) == []


@linux_only
@pytest.mark.parametrize("limit", [32, 64])
def test_mapped_reads_keep_no_descriptor(tmp_path: Path, limit: int) -> None:
    """With RLIMIT_NOFILE at 32 or 64, reading back 250 arrays and 100 memoryviews works (no fd each)."""
    out = run_python(
        f"""
        import json, os, resource, numpy as np, hivemem
        resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        store = hivemem.SpillStore(directory={str(tmp_path)!r})
        for i in range(250):
            store[i] = np.full(1000 + i, i, dtype=np.int64)
        for i in range(100):
            store[("mv", i)] = memoryview(np.full(700, i, dtype=np.int32))
        store.spill()
        arrays = [store[i] for i in range(250)]
        views = [store[("mv", i)] for i in range(100)]
        ok = all(a.shape == (1000 + i,) and int(a[-1]) == i for i, a in enumerate(arrays))
        ok = ok and all(v.tolist() == [i] * 700 for i, v in enumerate(views))
        print(json.dumps({{"ok": ok, "fds": len(os.listdir("/proc/self/fd"))}}))
        """
    )
    res = json.loads(out)
    assert res["ok"] and res["fds"] < 16, res


@linux_only
def test_full_and_read_only_filesystem_keep_values(tmp_path: Path) -> None:
    """On a real 1 MiB tmpfs: writes that do not fit and a read-only remount keep every value in memory."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or os.system(f"mount -t tmpfs -o size=1m tmpfs {mnt} 2>/dev/null") != 0:
        pytest.skip("needs root and mount(8) to make a small tmpfs")
    try:
        store = hivemem.SpillStore(directory=mnt, min_size=0)
        values = {i: os.urandom(300_000) for i in range(6)}
        for k, v in values.items():
            store[k] = v
        done = store.spill()
        assert done["spilled"] >= 1 and done["failed"] >= 1, done
        assert all(store.peek(k) == v for k, v in values.items())
        assert not [f for f in os.listdir(store.directory) if f.endswith(".tmp")]
        assert os.system(f"mount -o remount,ro {mnt}") == 0
        for k in values:
            store[k] = values[k]  # back in memory; the old files cannot even be removed now
        done = store.spill()
        assert done["spilled"] == 0 and done["failed"] == len(values), done
        assert all(store.peek(k) == v for k, v in values.items())
        with pytest.raises(hivemem.InvalidArgument, match="cannot use"):
            hivemem.SpillStore(directory=mnt)
        store.close()
    finally:
        os.system(f"umount {mnt}")


# ----------------------------------------------------------------------------- interrupts
def _interrupt_at(n: int, call: Any, files: set[str]) -> bool:
    """Run call() with a KeyboardInterrupt at its n-th line event in *files*; True if it was raised."""
    seen = 0

    def local(frame: Any, event: str, arg: object) -> Any:
        nonlocal seen
        if event == "line":
            seen += 1
            if seen == n:
                raise KeyboardInterrupt
        return local

    def tracer(frame: Any, event: str, arg: object) -> Any:
        return local if frame.f_code.co_filename in files else None

    sys.settrace(tracer)
    try:
        call()
    except KeyboardInterrupt:
        return True
    finally:
        sys.settrace(None)
    return False


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


# A traced interrupt can fire where a real signal cannot: on a ``with`` line after its body and
# before ``__exit__``. The file object is then closed by its deallocator (a ResourceWarning, not
# a lost descriptor), so these tests ignore that warning and count descriptors instead.
no_resource_warning = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)

SPILL_FILES = {_spill.__file__, _lrustore.__file__}
COMPRESS_FILES = {_compress.__file__, _lrustore.__file__}


def _referenced(store: Any) -> set[str]:
    return {os.path.basename(e.stored) for e in store._data.values() if e.stored}


def _spill_operations() -> dict[str, Any]:
    return {
        "spill": lambda s: s.spill(),
        "read": lambda s: s["bytes"],
        "read_pickle": lambda s: s["pickle"],
        "read_mapped": lambda s: s["ndarray"],
        "overwrite": lambda s: s.__setitem__("bytes", b"new" * 5000),
        "delete": lambda s: s.__delitem__("str"),
        "status": lambda s: s.status("array"),
        "close": lambda s: s.close(),
    }


@no_resource_warning
@pytest.mark.parametrize("op", list(_spill_operations()))
def test_interrupt_at_every_line_of_a_spill_store(tmp_path: Path, op: str) -> None:
    """A KeyboardInterrupt at each line of a SpillStore operation leaves every value intact, no stray file."""
    call = _spill_operations()[op]
    expected = _values()
    fds = _open_fds()
    for n in range(1, 100_000):
        store = hivemem.SpillStore(directory=tmp_path, min_size=0)
        for key, value in expected.items():
            store[key] = value
        if op != "spill":
            store.spill()
        hit = _interrupt_at(n, lambda store=store: call(store), SPILL_FILES)
        if store.closed:
            assert op == "close"
        else:
            for key, value in expected.items():
                if key not in store:
                    assert op == "delete" and key == "str"
                    continue
                got = store.peek(key)
                ok = _same(got, value) or (op == "overwrite" and key == "bytes" and got == b"new" * 5000)
                assert ok, (op, n, key)
            on_disk = set(os.listdir(store.directory))
            assert not [f for f in on_disk if f.endswith(".tmp")], (op, n)
            assert _referenced(store) <= on_disk, (op, n)
            store.spill()  # the next pass removes any file an interrupted removal left behind
            assert set(os.listdir(store.directory)) == _referenced(store), (op, n)
        store.close()
        assert not os.path.exists(store.directory)
        if not hit:
            break
    assert n > 3, "the operation ran fewer lines than expected: is the tracer working?"
    gc.collect()
    assert _open_fds() <= fds


@no_resource_warning
@pytest.mark.parametrize("op", ["compress", "read", "overwrite", "delete"])
def test_interrupt_at_every_line_of_a_compressed_store(op: str) -> None:
    """A KeyboardInterrupt at each line a CompressedStore operation runs leaves every value intact."""
    expected = {k: v for k, v in _values().items() if k != "memoryview"}
    calls = {
        "compress": lambda s: s.compress(),
        "read": lambda s: s["pickle"],
        "overwrite": lambda s: s.__setitem__("bytes", b"new" * 5000),
        "delete": lambda s: s.__delitem__("str"),
    }
    for n in range(1, 100_000):
        store = hivemem.CompressedStore(codec="zlib", level=1, min_ratio=0, min_size=0)
        for key, value in expected.items():
            store[key] = value
        if op != "compress":
            store.compress()
        hit = _interrupt_at(n, lambda store=store: calls[op](store), COMPRESS_FILES)
        for key, value in expected.items():
            if key not in store:
                assert op == "delete" and key == "str"
                continue
            got = store.peek(key)
            assert _same(got, value) or (op == "overwrite" and got == b"new" * 5000), (op, n, key)
        if not hit:
            break
    assert n > 3, "the operation ran fewer lines than expected: is the tracer working?"


# ----------------------------------------------------------------------------- pools
def test_racing_double_release_is_refused_and_never_corrupts_the_pool() -> None:
    """Two threads releasing one object at once: one is refused; the next two acquires differ (200 trials)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(200):
            pool = hivemem.ObjectPool(list, maxsize=8, reset=lambda o: (o.clear(), os.getpid()))
            obj = pool.acquire()
            start = threading.Barrier(2)
            refused: list[int] = []

            def release(pool: Any = pool, obj: Any = obj, start: Any = start, refused: Any = refused) -> None:
                start.wait()
                try:
                    pool.release(obj)
                except hivemem.InvalidArgument:
                    refused.append(1)

            threads = [threading.Thread(target=release) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert refused == [1]
            assert pool.acquire() is not pool.acquire()
            assert pool.stats()["in_use"] == 2
    finally:
        sys.setswitchinterval(old)


def test_release_during_a_slow_reset_is_refused() -> None:
    """While reset() runs for an object, releasing it again is refused and the pool holds it once."""
    entered, go = threading.Event(), threading.Event()

    def slow_reset(obj: list[int]) -> None:
        entered.set()
        go.wait(5)

    pool = hivemem.ObjectPool(list, maxsize=4, reset=slow_reset)
    obj = pool.acquire()
    t = threading.Thread(target=pool.release, args=(obj,))
    t.start()
    assert entered.wait(5)
    with pytest.raises(hivemem.InvalidArgument, match="already released"):
        pool.release(obj)
    go.set()
    t.join()
    assert pool.idle == 1 and pool.acquire() is obj and pool.acquire() is not obj


def test_buffer_pool_double_release_of_a_view_is_refused() -> None:
    """Releasing a BufferPool view twice (also from two threads) raises InvalidArgument, pooled once."""
    pool = hivemem.BufferPool("1MB")
    view = pool.acquire(1000)
    pool.release(view)
    with pytest.raises(hivemem.InvalidArgument, match="already released"):
        pool.release(view)
    assert pool.idle == 1
    a = pool.acquire(1000)
    b = pool.acquire(1000)
    assert a.obj is not b.obj


# ----------------------------------------------------------------------------- arguments
ODD = [
    None,
    -1,
    0,
    1,
    2.5,
    float("nan"),
    float("inf"),
    -float("inf"),
    10**400,
    1e308,
    2**64,
    True,
    "x",
    "5 parsecs",
    [1],
]


def _calls() -> list[tuple[str, Any]]:
    spill = hivemem.SpillStore()
    comp = hivemem.CompressedStore()
    opool = hivemem.ObjectPool(list, maxsize=4)
    bpool = hivemem.BufferPool("1MB")
    out: list[tuple[str, Any]] = [
        ("SpillStore(min_size)", lambda v: hivemem.SpillStore(min_size=v).close()),
        ("SpillStore(directory)", lambda v: hivemem.SpillStore(directory=v).close()),
        ("SpillStore(strict)", lambda v: hivemem.SpillStore(strict=v).close()),
        ("spill(nbytes)", lambda v: spill.spill(v)),
        ("spill(stop)", lambda v: spill.spill(stop=v)),
        ("CompressedStore(level)", lambda v: hivemem.CompressedStore(level=v)),
        ("CompressedStore(zlib level)", lambda v: hivemem.CompressedStore(codec="zlib", level=v)),
        ("CompressedStore(min_ratio)", lambda v: hivemem.CompressedStore(min_ratio=v)),
        ("CompressedStore(min_size)", lambda v: hivemem.CompressedStore(min_size=v)),
        ("CompressedStore(codec)", lambda v: hivemem.CompressedStore(codec=v)),
        ("compress(nbytes)", lambda v: comp.compress(v)),
        ("compress(stop)", lambda v: comp.compress(stop=v)),
        ("ObjectPool(maxsize)", lambda v: hivemem.ObjectPool(list, maxsize=v)),
        ("ObjectPool(min_idle)", lambda v: hivemem.ObjectPool(list, maxsize=10, min_idle=v)),
        ("ObjectPool(factory)", lambda v: hivemem.ObjectPool(v, maxsize=1)),
        ("ObjectPool(reset)", lambda v: hivemem.ObjectPool(list, maxsize=1, reset=v)),
        ("ObjectPool.shrink", lambda v: opool.shrink(v)),
        ("BufferPool(max_bytes)", lambda v: hivemem.BufferPool(v)),
        ("BufferPool(min_bytes)", lambda v: hivemem.BufferPool("1GB", min_bytes=v)),
        ("BufferPool(zero)", lambda v: hivemem.BufferPool("1MB", zero=v)),
        ("BufferPool.acquire", lambda v: bpool.release(bpool.acquire(v))),
        ("BufferPool.shrink", lambda v: bpool.shrink(v)),
    ]
    return out


def test_odd_arguments_work_or_raise_a_hivemem_error() -> None:
    """Every size, level, ratio, count and callable argument of the stores and pools, over odd values:
    each call works or raises a HivememError at the call, never OverflowError/TypeError/a later failure."""
    calls = 0
    for name, call in _calls():
        for value in ODD:
            calls += 1
            try:
                call(value)
            except hivemem.HivememError:
                pass
            except Exception as exc:  # pragma: no cover - the failure message names the call
                pytest.fail(f"{name} with {value!r} raised {type(exc).__name__}: {exc}")
    assert calls == len(_calls()) * len(ODD)


def test_corrupted_value_pickles_with_its_fields() -> None:
    """CorruptedValue survives pickling (multiprocessing sends errors between processes)."""
    exc = hivemem.CorruptedValue("bad", key="k", path="/x", reason="checksum")
    back = pickle.loads(pickle.dumps(exc))
    assert (str(back), back.key, back.path, back.reason) == ("bad", "k", "/x", "checksum")
    assert isinstance(back, OSError)


def test_only_pickles_that_name_a_global_are_loaded_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Builtin-only pickles (small ints look like opcodes) are not loaded back; naming a class is."""
    builtins_only = {"a": [(i, str(i)) for i in range(300)], "b": [2.0, b"y", {1}, frozenset([2]), None]}
    builtins_only["c"] = [bytearray(b"z"), True, 10**40, (1,), {"d": []}]
    assert not _lrustore.dumps(builtins_only)[1]
    for obj in (complex(1, 2), ParseError(1, "x"), RefusesState(), np.arange(3), [range(2)], len, int, ...):
        assert _lrustore.dumps([obj])[1], obj
    loads: list[int] = []
    real = pickle.load
    monkeypatch.setattr(pickle, "load", lambda f: loads.append(1) or real(f))
    with hivemem.SpillStore(directory=tmp_path, min_size=0) as store:
        store["plain"] = builtins_only
        store["class"] = [ParseError(1, "x")]
        store.spill()
        assert store.status("plain").startswith("on disk") and len(loads) == 1
        assert store["plain"] == builtins_only


def test_compress_strategy_survives_a_failing_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """A store whose compress() raises is recorded in the step's stats; the other stores still compress."""
    from hivemem.strategies.compress import CompressValues
    from hivemem.testing import FakeReader

    bad, good = hivemem.CompressedStore(), hivemem.CompressedStore()
    bad["a"] = good["a"] = b"a" * 100_000

    def boom(*args: object, **kwargs: object) -> dict[str, int]:
        raise RuntimeError("boom")

    monkeypatch.setattr(bad, "compress", boom)
    ctx = hivemem.StrategyContext(target=None, aggressiveness=hivemem.MODERATE, reader=FakeReader("1GB"))
    result = CompressValues().apply(ctx)
    assert good.compressed_count == 1 and result.stats["compressed"] >= 1
    assert any("boom" in e for e in result.stats["errors"])  # type: ignore[attr-defined]


def test_clear_removes_damaged_values_without_reading_them(spilled: Any) -> None:
    """clear() removes every value and file, a damaged one included, without reading any back."""
    store, _ = spilled
    os.unlink(store._data["bytes"].stored)
    _damage(store._data["str"].stored, "flip", random.Random(2))
    store.clear()
    assert len(store) == 0 and os.listdir(store.directory) == []
    assert store.memory_bytes == store.disk_bytes == store.spilled_count == 0


_DTYPES = ["<f8", "<i2", ">u4", "M8[ns]", "m8[s]", "?", "<c16", "S5", "<U3", "<f2"]


@settings(max_examples=60, deadline=None)
@given(
    arr=st.sampled_from(_DTYPES).flatmap(
        lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=3, max_side=20))
    )
)
def test_numpy_round_trip_is_bit_identical(arr: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Arrays of many dtypes and shapes come back from both stores with the same dtype, shape and bytes."""
    with hivemem.SpillStore(directory=tmp_path_factory.getbasetemp(), min_size=0) as store:
        store["a"] = arr
        store.spill()
        for got in (store.peek("a"), store["a"]):
            assert got.dtype == arr.dtype and got.shape == arr.shape  # type: ignore[attr-defined]
            assert got.tobytes() == arr.tobytes()  # type: ignore[attr-defined]
    comp = hivemem.CompressedStore(min_size=0, min_ratio=0)
    comp["a"] = arr
    comp.compress()
    got = comp["a"]
    assert got.dtype == arr.dtype and got.shape == arr.shape and got.tobytes() == arr.tobytes()  # type: ignore[attr-defined]
