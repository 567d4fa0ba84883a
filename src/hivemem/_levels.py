"""Small ordered levels: :class:`Aggressiveness` and :class:`Pressure`.

They are ``int`` subclasses, so they compare with ``<``/``>=`` and cost
nothing to import (``enum`` costs ~1 MB of RSS in a bare interpreter).
Each level is a singleton; parse user input with ``Level.parse(...)``.
"""

from __future__ import annotations

from hivemem._errors import InvalidArgument
from hivemem._typing import cast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeVar

    L = TypeVar("L", bound="_Level")

__all__ = ["AGGRESSIVE", "CHEAP", "MODERATE", "Aggressiveness", "Pressure"]


class _Level(int):
    __slots__ = ()
    _names: tuple[str, ...] = ()
    _members: dict[int, _Level]
    _label = "level"

    def __new__(cls, value: object) -> _Level:
        return cls.parse(value)

    @classmethod
    def _make(cls, value: int) -> None:
        member = int.__new__(cls, value)
        cls._members[value] = member
        setattr(cls, cls._names[value - cls._first()].upper(), member)

    @classmethod
    def _first(cls) -> int:
        return 1 if cls is not Pressure else 0

    @property
    def name(self) -> str:
        return self._names[int(self) - self._first()]

    def __repr__(self) -> str:
        return f"hivemem.{type(self).__name__}.{self.name.upper()}"

    def __str__(self) -> str:
        return self.name

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return (type(self), (int(self),))

    @classmethod
    def parse(cls: type[L], value: object) -> L:
        """Accept a member, its name in any case (``"moderate"``) or its number."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            key = value.strip().lower()
            for member in cls._members.values():
                if member.name == key:
                    return cast("L", member)  # each subclass's table holds its own members
        elif isinstance(value, int) and not isinstance(value, bool) and value in cls._members:
            return cast("L", cls._members[value])
        choices = ", ".join(repr(m.name) for m in cls._members.values())
        raise InvalidArgument(f"invalid {cls._label} {value!r}: expected one of {choices}")

    @classmethod
    def members(cls) -> list[_Level]:
        return [cls._members[k] for k in sorted(cls._members)]


class Aggressiveness(_Level):
    """How far a pass may go: ``CHEAP`` (1) < ``MODERATE`` (2) < ``AGGRESSIVE`` (3).

    A strategy declares the least aggressiveness at which it may run; a pass
    at level L runs every strategy whose level is ``<= L``.
    """

    __module__ = "hivemem"
    __slots__ = ()
    _names = ("cheap", "moderate", "aggressive")
    _members: dict[int, _Level] = {}  # noqa: RUF012 - filled once at import
    _label = "aggressiveness"
    CHEAP: Aggressiveness
    MODERATE: Aggressiveness
    AGGRESSIVE: Aggressiveness


class Pressure(_Level):
    """Memory pressure: ``NORMAL`` (0) < ``MODERATE`` (1) < ``HIGH`` (2) < ``CRITICAL`` (3).

    Compare with ``>=``, like Android's ``onTrimMemory`` levels: a release
    hook registered for ``HIGH`` also runs at ``CRITICAL``.
    """

    __module__ = "hivemem"
    __slots__ = ()
    _names = ("normal", "moderate", "high", "critical")
    _members: dict[int, _Level] = {}  # noqa: RUF012 - filled once at import
    _label = "pressure level"
    NORMAL: Pressure
    MODERATE: Pressure
    HIGH: Pressure
    CRITICAL: Pressure


for _i in (1, 2, 3):
    Aggressiveness._make(_i)
for _i in (0, 1, 2, 3):
    Pressure._make(_i)
del _i

CHEAP = Aggressiveness.CHEAP
MODERATE = Aggressiveness.MODERATE
AGGRESSIVE = Aggressiveness.AGGRESSIVE
