"""What a memory reader provides: the type of every ``reader=`` argument (used for type checking only)."""

from __future__ import annotations

from typing import Protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hivemem._measure.usage import MemoryUsage

__all__ = ["Reader"]


class Reader(Protocol):
    """``rss()`` in bytes and a full ``usage()``: ``hivemem.ProcReader``, ``hivemem.testing.FakeReader``."""

    def rss(self) -> int: ...

    def usage(self) -> MemoryUsage: ...
