"""A Dask ``distributed`` worker plugin: a hivemem governor in every worker (extra ``dask``).

::

    from hivemem.integrations.dask import GovernorPlugin, reports
    client.register_plugin(GovernorPlugin())
    reports(client)     # {worker address: that worker's governor state and last report}

Dask's memory manager and hivemem's governor act on different memory:

* Dask moves **managed** memory (task results it knows the size of): from
  ``target`` (0.60 of the worker's limit, managed memory) and ``spill``
  (0.70, process memory) it spills results to disk until back under the
  target; at ``pause`` (0.80) it stops running tasks; at ``terminate``
  (0.95) the nanny restarts the worker.
* hivemem returns **unmanaged** memory the process no longer uses:
  cyclic garbage, free space inside malloc's heap and pymalloc's arenas.
  That memory is invisible to Dask's spilling: spilling it is impossible,
  and spilling live results instead costs disk I/O now and unspilling later.

So the plugin's pressure levels sit just *below* Dask's next action, with
release thresholds under Dask's target, using the budget = the worker's
``memory_limit`` (``hivemem.memory_limit()`` when the worker has none):

==========  =========================  ======================  ===============
hivemem     enters at                  releases at             passes run
==========  =========================  ======================  ===============
MODERATE    target (0.60)              target - 0.10 (0.50)    cheap
HIGH        (target+spill)/2 (0.65)    target - 0.05 (0.55)    moderate
CRITICAL    (spill+pause)/2 (0.75)     spill - 0.05 (0.65)     aggressive
==========  =========================  ======================  ===============

(the figures in brackets are for Dask's defaults; the plugin reads the
worker's own fractions). Reclaimable memory therefore goes back to the OS
before Dask starts spilling, and a pass that succeeds ends under Dask's
target, so Dask has nothing left to do; memory that is really live is left
to Dask (hivemem's CPU budget, 5% of wall time by default, stops it from
retrying in a loop; Dask's own throttled GC keeps the same 5%). The
governor never raises or exits in a worker (``escalation="warn"``): the
nanny's ``terminate`` is the last resort, not hivemem's.

A plugin that cannot start (bad option, missing feature) logs the reason on
the worker's log (``client.get_worker_logs()``) and the worker runs on
without it: it never raises into Dask.
"""

from __future__ import annotations

import os

from hivemem._errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from hivemem._engine.report import OptimizationReport
    from hivemem._governor.governor import MemoryGovernor

__all__ = ["GovernorPlugin", "dask_fractions", "optimize_workers", "reports", "thresholds_for"]

#: Dask's defaults (``distributed.worker.memory.*``), fractions of the worker's memory limit.
DASK_DEFAULTS = {"target": 0.60, "spill": 0.70, "pause": 0.80, "terminate": 0.95}

_LOGGER = "distributed.worker.hivemem"  # under distributed.worker: shows in client.get_worker_logs()


class _WorkerState:
    """What this worker process's plugin did (one per process: the plugin runs in the worker)."""

    def __init__(self) -> None:
        self.governors: dict[str, MemoryGovernor] = {}  # worker address -> its governor
        self.errors: dict[str, str] = {}  # worker address -> why the plugin did not start
        self.last_report: OptimizationReport | None = None
        self.listening = False


_state = _WorkerState()


def _remember(report: OptimizationReport) -> None:
    _state.last_report = report


def _logger() -> Any:
    import logging

    return logging.getLogger(_LOGGER)


