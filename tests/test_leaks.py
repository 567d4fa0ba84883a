"""hivemem.find_leaks and LeakReport: the leak rule, the workload set, the report's shape."""

from __future__ import annotations

import json
import os
import tracemalloc

import pytest

import hivemem
from hivemem._leaks import LeakReport, SiteGrowth, TypeGrowth

from .conftest import run_python

WORKLOADS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "leak_workloads.py")


def run_workloads(repeat: int = 5, warmup: int = 2) -> dict[str, dict[str, object]]:
    """Run find_leaks on every workload in a fresh interpreter; return each report's dict by name."""
    out = run_python(
        f"""
        import json, hivemem
        import runpy
        ns = runpy.run_path({WORKLOADS!r}, run_name="leak_workloads")
        res = {{}}
        for fn in ns["LEAKS"] + ns["NON_LEAKS"]:
            r = hivemem.find_leaks(fn, warmup={warmup}, repeat={repeat})
            d = r.to_dict()
            d["expected"] = fn in ns["LEAKS"]
            res[fn.__name__] = d
        print(json.dumps(res))
        """
    )
    return json.loads(out)  # type: ignore[no-any-return]


def test_workload_set_every_leak_and_no_false_alarm() -> None:
    """Leaks of 100 B..100 KB/call are flagged; plateauing caches, lazy init, re cache, temps are not."""
    results = run_workloads()
    wrong = {n: (d["per_run"], d["verdict"]) for n, d in results.items() if d["leaking"] != d["expected"]}
    assert not wrong, wrong
    for name, d in results.items():
        if d["expected"]:
            size = int(name.split("_")[1].rstrip("B"))
            low, high = d["bytes_per_call_ci"]  # type: ignore[misc]
            # exact object size; a list append occasionally adds its over-allocation to one repetition
            assert size <= d["bytes_per_call"] <= size * 1.1 + 64, (name, d["bytes_per_call"])
            assert low <= d["bytes_per_call"] <= high
            assert d["blocks_per_call"] == pytest.approx(1.0, abs=0.01), name
            assert any(t["name"] == "bytes" and t["delta"] == 5 for t in d["growing_types"]), name  # type: ignore[union-attr]
            assert d["growing_sites"][0]["file"] == WORKLOADS, name  # type: ignore[index]


def test_leak_flagged_within_three_repetitions() -> None:
    """Even the smallest leak (100 B/call) is flagged with only 3 measured repetitions."""
    results = run_workloads(repeat=3, warmup=2)
    assert results["leak_100B"]["leaking"] is True
    assert results["leak_100B"]["rule"] == "every-repetition"


# ----------------------------------------------------------------- the rule, from figures


@pytest.mark.parametrize(
    ("per_run", "leaking", "rule"),
    [
        ((133, 133, 133, 133, 133), True, "every-repetition"),
        ((33, 33, 33), True, "every-repetition"),  # just above the 32 B tolerance each time
        ((32, 32, 32), False, None),  # at the tolerance: not growth
        ((133, 133, 0, 133, 133), True, "slope"),  # one quiet repetition inside a steady leak
        ((133, 133, 133, 133, 0), False, None),  # the last repetition is flat: plateau
        ((6152, 0, 1408, 1920, 768), False, None),  # tails off unevenly: a cache filling
        ((5000, 3000, 0, 0, 0), False, None),  # filled during the first repetitions
        ((0, 0, 0, 0, 0), False, None),
        ((-500, -500, -500), False, None),
        ((133, 0, 133), False, None),  # rule B needs at least four repetitions
        ((133, 0, 133, 0, 133), False, None),  # two quiet repetitions
    ],
)
def test_rule(per_run: tuple[int, ...], leaking: bool, rule: str | None) -> None:
    """Rule A (every repetition grew) and rule B (steady slope, one interruption, no plateau) decide."""
    r = LeakReport(per_run=per_run, per_run_blocks=[1] * len(per_run))
    assert r.leaking is leaking
    assert r.rule == rule
    assert bool(r) is leaking
    assert r.verdict.startswith("not leaking") is (not leaking)


def test_tolerance_scales_with_number() -> None:
    """The tolerance is per call: with number=10, 300 B per repetition is 30 B/call, not a leak."""
    assert not LeakReport(per_run=[300, 300, 300], per_run_blocks=[0, 0, 0], number=10).leaking
    assert LeakReport(per_run=[400, 400, 400], per_run_blocks=[0, 0, 0], number=10).leaking


def test_confidence_interval_by_hand() -> None:
    """bytes_per_call is the mean per call and its CI the Student-t 95% interval (t=2.776 for 4 df)."""
    r = LeakReport(per_run=[100, 110, 90, 100, 100], per_run_blocks=[1, 1, 1, 1, 2])
    assert r.bytes_per_call == 100
    sd = (200 / 4) ** 0.5
    half = 2.776 * sd / 5**0.5
    assert r.bytes_per_call_ci == pytest.approx((100 - half, 100 + half))
    assert r.blocks_per_call == pytest.approx(1.2)
    assert r.slope == pytest.approx(100)


def test_empty_report_rejected() -> None:
    """A report without measured repetitions is a caller error, named."""
    with pytest.raises(hivemem.InvalidArgument, match="per_run is empty"):
        LeakReport(per_run=[], per_run_blocks=[])


