"""The MemoryGovernor, ``hivemem.optimize()`` and ``hivemem.govern()``.

The governor measures memory through a reader (``/proc`` by default, any
object with ``rss()`` and ``usage()`` in tests) and runs the registry's
strategies through the engine. It knows strategies only by the protocol.

Used once (``optimize()``) it runs a single measured pass. Started
(``start()``, ``with governor:``, ``hivemem.govern()``) a background
thread ticks every *interval* (and on PSI events): each tick reads RSS,
moves between pressure levels with hysteresis (``_thresholds.py``), and at
MODERATE or above runs one pass at that level's aggressiveness toward the
level's release threshold, within a CPU budget (``_cpubudget.py``), in an
adaptive order (``_adaptive.py``), recording events (``_events.py``).

This module is loaded by ``hivemem.optimize()``, so it imports nothing heavy
at module level: ``threading``, ``logging``, ``signal`` and ``warnings`` are
imported where they are used.
"""

from __future__ import annotations

import _thread
import os
import sys
import time

from hivemem._errors import InvalidArgument, InvalidSize
from hivemem._levels import Aggressiveness, Pressure
from hivemem._sizes import format_size, mib_to_bytes, parse_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from hivemem._adaptive import AdaptiveOrder
    from hivemem._cpubudget import CpuBudget
    from hivemem._events import GovernorEvent
    from hivemem._limits import MemoryLimit
    from hivemem._monitor import Monitor
    from hivemem._psi import PsiTrigger
    from hivemem._registry import Registry
    from hivemem._report import OptimizationReport, StepResult
    from hivemem._thresholds import Thresholds

__all__ = ["MemoryGovernor", "govern", "optimize"]

ESCALATIONS = ("callback", "exit", "raise", "warn")
AFTER_FORK = ("restart", "stop")

#: Aggressiveness of the passes run at each pressure level (see docs/governor.md).
DEFAULT_LEVEL_AGGRESSIVENESS: dict[Pressure, Aggressiveness] = {
    Pressure.MODERATE: Aggressiveness.CHEAP,
    Pressure.HIGH: Aggressiveness.MODERATE,
    Pressure.CRITICAL: Aggressiveness.AGGRESSIVE,
}


_LINUX = sys.platform.startswith("linux")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_statm_fd = -1


def _statm_rss() -> int:
    """RSS from ``/proc/self/statm`` with one ``pread``: the monitor's per-tick read.

    ``hivemem.rss()`` does the same but also checks the pid on every call (a
    system call); here a fork hook closes the descriptor instead. Measured on
    a 2-core VM: ~20 µs of process CPU per cold read against ~60-140 µs.
    """
    global _statm_fd
    fd = _statm_fd
    if fd < 0:
        fd = _statm_fd = os.open("/proc/self/statm", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    return int(os.pread(fd, 64, 0).split()[1]) * _PAGE


def _close_statm() -> None:
    global _statm_fd
    if _statm_fd >= 0:
        try:
            os.close(_statm_fd)  # in the child it names the parent's /proc entry
        except OSError:
            pass
    _statm_fd = -1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_statm)


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


def _check_reader(reader: object) -> object:
    if not (callable(getattr(reader, "rss", None)) and callable(getattr(reader, "usage", None))):
        raise InvalidArgument(
            f"reader {reader!r} must have rss() -> int and usage() -> MemoryUsage methods "
            "(see hivemem.ProcReader and hivemem.testing.FakeReader)"
        )
    return reader


def _seconds(name: str, value: object, *, allow_none: bool = False) -> float | None:
    from hivemem._validate import seconds  # finite and at most a day: a wait the thread can make

    return seconds(name, value, allow_none=allow_none)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgument(f"{name}={value!r}: expected a whole number >= 1")
    return value


