"""hivemem.testing: assert_peak_below, assert_no_leaks, MemoryMeter and PeakMeasurement."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import hivemem
from hivemem.testing import FakeReader, MemoryMeter, PeakMeasurement, assert_no_leaks, assert_peak_below

from .conftest import linux_only, run_python

MiB = 2**20


@pytest.mark.parametrize(("rise", "fails"), [(10 * MiB - 1, False), (10 * MiB, False), (10 * MiB + 1, True)])
def test_boundary_is_peak_le_limit(rise: int, fails: bool) -> None:
    """A block passes when its peak is <= the limit and fails one byte above it (exact, fake reader)."""
    reader = FakeReader("100MB")
    if fails:
        with pytest.raises(hivemem.MemoryCeilingExceeded) as info:
            with assert_peak_below("10MB", reader=reader):
                reader.grow(rise)
                reader.free(rise)
        assert info.value.usage == rise
        assert info.value.limit == 10 * MiB
        assert info.value.measurement.peak == rise
    else:
        with assert_peak_below("10MB", reader=reader) as block:
            reader.grow(rise)
            reader.free(rise)
        assert block.result is not None
        assert block.result.peak == rise
        assert not block.result.exceeded


def test_ceiling_error_is_an_assertion_and_a_limit_error() -> None:
    """MemoryCeilingExceeded is an AssertionError (a test failure) and a MemoryLimitExceeded."""
    assert issubclass(hivemem.MemoryCeilingExceeded, AssertionError)
    assert issubclass(hivemem.MemoryCeilingExceeded, hivemem.MemoryLimitExceeded)
    assert issubclass(hivemem.LeakDetected, AssertionError)
    assert issubclass(hivemem.LeakDetected, hivemem.HivememError)


def test_exception_in_block_propagates_unchanged() -> None:
    """An exception raised inside the block wins over a ceiling breach, and is not wrapped."""
    reader = FakeReader("100MB")
    with pytest.raises(KeyError, match="mine"):
        with assert_peak_below("1MB", reader=reader):
            reader.grow("50MB")
            raise KeyError("mine")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"limit": "12 parsecs"}, hivemem.InvalidSize),
        ({"limit": -1}, hivemem.InvalidSize),
        ({"limit": "1MB", "kind": "heap"}, hivemem.InvalidArgument),
        ({"limit": "1MB", "kind": "python", "reader": FakeReader()}, hivemem.InvalidArgument),
    ],
)
def test_bad_arguments_are_rejected_before_measuring(kwargs: dict[str, object], error: type) -> None:
    """Bad sizes and kinds raise hivemem errors naming the value, before any clock is touched."""
    with pytest.raises(error):
        with assert_peak_below(**kwargs):  # type: ignore[arg-type]
            pass


def test_meter_peak_current_reset_with_fake_reader() -> None:
    """MemoryMeter reports peak and current relative to its baseline; reset() starts again."""
    reader = FakeReader("100MB")
    meter = MemoryMeter(reader=reader)
    reader.grow("30MB")
    reader.free("20MB")
    assert meter.peak == 30 * MiB
    assert meter.current == 10 * MiB
    meter.reset()
    assert meter.peak == 0
    assert meter.current == 0
    assert meter.baseline == 110 * MiB
    reader.free("15MB")
    assert meter.current == -15 * MiB
    assert meter.peak == 0
    assert meter.usage().rss == 95 * MiB
    result = meter.stop()
    assert (result.kind, result.peak, result.limit) == ("rss", 0, None)
    with pytest.raises(hivemem.InvalidArgument, match="stopped"):
        meter.peak  # noqa: B018


def test_nested_meters_never_lose_a_peak() -> None:
    """A reset by one meter (which resets the shared mark) does not hide a peak another meter saw."""
    reader = FakeReader("100MB")
    outer = MemoryMeter(reader=reader)
    reader.grow("40MB")
    reader.free("40MB")
    inner = MemoryMeter(reader=reader)  # resets the reader's peak mark
    reader.grow("5MB")
    inner.reset()
    reader.free("5MB")
    assert inner.peak == 0
    assert outer.peak == 40 * MiB
    inner.stop()
    assert outer.stop().peak == 40 * MiB


def test_meter_repr_and_context_manager() -> None:
    """The meter shows live figures in its repr and stops at the end of a with block."""
    reader = FakeReader("10MB")
    with MemoryMeter(reader=reader) as meter:
        reader.grow("2MB")
        assert repr(meter) == "MemoryMeter(kind='rss', peak='2.0 MiB', current='2.0 MiB')"
    assert repr(meter) == "MemoryMeter(kind='rss', stopped)"


sizes = st.integers(min_value=0, max_value=2**48)


@given(
    kind=st.sampled_from(["rss", "python"]),
    peak=sizes,
    baseline=sizes,
    limit=st.none() | sizes,
    seconds=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    sites=st.lists(st.tuples(st.text(max_size=20), sizes, st.integers(0, 10**9)), max_size=4),
    label=st.text(max_size=20),
)
def test_measurement_round_trips_through_json(
    kind: str,
    peak: int,
    baseline: int,
    limit: int | None,
    seconds: float,
    sites: list[tuple[str, int, int]],
    label: str,
) -> None:
    """PeakMeasurement -> to_dict -> JSON -> from_dict is the identity (how xdist reports travel)."""
    m = PeakMeasurement(
        kind=kind, peak=peak, baseline=baseline, limit=limit, seconds=seconds, sites=tuple(sites), label=label
    )
    back = PeakMeasurement.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back.to_dict() == m.to_dict()
    assert m.exceeded == (limit is not None and peak > limit)


def test_explain_names_limit_measured_and_kind() -> None:
    """The failure text gives the limit, the measured value, the kind, and the rerun hint in rss mode."""
    m = PeakMeasurement(kind="rss", peak=3 * MiB, baseline=MiB, limit=2 * MiB, method="VmHWM")
    text = m.explain()
    assert "peak 3.0 MiB is over the memory limit 2.0 MiB (kind='rss')" in text
    assert f"measured: {3 * MiB} bytes" in text
    assert f"limit:    {2 * MiB} bytes; a block passes when peak <= limit" in text
    assert 'kind="python"' in text
    py = PeakMeasurement(kind="python", peak=3, limit=2, sites=(("x.py:3", 3, 1),), sites_note="sampled")
    assert "x.py:3" in py.explain()
    assert "hint" not in py.explain()


def test_python_ceiling_names_the_allocating_line() -> None:
    """A python-kind block over its limit names the line that allocated, even if it freed at once."""
    import sys

    if not hasattr(sys, "monitoring") and sys.gettrace() is not None:
        pytest.skip("a tracer (coverage, debugger) owns sys.settrace; only the 2 ms sampler runs")
    with pytest.raises(hivemem.MemoryCeilingExceeded) as info:
        with assert_peak_below("1 MiB", kind="python"):
            line = sys._getframe().f_lineno + 1
            data = bytearray(4 * MiB)
            del data
    sites = info.value.measurement.sites
    assert sites[0][0].endswith(f"test_testing_helpers.py:{line}")
    assert sites[0][1] >= 4 * MiB
    assert "line by line" in info.value.measurement.sites_note
    assert f"test_testing_helpers.py:{line}" in str(info.value)


_cache: dict[int, bytes] = {}
_leak: list[bytes] = []


def _plateau() -> None:
    if len(_cache) < 2:
        _cache[len(_cache)] = bytes(50_000)


def _leaky() -> None:
    _leak.append(bytes(2_000))


def test_assert_no_leaks_passes_a_cache_that_plateaus() -> None:
    """A cache that fills during the warm-up runs and then stops growing is not a leak."""
    _cache.clear()
    report = assert_no_leaks(_plateau, warmup=2, repeat=5)
    assert len(report.per_run) == 5
    assert not any(run > report.tolerance for run in report.per_run)


def test_assert_no_leaks_fails_a_true_leak() -> None:
    """Growth on every measured run raises LeakDetected carrying the report and the growth per run."""
    with pytest.raises(hivemem.LeakDetected) as info:
        assert_no_leaks(_leaky, warmup=1, repeat=4)
    report = info.value.report
    assert all(run >= 2_000 for run in report.per_run)
    text = str(info.value)
    assert "grew on every one of 4 measured runs" in text
    assert "growth per run:" in text
    assert "bytes" in text
    assert "(counted across one more run of 1 call(s))" in text


def _inspects_the_stack() -> int:
    import inspect
    import sys

    return len(inspect.stack(0)) + (sys._getframe(1) is not None)


def test_assert_no_leaks_passes_code_that_inspects_the_stack() -> None:
    """Creating frame objects of the caller (3.11+) is not growth of the function: no LeakDetected."""
    report = assert_no_leaks(_inspects_the_stack, number=2)
    assert report.number == 2
    assert not report.leaking


def test_assert_no_leaks_without_types() -> None:
    """types=False leaves the type tables (a walk of every object) out of the failure."""
    with pytest.raises(hivemem.LeakDetected) as info:
        assert_no_leaks(_leaky, warmup=1, repeat=3, types=False)
    assert info.value.report.growing_types == ()
    assert "growing types" not in str(info.value)
    assert "growing allocation sites" in str(info.value)


@linux_only
def test_real_rss_meter_is_within_a_mebibyte() -> None:
    """A 64 MiB buffer touched page by page gives an rss peak of 64 MiB +- 1 MiB (real RSS, subprocess)."""
    out = run_python(
        """
        from hivemem.testing import MemoryMeter
        m = MemoryMeter()
        b = bytearray(64 * 2**20)
        b[::4096] = b"x" * len(range(0, len(b), 4096))
        del b
        print(m.peak, m.current, m.method)
        """
    )
    peak, current, method = out.split(maxsplit=2)
    assert abs(int(peak) - 64 * MiB) <= MiB
    assert abs(int(current)) <= MiB
    assert "VmHWM" in method


@linux_only
def test_sampling_fallback_says_what_it_is() -> None:
    """Without clear_refs the rss clock samples every 1 ms and says so; a held 64 MiB is seen +- 1 MiB."""
    out = run_python(
        """
        import time
        from hivemem._pytest import meter as _pytest_meter
        from hivemem.testing import MemoryMeter
        _pytest_meter.rss_clock()._use_sampling("forced by the test")
        m = MemoryMeter()
        b = bytearray(64 * 2**20)
        b[::4096] = b"x" * len(range(0, len(b), 4096))
        time.sleep(0.05)
        del b
        print(m.stop().peak, m.method)
        """
    )
    peak, method = out.split(maxsplit=1)
    assert abs(int(peak) - 64 * MiB) <= MiB
    assert "sampled every 1 ms" in method
    assert "forced by the test" in method


def test_python_meter_counts_traced_bytes() -> None:
    """kind='python' reports tracemalloc's peak: an 8 MiB bytearray gives 8 MiB plus less than 64 KiB."""
    out = run_python(
        """
        import tracemalloc
        from hivemem.testing import MemoryMeter
        with MemoryMeter("python") as m:
            b = bytearray(8 * 2**20)
            del b
            print(m.peak, m.current)
        print(tracemalloc.is_tracing())
        """
    )
    peak, current, tracing = out.split()
    assert 8 * MiB < int(peak) < 8 * MiB + 64 * 1024
    assert abs(int(current)) < 64 * 1024
    assert tracing == "False"