# ----------------------------------------------------------------- running find_leaks here

_kept: list[bytes] = []


def _leaky() -> None:
    _kept.append(bytes(500))


def _clean() -> int:
    return len([object() for _ in range(100)])


def test_find_leaks_in_process() -> None:
    """find_leaks flags a 533 B/call leak and passes a clean function, in this process."""
    leak = hivemem.find_leaks(_leaky, repeat=4)
    assert leak.leaking and leak.rule == "every-repetition"
    assert leak.per_run == (533,) * 4 or min(leak.per_run) >= 533
    assert leak.function.endswith("_leaky")
    clean = hivemem.find_leaks(_clean, types=False)
    assert clean.growing_types == ()
    assert not clean.leaking and clean.per_run == (0,) * 5


def test_args_kwargs_number() -> None:
    """args and kwargs reach fn; number calls it that many times per repetition."""
    calls: list[tuple[object, ...]] = []

    def fn(a: int, *, b: int) -> None:
        calls.append((a, b))

    r = hivemem.find_leaks(fn, args=(1,), kwargs={"b": 2}, warmup=1, repeat=3, number=4, types=False)
    assert len(calls) == 4 * (1 + 3)
    assert set(calls) == {(1, 2)}
    assert r.number == 4 and r.repeat == 3 and r.warmup == 1
    assert len(r.warmup_runs) == 1


def test_tracemalloc_restored() -> None:
    """find_leaks stops tracemalloc only when it started it, even when fn raises."""
    assert not tracemalloc.is_tracing()
    hivemem.find_leaks(_clean, repeat=2, warmup=0, types=False)
    assert not tracemalloc.is_tracing()

    def boom() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        hivemem.find_leaks(boom, types=False)
    assert not tracemalloc.is_tracing()
    tracemalloc.start()
    try:
        hivemem.find_leaks(_clean, repeat=2, warmup=0, types=False)
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"warmup": -1}, "warmup must be an integer >= 0"),
        ({"repeat": 1}, "repeat must be an integer >= 2"),
        ({"repeat": 2.5}, "repeat must be an integer"),
        ({"number": 0}, "number must be an integer >= 1"),
        ({"frames": True}, "frames must be an integer"),
        ({"args": [1]}, "args must be a tuple"),
        ({"kwargs": 3}, "kwargs must be a mapping"),
        ({"types": "yes"}, "types must be True or False"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    """Bad arguments raise InvalidArgument naming the value, before fn is ever called."""
    called = []
    with pytest.raises(hivemem.InvalidArgument, match=match):
        hivemem.find_leaks(lambda: called.append(1), **kwargs)  # type: ignore[arg-type]
    assert not called


def test_bad_tolerance_and_fn() -> None:
    """A tolerance that is not a size raises InvalidSize; a non-callable raises InvalidArgument."""
    with pytest.raises(hivemem.InvalidSize):
        hivemem.find_leaks(_clean, tolerance="lots")
    with pytest.raises(hivemem.InvalidArgument, match="fn must be callable"):
        hivemem.find_leaks(42)  # type: ignore[arg-type]
    assert hivemem.find_leaks(_clean, tolerance="1KB", repeat=2, warmup=0, types=False).tolerance == 1024


# ----------------------------------------------------------------- the report object

_secrets: list[str] = []


def _leak_secret() -> None:
    _secrets.append("hunter2-TOP-SECRET-" + "x" * 100 + str(len(_secrets)))


def test_report_never_contains_object_contents() -> None:
    """A leaked secret string appears in none of repr, str, HTML, JSON or rich repr; only types and places."""
    r = hivemem.find_leaks(_leak_secret)
    assert r.leaking
    texts = [repr(r), str(r), r._repr_html_(), r.to_json(), repr(list(r.__rich_repr__()))]
    for text in texts:
        assert "hunter2" not in text and "TOP-SECRET" not in text
    assert any(t.name == "str" for t in r.growing_types)
    assert any(s.file == __file__ for s in r.growing_sites)


def test_report_shape() -> None:
    """The report is frozen, JSON-safe, and its repr/HTML show the verdict and the evidence."""
    r = LeakReport(
        per_run=[133, 133, 133],
        per_run_blocks=[1, 1, 1],
        warmup_runs=[900, 133],
        growing_types=[TypeGrowth("bytes", 10, 13)],
        growing_sites=[SiteGrowth("/app/x.py", 12, 399, 3, 1330, 10)],
        function="app.handler",
        warmup=2,
    )
    with pytest.raises(AttributeError, match="frozen"):
        r.leaking = False  # type: ignore[misc]
    d = json.loads(r.to_json())
    assert d["leaking"] is True and d["per_run"] == [133, 133, 133]
    assert d["growing_types"] == [{"name": "bytes", "before": 10, "after": 13, "delta": 3}]
    assert d["growing_sites"][0]["line"] == 12
    text = repr(r)
    assert text.startswith("LeakReport app.handler: LEAKING: 133 B/call")
    assert "every one of 3 measured repetitions" in text
    assert "+900, +133" in text and "x.py:12" in text and "bytes" in text
    html = r._repr_html_()
    assert "LEAKING" in html and "<table>" in html and "x.py:12" in html
    rich = dict(r.__rich_repr__())
    assert rich["leaking"] is True and rich["per_run"] == [133, 133, 133]
    assert type(r).__module__ == "hivemem"
