"""The active half of hivemem's pytest plugin: measures tests, judges them, reports.

Registered by ``hivemem.pytest_plugin`` only when a marker, fixture or option
asks for it. Per measured test it opens a span on the shared clock of its
kind (``hivemem._pytest.meter``) around the test body (or around setup and
the body with ``include_fixtures=True``), closes it after the body, and turns
a peak over the limit into a failed call report from a
``pytest_runtest_makereport`` hookwrapper.

Under pytest-xdist each worker measures its own process; the figures travel
to the controller on the test report (``report.hivemem``, a JSON-safe dict),
where the report file and the terminal summary are written.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Generator
    from typing import Any

    from pluggy import Result

    from hivemem._pytest.ceiling import Ceiling, MemoryMeter, PeakMeasurement
    from hivemem._pytest.meter import SiteCatcher, Span
    from hivemem.pytest_plugin import Options

__all__ = ["BLOCKS", "METER", "Plan", "Runner", "ceiling_factory"]

_STATE: pytest.StashKey[_State] = pytest.StashKey()
METER: pytest.StashKey[MemoryMeter] = pytest.StashKey()
"""The ``memory`` fixture's meter, reset right before the test body."""
BLOCKS: pytest.StashKey[list[dict[str, object]]] = pytest.StashKey()
"""``PeakMeasurement.to_dict()`` of each ``memory_ceiling`` block of a test."""


class Plan:
    """What to do with one test: measure (kind, limit, include_fixtures) and/or a leak check."""

    __slots__ = ("include_fixtures", "kind", "leak", "limit", "measure", "source")

    def __init__(
        self,
        *,
        measure: bool = False,
        kind: str = "rss",
        limit: int | None = None,
        include_fixtures: bool = False,
        leak: dict[str, Any] | None = None,
        source: str = "",
    ) -> None:
        self.measure = measure
        self.kind = kind
        self.limit = limit
        self.include_fixtures = include_fixtures
        self.leak = leak
        self.source = source


class _State:
    """One test's plan and what was measured, kept in one stash slot (one lookup per hook)."""

    __slots__ = ("catcher", "leak", "leak_fail", "plan", "result", "span", "t0", "trimmed")

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.span: Span | None = None
        self.t0 = 0.0
        self.catcher: SiteCatcher | None = None
        self.result: PeakMeasurement | None = None
        self.leak: dict[str, Any] | None = None
        self.leak_fail: str | None = None
        self.trimmed = False


def _marker_args(func: Callable[..., dict[str, Any]], marker: pytest.Mark) -> dict[str, Any]:
    try:
        return func(*marker.args, **marker.kwargs)
    except TypeError as exc:
        from hivemem._errors import InvalidArgument

        raise InvalidArgument(f"@pytest.mark.{marker.name}{_call_text(marker)}: {exc}") from None


def _call_text(marker: pytest.Mark) -> str:
    parts = [repr(a) for a in marker.args] + [f"{k}={v!r}" for k, v in marker.kwargs.items()]
    return f"({', '.join(parts)})"


def _memory_limit(limit: object, *, kind: str = "rss", include_fixtures: bool = False) -> dict[str, Any]:
    from hivemem._errors import InvalidArgument
    from hivemem._sizes import parse_size

    if kind not in ("rss", "python"):
        raise InvalidArgument(f"@pytest.mark.memory_limit: invalid kind {kind!r}: expected 'rss' or 'python'")
    if not isinstance(include_fixtures, bool):
        raise InvalidArgument(
            f"@pytest.mark.memory_limit: include_fixtures must be True or False, got {include_fixtures!r}"
        )
    return {"limit": parse_size(limit), "kind": kind, "include_fixtures": include_fixtures}


