"""How long the governor's thread sleeps before its next reading: slow when far, fast when close.

A fixed 100 ms poll is both too slow and too costly: a program allocating
500 MiB/s crosses the last 5% of a 400 MiB limit in 40 ms, while a process
idling at half its budget pays a thread wake-up (~130 µs of CPU on a small
VM) ten times a second for nothing. :func:`next_wait` chooses each wait from
what was just measured:

* **distance**: the gap to the next bound above (the next level's entry
  threshold, or the hard limit at the top level), as a share of the budget.
  A gap of ``FAR`` (25%) of the budget or more waits the longest; closer
  gaps wait proportionally less. Where kernel notifications wake the
  thread at the bound itself, the governor passes ``far=0``: no distance
  rule, the crossing is not found by polling.
* **growth**: at the measured rate the gap must take at least ``SAMPLES``
  (4) waits to cross, so the level is seen before it is passed and the rate
  is measured on the way.
* **caps**: at NORMAL never longer than *idle_cap* (``max_interval``, 1 s by
  default); above NORMAL, where passes may be due (a CPU budget refilling, a
  growth that stopped), never longer than *busy_cap* (``interval``, 0.1 s);
  never shorter than *floor* (``min_interval``, 2 ms).

Kernel notifications (``notify.py``) wake the thread at threshold crossings
whatever the wait, so the distance rule is a fallback where they are missing.
Cost: a handful of float operations per tick.
"""

from __future__ import annotations

__all__ = ["FAR", "SAMPLES", "next_wait"]

FAR = 0.25
SAMPLES = 4.0


def next_wait(
    rss: int,
    bound: int,
    budget: int,
    rate: float,
    *,
    cap: float,
    floor: float,
    far: float = FAR,
) -> float:
    """Seconds to wait before the next reading, from RSS, the next *bound* above it and the growth *rate*.

    *cap* is the longest wait allowed at this level, *floor* the shortest; *far*
    the share of the budget beyond which the distance no longer shortens the wait
    (0: the distance does not count).
    """
    gap = bound - rss
    if gap <= 0:
        return floor
    wait = cap * min(gap / (far * budget), 1.0) if budget > 0 and far > 0 else cap
    if rate > 0.0:
        wait = min(wait, gap / rate / SAMPLES)
    if wait < floor:
        return floor
    return wait
