"""The governor's option groups (_governor/options.py): the same settings as the flat keywords."""

from __future__ import annotations

import pytest

import hivemem
from hivemem import MemoryGovernor, Pressure
from hivemem._governor.options import (
    AdaptiveOptions,
    BudgetOptions,
    CpuOptions,
    EscalationOptions,
    PacingOptions,
    WakeOptions,
)
from hivemem.testing import FakeReader


def _gov(reader: FakeReader, registry: hivemem.Registry, **options: object) -> MemoryGovernor:
    return MemoryGovernor(reader=reader, registry=registry, limit="1000MB", **options)  # type: ignore[arg-type]


def test_groups_set_what_the_flat_keywords_set(reader: FakeReader, registry: hivemem.Registry) -> None:
    """Each group gives the governor the same settings as its flat keyword arguments."""
    flat = _gov(
        reader,
        registry,
        budget="500MB",
        interval=0.05,
        max_interval=0.5,
        cpu_budget=0.1,
        cpu_window=5.0,
        demote_after=4,
        level_aggressiveness={"high": "aggressive"},
        escalation="raise",
        exit_code=3,
        psi=False,
        notify=False,
    )
    grouped = MemoryGovernor(
        reader=reader,
        registry=registry,
        budget_options=BudgetOptions("500MB", limit="1000MB"),
        pacing_options=PacingOptions(0.05, max_interval=0.5),
        cpu_options=CpuOptions(0.1, window=5.0),
        adaptive_options=AdaptiveOptions(demote_after=4, level_aggressiveness={"high": "aggressive"}),
        escalation_options=EscalationOptions("raise", exit_code=3),
        wake_options=WakeOptions(False, notify=False),
    )
    for name in (
        "budget",
        "interval",
        "max_interval",
        "min_interval",
        "escalation",
        "exit_code",
        "psi",
        "notify",
    ):
        assert getattr(flat, name) == getattr(grouped, name), name
    assert flat.cpu == grouped.cpu
    assert flat.level_aggressiveness == grouped.level_aggressiveness
    assert grouped.level_aggressiveness[Pressure.HIGH] == hivemem.AGGRESSIVE


def test_a_setting_given_both_ways_is_refused(reader: FakeReader, registry: hivemem.Registry) -> None:
    with pytest.raises(hivemem.InvalidArgument, match="interval"):
        _gov(reader, registry, interval=0.05, pacing_options=PacingOptions(0.1))
    with pytest.raises(hivemem.InvalidArgument, match="pacing_options"):
        _gov(reader, registry, pacing_options=CpuOptions())


def test_groups_check_their_values_when_made() -> None:
    with pytest.raises(hivemem.InvalidArgument, match="max_interval"):
        PacingOptions(0.5, max_interval=0.1)
    with pytest.raises(hivemem.InvalidArgument, match="on_escalate"):
        EscalationOptions("callback")
    with pytest.raises(hivemem.InvalidArgument, match="cpu_budget"):
        CpuOptions(2.0)
    with pytest.raises(hivemem.InvalidArgument, match="never_demote"):
        AdaptiveOptions(never_demote="hooks")
    with pytest.raises(AttributeError, match="frozen"):
        PacingOptions().interval = 1.0  # type: ignore[misc]


def test_govern_takes_the_groups(reader: FakeReader, registry: hivemem.Registry) -> None:
    gov = hivemem.govern(
        reader=reader,
        registry=registry,
        budget_options=BudgetOptions(0.5, limit="1000MB"),
        wake_options=WakeOptions(False),
    )
    try:
        assert gov.running and gov.budget == 500 * 2**20
    finally:
        gov.stop()
