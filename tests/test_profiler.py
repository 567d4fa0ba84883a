"""hivemem.Profiler: samples, snapshots, top/diff, exact peaks, leak watch, overhead, the IPython magic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc

import pytest

import hivemem
from hivemem._profile.profiler import LeakWatch, Profiler
from hivemem.testing import FakeReader

from .conftest import linux_only, run_python


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def manual(reader: FakeReader, clock: FakeClock, **kwargs: object) -> Profiler:
    return Profiler(interval=None, reader=reader, clock=clock, **kwargs)  # type: ignore[arg-type]


def test_manual_samples_exact(reader: FakeReader) -> None:
    """With interval=None, a fake reader and a fake clock, every sample is exactly what was read."""
    clock = FakeClock()
    prof = manual(reader, clock).start()
    for _ in range(3):
        clock.now += 1
        reader.grow("10MB")
        prof.sample()
    prof.stop()
    tl = prof.timeline()
    mib = 1 << 20
    assert tl.times == (0.0, 1.0, 2.0, 3.0, 3.0)
    assert tl.rss == (500 * mib, 510 * mib, 520 * mib, 530 * mib, 530 * mib)
    assert tl.uss == () and tl.traced == ()
    assert len(tl.blocks) == 5 and all(b > 0 for b in tl.blocks)
    assert len(tl.gc) == 5 and all(len(g) == 3 for g in tl.gc)
    assert tl.duration == 3.0 and len(tl) == 5
    assert "5 samples over 3.00 s" in repr(tl)
    assert json.loads(tl.to_json())["rss"][-1] == 530 * mib


def test_peak_from_reader_reset_at_start(reader: FakeReader) -> None:
    """peak() is the reader's high-water mark since start (reset_peak at start), plus the sampled maximum."""
    clock = FakeClock()
    reader.set("900MB")
    reader.set("500MB")  # an old peak before profiling must not count
    prof = manual(reader, clock).start()
    reader.set("700MB")  # a spike between samples: only the exact peak sees it
    reader.set("600MB")
    clock.now += 1
    prof.sample()
    peak = prof.stop().peak()
    assert peak.rss == 700 << 20
    assert "reset_peak" in peak.rss_source
    assert peak.sampled_rss == 600 << 20 and peak.sampled_at == 1.0
    assert json.loads(peak.to_json())["rss"] == 700 << 20


def test_peak_not_exact_without_reset() -> None:
    """A reader without reset_peak() gives no exact peak and says why; the sampled maximum remains."""

    class NoReset:
        def rss(self) -> int:
            return 1000

        def usage(self) -> hivemem.MemoryUsage:
            return hivemem.MemoryUsage(rss=1000, peak=5000)

    prof = Profiler(interval=None, reader=NoReset()).start()
    peak = prof.stop().peak()
    assert peak.rss is None and "no reset_peak" in peak.rss_source
    assert peak.sampled_rss == 1000


def test_decimation_bounds_memory(reader: FakeReader) -> None:
    """Past max_samples every other sample is dropped and the stride doubles; columns stay aligned."""
    clock = FakeClock()
    prof = manual(reader, clock, max_samples=16).start()
    for i in range(1, 100):
        clock.now = 100.0 + i
        prof.sample()
    tl = prof.timeline()
    assert len(tl) < 16
    assert tl.stride >= 4
    assert list(tl.times) == sorted(tl.times)
    assert len(tl.gc) == len(tl.times) == len(tl.rss)
    prof.stop()


def test_marks_and_snapshot_marks(reader: FakeReader, registry: hivemem.Registry) -> None:
    """mark() and optimization passes put labelled marks on the timeline."""
    clock = FakeClock()
    prof = manual(reader, clock).start()
    clock.now += 2
    prof.mark("deploy")
    hivemem.MemoryGovernor(registry=registry, reader=reader).optimize()
    prof.stop()
    labels = [label for _, label in prof.timeline().marks]
    assert labels[0] == "deploy"
    assert any(label.startswith("optimize") for label in labels)


