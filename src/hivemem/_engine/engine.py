"""One reclamation pass: run allowed strategies in order, measure each, stop at the target.

Only one pass runs at a time in a process: two passes racing would each
measure the other's work. The engine knows strategies only through the
registry's duck-typed entries.

No line of this module can leave the pass lock held: it is taken and
released only by one ``with`` statement written on one line, whose
``__exit__`` is the lock's own C method, so an exception raised anywhere in
the pass, a ``KeyboardInterrupt`` at any line included, releases it. (A
``with`` block spread over several lines gets a line event of its own
between the end of its body and ``__exit__``; an interrupt there skips the
release.) ``tests/test_faults_engine.py`` raises one at every line event;
see docs/optimize.md.
"""

from __future__ import annotations

import _thread
import os
import sys
import time

from hivemem._engine.context import StrategyContext, StrategyResult
from hivemem._engine.credit import probe_for, released
from hivemem._engine.report import OptimizationReport, StepResult
from hivemem._errors import ReentrantOptimize
from hivemem._levels import Aggressiveness

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from hivemem._engine.context import Reader
    from hivemem._engine.protocol import Strategy
    from hivemem._engine.registry import RegisteredStrategy, Registry

__all__ = ["add_listener", "explain", "remove_listener", "run_pass", "subscribe", "unsubscribe"]

# The pass lock: held by whichever thread runs a pass.
_lock = _thread.allocate_lock()
# Held (re-entrantly) by the thread running the pass, only while it holds _lock: a strategy that
# calls optimize() is told so instead of deadlocking. Being a C lock, it needs no owner variable
# that an interrupt could leave stale.
_running_here = _thread.RLock()
# Insertion-ordered; adding, removing and copying are each one C-level dict operation, so no lock
# is needed (and none can be left held).
_listeners: dict[Callable[[OptimizationReport], object], None] = {}


class _Busy(Exception):
    """Another pass holds the lock (``blocking=False``)."""


def _busy() -> bool:
    raise _Busy


class _TryLock:
    """``with _try_lock:`` takes the pass lock without waiting, or raises :class:`_Busy`.

    ``__enter__`` is one line (the lock is taken after its only line event);
    ``__exit__`` is the lock's C ``__exit__``, which a builtin method as a
    class attribute stays (it does not bind), so releasing runs no Python line.
    """

    __slots__ = ()

    def __enter__(self) -> bool:
        return _lock.acquire(False) or _busy()

    __exit__ = _lock.__exit__


_try_lock = _TryLock()


def _after_fork_child() -> None:
    # A pass running in another parent thread does not exist in the child. The locks are reset in
    # place: _TryLock.__exit__ is bound to this very lock object.
    _lock._at_fork_reinit()  # type: ignore[attr-defined]
    _running_here._at_fork_reinit()  # type: ignore[attr-defined]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)


def subscribe(listener: Callable[[OptimizationReport], object]) -> None:
    """Call *listener(report)* after every pass (metrics exporters, status files).

    A listener that raises is logged on the ``hivemem`` logger and ignored.
    """
    from hivemem._errors import InvalidArgument
    from hivemem._validate import show

    if not callable(listener):
        raise InvalidArgument(f"listener={show(listener)}: expected a callable taking the report")
    try:
        _listeners.setdefault(listener, None)
    except TypeError:  # unhashable
        raise InvalidArgument(f"listener={show(listener)}: expected a hashable callable") from None


def unsubscribe(listener: Callable[[OptimizationReport], object]) -> None:
    """Stop calling *listener*; unknown listeners are ignored."""
    try:
        _listeners.pop(listener, None)
    except TypeError:  # unhashable: it was never added
        pass


# The public names (hivemem.add_listener / hivemem.remove_listener) are the same functions.
add_listener = subscribe
remove_listener = unsubscribe


def _publish(report: OptimizationReport) -> None:
    for listener in list(_listeners):
        try:
            listener(report)
        except Exception:
            import logging

            logging.getLogger("hivemem").exception("hivemem report listener %r failed", listener)


