"""Prometheus metrics for hivemem (extra ``prometheus``: ``pip install hivemem[prometheus]``).

``install()`` creates these metrics in a prometheus_client registry (the
default one unless given) and keeps them up to date::

    hivemem_rss_bytes, hivemem_uss_bytes, hivemem_pss_bytes, hivemem_swap_bytes
                                      this process's memory (/proc/self/smaps_rollup)
    hivemem_limit_bytes               the effective limit (hivemem.memory_limit())
    hivemem_pressure_level            0 normal, 1 moderate, 2 high, 3 critical
    hivemem_freed_bytes_total{strategy}   RSS drops measured after each strategy's step
    hivemem_strategy_runs_total{strategy,outcome}   steps run: outcome "ok" or "error"
    hivemem_optimize_duration_seconds     histogram of pass durations
    hivemem_governor_escalations_total    "escalate" events of the watched governors

The counters and the histogram are fed by :func:`hivemem.add_listener`
(called after every pass, whoever started it) and by the ``subscribe``
events of governors passed to ``watch()`` (and of the process-wide governor
started by ``hivemem.govern()`` when one runs at install time). A step whose
RSS went *up* adds nothing to ``freed`` (a counter never decreases).

Single process: the memory gauges are read when Prometheus scrapes.
prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set
before prometheus_client is imported, as for gunicorn): gauges cannot be
computed at scrape time in another process, so they are written after every
pass and every ``refresh_interval`` seconds (default 10) by a daemon thread,
restarted in forked children; each worker's series carries a ``pid`` label
(``multiprocess_mode="liveall"``), so ``sum(hivemem_pss_bytes)`` is what the
whole server costs. Call ``prometheus_client.multiprocess.mark_process_dead``
when a worker exits (the gunicorn ``child_exit`` hook in
:mod:`hivemem.integrations.gunicorn` does).

This module imports prometheus_client; ``import hivemem`` does not.
"""

from __future__ import annotations

import os

from hivemem._errors import InvalidArgument, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from typing import Any

    from hivemem._engine.report import OptimizationReport
    from hivemem._measure.reader import Reader
    from hivemem._measure.usage import MemoryUsage

__all__ = ["HivememMetrics", "install", "multiprocess_mode"]

_MEMORY = ("rss", "uss", "pss", "swap")
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_installed: dict[int, HivememMetrics] = {}


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise Unavailable(
            "hivemem.integrations.prometheus needs prometheus_client: pip install 'hivemem[prometheus]'"
        ) from None
    return prometheus_client


