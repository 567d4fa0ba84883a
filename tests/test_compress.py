from __future__ import annotations

import json
import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hivemem
from hivemem._stores import compressed as _compress
from hivemem.strategies.compress import CompressValues
from hivemem.testing import FakeReader

from .conftest import linux_only, run_python
from .storekit import race, same
from .storekit import values as store_values

CODECS = ["zlib", "zstd"] if _compress.zstd_available() else ["zlib"]

# Highly compressible bytes too: the stores' shared values are mostly random.
values = st.one_of(store_values, st.binary(max_size=64).map(lambda b: b * 50))


@pytest.mark.parametrize("codec", CODECS)
@settings(max_examples=150, deadline=None)
@given(value=values)
def test_round_trip_is_bit_identical(codec: str, value: object) -> None:
    """Every supported value compresses and reads back equal and of the same type (peek and get)."""
    store = hivemem.CompressedStore(codec=codec, min_ratio=0, min_size=0)
    store["k"] = value
    done = store.compress()
    assert done["compressed"] == 1, store.status("k")
    assert store.status("k").startswith(f"compressed ({codec}")
    assert same(store.peek("k"), value)
    assert store.compressed_count == 1
    got = store["k"]
    assert same(got, value)
    assert store.status("k") == "uncompressed" and store["k"] is got


def test_ratio_threshold_keeps_incompressible_values() -> None:
    """A value that does not compress by min_ratio stays as it is, and status() says why."""
    store = hivemem.CompressedStore(min_ratio=1.5)
    noise = os.urandom(64 * 1024)
    store["noise"] = noise
    store["text"] = b"GET /index.html 200\n" * 4000
    done = store.compress()
    assert done == {
        "compressed": 1,
        "raw_bytes": 80000,
        "stored_bytes": done["stored_bytes"],
        "kept": 1,
        "failed": 0,
    }
    assert store["noise"] is noise
    assert "below min_ratio 1.5" in store.status("noise")
    assert store.compress()["compressed"] == 0  # the verdict is remembered until the value changes


def test_small_and_unpicklable_values_stay() -> None:
    """Values under min_size and values that cannot be pickled stay, each with a reason."""
    store = hivemem.CompressedStore(min_size="1KiB")
    store["small"] = b"x" * 100
    store["fn"] = [lambda: 1] * 300
    store.compress()
    assert "below min_size" in store.status("small")
    assert "cannot be serialized" in store.status("fn")


def test_least_recently_used_first_and_nbytes_budget() -> None:
    """compress(nbytes) takes the least recently used values first; reading a value makes it recent."""
    store = hivemem.CompressedStore()
    for k in "abcd":
        store[k] = k.encode() * 10_000
    store["a"]
    store.compress(20_000)
    assert [store.status(k).startswith("compressed") for k in "abcd"] == [False, True, True, False]


def test_repr_and_sizes() -> None:
    """repr shows entries and raw and stored sizes; the byte counters match the values."""
    store = hivemem.CompressedStore(codec="zlib")
    store["a"] = b"a" * 100_000
    assert store.raw_bytes == store.stored_bytes == 100_000
    store.compress()
    assert store.raw_bytes == 100_000 and store.stored_bytes < 1000
    text = repr(store)
    assert "raw='97.7 KiB'" in text and "stored=" in text and "codec='zlib'" in text
    del store["a"]
    assert store.raw_bytes == store.stored_bytes == 0 and len(store) == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"codec": "lz4"}, {"min_ratio": -1}, {"min_ratio": "2"}, {"level": "high"}, {"min_size": "lots"}],
)
def test_bad_arguments(kwargs: dict[str, object]) -> None:
    """Unknown codecs, negative ratios and bad levels or sizes raise clear errors."""
    with pytest.raises(hivemem.HivememError):
        hivemem.CompressedStore(**kwargs)  # type: ignore[arg-type]


def test_zstd_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without zstandard, codec='zstd' is refused with the install hint and 'auto' falls back to zlib."""
    monkeypatch.setattr(_compress, "zstd_available", lambda: False)
    with pytest.raises(hivemem.InvalidArgument, match="hivemem\\[zstd\\]"):
        hivemem.CompressedStore(codec="zstd")
    assert hivemem.CompressedStore().codec == "zlib"


def test_strategy_stops_at_target_and_skips_without_stores() -> None:
    """The compress strategy does nothing once RSS is under the target, and compresses otherwise."""
    store = hivemem.CompressedStore()
    store["a"] = b"a" * 100_000
    low = hivemem.StrategyContext(target=2**30, aggressiveness=hivemem.MODERATE, reader=FakeReader("100MB"))
    assert CompressValues().apply(low).skipped
    assert store.compressed_count == 0
    high = hivemem.StrategyContext(target=2**20, aggressiveness=hivemem.MODERATE, reader=FakeReader("100MB"))
    result = CompressValues().apply(high)
    assert result.stats["compressed"] >= 1 and store.compressed_count == 1


def test_concurrent_access_during_compression() -> None:
    """Readers and writers in 6 threads, with compress passes running, always see the latest value."""
    store = hivemem.CompressedStore(codec="zlib", level=1)
    errors: list[str] = []

    def worker(i: int) -> None:
        for n in range(300):
            key = f"{i}-{n % 10}"
            value = (f"{i}:{n};" * 400).encode()
            store[key] = value
            if store[key] != value:
                errors.append(key)

    race(store.compress, [threading.Thread(target=worker, args=(i,)) for i in range(6)])
    assert errors == []
    assert store.raw_bytes == sum(len(store.peek(k)) for k in store)  # type: ignore[arg-type]


@linux_only
def test_real_rss_drops_after_compress() -> None:
    """64 MiB of log-like 256 KiB text values, compress then trim: RSS falls by >= 70% of the raw
    size (tolerance: the compressed copies, ~6x smaller, and allocator noise); all read back identical."""
    out = run_python(
        """
        import hashlib, json, random, hivemem
        random.seed(1)
        paths = ["/api/v1/items", "/api/v1/users", "/health", "/static/app.js", "/login"]
        pool = [
            f"2024-05-01T12:{n // 60 % 60:02d}:{n % 60:02d}.{random.randrange(1000):03d}Z "
            f"{random.choice(['INFO', 'INFO', 'INFO', 'WARN'])} [worker-{random.randrange(8)}] "
            f"GET {random.choice(paths)} status={random.choice([200, 200, 200, 404])} "
            f"latency_ms={random.randrange(200)}"
            for n in range(20000)
        ]
        def value(i):
            return "\\n".join(random.choices(pool, k=3000))[: 256 * 1024]
        store = hivemem.CompressedStore()
        digests = {}
        for i in range(256):
            v = value(i); store[i] = v; digests[i] = hashlib.sha256(v.encode()).hexdigest(); del v
        raw = store.raw_bytes
        before = hivemem.rss()
        report = hivemem.optimize(strategies=["compress", "trim"])
        after = hivemem.rss()
        ok = all(hashlib.sha256(store.peek(i).encode()).hexdigest() == d for i, d in digests.items())
        n = store.compressed_count
        print(json.dumps({"raw": raw, "drop": before - after, "ok": ok, "compressed": n}))
        """
    )
    res = json.loads(out)
    assert res["ok"] and res["compressed"] == 256
    assert res["drop"] >= 0.70 * res["raw"], res
