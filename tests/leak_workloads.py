"""The leak and non-leak workloads behind the issue-6 figure (test_leaks.py, bench_profiler.py).

Plain Python with no test dependencies, so any interpreter can run it. Each
leak keeps one ``bytes`` object of exactly N bytes (N - 33 bytes of payload
plus the bytes header) per call.
"""

from __future__ import annotations

import functools
import re

_kept: list[bytes] = []


def _leak(n):
    def fn():
        _kept.append(b"x" * (n - 33))

    fn.__name__ = fn.__qualname__ = f"leak_{n}B"
    return fn


_cache: dict[str, str] = {}
_cache_n = [0]


def cache_plateau():
    """A dict cache capped at 250 entries, 100 new keys per call: full on the third call."""
    for _ in range(100):
        _cache_n[0] += 1
        if len(_cache) >= 250:
            del _cache[next(iter(_cache))]
        _cache[f"key-{_cache_n[0]:09d}"] = "v" * 50


@functools.lru_cache(maxsize=128)
def _square(key):
    return [key] * 10


_lru_n = [0]


def lru_cache_plateau():
    """functools.lru_cache(maxsize=128), 60 new keys per call: full on the third call."""
    for _ in range(60):
        _lru_n[0] += 1
        _square(f"k{_lru_n[0]:09d}")


_table = None


def lazy_init():
    """Builds a 5000-entry table on first call, then only reads it."""
    global _table
    if _table is None:
        _table = {i: str(i) * 20 for i in range(5000)}
    return len(_table)


_re_n = [0]


def re_cache_bounded():
    """Compiles 300 new patterns per call: re's bounded cache fills, then evicts."""
    for _ in range(300):
        _re_n[0] += 1
        re.compile(f"a{_re_n[0]:08d}b+")


def temporaries():
    """Allocates 10k strings and drops them."""
    return len([str(i) for i in range(10000)])


LEAKS = [_leak(100), _leak(1024), _leak(10 * 1024), _leak(100 * 1024)]
NON_LEAKS = [cache_plateau, lru_cache_plateau, lazy_init, re_cache_bounded, temporaries]
