from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import hivemem
from hivemem import InvalidSize, format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90MB", 90 * 2**20),
        ("90 MiB", 90 * 2**20),
        ("90mb", 90 * 2**20),
        ("1.5GB", int(1.5 * 2**30)),
        ("1.5 gib", int(1.5 * 2**30)),
        ("4096", 4096),
        ("12 B", 12),
        ("1K", 1024),
        ("2KiB", 2048),
        ("1TB", 2**40),
        ("  7 MB  ", 7 * 2**20),
        ("1_000", 1000),
        ("0", 0),
        (0, 0),
        (123, 123),
        (1.6, 2),
    ],
)
def test_parse_size_accepts(text: object, expected: int) -> None:
    """Binary units, optional space, any case, ints and floats are bytes."""
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "bad",
    [
        -1,
        -0.5,
        "-5MB",
        math.nan,
        math.inf,
        "inf",
        "nan",
        True,
        False,
        "90 MBs",
        "MB",
        "",
        "1..2MB",
        "1e3MB",
        None,
        [90],
        b"90MB",
        "90 PB",
    ],
)
def test_parse_size_rejects(bad: object) -> None:
    """Negatives, NaN, inf, bool, unknown units and other types raise InvalidSize naming the value."""
    with pytest.raises(InvalidSize) as info:
        parse_size(bad)
    assert repr(bad) in str(info.value)
    assert "expected" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, hivemem.HivememError)


@given(st.integers(min_value=0, max_value=2**62))
def test_parse_size_int_identity(n: int) -> None:
    """Any non-negative int is already bytes."""
    assert parse_size(n) == n
    assert parse_size(str(n)) == n


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(["B", "KB", "KiB", "MB", "MiB", "GB", "GiB"]),
    st.sampled_from(["", " "]),
)
def test_parse_size_units_roundtrip(n: int, unit: str, space: str) -> None:
    """n<unit> parses to n times the binary multiplier, whatever the spacing and case."""
    mult = {"B": 1, "K": 2**10, "M": 2**20, "G": 2**30}[unit[0]]
    assert parse_size(f"{n}{space}{unit}") == n * mult
    assert parse_size(f"{n}{space}{unit.lower()}") == n * mult


@given(st.text(max_size=12))
def test_parse_size_never_crashes_otherwise(text: str) -> None:
    """Arbitrary text either parses to a non-negative int or raises InvalidSize, nothing else."""
    try:
        value = parse_size(text)
    except InvalidSize:
        return
    assert isinstance(value, int) and value >= 0


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (90 * 2**20, "90.0 MiB"),
        (-(2**20), "-1.0 MiB"),
        (None, "n/a"),
    ],
)
def test_format_size(n: int | None, text: str) -> None:
    """Sizes format with binary units at the edges only."""
    assert format_size(n) == text


def test_format_size_signed() -> None:
    """signed=True marks freed memory with a plus."""
    assert format_size(2**20, signed=True) == "+1.0 MiB"
    assert format_size(0, signed=True) == "0 B"


@pytest.mark.parametrize("bad", [True, "90", math.nan, -1])
def test_target_mb_rejects(bad: object) -> None:
    """target_mb must be a finite non-negative number of MiB."""
    with pytest.raises(InvalidSize):
        hivemem.MemoryGovernor(registry=hivemem.Registry(builtins=False, entry_points=False)).optimize(bad)  # type: ignore[arg-type]
