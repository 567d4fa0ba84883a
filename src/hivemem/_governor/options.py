"""The MemoryGovernor's options: their checks, and small frozen groups of them.

``MemoryGovernor`` takes every option as a flat keyword argument (see
docs/governor.md); the same options also come grouped, checked when the
group is made:

``BudgetOptions``      budget, thresholds, limit, headroom, spike_window: where the levels sit
``PacingOptions``      interval, min_interval, max_interval, switch_interval: how often it looks
``CpuOptions``         cpu_budget, cpu_window, cpu_clock: what reclamation may cost
``AdaptiveOptions``    adaptive, demote_after, retry_every, min_yield, never_demote,
                       level_aggressiveness: which strategies run, in which order
``EscalationOptions``  escalation, on_escalate, exit_code: what happens past CRITICAL
``WakeOptions``        psi, psi_trigger, notify: what wakes the monitor besides its timer

``MemoryGovernor(pacing=PacingOptions(interval=0.05))`` equals
``MemoryGovernor(interval=0.05)``; giving an option both ways is refused.
"""

from __future__ import annotations

from hivemem import _validate as _v
from hivemem._errors import InvalidArgument
from hivemem._frozen import Frozen
from hivemem._levels import Aggressiveness, Pressure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import TypeGuard

    from typing_extensions import TypedDict

    from hivemem._engine.registry import Registry
    from hivemem._governor.events import GovernorEvent
    from hivemem._measure.reader import Reader

    class GovernorOptions(TypedDict, total=False):
        """Every keyword argument of ``MemoryGovernor`` but *budget*: what ``hivemem.govern()`` passes on."""

        target: int | str | None
        registry: Registry | None
        reader: object
        aggressiveness: object
        thresholds: dict[object, object] | None
        limit: object
        interval: float | None
        spike_window: float | None
        cpu_budget: float
        cpu_window: float
        escalation: str
        on_escalate: Callable[[GovernorEvent], object] | None
        exit_code: int
        psi: object
        psi_trigger: object
        after_fork: str
        adaptive: bool
        demote_after: int
        retry_every: int
        min_yield: int | str
        never_demote: Iterable[str]
        level_aggressiveness: dict[object, object] | None
        max_events: int
        clock: Callable[[], float] | None
        cpu_clock: Callable[[], float] | None
        min_interval: float
        max_interval: float | None
        notify: object
        switch_interval: float | None
        headroom: object
        budget_options: BudgetOptions | None
        pacing_options: PacingOptions | None
        cpu_options: CpuOptions | None
        adaptive_options: AdaptiveOptions | None
        escalation_options: EscalationOptions | None
        wake_options: WakeOptions | None


__all__ = [
    "AFTER_FORK",
    "DEFAULT_INTERVAL",
    "DEFAULT_LEVEL_AGGRESSIVENESS",
    "DEFAULT_MAX_INTERVAL",
    "ESCALATIONS",
    "UNSET",
    "AdaptiveOptions",
    "BudgetOptions",
    "CpuOptions",
    "EscalationOptions",
    "PacingOptions",
    "WakeOptions",
    "check_reader",
    "choice",
    "count",
    "names",
    "seconds",
    "size",
]

ESCALATIONS = ("callback", "exit", "raise", "warn")
AFTER_FORK = ("restart", "stop")
#: The longest wait above NORMAL (``interval``) and at NORMAL (``max_interval``), seconds.
DEFAULT_INTERVAL = 0.1
DEFAULT_MAX_INTERVAL = 1.0

#: Aggressiveness of the passes run at each pressure level (see docs/governor.md).
DEFAULT_LEVEL_AGGRESSIVENESS: dict[Pressure, Aggressiveness] = {
    Pressure.MODERATE: Aggressiveness.CHEAP,
    Pressure.HIGH: Aggressiveness.MODERATE,
    Pressure.CRITICAL: Aggressiveness.AGGRESSIVE,
}


