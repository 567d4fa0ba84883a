"""How fast memory grows, and how long until it reaches a bound.

The governor feeds every reading it takes (``add(time, rss)``, at each tick,
however the tick was woken) to a :class:`Growth`. The rate is the slope
between the oldest and the newest reading of a short window (``window``,
0.3 s by default; at least two readings, however old): a burst after a long
idle period shows at its second reading, and a stop shows within one window.

What the governor itself reclaims is not the program's growth: after a pass
it calls ``reclaimed(bytes)``, which shifts the earlier readings down by that
much, so the slope stays the program's allocation rate across the drop.

:func:`headroom` is the distance below the hard limit at which the governor
escalates when nothing it can run pays (see ``docs/governor.md``, "Escalation
before the kernel acts"): a fixed share of the limit plus what the program
allocates, at the measured rate, while the escalation reaches it.

Cost: a few float operations per reading, no clock reads and no system calls
(the caller passes the time), so readings are deterministic under a fake clock.
"""

from __future__ import annotations

__all__ = ["Growth", "headroom"]

#: Readings older than this (seconds) leave the window, as long as two remain.
WINDOW = 0.3
#: Below this span (seconds) between the readings, the slope is too noisy to use; after a
#: restart() the rate measured before it stands until the new readings span RESTART_SPAN.
MIN_SPAN, RESTART_SPAN = 0.001, 0.02


class Growth:
    """The program's memory growth rate (bytes per second) from timed RSS readings."""

    __slots__ = ("_carry", "_offset", "_times", "_values", "window")

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self._times: list[float] = []
        self._values: list[int] = []
        self._offset = 0  # bytes the governor reclaimed since the oldest reading kept
        self._carry = 0.0  # the rate before a restart(), until new readings give one

    def add(self, now: float, rss: int) -> None:
        """Record one reading of RSS at time *now* (seconds)."""
        times, values = self._times, self._values
        if times and now < times[-1]:  # a clock that went back: start over
            self.reset()
        times.append(now)
        values.append(rss + self._offset)
        horizon = now - self.window
        drop = 0
        while drop < len(times) - 2 and times[drop] < horizon:
            drop += 1
        if drop:
            del times[:drop]
            del values[:drop]
        if self._carry and times[-1] - times[0] >= RESTART_SPAN:
            self._carry = 0.0  # the new readings speak for themselves
        if len(times) > 64:  # polled every few ms: thin the middle, the endpoints are what count
            del times[1:-1:2]
            del values[1:-1:2]

    def restart(self, now: float, rss: int) -> None:
        """Start the window again at this reading, keeping the rate measured so far meanwhile.

        After a long pass the readings around it say little: the program may have
        been starved of the GIL or blocked on a lock meanwhile. Until the new
        readings span ``RESTART_SPAN``, the rate stays what it was before the pass.
        """
        self._carry = max(self.rate, 0.0)
        self._times[:] = [now]
        self._values[:] = [rss + self._offset]

    def reclaimed(self, nbytes: int) -> None:
        """The governor just freed *nbytes* of RSS: not a fall in the program's demand."""
        if nbytes > 0:
            self._offset += nbytes

    @property
    def rate(self) -> float:
        """Bytes per second over the window (negative when memory falls); 0.0 before two readings."""
        times = self._times
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        if span < (RESTART_SPAN if self._carry else MIN_SPAN):
            return self._carry
        return (self._values[-1] - self._values[0]) / span

    def seconds_until(self, rss: int, bound: int) -> float:
        """Seconds until *rss* reaches *bound* at the current rate (``inf`` when not growing)."""
        if rss >= bound:
            return 0.0
        rate = self.rate
        if rate <= 0.0:
            return float("inf")
        return (bound - rss) / rate

    def reset(self) -> None:
        self._times.clear()
        self._values.clear()
        self._offset = 0
        self._carry = 0.0

    def to_dict(self) -> dict[str, float]:
        return {"rate": self.rate, "window": self.window, "readings": float(len(self._times))}

    def __repr__(self) -> str:
        return f"Growth(rate={self.rate / 2**20:.1f} MiB/s, readings={len(self._times)})"


def headroom(floor: int, rate: float, reaction: float) -> int:
    """Bytes below the hard limit at which to escalate: *floor*, plus *rate* times *reaction* seconds.

    *reaction* is how long the escalation takes to stop the program once the
    governor could decide it: its next wake-up, a pass, the hand-over to the
    main thread. The governor's default *floor* follows Go's soft memory limit,
    which keeps max(3%, 1 MiB) of the limit free.
    """
    return floor + int(max(rate, 0.0) * reaction)
