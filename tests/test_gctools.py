"""GC tuning helpers: gc_tuning, freeze/unfreeze, gc_pauses; and what extra gc passes return."""

from __future__ import annotations

import gc
import json

import pytest

import hivemem

from .conftest import run_python


@pytest.fixture(autouse=True)
def _keep_gc_state() -> object:
    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.set_threshold(*thresholds)
    (gc.enable if enabled else gc.disable)()


def test_gc_tuning_sets_and_restores_thresholds() -> None:
    """Inside the block the given thresholds apply (others keep theirs); on exit the originals return."""
    gc.set_threshold(700, 10, 10)
    with hivemem.gc_tuning(50_000, 20):
        assert gc.get_threshold() == (50_000, 20, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_gc_tuning_restores_after_exception_and_enabled_state() -> None:
    """An exception in the block still restores thresholds and the enabled state."""
    gc.enable()
    with pytest.raises(KeyError), hivemem.gc_tuning(1, 1, 1, enabled=False):
        assert not gc.isenabled()
        assert gc.get_threshold() == (1, 1, 1)
        raise KeyError("boom")
    assert gc.isenabled()
    assert gc.get_threshold() != (1, 1, 1)


def test_gc_tuning_nested_blocks_restore_in_order() -> None:
    """Nested blocks each restore what was in force when they were entered."""
    gc.set_threshold(700, 10, 10)
    gc.disable()
    tune = hivemem.gc_tuning(100, enabled=True)
    with tune:
        with hivemem.gc_tuning(5):
            assert gc.get_threshold()[0] == 5
        assert gc.get_threshold()[0] == 100 and gc.isenabled()
    assert gc.get_threshold() == (700, 10, 10) and not gc.isenabled()


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((-1,), {}, "threshold 0 = -1"),
        ((10, "x"), {}, "threshold 1 = 'x'"),
        ((True,), {}, "threshold 0 = True"),
        ((1, 2, 3, 4), {}, "at most 3"),
        ((), {"enabled": "yes"}, "enabled='yes'"),
    ],
)
def test_gc_tuning_rejects_bad_input_before_changing_anything(
    args: tuple[object, ...], kwargs: dict[str, object], match: str
) -> None:
    """Bad thresholds raise InvalidArgument naming the value; the collector is untouched."""
    before = gc.get_threshold(), gc.isenabled()
    with pytest.raises(hivemem.InvalidArgument, match=match):
        hivemem.gc_tuning(*args, **kwargs)  # type: ignore[arg-type]
    assert (gc.get_threshold(), gc.isenabled()) == before


def test_freeze_and_unfreeze_report_counts() -> None:
    """freeze() returns the number of frozen objects; unfreeze() returns how many it released."""
    keep = [[i] for i in range(1000)]
    try:
        frozen = hivemem.freeze()
        assert frozen == gc.get_freeze_count() >= 1000
    finally:
        released = hivemem.unfreeze()
    assert released == frozen
    assert gc.get_freeze_count() == 0
    del keep


class Clock:
    """A fake perf_counter: each call advances by the next step."""

    def __init__(self, *steps: float) -> None:
        self.now, self.steps = 0.0, list(steps)

    def __call__(self) -> float:
        if self.steps:
            self.now += self.steps.pop(0)
        return self.now


def test_gc_pauses_measures_each_collection_with_the_clock() -> None:
    """Each collection's pause is the clock difference between the start and stop callbacks."""
    clock = Clock(0.0, 1.0, 0.25, 1.0, 0.5, 1.0)  # start-meter, (gc start, stop) x2, stop-meter
    with hivemem.gc_pauses(clock) as pauses:
        gc.collect()
        gc.collect(0)
    assert pauses.collections == 2
    assert pauses.seconds == pytest.approx(0.75)
    assert pauses.max_seconds == pytest.approx(0.5)
    assert pauses.by_generation[2]["collections"] == 1
    assert pauses.by_generation[0]["max_seconds"] == pytest.approx(0.5)
    assert pauses._callback not in gc.callbacks
    data = json.loads(json.dumps(pauses.to_dict()))
    assert data["collections"] == 2 and set(data["by_generation"]) == {"0", "2"}
    assert "collections=2" in repr(pauses) and "<table>" in pauses._repr_html_()


def test_gc_pauses_counts_collected_cycles() -> None:
    """The meter reports the objects the collector freed while it ran."""
    with hivemem.gc_pauses() as pauses:
        for _ in range(100):
            a: list[object] = []
            a.append(a)
        del a
        gc.collect()
    assert pauses.collected >= 100
    assert pauses.fraction is not None and 0 <= pauses.fraction <= 1


def test_one_collection_frees_everything_more_passes_find_nothing() -> None:
    """After one full collection, 49 more (the popular 50-pass loop) collect 0 objects and 0 bytes."""
    out = run_python(
        """
        import gc, json, sys
        gc.disable()
        class Node:
            def __init__(self): self.me = self; self.data = [1, 2, 3]
        for _ in range(50_000):
            Node()
        first = gc.collect()
        blocks = sys.getallocatedblocks()
        more = [gc.collect() for _ in range(49)]
        print(json.dumps({"first": first, "more": more, "blocks_delta": sys.getallocatedblocks() - blocks}))
        """
    )
    r = json.loads(out)
    assert r["first"] >= 100_000  # each Node and its dict and list
    assert r["more"] == [0] * 49
    assert abs(r["blocks_delta"]) < 50  # nothing more freed (a few blocks of interpreter noise)