class _Unset:
    """The default of a flat keyword argument: "not given", so its group's default applies."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"

    def __reduce__(self) -> str:
        return "UNSET"


UNSET = _Unset()


# --------------------------------------------------------------------------- checks


def seconds(name: str, value: object, *, maximum: float = _v.MAX_SECONDS) -> float:
    """:func:`hivemem._validate.seconds` where ``None`` is refused: always a float."""
    out = _v.seconds(name, value, maximum=maximum)
    assert out is not None  # allow_none=False never returns None
    return out


def count(name: str, value: object, *, minimum: int = 1, maximum: int = _v.MAX_COUNT) -> int:
    """:func:`hivemem._validate.count` where ``None`` is refused: always an int."""
    out = _v.count(name, value, minimum=minimum, maximum=maximum)
    assert out is not None  # allow_none=False never returns None
    return out


def size(name: str, value: object) -> int:
    """:func:`hivemem._validate.size` where ``None`` is refused: always bytes."""
    out = _v.size(name, value)
    assert out is not None  # allow_none=False never returns None
    return out


def _is_reader(reader: object) -> TypeGuard[Reader]:
    return callable(getattr(reader, "rss", None)) and callable(getattr(reader, "usage", None))


def check_reader(reader: object) -> Reader:
    """*reader* if it has the reader protocol's ``rss()`` and ``usage()``."""
    if not _is_reader(reader):
        raise InvalidArgument(
            f"reader {reader!r} must have rss() -> int and usage() -> MemoryUsage methods "
            "(see hivemem.ProcReader and hivemem.testing.FakeReader)"
        )
    return reader


def names(name: str, value: object) -> frozenset[str]:
    """A set of strategy names (a list, tuple or set of str; a bare str is refused)."""
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise InvalidArgument(f"{name}={_v.show(value)}: expected a list of strategy names")
    try:
        got = frozenset(value)
    except TypeError:
        got = frozenset({0})  # unhashable items: refused below
    if not all(isinstance(n, str) for n in got):
        raise InvalidArgument(f"{name}={_v.show(value)}: expected a list of strategy names")
    return frozenset(str(n) for n in got)


def choice(name: str, value: object, choices: tuple[object, ...]) -> object:
    """*value* if it is one of *choices*, compared by type and value (``0`` is not ``False``)."""
    for one in choices:
        if type(value) is type(one) and value == one:
            return one
    raise InvalidArgument(f"{name}={_v.show(value)}: expected one of {', '.join(map(repr, choices))}")


def _str_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    for one in choices:
        if type(value) is str and value == one:
            return one
    raise InvalidArgument(f"{name}={_v.show(value)}: expected one of {', '.join(map(repr, choices))}")


# --------------------------------------------------------------------------- groups


class BudgetOptions(Frozen):
    """Where the pressure levels sit: ``budget``, ``thresholds``, ``limit``, ``headroom``, ``spike_window``.

    *budget*, *thresholds*, *limit* and *headroom* are kept as given: they
    are resolved against the memory limit when the governor is made (an
    impossible combination fails there). ``configured`` is true when any of
    the first three was given.
    """

    __slots__ = ("budget", "configured", "headroom", "limit", "spike_window", "thresholds")

    budget: object
    thresholds: dict[object, object] | None
    limit: object
    headroom: object
    spike_window: float | None
    configured: bool

    def __init__(
        self,
        budget: object = None,
        *,
        thresholds: dict[object, object] | None = None,
        limit: object = None,
        headroom: object = 0.03,
        spike_window: float | None = None,
    ) -> None:
        self._set(
            budget=budget,
            thresholds=thresholds,
            limit=limit,
            headroom=headroom,
            spike_window=_v.seconds("spike_window", spike_window, allow_none=True),
            configured=budget is not None or thresholds is not None or limit is not None,
        )


class PacingOptions(Frozen):
    """How often the monitor looks (see ``pacing.py``), resolved.

    ``interval`` given alone keeps its old meaning, "poll at least this
    often", everywhere; left out, the governor waits up to ``max_interval``
    (1 s) at NORMAL and up to 0.1 s above it. ``switch_interval`` is the
    interpreter's switch interval while memory grows fast (``None``: left alone).
    """

    __slots__ = ("interval", "max_interval", "min_interval", "switch_interval")

    interval: float
    min_interval: float
    max_interval: float
    switch_interval: float | None

    def __init__(
        self,
        interval: float | None = None,
        *,
        min_interval: float = 0.002,
        max_interval: float | None = None,
        switch_interval: float | None = 0.0002,
    ) -> None:
        floor = seconds("min_interval", min_interval, maximum=1.0)
        busy = _v.seconds("interval", interval, allow_none=True)
        idle = _v.seconds("max_interval", max_interval, allow_none=True)
        if busy is None:
            busy = DEFAULT_INTERVAL if idle is None else min(DEFAULT_INTERVAL, idle)
        if idle is None:
            idle = busy if interval is not None else max(DEFAULT_MAX_INTERVAL, busy)
        if idle < busy:
            raise InvalidArgument(
                f"max_interval={_v.show(max_interval)} is below interval={_v.show(interval)}: the wait at "
                "NORMAL may not be shorter than the wait under pressure"
            )
        switch = _v.seconds("switch_interval", switch_interval, maximum=0.1, allow_none=True)
        self._set(interval=busy, min_interval=min(floor, busy), max_interval=idle, switch_interval=switch)


