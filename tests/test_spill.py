from __future__ import annotations

import array
import errno
import gc
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings

import hivemem
from hivemem._stores import spill as _spill
from hivemem.strategies.spill import SpillValues
from hivemem.testing import FakeReader

from .conftest import linux_only, run_python
from .storekit import race, same, values


@settings(max_examples=150, deadline=None)
@given(value=values)
def test_round_trip_is_bit_identical(value: object, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every supported value spills and reads back equal and of the same type, via peek and get."""
    with hivemem.SpillStore(directory=tmp_path_factory.getbasetemp(), min_size=0) as store:
        store["k"] = value
        done = store.spill()
        assert done["spilled"] == 1, store.status("k")
        assert store.status("k").startswith("on disk")
        assert same(store.peek("k"), value)
        assert store.status("k").startswith("on disk")  # peek does not bring it back
        assert same(store["k"], value)
        assert store.status("k") == "in memory" and store.disk_bytes == 0


def test_private_directory_and_file_modes(tmp_path: Path) -> None:
    """The spill directory is 0700, each file 0400 (read-only), and no temporary file is left behind."""
    store = hivemem.SpillStore(directory=tmp_path)
    store["a"] = b"a" * 10_000
    store.spill()
    d = Path(store.directory)
    assert d.parent == tmp_path and stat.S_IMODE(d.stat().st_mode) == 0o700
    files = list(d.iterdir())
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o400
    assert not any(f.name.endswith(".tmp") for f in files)
    store.close()


def test_cleanup_on_close_and_gc(tmp_path: Path) -> None:
    """close() and garbage collection remove the directory; a closed store refuses new work."""
    store = hivemem.SpillStore(directory=tmp_path)
    store["a"] = b"a" * 10_000
    store.spill()
    d = store.directory
    store.close()
    assert not os.path.exists(d) and store.closed
    with pytest.raises(hivemem.InvalidArgument, match="closed"):
        store["b"] = b"b"
    store2 = hivemem.SpillStore(directory=tmp_path)
    store2["a"] = b"a" * 10_000
    store2.spill()
    d2 = store2.directory
    del store2
    gc.collect()
    assert not os.path.exists(d2)


def test_cleanup_at_exit_but_not_by_forked_child(tmp_path: Path) -> None:
    """At interpreter exit the directory is removed; a forked child exiting leaves it alone."""
    out = run_python(
        f"""
        import os, sys, hivemem
        store = hivemem.SpillStore(directory={str(tmp_path)!r})
        store["a"] = b"a" * 10_000
        store.spill()
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # runs atexit and finalizers in the child
        os.waitpid(pid, 0)
        print(os.path.exists(store.directory), store.directory)
        """
    )
    alive, path = out.split()
    assert alive == "True"
    assert not os.path.exists(path)


def test_unpicklable_values_stay_or_raise_in_strict_mode(tmp_path: Path) -> None:
    """Unpicklable values stay in memory with a reason; strict=True refuses them and stores nothing."""
    store = hivemem.SpillStore(directory=tmp_path, min_size=0)
    fn = [lambda: 1]
    store["fn"] = fn
    store["view"] = memoryview(b"abcd")[::2]
    done = store.spill()
    assert done["kept"] == 1 and done["spilled"] == 0 and store["fn"] is fn
    assert "cannot be pickled" in store.status("fn")
    assert "cannot be mapped back" in store.status("view")
    strict = hivemem.SpillStore(directory=tmp_path, strict=True)
    with pytest.raises(hivemem.InvalidArgument, match="cannot be pickled"):
        strict["fn"] = fn
    assert "fn" not in strict
    store.close()
    strict.close()


def test_failed_write_keeps_value_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails (disk full) keeps the value in memory, removes the temp file, reports the error."""
    store = hivemem.SpillStore(directory=tmp_path)
    value = b"v" * 100_000
    store["a"] = value

    def full(f: object, data: object, mutable: bool) -> int:
        f.write(b"partial")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_spill, "_write_buffer", full)
    ctx = hivemem.StrategyContext(target=None, aggressiveness=hivemem.MODERATE, reader=FakeReader("1GB"))
    result = SpillValues().apply(ctx)
    assert result.stats["failed"] == 1 and "No space left" in result.summary
    assert store["a"] is value and "write failed" in store.status("a")
    assert os.listdir(store.directory) == []
    monkeypatch.undo()
    assert store.spill()["spilled"] == 1  # a later pass retries
    assert store["a"] == value
    store.close()


@linux_only
def test_real_file_size_limit_keeps_data(tmp_path: Path) -> None:
    """With RLIMIT_FSIZE below the value's size the real write fails; the value stays readable."""
    out = run_python(
        f"""
        import json, resource, signal, hivemem
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
        store = hivemem.SpillStore(directory={str(tmp_path)!r})
        store["big"] = b"b" * 200_000
        store["small"] = b"s" * 10_000
        done = store.spill()
        print(json.dumps({{"done": {{k: v for k, v in done.items()}}, "big": store["big"] == b"b" * 200_000,
                          "status": store.status("big"), "small": store.status("small")}}))
        """
    )
    res = json.loads(out)
    assert res["done"]["failed"] == 1 and res["done"]["spilled"] == 1
    assert res["big"] is True and "File too large" in res["status"]
    assert res["small"].startswith("on disk")