def _describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def explain(
    rss_now: int | None,
    target: int | None,
    *,
    ceiling: Aggressiveness | None = None,
    steps: tuple[StepResult, ...] | list[StepResult] = (),
) -> tuple[str, dict[str, int]]:
    """Why RSS is above *target*, in words, from figures measured now; see ``_explain.explain``.

    Returns ``(text, breakdown)``: RSS split into parts that add up to
    ``breakdown["total"]`` (the kernel's per-mapping figures, split further
    with pymalloc's and malloc's own), and what would help given what the
    program registered and the ceiling of the pass.
    """
    from hivemem._measure.explain import explain as _explain

    return _explain(rss_now, target, ceiling=ceiling, steps=steps)


def run_pass(
    registry: Registry,
    reader: object,
    *,
    target: int | None,
    aggressiveness: Aggressiveness,
    names: Iterable[str] | None = None,
    dry_run: bool = False,
    limit: int | None = None,
    level: str | None = None,
    blocking: bool = True,
    on_step_start: Callable[[str], object] | None = None,
    on_step: Callable[[StepResult], object] | None = None,
    order: Iterable[str] | None = None,
    skip: dict[str, str] | None = None,
    explain_miss: bool = True,
    clock: Callable[[], float] | None = None,
    climb: bool = False,
) -> OptimizationReport | None:
    """Run one pass. Returns ``None`` only when ``blocking=False`` and a pass is running.

    Strategies run in ``(priority, name)`` order, or the governor's adaptive
    *order* (names listed there first, in that order; the rest after, in
    ``(priority, name)`` order). *skip* maps names to a reason they are
    skipped this pass. ``explain_miss=False`` leaves out the allocator
    breakdown when the target is missed (the background governor's passes
    keep their cost small). *clock* times steps and the pass (default
    ``time.perf_counter``; the governor passes its own, so a fake clock makes
    its adaptive order deterministic). ``climb=True`` runs level after
    level up to *aggressiveness* (what ``optimize()`` does with a target;
    see ``_run_locked``). Before each, the pass stops
    if RSS is already at or below *target*. A strategy that raises is recorded
    (``StepResult.error``) and the pass goes on. The governor, not the
    strategy, measures what each step freed.
    """
    if _running_here._is_owned():  # type: ignore[attr-defined]
        raise ReentrantOptimize("hivemem.optimize() was called from inside a running strategy")
    entries, options = _check_arguments(
        registry,
        reader,
        target=target,
        aggressiveness=aggressiveness,
        names=names,
        dry_run=dry_run,
        limit=limit,
        level=level,
        blocking=blocking,
        on_step_start=on_step_start,
        on_step=on_step,
        order=order,
        skip=skip,
        explain_miss=explain_miss,
        clock=clock,
        climb=climb,
    )
    lock = _lock if blocking else _try_lock

    def run() -> OptimizationReport:
        return _run_locked(entries, reader, **options)  # type: ignore[arg-type]

    try:
        # One line on purpose: see the module docstring.
        with lock, _running_here: return run()  # noqa: E701  # fmt: skip
    except _Busy:
        return None


def _check_arguments(
    registry: Registry,
    reader: object,
    *,
    target: object,
    aggressiveness: object,
    names: object,
    dry_run: object,
    limit: object,
    level: object,
    blocking: object,
    on_step_start: object,
    on_step: object,
    order: object,
    skip: object,
    explain_miss: object,
    clock: object,
    climb: object = False,
) -> tuple[list[tuple[RegisteredStrategy, bool]], dict[str, object]]:
    """Every argument of :func:`run_pass`, checked before anything runs; the ordered entries and options."""
    from hivemem import _validate as v
    from hivemem._errors import InvalidArgument

    for attr in ("rss", "usage"):
        if not callable(getattr(reader, attr, None)):
            raise InvalidArgument(f"reader={v.show(reader)}: expected an object with rss() and usage()")
    for flag, value in (
        ("dry_run", dry_run),
        ("blocking", blocking),
        ("explain_miss", explain_miss),
        ("climb", climb),
    ):
        if not isinstance(value, bool):
            raise InvalidArgument(f"{flag}={v.show(value)}: expected True or False")
    if not isinstance(aggressiveness, Aggressiveness):
        raise InvalidArgument(f"aggressiveness={v.show(aggressiveness)}: expected a hivemem.Aggressiveness")
    checked_target = v.size("target", target, allow_none=True)
    checked_limit = v.size("limit", limit, allow_none=True, maximum=2**63)
    if level is not None and not isinstance(level, str):
        raise InvalidArgument(f"level={v.show(level)}: expected a level name or None")
    on_start = v.callable_or_none("on_step_start", on_step_start)
    on_done = v.callable_or_none("on_step", on_step)
    timer = v.callable_or_none("clock", clock)
    if skip is not None and not (
        isinstance(skip, dict) and all(isinstance(k, str) and isinstance(r, str) for k, r in skip.items())
    ):
        raise InvalidArgument(f"skip={v.show(skip)}: expected a dict of strategy name to reason")
    ranked: list[str] | None = None
    if order is not None:
        ranked = _names("order", order)
    entries = registry.ordered(None if names is None else _names("strategies", names))
    if ranked is not None:
        rank = {name: i for i, name in enumerate(ranked)}
        entries.sort(key=lambda pair: rank.get(pair[0].name, len(rank)))  # stable: rest keep their order
    options: dict[str, object] = {
        "target": checked_target,
        "aggressiveness": aggressiveness,
        "dry_run": dry_run,
        "limit": checked_limit,
        "level": level,
        "on_step_start": on_start,
        "on_step": on_done,
        "skip": dict(skip or {}),
        "explain_miss": explain_miss,
        "clock": time.perf_counter if timer is None else timer,
        "climb": climb,
    }
    return entries, options


