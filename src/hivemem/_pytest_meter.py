"""Peak meters for the pytest plugin and ``hivemem.testing``: exact, cheap, nestable.

Two clocks, one per ``kind``:

``rss``
    The whole process's resident set size. On Linux the peak is the kernel's
    high-water mark: writing ``5`` to ``/proc/self/clear_refs`` resets
    ``VmHWM`` to the current RSS and ``/proc/self/status`` reports the peak
    since then, so a measurement costs three small ``/proc`` operations
    (about 25 µs) and no sampling thread or allocation hook. Before the
    baseline is read, glibc's ``malloc_trim(0)`` returns the free heap pages
    left over by earlier code when there are at least 512 KiB of them, so
    memory an earlier test freed but glibc kept is faulted in again, and
    counted, when this test reuses it (see :func:`_trimmer`).
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

    __slots__ = ("baseline", "clock", "folded", "open")

    def __init__(self, clock: _Clock, baseline: int) -> None:
        self.clock = clock
        self.baseline = baseline
        self.folded = baseline
        self.open = True

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

    def _settle(self) -> None:
        """Called before a baseline is read (rss: hand free heap pages back)."""

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

    def begin(self) -> Span:
        """Open a span: reset the mark (folding it into open spans first) and read the baseline."""
        with self._lock:
            if not self._spans:
                self._opened()
            self._settle()
            self._fold()
            self._reset()
            span = Span(self, self.current())
            self._spans.append(span)
            return span

    def reset(self, span: Span) -> None:
        """Start *span* again from now, without losing the peaks other open spans saw."""
        with self._lock:
            self._settle()
            self._fold()
            self._reset()
            span.baseline = span.folded = self.current()

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


def _status_peak_reader() -> Callable[[], int | None]:
    """A fast reader of ``VmHWM`` (bytes): one ``pread`` of ``/proc/self/status`` on a kept descriptor."""
    state = {"fd": -1, "pid": -1}

    def read() -> int | None:
        pid = os.getpid()
        fd = state["fd"]
        if fd < 0 or state["pid"] != pid:  # a forked child must open its own /proc/self
            try:
                fd = os.open("/proc/self/status", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                return None
            state["fd"], state["pid"] = fd, pid
        try:
            data = os.pread(fd, 8192, 0)
        except OSError:
            state["fd"] = -1
            return None
        i = data.find(b"VmHWM:")
        if i < 0:
            return None
        return int(data[i + 6 : data.index(b"kB", i)]) * 1024

    return read


class _RssClock(_Clock):
    """RSS of the whole process: every thread's memory counts."""

    kind = "rss"

    def __init__(self, reader: Any = None) -> None:
        super().__init__()
        from hivemem import _measure

        self._reader = reader
        if reader is not None:
            self._rss: Callable[[], int] = reader.rss
            self.method = f"peak reported by {reader!r}"
            self._hwm: Callable[[], int | None] = lambda: reader.usage().peak
            self._hw_reset: Callable[[], bool] = lambda: bool(reader.reset_peak() is not False)
        else:
            self._rss = _measure.rss
            self._hwm = _status_peak_reader()
            self._hw_reset = _measure.reset_peak
            self._fast_reset = _clear_refs_writer()
        self._trim: Callable[[], object] | None = None
        if reader is not None:
            self._fast_reset = None
        self._sampled = False
        self._sample_max = 0
        self._sampler_running = False
        self._probe()

    def _probe(self) -> None:
        if self._reader is not None:
            return
        from hivemem import _measure

        if self._hw_reset() and self._hwm() is not None:
            self.method = "kernel high-water mark (VmHWM reset through /proc/self/clear_refs)"
        else:
            self._use_sampling(_measure._peak_state.reset_failed or "VmHWM not readable")
        self._trim = _trimmer()

    def current(self) -> int:
        return self._rss()

    def _use_sampling(self, why: str) -> None:
        self._sampled = True
        self.method = f"rss sampled every 1 ms by a thread ({why}); spikes shorter than that can be missed"

    def _settle(self) -> None:
        if self._trim is not None:
            self._trim()

    def _reset(self) -> None:
        if self._sampled:
            self._sample_max = self.current()
        elif self._fast_reset is not None and self._fast_reset():
            pass
        elif not self._hw_reset():
            from hivemem import _measure

            self._use_sampling(_measure._peak_state.reset_failed or "reset failed")
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


def _clear_refs_writer() -> Callable[[], bool] | None:
    """``hivemem.reset_peak()`` on a kept descriptor: one ``write`` instead of open, write, close."""
    state = {"fd": -1, "pid": -1}

    def reset() -> bool:
        pid = os.getpid()
        if state["fd"] < 0 or state["pid"] != pid:  # a forked child writes its own clear_refs
            try:
                state["fd"] = os.open("/proc/self/clear_refs", os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                return False
            state["pid"] = pid
        try:
            os.write(state["fd"], b"5")
        except OSError:
            state["fd"] = -1
            return False
        return True

    return reset


TRIM_ABOVE = 512 * 1024
"""Free glibc heap bytes (``mallinfo2().fordblks``) at or above which the baseline is preceded by a trim."""


def _trimmer() -> Callable[[], object] | None:
    """Hand glibc's free heap pages back before a baseline, when there are enough to matter.

    Returns ``None`` where glibc's ``malloc_trim`` is unavailable. Where
    ``mallinfo2`` exists (glibc >= 2.33) the trim runs only when glibc holds
    at least :data:`TRIM_ABOVE` bytes of free heap memory: below that, at most
    that much reused memory can go uncounted, and a trim would cost more than
    it buys (the next allocations fault the released pages in again; about
    0.1 ms per test in the benchmark suite). Without ``mallinfo2`` it always
    trims.

    The allocator check (``hivemem._native``) scans ``/proc/self/maps`` once
    per process and caches the answer; the per-test cost is one
    ``mallinfo2()`` call.
    """
    from hivemem import _native

    if _native.trim_unavailable_reason() is not None:
        return None
    mallinfo = _native._mallinfo2()
    if mallinfo is None:  # glibc < 2.33: no cheap way to ask first
        return lambda: _native.malloc_trim(0)

    def settle() -> object:
        if mallinfo().fordblks >= TRIM_ABOVE:
            return _native.malloc_trim(0)
        return 0

    return settle


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
    sites = span.clock.snapshot_sites(floor=rise // 100)  # type: ignore[attr-defined]
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
    return clock_for("rss")  # type: ignore[return-value]


def python_clock() -> _PythonClock:
    """The process-wide tracemalloc clock (created on first use)."""
    return clock_for("python")  # type: ignore[return-value]


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
    _clocks.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
