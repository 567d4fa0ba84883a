"""What the background governor did, as frozen, JSON-safe events.

Every event is kept (bounded) in ``MemoryGovernor.events``, logged on the
``hivemem`` logger and handed to every subscriber. Kinds:

``start`` / ``stop``   the monitor thread started or stopped
``level``              the pressure level changed (``data["from"]``, ``data["to"]``)
``act``                a reclamation pass ran at ``level``: ``rss_before``,
                       ``rss_after``, the ``steps`` run, ``seconds``, and the
                       adaptive ``data["order"]`` and ``data["demoted"]``
``throttle``           the CPU budget is spent: passes wait until it refills
``escalate``           still CRITICAL with the CPU budget spent: the policy ran
``demote`` / ``promote``  a strategy left or re-entered the adaptive order
``error``              the governor's own step failed (it goes on)
"""

from __future__ import annotations

from hivemem._frozen import Frozen
from hivemem._sizes import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from typing_extensions import TypedDict

    from hivemem._engine.report import StepResult

    class EventFields(TypedDict, total=False):
        """The keyword arguments of :class:`GovernorEvent`: what ``MemoryGovernor._emit`` passes on."""

        rss_before: int | None
        rss_after: int | None
        steps: tuple[StepResult, ...] | list[StepResult]
        seconds: float
        message: str
        data: dict[str, object] | None


__all__ = ["KINDS", "GovernorEvent"]

KINDS = ("act", "demote", "error", "escalate", "level", "promote", "start", "stop", "throttle")

# Logging level per kind (numbers, so this module need not import logging).
_LOG_LEVEL = {"escalate": 30, "error": 40, "level": 20, "throttle": 20}


class GovernorEvent(Frozen):
    """One thing the governor did. Frozen; ``to_dict()`` is JSON-safe.

    ``time``        the governor's clock (``time.monotonic()`` unless injected)
    ``kind``        one of ``act``, ``level``, ``throttle``, ``escalate``,
                    ``demote``, ``promote``, ``start``, ``stop``, ``error``
    ``level``       the pressure level name at the time (``"normal"`` ... ``"critical"``)
    ``rss_before``, ``rss_after``  bytes, when measured (``None`` otherwise)
    ``steps``       the :class:`hivemem.StepResult` of an ``act`` pass, in run order
    ``seconds``     duration of the action, by the governor's clock
    ``message``     one line for people
    ``data``        JSON-safe details (adaptive order, policy, thresholds...)
    """

    __slots__ = ("data", "kind", "level", "message", "rss_after", "rss_before", "seconds", "steps", "time")
    __module__ = "hivemem"

    time: float
    kind: str
    level: str
    rss_before: int | None
    rss_after: int | None
    steps: tuple[StepResult, ...]
    seconds: float
    message: str
    data: dict[str, object]

    def __init__(
        self,
        time: float,
        kind: str,
        level: str,
        *,
        rss_before: int | None = None,
        rss_after: int | None = None,
        steps: tuple[StepResult, ...] | list[StepResult] = (),
        seconds: float = 0.0,
        message: str = "",
        data: dict[str, object] | None = None,
    ) -> None:
        self._set(time=time, kind=kind, level=level, rss_before=rss_before, rss_after=rss_after)
        self._set(steps=tuple(steps), seconds=seconds, message=message, data=dict(data or {}))

    @property
    def freed(self) -> int | None:
        """``rss_before - rss_after`` when both were measured."""
        if self.rss_before is None or self.rss_after is None:
            return None
        return self.rss_before - self.rss_after

    @property
    def log_level(self) -> int:
        """The ``logging`` level this event is logged at (INFO for level changes, WARNING to escalate)."""
        return _LOG_LEVEL.get(self.kind, 10)

    def to_dict(self) -> dict[str, object]:
        """Every field, JSON-safe; ``steps`` as :meth:`hivemem.StepResult.to_dict` dicts."""
        return {
            "time": self.time,
            "kind": self.kind,
            "level": self.level,
            "rss_before": self.rss_before,
            "rss_after": self.rss_after,
            "freed": self.freed,
            "steps": [s.to_dict() for s in self.steps],
            "seconds": self.seconds,
            "message": self.message,
            "data": dict(self.data),
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GovernorEvent):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # data is a dict: equal events need not hash

    def describe(self) -> str:
        """The one line that is logged: ``[high] act: RSS 812.0 MiB -> 640.0 MiB in 0.031 s (gc, trim)``."""
        text = f"[{self.level}] {self.kind}"
        if self.rss_before is not None and self.rss_after is not None:
            text += f": RSS {format_size(self.rss_before)} -> {format_size(self.rss_after)}"
            if self.seconds:
                text += f" in {self.seconds:.3f} s"
        ran = [s.name for s in self.steps if s.ran]
        if ran:
            text += f" ({', '.join(ran)})"
        if self.message:
            text += f"; {self.message}"
        return text

    def __repr__(self) -> str:
        return f"<GovernorEvent t={self.time:.3f} {self.describe()}>"

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        yield "time", self.time
        yield "kind", self.kind
        yield "level", self.level
        if self.rss_before is not None:
            yield "rss_before", format_size(self.rss_before)
        if self.rss_after is not None:
            yield "rss_after", format_size(self.rss_after)
        if self.steps:
            yield "steps", [s.name for s in self.steps if s.ran]
        if self.message:
            yield "message", self.message
