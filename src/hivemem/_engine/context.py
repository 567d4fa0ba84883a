"""What a strategy receives and returns.

The :class:`hivemem.Strategy` protocol itself lives in ``protocol.py`` (it
needs ``typing``, which costs ~2 MB to import); the run-time machinery here
duck-types strategies and so stays free of it.
"""

from __future__ import annotations

from hivemem._levels import Aggressiveness

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    from hivemem._measure.usage import MemoryUsage

    class Reader(Protocol):
        """What a pass reads memory through: ``hivemem.ProcReader`` or a test's fake."""

        def rss(self) -> int: ...
        def usage(self) -> MemoryUsage: ...


__all__ = ["StrategyContext", "StrategyResult"]


class StrategyResult:
    """What a strategy says it did. The governor measures the memory itself.

    ``summary``
        One line for people, e.g. ``"collected 12,041 objects"``.
    ``stats``
        Numbers the strategy counted, JSON-safe (``{"collected": 12041}``).
        Bytes freed *inside* an allocator may go here (``"allocator_bytes"``);
        the RSS the step returned is measured by the governor, never by the
        strategy.
    ``skipped``
        A reason when the strategy decided not to act (``None`` otherwise).
    """

    __slots__ = ("skipped", "stats", "summary")
    __module__ = "hivemem"

    summary: str
    stats: dict[str, object]
    skipped: str | None

    def __init__(
        self, summary: str = "", *, stats: dict[str, object] | None = None, skipped: str | None = None
    ) -> None:
        self.summary = summary
        self.stats = dict(stats or {})
        self.skipped = skipped

    @classmethod
    def skip(cls, reason: str, **stats: object) -> StrategyResult:
        """A result for a strategy that chose not to act, with the reason."""
        return cls(stats=stats, skipped=reason)

    def __repr__(self) -> str:
        if self.skipped is not None:
            return f"StrategyResult.skip({self.skipped!r})"
        return f"StrategyResult({self.summary!r}, stats={self.stats!r})"


class StrategyContext:
    """What the governor tells a strategy about the pass it runs in.

    ``target``      bytes the pass aims for (``None``: no target, do your part)
    ``limit``       the process's memory limit in bytes, when known
    ``aggressiveness``  the level of this pass
    ``dry_run``     when true the strategy is not called at all (kept for completeness)
    ``level``       the governor's pressure level name, or ``None`` for a direct call
    ``needed``      bytes the pass still needs when this step starts: RSS measured just
                    before the step minus ``target`` (never negative); ``None`` without a
                    target. A strategy that can free part of what it holds (a cache that
                    evicts least recently used entries) frees about this much, not more.
    ``rss()``       the current RSS, from the governor's reader
    ``usage()``     a full :class:`hivemem.MemoryUsage`, from the same reader
    """

    __slots__ = ("_reader", "aggressiveness", "dry_run", "level", "limit", "needed", "target")
    __module__ = "hivemem"

    def __init__(
        self,
        *,
        target: int | None,
        aggressiveness: Aggressiveness,
        reader: Reader,
        limit: int | None = None,
        dry_run: bool = False,
        level: str | None = None,
    ) -> None:
        self.target = target
        self.limit = limit
        self.aggressiveness = aggressiveness
        self.dry_run = dry_run
        self.level = level
        self.needed: int | None = None
        self._reader = reader

    def rss(self) -> int:
        return self._reader.rss()

    def usage(self) -> MemoryUsage:
        return self._reader.usage()

    def headroom(self) -> int | None:
        """Bytes between current RSS and the limit (or target when no limit), or ``None``."""
        bound = self.limit if self.limit is not None else self.target
        return None if bound is None else bound - self.rss()

    def __repr__(self) -> str:
        return (
            f"StrategyContext(target={self.target!r}, aggressiveness={self.aggressiveness!r}, "
            f"level={self.level!r})"
        )