def _names(what: str, value: object) -> list[str]:
    from hivemem._engine.registry import _name_list
    from hivemem._errors import InvalidArgument
    from hivemem._validate import show

    checked: list[str] = []
    for name in _name_list(value, what):
        if not isinstance(name, str):
            raise InvalidArgument(f"{what}: {show(name)} is not a strategy name (expected str)")
        checked.append(name)
    return checked


#: A step "released memory" for the reruns below when, since a finisher last ran, the
#: blocks Python's allocator hands out (``sys.getallocatedblocks()``: pymalloc's small
#: blocks and the larger ones it passes on to malloc) fell by at least this many.
#: ~2 ms on a 1.7 GiB heap; glibc's ``mallinfo2`` walks every free chunk (~300 ms there).
_RELEASED_BLOCKS = 16_384


def _allocated() -> int:
    return sys.getallocatedblocks()


def _released(then: int, now: int) -> bool:
    return then - now >= _RELEASED_BLOCKS


def _more_at(step: StepResult) -> Aggressiveness | None:
    """The level at which *step*'s strategy said it would do more (``stats["more_at"]``)."""
    value = step.stats.get("more_at")
    if value is None:
        return None
    try:
        return Aggressiveness.parse(value)
    except Exception:
        return None


def _run_locked(
    entries: list[tuple[RegisteredStrategy, bool]],
    reader: Reader,
    *,
    target: int | None,
    aggressiveness: Aggressiveness,
    dry_run: bool,
    limit: int | None,
    level: str | None,
    on_step_start: Callable[[str], object] | None,
    on_step: Callable[[StepResult], object] | None,
    skip: dict[str, str],
    explain_miss: bool,
    clock: Callable[[], float],
    climb: bool = False,
) -> OptimizationReport:
    """The step loop; with *climb*, one level after another up to *aggressiveness*.

    Climbing (docs/optimize.md, "Escalation"): each level runs the strategies
    that become allowed there, in ``(priority, name)`` order, and stops as
    soon as RSS is at or below the target. A strategy that already ran at a
    lower level runs again only for a reason (``_worth_rerun``): it said it
    would do more at this level (``stats["more_at"]``), or it is a finisher
    (``rerun = "after_release"``: gc, trim) and memory was released since it
    last ran. Everything else runs once per pass. Below the ceiling, a level
    whose remaining steps all bound what they can return (``at_most``) and
    together cannot close the gap is left early (``_cannot_pay``); those
    steps run at the next level.
    """
    read_rss = reader.rss
    read_usage = reader.usage
    # Allocator credit feeds the governor's adaptive order only: its passes carry a level.
    # mallinfo2 walks malloc's free chunks (~45 ms a read on the demo's fragmented 1.7 GiB
    # heap, two reads a step), a cost optimize() calls need not pay (docs/optimize.md).
    read_alloc = probe_for(reader) if level is not None else None
    started = clock()
    before = read_usage()
    ctx = StrategyContext(
        target=target,
        aggressiveness=aggressiveness,
        reader=reader,
        limit=limit,
        dry_run=dry_run,
        level=level,
    )
    ladder: list[Aggressiveness] = [aggressiveness]
    if climb:
        ladder = [Aggressiveness.parse(a) for a in Aggressiveness.members() if a <= aggressiveness]
    steps: list[StepResult] = []
    last: dict[str, StepResult] = {}  # the latest run of each strategy in this pass
    settled: set[str] = set()  # strategies with a final "skipped" row (never called)
    marks: dict[str, int | None] = {}  # finishers: allocated blocks after their last run
    since: dict[str, int] = {}  # finishers: -1, or bytes the steps run since declared freed inside
    climbed: list[dict[str, object]] = []
    current = before.rss if before.rss is not None else read_rss()
    reached = False

    def emit(step: StepResult) -> None:
        steps.append(step)
        if on_step is not None:
            on_step(step)

    def final_reason(entry: RegisteredStrategy, enabled: bool) -> str | None:
        if not enabled:
            return "disabled"
        if entry.aggressiveness > aggressiveness:
            if climb:
                return (
                    f"runs at {entry.aggressiveness.name} or above; this pass's ceiling is "
                    f"aggressiveness={aggressiveness.name!r}"
                )
            return f"runs at {entry.aggressiveness.name} or above; this pass is {aggressiveness.name}"
        return None

    for rung in ladder:
        ctx.aggressiveness = rung
        top = rung == ladder[-1]
        rung_start, ran_here, left = current, [], ""
        for pos, (entry, enabled) in enumerate(entries):
            name = entry.name
            if name in settled:
                continue
            if not enabled or entry.aggressiveness > rung:
                reason = final_reason(entry, enabled)
                if reason is not None and (top or not enabled):
                    settled.add(name)
                    emit(StepResult(name, skipped=reason))
                continue
            if target is not None and current <= target:
                reached = True
                break
            prev = last.get(name)
            ctx.needed = None if target is None else max(current - target, 0)
            if prev is not None and not _worth_rerun(entry, prev, rung, marks, since, ctx):
                continue
            if dry_run or name in skip:
                settled.add(name)
                emit(StepResult(name, skipped="dry run" if dry_run else skip[name], level=rung.name))
                continue
            if not top and target is not None and callable(getattr(entry.strategy, "at_most", None)):
                left = _cannot_pay(entries[pos:], rung, ctx, current - target, settled)
                if left:
                    break  # the rest of this level runs at the next one, after what that level adds
            ctx.needed = None if target is None else max(current - target, 0)
            step = _run_one(entry.strategy, name, ctx, read_rss, on_step_start, clock, read_alloc)
            step._set(level=rung.name)
            if step.rss_after is not None:
                current = step.rss_after
            last[name] = step
            ran_here.append(name)
            emit(step)
            if step.ran and step.error is None:
                freed_inside = step.stats.get("allocator_bytes")
                for other in since:
                    if other != name:
                        since[other] = max(since[other], 0)
                        if isinstance(freed_inside, int) and not isinstance(freed_inside, bool):
                            since[other] += max(freed_inside, 0)
            if not top and getattr(entry.strategy, "rerun", None) == "after_release" and step.ran:
                marks[name] = _allocated()  # the baseline a rerun at a later level is judged against
                since[name] = -1  # -1: no other step ran since; else bytes they declared freed inside
        rung_record: dict[str, object] = {
            "level": rung.name,
            "rss_before": rung_start,
            "rss_after": current,
            "ran": ran_here,
        }
        if left:
            rung_record["left"] = left
        climbed.append(rung_record)
        if reached or (target is not None and current <= target):
            reached = True
            break
    if reached:
        for entry, enabled in entries:
            if entry.name not in settled and entry.name not in last:
                emit(StepResult(entry.name, skipped=final_reason(entry, enabled) or "target reached"))
    after = read_usage()
    explanation, breakdown = "", dict[str, int]()
    if explain_miss and target is not None and after.rss is not None and after.rss > target and not dry_run:
        explanation, breakdown = explain(after.rss, target, ceiling=aggressiveness, steps=steps)
    report = OptimizationReport(
        before=before,
        after=after,
        target=target,
        steps=steps,
        seconds=clock() - started,
        aggressiveness=aggressiveness.name,
        dry_run=dry_run,
        explanation=explanation,
        breakdown=breakdown,
        level=level,
        levels=climbed,
    )
    _publish(report)
    return report