def test_leak_watch_suspects_steady_growth() -> None:
    """Linear growth with noise over 60 s is suspected; the evidence cites slope, CI and duration."""
    times = [float(t) for t in range(60)]
    values = [100_000_000 + 200_000 * t + (37_000 if t % 3 == 0 else -23_000) for t in range(60)]
    watch = LeakWatch(times, values, metric="rss")
    assert watch.suspected and bool(watch)
    assert watch.slope == pytest.approx(200_000, rel=0.05)
    assert watch.slope_ci[0] > 0
    assert "leak suspected" in watch.evidence and "60 samples" in watch.evidence
    assert json.loads(watch.to_json())["suspected"] is True


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ([100_000_000 + min(t, 40) * 500_000 for t in range(60)], "plateaued"),  # a cache that filled
        ([100_000_000 + (7_000 if t % 2 else -7_000) for t in range(60)], "no significant growth"),
        ([100_000_000 + 1_000 * t for t in range(60)], "growth below the threshold"),  # 60 KB in a minute
        ([100_000_000 + 2_000_000 * t for t in range(59)] + [100_500_000], "returned"),  # built, then freed
    ],
)
def test_leak_watch_no_false_alarm(values: list[int], why: str) -> None:
    """A plateau, pure noise, or growth under min_growth is not a leak, and the evidence says which."""
    watch = LeakWatch([float(t) for t in range(60)], values, metric="rss")
    assert not watch.suspected
    assert watch.evidence.startswith(why)


def test_leak_watch_needs_enough_evidence() -> None:
    """Fewer than 10 samples, or less than 10 s of them, never raise a suspicion."""
    short = LeakWatch([0.0, 1.0, 2.0], [0, 10**9, 2 * 10**9])
    assert not short.suspected and "not enough evidence" in short.evidence
    burst = LeakWatch([t / 10 for t in range(50)], [t * 10**8 for t in range(50)])
    assert not burst.suspected and "not enough evidence" in burst.evidence


def test_profiler_leak_watch_on_samples(reader: FakeReader) -> None:
    """Profiler.leak_watch scores its own samples: steady growth over 30 s is suspected."""
    clock = FakeClock()
    prof = manual(reader, clock).start()
    for _ in range(30):
        clock.now += 1
        reader.grow("1MB")
        prof.sample()
    prof.stop()
    watch = prof.leak_watch()
    assert watch.suspected and watch.slope == pytest.approx(1 << 20)
    with pytest.raises(hivemem.InvalidArgument, match="unknown metric"):
        prof.leak_watch("heap")


_kept: list[object] = []


def _allocate_here() -> None:
    _kept.append([bytearray(1000) for _ in range(200)])


def test_snapshots_top_and_diff() -> None:
    """With trace=True: snapshots, top() by line/file/traceback and diff() name this file's line."""
    assert not tracemalloc.is_tracing()
    with Profiler(trace=True, frames=3, interval=None) as prof:
        prof.snapshot("before")
        _allocate_here()
        prof.snapshot("after")
    assert not tracemalloc.is_tracing()  # the profiler started it, so it stopped it
    assert prof.snapshots == ("start", "before", "after", "stop")
    here = os.path.basename(__file__)
    top = prof.top(5, snapshot="after")
    assert top.rows[0][0].endswith(f"{here}:{_allocate_here.__code__.co_firstlineno + 1}")
    assert top.rows[0][1] >= 200 * 1000 and top.rows[0][2] >= 200
    assert prof.top(3, by="file").rows[0][0].endswith(here)
    tb = prof.top(3, by="traceback", snapshot="after").rows[0][0]
    assert " <- " in tb and tb.count(here) >= 2
    diff = prof.diff("before", "after")
    assert diff.rows[0][0] == top.rows[0][0] and diff.rows[0][1] >= 200 * 1000
    assert diff.total_diff >= 200 * 1000
    assert "SiteDiff 'before' -> 'after'" in repr(diff)
    assert json.loads(diff.to_json())["rows"][0]["size_diff"] >= 200 * 1000
    report = prof.report()
    assert report.top is not None and report.growth is not None
    assert report.peak.traced is not None and report.peak.traced >= 200 * 1000
    assert report.overhead.tracemalloc_memory and report.overhead.tracemalloc_memory > 0


_peak_holder: list[object] = []


def _build_peak() -> None:
    _peak_holder.append([bytearray(1000) for _ in range(5000)])  # ~5 MiB in 5000 blocks


def _after_peak() -> list[str]:
    return [str(i) for i in range(3000)]