def multiprocess_mode() -> bool:
    """Whether prometheus_client's multiprocess mode is on (``PROMETHEUS_MULTIPROC_DIR`` is set)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir"))


class _UsageCache:
    """One smaps_rollup read per scrape, shared by the four memory gauges."""

    def __init__(self, reader: Reader, ttl: float = 0.5) -> None:
        import time

        self._reader = reader
        self._ttl = ttl
        self._clock = time.monotonic
        self._at = -1.0e9
        self._usage: MemoryUsage | None = None

    def get(self, field: str) -> float:
        now = self._clock()
        if self._usage is None or now - self._at > self._ttl:
            self._usage = self._reader.usage()
            self._at = now
        value = getattr(self._usage, field, None)
        return float("nan") if value is None else float(value)


class HivememMetrics:
    """The metrics :func:`install` created; ``refresh()``, ``watch(governor)``, ``close()``."""

    __module__ = "hivemem.integrations.prometheus"

    def __init__(
        self,
        registry: Any,
        namespace: str,
        *,
        reader: Reader,
        refresh_interval: float | None,
        multiprocess: bool,
    ) -> None:
        pc = _client()
        self.registry = registry
        self.namespace = namespace
        self.multiprocess = multiprocess
        self.refresh_interval = refresh_interval
        self._reader = reader
        self._cache = _UsageCache(reader)
        self._governors: list[object] = []
        self._closed = False
        self._thread: object = None
        self._stop: threading.Event | None = None
        mode = {"multiprocess_mode": "liveall"} if multiprocess else {}
        kw: dict[str, Any] = {"namespace": namespace, "registry": registry}
        self.memory = {
            f: pc.Gauge(f"{f}_bytes", f"{f.upper()} of the process in bytes", **kw, **mode) for f in _MEMORY
        }
        self.limit = pc.Gauge(
            "limit_bytes", "Effective memory limit in bytes (hivemem.memory_limit())", **kw, **mode
        )
        self.pressure = pc.Gauge(
            "pressure_level", "Memory pressure level: 0 normal, 1 moderate, 2 high, 3 critical", **kw, **mode
        )
        self.freed = pc.Counter(
            "freed_bytes", "RSS drop measured after each strategy step, in bytes", ["strategy"], **kw
        )
        self.runs = pc.Counter(
            "strategy_runs", "Strategy steps run, by outcome (ok or error)", ["strategy", "outcome"], **kw
        )
        self.duration = pc.Histogram(
            "optimize_duration_seconds", "Duration of optimize passes in seconds", buckets=_BUCKETS, **kw
        )
        self.escalations = pc.Counter(
            "governor_escalations", "Governor escalations (still critical with the CPU budget spent)", **kw
        )
        self._level = 0
        if not multiprocess:
            for f, gauge in self.memory.items():
                gauge.set_function(lambda f=f: self._cache.get(f))
            self.limit.set_function(self._read_limit)
            self.pressure.set_function(self._read_pressure)
        else:
            self.refresh()

    # ------------------------------------------------------------------ values
    def _read_limit(self) -> float:
        from hivemem._measure.limits import memory_limit

        try:
            return float(memory_limit().bytes)
        except Exception:
            return float("nan")

    def _read_pressure(self) -> float:
        levels = [int(lv) for g in self._governors if (lv := getattr(g, "level", None)) is not None]
        if levels:
            self._level = max(levels)
        return float(self._level)

    def refresh(self) -> None:
        """Read memory now and write it to the gauges (what multiprocess mode needs)."""
        if not self.multiprocess:
            return  # gauges are read at scrape time
        usage = self._reader.usage()
        for f, gauge in self.memory.items():
            value = getattr(usage, f, None)
            gauge.set(float("nan") if value is None else value)
        self.limit.set(self._read_limit())
        self.pressure.set(self._read_pressure())

    # ------------------------------------------------------------------ feeds
    def on_report(self, report: OptimizationReport) -> None:
        """Engine listener: count what each step freed and how long the pass took."""
        self.duration.observe(report.seconds)
        for step in report.steps:
            if not step.ran:
                continue
            self.runs.labels(step.name, "error" if step.error else "ok").inc()
            if step.freed is not None and step.freed > 0:
                self.freed.labels(step.name).inc(step.freed)
        if report.level:
            try:
                from hivemem._levels import Pressure

                self._level = int(Pressure.parse(report.level))
            except Exception:
                pass
        if self.multiprocess:
            self.refresh()

    def on_event(self, event: object) -> None:
        """Governor subscriber: escalations, and the pressure level as it changes."""
        if getattr(event, "kind", None) == "escalate":
            self.escalations.inc()
        level = getattr(event, "level", None)
        if level is not None:
            try:
                from hivemem._levels import Pressure

                self._level = int(Pressure.parse(level))
            except Exception:
                pass
            if self.multiprocess:
                self.pressure.set(self._level)

    def watch(self, governor: object) -> None:
        """Follow *governor*'s events (escalations, pressure level); it must have ``subscribe(fn)``."""
        subscribe = getattr(governor, "subscribe", None)
        if not callable(subscribe):
            raise InvalidArgument(f"cannot watch {governor!r}: it has no subscribe(fn) method")
        if governor in self._governors:
            return
        subscribe(self.on_event)
        self._governors.append(governor)
        level = getattr(governor, "level", None)
        if level is not None:
            self._level = int(level)

    # ------------------------------------------------------------------ refresher thread
    def _start_refresher(self) -> None:
        import threading

        if not self.multiprocess or not self.refresh_interval:
            return
        stop = threading.Event()
        interval = self.refresh_interval

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.refresh()
                except Exception:
                    import logging

                    logging.getLogger("hivemem").exception("hivemem prometheus refresh failed")

        thread = threading.Thread(target=loop, name="hivemem-prometheus", daemon=True)
        self._stop, self._thread = stop, thread
        thread.start()

    def _after_fork_child(self) -> None:
        if self._closed:
            return
        self._thread = None
        try:
            self._start_refresher()
            self.refresh()  # the child's own series, at once
        except Exception:
            import logging

            logging.getLogger("hivemem").exception("hivemem prometheus: cannot restart after fork")

    def close(self) -> None:
        """Stop feeding and unregister every metric from the registry."""
        if self._closed:
            return
        self._closed = True
        from hivemem._engine.engine import unsubscribe

        unsubscribe(self.on_report)
        for gov in self._governors:
            unsub = getattr(gov, "unsubscribe", None)
            if callable(unsub):
                try:
                    unsub(self.on_event)
                except Exception:
                    pass
        self._governors.clear()
        if self._stop is not None:
            self._stop.set()
        for metric in (*self.memory.values(), self.limit, self.pressure, self.freed, self.runs):
            self._unregister(metric)
        for metric in (self.duration, self.escalations):
            self._unregister(metric)
        _installed.pop(id(self.registry), None)

    def _unregister(self, metric: object) -> None:
        try:
            self.registry.unregister(metric)
        except KeyError:
            pass

    def __repr__(self) -> str:
        mode = "multiprocess" if self.multiprocess else "single process"
        return (
            f"HivememMetrics(namespace={self.namespace!r}, {mode}, governors={len(self._governors)}, "
            f"closed={self._closed})"
        )