def _cannot_pay(
    rest: list[tuple[RegisteredStrategy, bool]],
    rung: Aggressiveness,
    ctx: StrategyContext,
    gap: int,
    settled: set[str],
) -> str:
    """Why the steps left at *rung* cannot close *gap*, or ``""`` when they might.

    Every step that may still run at this level must say the most RSS it
    could return now (an ``at_most(ctx)`` method, measured, e.g. malloc's free
    bytes for ``trim``); unknown means it might pay. When even their sum is
    short of the gap, the level cannot reach the target, and its remaining
    steps run at the next level instead, where they also see what that level
    frees first.
    """
    bounds: list[tuple[str, int]] = []
    for entry, enabled in rest:
        if entry.name in settled or not enabled or entry.aggressiveness > rung:
            continue
        fn = getattr(entry.strategy, "at_most", None)
        try:
            bound = fn(ctx) if callable(fn) else None
        except Exception:
            bound = None
        if not isinstance(bound, int) or isinstance(bound, bool) or bound < 0:
            return ""
        bounds.append((entry.name, bound))
    if not bounds or sum(b for _, b in bounds) >= gap:
        return ""
    from hivemem._sizes import format_size as fs

    what = ", ".join(f"{name} at most {fs(b)}" for name, b in bounds)
    return f"left for the next level: {what}, short of the {fs(gap)} still needed"


