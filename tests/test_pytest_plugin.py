"""The pytest plugin, driven through pytester: markers, fixtures, options, reports, xdist, inertness.

RSS figures come from the kernel's high-water mark of the process running
the inner session. Buffers are touched page by page, so a test that
allocates N MiB raises the peak by N MiB; measured noise is under 0.3 MiB
here, and the boundary cases sit 2 MiB either side of the limit (the stated
tolerance). tracemalloc figures are exact, so python-kind boundaries are
byte-tight.
"""

from __future__ import annotations

import json
import sys

import pytest

pytest_plugins = ["pytester"]

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux only")

MiB = 2**20

TOUCH = """
import threading
import pytest

MiB = 2**20


def touch(nbytes):
    buf = bytearray(nbytes)
    buf[::4096] = b"x" * len(range(0, nbytes, 4096))
    return buf
"""


# pytest-memray (a benchmark extra) adds its own bookkeeping to every inner session, and
# hypothesis's plugin costs ~2.5 s per in-process session here: neither is under test.
QUIET = ("-p", "no:memray", "-p", "no:hypothesispytest", "-p", "no:cacheprovider")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*QUIET, *args)


def run_fresh(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run the inner session in its own process: for tests whose outcome is a measured RSS peak.

    An rss peak is the whole process's high-water mark above its start, so in this
    session's process it would depend on what earlier tests left behind: cyclic garbage
    that a collection during the inner body frees (and hands back to the system, which
    offsets the body's growth), threads still running, glibc's thresholds raised by
    earlier inner sessions. Each test states its own tolerance (1 or 2 MiB).
    """
    return pytester.runpytest_subprocess(*QUIET, *args)


def outcomes(result: pytest.RunResult) -> dict[str, str]:
    """Map test name -> PASSED/FAILED/ERROR from `-v` output."""
    out: dict[str, str] = {}
    for line in result.outlines:
        parts = line.split()
        if len(parts) >= 2 and "::" in parts[0] and parts[1] in ("PASSED", "FAILED", "ERROR"):
            out.setdefault(parts[0].split("::", 1)[1], parts[1])
    return out


def test_markers_are_registered_from_one_table(pytester: pytest.Pytester) -> None:
    """`pytest --markers` lists both markers with their signatures; --strict-markers accepts them."""
    from hivemem.pytest_plugin import MARKERS

    result = run(pytester, "--markers")
    for signature, _ in MARKERS.values():
        result.stdout.fnmatch_lines([f"@pytest.mark.{signature}:*"])
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.memory_limit("1 GiB")
        def test_a():
            pass

        @pytest.mark.no_leaks
        def test_b():
            pass
        """
    )
    run(pytester, "--strict-markers").assert_outcomes(passed=2)


@linux_only
def test_rss_boundary_just_under_passes_just_over_fails(pytester: pytest.Pytester) -> None:
    """kind='rss': 24 MiB under a 26 MiB limit passes, under a 22 MiB limit fails (tolerance 2 MiB)."""
    pytester.makepyfile(
        TOUCH
        + """
@pytest.mark.memory_limit(26 * MiB)
def test_just_under():
    buf = touch(24 * MiB)
    del buf

@pytest.mark.memory_limit("22 MiB")
def test_just_over():
    buf = touch(24 * MiB)
    del buf
"""
    )
    result = run_fresh(pytester, "-v")
    assert outcomes(result) == {"test_just_under": "PASSED", "test_just_over": "FAILED"}
    result.stdout.fnmatch_lines(
        [
            "hivemem: test body peak 2?.? MiB is over the memory limit 22.0 MiB (kind='rss')",
            "  measured: * bytes, peak RSS of the whole process (every thread), above * at the start",
            f"  limit:    {22 * MiB} bytes; a block passes when peak <= limit",
            "  method:   kernel high-water mark*",
            '  hint:     rerun with @pytest.mark.memory_limit("22.0 MiB", kind="python") to see which lines*',
        ]
    )


@linux_only
def test_rss_peaks_do_not_depend_on_test_order(pytester: pytest.Pytester) -> None:
    """Memory glibc kept from a heavier earlier test is trimmed: descending sizes are each seen +- 1 MiB."""
    pytester.makepyfile(
        TOUCH
        + """
SIZES = [32, 24, 16, 8, 4]  # 32 MiB raises glibc's mmap threshold: the rest come from the heap

@pytest.mark.parametrize("n", SIZES, ids=[f"{i}_{n}" for i, n in enumerate(SIZES)])
def test_alloc(n):
    buf = touch(n * MiB)
    del buf
"""
    )
    run_fresh(pytester, "--hivemem-report=r.json").assert_outcomes(passed=5)
    doc = json.loads((pytester.path / "r.json").read_text())
    peaks = {int(t["nodeid"].rsplit("_", 1)[1].rstrip("]")): t["peak"] for t in doc["tests"]}
    for n, peak in peaks.items():
        assert abs(peak - n * MiB) <= MiB, (n, peak / MiB)


# Frees an mmapped 31 MiB block, which raises glibc's mmap threshold to that size (it stops at
# 32 MiB): from then on smaller blocks come from glibc's heap, and glibc keeps them when freed.
KEEP_FREED = """
_raise = bytearray(31 * MiB)
del _raise
"""


@linux_only
def test_fixture_memory_freed_at_teardown_is_counted_when_reused(pytester: pytest.Pytester) -> None:
    """A fixture's 24 MiB, freed at teardown and kept by glibc, count when the next test body reuses them."""
    pytester.makepyfile(
        TOUCH
        + KEEP_FREED
        + """
@pytest.fixture
def big():
    yield touch(24 * MiB)

@pytest.mark.memory_limit("64 MiB")
def test_1_fixture(big):
    pass

@pytest.mark.memory_limit("12 MiB")
def test_2_reuses():
    del touch(24 * MiB)[:]
"""
    )
    result = run_fresh(pytester, "-v")
    assert outcomes(result) == {"test_1_fixture": "PASSED", "test_2_reuses": "FAILED"}
    result.stdout.fnmatch_lines(["hivemem: test body peak 2?.? MiB is over the memory limit 12.0 MiB*"])


@linux_only
def test_module_fixture_freed_at_module_end_is_counted_when_reused(pytester: pytest.Pytester) -> None:
    """A module fixture's memory, freed when its module ends, counts when the next module's test reuses it."""
    pytester.makepyfile(
        test_1_module=TOUCH
        + KEEP_FREED
        + """
@pytest.fixture(scope="module")
def shared():
    yield touch(24 * MiB)

@pytest.mark.memory_limit("64 MiB")
def test_a(shared):
    pass

@pytest.mark.memory_limit("64 MiB")
def test_b(shared):
    pass
""",
        test_2_module=TOUCH
        + """
@pytest.mark.memory_limit("12 MiB")
def test_c():
    del touch(24 * MiB)[:]
""",
    )
    result = run_fresh(pytester, "-v")
    assert outcomes(result) == {"test_a": "PASSED", "test_b": "PASSED", "test_c": "FAILED"}


@linux_only
def test_small_tests_are_not_trimmed_before_each_baseline(pytester: pytest.Pytester) -> None:
    """Trims follow RSS growth: 60 small tests in two modules trim at most 3 times; 8 MiB freed trims."""
    small = """
@pytest.mark.parametrize("i", range(30))
def test_small(i):
    assert [i] * 10
"""
    pytester.makepyfile(
        test_1=TOUCH + KEEP_FREED + small,
        test_2=TOUCH
        + small
        + """
def test_y_frees():
    del touch(8 * MiB)[:]

def test_z_after():
    del touch(8 * MiB)[:]
""",
    )
    # A fresh process: the count must not depend on what this test session did before.
    result = pytester.runpytest_subprocess(*QUIET, "--memory-limit=1GiB", "--hivemem-report=r.json")
    result.assert_outcomes(passed=62)
    doc = json.loads((pytester.path / "r.json").read_text())
    tests = {t["nodeid"]: t for t in doc["tests"]}
    small_tests = [t for nodeid, t in tests.items() if "test_small" in nodeid]
    assert tests["test_1.py::test_small[0]"]["trimmed"]  # the session's first baseline always follows a trim
    # No class- or module-scoped fixture was torn down between the modules: no trim there.
    assert not tests["test_2.py::test_small[0]"]["trimmed"]
    # pytest's own bookkeeping grows the RSS by a few KiB a test: a trim every ~100 tests here.
    assert sum(t["trimmed"] for t in small_tests) <= 3, [t["nodeid"] for t in small_tests if t["trimmed"]]
    assert tests["test_2.py::test_z_after"]["trimmed"]  # test_y_frees left 8 MiB in glibc's keeping
    assert abs(tests["test_2.py::test_z_after"]["peak"] - 8 * MiB) <= MiB


def test_trim_gate_decisions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate on a scripted RSS: checkpoints trim past the margin or when forced; explicit blocks always."""
    from hivemem._pytest import meter as _pytest_meter

    margin = _pytest_meter.TRIM_MARGIN
    rss = [100 * MiB]
    clock = _pytest_meter._RssClock()
    trims: list[int] = []

    def trim() -> None:
        trims.append(rss[0])
        rss[0] -= freed[0]
        freed[0] = 0

    freed = [0]  # bytes glibc keeps that the next trim hands back
    monkeypatch.setattr(clock, "_rss", lambda: rss[0])
    monkeypatch.setattr(clock, "_trim", trim)
    monkeypatch.setattr(clock, "_fast_reset", lambda: True)
    monkeypatch.setattr(clock, "_sampled", False)
    monkeypatch.setattr(clock, "_hwm", lambda: rss[0])

    def checkpoint(*, force: bool = False) -> bool:
        n = len(trims)
        clock.checkpoint(force=force)
        return len(trims) > n

    assert checkpoint()  # no floor yet
    rss[0] += margin  # exactly the margin: kept
    assert not checkpoint()
    rss[0] += 1
    freed[0] = margin + 1
    assert checkpoint()  # past it: trimmed, and the floor is what the trim left
    assert rss[0] == 100 * MiB
    rss[0] -= 2 * MiB  # memory handed back to the system lowers the floor ...
    assert not checkpoint()
    rss[0] += margin + 1  # ... so growth from there trims, though it is under the old floor
    assert checkpoint()
    assert checkpoint(force=True)

    assert clock.begin(gated=True).trimmed  # the forced trim came after the last span began
    assert not checkpoint()
    n = len(trims)
    span = clock.begin(gated=True)  # right after a checkpoint: no growth, no trim
    assert len(trims) == n and not span.trimmed
    span.close()
    rss[0] += margin + 1  # fixture setup grew the RSS past the margin
    span = clock.begin(gated=True)
    assert len(trims) == n + 1 and span.trimmed
    span.close()
    span = clock.begin()  # an explicit block trims every time
    assert len(trims) == n + 2 and span.trimmed
    clock.reset(span)
    assert len(trims) == n + 3
    span.close()


def test_python_boundary_is_byte_tight(pytester: pytest.Pytester) -> None:
    """kind='python': 8 MiB passes under 8 MiB + 64 KiB and fails under exactly 8 MiB, naming its line."""
    pytester.makepyfile(
        test_py=TOUCH
        + """
@pytest.mark.memory_limit(8 * MiB + 64 * 1024, kind="python")
def test_just_under():
    buf = bytearray(8 * MiB)
    del buf

@pytest.mark.memory_limit(8 * MiB, kind="python")
def test_just_over():
    buf = bytearray(8 * MiB)  # the site the report must name
    del buf
"""
    )
    result = run(pytester, "-v")
    assert outcomes(result) == {"test_just_under": "PASSED", "test_just_over": "FAILED"}
    result.stdout.fnmatch_lines(
        [
            "hivemem: test body peak 8.0 MiB is over the memory limit 8.0 MiB (kind='python')",
            "  measured: * bytes, tracemalloc peak (Python allocators only)*",
            "  top allocation sites (*",
            "*8.0 MiB*2 blocks  test_py.py:19",
        ]
    )
    assert "hint:" not in result.stdout.str()


@linux_only
def test_other_threads_count_in_rss_mode(pytester: pytest.Pytester) -> None:
    """rss is the whole process: 32 MiB allocated by another thread during the body breaks a 16 MiB limit."""
    pytester.makepyfile(
        TOUCH
        + """
@pytest.mark.memory_limit("16 MiB")
def test_thread():
    t = threading.Thread(target=lambda: touch(32 * MiB))
    t.start()
    t.join()
"""
    )
    result = run_fresh(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["hivemem: test body peak 3?.? MiB is over the memory limit 16.0 MiB (kind='rss')"]
    )


def test_leak_marker_passes_a_plateau_and_fails_a_true_leak(pytester: pytest.Pytester) -> None:
    """no_leaks: a warm-up-then-plateau cache passes; a true leak fails with growth per run, types, sites."""
    pytester.makepyfile(
        test_leaks="""
import pytest

SETUPS = []
CALLS = [0]
_cache = {}
_leak = []


@pytest.fixture
def once():
    SETUPS.append(1)
    return "fixture value"


@pytest.mark.no_leaks(warmup=2, repeat=5)
def test_plateau(once):
    CALLS[0] += 1
    if len(_cache) < 2:
        _cache[len(_cache)] = bytearray(100_000)


def test_fixture_set_up_once_body_run_repeatedly():
    assert SETUPS == [1]
    assert CALLS[0] in (4, 7)  # 2 warm-ups + 2 quiet runs when the untraced screen settles it


class Leaky:
    pass


@pytest.mark.no_leaks(warmup=1, repeat=4)
def test_true_leak():
    _leak.append((Leaky(), bytearray(1000)))
"""
    )
    result = run(pytester, "-v")
    assert outcomes(result) == {
        "test_plateau": "PASSED",
        "test_fixture_set_up_once_body_run_repeatedly": "PASSED",
        "test_true_leak": "FAILED",
    }
    result.stdout.fnmatch_lines(
        [
            "hivemem: the test body leaks: memory grew on every one of 4 measured runs by more than*",
            "  growth per run:  +1.* KiB, +1.* KiB, +1.* KiB, +1.* KiB  (warm-up runs, not judged: *",
            "  growing types:",
            "    *Leaky * (+1)",
            "  growing allocation sites:",
            "*test_leaks.py:33",
        ]
    )


@linux_only
def test_memory_fixture_is_a_live_meter(pytester: pytest.Pytester) -> None:
    """`memory` gives peak/current/reset/usage in bytes; fixture setup before the body is not counted."""
    pytester.makepyfile(
        TOUCH
        + """
import hivemem

@pytest.fixture
def big():
    return touch(24 * MiB)

def test_meter(big, memory):
    assert memory.peak < 1 * MiB          # big's 24 MiB were set up before the body
    buf = touch(40 * MiB)                 # > 32 MiB: glibc always mmaps it, so free returns it
    assert abs(memory.current - 40 * MiB) < MiB
    del buf
    assert abs(memory.peak - 40 * MiB) < MiB
    assert abs(memory.current) < MiB
    memory.reset()
    assert memory.peak < MiB
    assert isinstance(memory.usage(), hivemem.MemoryUsage)
"""
    )
    run_fresh(pytester).assert_outcomes(passed=1)


@linux_only
def test_memory_ceiling_blocks_and_parametrized_limits(pytester: pytest.Pytester) -> None:
    """`memory_ceiling` blocks per test, each with its own limit and kind; limits per parametrized case."""
    pytester.makepyfile(
        TOUCH
        + """
@pytest.mark.parametrize(("mib", "limit"), [(4, "8MiB"), (16, "8MiB")])
def test_param(memory_ceiling, mib, limit):
    with memory_ceiling(limit):
        del touch(mib * MiB)[:]

def test_blocks(memory_ceiling):
    with memory_ceiling("30 MiB"):
        buf = touch(16 * MiB)
        del buf
    with memory_ceiling("1 MiB", kind="python"):
        small = [0] * 1000
    with memory_ceiling("4 MiB"):
        buf = touch(16 * MiB)
        del buf
"""
    )
    result = run_fresh(pytester, "-v")
    assert outcomes(result) == {
        "test_param[4-8MiB]": "PASSED",
        "test_param[16-8MiB]": "FAILED",
        "test_blocks": "FAILED",
    }
    result.stdout.fnmatch_lines(
        [
            "*hivemem: memory_ceiling block 3 peak 1?.? MiB is over the memory limit 4.0 MiB (kind='rss')",
            '*hint:     rerun with memory_ceiling("4.0 MiB", kind="python")*',
        ]
    )


@linux_only
def test_include_fixtures_counts_setup(pytester: pytest.Pytester) -> None:
    """include_fixtures=True measures fixture setup plus the body; the default measures the body only."""
    pytester.makepyfile(
        TOUCH
        + """
@pytest.fixture
def big():
    yield touch(24 * MiB)

@pytest.mark.memory_limit("12 MiB")
def test_body_only(big):
    pass

@pytest.mark.memory_limit("12 MiB", include_fixtures=True)
def test_with_fixtures(big):
    pass
"""
    )
    result = run_fresh(pytester, "-v")
    assert outcomes(result) == {"test_body_only": "PASSED", "test_with_fixtures": "FAILED"}
    result.stdout.fnmatch_lines(["hivemem: test body and fixture setup peak 2?.? MiB is over*"])


@linux_only
def test_default_limit_from_option_and_ini(pytester: pytest.Pytester) -> None:
    """--memory-limit (or the memory_limit ini key) caps unmarked tests; markers override; 'none' disables."""
    pytester.makepyfile(
        TOUCH
        + """
def test_unmarked():
    del touch(16 * MiB)[:]

@pytest.mark.memory_limit("64 MiB")
def test_marked():
    del touch(16 * MiB)[:]
"""
    )
    result = run_fresh(pytester, "-v", "--memory-limit=8MiB")
    assert outcomes(result) == {"test_unmarked": "FAILED", "test_marked": "PASSED"}
    pytester.makeini("[pytest]\nmemory_limit = 8 MiB\n")
    assert outcomes(run_fresh(pytester, "-v")) == {"test_unmarked": "FAILED", "test_marked": "PASSED"}
    assert outcomes(run_fresh(pytester, "-v", "--memory-limit=none")) == {
        "test_unmarked": "PASSED",
        "test_marked": "PASSED",
    }


def test_bad_sizes_and_arguments_are_reported(pytester: pytest.Pytester) -> None:
    """A bad --memory-limit is a usage error; a bad marker argument errors that test, naming the value."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.memory_limit("12 parsecs")
        def test_bad_size():
            pass

        @pytest.mark.memory_limit("1 MiB", kind="heap")
        def test_bad_kind():
            pass

        @pytest.mark.no_leaks(repeat=1)
        def test_bad_repeat():
            pass

        def test_fine():
            pass
        """
    )
    usage = run(pytester, "--memory-limit=lots")
    assert usage.ret == pytest.ExitCode.USAGE_ERROR
    usage.stderr.fnmatch_lines(["*--memory-limit / memory_limit: invalid size 'lots'*"])
    for zero in ("0", "0 MiB"):  # a limit of 0 would fail nearly every test: refused, not read as 'none'
        usage = run(pytester, f"--memory-limit={zero}")
        assert usage.ret == pytest.ExitCode.USAGE_ERROR
        usage.stderr.fnmatch_lines(
            [f"*--memory-limit / memory_limit: '{zero}' is a limit of 0 bytes*'none'*"]
        )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines_random(
        [
            "*invalid size '12 parsecs'*",
            "*invalid kind 'heap': expected 'rss' or 'python'*",
            "*no_leaks: repeat=1: expected a whole number between 2 and 1,000*",
        ]
    )


@linux_only
def test_report_json_html_and_summary(pytester: pytest.Pytester) -> None:
    """--hivemem-report writes per-test peak/duration/limit/outcome; --hivemem-top adds the summary."""
    pytester.makepyfile(
        TOUCH
        + """
@pytest.mark.memory_limit("8 MiB")
def test_heavy():
    del touch(16 * MiB)[:]

def test_light():
    pass
"""
    )
    default = run_fresh(pytester)
    assert "= hivemem =" not in default.stdout.str()
    result = run_fresh(pytester, "--hivemem-report=out/r.json", "--hivemem-top=1")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*= hivemem =*",
            "report: 2 tests, 2 measured, 1 with a limit, 1 over it, 1 failed or errored; "
            "worst peak 1?.? MiB (test_*.py::test_heavy)",
            f"written to {pytester.path / 'out' / 'r.json'}",
            "heaviest 1 of 2 measured tests (peak above start):",
            "*1?.? MiB  rss *failed  test_*.py::test_heavy / limit 8.0 MiB",
        ]
    )
    doc = json.loads((pytester.path / "out" / "r.json").read_text())
    summary = doc["summary"]
    assert abs(summary.pop("worst_peak") - 16 * MiB) < 2 * MiB
    assert summary == {
        "tests": 2,
        "measured": 2,
        "with_limit": 1,
        "over_limit": 1,
        "failed": 1,
        "worst_peak_test": "test_report_json_html_and_summary.py::test_heavy",
    }
    tests = {t["nodeid"].split("::")[1]: t for t in doc["tests"]}
    assert tests["test_heavy"]["outcome"] == "failed"
    assert tests["test_heavy"]["limit"] == 8 * MiB
    assert abs(tests["test_heavy"]["peak"] - 16 * MiB) < 2 * MiB
    assert tests["test_light"]["outcome"] == "passed"
    assert tests["test_light"]["limit"] is None
    assert tests["test_light"]["duration"] > 0
    html_run = run_fresh(pytester, "--hivemem-report=r.html")
    assert "= hivemem =" in html_run.stdout.str()  # where the report went is said even without --hivemem-top
    html = (pytester.path / "r.html").read_text()
    assert html.startswith("<!doctype html>")
    assert "<p class='summary'>2 tests, 2 measured, 1 with a limit, 1 over it, 1 failed or errored; " in html
    assert "test_heavy" in html
    assert "class='over'" in html


def test_plugin_is_inert_when_unused(pytester: pytest.Pytester) -> None:
    """Unused, nothing but the plugin module loads, no runner hooks in, and hivemem is not rewritten."""
    pytester.makeconftest(
        """
        import json, sys

        def pytest_sessionfinish(session):
            pm = session.config.pluginmanager
            with open("state.json", "w") as f:
                json.dump({
                    "modules": sorted(m for m in sys.modules if m.startswith("hivemem")),
                    "plugin": pm.get_plugin("hivemem") is not None,
                    "runner": pm.get_plugin("hivemem-runner") is not None,
                    "rewritten": "hivemem" in getattr(pm.rewrite_hook, "_must_rewrite", ()),
                }, f)
        """
    )
    pytester.makepyfile("def test_plain():\n    assert [dict(a=i) for i in range(1000)]\n")
    result = pytester.runpytest_subprocess(*QUIET)
    result.assert_outcomes(passed=1)
    state = json.loads((pytester.path / "state.json").read_text())
    assert state == {
        "modules": ["hivemem", "hivemem.pytest_plugin"],
        "plugin": True,
        "runner": False,
        "rewritten": False,  # hivemem's modules import without pytest's assertion rewriting
    }


@linux_only
def test_xdist_workers_measure_and_reports_merge(pytester: pytest.Pytester) -> None:
    """Under -n 2 each worker measures its own process; failures and the report arrive on the controller."""
    pytester.makepyfile(
        TOUCH
        + """
@pytest.mark.parametrize("i", range(6))
def test_many(i):
    del touch(4 * MiB)[:]

@pytest.mark.memory_limit("8 MiB")
def test_over():
    del touch(16 * MiB)[:]
"""
    )
    result = pytester.runpytest_subprocess(*QUIET, "-n", "2", "--hivemem-report=r.json")
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(["*hivemem: test body peak 1?.? MiB is over the memory limit 8.0 MiB*"])
    doc = json.loads((pytester.path / "r.json").read_text())
    assert len(doc["tests"]) == 7
    assert {t.get("worker") for t in doc["tests"]} == {"gw0", "gw1"}
    assert all(t["peak"] is not None for t in doc["tests"])
    over = next(t for t in doc["tests"] if t["nodeid"].endswith("test_over"))
    assert over["outcome"] == "failed"
    assert abs(over["peak"] - 16 * MiB) < 2 * MiB
