"""One reclamation pass: run allowed strategies in order, measure each, stop at the target.

Only one pass runs at a time in a process (a module-level lock, re-created in
a forked child): two passes racing would each measure the other's work.
The engine knows strategies only through the registry's duck-typed entries.
"""

from __future__ import annotations

import _thread
import os
import time

from hivemem._credit import probe_for, released
from hivemem._errors import ReentrantOptimize
from hivemem._levels import Aggressiveness
from hivemem._report import OptimizationReport, StepResult
from hivemem._strategy import StrategyContext, StrategyResult

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from hivemem._registry import RegisteredStrategy, Registry

__all__ = ["explain", "run_pass", "subscribe", "unsubscribe"]

_lock = _thread.allocate_lock()
_owner: int | None = None
_listeners: list[Callable[[OptimizationReport], object]] = []


def _after_fork_child() -> None:
    global _lock, _owner
    # A pass running in another parent thread does not exist in the child.
    _lock = _thread.allocate_lock()
    _owner = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)


def subscribe(listener: Callable[[OptimizationReport], object]) -> None:
    """Call *listener(report)* after every pass (metrics exporters, status files).

    A listener that raises is logged on the ``hivemem`` logger and ignored.
    """
    if not callable(listener):
        from hivemem._errors import InvalidArgument

        raise InvalidArgument(f"listener {listener!r} is not callable")
    if listener not in _listeners:
        _listeners.append(listener)


def unsubscribe(listener: Callable[[OptimizationReport], object]) -> None:
    """Stop calling *listener*; unknown listeners are ignored."""
    try:
        _listeners.remove(listener)
    except ValueError:
        pass


def _publish(report: OptimizationReport) -> None:
    for listener in list(_listeners):
        try:
            listener(report)
        except Exception:
            import logging

            logging.getLogger("hivemem").exception("hivemem report listener %r failed", listener)


def _describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def explain(rss_now: int | None, target: int | None) -> tuple[str, dict[str, int]]:
    """Why RSS is above *target*, in words, from allocator figures measured now.

    Returns ``(text, breakdown)``; *breakdown* holds the figures in bytes.
    Allocator figures count allocated address space; RSS counts resident
    pages, so "rest" is RSS minus pymalloc's arenas and malloc's in-use bytes,
    floored at zero. malloc's free bytes are reported but not subtracted:
    part of them may already be back with the OS.
    """
    from hivemem._native import malloc_info, pymalloc_stats
    from hivemem._sizes import format_size as fs

    breakdown: dict[str, int] = {}
    try:
        py = pymalloc_stats()
    except Exception:
        py = None
    try:
        libc = malloc_info()
    except Exception:
        libc = None
    parts: list[str] = []
    accounted = 0
    if py is not None:
        breakdown["pymalloc_live"] = py["allocated"]
        breakdown["pymalloc_free"] = py["free"]
        accounted += py["arenas"]
        parts.append(f"{fs(py['allocated'])} is live small Python objects (pymalloc)")
        parts.append(
            f"{fs(py['free'])} is free space inside pymalloc arenas (fragmentation: an arena "
            "returns to the OS only when every object in it is freed; rebuilding the containers "
            "that hold the survivors packs them into fewer arenas)"
        )
    if libc is not None:
        breakdown["malloc_in_use"] = libc["in_use"]
        breakdown["malloc_free"] = libc["free"]
        accounted += libc["in_use"]
        parts.append(
            f"{fs(libc['in_use'])} is in use in malloc (large Python objects, C extensions, native libraries)"
        )
    if rss_now is not None and (py is not None or libc is not None):
        # malloc's free bytes are address space: pages malloc_trim already gave back still count
        # there but not in RSS, so they cannot be added to the resident figures above.
        rest = max(rss_now - accounted, 0)
        breakdown["rest"] = rest
        text = f"{fs(rest)} is the rest of RSS: code, shared libraries, thread stacks, other mappings"
        if libc is not None:
            text += (
                f", and whatever part of malloc's {fs(libc['free'])} of free heap is still resident "
                "(malloc_trim returns that part; the rest of it is already back with the OS)"
            )
        parts.append(text)
    head = ""
    if target is not None and rss_now is not None:
        head = f"RSS {fs(rss_now)} is {fs(rss_now - target)} over the target {fs(target)}. "
    if not parts:
        return head + "No allocator statistics are available on this platform to say more.", breakdown
    return head + "Measured after the pass: " + "; ".join(parts) + ".", breakdown


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
) -> OptimizationReport | None:
    """Run one pass. Returns ``None`` only when ``blocking=False`` and a pass is running.

    Strategies run in ``(priority, name)`` order, or the governor's adaptive
    *order* (names listed there first, in that order; the rest after, in
    ``(priority, name)`` order). *skip* maps names to a reason they are
    skipped this pass. ``explain_miss=False`` leaves out the allocator
    breakdown when the target is missed (the background governor's passes
    keep their cost small). *clock* times steps and the pass (default
    ``time.perf_counter``; the governor passes its own, so a fake clock makes
    its adaptive order deterministic). Before each, the pass stops
    if RSS is already at or below *target*. A strategy that raises is recorded
    (``StepResult.error``) and the pass goes on. The governor, not the
    strategy, measures what each step freed.
    """
    global _owner
    me = _thread.get_ident()
    if _owner == me:
        raise ReentrantOptimize("hivemem.optimize() was called from inside a running strategy")
    entries = registry.ordered(names)  # validates names before anything runs
    if order is not None:
        rank = {name: i for i, name in enumerate(order)}
        entries.sort(key=lambda pair: rank.get(pair[0].name, len(rank)))  # stable: rest keep their order
    if not _lock.acquire(blocking):
        return None
    _owner = me
    try:
        return _run_locked(
            entries,
            reader,
            target=target,
            aggressiveness=aggressiveness,
            dry_run=dry_run,
            limit=limit,
            level=level,
            on_step_start=on_step_start,
            on_step=on_step,
            skip=skip or {},
            explain_miss=explain_miss,
            clock=time.perf_counter if clock is None else clock,
        )
    finally:
        _owner = None
        _lock.release()


