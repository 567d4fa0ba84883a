"""optimize() with a target climbs cheap -> moderate -> aggressive and stops at the first that reaches it."""

from __future__ import annotations

import json

import pytest

import hivemem
from hivemem import AGGRESSIVE, CHEAP, MODERATE, MemoryGovernor, Registry, StrategyResult
from hivemem._engine import engine as _engine
from hivemem.testing import FakeReader

MiB = 2**20


class Frees:
    """A fake strategy that 'returns' a fixed amount through the fake reader, once or every call."""

    def __init__(
        self, reader: FakeReader, name: str, nbytes: int, priority: int, level: object, **extra: object
    ) -> None:
        self.reader, self.name, self.nbytes = reader, name, nbytes
        self.priority, self.aggressiveness = priority, level
        self.calls: list[str] = []
        self.stats = extra.pop("stats", {})
        for key, value in extra.items():
            setattr(self, key, value)

    def apply(self, ctx: hivemem.StrategyContext) -> StrategyResult:
        self.calls.append(ctx.aggressiveness.name)
        self.reader.free(self.nbytes)
        stats = self.stats(ctx) if callable(self.stats) else dict(self.stats)  # type: ignore[operator]
        return StrategyResult(f"freed {self.nbytes}", stats=stats)


def gov(reader: FakeReader, registry: Registry, **kw: object) -> MemoryGovernor:
    return MemoryGovernor(reader=reader, registry=registry, **kw)  # type: ignore[arg-type]


def ladder(reader: FakeReader, registry: Registry, cheap: int, moderate: int, aggressive: int) -> list[Frees]:
    made = [
        Frees(reader, "c", cheap, 10, CHEAP),
        Frees(reader, "m", moderate, 20, MODERATE),
        Frees(reader, "a", aggressive, 30, AGGRESSIVE),
    ]
    for s in made:
        registry.register(s)
    return made


def test_stops_at_cheap_when_cheap_suffices(reader: FakeReader, registry: Registry) -> None:
    """A cheap step that reaches the target ends the pass: no moderate or aggressive strategy is called."""
    c, m, a = ladder(reader, registry, 200 * MiB, 100 * MiB, 100 * MiB)
    report = gov(reader, registry).optimize(target_mb=300)
    assert report.reached and report.reached_at == "cheap"
    assert (c.calls, m.calls, a.calls) == (["cheap"], [], [])
    assert report.step("m").skipped == "target reached" and report.step("a").skipped == "target reached"
    assert [x["level"] for x in report.levels] == ["cheap"]
    assert "reached at cheap" in report.headline()


def test_climbs_to_moderate_and_stops_there(reader: FakeReader, registry: Registry) -> None:
    """When cheap is not enough the pass adds moderate's strategies, and stops before aggressive."""
    c, m, a = ladder(reader, registry, 50 * MiB, 100 * MiB, 100 * MiB)
    report = gov(reader, registry).optimize(target_mb=350)
    assert report.reached_at == "moderate"
    assert (c.calls, m.calls, a.calls) == (["cheap"], ["moderate"], [])
    assert [(s.name, s.level) for s in report.steps if s.ran] == [("c", "cheap"), ("m", "moderate")]
    assert report.levels[0] == {
        "level": "cheap",
        "rss_before": 500 * MiB,
        "rss_after": 450 * MiB,
        "ran": ["c"],
    }


def test_reaches_aggressive_only_when_needed(reader: FakeReader, registry: Registry) -> None:
    """The default call climbs all the way when the target needs it; each strategy runs once."""
    c, m, a = ladder(reader, registry, 50 * MiB, 50 * MiB, 300 * MiB)
    report = gov(reader, registry).optimize(target_mb=100)
    assert report.reached_at == "aggressive" and report.aggressiveness == "aggressive"
    assert (c.calls, m.calls, a.calls) == (["cheap"], ["moderate"], ["aggressive"])
    text = str(report)
    assert "levels: cheap 500.0 MiB -> 450.0 MiB; moderate 450.0 MiB -> 400.0 MiB; aggressive" in text
    assert "  c     cheap" in text and "  a     aggressive" in text


