from __future__ import annotations

import json
import os
import sys

import pytest

import hivemem
from hivemem import MemoryUsage

from .conftest import linux_only, run_python


def _rollup_rss() -> int:
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no Rss line")


@linux_only
def test_usage_rss_matches_smaps_rollup() -> None:
    """usage().rss agrees with /proc/self/smaps_rollup's Rss within 1%."""
    u = hivemem.usage()
    ref = _rollup_rss()
    assert u.rss is not None
    assert abs(u.rss - ref) <= 0.01 * ref
    assert u.source.startswith("smaps_rollup")


@linux_only
def test_fast_rss_matches_usage() -> None:
    """rss() (statm) and usage().rss (smaps_rollup) agree within 1%."""
    a = hivemem.rss()
    b = hivemem.usage().rss
    assert b is not None
    assert abs(a - b) <= 0.01 * b


@linux_only
def test_usage_fields_are_plausible() -> None:
    """uss <= pss <= rss <= peak, and Python-heap figures are filled."""
    u = hivemem.usage()
    assert u.uss is not None and u.pss is not None and u.rss is not None and u.peak is not None
    assert 0 < u.uss <= u.pss <= u.rss <= u.peak + 4096 * 64
    assert u.swap is not None and u.swap >= 0
    assert u.blocks is not None and u.blocks > 0
    assert u.vms is not None and u.vms >= u.rss


def test_untraced_fields_say_why() -> None:
    """Without tracemalloc the traced fields are None and say why."""
    import tracemalloc

    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc already tracing")
    u = hivemem.usage()
    assert u.traced is None
    reason = u.why("traced")
    assert reason is not None and "tracemalloc" in reason
    assert u.why("rss") is None
    assert "traced" in u.unavailable


def test_traced_fields_when_tracing() -> None:
    """With tracemalloc on, traced and traced_peak are filled."""
    import tracemalloc

    tracemalloc.start()
    try:
        data = [bytes(1000) for _ in range(100)]
        u = hivemem.usage()
        assert u.traced is not None and u.traced >= 100_000
        assert u.traced_peak is not None and u.traced_peak >= u.traced
        del data
    finally:
        tracemalloc.stop()


def test_why_rejects_unknown_field() -> None:
    """why() names the bad field and the valid ones."""
    with pytest.raises(hivemem.InvalidArgument, match=r"'rsss'.*rss"):
        hivemem.usage().why("rsss")


def test_memory_usage_is_frozen_and_json_safe() -> None:
    """MemoryUsage cannot be modified and to_dict() is JSON-serializable."""
    u = MemoryUsage(rss=10, peak=20, source="test", time=1.0)
    with pytest.raises(AttributeError):
        u.rss = 5  # type: ignore[misc]
    d = u.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["rss"] == 10 and d["uss"] is None
    assert u == MemoryUsage(rss=10, peak=20, source="test", time=1.0)
    assert "rss='10 B'" in repr(u)
    assert "<table>" in u._repr_html_()
    assert dict(u.__rich_repr__())["peak"] == "20 B"


@linux_only
def test_peak_after_reset_tracks_allocation() -> None:
    """After reset_peak() and an N MiB allocation that is freed, peak rises by N MiB +- 1 MiB.

    Runs in a fresh interpreter; tolerance 1 MiB covers page-table and interpreter noise.
    """
    out = run_python(
        """
        import hivemem
        results = []
        for n in (8, 64, 256):
            assert hivemem.reset_peak()
            base = hivemem.usage().peak
            buf = bytearray(n * 2**20)
            for i in range(0, len(buf), 4096):
                buf[i] = 1
            del buf
            peak = hivemem.usage().peak
            results.append((n, (peak - base) / 2**20))
        print(results)
        """
    )
    for n, rise in eval(out):
        assert abs(rise - n) <= 1.0, (n, rise)


@linux_only
def test_rss_after_fork_reads_child() -> None:
    """After fork() rss() reads the child's own /proc entry, not the parent's."""
    out = run_python(
        """
        import os, hivemem
        hivemem.rss()  # open the statm descriptor in the parent
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            before = hivemem.rss()
            blob = bytearray(200 * 2**20)
            for i in range(0, len(blob), 4096):
                blob[i] = 1
            grew = hivemem.rss() - before
            os.write(w, str(grew).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        print(int(os.read(r, 100)))
        """
    )
    assert int(out) >= 190 * 2**20


def test_reset_peak_fallback_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """When clear_refs cannot be written, reset_peak() returns False and usage() says so."""
    from hivemem._measure import usage as _measure

    real_open = os.open

    def fake_open(path: str, flags: int, *a: object) -> int:
        if path == "/proc/self/clear_refs":
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *a)

    monkeypatch.setattr(_measure.os, "open", fake_open)
    assert hivemem.reset_peak() is False
    if sys.platform.startswith("linux"):
        assert "peak not reset" in hivemem.usage().source
    monkeypatch.undo()
    if sys.platform.startswith("linux"):
        assert hivemem.reset_peak() is True
        assert "peak not reset" not in hivemem.usage().source


def test_proc_reader_protocol() -> None:
    """ProcReader exposes rss() and usage(), the reader protocol."""
    r = hivemem.ProcReader()
    assert r.rss() > 0
    assert isinstance(r.usage(), MemoryUsage)
