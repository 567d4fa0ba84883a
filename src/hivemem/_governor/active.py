"""The process-wide governors, readable without importing ``governor.py``.

``governed()`` is the governor :func:`hivemem.govern` started (``None``
before the first call); ``default()`` the one behind :func:`hivemem.optimize`
(``None`` until it is first needed). The profiler, ``hivemem.status()`` and
the Prometheus exporter read them here: this module imports nothing.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hivemem._governor.governor import MemoryGovernor

__all__ = ["default", "governed", "set_default", "swap_governed"]

_governed: MemoryGovernor | None = None
_default: MemoryGovernor | None = None


def governed() -> MemoryGovernor | None:
    """The governor ``hivemem.govern()`` started last (it may have been stopped since)."""
    return _governed


def swap_governed(gov: MemoryGovernor) -> MemoryGovernor | None:
    """Make *gov* the process-wide governor; returns the previous one (the caller stops it)."""
    global _governed
    previous, _governed = _governed, gov
    return previous


def default() -> MemoryGovernor | None:
    """The governor behind ``hivemem.optimize()``, or ``None`` before it was made."""
    return _default


def set_default(gov: MemoryGovernor) -> None:
    global _default
    _default = gov
