"""The MemoryGovernor and ``hivemem.optimize()``.

The governor measures memory through a reader (``/proc`` by default, any
object with ``rss()`` and ``usage()`` in tests) and runs the registry's
strategies through the engine. It knows strategies only by the protocol.
"""

from __future__ import annotations

from hivemem._errors import InvalidArgument
from hivemem._levels import Aggressiveness
from hivemem._sizes import format_size, mib_to_bytes, parse_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from hivemem._registry import Registry
    from hivemem._report import OptimizationReport, StepResult

__all__ = ["MemoryGovernor", "optimize"]


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


class MemoryGovernor:
    """Measures this process's memory and runs strategies to bring it under a target.

    ``MemoryGovernor(target="90MB").optimize()`` runs one measured pass.
    *registry* defaults to the process-wide registry that
    :func:`hivemem.register_strategy` fills; *reader* defaults to
    :class:`hivemem.ProcReader`. Every method may be called from any thread;
    passes are serialized process-wide.
    """

    __module__ = "hivemem"

    def __init__(
        self,
        target: int | str | None = None,
        *,
        registry: Registry | None = None,
        reader: object = None,
        aggressiveness: object = "moderate",
    ) -> None:
        from hivemem._measure import ProcReader
        from hivemem._registry import Registry, default_registry

        if registry is not None and not isinstance(registry, Registry):
            raise InvalidArgument(f"registry must be a hivemem.Registry, got {registry!r}")
        self.target: int | None = None if target is None else parse_size(target)
        self.registry: Registry = default_registry if registry is None else registry
        self.reader: object = ProcReader() if reader is None else _check_reader(reader)
        self.aggressiveness: Aggressiveness = Aggressiveness.parse(aggressiveness)
        self.last_report: OptimizationReport | None = None

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
        target. *strategies* limits the pass to those names (still run in
        registry order). *aggressiveness* defaults to the governor's.
        ``dry_run=True`` measures and lists what would run, changing nothing.
        *on_step_start(name)* and *on_step(step)* report progress live.
        All arguments are checked before anything runs.
        """
        from hivemem._engine import run_pass

        goal = _resolve_target(target_mb, target)
        if goal is None:
            goal = self.target
        level = self.aggressiveness if aggressiveness is None else Aggressiveness.parse(aggressiveness)
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
        )
        assert report is not None  # blocking passes always run
        self.last_report = report
        return report

    def _limit_bytes(self) -> int | None:
        from hivemem._limits import memory_limit

        try:
            return memory_limit().bytes
        except Exception:
            return None

    def __repr__(self) -> str:
        target = format_size(self.target) if self.target is not None else None
        try:
            rss = format_size(self.reader.rss())  # type: ignore[attr-defined]
        except Exception as exc:
            rss = f"<unreadable: {exc}>"
        return (
            f"MemoryGovernor(target={target!r}, rss={rss!r}, strategies={len(self.registry)}, "
            f"aggressiveness={self.aggressiveness.name!r})"
        )


_default: MemoryGovernor | None = None


def default_governor() -> MemoryGovernor:
    """The process-wide governor behind :func:`hivemem.optimize`."""
    global _default
    if _default is None:
        _default = MemoryGovernor()
    return _default


def optimize(
    target_mb: float | None = None,
    *,
    target: int | str | None = None,
    strategies: Iterable[str] | None = None,
    aggressiveness: object = "moderate",
    dry_run: bool = False,
    on_step_start: Callable[[str], object] | None = None,
    on_step: Callable[[StepResult], object] | None = None,
) -> OptimizationReport:
    """Bring this process's memory down toward a target, measuring every step.

    ``hivemem.optimize(target_mb=90)`` runs the registered strategies allowed
    at *aggressiveness* (``"cheap"``, ``"moderate"`` — the default, safe for
    a production service — or ``"aggressive"``) in ``(priority, name)``
    order, reads RSS before and after each, and stops as soon as RSS is at or
    below the target. Without a target every allowed strategy runs.

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