def test_aggressiveness_is_the_ceiling(reader: FakeReader, registry: Registry) -> None:
    """aggressiveness='moderate' never calls an aggressive strategy; its row says the ceiling stopped it."""
    _c, _m, a = ladder(reader, registry, 50 * MiB, 50 * MiB, 300 * MiB)
    report = gov(reader, registry).optimize(target_mb=100, aggressiveness="moderate")
    assert a.calls == [] and report.reached is False
    assert "aggressiveness='moderate'" in (report.step("a").skipped or "")
    assert report.step("a").level is None and report.step("a").freed is None


def test_without_target_one_moderate_pass(reader: FakeReader, registry: Registry) -> None:
    """Without a target nothing climbs: one pass at moderate; aggressive strategies need an explicit level."""
    c, m, a = ladder(reader, registry, MiB, MiB, MiB)
    report = gov(reader, registry).optimize()
    assert (c.calls, m.calls, a.calls) == (["moderate"], ["moderate"], [])
    assert len(report.levels) == 1 and report.aggressiveness == "moderate"
    gov(reader, registry).optimize(aggressiveness="aggressive")
    assert a.calls == ["aggressive"]


def test_module_level_one_liner_climbs_to_aggressive(reader: FakeReader, registry: Registry) -> None:
    """hivemem.optimize(target_mb=...) with no other argument may reach aggressive (README one-liner)."""
    _c, _m, a = ladder(reader, registry, 10 * MiB, 10 * MiB, 400 * MiB)
    from hivemem._governor import active as _governor

    saved = _governor._default
    _governor._default = gov(reader, registry)
    try:
        report = hivemem.optimize(target_mb=90)
    finally:
        _governor._default = saved
    assert report.reached_at == "aggressive" and a.calls == ["aggressive"]


def test_governor_ceiling_given_at_construction(reader: FakeReader, registry: Registry) -> None:
    """MemoryGovernor(aggressiveness=...) is the ceiling of its optimize() passes, with a target too."""
    c, m, a = ladder(reader, registry, 10 * MiB, 10 * MiB, 400 * MiB)
    g = gov(reader, registry, aggressiveness="cheap")
    report = g.optimize(target_mb=90)
    assert (c.calls, m.calls, a.calls) == (["cheap"], [], [])
    assert not report.reached and "aggressiveness='cheap'" in (report.step("m").skipped or "")


def test_a_strategy_that_found_nothing_is_not_rerun(reader: FakeReader, registry: Registry) -> None:
    """A cheap strategy without a rerun reason runs once, even when the pass climbs two more levels."""
    once = Frees(reader, "once", 0, 10, CHEAP)
    registry.register(once)
    registry.register(Frees(reader, "top", 0, 30, AGGRESSIVE))
    report = gov(reader, registry).optimize(target_mb=1)
    assert once.calls == ["cheap"] and [s.name for s in report.steps].count("once") == 1


