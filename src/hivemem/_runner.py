"""``hivemem run``: run a script as ``__main__`` and report its memory, measured.

The script runs in this interpreter (as ``python script.py`` would), so the
governor and the profiler see its heap. The report holds RSS at start, the
exact peak (the kernel's high-water mark, reset at start), RSS at exit, the
script's exit status and CPU time, and what the governor, the profiler and
the final ``optimize()`` pass did when they were asked for.
"""

from __future__ import annotations

import os
import sys
import time

import hivemem
from hivemem._sizes import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["NotAvailable", "Run", "RunResult", "prepare", "render_text"]

REPORT_KIND = "hivemem-run"


class NotAvailable(Exception):
    """A feature the user asked for is missing from this build or platform."""


def _feature(name: str, flag: str, issue: str) -> object:
    if name not in hivemem._LAZY:
        raise NotAvailable(
            f"{flag} needs hivemem.{name}, which this build of hivemem does not have yet ({issue})"
        )
    return getattr(hivemem, name)


class RunResult:
    """What one run measured; ``to_dict()`` is the JSON report."""

    def __init__(self, data: dict[str, object], exit_status: int, profile: object = None) -> None:
        self.data = data
        self.exit_status = exit_status
        #: the profiler's own report (``hivemem.ProfileReport``) when run with --profile
        self.profile = profile

    def to_dict(self) -> dict[str, object]:
        return dict(self.data)


class Run:
    """A prepared run: options checked, features found; :meth:`execute` runs the script."""

    def __init__(self, *, govern: bool, profile: bool, target: int | None, interval: float | None) -> None:
        self.govern, self.profile, self.target, self.interval = govern, profile, target, interval
        self._govern_fn: Any = _feature("govern", "--govern", "the background governor") if govern else None
        self._profiler_cls: Any = _feature("Profiler", "--profile", "the profiler") if profile else None

    def _start_governor(self) -> object:
        kwargs: dict[str, object] = {}
        if self.interval is not None:
            kwargs["interval"] = self.interval
        # --target is the governor's budget; without it, govern()'s default (the memory limit)
        return self._govern_fn(self.target, **kwargs)

    def execute(self, path: str, args: Sequence[str], *, module: bool = False) -> RunResult:
        """Run *path* (a file, or a module name when *module*) with *args* as ``sys.argv[1:]``."""
        import runpy

        data: dict[str, object] = {
            "kind": REPORT_KIND,
            "script": path,
            "module": module,
            "argv": list(args),
            "pid": os.getpid(),
            "python": sys.version.split()[0],
            "target": self.target,
            "options": {"govern": self.govern, "profile": self.profile, "interval": self.interval},
        }
        saved_argv, saved_path0 = sys.argv[:], sys.path[0] if sys.path else None
        sys.argv = [path, *args]
        if not module:
            sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
        hivemem.reset_peak()
        start = hivemem.usage()
        governor = self._start_governor() if self.govern else None
        profiler: Any = self._profiler_cls(trace=True) if self._profiler_cls is not None else None
        status, error = 0, None
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            if profiler is not None:
                profiler.__enter__()
            try:
                if module:
                    runpy.run_module(path, run_name="__main__", alter_sys=True)
                else:
                    runpy.run_path(path, run_name="__main__")
            finally:
                if profiler is not None:
                    profiler.__exit__(None, None, None)
        except SystemExit as exc:
            status = _exit_status(exc.code)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                status = 130
            else:
                import traceback

                traceback.print_exc()
                status = 1
            error = f"{type(exc).__name__}: {exc}"
        finally:
            sys.argv = saved_argv
            if not module and saved_path0 is not None:
                try:
                    sys.path.remove(os.path.dirname(os.path.abspath(path)))
                except ValueError:
                    pass
        data["seconds"] = time.perf_counter() - t0
        data["cpu_seconds"] = time.process_time() - c0
        profile_report = None
        if profiler is not None:
            try:
                profile_report = profiler.report()
                data["profile"] = profile_report.to_dict()
            except Exception as exc:  # never lose the run's report over the profile
                data["profile"] = {"error": f"{type(exc).__name__}: {exc}"}
        end = hivemem.usage()
        data["exit_status"] = status
        data["error"] = error
        data["start"] = start.to_dict()
        data["end"] = end.to_dict()
        data["peak"] = end.peak
        if governor is not None:
            data["governor"] = _governor_summary(governor)
        if self.target is not None:
            data["optimize"] = hivemem.optimize(target=self.target).to_dict()
        try:
            data["limit"] = hivemem.memory_limit().to_dict()
        except Exception as exc:  # pragma: no cover - never break the report
            data["limit"] = {"error": str(exc)}
        return RunResult(data, status, profile_report)


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _to_dict(obj: object) -> object:
    for attr in ("report", "result"):
        fn = getattr(obj, attr, None)
        if callable(fn):
            try:
                obj = fn()
            except Exception:
                pass
            break
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        try:
            return to_dict()
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
    return repr(obj)


def _governor_summary(gov: object) -> dict[str, object]:
    stop = getattr(gov, "stop", None)
    if callable(stop):
        try:
            stop()
        except Exception:
            pass
    events = [_to_dict(e) for e in list(getattr(gov, "events", ()) or ())]
    return {"repr": repr(gov), "events": events}


def prepare(
    *, govern: bool = False, profile: bool = False, target: int | None = None, interval: float | None = None
) -> Run:
    """Check the options and find the features; raises :class:`NotAvailable` for a missing one."""
    if interval is not None and not interval > 0:
        raise NotAvailable(f"--interval {interval!r}: expected a number of seconds > 0")
    return Run(govern=govern, profile=profile, target=target, interval=interval)


def render_text(report: dict[str, Any]) -> str:
    """A short terminal summary of a run report."""
    start = report.get("start") or {}
    end = report.get("end") or {}
    assert isinstance(start, dict) and isinstance(end, dict)
    script = report.get("script")
    lines = [
        f"hivemem run {script}: exit status {report.get('exit_status')} after "
        f"{float(report.get('seconds') or 0):.2f} s ({float(report.get('cpu_seconds') or 0):.2f} s CPU)",
        f"  RSS at start {format_size(start.get('rss'))}, peak {format_size(report.get('peak'))}, "
        f"at exit {format_size(end.get('rss'))}",
    ]
    if report.get("error"):
        lines.append(f"  the script raised {report['error']}")
    gov = report.get("governor")
    if isinstance(gov, dict):
        events = gov.get("events") or []
        lines.append(f"  governor: {gov.get('repr')}, {len(events)} events")
    opt = report.get("optimize")
    if isinstance(opt, dict):
        before = (opt.get("before") or {}).get("rss")
        after = (opt.get("after") or {}).get("rss")
        reached = "reached" if opt.get("reached") else "NOT reached"
        lines.append(
            f"  final optimize(target={format_size(report.get('target'))}): "
            f"{format_size(before)} -> {format_size(after)} ({reached})"
        )
        if opt.get("explanation"):
            lines.append(f"  why: {opt['explanation']}")
    if isinstance(report.get("profile"), dict):
        lines.append("  profile: recorded (see the JSON or HTML report)")
    return "\n".join(lines)