def test_report_sites_come_from_the_peak_not_from_stop() -> None:
    """Sites freed before stop() still lead the report: a "peak" snapshot was kept while they lived."""
    assert not tracemalloc.is_tracing()
    with Profiler(trace=True, interval=None) as prof:
        _build_peak()
        prof.sample()  # traced memory doubled since "start": a "peak" snapshot is kept
        _peak_holder.clear()
        later = _after_peak()
        prof.sample()
    assert later
    assert prof.snapshots == ("start", "peak", "stop")
    peak_line = f"{os.path.basename(__file__)}:{_build_peak.__code__.co_firstlineno + 1}"
    report = prof.report()
    assert report.top is not None and report.top.label == "peak"
    assert report.top.rows[0][0].endswith(peak_line)
    assert report.top.rows[0][1] >= 5000 * 1000 and report.top.rows[0][2] >= 5000
    stop = prof.top(5, snapshot="stop")
    assert not any(row[0].endswith(peak_line) for row in stop.rows)  # what the report showed before
    peak = report.peak
    assert peak.sites == "peak" and peak.sites_traced == report.top.total
    assert peak.traced is not None and peak.sites_traced is not None
    assert 0.8 * peak.traced <= peak.sites_traced <= peak.traced
    assert "sites from snapshot 'peak'" in peak.sites_note and "of the exact traced peak" in peak.sites_note
    assert report.overhead.snapshots == 1 and report.overhead.snapshot_cpu > 0
    assert json.loads(peak.to_json())["sites"] == "peak"
    assert "snapshot peak" in [label for _, label in prof.timeline().marks]


def test_peak_snapshot_is_replaced_only_by_a_larger_one() -> None:
    """Growth of a quarter that has stopped, or a doubling, replaces "peak"; a smaller heap never does."""
    with Profiler(trace=True, interval=None) as prof:
        _build_peak()
        prof.sample()
        first = prof.peak().sites_traced
        prof.sample()  # no growth: nothing new
        assert prof.overhead().snapshots == 1
        _peak_holder.append([bytearray(1000) for _ in range(2000)])  # +40%
        prof.sample()  # still growing since the last sample: not yet
        assert prof.overhead().snapshots == 1
        prof.sample()  # stopped growing, 25% above the last "peak": the top of a plateau
        assert prof.overhead().snapshots == 2
        second = prof.peak().sites_traced
        _peak_holder.clear()
        prof.sample()
    assert first is not None and second is not None and second >= first + 1_900_000
    assert prof.report().peak.sites == "peak" and prof.report().top.total == second  # type: ignore[union-attr]


def test_check_peak_never_blocks_or_raises() -> None:
    """check_peak() does nothing when not due, tracing or running; it gives up while its lock is held."""
    prof = Profiler(trace=True, interval=None)
    assert prof.check_peak() is False  # not running
    with prof:
        assert prof.check_peak() is False  # nothing grew
        _build_peak()
        with prof._lock:  # as if a signal arrived inside the profiler's own critical section
            assert prof.check_peak() is False
        assert prof.check_peak() is True
        assert prof.check_peak() is False
        _peak_holder.clear()
    assert prof.check_peak() is False
    assert Profiler(trace=True, interval=None, peak_sites=False).start().check_peak() is False
    tracemalloc.stop()


def test_peak_sites_off_keeps_start_and_stop_only() -> None:
    """peak_sites=False takes no "peak" snapshot: only "start" and "stop" are kept."""
    with Profiler(trace=True, interval=None, peak_sites=False) as prof:
        _build_peak()
        prof.sample()
        _peak_holder.clear()
    assert prof.snapshots == ("start", "stop") and prof.overhead().snapshots == 0


