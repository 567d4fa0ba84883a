"""Pressure thresholds with hysteresis: when a level is entered and when it is left.

Defaults follow Dask's worker thresholds (target 0.60, spill 0.70, pause
0.80, terminate 0.95 of the limit), as fractions of the governor's budget:

==========  =====  =======  ============================================
level       enter  release  aggressiveness of the passes run there
==========  =====  =======  ============================================
MODERATE    0.70   0.60     cheap
HIGH        0.80   0.70     moderate
CRITICAL    0.95   0.85     aggressive
==========  =====  =======  ============================================

A level is entered when memory reaches its *enter* threshold and left only
once memory falls below its *release* threshold, so a noisy signal around
one threshold does not flap. User-given thresholds are fractions of the
budget (``0.8``, ``"80%"``) or sizes (``"800MB"``, bytes); a level given
without a release threshold releases at 90% of its entry. When thresholds
are given, only the levels named exist.
"""

from __future__ import annotations

from hivemem._errors import InvalidArgument, InvalidSize
from hivemem._levels import Pressure
from hivemem._sizes import format_size, parse_size

__all__ = ["DEFAULT_FRACTIONS", "Thresholds", "resolve_amount"]

DEFAULT_FRACTIONS: dict[Pressure, tuple[float, float]] = {
    Pressure.MODERATE: (0.70, 0.60),
    Pressure.HIGH: (0.80, 0.70),
    Pressure.CRITICAL: (0.95, 0.85),
}
DEFAULT_RELEASE_RATIO = 0.90


def _fraction(value: object) -> float | None:
    """A fraction from ``0.8`` or ``"80%"``; ``None`` when *value* is a size."""
    if isinstance(value, float):
        if not (0.0 < value <= 1.0):
            raise InvalidArgument(
                f"{value!r}: a float is a fraction of the budget and must be in (0, 1]; "
                "give sizes as bytes (int) or strings such as '800MB'"
            )
        return value
    if isinstance(value, str) and value.strip().endswith("%"):
        text = value.strip()[:-1].strip()
        try:
            number = float(text)
        except ValueError:
            raise InvalidArgument(f"{value!r}: expected a percentage such as '80%'") from None
        if not (0.0 < number <= 100.0):
            raise InvalidArgument(f"{value!r}: a percentage must be in (0%, 100%]")
        return number / 100.0
    return None


def resolve_amount(value: object, whole: int, *, name: str) -> int:
    """Bytes for *value*: a fraction of *whole* (``0.8``, ``"80%"``) or a size (``"800MB"``, bytes)."""
    try:
        frac = _fraction(value)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{name}={exc}") from None
    if frac is not None:
        return int(whole * frac)
    try:
        return parse_size(value)
    except InvalidSize as exc:
        raise InvalidArgument(f"{name}: {exc}; or a fraction of the budget such as 0.8 or '80%'") from None


class Thresholds:
    """Entry and release thresholds (bytes) per pressure level, checked for consistency.

    ``levels`` maps each configured :class:`hivemem.Pressure` (above NORMAL)
    to ``(enter, release)``.
    """

    __slots__ = ("budget", "levels")

    def __init__(self, budget: int, levels: dict[Pressure, tuple[int, int]]) -> None:
        self.budget = budget
        self.levels = dict(sorted(levels.items()))
        self._check()

    @classmethod
    def build(cls, budget: int, spec: object = None) -> Thresholds:
        """From the defaults (*spec* ``None``) or a ``{level: enter | (enter, release)}`` mapping."""
        if spec is None:
            return cls(
                budget,
                {lvl: (int(budget * e), int(budget * r)) for lvl, (e, r) in DEFAULT_FRACTIONS.items()},
            )
        if not isinstance(spec, dict) or not spec:
            raise InvalidArgument(
                f"thresholds={spec!r}: expected a dict such as "
                "{'high': '500MB', 'critical': ('800MB', '700MB')} (enter, or (enter, release))"
            )
        levels: dict[Pressure, tuple[int, int]] = {}
        for key, value in spec.items():
            level = Pressure.parse(key)
            if level == Pressure.NORMAL:
                raise InvalidArgument("thresholds: NORMAL has no threshold (it is where memory is below all)")
            where = f"thresholds[{level.name!r}]"
            if isinstance(value, (tuple, list)):
                if len(value) != 2:
                    raise InvalidArgument(f"{where}={value!r}: expected enter or (enter, release)")
                enter = resolve_amount(value[0], budget, name=where)
                release = resolve_amount(value[1], budget, name=f"{where} release")
            else:
                enter = resolve_amount(value, budget, name=where)
                release = int(enter * DEFAULT_RELEASE_RATIO)
            levels[level] = (enter, release)
        return cls(budget, levels)

    def _check(self) -> None:
        previous: tuple[Pressure, int, int] | None = None
        for level, (enter, release) in self.levels.items():
            if enter <= 0:
                raise InvalidArgument(f"threshold for {level.name} must be above 0 bytes, got {enter}")
            if not (0 <= release < enter):
                raise InvalidArgument(
                    f"release threshold for {level.name} ({format_size(release)}) must be below its "
                    f"entry threshold ({format_size(enter)}): hysteresis needs a gap"
                )
            if previous is not None:
                plevel, penter, prelease = previous
                if enter <= penter:
                    raise InvalidArgument(
                        f"thresholds out of order: {level.name} enters at {format_size(enter)}, "
                        f"not above {plevel.name} at {format_size(penter)}"
                    )
                if release < prelease:
                    raise InvalidArgument(
                        f"release thresholds out of order: {level.name} releases at {format_size(release)}, "
                        f"below {plevel.name}'s {format_size(prelease)}"
                    )
            previous = (level, enter, release)

    def enter(self, level: Pressure) -> int:
        return self.levels[level][0]

    def release(self, level: Pressure) -> int:
        return self.levels[level][1]

    @property
    def highest(self) -> int:
        """The highest entry threshold configured."""
        return max(e for e, _ in self.levels.values())

    def classify(self, value: int, current: Pressure, *, raw: int | None = None) -> Pressure:
        """The level for memory *value* when the level is now *current* (hysteresis).

        Go up to the highest level whose entry threshold *value* reaches; go
        down only below the current level's release threshold, one level at
        a time. *raw* (the instantaneous RSS when *value* is a rolling
        minimum) is what CRITICAL is judged on: a spike near the limit is
        what the OOM killer sees.
        """
        crit = value if raw is None else raw
        up = Pressure.NORMAL
        for level, (enter, _) in self.levels.items():
            if (crit if level == Pressure.CRITICAL else value) >= enter:
                up = level
        down = current
        while down > Pressure.NORMAL:
            bounds = self.levels.get(down)
            if bounds is not None and (crit if down == Pressure.CRITICAL else value) >= bounds[1]:
                break
            down = Pressure.parse(int(down) - 1)
        return up if up > down else down

    def to_dict(self) -> dict[str, object]:
        return {
            "budget": self.budget,
            "levels": {lvl.name: {"enter": e, "release": r} for lvl, (e, r) in self.levels.items()},
        }

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{lvl.name}: {format_size(e)} (release {format_size(r)})" for lvl, (e, r) in self.levels.items()
        )
        return f"Thresholds(budget={format_size(self.budget)!r}, {parts})"
