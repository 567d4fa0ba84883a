"""Peak meters for the pytest plugin and ``hivemem.testing``: exact, cheap, nestable.

Two clocks, one per ``kind``:

``rss``
    The whole process's resident set size. On Linux the peak is the kernel's
    high-water mark: writing ``5`` to ``/proc/self/clear_refs`` resets
    ``VmHWM`` to the current RSS and ``/proc/self/status`` reports the peak
    since then, so a measurement is one ``write`` and one ``pread`` of
    ``/proc/self/statm`` when it opens and one ``pread`` of
    ``/proc/self/status`` when it closes, each on a descriptor kept open,
    and no sampling thread or allocation hook. glibc's ``malloc_trim(0)``
    runs before a test only when the RSS has grown by more than
    :data:`TRIM_MARGIN` since the lowest reading after the last trim (see
    :meth:`_RssClock.checkpoint`), so memory an earlier test freed but glibc
    kept is faulted in again, and counted, when a later test reuses it,
    without a trim (or any heap walk) before every test.
    **Fallback** where ``clear_refs`` cannot be written (other systems, old
    kernels, sandboxes): a daemon thread samples :func:`hivemem.rss` every
    millisecond while a measurement is open; ``method`` says so, and a spike
    shorter than the interval can be missed.
``python``
    tracemalloc's traced memory (Python's allocators and extensions that
    report to tracemalloc; not other C allocations). tracemalloc is started
    for the measurement if it is not tracing, and stopped afterwards.

Both hardware marks are process-wide and can only be reset, so nested or
overlapping measurements (a ``memory_ceiling`` block inside a test with a
``memory_limit`` marker, ``memory.reset()`` in the body) share one clock:
before any reset the clock folds the mark into every open span, so each span
still sees the true maximum since it began. Calling ``hivemem.reset_peak()``
or ``tracemalloc.reset_peak()`` yourself inside a measured block bypasses
this and can hide a peak.
"""

from __future__ import annotations

import _thread
import os
import weakref

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["KINDS", "SiteCatcher", "Span", "block_sites", "clock_for", "python_clock", "rss_clock"]

KINDS = ("rss", "python")


class Span:
    """One open measurement on a clock: its baseline and the highest mark folded into it."""

    __slots__ = ("baseline", "clock", "folded", "open", "trimmed")

    def __init__(self, clock: _Clock, baseline: int) -> None:
        self.clock = clock
        self.baseline = baseline
        self.folded = baseline
        self.open = True
        self.trimmed = clock.trims != clock.trims_seen  # glibc's heap trimmed since the last span began
        clock.trims_seen = clock.trims

    def peak(self) -> int:
        """Highest absolute figure since the span began (bytes)."""
        return self.clock.peak_of(self)

    def rise(self) -> int:
        """Peak above the baseline, never negative (bytes)."""
        return max(self.peak() - self.baseline, 0)

    def current(self) -> int:
        """The figure now, minus the baseline (may be negative)."""
        return self.clock.current() - self.baseline

    def close(self) -> int:
        """End the span; returns its rise. Idempotent."""
        return self.clock.end(self)


class _Clock:
    kind = ""
    method = ""
    trims = 0  # rss: malloc_trim calls so far
    trims_seen = 0  # ... when the last span began

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._spans: list[Span] = []

    # --- what a concrete clock provides
    def current(self) -> int:
        raise NotImplementedError

    def _mark(self) -> int:
        raise NotImplementedError

    def _reset(self) -> None:
        raise NotImplementedError

    def _baseline(self, gated: bool) -> int:
        """Under the lock: fold the mark into open spans, reset it, and return the figure now."""
        self._fold()
        self._reset()
        return self.current()

    def checkpoint(self, *, force: bool = False) -> None:
        """A quiet point between tests, before the next one's fixtures are set up (rss: the trim gate)."""

    def _opened(self) -> None:
        """Called under the lock when the first span opens."""

    def _closed(self) -> None:
        """Called under the lock when the last span closes."""

    # --- shared machinery
    def _fold(self) -> None:
        if self._spans:
            mark = self._mark()
            for span in self._spans:
                if mark > span.folded:
                    span.folded = mark

    def begin(self, *, gated: bool = False) -> Span:
        """Open a span: reset the mark (folding it into open spans first) and read the baseline.

        *gated* (the pytest runner's per-test spans, which follow a
        :meth:`checkpoint`): the rss clock trims glibc's heap first only when
        the RSS grew since the checkpoint; otherwise it trims every time.
        """
        with self._lock:
            if not self._spans:
                self._opened()
            span = Span(self, self._baseline(gated))
            self._spans.append(span)
            return span

    def reset(self, span: Span) -> None:
        """Start *span* again from now, without losing the peaks other open spans saw."""
        with self._lock:
            span.baseline = span.folded = self._baseline(False)

    def peak_of(self, span: Span) -> int:
        if not span.open:
            return span.folded
        with self._lock:
            mark = self._mark()
        return max(span.folded, mark)

    def end(self, span: Span) -> int:
        with self._lock:
            if span.open:
                span.folded = max(span.folded, self._mark())
                span.open = False
                self._spans.remove(span)
                if not self._spans:
                    self._closed()
        return max(span.folded - span.baseline, 0)