def test_peak_snapshot_skipped_over_budget_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over its CPU budget, or when the copy of the traces would not fit the limit, it skips and says why."""
    from hivemem._measure import limits as _limits
    from hivemem._profile import profiler as _profiler

    monkeypatch.setattr(_profiler, "_PEAK_CPU_GRACE", -1.0)
    with Profiler(trace=True, interval=None) as prof:
        _build_peak()
        prof.sample()
        _peak_holder.clear()
    peak = prof.report().peak
    assert prof.overhead().snapshots == 0 and peak.sites != "peak"
    assert peak.sites_skipped == "its CPU budget was spent"
    assert "a later snapshot was skipped: its CPU budget was spent" in peak.sites_note
    monkeypatch.undo()

    monkeypatch.setattr(_limits, "memory_limit", lambda: hivemem.MemoryLimit(hivemem.rss(), "test"))
    with Profiler(trace=True, interval=None) as prof:
        _build_peak()
        prof.sample()
        _peak_holder.clear()
    skipped = prof.report().peak.sites_skipped or ""
    assert prof.overhead().snapshots == 0
    assert "traces at 160 bytes each would pass 90% of the memory limit" in skipped


@linux_only
def test_peak_checks_from_a_signal_handler_never_deadlock() -> None:
    """A 1 kHz SIGPROF tick calling check_peak() while the main thread marks the timeline (holding the
    profiler's lock) and a 1 kHz sampler snapshots too: the run ends, the sites are the program's."""
    out = run_python(
        """
        import time, hivemem
        from hivemem._cli import runner as _runner
        _runner.PROFILE_INTERVAL = 0.001
        prof = hivemem.Profiler(trace=True, interval=0.001).start()
        stop = _runner._peak_ticker(prof)
        t0 = time.monotonic()
        kept = []
        while time.monotonic() - t0 < 1.5:
            block = [bytearray(500) for _ in range(2000)]  # PEAK
            prof.mark("m")
            if len(kept) < 40:
                kept.append(block)
            else:
                kept.clear()
        stop()
        prof.stop()
        report = prof.report()
        print(report.top.rows[0][0], report.overhead.snapshots)
        """,
        timeout=120,
    )
    where, snapshots = out.split()
    assert where == "<string>:10" and int(snapshots) >= 1


def test_site_grouping_matches_tracemalloc_statistics() -> None:
    """Sites grouped by hivemem equal tracemalloc's own Snapshot.statistics(), for every grouping."""
    from hivemem._profile.profiler import _HERE, _group, _Sites, _where

    tracemalloc.start(4)
    try:
        held = [_secret_work(), [bytearray(i % 700) for i in range(20_000)], {i: str(i) for i in range(5000)}]
        snap = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert held
    sites = _Sites(0.0, _group(snap)[0], 0)
    kept = snap.filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, _HERE + "*"))
    )
    assert sites.total == sum(t.size for t in kept.traces)
    for by, key in (("lineno", "lineno"), ("file", "filename"), ("traceback", "traceback")):
        theirs = {}
        for stat in kept.statistics(key):
            frames = tuple((f.filename, f.lineno) for f in reversed(stat.traceback))
            where = frames[0][0] if by == "file" else frames[:1] if by == "lineno" else frames
            theirs[_where(where, by)] = (stat.size, stat.count)
        ours = {_where(k, by): (v[0], v[1]) for k, v in sites.grouped(by).items()}
        assert ours == theirs, by


def test_tracemalloc_left_on_when_already_tracing() -> None:
    """A profiler that did not start tracemalloc leaves it tracing."""
    tracemalloc.start()
    try:
        with Profiler(trace=True, interval=None):
            pass
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()