def _no_leaks(
    *, warmup: int = 2, repeat: int = 5, tolerance: int | str | None = None, types: bool = True
) -> dict[str, Any]:
    from hivemem import _validate
    from hivemem._errors import InvalidArgument
    from hivemem._profile.leaks import MAX_REPEAT, MAX_WARMUP

    try:
        checked = {
            "warmup": _validate.count("warmup", warmup, minimum=0, maximum=MAX_WARMUP),
            "repeat": _validate.count("repeat", repeat, minimum=2, maximum=MAX_REPEAT),
            "tolerance": _validate.size("tolerance", tolerance, allow_none=True),
        }
    except ValueError as exc:
        raise InvalidArgument(f"@pytest.mark.no_leaks: {exc}") from None
    if not isinstance(types, bool):
        raise InvalidArgument(f"@pytest.mark.no_leaks: types={_validate.show(types)}: expected True or False")
    checked["types"] = types
    return checked


class Runner:
    """Per-session state of the active plugin (one per ``pytest.Config``)."""

    def __init__(self, config: pytest.Config, options: Options) -> None:
        self.config = config
        self.default_limit = options.limit
        self.top = options.top
        report = options.report
        # Relative to where pytest was started, even if a test changes directory.
        self.report_path = os.path.join(str(config.invocation_params.dir), report) if report else None
        self.report_summary: dict[str, Any] | None = None  # set once the report is written
        self.every_test = bool(self.default_limit is not None or self.report_path or self.top)
        self.keep_records = bool(self.report_path or self.top)  # per-test records feed only these
        self.records: dict[str, dict[str, Any]] = {}
        self._last_item: pytest.Item | None = None
        self.is_worker = hasattr(config, "workerinput")
        self._marks: dict[int, tuple[pytest.Mark, dict[str, Any]]] = {}
        # Imported once here rather than in every per-test hook.
        from hivemem._pytest import meter as _pytest_meter
        from hivemem._pytest.ceiling import PeakMeasurement

        self._meter = _pytest_meter
        self._measurement = PeakMeasurement
        self._clocks: dict[str, Any] = {}
        if self.keep_records and not self.is_worker:
            # Only then: a logreport hook is called three times per test.
            config.pluginmanager.register(_Recorder(self), "hivemem-records")

    def _clock(self, kind: str) -> Any:
        # The process-wide clock of a kind, kept here: two lookups per test fewer.
        clock = self._clocks[kind] = self._meter.clock_for(kind)
        return clock

    # ------------------------------------------------------------------ planning
    def plan(self, item: pytest.Item) -> Plan:
        if _STATE in item.stash:  # ``in`` first: a Stash.get that misses raises and catches a KeyError
            return item.stash[_STATE].plan
        memory_limit = no_leaks = None
        for marker in item.iter_markers():  # closest first
            if marker.name == "memory_limit" and memory_limit is None:
                memory_limit = marker
            elif marker.name == "no_leaks" and no_leaks is None:
                no_leaks = marker
        if memory_limit is not None:
            plan = Plan(measure=True, source="marker", **self._parsed(_memory_limit, memory_limit))
        elif self.default_limit is not None:
            plan = Plan(measure=True, limit=self.default_limit, source="--memory-limit")
        elif self.every_test:
            plan = Plan(measure=True)
        else:
            plan = Plan()
        if no_leaks is not None:
            plan.leak = self._parsed(_no_leaks, no_leaks)
            if memory_limit is None:  # a leak check runs the body many times: no default ceiling on top
                plan.measure = self.every_test
                plan.limit = None
        item.stash[_STATE] = _State(plan)
        return plan

    def _parsed(self, func: Callable[..., dict[str, Any]], marker: pytest.Mark) -> dict[str, Any]:
        # A module- or class-level marker is one Mark object for many tests: parse it once.
        key = id(marker)
        hit = self._marks.get(key)
        if hit is not None and hit[0] is marker:
            return hit[1]
        args = _marker_args(func, marker)
        self._marks[key] = (marker, args)
        return args

    # ------------------------------------------------------------------ measuring
    def _begin(self, item: pytest.Item, state: _State) -> None:
        plan = state.plan
        clock = self._clocks.get(plan.kind) or self._clock(plan.kind)
        state.span = clock.begin(gated=True)
        state.t0 = time.perf_counter()
        if plan.kind == "python" and plan.limit is not None:
            code = None
            if isinstance(item, pytest.Function):
                import inspect

                code = getattr(inspect.unwrap(item.obj), "__code__", None)
            state.catcher = self._meter.SiteCatcher(
                clock,
                state.span,
                plan.limit,
                code=code,
            )

    def _end(self, state: _State) -> None:
        span = state.span
        if span is None:
            return
        seconds = time.perf_counter() - state.t0
        state.span = None
        plan = state.plan
        catcher = state.catcher
        if catcher is not None:
            catcher.stop()
        sites: tuple[tuple[str, int, int], ...] = ()
        note = ""
        if plan.kind == "python" and plan.limit is not None:
            rise = span.rise()
            if rise > plan.limit:  # before close(): closing may stop tracemalloc
                sites, note = self._meter.block_sites(span, catcher, rise, "test")
        rise = span.close()
        state.trimmed = span.trimmed
        if not self.keep_records and (plan.limit is None or rise <= plan.limit):
            state.result = None  # a pass nobody records: no figures to build and send
            return
        state.result = self._measurement(
            kind=plan.kind,
            peak=rise,
            baseline=span.baseline,
            limit=plan.limit,
            method=span.clock.method,
            seconds=seconds,
            sites=sites,
            sites_note=note,
            label="test body and fixture setup" if plan.include_fixtures else "test body",
        )

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # A plain hook (not a wrapper) so that a bad marker argument raised here is
        # an ordinary setup error, and so that it runs before fixtures are set up.
        plan = self.plan(item)
        if plan.measure and plan.kind == "rss":
            # Before this test's fixtures, after the last one's teardown: the trim gate's
            # quiet point. Class-, module- or package-scoped fixtures torn down since are
            # memory the gate cannot see in the RSS (docs/pytest.md): they force a trim.
            last = self._last_item
            torn_down = last is None or (last.parent is not item.parent and _wider_fixtures_gone(last, item))
            clock = self._clocks.get("rss") or self._clock("rss")
            clock.checkpoint(force=torn_down)
            self._last_item = item
        if plan.measure and plan.include_fixtures:
            self._begin(item, item.stash[_STATE])

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Result[None], None]:
        state = item.stash[_STATE] if _STATE in item.stash else None
        if state is None:  # setup did not run through us
            yield
            return
        plan = state.plan
        restore = None
        if plan.leak is not None:
            restore = self._wrap_for_leaks(item, plan, state)
        if plan.measure and state.span is None:
            self._begin(item, state)
        meter = item.stash[METER] if METER in item.stash else None
        if meter is not None:
            meter.reset()
        try:
            yield
        finally:
            self._end(state)
            if restore is not None:
                restore()

    def _wrap_for_leaks(self, item: pytest.Item, plan: Plan, state: _State) -> Callable[[], None] | None:
        func = getattr(item, "obj", None)
        if func is None or not isinstance(item, pytest.Function):
            state.leak_fail = "no_leaks applies to Python test functions only"
            return None
        import inspect

        if inspect.iscoroutinefunction(func):
            state.leak_fail = "no_leaks cannot repeat an async test body; call assert_no_leaks yourself"
            return None
        leak = dict(plan.leak or {})
        config = self.config

        def repeated(*args: object, **kwargs: object) -> None:
            from hivemem._profile.leaks import DEFAULT_TOLERANCE, describe_leak, find_leaks, refleak, screen

            tolerance = DEFAULT_TOLERANCE if leak["tolerance"] is None else leak["tolerance"]
            subtests = _SubtestsOnce(item, kwargs)
            body = _each_call_fresh(func, config, subtests)
            with _WarningsOnce(), subtests:
                # At full speed first: a body that kept no new block and no malloc bytes on
                # two measured repetitions cannot leak, and tracing it would cost up to 6x.
                quick = screen(
                    body,
                    warmup=leak["warmup"],
                    repeat=leak["repeat"],
                    tolerance=tolerance,
                    args=args,
                    kwargs=kwargs,
                )
                if quick is not None and quick.clear:
                    state.leak = {"leaking": False, "method": "screen", **quick.to_dict()}
                    return
                report = find_leaks(
                    body,
                    warmup=leak["warmup"],
                    repeat=leak["repeat"],
                    tolerance=tolerance,
                    args=args,
                    kwargs=kwargs,
                    types=leak["types"],
                )
            summary = {
                "leaking": refleak(report),
                "method": "tracemalloc",
                "per_run": list(report.per_run),
                "per_run_blocks": list(report.per_run_blocks),
                "warmup_runs": list(report.warmup_runs),
                "bytes_per_call": report.bytes_per_call,
                "tolerance": report.tolerance,
                "verdict": report.verdict,
                "seconds": report.seconds + (quick.seconds if quick is not None else 0.0),
                "growing_types": [t.to_dict() for t in report.growing_types],
                "growing_sites": [s.to_dict() for s in report.growing_sites],
            }
            state.leak = summary
            if summary["leaking"]:
                state.leak_fail = describe_leak(report, what="the test body")

        item.obj = repeated

        def restore() -> None:
            item.obj = func

        return restore

    # ------------------------------------------------------------------ judging
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Result[pytest.TestReport], None]:
        outcome = yield
        when = call.when
        if when == "teardown":
            return
        report = outcome.get_result()
        if when == "setup" and report.outcome == "passed":
            return
        stash = item.stash
        state = stash[_STATE] if _STATE in stash else None
        blocks = stash[BLOCKS] if BLOCKS in stash else None
        if state is None and not blocks:
            return
        if when == "setup":
            if state is None or state.span is None:
                return
            self._end(state)  # setup failed or skipped inside a measured span
        data: dict[str, Any] = {}
        result = leak = leak_fail = None
        if state is not None:
            result, leak, leak_fail = state.result, state.leak, state.leak_fail
            state.result = state.leak = state.leak_fail = None
            if result is not None:
                data.update(result.to_dict())
                data["source"] = state.plan.source
                if result.kind == "rss":
                    data["trimmed"] = state.trimmed
        if blocks:
            data["blocks"] = list(blocks)
        if leak is not None:
            data["leak"] = leak
        if data:
            report.__dict__["hivemem"] = data  # travels to the xdist controller with the report
        failures = []
        if result is not None and result.exceeded:
            failures.append(result.explain(hint=_rerun_hint(result)))
        if leak_fail is not None:
            failures.append(leak_fail)
        if not failures:
            return
        text = "\n\n".join(failures)
        if report.outcome == "passed" and not hasattr(report, "wasxfail"):
            report.outcome = "failed"
            report.longrepr = text
        else:
            report.sections.append(("hivemem", text))

    # ------------------------------------------------------------------ collecting and reporting
    def record(self, report: pytest.TestReport) -> None:
        """Fold one report into its test's record (``_Recorder`` calls it for every report)."""
        if hasattr(report, "context"):  # a subtest's report: its test's own report follows
            return
        rec = self.records.get(report.nodeid)
        if rec is None:
            rec = self.records[report.nodeid] = {
                "nodeid": report.nodeid,
                "outcome": "passed",
                "duration": 0.0,
                "peak": None,
                "kind": None,
                "limit": None,
            }
        rec["duration"] += report.duration
        data = getattr(report, "hivemem", None)
        if data:
            rec.update({k: v for k, v in data.items() if k not in ("seconds",)})
            rec["body_seconds"] = data.get("seconds")
        worker = getattr(report, "node", None)
        if worker is not None and getattr(worker, "gateway", None) is not None:
            rec["worker"] = worker.gateway.id
        if report.when == "call":
            if report.outcome == "passed" and hasattr(report, "wasxfail"):
                rec["outcome"] = "xpassed"
            elif report.outcome == "skipped" and hasattr(report, "wasxfail"):
                rec["outcome"] = "xfailed"
            else:
                rec["outcome"] = report.outcome
        elif report.outcome == "failed":
            rec["outcome"] = "error"
        elif report.outcome == "skipped" and report.when == "setup":
            rec["outcome"] = "skipped"

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker or not self.report_path:
            return
        path = str(self.report_path)
        doc = self._document()
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        if path.lower().endswith((".html", ".htm")):
            text = _html(doc)
        else:
            import json

            text = json.dumps(doc, indent=2, sort_keys=False)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        self.report_summary = doc["summary"]

    def _document(self) -> dict[str, Any]:
        import platform

        import hivemem

        tests = sorted(self.records.values(), key=lambda r: r["nodeid"])
        return {
            "hivemem": hivemem.__version__,
            "python": platform.python_version(),
            "platform": sys.platform,
            "default_limit": self.default_limit,
            "units": "bytes and seconds; peak is above the start of the measured block",
            "summary": _summary(tests),
            "tests": tests,
        }

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or not (self.top or self.report_summary):
            return
        from hivemem._sizes import format_size

        tr = terminalreporter
        tr.write_sep("=", "hivemem")
        if self.report_summary is not None:
            tr.write_line(f"report: {_summary_text(self.report_summary)}")
            tr.write_line(f"written to {self.report_path}")
        if not self.top:
            return
        measured = [r for r in self.records.values() if r.get("peak") is not None]
        measured.sort(key=lambda r: (-r["peak"], r["nodeid"]))
        if not measured:
            tr.write_line("no test was measured")
            return
        tr.write_line(
            f"heaviest {min(self.top, len(measured))} of {len(measured)} measured tests (peak above start):"
        )
        for rec in measured[: self.top]:
            limit = "" if rec.get("limit") is None else f" / limit {format_size(rec['limit'])}"
            tr.write_line(
                f"{format_size(rec['peak']):>11}  {rec['kind']:<6} {rec['duration']:7.3f}s  "
                f"{rec['outcome']:<7} {rec['nodeid']}{limit}"
            )