def test_unwritable_directory(tmp_path: Path) -> None:
    """A directory that cannot be used raises InvalidArgument naming it."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(hivemem.InvalidArgument, match="cannot use"):
        hivemem.SpillStore(directory=blocker / "sub")
    with pytest.raises(hivemem.InvalidArgument):
        hivemem.SpillStore(strict="yes")  # type: ignore[arg-type]


def test_memoryview_comes_back_mapped_copy_on_write(tmp_path: Path) -> None:
    """A memoryview comes back memory-mapped with its format and shape; writes to it never reach the store."""
    store = hivemem.SpillStore(directory=tmp_path, min_size=0)
    original = memoryview(array.array("i", range(4096))).cast("B").cast("i", (64, 64))
    store["m"] = original
    store.spill()
    got = store["m"]
    assert isinstance(got, memoryview) and got.format == "i" and got.shape == (64, 64)
    assert got.tolist() == original.tolist() and not got.readonly
    got[0, 0] = -1
    assert store.peek("m")[0, 0] == 0  # type: ignore[index]
    assert store.status("m").startswith("on disk")
    store.close()


def test_numpy_arrays_come_back_memory_mapped(tmp_path: Path) -> None:
    """NumPy arrays come back as copy-on-write np.memmap with dtype, shape and read-only flag kept."""
    np = pytest.importorskip("numpy")
    store = hivemem.SpillStore(directory=tmp_path)
    a = np.arange(100_000, dtype=np.float64).reshape(1000, 100)
    ro = np.arange(10_000, dtype=np.int16)
    ro.flags.writeable = False
    store["a"], store["ro"] = a, ro
    store.spill()
    got = store["a"]
    assert isinstance(got, np.memmap) and got.dtype == a.dtype and got.shape == a.shape
    assert np.array_equal(got, a)
    got[0, 0] = 42
    assert store["a"][0, 0] == 0
    assert not store["ro"].flags.writeable and np.array_equal(store["ro"], ro)
    store.close()


def test_lru_order_budget_and_min_size(tmp_path: Path) -> None:
    """spill(nbytes) takes least recently used values first; small values stay in memory."""
    store = hivemem.SpillStore(directory=tmp_path)
    for k in "abcd":
        store[k] = k.encode() * 10_000
    store["tiny"] = b"t"
    store["a"]
    store.spill(20_000)
    assert [store.status(k).startswith("on disk") for k in "abcd"] == [False, True, True, False]
    store.spill()
    assert "below min_size" in store.status("tiny")
    assert "entries=5" in repr(store) and "on_disk=" in repr(store)
    store.close()


def test_strategy_skips_without_open_stores() -> None:
    """With no open store the spill strategy skips with the reason."""
    gc.collect()
    ctx = hivemem.StrategyContext(target=None, aggressiveness=hivemem.MODERATE, reader=FakeReader("1GB"))
    assert SpillValues().apply(ctx).skipped == "no open SpillStore exists"


def test_concurrent_access_during_spills(tmp_path: Path) -> None:
    """Readers, writers and deleters in 6 threads, with spill passes running, always see the latest value."""
    store = hivemem.SpillStore(directory=tmp_path, min_size=0)
    errors: list[str] = []

    def worker(i: int) -> None:
        for n in range(300):
            key = f"{i}-{n % 10}"
            value = f"{i}:{n};".encode() * 100
            store[key] = value
            if store[key] != value:
                errors.append(key)
            if n % 7 == 0:
                del store[key]

    race(store.spill, [threading.Thread(target=worker, args=(i,)) for i in range(6)])
    assert errors == []
    on_disk = {f for f in os.listdir(store.directory) if not f.endswith(".tmp")}
    assert len(on_disk) == store.spilled_count
    assert store.disk_bytes + store.memory_bytes == sum(len(store.peek(k)) for k in store)  # type: ignore[arg-type]
    store.close()


@linux_only
def test_real_rss_spill_and_read_one_back() -> None:
    """64 x 1 MiB bytes values: spilling drops RSS by >= 85% of their size (tolerance: page cache is
    not RSS, allocator noise); reading one back costs about one value (< 3 MiB)."""
    out = run_python(
        """
        import json, os, hivemem
        store = hivemem.SpillStore()
        for i in range(64):
            store[i] = os.urandom(1 << 20)
        before = hivemem.rss()
        hivemem.optimize(strategies=["spill", "trim"])
        after = hivemem.rss()
        one = store[7]
        after_one = hivemem.rss()
        print(json.dumps({"drop": before - after, "one": after_one - after, "len": len(one)}))
        """
    )
    res = json.loads(out)
    assert res["drop"] >= 0.85 * 64 * 2**20, res
    assert res["len"] == 2**20 and res["one"] < 3 * 2**20, res