def test_snapshot_errors() -> None:
    """snapshot() without tracing raises Unavailable; unknown labels and keys raise InvalidArgument."""
    prof = Profiler(interval=None).start()
    with pytest.raises(hivemem.Unavailable, match="tracemalloc is not tracing"):
        prof.snapshot()
    prof.stop()
    with pytest.raises(hivemem.Unavailable, match="no tracemalloc snapshot"):
        prof.top()
    with Profiler(trace=True, interval=None) as traced:
        pass
    with pytest.raises(hivemem.InvalidArgument, match="no snapshot 'nope'"):
        traced.diff("nope")
    with pytest.raises(hivemem.InvalidArgument, match="by must be one of"):
        traced.top(by="size")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"interval": 0}, "interval=0: expected a number of seconds > 0"),
        ({"interval": "fast"}, "interval='fast': expected a number of seconds"),
        ({"interval": float("inf")}, "interval=inf: expected a number of seconds > 0 and <= 86400"),
        ({"interval": 10**400}, r"interval=1000.*: expected a number of seconds"),
        ({"interval": 1e12}, "interval=1000000000000.0: expected"),
        ({"trace": 1}, "trace=1: expected True or False"),
        ({"peak_sites": "yes"}, "peak_sites='yes': expected True or False"),
        ({"frames": 0}, "frames=0: expected a whole number between 1 and 65,535"),
        ({"frames": 70_000}, "frames=70000: expected a whole number between 1 and 65,535"),
        ({"max_samples": 4}, "max_samples=4: expected a whole number between 16 and"),
        ({"reader": object()}, "must have rss"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    """Bad constructor arguments raise InvalidArgument naming the value."""
    with pytest.raises(hivemem.InvalidArgument, match=match):
        Profiler(**kwargs)  # type: ignore[arg-type]


def test_start_twice_rejected(reader: FakeReader) -> None:
    """Starting a running profiler is an error; stopping twice is harmless."""
    prof = Profiler(interval=None, reader=reader).start()
    with pytest.raises(hivemem.InvalidArgument, match="already running"):
        prof.start()
    prof.stop()
    prof.stop()
    assert not prof.running


def test_thread_samples_and_reports_its_cost() -> None:
    """The sampling thread samples at the configured rate and accounts its own CPU time."""
    import time

    with Profiler(interval=0.01, uss=True) as prof:
        time.sleep(0.3)
        assert prof.running and "running" in repr(prof)
    tl = prof.timeline()
    assert len(tl) >= 4  # ~30 ticks expected; a loaded machine (load 12 on 2 cores seen) skips many
    assert len(tl.uss) == len(tl) and all(v > 0 for v in tl.uss)
    ov = prof.overhead()
    assert ov.samples >= len(tl) - 2 and ov.sampler_cpu > 0
    assert 0 < ov.core_fraction < 0.5 and ov.wall >= 0.3
    assert ov.tracemalloc_memory is None
    assert "of one core" in repr(ov)


@linux_only
def test_exact_peak_real_rss() -> None:
    """A 200 MB spike freed before stop() shows in the exact peak (VmHWM), within 10%; in a subprocess."""
    out = run_python(
        """
        import hivemem
        with hivemem.Profiler(interval=None) as prof:
            start = hivemem.rss()
            block = bytearray(200 * 2**20)
            block[::4096] = b"x" * len(block[::4096])
            del block
        p = prof.peak()
        print(p.rss - start, p.sampled_rss - start)
        """
    )
    spike, sampled = (int(v) for v in out.split())
    assert 0.9 * 200 * 2**20 <= spike <= 1.1 * 200 * 2**20
    assert sampled < 50 * 2**20  # the samples never saw the spike: only the kernel's mark did


@linux_only
def test_fork_child_sees_stopped_profiler() -> None:
    """After fork the child's profiler is not running (its sampling thread does not exist there)."""
    out = run_python(
        """
        import os, hivemem
        prof = hivemem.Profiler(interval=0.01).start()
        pid = os.fork()
        if pid == 0:
            os.write(1, b"child running=%d\\n" % prof.running)
            os._exit(0)
        os.waitpid(pid, 0)
        prof.stop()
        print("parent done")
        """
    )
    assert "child running=0" in out and "parent done" in out


def _secret_work() -> list[str]:
    return ["hunter2-TOP-SECRET-" + str(i) * 50 for i in range(2000)]


def test_reports_never_contain_object_contents() -> None:
    """Secrets allocated while profiling appear in no repr, HTML or JSON of the report or its parts."""
    with Profiler(trace=True, interval=None) as prof:
        prof.snapshot("a")
        held = _secret_work()
        prof.snapshot("b")
    report = prof.report()
    texts = [repr(report), report.to_json(), report.to_html(), report._repr_html_()]
    texts += [repr(prof.top(5, by="traceback")), repr(prof.diff("a", "b")), repr(prof.timeline())]
    for text in texts:
        assert "hunter2" not in text and "SECRET" not in text
    assert held


def test_report_json_round_trip(reader: FakeReader) -> None:
    """ProfileReport.to_json() is valid JSON with every part; to_html(path) writes the page."""
    clock = FakeClock()
    prof = manual(reader, clock).start()
    clock.now += 1
    prof.sample()
    report = prof.stop().report(advice=False)
    data = json.loads(report.to_json())
    assert set(data) == {"started", "timeline", "peak", "top", "growth", "leak", "overhead", "advice"}
    assert data["top"] is None and data["leak"]["suspected"] is False
    assert "ProfileReport: 3 samples" in repr(report)


# ----------------------------------------------------------------- IPython


def test_magic_profiles_a_cell_directly() -> None:
    """The magic function runs the cell through the given runner and returns a ProfileReport."""
    from hivemem._profile.ipython import hivemem_magic, parse_options

    ns: dict[str, object] = {}
    report = hivemem_magic(
        "--trace --top 3 --interval 0.01",
        "x = [bytearray(100) for _ in range(5000)]",
        run=lambda code: exec(code, ns),
    )
    assert isinstance(report, hivemem.ProfileReport)
    assert len(ns["x"]) == 5000  # type: ignore[arg-type]
    assert report.top is not None and len(report.top.rows) <= 3
    assert parse_options("--frames=5 --html out.html") == {
        "trace": False,
        "frames": 5,
        "interval": 0.05,
        "top": 10,
        "html": "out.html",
    }
    with pytest.raises(hivemem.InvalidArgument, match="unknown option"):
        parse_options("--fast")
    with pytest.raises(hivemem.InvalidArgument, match="needs a value"):
        parse_options("--top")
    with pytest.raises(hivemem.InvalidArgument, match="bad value"):
        parse_options("--top many")
    with pytest.raises(hivemem.InvalidArgument, match="unknown %hivemem command"):
        hivemem_magic("explode")
    assert isinstance(hivemem_magic("growth"), type(hivemem.growth()))


def test_load_ext_in_ipython(tmp_path: object) -> None:
    """%load_ext hivemem registers %%hivemem, which profiles a cell and can write the HTML report."""
    pytest.importorskip("IPython")
    out = run_python(
        f"""
        from IPython.core.interactiveshell import InteractiveShell
        sh = InteractiveShell.instance()
        sh.run_line_magic("load_ext", "hivemem")
        cell = "x = [str(i) for i in range(50000)]"
        r = sh.run_cell_magic("hivemem", "--trace --html {tmp_path}/cell.html", cell)
        print(type(r).__name__, len(sh.user_ns["x"]), r.top.rows[0][1] > 0)
        print(type(sh.run_line_magic("hivemem", "status")).__name__)
        """
    )
    assert out.split() == ["ProfileReport", "50000", "True", "Status"]
    assert os.path.getsize(f"{tmp_path}/cell.html") > 1000


def test_typed_magics_in_a_real_ipython_shell(tmp_path: object) -> None:
    """Cells typed as a user types them: %load_ext, %%hivemem (its sites at the peak), %hivemem top, and
    a cell that raises shows its error while the profiler and tracemalloc stop."""
    pytest.importorskip("IPython")
    out = run_python(
        """
        import json, tracemalloc
        from IPython.core.interactiveshell import InteractiveShell
        sh = InteractiveShell.instance()
        assert sh.run_cell("%load_ext hivemem").success
        cell = "%%hivemem --trace --top 3\\ndata = [bytearray(1000) for _ in range(8000)]\\ndel data\\n"
        r = sh.run_cell(cell)
        report = sh.user_ns["_"]  # the displayed output (a cell magic's value is not in r.result)
        bad = sh.run_cell("%%hivemem --trace\\nraise ValueError('cell failed')\\n")
        sh.run_cell("%hivemem top")
        top = sh.user_ns["_"]
        print(json.dumps({
            "ok": r.success, "type": type(report).__name__, "first": report.top.rows[0][0],
            "label": report.top.label, "rows": len(report.top.rows),
            "bad": type(bad.error_in_exec).__name__, "bad_msg": str(bad.error_in_exec),
            "tracing": tracemalloc.is_tracing(), "top": type(top).__name__,
        }))
        """
    )
    res = json.loads(out.strip().splitlines()[-1])
    assert res["ok"] and res["type"] == "ProfileReport" and res["rows"] == 3
    assert res["label"] == "peak" and res["first"].endswith(":1")  # the cell's line, freed before the end
    assert res["bad"] == "ValueError" and res["bad_msg"] == "cell failed"
    assert res["tracing"] is False and res["top"] == type(hivemem.top()).__name__


def test_ipython_command_line_runs_the_cell_magic() -> None:
    """python -m IPython --ext=hivemem -c '%%hivemem ...' profiles the cell and prints the report."""
    pytest.importorskip("IPython")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    env["PYTHONPATH"] = os.path.join(os.path.dirname(os.path.dirname(__file__)), "src")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "IPython",
            "--no-banner",
            "--colors=NoColor",
            "--ext=hivemem",
            "-c",
            "%%hivemem --trace --top 2\nx = [bytearray(1000) for _ in range(5000)]\n",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ProfileReport:" in proc.stdout and "TopSites by lineno" in proc.stdout
    assert "<ipython-input-" in proc.stdout  # the cell's own line is the top site


def test_profiler_module_not_loaded_by_import() -> None:
    """import hivemem does not load the profiler, threading or tracemalloc's Python module."""
    out = run_python(
        "import sys, hivemem; print(sorted(m for m in sys.modules if m in "
        "('hivemem._profile.profiler', 'threading', 'tracemalloc', 'hivemem._profile.inspect', 'pympler')))"
    )
    assert out.strip() == "[]", out
    assert sys.modules.get("hivemem._profile.profiler") is not None  # loaded here by the tests above
