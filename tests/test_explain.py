"""The optimize explanation: RSS split into measured parts that add up, and advice from what is registered."""

from __future__ import annotations

import json

import pytest

import hivemem
from hivemem._levels import AGGRESSIVE, MODERATE
from hivemem._measure import explain as _explain
from hivemem._measure import native as _native

from .conftest import linux_only, run_python

MiB = 2**20
KiB = 2**10


def _fake(
    monkeypatch: pytest.MonkeyPatch,
    maps: list[tuple[int, int, str, str, int, int]],
    py: dict[str, int] | None,
    libc: dict[str, int] | None,
) -> None:
    monkeypatch.setattr(_explain, "_mappings", lambda: maps)
    monkeypatch.setattr(_native, "pymalloc_stats", lambda: py)
    monkeypatch.setattr(_native, "malloc_info", lambda: libc)
    monkeypatch.setattr(_explain.os.path, "exists", lambda path: True)


BASE = 0x7F00_0000_0000  # 64 MiB-aligned


def _layout() -> list[tuple[int, int, str, str, int, int]]:
    """A process: python binary, [heap], anonymous arenas + large blocks, a thread, a thread arena, stack."""
    return [
        (0x5500_0000_0000, 0x5500_0040_0000, "r-xp", "/usr/bin/python3.11", 3 * MiB, 0),
        (0x5500_0100_0000, 0x5500_0100_0000 + 40 * MiB, "rw-p", "[heap]", 30 * MiB, 0),
        # anonymous: 100 MiB of address space, 96 MiB resident (arenas 90 + large blocks 8 + 2 other)
        (BASE - 200 * MiB, BASE - 100 * MiB, "rw-p", "", 96 * MiB, 0),
        # a thread: guard page, then its stack
        (BASE - 20 * MiB, BASE - 20 * MiB + 4 * KiB, "---p", "", 0, 0),
        (BASE - 20 * MiB + 4 * KiB, BASE - 12 * MiB, "rw-p", "", 64 * KiB, 0),
        # a glibc thread arena: 64 MiB-aligned, used part then PROT_NONE rest
        (BASE, BASE + 8 * MiB, "rw-p", "", 6 * MiB, 0),
        (BASE + 8 * MiB, BASE + 64 * MiB, "---p", "", 0, 0),
        (0x7FFF_0000_0000, 0x7FFF_0002_1000, "rw-p", "[stack]", 128 * KiB, 0),
        (0x7FFF_1000_0000, 0x7FFF_1000_2000, "r-xp", "[vdso]", 8 * KiB, 0),
    ]


PY = {"arenas": 90 * MiB, "allocated": 20 * MiB, "free": 68 * MiB, "overhead": 2 * MiB, "alignment": MiB}
LIBC = {
    "arena": 48 * MiB,
    "mmapped": 8 * MiB,
    "in_use": 8 * MiB + 25 * MiB,
    "free": 23 * MiB,
    "releasable": 0,
}


def _summed(parts: dict[str, int]) -> int:
    return sum(parts.get(k, 0) for k in _explain.SUMMED)


def test_parts_add_up_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every summed part is measured and together they equal the kernel's total, byte for byte."""
    _fake(monkeypatch, _layout(), PY, LIBC)
    parts = _explain.rss_parts()
    assert parts is not None
    assert _summed(parts) == parts["total"]
    assert parts["total"] == 3 * MiB + 30 * MiB + 96 * MiB + 64 * KiB + 6 * MiB + 128 * KiB + 8 * KiB
    assert parts["files"] == 3 * MiB + 8 * KiB  # the binary and the vdso
    assert parts["stacks"] == 128 * KiB + 64 * KiB  # main stack and the thread's, found by its guard page
    assert parts["pymalloc_live"] == 20 * MiB and parts["pymalloc_free"] == 68 * MiB
    assert parts["pymalloc_overhead"] == MiB and parts["pymalloc_untouched"] == MiB  # alignment left out
    assert parts["malloc_in_use"] == 25 * MiB  # in the heaps: in_use minus the mmapped blocks
    assert parts["malloc_free_resident"] == 30 * MiB + 6 * MiB - 25 * MiB  # [heap] + thread arena, resident
    assert parts["malloc_mmapped"] == 8 * MiB
    # anonymous: 100 MiB mapped = 90 arenas + 8 large blocks + 2 other; 4 MiB of it not resident,
    # of which 1 MiB is pymalloc's alignment (already left out of the pymalloc parts)
    assert parts["other_anon"] == 2 * MiB
    assert parts["not_resident"] == -3 * MiB


def test_parts_add_up_without_malloc_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no mallinfo2 (musl, old glibc) malloc's heap is one part; the sum still holds."""
    _fake(monkeypatch, _layout(), PY, None)
    parts = _explain.rss_parts()
    assert parts is not None and "malloc_in_use" not in parts
    assert parts["malloc_heap"] == 36 * MiB
    assert _summed(parts) == parts["total"]


