"""The governor's death-spiral guard: a leaky bucket of reclamation time.

In the spirit of Go's GC CPU limiter (golang/go#58106 shows what happens
without one: a leaking program spends all its time collecting and never
fails). Every reclamation pass pours its duration into the bucket; the
bucket leaks at *share* seconds per second of wall time; a pass may start
only while the bucket is below its capacity, ``share * window``.

So over any stretch of T seconds reclamation takes at most
``share * T + share * window`` seconds plus the overshoot of one pass: 5% of
wall time on average with the defaults, bursts of up to 0.5 s allowed.
Deterministic under an injected clock.
"""

from __future__ import annotations

from hivemem._errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["CpuBudget"]


def _positive_number(name: str, value: object, *, upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise InvalidArgument(f"{name}={value!r}: expected a number")
    try:
        number = float(value)
    except OverflowError:  # an int beyond a float's range
        number = float("inf")
    if number <= 0 or number == float("inf") or (upper is not None and number > upper):
        bound = f"0 < {name} <= {upper}" if upper is not None else f"{name} > 0 and finite"
        raise InvalidArgument(f"{name}={value!r}: expected {bound}")
    return number


class CpuBudget:
    """A leaky bucket: ``charge(seconds)`` after work, ``available()`` before it.

    *share* (0 < share <= 1) is the fraction of wall time reclamation may use
    on average; *window* (seconds) sets the burst: capacity is
    ``share * window`` seconds of work. *clock* returns seconds.
    """

    __slots__ = ("_clock", "_last", "capacity", "level", "share", "spent_total", "window")

    def __init__(self, share: float = 0.05, window: float = 10.0, *, clock: Callable[[], float]) -> None:
        self.share = _positive_number("cpu_budget", share, upper=1.0)
        self.window = _positive_number("cpu_window", window)
        self.capacity = self.share * self.window
        self.level = 0.0
        self.spent_total = 0.0
        self._clock = clock
        self._last = clock()

    def _drain(self) -> float:
        now = self._clock()
        elapsed = now - self._last
        if elapsed > 0:
            self.level = max(self.level - elapsed * self.share, 0.0)
        self._last = now
        return now

    def available(self, reserve: float = 0.0) -> bool:
        """True while the bucket is below capacity: a pass may start.

        *reserve* lets an emergency overdraw: with ``reserve=1.0`` a pass may
        start up to twice the capacity. The long-run share is still *share*
        (the drain rate); only the burst grows.
        """
        self._drain()
        return self.level < self.capacity * (1.0 + reserve)

    def charge(self, seconds: float) -> None:
        """Pour *seconds* of reclamation work into the bucket."""
        self._drain()
        if seconds > 0:
            self.level += seconds
            self.spent_total += seconds

    def refill_in(self) -> float:
        """Seconds until a pass may start again (0.0 when it may start now)."""
        self._drain()
        if self.level < self.capacity:
            return 0.0
        # Just under capacity is enough; a tiny epsilon keeps the answer exact for the caller.
        return (self.level - self.capacity) / self.share + 1e-9

    def reset(self) -> None:
        self.level = 0.0
        self._last = self._clock()

    def to_dict(self) -> dict[str, float]:
        self._drain()
        return {
            "share": self.share,
            "window": self.window,
            "capacity": self.capacity,
            "level": self.level,
            "spent_total": self.spent_total,
        }

    def __repr__(self) -> str:
        return (
            f"CpuBudget(share={self.share:g}, window={self.window:g}s, "
            f"used={self.level:.3f}s of {self.capacity:.3f}s)"
        )
