from __future__ import annotations

import gc
import threading

import pytest

import hivemem
from hivemem._stores.pools import live_pools, size_class
from hivemem.strategies.pools import DropIdlePooled
from hivemem.testing import FakeReader

from .conftest import run_python
from .storekit import race


def _ctx() -> hivemem.StrategyContext:
    return hivemem.StrategyContext(target=None, aggressiveness=hivemem.CHEAP, reader=FakeReader())


def test_reuse_and_reset() -> None:
    """A released object is reset and handed out again instead of a new one."""
    pool = hivemem.ObjectPool(list, maxsize=2, reset=list.clear)
    a = pool.acquire()
    a.append(1)
    pool.release(a)
    b = pool.acquire()
    assert b is a and b == []
    assert pool.stats() == {"idle": 0, "in_use": 1, "created": 1, "reused": 1, "dropped": 0}


def test_maxsize_bounds_idle_objects() -> None:
    """Releasing more than maxsize objects keeps maxsize and drops the rest."""
    pool = hivemem.ObjectPool(dict, maxsize=2)
    objs = [pool.acquire() for _ in range(3)]
    for o in objs:
        pool.release(o)
    assert pool.idle == 2 and pool.dropped == 1


def test_borrow_releases_or_discards() -> None:
    """borrow() releases on a clean exit and discards the object when the block raises."""
    pool = hivemem.ObjectPool(bytearray, maxsize=4)
    with pool.borrow() as buf:
        buf.extend(b"x")
    assert pool.idle == 1
    with pytest.raises(KeyError), pool.borrow() as buf:
        raise KeyError("broken")
    assert pool.idle == 0 and pool.dropped == 1


def test_double_release_and_failing_reset() -> None:
    """Releasing twice raises; a reset that raises drops the object and propagates."""
    pool = hivemem.ObjectPool(list, maxsize=2)
    a = pool.acquire()
    pool.release(a)
    with pytest.raises(hivemem.InvalidArgument, match="already released"):
        pool.release(a)

    def bad_reset(obj: list[int]) -> None:
        raise ValueError("cannot reset")

    pool2 = hivemem.ObjectPool(list, maxsize=2, reset=bad_reset)
    with pytest.raises(ValueError, match="cannot reset"):
        pool2.release(pool2.acquire())
    assert pool2.idle == 0 and pool2.dropped == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"factory": list, "maxsize": 0},
        {"factory": list, "maxsize": True},
        {"factory": 3, "maxsize": 1},
        {"factory": list, "maxsize": 1, "min_idle": 2},
        {"factory": list, "maxsize": 1, "reset": "no"},
    ],
)
def test_bad_arguments(kwargs: dict[str, object]) -> None:
    """maxsize=0, a non-callable factory or reset, a floor above maxsize: clear InvalidArgument."""
    with pytest.raises(hivemem.InvalidArgument):
        hivemem.ObjectPool(**kwargs)  # type: ignore[arg-type]


def test_strategy_shrinks_to_floor() -> None:
    """The pools strategy drops idle objects beyond min_idle and skips when at the floor."""
    gc.collect()
    pool = hivemem.ObjectPool(list, maxsize=8, min_idle=2)
    objs = [pool.acquire() for _ in range(6)]
    for o in objs:
        pool.release(o)
    result = DropIdlePooled().apply(_ctx())
    assert result.stats["objects"] == 4 and pool.idle == 2
    assert DropIdlePooled().apply(_ctx()).skipped


def test_pools_are_held_weakly() -> None:
    """A pool nobody references disappears from the strategy's work list."""
    pool = hivemem.ObjectPool(list, maxsize=1)
    assert pool in live_pools()
    ident = id(pool)
    del pool
    gc.collect()
    assert ident not in {id(p) for p in live_pools()}


def test_thread_safety_no_object_handed_out_twice() -> None:
    """Under 8 threads churning and a concurrent shrink, no object is ever held by two threads."""
    pool = hivemem.ObjectPool(dict, maxsize=4, reset=dict.clear)
    errors: list[str] = []

    def churn() -> None:
        me = threading.get_ident()
        for _ in range(3000):
            obj = pool.acquire()
            if obj:
                errors.append("object not reset or shared")
            obj["owner"] = me
            if obj["owner"] != me:
                errors.append("shared")
            pool.release(obj)

    race(lambda: pool.shrink(0), [threading.Thread(target=churn) for _ in range(8)])
    assert errors == []
    st = pool.stats()
    assert st["in_use"] == 0 and st["created"] + st["reused"] == 8 * 3000


