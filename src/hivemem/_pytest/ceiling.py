"""What a measured block reached, and the meters behind ``hivemem.testing`` and the pytest plugin.

:class:`PeakMeasurement` (one block's figures), :class:`MemoryMeter` (a live
meter, what the ``memory`` fixture returns) and :class:`Ceiling` (the context
manager behind ``assert_peak_below`` and the ``memory_ceiling`` fixture) live
here, below both ``hivemem.testing`` (which re-exports the public two) and
the runner, so neither imports the other. The clocks are in
``hivemem._pytest.meter``.
"""

from __future__ import annotations

import time

from hivemem._frozen import Frozen
from hivemem._sizes import format_size, parse_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType
    from typing import Any

    from hivemem._measure.reader import Reader
    from hivemem._measure.usage import MemoryUsage
    from hivemem._pytest.meter import Span

__all__ = ["Ceiling", "MemoryMeter", "PeakMeasurement"]

_HOW = {
    "rss": "peak RSS of the whole process (every thread)",
    "python": "tracemalloc peak (Python allocators only)",
}


class PeakMeasurement(Frozen):
    """What one measured block (a test body, a ``memory_ceiling`` block, ...) reached. Frozen.

    ``kind``       ``"rss"`` or ``"python"``
    ``peak``       bytes above ``baseline`` at the highest point (never negative)
    ``baseline``   the figure at the start of the block (RSS, or traced bytes)
    ``limit``      the ceiling in bytes, or ``None`` when only measuring
    ``method``     how the peak was obtained (kernel high-water mark, sampling, tracemalloc)
    ``seconds``    wall time of the block
    ``sites``      python kind, over the limit only: ``(file:line, bytes, blocks)`` of the
                   largest allocation sites at the highest sampled point
    ``sites_note`` where ``sites`` were taken
    ``label``      what was measured (``"test body"``, ``"memory_ceiling block 1"``, ...)

    ``exceeded`` is ``peak > limit``: a block passes when its peak is ``<=`` the limit.
    """

    __slots__ = ("baseline", "kind", "label", "limit", "method", "peak", "seconds", "sites", "sites_note")
    __module__ = "hivemem.testing"

    kind: str
    peak: int
    baseline: int
    limit: int | None
    method: str
    seconds: float
    sites: tuple[tuple[str, int, int], ...]
    sites_note: str
    label: str

    def __init__(
        self,
        *,
        kind: str,
        peak: int,
        baseline: int = 0,
        limit: int | None = None,
        method: str = "",
        seconds: float = 0.0,
        sites: tuple[tuple[str, int, int], ...] = (),
        sites_note: str = "",
        label: str = "block",
    ) -> None:
        self._set(
            kind=kind,
            peak=peak,
            baseline=baseline,
            limit=limit,
            method=method,
            seconds=seconds,
            sites=tuple(sites),
            sites_note=sites_note,
            label=label,
        )

    @property
    def exceeded(self) -> bool:
        """``True`` when the peak is strictly above the limit (equal passes)."""
        return self.limit is not None and self.peak > self.limit

    def to_dict(self) -> dict[str, object]:
        """A JSON-safe dict of every field (sizes in bytes)."""
        return {
            "kind": self.kind,
            "peak": self.peak,
            "baseline": self.baseline,
            "limit": self.limit,
            "exceeded": self.exceeded,
            "method": self.method,
            "seconds": self.seconds,
            "sites": [list(site) for site in self.sites],
            "sites_note": self.sites_note,
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PeakMeasurement:
        """Rebuild from :meth:`to_dict` (how reports cross from pytest-xdist workers)."""
        return cls(
            kind=str(data["kind"]),
            peak=int(data["peak"]),
            baseline=int(data.get("baseline", 0)),
            limit=None if data.get("limit") is None else int(data["limit"]),
            method=str(data.get("method", "")),
            seconds=float(data.get("seconds", 0.0)),
            sites=tuple((str(w), int(b), int(n)) for w, b, n in data.get("sites", ())),
            sites_note=str(data.get("sites_note", "")),
            label=str(data.get("label", "block")),
        )

    def __repr__(self) -> str:
        limit = "" if self.limit is None else f", limit={format_size(self.limit)!r}"
        peak = format_size(self.peak)
        return f"PeakMeasurement(kind={self.kind!r}, peak={peak!r}{limit}, label={self.label!r})"

    def explain(self, *, hint: str = "") -> str:
        """The failure text: limit, measured value and kind; sites (python) or a hint (rss)."""
        limit = self.limit if self.limit is not None else 0
        verdict = "over" if self.exceeded else "within"
        lines = [
            f"hivemem: {self.label} peak {format_size(self.peak)} is {verdict} the "
            f"memory limit {format_size(limit)} (kind={self.kind!r})",
            f"  measured: {self.peak} bytes, {_HOW.get(self.kind, self.kind)}, above "
            f"{format_size(self.baseline)} at the start",
            f"  limit:    {limit} bytes; a block passes when peak <= limit",
            f"  method:   {self.method}",
        ]
        if self.sites:
            lines.append(f"  top allocation sites ({self.sites_note}):")
            for where, size, count in self.sites:
                lines.append(f"    {format_size(size):>10}  {count:>7} blocks  {where}")
        elif self.kind == "python" and self.exceeded:
            lines.append(f"  no allocation sites: {self.sites_note or 'none were traced'}")
        if self.kind == "rss" and self.exceeded:
            lines.append(
                "  hint:     "
                + (hint or 'rerun with kind="python" to see which lines allocate (Python allocations only)')
            )
        return "\n".join(lines)


class MemoryMeter:
    """A live peak meter: ``.peak``, ``.current``, ``.reset()``, ``.usage()``.

    ``kind="rss"`` (default) meters the whole process's RSS, every thread
    included; ``kind="python"`` meters tracemalloc's traced memory (started
    for the meter's lifetime if it was not tracing). Figures are bytes
    relative to the baseline taken at construction or at the last
    :meth:`reset`:

    ``peak``     the highest point since then, minus the baseline (>= 0)
    ``current``  the figure now minus the baseline (may be negative)

    Meters nest: several meters (and the pytest plugin's own measurement)
    share one process-wide clock that never loses a peak another meter saw.
    ``reader=`` takes a :class:`FakeReader` (rss kind) for exact unit tests.
    Call :meth:`stop` (or leave a ``with`` block) to release the clock.
    """

    __module__ = "hivemem.testing"

    def __init__(self, kind: str = "rss", *, reader: Reader | None = None, label: str = "meter") -> None:
        from hivemem._pytest.meter import clock_for

        self._clock = clock_for(kind, reader)
        self._reader = reader
        self.kind = kind
        self.label = label
        self._t0 = time.perf_counter()
        self._span: Span | None = self._clock.begin()

    def _open(self) -> Span:
        if self._span is None:
            from hivemem._errors import InvalidArgument

            raise InvalidArgument(f"{self!r} was stopped; create a new MemoryMeter")
        return self._span

    @property
    def method(self) -> str:
        """How the peak is obtained here (kernel high-water mark, sampling, tracemalloc)."""
        return self._clock.method

    @property
    def baseline(self) -> int:
        """The absolute figure (bytes) at the last reset."""
        return self._open().baseline

    @property
    def peak(self) -> int:
        """Highest point since the last reset, above the baseline, in bytes (never negative)."""
        return self._open().rise()

    @property
    def current(self) -> int:
        """The figure now minus the baseline, in bytes (negative when memory was returned)."""
        return self._open().current()

    def reset(self) -> None:
        """Start again from now: new baseline, peak back to 0."""
        span = self._open()
        self._clock.reset(span)
        self._t0 = time.perf_counter()

    def usage(self) -> MemoryUsage:
        """A complete :class:`hivemem.MemoryUsage` snapshot (absolute figures) of this process."""
        if self._reader is not None:
            return self._reader.usage()
        from hivemem._measure.usage import usage

        return usage()

    def measurement(self, limit: int | str | None = None) -> PeakMeasurement:
        """The figures so far as a :class:`PeakMeasurement` (checked against *limit* if given)."""
        span = self._open()
        return PeakMeasurement(
            kind=self.kind,
            peak=span.rise(),
            baseline=span.baseline,
            limit=None if limit is None else parse_size(limit),
            method=self.method,
            seconds=time.perf_counter() - self._t0,
            label=self.label,
        )

    def stop(self) -> PeakMeasurement:
        """Stop metering and return the final figures; the meter cannot be read afterwards."""
        span = self._open()
        seconds = time.perf_counter() - self._t0
        rise = span.close()
        self._span = None
        return PeakMeasurement(
            kind=self.kind,
            peak=rise,
            baseline=span.baseline,
            method=self.method,
            seconds=seconds,
            label=self.label,
        )

    def __enter__(self) -> MemoryMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._span is not None:
            self.stop()

    def __repr__(self) -> str:
        if self._span is None:
            return f"MemoryMeter(kind={self.kind!r}, stopped)"
        return (
            f"MemoryMeter(kind={self.kind!r}, peak={format_size(self.peak)!r}, "
            f"current={format_size(self.current)!r})"
        )


class Ceiling:
    """The context manager behind :func:`assert_peak_below` and the ``memory_ceiling`` fixture."""

    def __init__(
        self,
        limit: int | str,
        kind: str,
        reader: Reader | None,
        label: str,
        on_result: Callable[[PeakMeasurement], None] | None = None,
        hint: str = "",
    ) -> None:
        from hivemem._pytest.meter import KINDS

        self.limit = parse_size(limit)
        if kind not in KINDS:
            from hivemem._errors import InvalidArgument

            raise InvalidArgument(f"invalid kind {kind!r}: expected 'rss' or 'python'")
        self.kind = kind
        self.reader = reader
        self.label = label
        self.on_result = on_result
        self.hint = hint
        self.result: PeakMeasurement | None = None
        self._span: Span | None = None
        self._catcher: Any = None

    def __enter__(self) -> Ceiling:
        from hivemem._pytest.meter import SiteCatcher, clock_for, python_clock

        self._clock = clock_for(self.kind, self.reader)
        self._t0 = time.perf_counter()
        self._span = self._clock.begin()
        if self.kind == "python":
            import sys

            self._catcher = SiteCatcher(
                python_clock(),  # the same clock: clock_for("python") is the process-wide one
                self._span,
                self.limit,
                frame=sys._getframe(1),
            )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        __tracebackhide__ = True  # pytest shows the user's `with` line, not this frame
        span = self._span
        assert span is not None
        seconds = time.perf_counter() - self._t0
        catcher = self._catcher
        if catcher is not None:
            catcher.stop()
        rise = span.rise()
        sites: tuple[tuple[str, int, int], ...] = ()
        note = ""
        if catcher is not None and rise > self.limit:
            from hivemem._pytest.meter import block_sites

            sites, note = block_sites(span, catcher, rise, "block")
        span.close()
        self.result = PeakMeasurement(
            kind=self.kind,
            peak=rise,
            baseline=span.baseline,
            limit=self.limit,
            method=self._clock.method,
            seconds=seconds,
            sites=sites,
            sites_note=note,
            label=self.label,
        )
        if self.on_result is not None:
            self.on_result(self.result)
        if exc_type is None and self.result.exceeded:
            from hivemem._errors import MemoryCeilingExceeded

            raise MemoryCeilingExceeded(
                self.result.explain(hint=self.hint),
                usage=self.result.peak,
                limit=self.limit,
                measurement=self.result,
            )

    @property
    def peak(self) -> int:
        """The block's peak so far (bytes above its start)."""
        if self.result is not None:
            return self.result.peak
        return self._span.rise() if self._span is not None else 0
