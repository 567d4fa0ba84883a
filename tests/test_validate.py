"""The shared argument checks: every odd value is refused at the call with a hivemem error."""

from __future__ import annotations

import math

import pytest

import hivemem
from hivemem import _validate as v

ODD = [None, -1, 0, math.nan, math.inf, -math.inf, 10**400, 1e308, "1s", True, [], object()]


@pytest.mark.parametrize("value", ODD)
def test_seconds_refuses_odd_values(value: object) -> None:
    """Intervals are finite, positive and at most a day; anything else names itself in the error."""
    with pytest.raises(hivemem.InvalidArgument, match=r"^interval="):
        v.seconds("interval", value)


def test_seconds_bounds_and_options() -> None:
    """The documented maximum is inclusive; zero and None pass only when asked for."""
    assert v.seconds("interval", v.MAX_SECONDS) == v.MAX_SECONDS
    assert v.seconds("interval", 0, allow_zero=True) == 0.0
    assert v.seconds("interval", None, allow_none=True) is None
    with pytest.raises(hivemem.InvalidArgument):
        v.seconds("interval", v.MAX_SECONDS * 1.01)


@pytest.mark.parametrize("value", [*ODD, 1.5, 2**64])
def test_count_refuses_odd_values(value: object) -> None:
    """Counts are ints in [1, MAX_COUNT]; floats, bools and huge ints are refused."""
    with pytest.raises(hivemem.InvalidArgument, match=r"^repeat="):
        v.count("repeat", value)


def test_fraction_and_callable() -> None:
    """Fractions live in (0, 1]; callables may be None."""
    assert v.fraction("f", 1) == 1.0
    for bad in (0, 1.5, math.nan, "0.5", True):
        with pytest.raises(hivemem.InvalidArgument):
            v.fraction("f", bad)
    assert v.callable_or_none("cb", None) is None
    with pytest.raises(hivemem.InvalidArgument, match="on_step=5"):
        v.callable_or_none("on_step", 5)


@pytest.mark.parametrize("value", ["1" + "0" * 308 + ".0TB", 1e308 * 10, "9 XB", -1, "2 PiB"])
def test_size_refuses_and_names_the_argument(value: object) -> None:
    """Sizes beyond the maximum or unparsable raise InvalidSize naming the argument."""
    with pytest.raises(hivemem.InvalidSize, match="max_bytes"):
        v.size("max_bytes", value, maximum=2**40)


def test_huge_values_are_shortened_in_messages() -> None:
    """A 401-digit number does not flood the message."""
    with pytest.raises(hivemem.InvalidArgument) as info:
        v.count("repeat", 10**400)
    assert len(str(info.value)) < 200
    assert "401 characters" in str(info.value)


def test_parse_size_overflow_is_invalid_size() -> None:
    """A finite number whose byte count overflows is InvalidSize, not OverflowError."""
    with pytest.raises(hivemem.InvalidSize, match="too large"):
        hivemem.parse_size("1" + "0" * 308 + ".0TB")
    with pytest.raises(hivemem.InvalidSize):
        hivemem.optimize(target_mb=1e308)
