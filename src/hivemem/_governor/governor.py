"""The MemoryGovernor, ``hivemem.optimize()`` and ``hivemem.govern()``.

The governor measures memory through a reader (``/proc`` by default, any
object with ``rss()`` and ``usage()`` in tests) and runs the registry's
strategies through the engine. It knows strategies only by the protocol.

Used once (``optimize()``) it runs a single measured pass. Started
(``start()``, ``with governor:``, ``hivemem.govern()``) a background
thread ticks every *interval* (and on PSI events): each tick reads RSS,
moves between pressure levels with hysteresis (``thresholds.py``), and at
MODERATE or above runs one pass at that level's aggressiveness toward the
level's release threshold, within a CPU budget (``cpubudget.py``), in an
adaptive order (``adaptive.py``), recording events (``events.py``).

Its options are checked, and grouped, in ``options.py``; the SIGINT bridge of
``escalation="raise"`` is ``sigint.py``, the report of ``escalation="exit"``
``exitreport.py``, and the process-wide governors live in ``active.py``.

This module is loaded by ``hivemem.optimize()``, so it imports nothing heavy
at module level: ``threading``, ``logging``, ``signal`` and ``warnings`` are
imported where they are used.
"""

from __future__ import annotations

import _thread
import os
import sys
import time

from hivemem import _validate as _v
from hivemem._errors import InvalidArgument, InvalidSize
from hivemem._governor import active
from hivemem._governor.exitreport import write_exit_report
from hivemem._governor.options import (
    AFTER_FORK,
    UNSET,
    AdaptiveOptions,
    BudgetOptions,
    CpuOptions,
    EscalationOptions,
    PacingOptions,
    WakeOptions,
    _Unset,
    check_reader,
    choice,
    count,
)
from hivemem._governor.pacing import FAR, next_wait
from hivemem._governor.sigint import install_sigint_bridge, main_ident, raise_in_main, uninstall_sigint_bridge
from hivemem._levels import Aggressiveness, Pressure
from hivemem._measure.holdgil import statm_rss
from hivemem._measure.procfs import statm_fd
from hivemem._sizes import format_size, mib_to_bytes, parse_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import TypeVar

    from typing_extensions import Unpack

    from hivemem._engine.registry import Registry
    from hivemem._engine.report import OptimizationReport, StepResult
    from hivemem._governor.adaptive import AdaptiveOrder
    from hivemem._governor.cpubudget import CpuBudget
    from hivemem._governor.events import EventFields, GovernorEvent
    from hivemem._governor.monitor import Monitor, WakeSource
    from hivemem._governor.notify import CgroupThresholds
    from hivemem._governor.options import GovernorOptions
    from hivemem._governor.thresholds import Thresholds
    from hivemem._measure.limits import MemoryLimit
    from hivemem._measure.reader import Reader
    from hivemem._measure.usage import MemoryUsage

    _G = TypeVar("_G")

__all__ = ["MemoryGovernor", "govern", "optimize"]

#: Growth that reaches the hard limit within this many seconds is *urgent*: the switch
#: interval is lowered, and passes go straight to the level whose strategies can pay.
URGENT_SECONDS = 1.0
#: Growth slower than this share of the budget per second counts as "not growing".
GROWING_SHARE = 0.01
#: Seconds from deciding to escalate until the main thread has stopped allocating (measured here:
#: ~40 ms on a loaded 2-core machine, 500 MiB/s of growth ran 20 MiB past the decision).
DELIVERY_SECONDS = 0.05
#: Seconds between checks that the cgroup thresholds still aim at this process's RSS, and the
#: shortest time between two re-aims when the rest of the group keeps crossing them.
REARM_SECONDS, REARM_SOON = 5.0, 0.5
#: After a pass that could not keep up with growth, the next pass at that level waits for the
#: growth to stop, or at most this many CPU windows, as long as the hard limit is more than
#: FUTILE_HORIZON seconds away at this growth (closer, every pass counts).
FUTILE_WAIT, FUTILE_HORIZON = 6, 10.0

_LINUX = sys.platform.startswith("linux")
_SOURCE_KINDS = {
    "cgroup": "cgroup v1 memory thresholds",
    "memory.events": "cgroup v2 memory.events",
    "psi": "psi",
}


def _statm_rss() -> int:
    """RSS from ``/proc/self/statm`` with one ``pread``: the monitor's per-tick read.

    On the descriptor ``procfs.py`` keeps open (its fork hook closes it in a
    child, so no call checks the pid). Measured on a 2-core VM: ~20 µs of
    process CPU per cold read against ~60-140 µs. The read keeps the GIL
    (``holdgil.py``): under a busy main thread a release would cost a switch
    interval.
    """
    return statm_rss(statm_fd())


class _PassReader:
    """The reader of background passes: RSS with the GIL held, and pymalloc's block count.

    A full :class:`hivemem.MemoryUsage` reads several ``/proc`` files, each a
    GIL release that a busy main thread turns into a switch-interval wait; a
    background pass records RSS and ``blocks`` only (``optimize()`` still reads
    everything). ``real_process`` tells the engine to credit allocator releases.
    """

    real_process = True
    _why = "not read by background passes (see docs/governor.md)"

    def rss(self) -> int:
        return _statm_rss()

    def usage(self) -> MemoryUsage:
        from hivemem._measure.usage import MemoryUsage

        why = self._why
        return MemoryUsage(
            rss=_statm_rss(),
            blocks=sys.getallocatedblocks(),
            source="statm",
            unavailable={k: why for k in ("vms", "uss", "pss", "swap", "peak", "traced", "traced_peak")},
        )

    def __repr__(self) -> str:
        return "<background pass reader>"


def _resolve_target(target_mb: object, target: object) -> int | None:
    if target_mb is not None and target is not None:
        raise InvalidArgument(
            f"give either target_mb={target_mb!r} or target={target!r}, not both "
            "(target_mb is MiB; target is a size such as '90MB' or bytes)"
        )
    if target_mb is not None:
        return mib_to_bytes(target_mb, name="target_mb")
    if target is not None:
        return parse_size(target)
    return None


def _group(cls: type[_G], given: _G | None, name: str, **flat: object) -> _G:
    """The option group *given*, or one made from the flat keyword arguments that were given.

    Giving a group and one of its flat keyword arguments too is refused: which should win?
    """
    passed = {k: v for k, v in flat.items() if v is not UNSET}
    if given is None:
        return cls(**passed)
    if not isinstance(given, cls):
        raise InvalidArgument(f"{name}={_v.show(given)}: expected a {getattr(cls, '__name__', cls)}")
    if passed:
        raise InvalidArgument(
            f"give {', '.join(sorted(passed))} either in {name}= or as keyword arguments, not both"
        )
    return given


