"""Adaptive strategy order: pay for what pays, by measured yield per second.

The governor keeps, per strategy, what it freed and the time it took in its
last runs (as the governor measured them, never as the strategy claimed).
What a step freed is the larger of two measured figures: the RSS it returned
to the OS, and what it released to the allocators (malloc in-use bytes, plus
16 bytes, pymalloc's smallest block, per pymalloc block released; see
``_engine/credit.py``). A step that empties a cache into malloc's heap has paid even
though RSS falls only when ``trim`` runs.

Before each background pass it orders the strategies:

1. those that paid (freed at least ``min_yield`` in one of their recent runs),
   highest bytes-per-second first;
2. those never run yet, in registry ``(priority, name)`` order;
3. those that ran but have not paid lately (not yet demoted), registry order;
4. *finishers* (strategies whose ``finisher`` attribute is true, such as
   ``trim``): they turn what the steps before them released to the allocators
   into RSS, so they come after those;
5. demoted strategies on probation, registry order.

A strategy whose last ``demote_after`` runs each freed less than
``min_yield`` (or raised, or skipped itself) is *demoted*: it is skipped,
with the reason in the pass's steps, except on every ``retry_every``-th
eligible pass and at CRITICAL, when it runs last. A run that pays promotes it
again. A finisher is credited as paid in any pass where a step before it
released at least ``min_yield`` to the allocators, and a demoted finisher
still runs in any pass that includes a strategy that released memory lately
or was never tried: the strategy that works is never left without the step
that makes its work visible. Every change is a ``demote``/``promote`` event.
Names in ``never_demote`` (the ``hooks`` strategy by default: release hooks
must run at their level even when they freed nothing last time) are never
demoted. No clock is read here, so the order is deterministic under a fake
clock.
"""

from __future__ import annotations

from hivemem._sizes import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from hivemem._engine.report import StepResult

__all__ = ["BLOCK_BYTES", "AdaptiveOrder", "allocator_credit"]

_HISTORY = 8
#: Bytes credited per pymalloc block released: the smallest block pymalloc hands out (a lower bound).
BLOCK_BYTES = 16


def allocator_credit(step: StepResult) -> int:
    """Bytes *step* released to the allocators, as measured (0 when not measured or when it allocated)."""
    malloc = step.malloc_released or 0
    blocks = step.blocks_released or 0
    return max(malloc, 0) + max(blocks, 0) * BLOCK_BYTES


class _Record:
    __slots__ = ("demoted", "history", "released", "runs", "waited", "zero_streak")

    def __init__(self) -> None:
        self.runs = 0
        self.zero_streak = 0
        self.demoted = False
        self.waited = 0  # eligible passes skipped since demotion
        self.history: list[tuple[int, float]] = []  # (freed bytes, seconds), newest last
        self.released: list[bool] = []  # recent runs: released >= min_yield to the allocators

    def rate(self) -> float:
        freed = sum(max(f, 0) for f, _ in self.history)
        seconds = sum(s for _, s in self.history)
        return freed / max(seconds, 1e-6)