def _worth_rerun(
    entry: RegisteredStrategy,
    prev: StepResult,
    rung: Aggressiveness,
    marks: dict[str, int | None],
    since: dict[str, int],
    ctx: StrategyContext,
) -> bool:
    """Whether a strategy that ran at a lower level in this pass should run again at *rung*.

    A finisher runs again when another step ran since its last run and
    memory was released since: Python's allocator hands out
    :data:`_RELEASED_BLOCKS` fewer blocks, or the steps declared at least
    1 MiB freed inside an allocator (``stats["allocator_bytes"]``), or its
    own measured bound (``at_most``) says it could still close the gap
    (a few large blocks freed into malloc's heap, 256 KiB values compressed
    or spilled, change the block count little; trim is what returns them).
    """
    if prev.error is not None:
        return False
    more = _more_at(prev)
    if more is not None and more <= rung:
        return True
    name = entry.name
    if getattr(entry.strategy, "rerun", None) != "after_release" or not prev.ran or name not in since:
        return False
    declared = since[name]
    if declared < 0:  # nothing else ran since
        return False
    mark = marks.get(name)
    if mark is None or declared >= 2**20 or _released(mark, _allocated()):
        return True
    fn = getattr(entry.strategy, "at_most", None)
    if ctx.needed is None or not callable(fn):
        return False
    try:
        bound = fn(ctx)
    except Exception:
        return False
    return isinstance(bound, int) and not isinstance(bound, bool) and bound >= ctx.needed


def _run_one(
    strategy: Strategy,
    name: str,
    ctx: StrategyContext,
    read_rss: Callable[[], int],
    on_step_start: Callable[[str], object] | None,
    clock: Callable[[], float] = time.perf_counter,
    read_alloc: Callable[[], tuple[int | None, int | None]] | None = None,
) -> StepResult:
    if on_step_start is not None:
        on_step_start(name)
    alloc_before = read_alloc() if read_alloc is not None else None
    rss_before = read_rss()
    t0, c0 = clock(), time.thread_time()
    error = None
    result: object = None
    try:
        result = strategy.apply(ctx)
    except ReentrantOptimize as exc:
        error = _describe_error(exc)
    except Exception as exc:  # a failing strategy is recorded, never raised into the host
        error = _describe_error(exc)
        import logging

        logging.getLogger("hivemem").warning("hivemem strategy %r failed: %s", name, error, exc_info=True)
    seconds, cpu = clock() - t0, time.thread_time() - c0
    rss_after = read_rss()
    malloc_released = blocks_released = None
    if (
        alloc_before is not None and read_alloc is not None
    ):  # what the step gave the allocators (_engine/credit.py)
        malloc_released, blocks_released = released(alloc_before, read_alloc())
    summary, stats, skipped = "", {}, None
    if isinstance(result, StrategyResult):
        summary, stats, skipped = result.summary, result.stats, result.skipped
    elif result is not None and error is None:
        summary = str(result)
    return StepResult(
        name,
        rss_before=rss_before,
        rss_after=rss_after,
        seconds=seconds,
        cpu_seconds=cpu,
        skipped=skipped,
        error=error,
        summary=summary,
        stats=stats,
        malloc_released=malloc_released,
        blocks_released=blocks_released,
    )
