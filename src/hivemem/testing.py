"""Helpers for testing code that uses hivemem, and for testing strategies.

:class:`FakeReader` stands in for the real memory reader so a test of a
strategy or of the governor gets exact, deterministic figures::

    reader = FakeReader(rss="500MB")
    gov = hivemem.MemoryGovernor(reader=reader, registry=hivemem.Registry(builtins=False, entry_points=False))
"""

from __future__ import annotations

import _thread

from hivemem._measure import MemoryUsage
from hivemem._sizes import parse_size

__all__ = ["FakeReader"]


class FakeReader:
    """A memory reader whose RSS is whatever the test says.

    ``rss()`` returns the current value; ``set()``, ``grow()`` and ``free()``
    change it (a fake strategy calls ``free()`` to "return" memory).
    ``usage()`` returns a :class:`hivemem.MemoryUsage` with that RSS, ``peak``
    tracking the highest value since construction or :meth:`reset_peak`, and
    every other field ``None`` (reason: ``"fake reader"``). Thread-safe.
    """

    def __init__(self, rss: int | str = 0) -> None:
        self._lock = _thread.allocate_lock()
        self._rss = parse_size(rss)
        self._peak = self._rss
        self.reads = 0

    def rss(self) -> int:
        with self._lock:
            self.reads += 1
            return self._rss

    def usage(self) -> MemoryUsage:
        with self._lock:
            self.reads += 1
            reason = "fake reader"
            return MemoryUsage(
                rss=self._rss,
                peak=self._peak,
                source="fake",
                unavailable={
                    k: reason for k in ("vms", "uss", "pss", "swap", "blocks", "traced", "traced_peak")
                },
            )

    def set(self, rss: int | str) -> None:
        value = parse_size(rss)
        with self._lock:
            self._rss = value
            self._peak = max(self._peak, value)

    def grow(self, nbytes: int | str) -> None:
        delta = parse_size(nbytes)
        with self._lock:
            self._rss += delta
            self._peak = max(self._peak, self._rss)

    def free(self, nbytes: int | str) -> None:
        delta = parse_size(nbytes)
        with self._lock:
            self._rss = max(self._rss - delta, 0)

    def reset_peak(self) -> None:
        with self._lock:
            self._peak = self._rss

    def __repr__(self) -> str:
        return f"FakeReader(rss={self._rss})"