def _run_locked(
    entries: list[tuple[RegisteredStrategy, bool]],
    reader: object,
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
) -> OptimizationReport:
    read_rss: Callable[[], int] = reader.rss  # type: ignore[attr-defined]
    read_usage = reader.usage  # type: ignore[attr-defined]
    read_alloc = probe_for(reader)
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
    steps: list[StepResult] = []
    current = before.rss if before.rss is not None else read_rss()
    for entry, enabled in entries:
        name, needed = entry.name, entry.aggressiveness
        reason = None
        if not enabled:
            reason = "disabled"
        elif needed > aggressiveness:
            reason = f"runs at {needed.name} or above; this pass is {aggressiveness.name}"
        elif target is not None and current <= target:
            reason = "target reached"
        elif dry_run:
            reason = "dry run"
        elif name in skip:
            reason = skip[name]
        if reason is not None:
            step = StepResult(name, skipped=reason)
        else:
            ctx.needed = None if target is None else max(current - target, 0)
            step = _run_one(entry.strategy, name, ctx, read_rss, on_step_start, clock, read_alloc)
            if step.rss_after is not None:
                current = step.rss_after
        steps.append(step)
        if on_step is not None:
            on_step(step)
    after = read_usage()
    explanation, breakdown = "", dict[str, int]()
    if explain_miss and target is not None and after.rss is not None and after.rss > target and not dry_run:
        explanation, breakdown = explain(after.rss, target)
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
    )
    _publish(report)
    return report


def _run_one(
    strategy: object,
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
        result = strategy.apply(ctx)  # type: ignore[attr-defined]
    except ReentrantOptimize as exc:
        error = _describe_error(exc)
    except Exception as exc:  # a failing strategy is recorded, never raised into the host
        error = _describe_error(exc)
        import logging

        logging.getLogger("hivemem").warning("hivemem strategy %r failed: %s", name, error, exc_info=True)
    seconds, cpu = clock() - t0, time.thread_time() - c0
    rss_after = read_rss()
    malloc_released = blocks_released = None
    if alloc_before is not None and read_alloc is not None:  # what the step gave the allocators (_credit.py)
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