def thresholds_for(
    target: float | None = 0.60, spill: float | None = 0.70, pause: float | None = 0.80
) -> dict[str, tuple[float, float]]:
    """hivemem thresholds (``{level: (enter, release)}``, fractions) that act before Dask's.

    *target*, *spill*, *pause* are Dask's fractions; ``None`` or ``False``
    (disabled in Dask) falls back to Dask's default.
    """

    def pick(value: object, default: float) -> float:
        if value is None or value is False:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise InvalidArgument(f"Dask fraction {value!r}: expected a number in (0, 1] or False")
        return float(value)

    t = pick(target, DASK_DEFAULTS["target"])
    s = max(pick(spill, DASK_DEFAULTS["spill"]), t)
    p = max(pick(pause, DASK_DEFAULTS["pause"]), s)
    # Enter each level just before Dask's next action; keep the levels strictly
    # increasing (2% apart) even when Dask's fractions coincide or sit near 1.
    critical = min((s + p) / 2, 1.0)
    high = min((t + s) / 2, critical - 0.02)
    moderate = min(t, high - 0.02)
    if moderate < 0.04:  # absurdly low Dask fractions: keep every level valid and ordered
        moderate, high, critical = 0.04, max(high, 0.06), max(critical, 0.08)
    enters = {"moderate": moderate, "high": high, "critical": critical}
    releases = {"moderate": t - 0.10, "high": t - 0.05, "critical": s - 0.05}
    return {
        level: (round(enter, 4), round(max(min(releases[level], enter - 0.05), 0.01), 4))
        for level, enter in enters.items()
    }


def dask_fractions(worker: object) -> dict[str, float | None]:
    """The worker's own target/spill/pause/terminate fractions (``None`` when Dask disables one)."""
    mm = getattr(worker, "memory_manager", worker)
    out: dict[str, float | None] = {}
    for name in ("target", "spill", "pause", "terminate"):
        value = getattr(mm, f"memory_{name}_fraction", None)
        if name == "terminate" and value is None:
            value = _config_fraction("terminate")
        out[name] = float(value) if isinstance(value, (int, float)) and value is not False else None
    return out


def _config_fraction(name: str) -> float | None:
    try:
        import dask

        value = dask.config.get(f"distributed.worker.memory.{name}")
    except Exception:
        return None
    return float(value) if isinstance(value, (int, float)) and value is not False else None


def _worker_limit(worker: object) -> int | None:
    mm = getattr(worker, "memory_manager", None)
    limit = getattr(mm, "memory_limit", None) if mm is not None else getattr(worker, "memory_limit", None)
    return int(limit) if isinstance(limit, (int, float)) and limit > 0 else None


if TYPE_CHECKING:  # the type checker sees the plugin's own methods only
    _Base = object
else:
    try:  # a real WorkerPlugin subclass when distributed is installed; the module imports without it
        from distributed.diagnostics.plugin import WorkerPlugin as _Base
    except ImportError:  # pragma: no cover - exercised only without the extra
        _Base = object