def _each_call_fresh(
    func: Callable[..., object], config: pytest.Config, subtests: _SubtestsOnce
) -> Callable[..., object]:
    """*func*, starting each call with pytest's log capture empty and the subtest count at 0.

    pytest keeps every log record of the call phase, and its text, for the
    report and for ``caplog``: a body that logs a warning would grow on
    every repetition. Each repetition now starts with empty handlers, as
    each test does, and the report shows the last repetition's log. On
    Python 3.10, unittest's record of each passed ``subTest`` is kept from
    the first repetition only (failures are all kept).
    """
    import functools

    plugin = config.pluginmanager.get_plugin("logging-plugin")
    handlers: list[Any] = [
        h
        for h in (getattr(plugin, "caplog_handler", None), getattr(plugin, "report_handler", None))
        if callable(getattr(h, "reset", None))
    ]

    # unittest before 3.11 keeps an entry per passed subTest in the running test's _Outcome.errors
    # until the test ends: the same subtests, once per repetition. The first repetition's stay.
    calls = [0]

    @functools.wraps(func)
    def body(*args: object, **kwargs: object) -> object:
        for handler in handlers:
            handler.reset()
        subtests.index = 0
        case = getattr(subtests.item, "_testcase", None)  # set while a unittest test runs
        found = getattr(getattr(case, "_outcome", None), "errors", None)
        errors: list[Any] | None = found if isinstance(found, list) else None
        start = len(errors) if errors is not None else 0
        try:
            return func(*args, **kwargs)
        finally:
            calls[0] += 1
            if errors is not None and calls[0] > 1:
                errors[start:] = [e for e in errors[start:] if e[1] is not None or e[0] is case]

    return body


