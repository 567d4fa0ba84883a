"""Garbage-collector tuning and measurement: thresholds, freeze, pause times.

These are not reclaim steps. They change *when* the collector runs and how
much it walks, which is what GC pause time and copy-on-write sharing after
``fork()`` depend on. hivemem never changes the thresholds by default.

The source report's ``gc.set_threshold(10, 1, 1)`` makes a full collection
run every ~10 allocations of container objects: on an allocation-heavy
workload that multiplies the time spent in the collector many times over
and frees nothing that the default thresholds would not
(``benchmarks/bench_strategies.py`` measures it).
"""

from __future__ import annotations

import gc
import time

from hivemem._errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import TracebackType

__all__ = ["GCPauses", "freeze", "gc_pauses", "gc_tuning", "unfreeze"]


_MAX_THRESHOLD = 2**31 - 1  # gc.set_threshold() takes C ints


def _check_threshold(value: object, index: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_THRESHOLD:
        from hivemem._validate import show

        raise InvalidArgument(
            f"gc threshold {index} = {show(value)}: expected an int between 0 and {_MAX_THRESHOLD:,} "
            "(threshold 0 = 0 disables automatic collection)"
        )
    return value


class gc_tuning:
    """Set GC thresholds (and optionally disable the collector) for a ``with`` block.

    ``with hivemem.gc_tuning(50_000, 20):`` sets ``gc.set_threshold(50000, 20,
    <current third>)``; thresholds left out keep their current value. On exit
    the thresholds and the enabled/disabled state in force at entry are
    restored, even when the block raises. ``enabled=False`` disables
    automatic collection inside the block; ``enabled=True`` enables it.

    Every argument is checked when the object is created, before anything
    changes. The thresholds are process-wide: another thread's collections
    follow them while the block runs. Nested blocks restore in order.
    """

    __module__ = "hivemem"

    def __init__(self, *thresholds: int, enabled: bool | None = None) -> None:
        if len(thresholds) > 3:
            raise InvalidArgument(
                f"gc_tuning{thresholds!r}: expected at most 3 thresholds (generation 0, 1, 2)"
            )
        self.thresholds = tuple(_check_threshold(v, i) for i, v in enumerate(thresholds))
        if enabled is not None and not isinstance(enabled, bool):
            raise InvalidArgument(f"enabled={enabled!r}: expected True, False or None (leave as is)")
        self.enabled = enabled
        self._saved: list[tuple[tuple[int, ...], bool]] = []

    def __enter__(self) -> gc_tuning:
        current = gc.get_threshold()
        self._saved.append((current, gc.isenabled()))
        new = self.thresholds + current[len(self.thresholds) :]
        gc.set_threshold(*new)
        if self.enabled is True:
            gc.enable()
        elif self.enabled is False:
            gc.disable()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        thresholds, was_enabled = self._saved.pop()
        gc.set_threshold(*thresholds)
        if was_enabled:
            gc.enable()
        else:
            gc.disable()

    def __repr__(self) -> str:
        return f"gc_tuning(thresholds={self.thresholds!r}, enabled={self.enabled!r})"


def freeze() -> int:
    """Move every object the collector tracks into the permanent generation (``gc.freeze()``).

    Frozen objects are never walked by a collection: a full collection over
    2M tracked objects took 117 ms here, ~0 ms once they were frozen. The
    classic use is before ``fork()`` in a pre-fork server: call
    ``gc.disable()`` early in the parent, ``hivemem.freeze()`` right before
    forking and ``gc.enable()`` in each child, so collections in the
    children do not write to the parent's pages (summed PSS of a parent and 4
    workers: 741 MiB without, 289 MiB with, in MEMORY-FACTS).

    Frozen garbage is never collected until :func:`unfreeze`. Returns the
    number of objects now frozen (``gc.get_freeze_count()``).
    """
    gc.freeze()
    return gc.get_freeze_count()


def unfreeze() -> int:
    """Move frozen objects back into the oldest generation (``gc.unfreeze()``); returns how many."""
    n = gc.get_freeze_count()
    gc.unfreeze()
    return n


class GCPauses:
    """Pause times of the collector, per generation, measured with ``gc.callbacks``.

    Use as a context manager (``with hivemem.gc_pauses() as p: ...``) or call
    :meth:`start` and :meth:`stop`. While running, each collection's wall time
    (from the ``"start"`` to the ``"stop"`` callback) is added up.

    ``collections``, ``seconds`` and ``max_seconds``: over all generations;
    ``by_generation``: ``{generation: {"collections", "seconds", "max_seconds",
    "collected", "uncollectable"}}``; ``collected``: objects freed by the
    collector. Several meters may run at once; the cost is two callbacks per
    collection (~1 µs).
    """

    __module__ = "hivemem"

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        from hivemem._validate import callable_or_none

        # Checked here: the clock runs inside gc callbacks, where an error cannot reach the caller.
        checked = callable_or_none("clock", clock)
        self._clock: Callable[[], float] = time.perf_counter if checked is None else checked
        self._started_at: float | None = None
        self._running = False
        self.by_generation: dict[int, dict[str, float | int]] = {}
        self.wall_seconds = 0.0
        self._t0 = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        now: float = self._clock()
        if phase == "start":
            self._started_at = now
            return
        if self._started_at is None:  # started between a collection's start and stop
            return
        took = now - self._started_at
        self._started_at = None
        gen = int(info.get("generation", 0))
        row = self.by_generation.setdefault(
            gen, {"collections": 0, "seconds": 0.0, "max_seconds": 0.0, "collected": 0, "uncollectable": 0}
        )
        row["collections"] += 1
        row["seconds"] += took
        row["max_seconds"] = max(row["max_seconds"], took)
        row["collected"] += int(info.get("collected", 0))
        row["uncollectable"] += int(info.get("uncollectable", 0))

    def start(self) -> GCPauses:
        """Begin measuring (idempotent)."""
        if not self._running:
            self._running = True
            self._t0 = self._clock()
            gc.callbacks.append(self._callback)
        return self

    def stop(self) -> GCPauses:
        """Stop measuring (idempotent); the figures stay readable."""
        if self._running:
            self._running = False
            self.wall_seconds += self._clock() - self._t0
            try:
                gc.callbacks.remove(self._callback)
            except ValueError:
                pass
        return self

    def __enter__(self) -> GCPauses:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _total(self, key: str) -> float:
        return sum(row[key] for row in self.by_generation.values())

    @property
    def collections(self) -> int:
        return int(self._total("collections"))

    @property
    def seconds(self) -> float:
        """Total time spent in collections while measuring."""
        return float(self._total("seconds"))

    @property
    def max_seconds(self) -> float:
        """The longest single pause."""
        return max((float(r["max_seconds"]) for r in self.by_generation.values()), default=0.0)

    @property
    def collected(self) -> int:
        return int(self._total("collected"))

    @property
    def fraction(self) -> float | None:
        """Share of the measured wall time spent in the collector (``None`` before any time passed)."""
        wall = self.wall_seconds
        if self._running:
            wall += self._clock() - self._t0
        return self.seconds / wall if wall > 0 else None

    def to_dict(self) -> dict[str, object]:
        return {
            "collections": self.collections,
            "seconds": self.seconds,
            "max_seconds": self.max_seconds,
            "collected": self.collected,
            "fraction": self.fraction,
            "by_generation": {str(g): dict(r) for g, r in sorted(self.by_generation.items())},
        }

    def _rows(self) -> Iterator[tuple[str, str, str, str, str]]:
        for g, r in sorted(self.by_generation.items()):
            yield (
                str(g),
                f"{int(r['collections']):,}",
                f"{float(r['seconds']) * 1e3:.1f} ms",
                f"{float(r['max_seconds']) * 1e3:.2f} ms",
                f"{int(r['collected']):,}",
            )

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return (
            f"GCPauses({state}, collections={self.collections}, total={self.seconds * 1e3:.1f} ms, "
            f"max={self.max_seconds * 1e3:.2f} ms, collected={self.collected})"
        )

    def __str__(self) -> str:
        lines = [repr(self), "gen  collections      total        max  collected"]
        for row in self._rows():
            lines.append(f"{row[0]:>3}  {row[1]:>11}  {row[2]:>9}  {row[3]:>9}  {row[4]:>9}")
        return "\n".join(lines)

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        yield "collections", self.collections
        yield "seconds", self.seconds
        yield "max_seconds", self.max_seconds
        yield "collected", self.collected

    def _repr_html_(self) -> str:
        from html import escape

        head = "".join(f"<th>{h}</th>" for h in ("gen", "collections", "total", "max pause", "collected"))
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in self._rows()
        )
        return f"<table><caption>{escape(repr(self))}</caption><tr>{head}</tr>{body}</table>"


def gc_pauses(clock: Callable[[], float] | None = None) -> GCPauses:
    """A started :class:`GCPauses` meter: ``with hivemem.gc_pauses() as p: work(); print(p)``."""
    return GCPauses(clock).start()