class CpuOptions(Frozen):
    """What reclamation may cost: a *budget* share of wall time over a *window* of seconds.

    *clock* measures what a pass costs (``None``: the monitor thread's CPU
    time, or the governor's injected ``clock``).
    """

    __slots__ = ("budget", "clock", "window")

    budget: float
    window: float
    clock: Callable[[], float] | None

    def __init__(
        self, budget: float = 0.05, *, window: float = 10.0, clock: Callable[[], float] | None = None
    ) -> None:
        _v.callable_or_none("cpu_clock", clock)
        self._set(budget=_v.fraction("cpu_budget", budget), window=seconds("cpu_window", window), clock=clock)


class AdaptiveOptions(Frozen):
    """Which strategies run, in which order: the adaptive order and each level's aggressiveness."""

    __slots__ = (
        "demote_after",
        "enabled",
        "level_aggressiveness",
        "min_yield",
        "never_demote",
        "retry_every",
    )

    enabled: bool
    demote_after: int
    retry_every: int
    min_yield: int
    never_demote: frozenset[str]
    level_aggressiveness: dict[Pressure, Aggressiveness]

    def __init__(
        self,
        enabled: bool = True,
        *,
        demote_after: int = 3,
        retry_every: int = 8,
        min_yield: int | str = "256KiB",
        never_demote: Iterable[str] = ("hooks",),
        level_aggressiveness: dict[object, object] | None = None,
    ) -> None:
        levels = dict(DEFAULT_LEVEL_AGGRESSIVENESS)
        if level_aggressiveness is not None and not isinstance(level_aggressiveness, dict):
            raise InvalidArgument(
                f"level_aggressiveness={_v.show(level_aggressiveness)}: expected a dict such as "
                "{'high': 'aggressive'}"
            )
        for key, value in (level_aggressiveness or {}).items():
            lvl = Pressure.parse(key)
            if lvl == Pressure.NORMAL:
                raise InvalidArgument("level_aggressiveness: nothing runs at NORMAL")
            levels[lvl] = Aggressiveness.parse(value)
        self._set(
            enabled=choice("adaptive", enabled, (True, False)) is True,
            demote_after=count("demote_after", demote_after, maximum=10**6),
            retry_every=count("retry_every", retry_every, maximum=10**6),
            min_yield=size("min_yield", min_yield),
            never_demote=names("never_demote", never_demote),
            level_aggressiveness=levels,
        )


class EscalationOptions(Frozen):
    """What happens when memory stays above CRITICAL: ``"warn"``, ``"callback"``, ``"raise"``, ``"exit"``."""

    __slots__ = ("escalation", "exit_code", "on_escalate")

    escalation: str
    on_escalate: Callable[[GovernorEvent], object] | None
    exit_code: int

    def __init__(
        self,
        escalation: str = "warn",
        *,
        on_escalate: Callable[[GovernorEvent], object] | None = None,
        exit_code: int = 1,
    ) -> None:
        how = _str_choice("escalation", escalation, ESCALATIONS)
        if how == "callback" and not callable(on_escalate):
            raise InvalidArgument("escalation='callback' needs on_escalate=<callable(event)>")
        _v.callable_or_none("on_escalate", on_escalate)
        self._set(
            escalation=how,
            on_escalate=on_escalate,
            exit_code=count("exit_code", exit_code, minimum=0, maximum=255),
        )


class WakeOptions(Frozen):
    """What wakes the monitor besides its timer: PSI triggers and cgroup notifications."""

    __slots__ = ("notify", "psi", "psi_trigger")

    psi: object
    psi_trigger: tuple[str, int, int]
    notify: object

    def __init__(
        self, psi: object = "auto", *, psi_trigger: object = "some 150000 1000000", notify: object = "auto"
    ) -> None:
        from hivemem._measure.psi import parse_trigger

        self._set(
            psi=choice("psi", psi, ("auto", True, False)),
            notify=choice("notify", notify, ("auto", True, False)),
            psi_trigger=parse_trigger(psi_trigger),
        )