# --------------------------------------------------------------------------- rss


TRIM_MARGIN = 1536 * 1024
"""RSS growth (bytes) past which the trim gate trims glibc's heap before a per-test baseline.

At most this much memory freed by earlier tests can be reused by a test
without being counted. It sits above what a test of the benchmark suite
(20,000 small dicts) leaves in glibc's keeping: 200 KiB or 960 KiB here,
depending on how the heap was laid out before the first test. A margin of
1 MiB still trimmed before a third of those tests, and a trim (30 µs to
3.5 ms, as glibc walks its free chunks) plus faulting the pages in again
cost more than the rest of the measurement. It sits below what the
accuracy benchmark's 2 MiB test leaves, so that one is trimmed.
"""


class _RssClock(_Clock):
    """RSS of the whole process: every thread's memory counts."""

    kind = "rss"

    def __init__(self, reader: Any = None) -> None:
        super().__init__()
        from hivemem._measure import usage as _measure

        self._reader = reader
        self._fast_reset: Callable[[], bool] | None = None
        if reader is not None:
            self._rss: Callable[[], int] = reader.rss
            self.method = f"peak reported by {reader!r}"
            self._hwm: Callable[[], int | None] = lambda: reader.usage().peak
            self._hw_reset: Callable[[], bool] = lambda: bool(reader.reset_peak() is not False)
        else:
            from hivemem._measure.procfs import read_hwm

            self._rss = _measure.rss
            self._hwm = read_hwm  # one pread of /proc/self/status on a kept descriptor
            self._hw_reset = _measure.reset_peak
            self._fast_reset = _measure.reset_peak_kept_fd  # one write on a kept descriptor
        self._trim: Callable[[], object] | None = None
        self._floor: int | None = None  # lowest checkpoint RSS since the last checkpoint trim
        self._ref: int | None = None  # RSS at the last checkpoint or trim: glibc held little free memory then
        self._sampled = False
        self._sample_max = 0
        self._sampler_running = False
        self._probe()

    def _probe(self) -> None:
        if self._reader is not None:
            return
        from hivemem._measure import usage as _measure

        if self._hw_reset() and self._hwm() is not None:
            self.method = "kernel high-water mark (VmHWM reset through /proc/self/clear_refs)"
        else:
            self._use_sampling(_measure.peak_reset_failure() or "VmHWM not readable")
        self._trim = _trimmer()

    def current(self) -> int:
        return self._rss()

    def _use_sampling(self, why: str) -> None:
        self._sampled = True
        self.method = f"rss sampled every 1 ms by a thread ({why}); spikes shorter than that can be missed"

    def _trimmed_rss(self) -> int:
        assert self._trim is not None
        self._trim()
        self.trims += 1
        rss = self._ref = self.current()
        return rss

    def checkpoint(self, *, force: bool = False) -> None:
        """Trim glibc's heap if memory freed since the last checkpoint may still be resident.

        Called by the pytest runner before each measured test's setup, when
        the previous test's function-scoped fixtures are gone; *force* after
        wider-scoped fixtures were torn down. See :meth:`_baseline` for why
        the trim, and ``docs/pytest.md`` for what the gate can miss.

        The gate reads only the RSS. Right after a trim glibc holds no free
        whole page. Memory freed since then and kept by glibc was either
        faulted in after the trim, and raised the RSS by as much, or was
        alive at that trim. Checkpoints come before fixtures are set up, so
        what was alive at a checkpoint trim outlives single tests (imports,
        caches, wider-scoped fixtures: *force* covers their teardown). So a
        checkpoint RSS more than :data:`TRIM_MARGIN` above the lowest since
        the last trim (``_floor``) trims; one at or below it means at most
        the margin of freed memory can be reused without being counted,
        unless the program handed other memory back to the system
        meanwhile, or freed memory that outlived the tests that made it.
        """
        with self._lock:
            if self._trim is None:
                return
            rss = self._rss()
            floor = self._floor
            if force or floor is None or rss - floor > TRIM_MARGIN:
                self._floor = self._trimmed_rss()
                return
            if rss < floor:
                self._floor = rss
            self._ref = rss

    def _baseline(self, gated: bool) -> int:
        """Reset the mark and read the baseline, trimming glibc's heap first when needed.

        Why trim: memory that earlier code freed and glibc kept is already
        resident, so code that reuses it raises no page, and a peak would
        depend on what ran before. The trim hands those pages back so that
        reusing them faults them in again, and counts.

        Why not always: the released pages are faulted in again by the next
        allocations, and a trim walks glibc's free chunks (about 150 µs in
        a pytest process, more in a fragmented heap), which was most of the
        cost of a ceiling on suites of small tests. A per-test span is
        *gated*: it follows a :meth:`checkpoint`, so it trims only when the
        fixtures' setup raised the RSS by more than :data:`TRIM_MARGIN`
        since then (memory they freed may be kept). Explicit blocks
        (``memory_ceiling``, ``MemoryMeter``, ``memory.reset()``) trim every
        time: code inside a test can free what it holds just before one.
        """
        if self._spans:
            self._fold()
        self._reset()
        base = self._rss()
        if self._trim is None:
            return base
        ref = self._ref
        if gated and ref is not None and base - ref <= TRIM_MARGIN:
            return base
        self._trimmed_rss()
        self._fold()  # another thread may have peaked since the reset above
        self._reset()
        base = self._ref = self.current()
        return base

    def _reset(self) -> None:
        if self._fast_reset is not None and not self._sampled and self._fast_reset():
            return
        if self._sampled:
            self._sample_max = self.current()
        elif not self._hw_reset():
            from hivemem._measure import usage as _measure

            self._use_sampling(_measure.peak_reset_failure() or "reset failed")
            self._sample_max = self.current()
            self._opened()

    def _mark(self) -> int:
        if self._sampled:
            cur = self.current()
            if cur > self._sample_max:
                self._sample_max = cur
            return self._sample_max
        mark = self._hwm()  # the kernel reports max(VmHWM, current RSS): no need to read statm too
        if mark is None:
            return self.current()
        return mark if self._reader is None else max(mark, self.current())

    def _opened(self) -> None:
        if self._sampled and not self._sampler_running:
            self._sampler_running = True
            _thread.start_new_thread(self._sample_loop, ())

    def _closed(self) -> None:
        self._sampler_running = False

    def _sample_loop(self) -> None:
        import time

        rss = self._rss
        while self._sampler_running:
            value = rss()
            if value > self._sample_max:
                self._sample_max = value
            time.sleep(0.001)