class AdaptiveOrder:
    """Ordering state for the strategies of one governor (not thread-safe: the governor serializes)."""

    __slots__ = ("demote_after", "min_yield", "never_demote", "records", "retry_every")

    def __init__(
        self,
        *,
        demote_after: int = 3,
        retry_every: int = 8,
        min_yield: int = 256 * 1024,
        never_demote: frozenset[str] = frozenset(),
    ) -> None:
        self.never_demote = never_demote
        self.demote_after = demote_after
        self.retry_every = retry_every
        self.min_yield = min_yield
        self.records: dict[str, _Record] = {}

    def _rec(self, name: str) -> _Record:
        rec = self.records.get(name)
        if rec is None:
            rec = self.records[name] = _Record()
        return rec

    def _paid(self, rec: _Record) -> bool:
        return any(f >= self.min_yield for f, _ in rec.history)

    def plan(
        self,
        eligible: Iterable[str],
        *,
        emergency: bool = False,
        finishers: frozenset[str] = frozenset(),
    ) -> tuple[list[str], dict[str, str]]:
        """``(order, skip)`` for a pass over *eligible* names (registry order, allowed at this level).

        In an *emergency* (CRITICAL) nothing is skipped: demoted strategies run last.
        *finishers* are the names whose strategies turn allocator releases into RSS.
        """
        paying: list[tuple[float, int, str]] = []
        untried: list[str] = []
        idle: list[str] = []
        finishing: list[str] = []
        held: list[str] = []  # demoted finishers: they run if a releasing strategy runs too
        probation: list[str] = []
        skip: dict[str, str] = {}
        releasing = False
        for i, name in enumerate(eligible):
            rec = self.records.get(name)
            fin = name in finishers
            if rec is None or rec.runs == 0:
                (finishing if fin else untried).append(name)
                releasing = releasing or not fin
            elif rec.demoted:
                rec.waited += 1
                if emergency or rec.waited >= self.retry_every:
                    rec.waited = 0
                    probation.append(name)
                elif fin:
                    held.append(name)
                else:
                    skip[name] = self._why_demoted()
            elif fin:
                finishing.append(name)
            elif self._paid(rec):
                paying.append((-rec.rate(), i, name))
                releasing = releasing or any(rec.released)
            else:
                idle.append(name)
                releasing = releasing or any(rec.released)
        for name in held:
            if releasing:
                finishing.append(name)
            else:
                skip[name] = self._why_demoted()
        paying.sort()
        order = [n for _, _, n in paying] + untried + idle + finishing + probation + sorted(skip)
        return order, skip

    def _why_demoted(self) -> str:
        return (
            f"demoted: freed less than {format_size(self.min_yield)} in each of its last "
            f"{self.demote_after} runs (retried every {self.retry_every} passes)"
        )

    def record(
        self, steps: Iterable[StepResult], *, finishers: frozenset[str] = frozenset()
    ) -> list[tuple[str, str, str]]:
        """Learn from a pass's steps; returns ``(kind, name, message)`` for each demotion/promotion."""
        changes: list[tuple[str, str, str]] = []
        released_before = False  # a step earlier in this pass released >= min_yield to the allocators
        for step in steps:
            if step.rss_before is None:  # never called (target reached, disabled, demoted, ...)
                continue
            rec = self._rec(step.name)
            rss_freed = step.freed or 0
            alloc = allocator_credit(step)
            freed = max(rss_freed, alloc)
            ok = step.error is None and step.skipped is None
            converted = step.name in finishers and released_before
            rec.runs += 1
            rec.history.append((freed, step.seconds))
            del rec.history[:-_HISTORY]
            rec.released.append(ok and alloc >= self.min_yield)
            del rec.released[:-_HISTORY]
            paid = ok and (freed >= self.min_yield or converted)
            if ok and alloc >= self.min_yield:
                released_before = True
            if paid:
                rec.zero_streak = 0
                if rec.demoted:
                    rec.demoted = False
                    rec.waited = 0
                    if freed >= self.min_yield:
                        what = (
                            f"{step.name} freed {format_size(rss_freed, signed=True)} of RSS and released "
                            f"{format_size(alloc)} to the allocators"
                        )
                    else:
                        what = f"{step.name} ran after steps that released memory to the allocators"
                    changes.append(("promote", step.name, f"{what}: promoted again"))
            else:
                rec.zero_streak += 1
                if (
                    not rec.demoted
                    and rec.zero_streak >= self.demote_after
                    and step.name not in self.never_demote
                ):
                    rec.demoted = True
                    rec.waited = 0
                    changes.append(
                        (
                            "demote",
                            step.name,
                            f"{step.name} freed less than {format_size(self.min_yield)} in each of its "
                            f"last {self.demote_after} runs: demoted",
                        )
                    )
        return changes

    @property
    def demoted(self) -> list[str]:
        return sorted(n for n, r in self.records.items() if r.demoted)

    def to_dict(self) -> dict[str, object]:
        return {
            name: {
                "runs": r.runs,
                "demoted": r.demoted,
                "zero_streak": r.zero_streak,
                "bytes_per_second": r.rate(),
            }
            for name, r in sorted(self.records.items())
        }