class MemoryGovernor:
    """Keeps this process inside a memory budget: one pass on demand, or continuously.

    ``MemoryGovernor(target="90MB").optimize()`` runs one measured pass.
    ``MemoryGovernor(budget="2GB").start()`` (or ``with ...:``) watches
    memory in a background thread and acts at each pressure level; see
    ``docs/governor.md`` for every option. *registry* defaults to the
    process-wide registry; *reader* to :class:`hivemem.ProcReader`. Every
    method may be called from any thread; passes are serialized process-wide.

    Options (all checked here, at construction):

    ``budget``      bytes/size, or a fraction of ``memory_limit()`` (``0.8``, ``"80%"``); default 1.0
    ``thresholds``  ``{level: enter | (enter, release)}``, fractions of the budget or sizes
    ``limit``       the hard limit to check against (default ``hivemem.memory_limit()``)
    ``interval``    seconds between polls (0.1)
    ``spike_window``  seconds of rolling-minimum baseline below CRITICAL (``None``: off)
    ``cpu_budget``, ``cpu_window``  share of wall time for reclamation (0.05) over a window (10 s)
    ``escalation``  ``"warn"``, ``"callback"`` (needs ``on_escalate``), ``"raise"`` or ``"exit"``
    ``psi``         ``"auto"`` (use PSI triggers when they work), ``True`` (must work), ``False``
    ``after_fork``  ``"stop"`` (the child has no monitor) or ``"restart"``
    ``adaptive``, ``demote_after``, ``retry_every``, ``min_yield``, ``never_demote``  adaptive order
    ``level_aggressiveness``  ``{level: aggressiveness}`` for the passes at each level
    ``clock``       seconds, monotonic (tests inject a fake one)
    ``cpu_clock``   what a pass costs the CPU budget: the monitor thread's CPU time
                    (``time.thread_time``) by default, so time spent waiting for the GIL
                    while the application runs is not charged; ``clock`` when that is injected
    The same options also come in frozen groups, checked when made:
    ``budget_options``, ``pacing_options``, ``cpu_options``, ``adaptive_options``,
    ``escalation_options`` and ``wake_options`` (see ``options.py``). Giving
    an option both in its group and as a keyword is refused.
    """

    __module__ = "hivemem"

    def __init__(
        self,
        target: int | str | None = None,
        *,
        registry: Registry | None = None,
        reader: object = None,
        aggressiveness: object = None,
        budget: object = UNSET,
        thresholds: dict[object, object] | _Unset | None = UNSET,
        limit: object = UNSET,
        interval: float | _Unset | None = UNSET,
        spike_window: float | _Unset | None = UNSET,
        cpu_budget: float | _Unset = UNSET,
        cpu_window: float | _Unset = UNSET,
        escalation: str | _Unset = UNSET,
        on_escalate: Callable[[GovernorEvent], object] | _Unset | None = UNSET,
        exit_code: int | _Unset = UNSET,
        psi: object = UNSET,
        psi_trigger: object = UNSET,
        after_fork: str = "stop",
        adaptive: bool | _Unset = UNSET,
        demote_after: int | _Unset = UNSET,
        retry_every: int | _Unset = UNSET,
        min_yield: int | str | _Unset = UNSET,
        never_demote: Iterable[str] | _Unset = UNSET,
        level_aggressiveness: dict[object, object] | _Unset | None = UNSET,
        max_events: int = 1000,
        clock: Callable[[], float] | None = None,
        cpu_clock: Callable[[], float] | _Unset | None = UNSET,
        min_interval: float | _Unset = UNSET,
        max_interval: float | _Unset | None = UNSET,
        notify: object = UNSET,
        switch_interval: float | _Unset | None = UNSET,
        headroom: object = UNSET,
        budget_options: BudgetOptions | None = None,
        pacing_options: PacingOptions | None = None,
        cpu_options: CpuOptions | None = None,
        adaptive_options: AdaptiveOptions | None = None,
        escalation_options: EscalationOptions | None = None,
        wake_options: WakeOptions | None = None,
    ) -> None:
        from hivemem._engine.registry import Registry, default_registry
        from hivemem._measure.usage import ProcReader

        if registry is not None and not isinstance(registry, Registry):
            raise InvalidArgument(f"registry must be a hivemem.Registry, got {registry!r}")
        self.target: int | None = None if target is None else parse_size(target)
        self.registry: Registry = default_registry if registry is None else registry
        self.reader: Reader = ProcReader() if reader is None else check_reader(reader)
        # optimize()'s ceiling; None: aggressive with a target, moderate without (docs/optimize.md)
        self._ceiling_given = aggressiveness is not None
        self.aggressiveness: Aggressiveness = Aggressiveness.parse(
            "moderate" if aggressiveness is None else aggressiveness
        )
        self.last_report: OptimizationReport | None = None

        # ----- background options: all validated now, nothing half-applied (options.py)
        pacing = _group(
            PacingOptions,
            pacing_options,
            "pacing_options",
            interval=interval,
            min_interval=min_interval,
            max_interval=max_interval,
            switch_interval=switch_interval,
        )
        self.interval: float = pacing.interval
        self.min_interval: float = pacing.min_interval
        self.max_interval: float = pacing.max_interval
        limits = _group(
            BudgetOptions,
            budget_options,
            "budget_options",
            budget=budget,
            thresholds=thresholds,
            limit=limit,
            headroom=headroom,
            spike_window=spike_window,
        )
        self.spike_window: float | None = limits.spike_window
        escalate = _group(
            EscalationOptions,
            escalation_options,
            "escalation_options",
            escalation=escalation,
            on_escalate=on_escalate,
            exit_code=exit_code,
        )
        self.escalation: str = escalate.escalation
        self.on_escalate: Callable[[GovernorEvent], object] | None = escalate.on_escalate
        self.exit_code: int = escalate.exit_code
        wake = _group(
            WakeOptions, wake_options, "wake_options", psi=psi, psi_trigger=psi_trigger, notify=notify
        )
        self.psi = wake.psi
        self.notify = wake.notify
        self.switch_interval: float | None = pacing.switch_interval
        self._headroom_spec = limits.headroom
        self.psi_trigger = wake.psi_trigger
        self.after_fork = str(choice("after_fork", after_fork, AFTER_FORK))
        adapt = _group(
            AdaptiveOptions,
            adaptive_options,
            "adaptive_options",
            enabled=adaptive,
            demote_after=demote_after,
            retry_every=retry_every,
            min_yield=min_yield,
            never_demote=never_demote,
            level_aggressiveness=level_aggressiveness,
        )
        self.adaptive: bool = adapt.enabled
        self.max_events: int = count("max_events", max_events, minimum=1, maximum=10**7)
        self.level_aggressiveness = dict(adapt.level_aggressiveness)
        _v.callable_or_none("clock", clock)
        self._clock: Callable[[], float] = clock or time.monotonic
        cpu = _group(
            CpuOptions, cpu_options, "cpu_options", budget=cpu_budget, window=cpu_window, clock=cpu_clock
        )
        self._cpu_clock: Callable[[], float] = cpu.clock or (time.thread_time if clock is None else clock)

        from hivemem._governor.adaptive import AdaptiveOrder
        from hivemem._governor.cpubudget import CpuBudget

        self._cpu: CpuBudget = CpuBudget(cpu.budget, cpu.window, clock=self._clock)
        self._adapt: AdaptiveOrder = AdaptiveOrder(
            demote_after=adapt.demote_after,
            retry_every=adapt.retry_every,
            min_yield=adapt.min_yield,
            never_demote=adapt.never_demote,
        )

        self._budget_spec = limits.budget
        self._thresholds_spec = limits.thresholds
        self._limit_spec = limits.limit
        self._thresholds: Thresholds | None = None
        self._fast_below: int | None = None
        # ProcReader reads /proc/self/statm: the hot path does the same with one pread (see _statm_rss).
        self._own_process = type(self.reader) is ProcReader and _LINUX
        self._read_rss: Callable[[], int] = _statm_rss if self._own_process else self.reader.rss
        self._pass_reader: Reader = _PassReader() if self._own_process else self.reader
        self._limit: MemoryLimit | int | None = None
        self._limit_int = 0  # the resolved limit in bytes (0: not resolved yet)
        self._headroom_floor = 0
        self._budget_int = 0
        self._watch = 0  # RSS above which growth lowers the switch interval (half the budget)
        self._mark_gap = 4 * 2**20  # spacing of the cgroup threshold marks
        self._far = FAR  # the pacing distance rule: 0 while cgroup thresholds wake us at the marks
        self._growing = 0.0  # bytes/s below which memory is "not growing"
        self._configured = limits.configured
        if self._configured:
            self._resolve()  # impossible settings fail here, at construction

        # ----- state
        self._level = Pressure.NORMAL
        self._lock = _thread.allocate_lock()  # one tick at a time
        self._reading = _thread.allocate_lock()  # one growth reading at a time (the fast path too)
        self._events: list[GovernorEvent] = []
        self._subscribers: list[Callable[[GovernorEvent], object]] = []
        self._window: list[tuple[float, int]] = []  # rolling-minimum candidates (time, rss)
        self._throttled = False
        self._escalated_at: float | None = None
        self._monitor: Monitor | None = None
        self._triggers: list[WakeSource] = []
        self._cgroup_marks: CgroupThresholds | None = None  # re-aimed every REARM_SECONDS
        self._rearm_at = float("inf")
        self._last_rss = 0
        self.psi_note = ""
        self.notify_note = ""
        self.ticks = 0
        self.passes = 0
        self.busy = 0  # ticks whose pass was skipped because another pass was running
        from hivemem._governor.gilswitch import SwitchInterval
        from hivemem._measure.growth import Growth

        self._growth = Growth()
        self._wait = self.interval  # what the monitor sleeps before the next tick
        self._urgent = False  # the hard limit is less than URGENT_SECONDS away at this growth
        self._alert = False  # urgent, or growing above the watch mark: the switch interval is low
        self._switch = SwitchInterval(self.switch_interval) if self.switch_interval is not None else None
        # pass level -> (when, RSS before) of its last pass that fell short of its target
        self._futile: dict[Pressure, tuple[float, int]] = {}
        self._pass_seconds = 0.01  # recent pass wall time (moving average), for the lookahead
        self.last_pass: OptimizationReport | None = None  # the last background pass

    # ------------------------------------------------------------------ configuration
    def _resolve(self) -> Thresholds:
        from hivemem._governor.thresholds import Thresholds, resolve_amount
        from hivemem._measure.limits import MemoryLimit, memory_limit

        spec = self._limit_spec
        limit: MemoryLimit | int
        if spec is None:
            limit = memory_limit()
        elif isinstance(spec, MemoryLimit):
            limit = spec
        else:
            try:
                limit = parse_size(spec)
            except InvalidSize as exc:
                raise InvalidArgument(f"limit: {exc}") from None
        limit_bytes = int(limit)
        if limit_bytes <= 0:
            raise InvalidArgument(f"limit={spec!r}: must be above 0 bytes")
        budget = resolve_amount(
            1.0 if self._budget_spec is None else self._budget_spec, limit_bytes, name="budget"
        )
        where = getattr(limit, "source", "given")
        if budget <= 0:
            raise InvalidArgument(f"budget={self._budget_spec!r} is 0 bytes: expected a positive size")
        if budget > limit_bytes:
            raise InvalidArgument(
                f"budget {format_size(budget)} is above the memory limit {format_size(limit_bytes)} "
                f"({where}): the kernel would stop the process before the governor acts"
            )
        if self.target is not None and self.target > limit_bytes:
            raise InvalidArgument(
                f"target {format_size(self.target)} is above the memory limit "
                f"{format_size(limit_bytes)} ({where})"
            )
        thresholds = Thresholds.build(budget, self._thresholds_spec)
        if thresholds.highest > limit_bytes:
            raise InvalidArgument(
                f"a threshold ({format_size(thresholds.highest)}) is above the memory limit "
                f"{format_size(limit_bytes)} ({where}): it could never be acted on"
            )
        self._limit, self._thresholds = limit, thresholds
        self._limit_int = limit_bytes
        from hivemem._governor.thresholds import resolve_amount as amount

        floor = amount(self._headroom_spec, limit_bytes, name="headroom")
        if not 0 <= floor < limit_bytes:
            raise InvalidArgument(
                f"headroom={_v.show(self._headroom_spec)}: expected a share of the limit below 1 "
                f"(0.03) or a size below it ({format_size(limit_bytes)})"
            )
        self._headroom_floor = max(floor, min(2**20, limit_bytes // 2))  # Go: max(3%, 1 MiB)
        self._budget_int = thresholds.budget
        self._mark_gap = max(thresholds.budget // 20, 4 * 2**20)
        self._watch = thresholds.budget // 2
        self._growing = GROWING_SHARE * thresholds.budget
        # Below every entry threshold at NORMAL nothing can happen: a tick may stop after one
        # read. Not with a rolling-minimum baseline, which must see every reading.
        self._fast_below = (
            None if self.spike_window is not None else min(e for e, _ in thresholds.levels.values())
        )
        return thresholds

    @property
    def thresholds(self) -> Thresholds:
        """The resolved :class:`Thresholds` (budget and per-level enter/release bytes)."""
        return self._thresholds if self._thresholds is not None else self._resolve()

    @property
    def budget(self) -> int:
        """The budget in bytes."""
        return self.thresholds.budget

    @property
    def limit(self) -> int | None:
        """The hard limit in bytes that every pass works under (``None`` when unknown).

        ``limit=`` when the governor was given one, else :func:`hivemem.memory_limit`:
        compaction keeps its serialized copy under it, and escalation reports it.
        """
        return self._limit_bytes()

    @property
    def level(self) -> Pressure:
        """The current :class:`hivemem.Pressure` level."""
        return self._level

    @property
    def events(self) -> tuple[GovernorEvent, ...]:
        """The most recent events, oldest first (at most ``max_events``)."""
        return tuple(self._events)

    @property
    def running(self) -> bool:
        """True while the monitor thread is running."""
        return self._monitor is not None and self._monitor.alive

    @property
    def cpu(self) -> dict[str, float]:
        """The CPU budget: ``share``, ``window``, ``capacity``, ``level``, ``spent_total`` (seconds)."""
        return self._cpu.to_dict()

    @property
    def strategy_stats(self) -> dict[str, object]:
        """What the adaptive order learned: per strategy runs, demoted, bytes per second."""
        return self._adapt.to_dict()

    # ------------------------------------------------------------------ one-off pass
    def optimize(
        self,
        target_mb: float | None = None,
        *,
        target: int | str | None = None,
        strategies: Iterable[str] | None = None,
        aggressiveness: object = None,
        dry_run: bool = False,
        on_step_start: Callable[[str], object] | None = None,
        on_step: Callable[[StepResult], object] | None = None,
    ) -> OptimizationReport:
        """Run one pass and return its :class:`hivemem.OptimizationReport`.

        *target_mb* (MiB) or *target* (a size) overrides the governor's
        target. With a target the pass climbs cheap, moderate, aggressive and
        stops at the first level that reaches it; *aggressiveness* is the
        ceiling (default: the governor's, else ``"aggressive"``). Without a
        target one pass runs at *aggressiveness* (default: the governor's,
        else ``"moderate"``). *strategies* limits the pass to those names
        (still run in registry order). ``dry_run=True`` measures and lists
        what would run, changing nothing. *on_step_start(name)* and
        *on_step(step)* report progress live. All arguments are checked
        before anything runs.
        """
        from hivemem._engine.engine import run_pass

        goal = _resolve_target(target_mb, target)
        if goal is None:
            goal = self.target
        level = self.ceiling_for(goal) if aggressiveness is None else Aggressiveness.parse(aggressiveness)
        if not isinstance(dry_run, bool):
            raise InvalidArgument(f"dry_run must be True or False, got {dry_run!r}")
        report = run_pass(
            self.registry,
            self.reader,
            target=goal,
            aggressiveness=level,
            names=strategies,
            dry_run=dry_run,
            limit=self._limit_bytes(),
            on_step_start=on_step_start,
            on_step=on_step,
            climb=goal is not None,
        )
        assert report is not None  # blocking passes always run
        self.last_report = report
        return report

    def ceiling_for(self, target: int | None) -> Aggressiveness:
        """The highest level a pass toward *target* climbs to when the call names none.

        The ``aggressiveness`` this governor was made with, else
        ``aggressive`` with a target (the pass stops at the first level that
        reaches it) and ``moderate`` without one (docs/optimize.md).
        """
        if self._ceiling_given:
            return self.aggressiveness
        return Aggressiveness.AGGRESSIVE if target is not None else Aggressiveness.MODERATE

    def _limit_bytes(self) -> int | None:
        if self._limit is not None:
            return int(self._limit)
        from hivemem._measure.limits import memory_limit

        try:
            return memory_limit().bytes
        except Exception:
            return None

    # ------------------------------------------------------------------ events
    def subscribe(self, fn: Callable[[GovernorEvent], object]) -> None:
        """Call *fn(event)* for every event; one that raises is logged, never breaks the governor."""
        if not callable(fn):
            raise InvalidArgument(f"subscriber {fn!r} is not callable")
        if fn not in self._subscribers:
            self._subscribers.append(fn)

    def unsubscribe(self, fn: Callable[[GovernorEvent], object]) -> None:
        """Stop calling *fn*; unknown subscribers are ignored."""
        try:
            self._subscribers.remove(fn)
        except ValueError:
            pass

    def _emit(self, kind: str, **fields: Unpack[EventFields]) -> GovernorEvent:
        from hivemem._governor.events import GovernorEvent

        event = GovernorEvent(self._clock(), kind, self._level.name, **fields)
        self._events.append(event)
        if len(self._events) > self.max_events:
            del self._events[0]
        import logging

        logger = logging.getLogger("hivemem")
        if logger.isEnabledFor(event.log_level):
            logger.log(event.log_level, "hivemem governor %s", event.describe())
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception:
                logger.exception("hivemem governor subscriber %r failed", fn)
        return event

    # ------------------------------------------------------------------ the tick
    def tick(self, source: str = "manual") -> Pressure:
        """Measure once, update the level, act if needed; returns the level.

        The monitor thread calls this after each paced wait and on kernel
        events; tests call it directly with a fake clock and reader. A tick
        that finds another tick running returns at once. With
        ``escalation="raise"`` a tick on the main thread raises
        :class:`hivemem.MemoryLimitExceeded` itself.
        """
        rss = self._read_rss()
        now = self._clock()
        growth = self._growth
        if self._reading.acquire(False):  # ticks from several threads: one reading at a time
            try:
                growth.add(now, rss)
                if now >= self._rearm_at or (source == "cgroup" and not self._crossed_a_mark(rss)):
                    self._rearm(now, rss)  # due, or woken by the rest of the group rather than by us
                self._last_rss = rss
            finally:
                self._reading.release()
        below = self._fast_below
        if below is not None and self._level == Pressure.NORMAL and not self._alert:
            # The common case, kept to one RSS read and a little arithmetic: a tick costs the
            # monitor's wake-up and little else (see benchmarks/bench_governor.py, "overhead").
            rate = growth.rate
            if rss < below and (rss < self._watch or rate <= self._growing):
                wait = next_wait(
                    rss,
                    below,
                    self._budget_int,
                    rate,
                    cap=self.max_interval,
                    floor=self.min_interval,
                    far=self._far,
                )
                self._wait = wait
                if rate <= 0.0 or rss + rate * self._lookahead() < below:
                    self.ticks += 1
                    return Pressure.NORMAL
        if not self._lock.acquire(False):
            return self._level
        try:
            escalation = self._tick_locked(source, now, rss)
        finally:
            self._lock.release()
        if escalation is not None:
            self._deliver(escalation)
        return self._level

    def _crossed_a_mark(self, rss: int) -> bool:
        """Did our own RSS cross (or come within a quarter gap of) a mark since the last tick?"""
        src = self._cgroup_marks
        if src is None:
            return True
        tol = self._mark_gap // 4
        low, high = min(self._last_rss, rss) - tol, max(self._last_rss, rss) + tol
        return any(low <= m <= high for m in src.rss_marks)

    def _rearm(self, now: float, rss: int) -> None:
        """Re-aim the cgroup thresholds if the group's usage drifted from this process's RSS.

        Every ``REARM_SECONDS``, and at once (at most every ``REARM_SOON``) when a threshold woke
        us while our own RSS had not moved: page cache or another process crossed the mark, and
        would again and again (a full page cache sits at the group's limit).
        """
        src = self._cgroup_marks
        if src is None:
            self._rearm_at = float("inf")
            return
        if now < self._rearm_at - REARM_SECONDS + REARM_SOON:
            return
        self._rearm_at = now + REARM_SECONDS
        try:
            src.rearm(rss, self._mark_gap // 4)
        except (OSError, ValueError):
            pass  # the group is going away: the monitor drops the source when its fd fails

    def _lookahead(self) -> float:
        """Seconds until a pass decided now could have acted: two waits (the next one, already paced
        from this reading), one pass, a GIL hand-over."""
        return min(2.0 * self._wait + self._pass_seconds + 0.01, URGENT_SECONDS)

    def _baseline(self, rss: int, now: float) -> int:
        """RSS, or its rolling minimum over ``spike_window`` seconds (Dask's "unmanaged recent")."""
        if self.spike_window is None:
            return rss
        window = self._window
        while window and window[-1][1] >= rss:
            window.pop()
        window.append((now, rss))
        horizon = now - self.spike_window
        drop = 0
        while drop < len(window) - 1 and window[drop][0] < horizon:
            drop += 1
        if drop:
            del window[:drop]
        return window[0][1]

    def _set_level(self, new: Pressure, rss: int, value: int, source: str) -> None:
        old, self._level = self._level, new
        if new < Pressure.CRITICAL:
            self._escalated_at = None
        if new == Pressure.NORMAL:
            self._futile.clear()
        th = self.thresholds
        bound = th.enter(new) if new > old else (th.release(old) if old in th.levels else 0)
        verb = "entered" if new > old else "fell below the release threshold of"
        what = f"{new.name}" if new > old else f"{old.name}"
        self._emit(
            "level",
            rss_before=rss,
            message=f"RSS {format_size(rss)} {verb} {what} ({format_size(bound)}): {old.name} -> {new.name}",
            data={"from": old.name, "to": new.name, "rss": rss, "baseline": value, "source": source},
        )

    def _set_alert(self, urgent: bool, alert: bool) -> None:
        """*urgent*: the hard limit is under ``URGENT_SECONDS`` away. *alert*: urgent, or growing
        above the watch mark; while alert and the monitor runs, the switch interval is low, so the
        monitor's wake-ups get the GIL at once (``gilswitch.py``). Manual ticks leave it alone."""
        self._urgent = urgent
        alert = (alert or urgent) and self._monitor is not None
        if alert == self._alert:
            return
        self._alert = alert
        switch = self._switch
        if switch is not None:
            if alert:
                switch.lower()
            else:
                switch.restore()

    def _pass_level(self, level: Pressure, rss: int, now: float, rate: float) -> Pressure:
        """The level whose passes to run now: the measured one, or higher when growth says so.

        * projected: where RSS will be after the lookahead at the measured rate;
        * urgent (the hard limit is less than ``URGENT_SECONDS`` away): at least HIGH,
          whose strategies free what the program holds (caches), since the cheap ones
          (collect, trim) cannot pay for growth;
        * a level whose pass failed during this growth, while still urgent: the next one up.
        """
        th = self.thresholds
        want = level
        if rate > 0.0:
            projected = th.classify(rss + int(rate * self._lookahead()), Pressure.NORMAL)
            if projected > want:
                want = projected
            if self._urgent and want >= Pressure.MODERATE and want < Pressure.HIGH:
                want = next((lvl for lvl in th.levels if lvl >= Pressure.HIGH), want)
        if self._urgent:
            window = self._cpu.window
            while want in self._futile and now - self._futile[want][0] < window:
                higher = next((lvl for lvl in th.levels if lvl > want), None)
                if higher is None:
                    break
                want = higher
        return want

    def _tick_locked(self, source: str, now: float, rss: int) -> GovernorEvent | None:
        th = self.thresholds
        self.ticks += 1
        value = self._baseline(rss, now)
        level = th.classify(value, self._level, raw=rss)
        if level != self._level:
            self._set_level(level, rss, value, source)
        growth = self._growth
        rate = growth.rate
        limit = self._limit_int
        left = growth.seconds_until(rss, limit)
        self._set_alert(left < URGENT_SECONDS, rss >= self._watch and rate > self._growing)
        self._wait = self._pace(level, rss, rate)
        want = self._pass_level(level, rss, now, rate)
        if want == Pressure.NORMAL:
            self._throttled = False
            return None
        failed = self._futile.get(want)
        if (
            failed is not None
            and left > FUTILE_HORIZON
            and rate > self._growing
            and rss > failed[1] + self._growing
            and now - failed[0] < FUTILE_WAIT * self._cpu.window
        ):
            # Its last pass fell short, and RSS has risen past where that pass started while the
            # program keeps growing, with the limit more than FUTILE_HORIZON away: another pass
            # would spend the CPU budget on live data. Wait for the growth to stop.
            return self._maybe_escalate(now, rss, want, "")
        # CRITICAL may draw on an emergency reserve of one more bucket: the burst doubles, the
        # long-run share (the drain rate) does not change.
        if not self._cpu.available(reserve=1.0 if want == Pressure.CRITICAL else 0.0):
            if not self._throttled:
                self._throttled = True
                self._emit(
                    "throttle",
                    rss_before=rss,
                    message=(
                        f"CPU budget spent ({self._cpu.level:.3f} s of {self._cpu.capacity:.3f} s): "
                        f"next pass in {self._cpu.refill_in():.2f} s"
                    ),
                    data={"cpu": self._cpu.to_dict(), "source": source},
                )
            return self._maybe_escalate(now, rss, want, "the reclamation CPU budget is spent")
        self._throttled = False
        return self._act(want, level, rss, source, rate, left)

    def _pace(self, level: Pressure, rss: int, rate: float) -> float:
        """The next wait (``pacing.py``): toward the next level's entry, or the hard limit at the top."""
        th = self.thresholds
        bound = next((e for lvl, (e, _) in th.levels.items() if lvl > level), self._limit_int)
        cap = self.max_interval if level == Pressure.NORMAL and not self._urgent else self.interval
        return next_wait(rss, bound, th.budget, rate, cap=cap, floor=self.min_interval, far=self._far)

    def _eligible(self, agg: Aggressiveness) -> list[str]:
        return [e.name for e, enabled in self.registry.ordered() if enabled and e.aggressiveness <= agg]

    def _finishers(self) -> frozenset[str]:
        return frozenset(e.name for e, _ in self.registry.ordered() if getattr(e.strategy, "finisher", False))

    def _act(
        self, want: Pressure, level: Pressure, rss: int, source: str, rate: float, left: float
    ) -> GovernorEvent | None:
        from hivemem._engine.engine import run_pass

        th = self.thresholds
        target = th.release(want)
        if want > level:
            # A pass run ahead of its level (projected, urgent) aims below the lowest release
            # threshold by what the growth adds in URGENT_SECONDS: that is the runway it buys.
            lowest = min(r for _, r in th.levels.values())
            target = max(min(lowest, rss - int(max(rate, 0.0) * URGENT_SECONDS)), 0)
        agg = self.level_aggressiveness[want]
        eligible = self._eligible(agg)
        order: list[str] | None = None
        skip: dict[str, str] = {}
        finishers = self._finishers()
        if self.adaptive:
            # Urgent, nothing is skipped: demoted strategies run last, as at CRITICAL.
            emergency = want == Pressure.CRITICAL or self._urgent
            order, skip = self._adapt.plan(eligible, emergency=emergency, finishers=finishers)
        runnable = [n for n in eligible if n not in skip]
        self._call_hooks(want)
        if not runnable:
            if not eligible:
                return self._maybe_escalate(self._clock(), rss, want, "no strategy is allowed at this level")
            return None  # every one is demoted and waits for its probation pass: nothing to pay for
        switch = self._switch
        lowered = switch is not None and want >= Pressure.HIGH and switch.lower()
        t0, c0 = self._clock(), self._cpu_clock()
        try:
            report = run_pass(
                self.registry,
                self._pass_reader,
                target=target,
                aggressiveness=agg,
                level=want.name,
                limit=self._limit_int,
                blocking=False,
                order=order,
                skip=skip,
                explain_miss=False,
                clock=self._clock,
            )
        finally:
            if lowered and switch is not None and not self._alert:
                switch.restore()
        if report is None:  # a user's optimize() is running: never wait behind it
            self.busy += 1
            return None
        now = self._clock()
        seconds = now - t0
        cost = self._cpu_clock() - c0
        self._cpu.charge(cost)
        self.passes += 1
        self.last_pass = report
        self._pass_seconds = 0.7 * self._pass_seconds + 0.3 * seconds
        changes = self._adapt.record(report.steps, finishers=finishers) if self.adaptive else []
        after = report.after.rss if report.after.rss is not None else rss
        before = report.before.rss if report.before.rss is not None else rss
        with self._reading:
            self._growth.restart(now, after)  # the readings around a pass say little about the program
        reached = after <= target
        if reached:
            self._futile.pop(want, None)
        else:
            self._futile[want] = (now, before)  # while growth lasts, another pass here would not pay
        self._emit(
            "act",
            rss_before=report.before.rss,
            rss_after=after,
            steps=report.steps,
            seconds=seconds,
            message=(
                f"target {format_size(target)} ({'reached' if reached else 'not reached'})"
                + (f", run as {want.name} ahead of {level.name}" if want > level else "")
            ),
            data={
                "source": source,
                "target": target,
                "aggressiveness": agg.name,
                "pass_level": want.name,
                "order": [s.name for s in report.steps],
                "demoted": self._adapt.demoted,
                "cpu_seconds": cost,
                "cpu_level": self._cpu.level,
                "rate": rate,
                "seconds_left": left if left != float("inf") else None,
                "urgent": self._urgent,
            },
        )
        for kind, name, message in changes:
            self._emit(kind, message=message, data={"strategy": name})
        # Judge the level again at once: "stop as soon as memory is below the release threshold".
        value = self._baseline(after, now)
        new = th.classify(value, self._level, raw=after)
        if new != self._level:
            self._set_level(new, after, value, source)
        self._wait = self._pace(self._level, after, self._growth.rate)  # from the state after the pass
        if not reached:
            return self._maybe_escalate(now, after, want, "")
        return None

    def _call_hooks(self, level: Pressure) -> None:
        # The `hooks` strategy calls release hooks as part of the pass. A registry
        # without it (a custom one) still gets them through hivemem._reclaim.hooks.run_hooks, if present.
        if "hooks" in self.registry:
            return
        module = sys.modules.get("hivemem._reclaim.hooks")  # not imported: no hook was ever registered
        run_hooks = getattr(module, "run_hooks", None)
        if run_hooks is None:
            return
        try:
            run_hooks(level)
        except Exception:
            import logging

            logging.getLogger("hivemem").exception("hivemem release hooks failed at %s", level.name)

    # ------------------------------------------------------------------ escalation
    def headroom(self, rate: float | None = None) -> int:
        """Bytes below the hard limit at which unfreeable growth escalates (``_growth.headroom``).

        The fixed floor (``headroom=``, 3% of the limit by default) plus what the
        program allocates at *rate* (default: the measured one) during the
        lookahead (two waits, one pass, a GIL hand-over) and the delivery: the
        main thread raises only once it next runs Python (``DELIVERY_SECONDS``).
        """
        from hivemem._measure.growth import headroom

        self.thresholds  # noqa: B018 - resolves the limit
        rate = self._growth.rate if rate is None else rate
        return headroom(self._headroom_floor, rate, self._lookahead() + DELIVERY_SECONDS)

    def _maybe_escalate(self, now: float, rss: int, want: Pressure, why: str) -> GovernorEvent | None:
        """Escalate, at most once per window while it lasts, when the governor can do no more.

        *why* set: CRITICAL with the CPU budget spent, or nothing allowed to run.
        *why* empty: the growth rule. The top level's pass ran and could not keep
        up, and RSS is within :meth:`headroom` of the hard limit: the kernel would
        act before another pass could, so the policy runs now, while it still can.
        """
        th = self.thresholds
        limit = self._limit_int
        room = 0
        if why:
            if self._level != Pressure.CRITICAL:
                return None
        else:
            top = max(th.levels)
            failed = self._futile.get(top)
            if failed is None or now - failed[0] >= self._cpu.window or self._growth.rate <= self._growing:
                return None
            room = self.headroom()
            if rss < limit - room:
                return None
            rate = self._growth.rate
            why = (
                f"it grows ({format_size(max(rate, 0.0))}/s) and the {top.name} pass could not free it: "
                f"{format_size(max(limit - rss, 0))} left below the limit, headroom {format_size(room)}"
            )
        if self._escalated_at is not None and now - self._escalated_at < self._cpu.window:
            return None  # once per episode and window: never a storm
        self._escalated_at = now
        return self._emit(
            "escalate",
            rss_before=rss,
            message=(
                f"memory stays {self._level.name.upper()} (RSS {format_size(rss)}, limit "
                f"{format_size(limit)}) and {why}: escalation={self.escalation!r}"
            ),
            data={
                "policy": self.escalation,
                "reason": why,
                "rss": rss,
                "limit": limit,
                "headroom": room,
                "rate": self._growth.rate,
                "cpu": self._cpu.to_dict(),
            },
        )

    def _deliver(self, event: GovernorEvent) -> None:
        from hivemem._errors import HivememWarning, MemoryLimitExceeded

        text = f"hivemem: {event.message}"
        if self.escalation == "warn":
            import warnings

            try:
                warnings.warn(HivememWarning(text), stacklevel=3)
            except Exception:  # warnings turned into errors in a background thread
                import logging

                logging.getLogger("hivemem").warning("%s", text)
        elif self.escalation == "callback":
            callback = self.on_escalate  # set: escalation="callback" requires it
            try:
                if callback is not None:
                    callback(event)
            except Exception:
                import logging

                logging.getLogger("hivemem").exception("hivemem on_escalate callback failed")
        elif self.escalation == "raise":
            exc = MemoryLimitExceeded(text, usage=event.rss_before, limit=self._limit_bytes())
            vars(exc).update(report=self.last_pass, event=event)  # extra attributes of this raise only
            if _thread.get_ident() == main_ident():
                raise exc
            raise_in_main(exc)
        else:  # exit
            write_exit_report(self, event)
            _exit(self.exit_code)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> MemoryGovernor:
        """Start the monitor thread (no-op when running); returns the governor."""
        if self.running:
            return self
        self.thresholds  # noqa: B018 - resolve now: an impossible setting must not surface in the thread
        self._warm_up()
        triggers = self._open_notifications() + self._open_triggers()
        self._rearm_at = self._clock() + REARM_SECONDS if self._cgroup_marks is not None else float("inf")
        self._far = 0.0 if self._cgroup_marks is not None else FAR
        if self.escalation == "raise":
            install_sigint_bridge()
        self._triggers = triggers
        from hivemem._governor.monitor import Monitor

        self._growth.reset()
        self._wait = self.interval
        self._monitor = Monitor(self._monitor_tick, self.interval, triggers, self._after_fork_child)
        woken_by = [t.name for t in triggers]
        notes = "; ".join(n for n in (self.notify_note, self.psi_note) if n)
        self._emit(
            "start",
            message=(
                f"budget {format_size(self.budget)}, "
                f"polls paced {self.min_interval:g}-{self.max_interval:g} s"
                + (f", woken by {', '.join(woken_by)}" if woken_by else ", polling only")
                + (f" ({notes})" if notes else "")
            ),
            data={
                "thresholds": self.thresholds.to_dict(),
                "interval": self.interval,
                "sources": self.sources,
                "psi": [t.to_dict() for t in triggers if t.name == "psi"],
                "psi_note": self.psi_note,
                "notify_note": self.notify_note,
                "escalation": self.escalation,
            },
        )
        self._monitor.start()
        return self

    def _warm_up(self) -> None:
        """Do at start what the first pass would otherwise do with memory short.

        Imports, the registry's first load (entry points: many small file reads)
        and the first allocator probe all read files, and every read releases the
        GIL, which a busy main thread turns into a switch-interval wait (see
        docs/governor.md, "Passes under a busy GIL"). A strategy may have an
        optional ``prepare()`` that loads what its first run would load.
        """
        from hivemem._engine import engine as _engine  # noqa: F401
        from hivemem._engine.credit import probe_for

        for entry, _ in self.registry.ordered():
            prepare = getattr(entry.strategy, "prepare", None)
            if callable(prepare):  # optional: load now what the strategy's first run would load
                try:
                    prepare()
                except Exception:
                    import logging

                    logging.getLogger("hivemem").warning(
                        "hivemem strategy %r failed to prepare", entry.name, exc_info=True
                    )
        self._finishers()
        self._pass_reader.usage()
        probe = probe_for(self._pass_reader)
        if probe is not None:
            probe()

    def _marks(self) -> list[int]:
        """RSS bounds worth a wake-up: every entry threshold and the escalation floor below the limit,
        and from half the budget to the budget a mark every ``_mark_gap`` (5% of the budget, at
        least 4 MiB): at most a dozen, which give a burst its growth rate on the way up."""
        th = self.thresholds
        must = {e for e, _ in th.levels.values()} | {self._limit_int - self._headroom_floor}
        gap = self._mark_gap
        steps = range(th.budget // 2, min(th.budget, self._limit_int) + 1, gap)
        extra = [m for m in steps if all(abs(m - k) >= gap for k in must)]
        return sorted(m for m in must | set(extra) if 0 < m <= self._limit_int)

    def _open_notifications(self) -> list[WakeSource]:
        """Arm the kernel's memory notifications (``notify.py``); say why where none can be armed."""
        self.notify_note = ""
        if self.notify is False or not self._own_process:
            if self.notify is True:
                from hivemem._errors import Unavailable

                raise Unavailable("notify=True needs Linux and the default reader (it watches this process)")
            if self.notify is not False:
                self.notify_note = "no kernel notifications: the reader does not read this process"
            return []
        from hivemem._errors import Unavailable
        from hivemem._governor.notify import open_events, open_thresholds
        from hivemem._measure.limits import cgroup_dirs

        dirs = cgroup_dirs()
        reasons: list[str] = []
        found: list[WakeSource] = []
        try:
            marks = open_thresholds(dirs.get("v1"), self._marks(), self._read_rss())
            self._cgroup_marks = marks
            found.append(marks)
        except Unavailable as exc:
            reasons.append(str(exc))
        try:
            found.append(open_events(dirs.get("v2")))
        except Unavailable as exc:
            reasons.append(str(exc))
        if not found:
            why = "; ".join(reasons)
            if self.notify is True:
                raise Unavailable(f"notify=True but no kernel memory notification could be armed: {why}")
            self.notify_note = f"no kernel notifications ({why}): paced polling"
        return found

    def _open_triggers(self) -> list[WakeSource]:
        self.psi_note = ""
        if self.psi is False:
            return []
        from hivemem._errors import Unavailable
        from hivemem._measure.psi import open_trigger, pressure_files

        files = pressure_files() if sys.platform.startswith("linux") else []
        reasons: list[str] = []
        for path in files:
            try:
                trig = open_trigger(path, self.psi_trigger)
            except Unavailable as exc:
                reasons.append(str(exc))
                continue
            self.psi_note = trig.note
            return [trig]
        why = "; ".join(reasons) or f"no memory pressure file (PSI needs Linux >= 4.20; {sys.platform})"
        if self.psi is True:
            raise Unavailable(f"psi=True but no PSI trigger could be armed: {why}")
        self.psi_note = f"polling only: {why}"
        return []

    @property
    def sources(self) -> list[dict[str, object]]:
        """What wakes the monitor: each armed kernel source, then the paced polling that is always there."""
        out = [dict(t.to_dict(), kind=_SOURCE_KINDS.get(t.name, t.name)) for t in self._triggers]
        out.append(
            {
                "kind": "pacing",
                "min_interval": self.min_interval,
                "interval": self.interval,
                "max_interval": self.max_interval,
                "wait": self._wait,
            }
        )
        return out

    def status(self) -> dict[str, object]:
        """The live state, JSON-safe: level, RSS, growth, next wait, sources, headroom, CPU budget."""
        rss = self._read_rss()
        rate = self._growth.rate
        resolved = self._thresholds is not None
        left = self._growth.seconds_until(rss, self._limit_int) if resolved else float("inf")
        return {
            "running": self.running,
            "level": self._level.name,
            "rss": rss,
            "budget": self._budget_int if resolved else None,
            "limit": self._limit_int if resolved else None,
            "rate": rate,
            "seconds_left": None if left == float("inf") else left,
            "wait": self._wait,
            "urgent": self._urgent,
            "alert": self._alert,
            "headroom": self.headroom() if resolved else None,
            "switch_interval": self._switch.to_dict() if self._switch is not None else None,
            "sources": self.sources,
            "notes": [n for n in (self.notify_note, self.psi_note) if n],
            "wakeups": dict(self._monitor.wakeups) if self._monitor is not None else {},
            "cpu": self._cpu.to_dict(),
            "ticks": self.ticks,
            "passes": self.passes,
        }

    def _monitor_tick(self, source: str) -> float:
        self.tick(source)
        return self._wait

    def stop(self) -> bool:
        """Stop the monitor; returns within one interval. True when the thread has ended.

        A pass already running finishes in the (daemon) thread; no new one starts.
        """
        monitor, self._monitor = self._monitor, None
        if monitor is None:
            return True
        ended = monitor.stop(self.interval)
        self._triggers = []
        self._cgroup_marks, self._rearm_at, self._far = None, float("inf"), FAR
        self._set_alert(False, False)
        if self.escalation == "raise":
            uninstall_sigint_bridge()
        self._emit("stop", message="" if ended else "a pass is finishing in the background")
        return ended

    def _after_fork_child(self) -> None:
        self._monitor = None
        self._triggers = []
        self._cgroup_marks, self._rearm_at, self._far = None, float("inf"), FAR
        self._lock = _thread.allocate_lock()
        self._reading = _thread.allocate_lock()
        self._urgent = self._alert = False  # _gilswitch restores the interval in the child
        if self.after_fork == "restart":
            self.start()

    def __enter__(self) -> MemoryGovernor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        target = format_size(self.target) if self.target is not None else None
        try:
            rss = format_size(self.reader.rss())
        except Exception as exc:
            rss = f"<unreadable: {exc}>"
        extra = ""
        if self._configured or self._monitor is not None:
            budget = format_size(self._thresholds.budget) if self._thresholds is not None else None
            extra = f", budget={budget!r}, level={self._level.name!r}, running={self.running}"
        return (
            f"MemoryGovernor(target={target!r}, rss={rss!r}, strategies={len(self.registry)}, "
            f"aggressiveness={self.aggressiveness.name!r}{extra})"
        )

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(
            f"<tr><td>{escape(e.kind)}</td><td>{escape(e.level)}</td><td>{escape(e.describe())}</td></tr>"
            for e in self._events[-10:]
        )
        return (
            f"<div class='hivemem-governor'><p>{escape(repr(self))}</p><table><thead><tr><th>event</th>"
            f"<th>level</th><th>what</th></tr></thead><tbody>{rows}</tbody></table></div>"
        )


# ---------------------------------------------------------------------- escalation plumbing


def _exit(code: int) -> None:  # a seam for tests
    os._exit(code)


# ---------------------------------------------------------------------- process-wide forms


def default_governor() -> MemoryGovernor:
    """The process-wide governor behind :func:`hivemem.optimize` (kept in ``active.py``)."""
    gov = active.default()
    if gov is None:
        gov = MemoryGovernor()
        active.set_default(gov)
    return gov


def govern(budget: object = None, **options: Unpack[GovernorOptions]) -> MemoryGovernor:
    """Start the process-wide background governor and return it: ``hivemem.govern("2GB")``.

    Takes the same options as :class:`hivemem.MemoryGovernor`. A governor
    started earlier by ``govern()`` is stopped first, so there is at most one.
    """
    gov = MemoryGovernor(**options) if budget is None else MemoryGovernor(budget=budget, **options)
    previous = active.swap_governed(gov)
    if previous is not None:
        previous.stop()
    return gov.start()


def optimize(
    target_mb: float | None = None,
    *,
    target: int | str | None = None,
    strategies: Iterable[str] | None = None,
    aggressiveness: object = None,
    dry_run: bool = False,
    on_step_start: Callable[[str], object] | None = None,
    on_step: Callable[[StepResult], object] | None = None,
) -> OptimizationReport:
    """Bring this process's memory down toward a target, measuring every step.

    ``hivemem.optimize(target_mb=90)`` climbs: it runs the strategies allowed
    at ``"cheap"``, then those added at ``"moderate"``, then at
    ``"aggressive"``, reading RSS before and after each, and stops as soon as
    RSS is at or below the target. *aggressiveness* is the ceiling (default
    ``"aggressive"``: the aggressive strategies act only on what the program
    registered for them: ``compactable`` containers, ``allow_unload`` modules,
    allowlisted lru_caches). Without a target one pass runs every strategy
    allowed at *aggressiveness* (default ``"moderate"``). See docs/optimize.md.

    A strategy that raises is recorded in the report; the pass goes on.
    Concurrent calls from several threads are serialized.
    Returns an :class:`hivemem.OptimizationReport`.
    """
    return default_governor().optimize(
        target_mb,
        target=target,
        strategies=strategies,
        aggressiveness=aggressiveness,
        dry_run=dry_run,
        on_step_start=on_step_start,
        on_step=on_step,
    )