def _names(name: str, value: object) -> frozenset[str]:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise InvalidArgument(f"{name}={value!r}: expected a list of strategy names")
    names = frozenset(value)
    if not all(isinstance(n, str) for n in names):
        raise InvalidArgument(f"{name}={value!r}: expected a list of strategy names")
    return names


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidArgument(f"{name}={value!r}: expected one of {', '.join(map(repr, choices))}")
    return str(value)


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
    """

    __module__ = "hivemem"

    def __init__(
        self,
        target: int | str | None = None,
        *,
        registry: Registry | None = None,
        reader: object = None,
        aggressiveness: object = None,
        budget: object = None,
        thresholds: dict[object, object] | None = None,
        limit: object = None,
        interval: float = 0.1,
        spike_window: float | None = None,
        cpu_budget: float = 0.05,
        cpu_window: float = 10.0,
        escalation: str = "warn",
        on_escalate: Callable[[GovernorEvent], object] | None = None,
        exit_code: int = 1,
        psi: object = "auto",
        psi_trigger: object = "some 150000 1000000",
        after_fork: str = "stop",
        adaptive: bool = True,
        demote_after: int = 3,
        retry_every: int = 8,
        min_yield: int | str = "256KiB",
        never_demote: Iterable[str] = ("hooks",),
        level_aggressiveness: dict[object, object] | None = None,
        max_events: int = 1000,
        clock: Callable[[], float] | None = None,
        cpu_clock: Callable[[], float] | None = None,
    ) -> None:
        from hivemem._measure import ProcReader
        from hivemem._registry import Registry, default_registry

        if registry is not None and not isinstance(registry, Registry):
            raise InvalidArgument(f"registry must be a hivemem.Registry, got {registry!r}")
        self.target: int | None = None if target is None else parse_size(target)
        self.registry: Registry = default_registry if registry is None else registry
        self.reader: object = ProcReader() if reader is None else _check_reader(reader)
        # optimize()'s ceiling; None: aggressive with a target, moderate without (docs/optimize.md)
        self._ceiling_given = aggressiveness is not None
        self.aggressiveness: Aggressiveness = Aggressiveness.parse(
            "moderate" if aggressiveness is None else aggressiveness
        )
        self.last_report: OptimizationReport | None = None

        # ----- background options: all validated now, nothing half-applied
        self.interval: float = _seconds("interval", interval)  # type: ignore[assignment]
        self.spike_window: float | None = _seconds("spike_window", spike_window, allow_none=True)
        self.escalation = _choice("escalation", escalation, ESCALATIONS)
        if escalation == "callback" and not callable(on_escalate):
            raise InvalidArgument("escalation='callback' needs on_escalate=<callable(event)>")
        if on_escalate is not None and not callable(on_escalate):
            raise InvalidArgument(f"on_escalate={on_escalate!r} is not callable")
        self.on_escalate = on_escalate
        if isinstance(exit_code, bool) or not isinstance(exit_code, int) or not 0 <= exit_code <= 255:
            raise InvalidArgument(f"exit_code={exit_code!r}: expected an int in 0..255")
        self.exit_code = exit_code
        if not (isinstance(psi, bool) or psi == "auto"):  # 0 and 1 are not switches
            raise InvalidArgument(f"psi={psi!r}: expected 'auto', True or False")
        self.psi = psi
        from hivemem._psi import parse_trigger

        self.psi_trigger = parse_trigger(psi_trigger)
        self.after_fork = _choice("after_fork", after_fork, AFTER_FORK)
        if not isinstance(adaptive, bool):
            raise InvalidArgument(f"adaptive={adaptive!r}: expected True or False")
        self.adaptive = adaptive
        self.max_events = _count("max_events", max_events)
        self.level_aggressiveness = dict(DEFAULT_LEVEL_AGGRESSIVENESS)
        if level_aggressiveness is not None and not isinstance(level_aggressiveness, dict):
            raise InvalidArgument(f"level_aggressiveness={level_aggressiveness!r}: expected a dict")
        for key, value in (level_aggressiveness or {}).items():
            lvl = Pressure.parse(key)
            if lvl == Pressure.NORMAL:
                raise InvalidArgument("level_aggressiveness: nothing runs at NORMAL")
            self.level_aggressiveness[lvl] = Aggressiveness.parse(value)
        if clock is not None and not callable(clock):
            raise InvalidArgument(f"clock={clock!r} is not callable")
        self._clock: Callable[[], float] = time.monotonic if clock is None else clock
        if cpu_clock is not None and not callable(cpu_clock):
            raise InvalidArgument(f"cpu_clock={cpu_clock!r} is not callable")
        if cpu_clock is None:
            cpu_clock = time.thread_time if clock is None else clock
        self._cpu_clock: Callable[[], float] = cpu_clock

        from hivemem._adaptive import AdaptiveOrder
        from hivemem._cpubudget import CpuBudget

        self._cpu: CpuBudget = CpuBudget(cpu_budget, cpu_window, clock=self._clock)
        self._adapt: AdaptiveOrder = AdaptiveOrder(
            demote_after=_count("demote_after", demote_after),
            retry_every=_count("retry_every", retry_every),
            min_yield=parse_size(min_yield),
            never_demote=_names("never_demote", never_demote),
        )

        self._budget_spec = budget
        self._thresholds_spec = thresholds
        self._limit_spec = limit
        self._thresholds: Thresholds | None = None
        self._fast_below: int | None = None
        # ProcReader reads /proc/self/statm: the hot path does the same with one pread (see _statm_rss).
        self._read_rss: Callable[[], int] = (
            _statm_rss if type(self.reader) is ProcReader and _LINUX else self.reader.rss  # type: ignore[attr-defined]
        )
        self._limit: MemoryLimit | int | None = None
        self._configured = budget is not None or thresholds is not None or limit is not None
        if self._configured:
            self._resolve()  # impossible settings fail here, at construction

        # ----- state
        self._level = Pressure.NORMAL
        self._lock = _thread.allocate_lock()  # one tick at a time
        self._events: list[GovernorEvent] = []
        self._subscribers: list[Callable[[GovernorEvent], object]] = []
        self._window: list[tuple[float, int]] = []  # rolling-minimum candidates (time, rss)
        self._throttled = False
        self._escalated_at: float | None = None
        self._monitor: Monitor | None = None
        self._triggers: list[PsiTrigger] = []
        self.psi_note = ""
        self.ticks = 0
        self.passes = 0
        self.busy = 0  # ticks whose pass was skipped because another pass was running

    # ------------------------------------------------------------------ configuration
    def _resolve(self) -> Thresholds:
        from hivemem._thresholds import Thresholds, resolve_amount

        spec = self._limit_spec
        limit: MemoryLimit | int
        if spec is None:
            from hivemem._limits import memory_limit

            limit = memory_limit()
        elif type(spec).__name__ == "MemoryLimit":
            limit = spec  # type: ignore[assignment]
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
        from hivemem._engine import run_pass

        goal = _resolve_target(target_mb, target)
        if goal is None:
            goal = self.target
        if aggressiveness is not None:
            level = Aggressiveness.parse(aggressiveness)
        elif self._ceiling_given:
            level = self.aggressiveness
        else:
            level = Aggressiveness.AGGRESSIVE if goal is not None else Aggressiveness.MODERATE
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

    def _limit_bytes(self) -> int | None:
        if self._limit is not None:
            return int(self._limit)
        from hivemem._limits import memory_limit

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

    def _emit(self, kind: str, **fields: object) -> GovernorEvent:
        from hivemem._events import GovernorEvent

        event = GovernorEvent(self._clock(), kind, self._level.name, **fields)  # type: ignore[arg-type]
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

        The monitor thread calls this every interval; tests call it directly
        with a fake clock and reader. A tick that finds another tick running
        returns at once. With ``escalation="raise"`` a tick on the main
        thread raises :class:`hivemem.MemoryLimitExceeded` itself.
        """
        below = self._fast_below
        if below is not None and self._level == Pressure.NORMAL:
            # The common case, kept to one RSS read and one comparison: a tick costs the monitor's
            # wake-up and little else (see benchmarks/bench_governor.py, "overhead").
            if self._read_rss() < below:
                self.ticks += 1
                return Pressure.NORMAL
        if not self._lock.acquire(False):
            return self._level
        try:
            escalation = self._tick_locked(source)
        finally:
            self._lock.release()
        if escalation is not None:
            self._deliver(escalation)
        return self._level

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

    def _tick_locked(self, source: str) -> GovernorEvent | None:
        th = self.thresholds
        self.ticks += 1
        now = self._clock()
        read_rss: Callable[[], int] = self.reader.rss  # type: ignore[attr-defined]
        rss = read_rss()
        value = self._baseline(rss, now)
        level = th.classify(value, self._level, raw=rss)
        if level != self._level:
            self._set_level(level, rss, value, source)
        if level == Pressure.NORMAL:
            self._throttled = False
            return None
        # CRITICAL may draw on an emergency reserve of one more bucket: the burst doubles, the
        # long-run share (the drain rate) does not change.
        if not self._cpu.available(reserve=1.0 if level == Pressure.CRITICAL else 0.0):
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
            return self._maybe_escalate(now, rss, "the reclamation CPU budget is spent")
        self._throttled = False
        return self._act(level, rss, source)

    def _eligible(self, agg: Aggressiveness) -> list[str]:
        return [e.name for e, enabled in self.registry.ordered() if enabled and e.aggressiveness <= agg]

    def _act(self, level: Pressure, rss: int, source: str) -> GovernorEvent | None:
        from hivemem._engine import run_pass

        th = self.thresholds
        target = th.release(level)
        agg = self.level_aggressiveness[level]
        eligible = self._eligible(agg)
        order: list[str] | None = None
        skip: dict[str, str] = {}
        if self.adaptive:
            order, skip = self._adapt.plan(eligible, emergency=level == Pressure.CRITICAL)
        runnable = [n for n in eligible if n not in skip]
        self._call_hooks(level)
        if not runnable:
            if not eligible:
                return self._maybe_escalate(self._clock(), rss, "no strategy is allowed at this level")
            return None  # every one is demoted and waits for its probation pass: nothing to pay for
        t0, c0 = self._clock(), self._cpu_clock()
        report = run_pass(
            self.registry,
            self.reader,
            target=target,
            aggressiveness=agg,
            level=level.name,
            limit=self._limit_bytes(),
            blocking=False,
            order=order,
            skip=skip,
            explain_miss=False,
            clock=self._clock,
        )
        if report is None:  # a user's optimize() is running: never wait behind it
            self.busy += 1
            return None
        seconds = self._clock() - t0
        cost = self._cpu_clock() - c0
        self._cpu.charge(cost)
        self.passes += 1
        changes = self._adapt.record(report.steps) if self.adaptive else []
        after = report.after.rss if report.after.rss is not None else rss
        self._emit(
            "act",
            rss_before=report.before.rss,
            rss_after=after,
            steps=report.steps,
            seconds=seconds,
            message=f"target {format_size(target)} ({'reached' if after <= target else 'not reached'})",
            data={
                "source": source,
                "target": target,
                "aggressiveness": agg.name,
                "order": [s.name for s in report.steps],
                "demoted": self._adapt.demoted,
                "cpu_seconds": cost,
                "cpu_level": self._cpu.level,
            },
        )
        for kind, name, message in changes:
            self._emit(kind, message=message, data={"strategy": name})
        # Judge the level again at once: "stop as soon as memory is below the release threshold".
        value = self._baseline(after, self._clock())
        new = th.classify(value, self._level, raw=after)
        if new != self._level:
            self._set_level(new, after, value, source)
        return None

    def _call_hooks(self, level: Pressure) -> None:
        # The `hooks` strategy (issue 4) calls release hooks as part of the pass. A registry
        # without it (a custom one) still gets them through hivemem._hooks.run_hooks, if present.
        if "hooks" in self.registry:
            return
        module = sys.modules.get("hivemem._hooks")  # not imported: no hook was ever registered
        run_hooks = getattr(module, "run_hooks", None)
        if run_hooks is None:
            return
        try:
            run_hooks(level)
        except Exception:
            import logging

            logging.getLogger("hivemem").exception("hivemem release hooks failed at %s", level.name)

    # ------------------------------------------------------------------ escalation
    def _maybe_escalate(self, now: float, rss: int, why: str) -> GovernorEvent | None:
        if self._level != Pressure.CRITICAL:
            return None
        if self._escalated_at is not None and now - self._escalated_at < self._cpu.window:
            return None  # once per CRITICAL episode and window: never a storm
        self._escalated_at = now
        th = self.thresholds
        return self._emit(
            "escalate",
            rss_before=rss,
            message=(
                f"memory stays CRITICAL (RSS {format_size(rss)}, critical at "
                f"{format_size(th.enter(Pressure.CRITICAL))}) and {why}: escalation={self.escalation!r}"
            ),
            data={
                "policy": self.escalation,
                "reason": why,
                "rss": rss,
                "limit": self._limit_bytes(),
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
            try:
                self.on_escalate(event)  # type: ignore[misc]
            except Exception:
                import logging

                logging.getLogger("hivemem").exception("hivemem on_escalate callback failed")
        elif self.escalation == "raise":
            exc = MemoryLimitExceeded(text, usage=event.rss_before, limit=self._limit_bytes())
            if _thread.get_ident() == _main_ident():
                raise exc
            _raise_in_main(exc)
        else:  # exit
            _write_exit_report(self, event)
            _exit(self.exit_code)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> MemoryGovernor:
        """Start the monitor thread (no-op when running); returns the governor."""
        if self.running:
            return self
        self.thresholds  # noqa: B018 - resolve now: an impossible setting must not surface in the thread
        if self.escalation == "raise":
            _install_sigint_bridge()
        self._triggers = self._open_triggers()
        from hivemem._monitor import Monitor

        self._monitor = Monitor(self._monitor_tick, self.interval, self._triggers, self._after_fork_child)
        self._emit(
            "start",
            message=(
                f"budget {format_size(self.budget)}, every {self.interval:g} s"
                + (f", PSI on {', '.join(t.path for t in self._triggers)}" if self._triggers else "")
                + (f" ({self.psi_note})" if self.psi_note else "")
            ),
            data={
                "thresholds": self.thresholds.to_dict(),
                "interval": self.interval,
                "psi": [t.to_dict() for t in self._triggers],
                "psi_note": self.psi_note,
                "escalation": self.escalation,
            },
        )
        self._monitor.start()
        return self

    def _open_triggers(self) -> list[PsiTrigger]:
        self.psi_note = ""
        if self.psi is False:
            return []
        from hivemem._errors import Unavailable
        from hivemem._psi import open_trigger, pressure_files

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

    def _monitor_tick(self, source: str) -> None:
        self.tick(source)

    def stop(self) -> bool:
        """Stop the monitor; returns within one interval. True when the thread has ended.

        A pass already running finishes in the (daemon) thread; no new one starts.
        """
        monitor, self._monitor = self._monitor, None
        if monitor is None:
            return True
        ended = monitor.stop(self.interval)
        self._triggers = []
        if self.escalation == "raise":
            _uninstall_sigint_bridge()
        self._emit("stop", message="" if ended else "a pass is finishing in the background")
        return ended

    def _after_fork_child(self) -> None:
        self._monitor = None
        self._triggers = []
        self._lock = _thread.allocate_lock()
        if self.after_fork == "restart":
            self.start()

    def __enter__(self) -> MemoryGovernor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        target = format_size(self.target) if self.target is not None else None
        try:
            rss = format_size(self.reader.rss())  # type: ignore[attr-defined]
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


def _main_ident() -> int:
    threading = sys.modules.get("threading")
    if threading is None:  # no thread was ever started through threading: we are the main thread
        return _thread.get_ident()
    return threading.main_thread().ident  # type: ignore[no-any-return]


_pending: list[BaseException] = []
_previous_handler: object = None
_bridge_users = 0


def _sigint_bridge(signum: int, frame: object) -> None:
    """SIGINT handler while escalation='raise' is active: raise a pending hivemem error, else defer."""
    if _pending:
        raise _pending.pop()
    import signal

    prev = _previous_handler
    if callable(prev):
        prev(signum, frame)
    elif prev == signal.SIG_IGN:
        return
    else:
        raise KeyboardInterrupt


def _install_sigint_bridge() -> None:
    global _previous_handler, _bridge_users
    import signal

    if _thread.get_ident() != _main_ident():
        raise InvalidArgument(
            "escalation='raise' installs a SIGINT handler to raise MemoryLimitExceeded in the main "
            "thread, so start() must be called from the main thread"
        )
    current = signal.getsignal(signal.SIGINT)
    if current is not _sigint_bridge:
        _previous_handler = current
        signal.signal(signal.SIGINT, _sigint_bridge)
    _bridge_users += 1


def _uninstall_sigint_bridge() -> None:
    global _bridge_users
    import signal

    _bridge_users = max(_bridge_users - 1, 0)
    if _bridge_users or _thread.get_ident() != _main_ident():
        return
    if signal.getsignal(signal.SIGINT) is _sigint_bridge:
        signal.signal(signal.SIGINT, _previous_handler)  # type: ignore[arg-type]


def _raise_in_main(exc: BaseException) -> None:
    """Make the main thread raise *exc* at its next bytecode boundary (a safe point).

    A real SIGINT is sent to the main thread only (``pthread_kill``), so a
    blocking call there returns with EINTR and the bridge handler raises.
    If the bridge is not installed any more, the error is logged instead.
    """
    import signal

    if signal.getsignal(signal.SIGINT) is not _sigint_bridge:
        import logging

        logging.getLogger("hivemem").error(
            "hivemem could not raise in the main thread (its SIGINT handler was replaced): %s", exc
        )
        return
    _pending.append(exc)
    try:
        signal.pthread_kill(_main_ident(), signal.SIGINT)
    except (AttributeError, OSError):  # pragma: no cover - no pthread_kill
        _thread.interrupt_main()


def _write_exit_report(gov: MemoryGovernor, event: GovernorEvent) -> None:
    """Fil-style last words on stderr: what memory was, what was tried, where it was allocated."""
    lines = [
        "",
        "=" * 72,
        "hivemem: out of memory budget, exiting (escalation='exit')",
        event.message,
    ]
    try:
        th = gov.thresholds
        lines.append(f"budget {format_size(th.budget)}; limit {format_size(gov._limit_bytes())}")
        for lvl, (enter, release) in th.levels.items():
            lines.append(
                f"  {lvl.name:<9} enter {format_size(enter):>11}  release {format_size(release):>11}"
            )
        usage = gov.reader.usage()  # type: ignore[attr-defined]
        lines.append(f"memory now: {usage!r}")
        cpu = gov._cpu
        lines.append(
            f"reclamation CPU budget: {cpu.share:.0%} of wall time over {cpu.window:g} s; "
            f"{cpu.spent_total:.3f} s spent in {gov.passes} passes"
        )
        lines.append("strategies (runs, demoted, bytes/s):")
        for name, stats in gov.strategy_stats.items():
            lines.append(f"  {name}: {stats}")
        lines.append("last events:")
        lines.extend(f"  {e.describe()}" for e in gov.events[-10:])
        import tracemalloc

        if tracemalloc.is_tracing():
            lines.append("largest allocation sites (tracemalloc):")
            for stat in tracemalloc.take_snapshot().statistics("lineno")[:10]:
                lines.append(f"  {stat}")
        else:
            lines.append("start tracemalloc (PYTHONTRACEMALLOC=1) to see where memory was allocated")
    except Exception as exc:  # the report must not stop the exit
        lines.append(f"(report incomplete: {type(exc).__name__}: {exc})")
    lines.append("=" * 72)
    try:
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()
    except Exception:
        pass


# ---------------------------------------------------------------------- process-wide forms

_default: MemoryGovernor | None = None
_governed: MemoryGovernor | None = None


def default_governor() -> MemoryGovernor:
    """The process-wide governor behind :func:`hivemem.optimize`."""
    global _default
    if _default is None:
        _default = MemoryGovernor()
    return _default


def govern(budget: object = None, **options: object) -> MemoryGovernor:
    """Start the process-wide background governor and return it: ``hivemem.govern("2GB")``.

    Takes the same options as :class:`hivemem.MemoryGovernor`. A governor
    started earlier by ``govern()`` is stopped first, so there is at most one.
    """
    global _governed
    gov = MemoryGovernor(budget=budget, **options)  # type: ignore[arg-type]
    previous, _governed = _governed, gov
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