@pytest.mark.parametrize(
    ("n", "cap"),
    [(0, 64), (64, 64), (65, 80), (1000, 1024), (1024, 1024), (1025, 1280), (3 * 2**20 // 2, 3 * 2**20 // 2)],
)
def test_size_classes(n: int, cap: int) -> None:
    """Capacities round up by at most 25% (4 classes per power of two), 64 bytes at least."""
    assert size_class(n) == cap
    assert cap >= n and (n <= 64 or cap <= n * 1.25)


def test_buffer_pool_reuses_and_invalidates_view() -> None:
    """acquire(n) gives an n-byte view; after release the old view is unusable and the buffer is reused."""
    pool = hivemem.BufferPool("1MB")
    view = pool.acquire(1000)
    assert len(view) == 1000 and not view.readonly and len(view.obj) == 1024
    view[:3] = b"abc"
    buf = view.obj
    pool.release(view)
    with pytest.raises(ValueError):
        view[0]
    again = pool.acquire(900)
    assert again.obj is buf and bytes(again[:3]) == b"abc"


def test_buffer_pool_zero_and_bounds() -> None:
    """zero=True hands out zeroed buffers; max_bytes evicts the oldest; an oversized buffer is not kept."""
    pool = hivemem.BufferPool(4096, zero=True)
    v = pool.acquire(2048)
    v[:] = b"\xff" * 2048
    pool.release(v)
    assert bytes(pool.acquire(2048)) == bytes(2048)
    pool2 = hivemem.BufferPool(4096)
    a, b, c = pool2.acquire(2048), pool2.acquire(2048), pool2.acquire(2048)
    first = a.obj
    for x in (a, b, c):
        pool2.release(x)
    assert pool2.idle_bytes == 4096 and all(buf is not first for buf in pool2._order)
    big = pool2.acquire(8192)
    pool2.release(big)
    assert pool2.idle_bytes == 4096


def test_buffer_pool_shrink_and_strategy() -> None:
    """shrink() drops idle buffers down to min_bytes; the strategy reports the bytes dropped."""
    gc.collect()
    pool = hivemem.BufferPool("1MB", min_bytes="64KiB")
    views = [pool.acquire(64 * 1024) for _ in range(4)]
    for v in views:
        pool.release(v)
    result = DropIdlePooled().apply(_ctx())
    assert result.stats["buffer_bytes"] == 3 * 64 * 1024 and pool.idle_bytes == 64 * 1024


@pytest.mark.parametrize(
    "kwargs", [{"max_bytes": 0}, {"max_bytes": "1KB", "min_bytes": "2KB"}, {"max_bytes": "x"}]
)
def test_buffer_pool_bad_arguments(kwargs: dict[str, object]) -> None:
    """A zero or unparsable max_bytes, or a floor above it, raises a clear error."""
    with pytest.raises(hivemem.HivememError):
        hivemem.BufferPool(**kwargs)  # type: ignore[arg-type]


def test_buffer_pool_rejects_foreign_buffers() -> None:
    """release() of something that is not a bytearray or a view of one raises InvalidArgument."""
    pool = hivemem.BufferPool("1MB")
    with pytest.raises(hivemem.InvalidArgument):
        pool.release(memoryview(b"abc"))
    with pytest.raises(hivemem.InvalidArgument):
        pool.release(b"abc")  # type: ignore[arg-type]


def test_empty_pools_are_truthy() -> None:
    """A pool with nothing idle is still true, so `if pool:` never mistakes it for None."""
    assert hivemem.ObjectPool(list, maxsize=1) and hivemem.BufferPool("1MB")


def test_forked_child_can_use_a_pool_locked_by_another_thread() -> None:
    """A pool whose lock another thread holds at fork time works in the child (the lock is re-created)."""
    out = run_python(
        """
        import os, threading, hivemem
        pool = hivemem.BufferPool("1MB")
        held, release = threading.Event(), threading.Event()
        def hold():
            with pool._lock:
                held.set()
                release.wait()
        t = threading.Thread(target=hold)
        t.start()
        held.wait()
        pid = os.fork()
        if pid == 0:
            view = pool.acquire(100)
            pool.release(view)
            os._exit(0 if pool.idle == 1 else 1)
        release.set()
        t.join()
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """
    )
    assert out.strip() == "0"
