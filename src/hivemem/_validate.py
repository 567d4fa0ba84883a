"""Argument checks shared by every public constructor and function.

Each check either returns the value in its canonical type or raises an
error from hivemem's tree (:class:`hivemem.InvalidArgument`,
:class:`hivemem.InvalidSize`) that names the argument, the bad value and
what was expected. Checks run where the argument is given, never later in a
background thread: a value that passes here cannot crash a monitor, a
sampler or a strategy.

Every bound is finite and documented: ``MAX_SECONDS`` for intervals and
windows (longer waits overflow ``poll()``/``Event.wait()`` timeouts), and
a caller-chosen maximum for counts and sizes.
"""

from __future__ import annotations

import math

from hivemem._errors import InvalidArgument, InvalidSize, show
from hivemem._sizes import format_size, parse_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal, TypeVar, overload

    C = TypeVar("C")

__all__ = [
    "MAX_COUNT",
    "MAX_SECONDS",
    "MAX_SIZE",
    "callable_or_none",
    "count",
    "fraction",
    "show",
    "seconds",
    "size",
]

#: Longest interval or window any hivemem option accepts: one day.
MAX_SECONDS = 86_400.0
#: Largest count (repetitions, entries, events) accepted unless a caller sets a smaller bound.
MAX_COUNT = 10**9
#: Largest size in bytes accepted unless a caller sets a smaller bound: 1 PiB.
MAX_SIZE = 2**50


def _finite(value: object) -> float | None:
    """*value* as a finite float; ``None`` for a non-number (or ``bool``), an overflow, inf or nan."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


if TYPE_CHECKING:  # without allow_none=True the result is never None

    @overload
    def seconds(
        name: str,
        value: object,
        *,
        minimum: float = ...,
        maximum: float = ...,
        allow_zero: bool = ...,
        allow_none: Literal[False] = ...,
    ) -> float: ...
    @overload
    def seconds(
        name: str,
        value: object,
        *,
        minimum: float = ...,
        maximum: float = ...,
        allow_zero: bool = ...,
        allow_none: bool,
    ) -> float | None: ...


def seconds(
    name: str,
    value: object,
    *,
    minimum: float = 0.0,
    maximum: float = MAX_SECONDS,
    allow_zero: bool = False,
    allow_none: bool = False,
) -> float | None:
    """A finite number of seconds, ``> minimum`` (``>=`` with *allow_zero*) and ``<= maximum``."""
    if value is None and allow_none:
        return None
    number = _finite(value)
    if number is None or not ((number >= minimum if allow_zero else number > minimum) and number <= maximum):
        low = f">= {minimum:g}" if allow_zero else f"> {minimum:g}"
        extra = " or None" if allow_none else ""
        raise InvalidArgument(
            f"{name}={show(value)}: expected a number of seconds {low} and <= {maximum:g}{extra}"
        )
    return number


if TYPE_CHECKING:

    @overload
    def count(
        name: str, value: object, *, minimum: int = ..., maximum: int = ..., allow_none: Literal[False] = ...
    ) -> int: ...
    @overload
    def count(
        name: str, value: object, *, minimum: int = ..., maximum: int = ..., allow_none: bool
    ) -> int | None: ...


def count(
    name: str, value: object, *, minimum: int = 1, maximum: int = MAX_COUNT, allow_none: bool = False
) -> int | None:
    """A whole number in ``[minimum, maximum]`` (``bool`` is refused)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not (minimum <= value <= maximum):
        extra = " or None" if allow_none else ""
        raise InvalidArgument(
            f"{name}={show(value)}: expected a whole number between {minimum:,} and {maximum:,}{extra}"
        )
    return value


def fraction(name: str, value: object, *, allow_zero: bool = False, allow_one: bool = True) -> float:
    """A finite number in ``(0, 1]`` (bounds adjustable)."""
    number = _finite(value)
    if (
        number is None
        or not (number >= 0 if allow_zero else number > 0)
        or not (number <= 1 if allow_one else number < 1)
    ):
        low = "[0" if allow_zero else "(0"
        high = "1]" if allow_one else "1)"
        raise InvalidArgument(f"{name}={show(value)}: expected a fraction in {low}, {high}")
    return number


if TYPE_CHECKING:

    @overload
    def size(
        name: str, value: object, *, minimum: int = ..., maximum: int = ..., allow_none: Literal[False] = ...
    ) -> int: ...
    @overload
    def size(
        name: str, value: object, *, minimum: int = ..., maximum: int = ..., allow_none: bool
    ) -> int | None: ...


def size(
    name: str, value: object, *, minimum: int = 0, maximum: int = MAX_SIZE, allow_none: bool = False
) -> int | None:
    """A size (``parse_size`` forms) in ``[minimum, maximum]`` bytes."""
    if value is None and allow_none:
        return None
    try:
        nbytes = parse_size(value)
    except InvalidSize as exc:
        raise InvalidSize(value, f"{name}: {exc.reason}" if exc.reason else name) from None
    if not (minimum <= nbytes <= maximum):
        raise InvalidSize(value, f"{name} must be between {format_size(minimum)} and {format_size(maximum)}")
    return nbytes


def callable_or_none(name: str, value: C) -> C:
    """``None`` or a callable: returns *value*, with the type the caller gave it."""
    if value is not None and not callable(value):
        raise InvalidArgument(f"{name}={show(value)}: expected a callable or None")
    return value