def _trimmer() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or ``None`` where it is unavailable (musl, jemalloc, other systems).

    The allocator check (``hivemem._measure.native``) scans ``/proc/self/maps`` once
    per process and caches the answer.
    """
    from hivemem._measure import native as _native

    if _native.trim_unavailable_reason() is not None:
        return None
    return lambda: _native.malloc_trim(0)


# --------------------------------------------------------------------------- python


class _PythonClock(_Clock):
    """tracemalloc's traced memory; tracemalloc runs only while a span is open (unless it already ran)."""

    kind = "python"
    method = "tracemalloc peak (Python allocators only)"

    def __init__(self, frames: int = 1) -> None:
        super().__init__()
        self.frames = frames
        self._started = False

    def _opened(self) -> None:
        import tracemalloc

        if not tracemalloc.is_tracing():
            tracemalloc.start(self.frames)
            self._started = True

    def _closed(self) -> None:
        if self._started:
            import tracemalloc

            tracemalloc.stop()
            self._started = False

    @property
    def owns_tracing(self) -> bool:
        return self._started

    def current(self) -> int:
        import _tracemalloc

        return int(_tracemalloc.get_traced_memory()[0])

    def _mark(self) -> int:
        import _tracemalloc

        return int(_tracemalloc.get_traced_memory()[1])

    def _reset(self) -> None:
        import _tracemalloc

        _tracemalloc.reset_peak()

    def snapshot_sites(self, limit: int = 8, floor: int = 0) -> tuple[tuple[str, int, int], ...]:
        """Top allocation sites alive now, as ``(file:line, bytes, blocks)``; resets the peak it inflates.

        Sites smaller than *floor* bytes or than 1% of the largest are left
        out (pytest's and pluggy's own bookkeeping), and so is hivemem's
        measuring code.
        Taking a snapshot allocates (and traces) a list of every trace, so
        the mark is folded into open spans first and reset afterwards.
        """
        import tracemalloc

        here = os.path.dirname(__file__)
        with self._lock:
            self._fold()
            snap = tracemalloc.take_snapshot().filter_traces(
                (
                    tracemalloc.Filter(False, tracemalloc.__file__),
                    tracemalloc.Filter(False, os.path.join(here, "_pytest_*.py")),
                    tracemalloc.Filter(False, os.path.join(here, "testing.py")),
                    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
                )
            )
            stats = snap.statistics("lineno")[:limit]
            floor = max(floor, stats[0].size // 100 if stats else 0)
            sites = tuple(
                (_short(s.traceback[0].filename, s.traceback[0].lineno), s.size, s.count)
                for s in stats
                if s.size >= floor
            )
            del snap, stats
            self._reset()
        return sites


def _short(filename: str, lineno: int) -> str:
    try:
        rel = os.path.relpath(filename)
    except ValueError:  # another drive on Windows
        rel = filename
    if rel.startswith(".." + os.sep + ".."):
        rel = filename
    return f"{rel}:{lineno}"


class SiteCatcher:
    """Catch the top allocation sites while traced memory is over a limit (python kind).

    tracemalloc cannot give a snapshot *at* the peak, and a block's locals
    are gone once it ends, so two watchers check the traced memory and take
    a snapshot each time it rises 10% above the previous snapshot while over
    ``baseline + limit``:

    * **line by line** in the measured code (the test function, or the frame
      holding a ``memory_ceiling`` block), before each line and at return:
      ``sys.monitoring`` local events on 3.12+, otherwise ``sys.settrace``
      when no other tracer (debugger, coverage) is installed;
    * a daemon thread **every 2 ms**, for allocations deeper in the call tree.

    A short-lived peak inside a called function that frees its memory before
    returning can escape both; ``note`` then says so. Nothing is
    snapshotted while the block stays under its limit.
    """

    def __init__(
        self, clock: _PythonClock, span: Span, limit: int, *, code: Any = None, frame: Any = None
    ) -> None:
        self.clock = clock
        self.span = span
        self.threshold = span.baseline + limit
        self.sites: tuple[tuple[str, int, int], ...] = ()
        self.level = 0
        self._busy = _thread.allocate_lock()
        self._running = True
        self._done = _thread.allocate_lock()
        self._done.acquire()
        self._untrace: Callable[[], None] | None = None
        self.how = "sampled every 2 ms"
        if code is None and frame is not None:
            code = frame.f_code
        if code is not None:
            self._untrace = _watch_lines(code, frame, self.check)
            if self._untrace is not None:
                self.how = "checked line by line and sampled every 2 ms"
        _thread.start_new_thread(self._loop, ())

    def check(self) -> None:
        """Snapshot the sites if traced memory is over the threshold and 10% above the last snapshot."""
        cur = self.clock.current()
        if cur > self.threshold and cur > self.level * 1.1 and self._busy.acquire(False):
            try:
                self.sites = self.clock.snapshot_sites()
                self.level = cur
            finally:
                self._busy.release()

    def _loop(self) -> None:
        import time

        try:
            while self._running:
                self.check()
                time.sleep(0.002)
        finally:
            self._done.release()

    def stop(self) -> None:
        if self._untrace is not None:
            self._untrace()
            self._untrace = None
        self._running = False
        with self._done:
            pass


def block_sites(
    span: Span, catcher: SiteCatcher | None, rise: int, what: str
) -> tuple[tuple[tuple[str, int, int], ...], str]:
    """The sites to show for a python-kind block over its limit, and where they come from."""
    from hivemem._sizes import format_size

    if catcher is not None and catcher.sites:
        return catcher.sites, f"at {format_size(catcher.level - span.baseline)} traced, {catcher.how}"
    how = catcher.how if catcher is not None else "not watched"
    clock = span.clock
    sites = clock.snapshot_sites(floor=rise // 100) if isinstance(clock, _PythonClock) else ()
    if sites:
        return sites, f"no check caught the peak ({how}); these are still alive at the end of the {what}"
    return (), (
        f"the peak was too short-lived for the checks ({how}) and nothing of >= 1% of it is alive "
        f"at the end of the {what}; split the {what} with memory_ceiling blocks to narrow it down"
    )


_TOOL_IDS = (
    4,
    3,
)  # sys.monitoring ids no standard tool claims (0 debugger, 1 coverage, 2 profiler, 5 optimizer)


def _watch_lines(code: Any, frame: Any, check: Callable[[], None]) -> Callable[[], None] | None:
    """Call *check* before each line of *code* and when it returns; ``None`` when no hook is free."""
    import sys

    mon: Any = getattr(sys, "monitoring", None)
    if mon is not None:
        for tool in _TOOL_IDS:
            try:
                mon.use_tool_id(tool, "hivemem")
            except ValueError:
                continue
            ev = mon.events
            mon.register_callback(tool, ev.LINE, lambda _code, _line: check())
            mon.register_callback(tool, ev.PY_RETURN, lambda _code, _offset, _value: check())
            mon.set_local_events(tool, code, ev.LINE | ev.PY_RETURN)

            def stop_monitoring(tool: int = tool, ev: Any = ev) -> None:
                mon.set_local_events(tool, code, 0)
                mon.register_callback(tool, ev.LINE, None)
                mon.register_callback(tool, ev.PY_RETURN, None)
                mon.free_tool_id(tool)

            return stop_monitoring
        return None
    if sys.gettrace() is not None:  # a debugger or coverage owns settrace: leave it alone
        return None

    def local(f: Any, event: str, arg: object) -> Any:
        if event == "line" or event == "return":
            check()
        return local

    def global_(f: Any, event: str, arg: object) -> Any:
        return local if f.f_code is code else None

    if frame is not None:
        frame.f_trace = local
    sys.settrace(global_)

    def stop_tracing() -> None:
        if sys.gettrace() is global_:
            sys.settrace(None)
        if frame is not None:
            frame.f_trace = None

    return stop_tracing


# --------------------------------------------------------------------------- clocks

_clocks: dict[str, _Clock] = {}
_reader_clocks: weakref.WeakKeyDictionary[Any, _Clock] = weakref.WeakKeyDictionary()
_clocks_lock = _thread.allocate_lock()


def rss_clock() -> _RssClock:
    """The process-wide RSS clock (created on first use)."""
    clock = clock_for("rss")
    assert isinstance(clock, _RssClock)
    return clock


def python_clock() -> _PythonClock:
    """The process-wide tracemalloc clock (created on first use)."""
    clock = clock_for("python")
    assert isinstance(clock, _PythonClock)
    return clock


def clock_for(kind: str, reader: Any = None) -> _Clock:
    """The process-wide clock for *kind*; each *reader* (a ``FakeReader``) gets a clock of its own."""
    if kind not in KINDS:
        from hivemem._errors import InvalidArgument

        raise InvalidArgument(f"invalid kind {kind!r}: expected 'rss' or 'python'")
    if reader is not None:
        if kind != "rss":
            from hivemem._errors import InvalidArgument

            raise InvalidArgument("reader= only applies to kind='rss'")
        with _clocks_lock:
            clock = _reader_clocks.get(reader)
            if clock is None:
                clock = _reader_clocks[reader] = _RssClock(reader)
            return clock
    with _clocks_lock:
        clock = _clocks.get(kind)
        if clock is None:
            clock = _clocks[kind] = _RssClock() if kind == "rss" else _PythonClock()
        return clock


def _after_fork() -> None:
    # The child has no sampler thread and no open spans of its own.
    global _clocks_lock
    _clocks_lock = _thread.allocate_lock()
    _clocks.clear()  # (procfs drops the kept /proc/self descriptors itself)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
