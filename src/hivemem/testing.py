"""Helpers for testing code that uses hivemem, and memory assertions for any test runner.

:class:`FakeReader` stands in for the real memory reader so a test of a
strategy or of the governor gets exact, deterministic figures::

    reader = FakeReader(rss="500MB")
    gov = hivemem.MemoryGovernor(reader=reader, registry=hivemem.Registry(builtins=False, entry_points=False))

For tests that do not run under pytest (unittest, scripts, notebooks), the
same checks the pytest plugin makes:

* :func:`assert_peak_below` is a context manager that raises
  :class:`hivemem.MemoryCeilingExceeded` (an ``AssertionError``) when the
  block's peak goes over a limit;
* :func:`assert_no_leaks` calls a function repeatedly and raises
  :class:`hivemem.LeakDetected` (an ``AssertionError``) when memory grew on
  every measured repetition;
* :class:`MemoryMeter` is a live meter (``.peak``, ``.current``,
  ``.reset()``, ``.usage()``) for tests that assert on the figures
  themselves. It is what the pytest ``memory`` fixture returns.

See ``docs/pytest.md`` for what each ``kind`` measures and the boundary rule
(a block passes when its peak is ``<=`` the limit).
"""

from __future__ import annotations

import _thread

from hivemem._measure.usage import MemoryUsage
from hivemem._pytest.ceiling import Ceiling, MemoryMeter, PeakMeasurement
from hivemem._sizes import parse_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from hivemem._measure.reader import Reader
    from hivemem._profile.leaks import LeakReport

__all__ = [
    "FakeReader",
    "MemoryMeter",
    "PeakMeasurement",
    "assert_no_leaks",
    "assert_peak_below",
]


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


def assert_peak_below(limit: int | str, *, kind: str = "rss", reader: Reader | None = None) -> Ceiling:
    """Context manager: raise :class:`hivemem.MemoryCeilingExceeded` if the block's peak exceeds *limit*.

    *limit* is a size (``"20 MiB"``, bytes); the block passes when its peak
    is ``<=`` *limit*. ``kind="rss"`` measures the peak RSS of the whole
    process (every thread) above the RSS at the start of the block;
    ``kind="python"`` the tracemalloc peak above the traced memory at the
    start, and the error then lists the top allocation sites. After the
    block, ``.result`` is the :class:`PeakMeasurement`. An exception raised
    inside the block propagates unchanged.
    """
    return Ceiling(limit, kind, reader, "block")


def assert_no_leaks(
    fn: Callable[..., object],
    *,
    warmup: int = 2,
    repeat: int = 5,
    tolerance: int | str | None = None,
    args: tuple[object, ...] = (),
    kwargs: Mapping[str, object] | None = None,
    number: int = 1,
    types: bool = True,
) -> LeakReport:
    """Call *fn* ``warmup + repeat`` times; raise :class:`hivemem.LeakDetected` if it leaks.

    It leaks when memory grew by more than *tolerance* (bytes per call;
    default :data:`hivemem._profile.leaks.DEFAULT_TOLERANCE`) on **every** one of
    the *repeat* measured runs, the rule of CPython's refleak hunter, as
    :func:`hivemem.find_leaks` measures it (only the function inside the
    window; growth that tails off is a cache filling). The *warmup* runs
    fill caches and are not judged, so a cache that fills and then plateaus
    passes. *number* calls make one run; *types* names the growing object
    types in the error (one more run, which walks the heap). Returns the
    :class:`hivemem.LeakReport` otherwise.
    """
    from hivemem._profile.leaks import DEFAULT_TOLERANCE, describe_leak, find_leaks, refleak

    report = find_leaks(
        fn,
        warmup=warmup,
        repeat=repeat,
        tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance,
        args=args,
        kwargs=kwargs,
        number=number,
        types=types,
    )
    if refleak(report):
        from hivemem._errors import LeakDetected

        raise LeakDetected(describe_leak(report, what=report.function or "the function"), report=report)
    return report
