"""The Strategy protocol (for type checkers and ``isinstance``).

Imported only when ``hivemem.Strategy`` is used: ``typing`` costs about 2 MB
of RSS, and the governor duck-types strategies without it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from hivemem._engine.context import StrategyContext, StrategyResult
from hivemem._levels import Aggressiveness

__all__ = ["Strategy"]


@runtime_checkable
class Strategy(Protocol):
    """**Protocol**: one way of giving memory back, run by the governor.

    An implementer guarantees:

    * ``name`` is a unique, stable identifier: lowercase letters, digits,
      ``_``, ``-`` or ``.``, starting with a letter (``"trim"``, ``"myapp.cache"``).
    * ``priority`` is an ``int``; passes run strategies by ``(priority, name)``,
      lowest first. Built-ins use 10-90; use 100+ to run after them.
    * ``aggressiveness`` is the least :class:`hivemem.Aggressiveness` at which
      the strategy may run (``CHEAP``, ``MODERATE`` or ``AGGRESSIVE``).
    * ``apply(ctx)`` does the work and returns a :class:`hivemem.StrategyResult`
      (or ``None``). It must leave the program's data and results unchanged,
      must not call ``hivemem.optimize()``, and may raise: the exception is
      recorded in the report and the pass goes on.

    A strategy does not report the memory it freed: the governor reads RSS
    before and after ``apply`` and records the difference.
    """

    name: str
    priority: int
    aggressiveness: Aggressiveness

    def apply(self, ctx: StrategyContext) -> StrategyResult | None: ...


Strategy.__module__ = "hivemem"