class _WarningsOnce:
    """Show each distinct warning once across the repetitions of a leak check.

    pytest records every warning the call phase shows (``DeprecationWarning``
    is shown every time under pytest), so a body that warns would grow on
    every repetition. While this is active a warning already shown from the
    same place with the same text is dropped; at exit each distinct warning
    is passed once to the ``warnings.showwarning`` that was in place (pytest's
    recorder), so the summary lists it as for a single run. Warnings turned
    into errors by the filters raise as usual.
    """

    def __enter__(self) -> None:
        import warnings

        self.module = warnings
        self.shown: dict[tuple[object, ...], tuple[Any, ...]] = {}
        self.original = warnings.showwarning
        shown = self.shown

        def once(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: Any = None,
            line: str | None = None,
        ) -> None:
            key = (category, filename, lineno, str(message))
            if key not in shown:
                shown[key] = (message, category, filename, lineno, file, line)

        warnings.showwarning = once

    def __exit__(self, *exc: object) -> None:
        self.module.showwarning = self.original
        for args in self.shown.values():
            self.original(*args)
        self.shown.clear()


class _SubtestsOnce:
    """Report each subtest once across the repetitions of a leak check.

    pytest keeps a report per subtest (``unittest``'s ``subTest`` and the
    ``subtests`` fixture) for the terminal summary, so a body with subtests
    would grow on every repetition, and list each subtest once per
    repetition. Every repetition runs the same subtests in the same order,
    so while this is active the n-th subtest of a repetition is passed on
    only if no earlier repetition passed on an n-th subtest with the same
    outcome (the parameters are not compared: their text can hold object
    addresses that differ on every call).
    """

    def __init__(self, item: pytest.Item, kwargs: dict[str, Any]) -> None:
        self.item = item
        self.fixtures = [v for v in kwargs.values() if hasattr(v, "_ihook") and hasattr(v, "test")]
        self.seen: set[tuple[object, ...]] = set()
        self.index = 0

    def first(self, outcome: object) -> bool:
        """Whether the current subtest, with this outcome, is the first of its kind; counts it."""
        key = (self.index, outcome)
        self.index += 1
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def __enter__(self) -> _SubtestsOnce:
        original = getattr(self.item, "addSubTest", None)
        if original is not None:  # a unittest.TestCase method: pytest's result object is the item

            def add_subtest(test_case: Any, test: Any, exc_info: Any) -> None:
                failure = None if exc_info is None else (getattr(exc_info, "type", None) or exc_info[0])
                if self.first(failure):
                    original(test_case, test, exc_info)

            self.item.__dict__["addSubTest"] = add_subtest  # __exit__ pops it
        for fixture in self.fixtures:
            fixture._ihook = _LogreportOnce(fixture._ihook, self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.item.__dict__.pop("addSubTest", None)
        for fixture in self.fixtures:
            relay = fixture._ihook
            if isinstance(relay, _LogreportOnce):
                fixture._ihook = relay.relay
        self.seen.clear()


class _LogreportOnce:
    """A hook relay that passes a subtest report on to ``pytest_runtest_logreport`` once."""

    def __init__(self, relay: Any, once: _SubtestsOnce) -> None:
        self.relay = relay
        self.once = once

    def __getattr__(self, name: str) -> Any:
        return getattr(self.relay, name)

    def pytest_runtest_logreport(self, *, report: pytest.TestReport) -> None:
        if self.once.first(report.outcome):
            self.relay.pytest_runtest_logreport(report=report)


def _wider_fixtures_gone(last: pytest.Item, item: pytest.Item) -> bool:
    """Whether *last* used a class-, module- or package-scoped fixture that *item* does not (torn down)."""
    before, after = _wider_fixtures(last), _wider_fixtures(item)
    return before is None or after is None or not before <= after


def _wider_fixtures(item: pytest.Item) -> set[str] | None:
    # pytest's own record of the fixtures an item uses; None where it is not there.
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", None)
    if defs is None:
        return None
    return {name for name, fixturedefs in defs.items() if fixturedefs and fixturedefs[-1].scope in _WIDER}


_WIDER = ("class", "module", "package")


class _Recorder:
    """Hands every test report to the runner's records, for the report file and the summary."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.runner.record(report)


def _summary(tests: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's headline figures, from its per-test records (one source for JSON, HTML and terminal)."""
    measured = [t for t in tests if t.get("peak") is not None]
    worst = max(measured, key=lambda t: (t["peak"], t["nodeid"]), default=None)
    return {
        "tests": len(tests),
        "measured": len(measured),
        "with_limit": sum(1 for t in measured if t.get("limit") is not None),
        "over_limit": sum(1 for t in measured if t.get("exceeded")),
        "failed": sum(1 for t in tests if t.get("outcome") in ("failed", "error")),
        "worst_peak": None if worst is None else worst["peak"],
        "worst_peak_test": None if worst is None else worst["nodeid"],
    }


def _summary_text(summary: dict[str, Any]) -> str:
    from hivemem._sizes import format_size

    parts = [
        f"{summary['tests']} tests, {summary['measured']} measured, {summary['with_limit']} with a limit, "
        f"{summary['over_limit']} over it, {summary['failed']} failed or errored"
    ]
    if summary["worst_peak"] is not None:
        parts.append(f"worst peak {format_size(summary['worst_peak'])} ({summary['worst_peak_test']})")
    return "; ".join(parts)


def _rerun_hint(result: PeakMeasurement) -> str:
    from hivemem._sizes import format_size

    if result.label.startswith("memory_ceiling"):
        call = f'memory_ceiling("{format_size(result.limit)}", kind="python")'
    else:
        call = f'@pytest.mark.memory_limit("{format_size(result.limit)}", kind="python")'
    return f"rerun with {call} to see which lines allocate (Python allocations only)"


def ceiling_factory(item: pytest.Item) -> Callable[..., Ceiling]:
    """The callable the ``memory_ceiling`` fixture returns; records each block on *item*."""
    from hivemem._pytest.ceiling import Ceiling

    blocks: list[dict[str, Any]] = item.stash.setdefault(BLOCKS, [])

    def ceiling(limit: int | str, *, kind: str = "rss") -> Ceiling:
        label = f"memory_ceiling block {len(blocks) + 1}"
        hint = ""
        if kind == "rss":
            from hivemem._sizes import format_size, parse_size

            hint = (
                f'rerun with memory_ceiling("{format_size(parse_size(limit))}", kind="python") '
                "to see which lines allocate (Python allocations only)"
            )
        return Ceiling(limit, kind, None, label, on_result=lambda r: blocks.append(r.to_dict()), hint=hint)

    return ceiling


def _html(doc: dict[str, Any]) -> str:
    from html import escape

    from hivemem._sizes import format_size

    rows = []
    for rec in sorted(doc["tests"], key=lambda r: (-(r.get("peak") or 0), r["nodeid"])):
        peak = rec.get("peak")
        limit = rec.get("limit")
        over = limit is not None and peak is not None and peak > limit
        rows.append(
            "<tr{}><td>{}</td><td>{}</td><td class='n'>{}</td>"
            "<td class='n'>{}</td><td>{}</td><td class='n'>{:.3f}</td></tr>".format(
                " class='over'" if over else "",
                escape(rec["nodeid"]),
                escape(str(rec.get("outcome"))),
                escape(format_size(peak)),
                escape(format_size(limit)),
                escape(str(rec.get("kind") or "")),
                rec.get("duration") or 0.0,
            )
        )
    head = (
        "<tr><th>test</th><th>outcome</th><th>peak</th><th>limit</th><th>kind</th><th>duration (s)</th></tr>"
    )
    return (
        "<!doctype html><meta charset='utf-8'><title>hivemem test memory report</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px}"
        "td.n{text-align:right}tr.over{background:#fdd}</style>"
        f"<h1>hivemem test memory report</h1><p class='summary'>{escape(_summary_text(doc['summary']))}</p>"
        f"<p>hivemem {escape(str(doc['hivemem']))}, "
        f"Python {escape(str(doc['python']))} on {escape(str(doc['platform']))}; "
        f"peak is above the start of the measured block.</p>"
        f"<table>{head}{''.join(rows)}</table>"
    )