def _process_wide_governor() -> object:
    from hivemem._governor.active import governed

    gov = governed()
    return gov if gov is not None and getattr(gov, "running", False) else None


def install(
    registry: Any = None,
    *,
    namespace: str = "hivemem",
    governor: object = None,
    reader: Reader | None = None,
    refresh_interval: float | None = 10.0,
    multiprocess: bool | None = None,
) -> HivememMetrics:
    """Create hivemem's metrics in *registry* (default ``prometheus_client.REGISTRY``) and feed them.

    *governor*: a :class:`hivemem.MemoryGovernor` to follow (escalations,
    pressure level); by default the one ``hivemem.govern()`` started, if any.
    *reader*: where memory figures come from (default ``hivemem.ProcReader()``).
    *multiprocess*: default on when ``PROMETHEUS_MULTIPROC_DIR`` is set;
    then gauges are written every *refresh_interval* seconds and after each
    pass. Installing twice into one registry returns the first installation.
    """
    pc = _client()
    if registry is None:
        registry = pc.REGISTRY
    if not isinstance(namespace, str) or not namespace.replace("_", "").isalnum():
        raise InvalidArgument(f"namespace must be letters, digits and '_', got {namespace!r}")
    if refresh_interval is not None and (
        isinstance(refresh_interval, bool)
        or not isinstance(refresh_interval, (int, float))
        or not refresh_interval > 0
    ):
        raise InvalidArgument(
            f"refresh_interval must be a positive number of seconds or None, got {refresh_interval!r}"
        )
    if governor is not None and not callable(getattr(governor, "subscribe", None)):
        raise InvalidArgument(f"governor {governor!r} has no subscribe(fn) method")
    existing = _installed.get(id(registry))
    if existing is not None:
        if governor is not None:
            existing.watch(governor)
        return existing
    if reader is None:
        from hivemem._measure.usage import ProcReader

        reader = ProcReader()
    elif not (callable(getattr(reader, "rss", None)) and callable(getattr(reader, "usage", None))):
        raise InvalidArgument(f"reader {reader!r} must have rss() and usage() methods")
    metrics = HivememMetrics(
        registry,
        namespace,
        reader=reader,
        refresh_interval=refresh_interval,
        multiprocess=multiprocess_mode() if multiprocess is None else bool(multiprocess),
    )
    from hivemem._engine.engine import subscribe

    subscribe(metrics.on_report)
    watched = governor if governor is not None else _process_wide_governor()
    if watched is not None:
        metrics.watch(watched)
    metrics._start_refresher()
    if hasattr(os, "register_at_fork"):
        import weakref

        ref = weakref.ref(metrics)

        def child() -> None:
            m = ref()
            if m is not None:
                m._after_fork_child()

        os.register_at_fork(after_in_child=child)
    _installed[id(registry)] = metrics
    return metrics