def test_allocator_space_outside_anon_mappings_keeps_the_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the allocators claim more than the anonymous mappings hold, other_anon is 0 and the sum holds."""
    _fake(monkeypatch, _layout(), {**PY, "arenas": 120 * MiB, "free": 98 * MiB}, LIBC)
    parts = _explain.rss_parts()
    assert parts is not None
    assert parts["other_anon"] == 0 and parts["not_resident"] < 0
    assert _summed(parts) == parts["total"]


def test_explanation_lists_every_part_and_the_total(monkeypatch: pytest.MonkeyPatch) -> None:
    """The text names each non-zero part with its size, biggest first, and the negative one last."""
    _fake(monkeypatch, _layout(), PY, LIBC)
    text, breakdown = _explain.explain(135 * MiB, 90 * MiB)
    assert text.startswith("RSS 135.0 MiB is 45.0 MiB over the target 90.0 MiB.")
    assert "68.0 MiB free space inside pymalloc's arenas" in text
    assert "11.0 MiB free in malloc's heap but still resident" in text
    assert "-3.0 MiB of the address space above that is not resident" in text
    assert text.index("68.0 MiB free space") < text.index("25.0 MiB in use") < text.index("-3.0 MiB")
    assert _summed(breakdown) == breakdown["total"]


def test_no_proc_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without /proc/self/smaps the explanation says it cannot split RSS, and returns no parts."""
    monkeypatch.setattr(_explain, "rss_parts", lambda: None)
    text, breakdown = _explain.explain(100 * MiB, 90 * MiB)
    assert "No /proc/self/smaps" in text and breakdown == {}


@linux_only
def test_real_parts_add_up_to_rss() -> None:
    """In a real process the parts sum to the smaps total, which is RSS within 1% (reads 1 ms apart)."""
    out = run_python(
        """
        import json, hivemem
        from hivemem._measure import explain as _explain
        keep = [{"i": i, "s": str(i)} for i in range(300_000)][::50]
        blobs = [bytes(2000) for _ in range(20_000)][::64]
        hivemem.rss(); _explain.rss_parts()  # warm up: the first call loads its modules
        before = hivemem.rss()
        parts = _explain.rss_parts()
        after = hivemem.rss()
        summed = sum(parts.get(k, 0) for k in _explain.SUMMED)
        print(json.dumps({"before": before, "after": after, "parts": parts, "summed": summed}))
        """
    )
    r = json.loads(out)
    assert r["summed"] == r["parts"]["total"]
    rss = (r["before"] + r["after"]) / 2
    assert abs(r["parts"]["total"] - rss) <= 0.01 * rss, r  # tolerance: allocations between the reads
    assert r["parts"]["pymalloc_free"] > 5 * MiB  # the freed dicts left free space in the arenas


# ---------------------------------------------------------------------- what would help


@pytest.fixture
def clean_registrations() -> object:
    """Forget what earlier tests registered (the held sets are process-wide)."""
    from hivemem._reclaim import caches as _caches
    from hivemem._reclaim import containers as _containers

    saved = (
        dict(_containers.compact_registry._entries),
        dict(_containers.dedup_registry._entries),
        dict(_caches.cache_registry._entries),
        list(_caches._patterns),
    )
    _containers.compact_registry._entries.clear()
    _containers.dedup_registry._entries.clear()
    _caches.cache_registry._entries.clear()
    _caches._patterns.clear()
    yield
    _containers.compact_registry._entries.update(saved[0])
    _containers.dedup_registry._entries.update(saved[1])
    _caches.cache_registry._entries.update(saved[2])
    _caches._patterns[:] = saved[3]


def _parts(py_free: int = 600 * MiB) -> dict[str, int]:
    return {
        "total": 640 * MiB,
        "pymalloc_live": 15 * MiB,
        "pymalloc_free": py_free,
        "malloc_in_use": 2 * MiB,
        "files": 11 * MiB,
    }


@pytest.mark.usefixtures("clean_registrations")
def test_help_names_registered_containers_and_the_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compactable container waiting for aggressive is named with its items, and the argument that helps."""
    data = [{"i": i} for i in range(1000)]
    hivemem.compactable(data)
    monkeypatch.setattr(_explain, "rss_parts", _parts)
    text, _ = _explain.explain(640 * MiB, 90 * MiB, ceiling=MODERATE)  # type: ignore[arg-type]
    assert "1 container registered with hivemem.compactable (1,000 items)" in text
    assert "raise aggressiveness to 'aggressive'" in text and "ceiling, moderate" in text
    assert "nothing is registered with hivemem.register_cache" in text


@pytest.mark.usefixtures("clean_registrations")
def test_help_when_nothing_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """With fragmentation and nothing registered, the advice says what to register."""
    monkeypatch.setattr(_explain, "rss_parts", _parts)
    text, _ = _explain.explain(640 * MiB, 90 * MiB, ceiling=AGGRESSIVE)  # type: ignore[arg-type]
    assert (
        "600.0 MiB is free inside pymalloc's arenas and nothing is registered with hivemem.compactable"
        in text
    )
    assert "nothing is registered with hivemem.register_cache" in text
    assert "raise aggressiveness" not in text  # already at the top


@pytest.mark.usefixtures("clean_registrations")
def test_help_when_live_data_is_above_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """When live data and code alone exceed the target, the advice says no level can reach it."""
    hivemem.register_cache({})
    monkeypatch.setattr(_explain, "rss_parts", lambda: _parts(py_free=MiB))
    text, _ = _explain.explain(40 * MiB, 20 * MiB, ceiling=AGGRESSIVE)  # type: ignore[arg-type]
    assert "live data, code and stacks alone take 28.0 MiB, above the target 20.0 MiB" in text
    assert "register_cache" not in text  # one is registered