def test_finisher_reruns_only_after_a_release(
    reader: FakeReader, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finisher (rerun='after_release') runs again at a level only when blocks were released since."""
    blocks = [1_000_000]
    monkeypatch.setattr(_engine, "_allocated", lambda: blocks[0])

    def releases(n: int) -> object:
        def stats(ctx: object) -> dict[str, object]:
            blocks[0] -= n
            return {}

        return stats

    fin = Frees(reader, "fin", 0, 80, CHEAP, rerun="after_release")
    registry.register(fin)
    registry.register(Frees(reader, "clears", 0, 20, MODERATE, stats=releases(50_000)))
    registry.register(Frees(reader, "quiet", 0, 20, AGGRESSIVE, stats=releases(10)))
    report = gov(reader, registry).optimize(target_mb=1)
    assert fin.calls == ["cheap", "moderate"]  # not at aggressive: 10 blocks is no release
    assert [s.level for s in report.steps if s.name == "fin"] == ["cheap", "moderate"]


def test_finisher_not_rerun_when_nothing_else_ran(reader: FakeReader, registry: Registry) -> None:
    """With no other step run since, a finisher is not called again (and no allocator figure is read)."""
    fin = Frees(reader, "fin", 0, 80, CHEAP, rerun="after_release")
    registry.register(fin)
    gov(reader, registry).optimize(target_mb=1)
    assert fin.calls == ["cheap"]


def test_more_at_asks_for_a_rerun_at_that_level(reader: FakeReader, registry: Registry) -> None:
    """A strategy whose result says stats['more_at']='aggressive' is called again there, and only there."""
    hint = Frees(
        reader,
        "hint",
        0,
        20,
        CHEAP,
        stats=lambda ctx: {"more_at": "aggressive"} if ctx.aggressiveness < AGGRESSIVE else {},
    )
    registry.register(hint)
    registry.register(Frees(reader, "agg", 0, 30, AGGRESSIVE))
    gov(reader, registry).optimize(target_mb=1)
    assert hint.calls == ["cheap", "aggressive"]


def test_a_level_that_cannot_pay_is_left_for_the_next(reader: FakeReader, registry: Registry) -> None:
    """A step whose measured bound (at_most) cannot close the gap waits, runs once at the next level."""
    bounded = Frees(reader, "bounded", 100 * MiB, 80, CHEAP, at_most=lambda ctx: 100 * MiB)
    registry.register(bounded)
    registry.register(Frees(reader, "m", 300 * MiB, 20, MODERATE))
    report = gov(reader, registry).optimize(target_mb=100)
    assert bounded.calls == ["moderate"] and report.reached_at == "moderate"
    assert "bounded at most 100.0 MiB, short of the 400.0 MiB still needed" in str(report.levels[0]["left"])
    assert "left for the next level" in str(report)


def test_a_bound_that_can_pay_runs_at_its_level(reader: FakeReader, registry: Registry) -> None:
    """When the bound could close the gap the step runs where it is, and the climb may stop there."""
    bounded = Frees(reader, "bounded", 450 * MiB, 80, CHEAP, at_most=lambda ctx: 480 * MiB)
    registry.register(bounded)
    registry.register(Frees(reader, "m", 10 * MiB, 20, MODERATE))
    report = gov(reader, registry).optimize(target_mb=100)
    assert bounded.calls == ["cheap"] and report.reached_at == "cheap"


@pytest.mark.parametrize("bound", [None, -1, "lots", True, RuntimeError("boom")])
def test_a_bad_bound_means_unknown(reader: FakeReader, registry: Registry, bound: object) -> None:
    """A bound that is missing, negative, not an int, or raises is unknown: the step runs at its level."""

    def at_most(ctx: object) -> object:
        if isinstance(bound, Exception):
            raise bound
        return bound

    bounded = Frees(reader, "bounded", MiB, 80, CHEAP, at_most=at_most)
    registry.register(bounded)
    gov(reader, registry).optimize(target_mb=100)
    assert bounded.calls[0] == "cheap"


def test_top_level_never_defers(reader: FakeReader, registry: Registry) -> None:
    """At the ceiling every step runs, whatever its bound: there is no next level to leave it to."""
    bounded = Frees(reader, "bounded", MiB, 80, CHEAP, at_most=lambda ctx: 0)
    registry.register(bounded)
    report = gov(reader, registry).optimize(target_mb=100, aggressiveness="cheap")
    assert bounded.calls == ["cheap"] and not report.reached


def test_declined_step_shows_no_freed_figure(reader: FakeReader, registry: Registry) -> None:
    """A strategy that declines is shown without a freed figure, even if RSS moved while it ran."""

    class DeclinesWhileRssMoves:
        name, priority, aggressiveness = "declines", 10, CHEAP

        def apply(self, ctx: object) -> StrategyResult:
            reader.grow(20 * 1024)  # another thread allocated meanwhile
            return StrategyResult.skip("no container registered")

    registry.register(DeclinesWhileRssMoves())
    report = gov(reader, registry).optimize(target_mb=100)
    step = report.step("declines")
    assert step.freed is None and step.rss_after - step.rss_before == 20 * 1024  # type: ignore[operator]
    row = next(line for line in str(report).splitlines() if line.strip().startswith("declines"))
    assert "KiB" not in row and " - " in row and "skipped: no container registered" in row


def test_dry_run_climbs_without_calling(reader: FakeReader, registry: Registry) -> None:
    """dry_run with a target lists each strategy once, at the level it would first run, calling none."""
    c, m, a = ladder(reader, registry, MiB, MiB, MiB)
    report = gov(reader, registry).optimize(target_mb=100, dry_run=True)
    assert (c.calls, m.calls, a.calls) == ([], [], [])
    assert [(s.name, s.level, s.skipped) for s in report.steps] == [
        ("c", "cheap", "dry run"),
        ("m", "moderate", "dry run"),
        ("a", "aggressive", "dry run"),
    ]


def test_disabled_strategy_listed_once(reader: FakeReader, registry: Registry) -> None:
    """A disabled strategy gets one 'disabled' row however many levels the pass climbs."""
    c, _m, _a = ladder(reader, registry, 0, 0, 0)
    registry.disable("c")
    report = gov(reader, registry).optimize(target_mb=1)
    assert [s.name for s in report.steps].count("c") == 1 and report.step("c").skipped == "disabled"
    assert c.calls == []


def test_single_level_pass_keeps_registry_order(reader: FakeReader, registry: Registry) -> None:
    """Without climbing (the background governor's passes) rows stay in registry order, one per strategy."""
    _c, _m, _a = ladder(reader, registry, MiB, MiB, MiB)
    report = _engine.run_pass(registry, reader, target=None, aggressiveness=MODERATE)
    assert report is not None
    assert [s.name for s in report.steps] == ["c", "m", "a"]
    assert [s.level for s in report.steps] == ["moderate", "moderate", None]
    assert report.climb() == ""


def test_report_json_has_levels(reader: FakeReader, registry: Registry) -> None:
    """to_dict carries each step's level, the climb and reached_at, all JSON-safe."""
    ladder(reader, registry, 50 * MiB, 400 * MiB, 0)
    data = json.loads(gov(reader, registry).optimize(target_mb=100).to_json())
    assert data["reached_at"] == "moderate"
    assert [x["level"] for x in data["levels"]] == ["cheap", "moderate"]
    assert [s["level"] for s in data["steps"] if s["name"] in ("c", "m")] == ["cheap", "moderate"]


def test_html_and_rich_show_the_level(reader: FakeReader, registry: Registry) -> None:
    """Notebook and rich renderings carry the level column and the climb."""
    ladder(reader, registry, 50 * MiB, 400 * MiB, 0)
    report = gov(reader, registry).optimize(target_mb=100)
    html = report._repr_html_()
    assert "<th>level</th>" in html and "<b>levels:</b>" in html
    assert "c (cheap): +50.0 MiB freed 52428800" in dict(report.__rich_repr__())["steps"]  # type: ignore[operator]


def test_finisher_reruns_after_declared_allocator_bytes(
    reader: FakeReader, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step declaring >= 1 MiB freed inside an allocator (few large blocks) earns the finisher a rerun."""
    monkeypatch.setattr(_engine, "_allocated", lambda: 1_000_000)  # the block count never moves
    fin = Frees(reader, "fin", 0, 80, CHEAP, rerun="after_release")
    registry.register(fin)
    registry.register(Frees(reader, "big", 0, 20, MODERATE, stats={"allocator_bytes": 300 * MiB}))
    registry.register(Frees(reader, "small", 0, 20, AGGRESSIVE, stats={"allocator_bytes": 1000}))
    gov(reader, registry).optimize(target_mb=1)
    assert fin.calls == ["cheap", "moderate"]


@pytest.mark.parametrize(("bound", "calls"), [(450 * MiB, ["cheap", "moderate"]), (10 * MiB, ["moderate"])])
def test_finisher_reruns_when_its_bound_could_close_the_gap(
    reader: FakeReader, registry: Registry, monkeypatch: pytest.MonkeyPatch, bound: int, calls: list[str]
) -> None:
    """With no release seen, a finisher reruns after other steps if its bound covers the gap, else waits."""
    monkeypatch.setattr(_engine, "_allocated", lambda: 1_000_000)
    fin = Frees(reader, "fin", 0, 80, CHEAP, rerun="after_release", at_most=lambda ctx: bound)
    registry.register(fin)
    registry.register(Frees(reader, "m", 0, 20, MODERATE))
    gov(reader, registry).optimize(target_mb=100, aggressiveness="moderate")
    assert fin.calls == calls


def test_interrupt_at_every_line_of_the_climb_leaves_the_engine_usable(
    reader: FakeReader, registry: Registry
) -> None:
    """A KeyboardInterrupt at any line of the climb propagates, and the next pass runs normally."""
    import sys

    fin = Frees(reader, "fin", 10 * MiB, 80, CHEAP, rerun="after_release", at_most=lambda ctx: 50 * MiB)
    registry.register(fin)
    registry.register(Frees(reader, "m", 10 * MiB, 20, MODERATE, stats={"more_at": "aggressive"}))
    registry.register(Frees(reader, "a", 10 * MiB, 30, AGGRESSIVE))
    watched = {"_run_locked", "_worth_rerun", "_cannot_pay", "_run_one", "emit", "final_reason"}
    g = gov(reader, registry)
    interrupted = 0
    for n in range(1, 400):
        seen = [0]

        def tracer(frame: object, event: str, arg: object, n: int = n, seen: list[int] = seen) -> object:
            if frame.f_code.co_name not in watched:  # type: ignore[attr-defined]
                return None
            if event == "line":
                seen[0] += 1
                if seen[0] == n:
                    raise KeyboardInterrupt
            return tracer

        reader.set("500MB")
        sys.settrace(tracer)
        try:
            g.optimize(target_mb=1)
        except KeyboardInterrupt:
            interrupted += 1
        else:
            break  # n is past the last line: every earlier line was interrupted once
        finally:
            sys.settrace(None)
        assert not _engine._lock.locked() and not _engine._running_here._is_owned()  # type: ignore[attr-defined]
    reader.set("500MB")
    assert g.optimize(target_mb=1).levels[-1]["level"] == "aggressive"
    assert interrupted > 50, interrupted  # the loop really was interrupted at many different lines


def test_a_saved_report_renders_its_levels_as_the_live_one_does(
    reader: FakeReader, registry: Registry, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hivemem report opt.json` shows each step's level, the climb and 'reached at', as str(report) does."""
    from pathlib import Path

    from hivemem._cli.main import main

    ladder(reader, registry, 50 * MiB, 50 * MiB, 300 * MiB)
    report = gov(reader, registry).optimize(target_mb=150)
    assert report.reached_at == "aggressive"
    path = Path(str(tmp_path)) / "opt.json"
    path.write_text(report.to_json())
    assert main(["report", str(path)]) == 0
    saved = [line.split() for line in capsys.readouterr().out.splitlines()]
    live = [line.split() for line in str(report).splitlines() if not line.startswith("  total freed")]
    assert saved == live  # same words in the same order; only the column padding may differ
    assert ["c", "cheap", "+50.0", "MiB"] == saved[2][:4]
    assert ["a", "aggressive", "+300.0", "MiB"] == saved[4][:4]
    assert saved[-1][0] == "levels:" and "reached at aggressive" in " ".join(saved[0])
    html = Path(str(tmp_path)) / "opt.html"
    assert main(["report", str(path), "--html", str(html)]) == 0
    page = html.read_text()
    assert "<th>level</th>" in page and "<b>levels:</b> cheap 500.0 MiB -&gt; 450.0 MiB" in page
