"""set_malloc_thresholds: glibc's mmap/trim thresholds set in-process through mallopt."""

from __future__ import annotations

import json

import pytest

import hivemem
from hivemem._measure import native as _native

from .conftest import linux_only, run_python


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, hivemem.InvalidArgument, "give mmap_threshold"),
        ({"mmap_threshold": "64MiB"}, hivemem.InvalidArgument, "at most 32 MiB"),
        ({"mmap_threshold": "12 parsecs"}, hivemem.InvalidSize, "parsecs"),
        ({"trim_threshold": -1}, hivemem.InvalidSize, "-1"),
        ({"trim_threshold": "4GiB"}, hivemem.InvalidArgument, "less than 2 GiB"),
        ({"arena_max": 0}, hivemem.InvalidArgument, "arena_max=0"),
        ({"mmap_threshold": "1MiB", "arena_max": True}, hivemem.InvalidArgument, "arena_max=True"),
    ],
)
def test_bad_values_raise_before_anything_is_set(
    monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    """Every value is checked first; a bad one raises naming it and mallopt is never called."""
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(_native, "mallopt", lambda p, v: calls.append((p, v)) or True)
    with pytest.raises(error, match=match):
        hivemem.set_malloc_thresholds(**kwargs)  # type: ignore[arg-type]
    assert calls == []


def test_values_are_passed_to_mallopt_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sizes are parsed (binary units) and passed with glibc's parameter numbers."""
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(_native, "trim_unavailable_reason", lambda: None)
    monkeypatch.setattr(_native, "mallopt", lambda p, v: calls.append((p, v)) or True)
    done = hivemem.set_malloc_thresholds("128KiB", "1MiB", arena_max=2)
    assert done == {"mmap_threshold": 131072, "trim_threshold": 2**20, "arena_max": 2}
    assert calls == [(-3, 131072), (-1, 2**20), (-8, 2)]


def test_unavailable_off_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under musl/jemalloc/macOS it raises Unavailable with the reason, naming mallopt."""
    monkeypatch.setattr(
        _native, "trim_unavailable_reason", lambda: "malloc is jemalloc, not glibc, and has no malloc_trim"
    )
    with pytest.raises(hivemem.Unavailable, match=r"jemalloc.*mallopt"):
        hivemem.set_malloc_thresholds(mmap_threshold="128KiB")


@linux_only
@pytest.mark.slow
def test_fixed_mmap_threshold_returns_big_blocks_at_free() -> None:
    """With the mmap threshold fixed at 128 KiB, 300 x 160 KiB blocks go back to the OS on free;
    with glibc's dynamic threshold they stay resident. 1 in 10 is kept, so at most 90% can return.
    Tolerance: >= 80% returned (fixed) vs <= 20% (dynamic) of ~47 MiB."""
    code = """
        import json, sys, hivemem
        if sys.argv[-1] == "fixed":
            hivemem.set_malloc_thresholds(mmap_threshold="128KiB", trim_threshold="128KiB")
        # moves glibc's dynamic threshold up: 4 MiB always comes from mmap (160 KiB could come
        # from a free heap chunk left by compiling an import, and then the threshold stays put)
        warm = bytearray(4 * 2**20); del warm
        base = hivemem.rss()
        blocks = [bytearray(160 * 1024) for _ in range(300)]
        grown = hivemem.rss() - base
        keep = blocks[::10]                              # 1 in 10 survives, spread over the heap
        del blocks
        print(json.dumps({"grown": grown, "returned": grown - (hivemem.rss() - base)}))
    """
    results = {}
    for mode in ("dynamic", "fixed"):
        out = run_python(code.replace('sys.argv[-1] == "fixed"', repr(mode == "fixed")))
        results[mode] = json.loads(out)
    for r in results.values():
        assert r["grown"] > 40 * 2**20, results
    assert results["fixed"]["returned"] >= 0.8 * results["fixed"]["grown"], results
    assert results["dynamic"]["returned"] <= 0.2 * results["dynamic"]["grown"], results