class GovernorPlugin(_Base):
    """A ``distributed`` WorkerPlugin that runs a :class:`hivemem.MemoryGovernor` in each worker.

    *thresholds*: ``{level: enter | (enter, release)}`` as for the governor;
    default :func:`thresholds_for` the worker's Dask fractions. *budget*:
    default the worker's ``memory_limit``. *interval*: seconds between polls.
    Other keyword arguments go to :class:`hivemem.MemoryGovernor`
    (``cpu_budget``, ``spike_window``, ``level_aggressiveness``, ...).
    ``escalation`` is always ``"warn"``: in a worker only Dask may
    terminate. Options are checked here, on the client, before anything is
    sent to a worker.
    """

    name = "hivemem-governor"
    idempotent = True

    def __init__(
        self,
        *,
        thresholds: dict[object, object] | None = None,
        budget: object = None,
        interval: float = 0.5,
        **options: Any,  # MemoryGovernor's keyword arguments, checked by building one below
    ) -> None:
        for banned in ("escalation", "on_escalate", "exit_code", "reader", "registry", "clock"):
            if banned in options:
                raise InvalidArgument(
                    f"GovernorPlugin does not accept {banned}=: a worker governor only warns, uses "
                    "the process registry and reads the worker's own memory"
                )
        self.thresholds = thresholds
        self.budget = budget
        self.interval = interval
        self.options = dict(options)
        # Validate now, with a stand-in budget, so a typo fails on the client, not in every worker.
        stand_in = 2**30
        self._governor(
            budget=stand_in if budget is None else budget,
            thresholds=thresholds or thresholds_for(),
            limit=stand_in,
        )

    def _governor(self, *, budget: object, thresholds: dict[Any, Any], limit: int) -> MemoryGovernor:
        from hivemem._governor.governor import MemoryGovernor

        return MemoryGovernor(
            budget=budget,
            thresholds=thresholds,
            limit=limit,
            interval=self.interval,
            escalation="warn",
            **self.options,
        )

    def setup(self, worker: object) -> None:
        """Start the governor in *worker*; log and carry on if that fails."""
        address = str(getattr(worker, "address", os.getpid()))
        try:
            self._start(worker, address)
        except Exception as exc:
            _state.errors[address] = f"{type(exc).__name__}: {exc}"
            _logger().exception(
                "hivemem GovernorPlugin could not start on worker %s; the worker runs on without it", address
            )

    def _start(self, worker: object, address: str) -> None:
        from hivemem._engine.engine import subscribe
        from hivemem._sizes import format_size

        previous = _state.governors.pop(address, None)
        if previous is not None:
            previous.stop()
        limit = _worker_limit(worker)
        if limit is None:
            from hivemem._measure.limits import memory_limit

            limit = memory_limit().bytes
        fractions = dask_fractions(worker)
        thresholds = self.thresholds or thresholds_for(
            fractions["target"], fractions["spill"], fractions["pause"]
        )
        budget = self.budget if self.budget is not None else limit
        gov = self._governor(budget=budget, thresholds=thresholds, limit=limit)
        if not _state.listening:
            subscribe(_remember)
            _state.listening = True
        gov.start()
        _state.governors[address] = gov
        _state.errors.pop(address, None)
        _logger().info(
            "hivemem GovernorPlugin: governor started on %s, budget %s, thresholds %s (Dask fractions %s)",
            address,
            format_size(gov.budget),
            thresholds,
            fractions,
        )

    def teardown(self, worker: object) -> None:
        """Stop this worker's governor."""
        address = str(getattr(worker, "address", os.getpid()))
        gov = _state.governors.pop(address, None)
        if gov is not None:
            try:
                gov.stop()
            except Exception:
                _logger().exception("hivemem GovernorPlugin: stopping the governor on %s failed", address)

    def __repr__(self) -> str:
        return (
            f"GovernorPlugin(thresholds={self.thresholds!r}, budget={self.budget!r}, "
            f"interval={self.interval!r})"
        )


# --------------------------------------------------------------------------- client-side helpers


def worker_report(dask_worker: object = None) -> dict[str, object]:
    """This worker's governor state and last report, JSON-safe (what :func:`reports` gathers)."""
    from hivemem._measure.usage import usage

    address = str(getattr(dask_worker, "address", os.getpid()))
    gov: Any = _state.governors.get(address)
    now = usage()
    out: dict[str, object] = {
        "address": address,
        "pid": os.getpid(),
        "rss": now.rss,
        "uss": now.uss,
        "pss": now.pss,
        "running": bool(gov is not None and gov.running),
        "error": _state.errors.get(address),
        "last_report": _state.last_report.to_dict() if _state.last_report is not None else None,
    }
    if gov is not None:
        out.update(
            level=gov.level.name,
            budget=gov.budget,
            thresholds=gov.thresholds.to_dict(),
            passes=gov.passes,
            events=[e.to_dict() for e in gov.events[-20:]],
        )
    return out


def reports(client: Any) -> dict[str, dict[str, object]]:
    """``client.run`` on every worker: ``{address: worker_report()}``."""
    gathered: dict[str, dict[str, object]] = client.run(worker_report)
    return gathered


def _optimize_here(dask_worker: object = None, **kwargs: Any) -> dict[str, object]:
    from hivemem._governor.governor import optimize

    return optimize(**kwargs).to_dict()


def optimize_workers(client: Any, **kwargs: Any) -> dict[str, dict[str, object]]:
    """Run ``hivemem.optimize(**kwargs)`` now on every worker; ``{address: report dict}``."""
    gathered: dict[str, dict[str, object]] = client.run(_optimize_here, **kwargs)
    return gathered
