"""The "hive mind" application behind ``make demo`` / ``hivemem demo``.

A small event-processing service, built the way real programs bloat:

* **events**: ~1.9M small dicts parsed from a stream; 1 in 50 is kept, so
  the survivors are scattered over every pymalloc arena (sparse survivors);
* **caches**: an application dict cache of one tuple per event and a
  ``functools.lru_cache`` of rendered HTML fragments (~1 KiB strings);
* **buffers**: 1-4 KiB ``bytes`` read along the way, 1 in 64 kept (glibc
  heap fragmentation);
* **sessions**: objects with parent/child reference cycles, dropped at the
  end (cyclic garbage waiting for a full collection);
* **rows**: a CSV-like file parsed with ``str.split``, 1 row in 4 kept
  (duplicate strings: every row has its own copy of the city and kind).

With the default size the process reaches about 1.7 GB of RSS while the
data it truly needs (events, buffers and rows kept) is under 50 MB. Every
answer the program computes (:func:`answers`) is a checksum of that live
data plus cached lookups, so a run can prove that optimizing changed no
result. :func:`build_floor` builds only the live data directly: its RSS is
the floor that no optimization can beat.

:func:`main` builds the app in this process, showing RSS as it grows, runs
``hivemem.optimize(target_mb=90)`` with one line per strategy as it runs,
prints the report and verifies the checksum. Every figure printed is read
from the kernel, not estimated.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import sys
import threading
import time

import hivemem
from hivemem._sizes import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TextIO

__all__ = ["DEFAULT_MIX", "DEFAULT_SIZE", "App", "answers", "build_app", "build_floor", "main", "register"]

#: RSS growth the full-size app aims at (bytes).
DEFAULT_SIZE = 1700 * 2**20
#: Measured growth of the app per event, used to turn a size into a count.
_BYTES_PER_EVENT = 935
_KINDS = ("click", "view", "buy", "scroll", "login", "logout", "search")
_CITIES = ("Lyon", "Paris", "Oslo", "Lima", "Pune", "Kyiv", "Rome", "Nice")
#: The app's proportions: 1 event in ``event_keep`` kept, a buffer every ``buffer_every``
#: events (1 in ``buffer_keep`` kept), a rendered page every ``page_every``, a session every
#: ``session_every``, one CSV line per ``events_per_line`` events (1 row in ``row_keep`` kept).
#: Benchmarks build variants with other proportions (``benchmarks/scenarios/composite_*.py``).
DEFAULT_MIX: dict[str, int] = {
    "event_keep": 50,
    "buffer_every": 6,
    "buffer_keep": 64,
    "page_every": 8,
    "session_every": 16,
    "events_per_line": 4,
    "row_keep": 8,
}


def _render(key: int) -> str:
    """An HTML fragment of ~0.4-1.7 KiB (a malloc'd block, not pymalloc)."""
    return f"<li>{key}</li>" * (40 + key % 60)


class _Session:
    """A user session; its requests point back at it (a reference cycle)."""

    def __init__(self, sid: int) -> None:
        self.id = sid
        self.payload = bytes([sid % 200]) * (900 + sid % 600)
        self.requests: list[_Request] = [_Request(self, sid)]


class _Request:
    def __init__(self, session: _Session, i: int) -> None:
        self.session = session
        self.path = f"/item/{i}"


def _event(i: int) -> dict[str, object]:
    return {"id": i, "user": f"user{i % 5000}", "kind": _KINDS[i % 7], "ts": 1.7e9 + i, "value": i * 0.5}


def _buffer(i: int) -> bytes:
    return bytes([i % 251]) * (1024 + (i * 977) % 3072)


def _line(j: int) -> str:
    return f"{j},{_CITIES[j % 8]},{_KINDS[j % 7]},{j % 100}"


class App:
    """The application's state: what it keeps (``events``, ``buffers``, ``rows``) and its caches."""

    def __init__(self, n_events: int, mix: dict[str, int] | None = None) -> None:
        self.n_events = n_events
        self.mix = {**DEFAULT_MIX, **(mix or {})}
        self.events: list[dict[str, object]] = []
        self.buffers: list[bytes] = []
        self.rows: list[tuple[str, ...]] = []
        self.cache: dict[int, tuple[str, str, int]] = {}
        self.page: Callable[[int], str] = functools.lru_cache(maxsize=None)(_render)
        # What a threaded service has anyway: the lock its code holds while it touches the
        # data. Registered with hivemem, it lets the governor's thread compact the data safely.
        self.lock = threading.RLock()

    def lookup(self, i: int) -> tuple[str, str, int]:
        """A cached lookup: the same answer whether or not the cache still holds it."""
        hit = self.cache.get(i)
        if hit is None:
            hit = self.cache[i] = (f"user{i % 5000}", _KINDS[i % 7], i * 3)
        return hit

    @property
    def live_bytes(self) -> int:
        """A lower bound of the live data's size (sys.getsizeof of what is kept)."""
        size = sys.getsizeof(self.events) + sys.getsizeof(self.buffers) + sys.getsizeof(self.rows)
        for ev in self.events:
            size += sys.getsizeof(ev) + sum(sys.getsizeof(v) for v in ev.values())
        size += sum(sys.getsizeof(b) for b in self.buffers)
        for row in self.rows:
            size += sys.getsizeof(row) + sum(sys.getsizeof(s) for s in row)
        return size


def _count(size: int) -> int:
    return max(1000, size // _BYTES_PER_EVENT)


def build_app(
    size: int = DEFAULT_SIZE,
    progress: Callable[[str], object] | None = None,
    mix: dict[str, int] | None = None,
) -> App:
    """Run the service until its RSS has grown by about *size* bytes; return its state.

    *progress(phase)* is called after each phase (the caller reads RSS).
    *mix* overrides :data:`DEFAULT_MIX` (the size is then only roughly *size*).
    """
    app = App(_count(size), mix)
    with app.lock:
        _run_service(app, progress)
    return app


def _run_service(app: App, progress: Callable[[str], object] | None) -> None:
    n, mix = app.n_events, app.mix
    event_keep, page_every, buffer_every = mix["event_keep"], mix["page_every"], mix["buffer_every"]
    session_every = mix["session_every"]
    sessions: dict[int, _Session] = {}
    buffers: list[bytes] = []
    chunks = 8
    for c in range(chunks):
        for i in range(c * n // chunks, (c + 1) * n // chunks):
            ev = _event(i)
            if i % event_keep == 0:
                app.events.append(ev)
            app.lookup(i)
            if i % page_every == 0:
                app.page(i)
            if i % buffer_every == 0:
                buffers.append(_buffer(i))
            if i % session_every == 0:
                sessions[i] = _Session(i)
        if progress is not None:
            progress(f"processed {(c + 1) * n // chunks:,} events")
    app.buffers = buffers[:: mix["buffer_keep"]]
    del buffers
    lines = [_line(j) for j in range(n // mix["events_per_line"])]
    for j, text in enumerate(lines):
        fields = tuple(text.split(","))
        if j % mix["row_keep"] == 0:
            app.rows.append(fields)
    del lines
    if progress is not None:
        progress(f"parsed {n // mix['events_per_line']:,} CSV lines")
    sessions.clear()  # the sessions are done: reference cycles, garbage until a full collection
    del sessions
    if progress is not None:
        progress("dropped the sessions (cyclic garbage)")


def build_floor(size: int = DEFAULT_SIZE, mix: dict[str, int] | None = None) -> App:
    """Build only the data :func:`build_app` keeps, directly: the scenario's floor."""
    app = App(_count(size), mix)
    n, m = app.n_events, app.mix
    app.events = [_event(i) for i in range(0, n, m["event_keep"])]
    app.buffers = [_buffer(i) for i in range(0, n, m["buffer_every"] * m["buffer_keep"])]
    app.rows = [tuple(_line(j).split(",")) for j in range(0, n // m["events_per_line"], m["row_keep"])]
    return app


def answers(app: App) -> str:
    """Everything the program computes, as one checksum (independent of object identity)."""
    with app.lock:
        return _answers(app)


def _answers(app: App) -> str:
    h = hashlib.sha256()
    h.update(repr(app.events).encode())
    for b in app.buffers:
        h.update(b)
    h.update(repr(app.rows).encode())
    step = max(1, app.n_events // 97)
    for i in range(0, app.n_events, step):
        h.update(repr(app.lookup(i)).encode())
        if i % app.mix["page_every"] == 0:
            h.update(app.page(i).encode())
    return h.hexdigest()


def register(app: App) -> list[tuple[str, str, bool]]:
    """Register the app's data with hivemem, as the app would at start-up.

    Returns ``(api, what, done)`` per registration: ``done`` is False when
    this hivemem has no such API yet, so the demo can say so.
    """
    lazy = hivemem._LAZY
    plan: list[tuple[str, str, object, dict[str, object]]] = [
        ("register_cache", "app.cache", app.cache, {}),
        ("register_cache", "app.page (lru_cache)", app.page, {}),
        ("register_container", "app.rows", app.rows, {"lock": app.lock}),
        ("compactable", "app.events", app.events, {"lock": app.lock}),
        ("compactable", "app.rows", app.rows, {"lock": app.lock}),
        ("compactable", "app.buffers", app.buffers, {"lock": app.lock}),
    ]
    done: list[tuple[str, str, bool]] = []
    for api, what, obj, options in plan:
        if api in lazy:
            getattr(hivemem, api)(obj, **options)
            done.append((api, what, True))
        else:
            done.append((api, what, False))
    return done


# --------------------------------------------------------------------------- the demo


def build_fragmented_heap(total_mb: int = 600) -> list[bytes]:
    """Allocate ~total_mb MiB of 1-4 KiB bytes objects; keep 1 in 64 (returned)."""
    blocks: list[bytes] = []
    size, n = 0, 0
    limit = total_mb * 2**20
    while size < limit:
        length = 1024 + (n * 977) % 3072
        blocks.append(bytes([n % 251]) * length)
        size += length
        n += 1
    survivors = blocks[::64]
    del blocks
    return survivors


def checksum(data: list[bytes]) -> str:
    h = hashlib.sha256()
    for b in data:
        h.update(b)
    return h.hexdigest()[:16]


def auto_target(size: int, start: int) -> int:
    """The default target for a non-default *size*: RSS at start plus ~4.4% of *size* (at least 24 MiB).

    At the default size that is about 90 MiB, the figure the demo is known by.
    """
    return start + max(24 * 2**20, int(size * 0.0435))


def main(
    target_mb: float | None = 90,
    size: int = DEFAULT_SIZE,
    out: TextIO | None = None,
    aggressiveness: str | None = None,
) -> int:
    """Build the app, optimize it toward *target_mb*, verify the answers. Returns the exit code.

    ``target_mb=None`` picks :func:`auto_target` (for runs at other sizes).
    The pass is the README's one-liner, ``hivemem.optimize(target_mb=90)``,
    with progress callbacks that only print; *aggressiveness* (a ceiling)
    is passed on only when given.

    0: answers identical (whether or not the target was reached; the output
    says which); 1: an answer changed (a bug in a strategy).
    """
    stream = out if out is not None else sys.stdout

    def say(text: str, end: str = "\n") -> None:
        print(text, end=end, file=stream, flush=True)

    t0 = time.perf_counter()
    start = hivemem.rss()
    if target_mb is None:
        target_mb = auto_target(size, start) / 2**20
    say(f"hivemem demo: the 'hive mind' app, sized to grow by about {format_size(size)}")
    say(f"  RSS at start {format_size(start)}")

    def grew(phase: str) -> None:
        say(f"  {phase:<40} RSS {format_size(hivemem.rss()):>10}")

    app = build_app(size, progress=grew)
    expected = answers(app)
    live = app.live_bytes
    registered = register(app)
    missing: dict[str, list[str]] = {}
    for api, what, ok in registered:
        if not ok:
            missing.setdefault(api, []).append(what)
    for api, whats in missing.items():
        say(f"  note: this build has no hivemem.{api}(); not registered: {', '.join(whats)}")
    bloated = hivemem.rss()
    say(
        f"built in {time.perf_counter() - t0:.1f} s: RSS {format_size(bloated)} "
        f"for about {format_size(live)} of live data (events, buffers, rows kept)"
    )
    say("")
    shown = "" if aggressiveness is None else f", aggressiveness={aggressiveness!r}"
    say(f"running hivemem.optimize(target_mb={target_mb:.0f}{shown}) ...")
    running: dict[str, float] = {}

    def step_start(name: str) -> None:
        running[name] = time.perf_counter()
        say(f"  {name:<16} running ...", end="")

    def step_done(step: hivemem.StepResult) -> None:
        started = running.pop(step.name, None)
        level = f"[{step.level}]" if step.level else ""
        if started is not None and step.skipped is not None:
            say(f" {level} {step.note()}")
        elif started is not None:
            freed = format_size(step.freed, signed=True) if step.freed is not None else "-"
            say(
                f" {level} done in {step.seconds:.2f} s: RSS {format_size(step.rss_after)} ({freed})  "
                f"{step.note()}"
            )
        else:
            say(f"  {step.name:<16} {step.note()}")

    report = hivemem.optimize(
        target_mb=target_mb, aggressiveness=aggressiveness, on_step_start=step_start, on_step=step_done
    )
    say("")
    say(str(report))
    gc.collect()
    same = answers(app) == expected
    say("")
    say(f"results checksum {'identical' if same else 'CHANGED'}: {expected[:16]}")
    after = report.after.rss
    if report.reached:
        say(
            f"target {format_size(report.target)} REACHED: RSS {format_size(bloated)} -> "
            f"{format_size(after)} in {report.seconds:.2f} s"
        )
    else:
        say(
            f"target {format_size(report.target)} NOT reached: RSS {format_size(bloated)} -> "
            f"{format_size(after)} in {report.seconds:.2f} s."
        )
        if missing:
            say(
                "  why: this build of hivemem has no "
                + ", ".join(f"hivemem.{m}()" for m in sorted(missing))
                + ", so the survivors scattered over the heap cannot be compacted and the caches"
                " cannot be cleared; see the report's explanation above."
            )
    say(f"demo finished in {time.perf_counter() - t0:.1f} s")
    return 0 if same else 1
