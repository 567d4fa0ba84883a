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
from hivemem._errors import NotAvailable
from hivemem._sizes import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

__all__ = ["NotAvailable", "Run", "RunResult", "prepare", "render_text"]

REPORT_KIND = "hivemem-run"
#: Seconds between the profiler's samples under `hivemem run --profile`.
PROFILE_INTERVAL = 0.01


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
        # the governor's clock is monotonic: this pair turns its event times into wall-clock times
        started, mono0 = time.time(), time.monotonic()
        data["started"] = started
        governor = self._start_governor() if self.govern else None
        # 100 Hz: a peak that lives 10 ms is still sampled, so its allocation sites are kept
        profiler: Any = (
            self._profiler_cls(trace=True, interval=PROFILE_INTERVAL) if self._profiler_cls else None
        )
        status, error = 0, None
        # The script's globals, kept until the report is done: in `python script.py` they live until
        # the interpreter exits, so the "stop" snapshot and RSS at exit see what the script kept.
        script_globals: dict[str, object] | None = None
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            stop_ticker = None
            if profiler is not None:
                profiler.__enter__()
                stop_ticker = _peak_ticker(profiler)
            try:
                if module:
                    script_globals = runpy.run_module(path, run_name="__main__", alter_sys=True)
                else:
                    script_globals = runpy.run_path(path, run_name="__main__")
            finally:
                if stop_ticker is not None:
                    stop_ticker()
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
            data["governor"] = _governor_summary(governor, wall_offset=started - mono0)
        if self.target is not None:
            data["optimize"] = hivemem.optimize(target=self.target).to_dict()
        del script_globals
        try:
            data["limit"] = hivemem.memory_limit().to_dict()
        except Exception as exc:  # pragma: no cover - never break the report
            data["limit"] = {"error": str(exc)}
        return RunResult(data, status, profile_report)


def _peak_ticker(profiler: Any) -> Callable[[], None] | None:
    """Call ``profiler.check_peak()`` every PROFILE_INTERVAL of CPU time, in the main thread.

    The sampling thread cannot see a peak that the main thread builds in one
    long C call and frees a few milliseconds later: it gets the GIL only at the
    switch interval (5 ms). A SIGPROF handler runs at the first bytecode after
    that C call returns, while the memory is still held. Skipped (the thread
    still samples) where there is no ``setitimer``, off the main thread, or
    when the script's process already uses SIGPROF.
    """
    import signal
    import threading

    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return None
    if signal.getitimer(signal.ITIMER_PROF) != (0.0, 0.0):
        return None

    def on_tick(signum: int, frame: object) -> None:
        profiler.check_peak(sampled=True)

    try:
        previous = signal.signal(signal.SIGPROF, on_tick)
        signal.siginterrupt(signal.SIGPROF, False)  # SA_RESTART: the script's system calls are not cut short
        signal.setitimer(signal.ITIMER_PROF, PROFILE_INTERVAL, PROFILE_INTERVAL)
    except (OSError, ValueError):
        return None

    def stop() -> None:
        signal.setitimer(signal.ITIMER_PROF, 0.0, 0.0)
        if signal.getsignal(signal.SIGPROF) is on_tick:
            signal.signal(signal.SIGPROF, previous)

    return stop


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


def _governor_summary(gov: object, *, wall_offset: float) -> dict[str, object]:
    """Stop the governor; its repr and events, each with ``wall_time`` (seconds since the epoch)."""
    stop = getattr(gov, "stop", None)
    if callable(stop):
        try:
            stop()
        except Exception:
            pass
    events = []
    for event in list(getattr(gov, "events", ()) or ()):
        entry = _to_dict(event)
        if isinstance(entry, dict) and isinstance(entry.get("time"), (int, float)):
            entry["wall_time"] = entry["time"] + wall_offset
        events.append(entry)
    return {"repr": repr(gov), "events": events}


def prepare(
    *, govern: bool = False, profile: bool = False, target: int | None = None, interval: float | None = None
) -> Run:
    """Check the options and find the features; raises :class:`NotAvailable` for a missing one and
    :class:`hivemem.InvalidArgument` for a bad interval."""
    from hivemem import _validate

    if interval is not None:
        interval = _validate.seconds("--interval", interval)
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
    profile = report.get("profile")
    if isinstance(profile, dict):
        lines += _profile_lines(profile)
    return "\n".join(lines)


def _profile_lines(profile: dict[str, Any], n: int = 5) -> list[str]:
    """The top allocation sites at the traced peak, with the snapshot they come from."""
    if profile.get("error"):
        return [f"  profile: failed ({profile['error']})"]
    peak = profile.get("peak") or {}
    top = profile.get("top") or {}
    rows = top.get("rows") or []
    if not rows:
        return ["  profile: no allocation sites recorded"]
    traced = peak.get("traced")
    head = f"  top allocation sites in snapshot {top.get('label')!r}"
    if peak.get("sites_at") is not None:
        head += f" at {float(peak['sites_at']):.2f} s"
    head += f", {format_size(top.get('total'))} traced"
    if isinstance(traced, int) and traced:
        head += f" (exact traced peak {format_size(traced)})"
    if peak.get("sites_skipped"):
        head += f"; a later snapshot was skipped: {peak['sites_skipped']}"
    lines = [head + ":"]
    over = profile.get("overhead") or {}
    own = []
    if over.get("tracemalloc_memory"):
        own.append(f"tracemalloc {format_size(over['tracemalloc_memory'])}")
    if over.get("snapshot_rss"):
        own.append(f"up to {format_size(over['snapshot_rss'])} while a peak snapshot was taken")
    if own:
        lines.insert(0, f"  the RSS figures include the profiler's own memory: {', '.join(own)}")
    for row in rows[:n]:
        size, count = format_size(row.get("size")), int(row.get("count") or 0)
        lines.append(f"    {size:>10}  {count:>9,} blocks  {row.get('where')}")
    return lines
