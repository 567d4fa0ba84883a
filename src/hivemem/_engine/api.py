"""Module-level shortcuts onto the process-wide strategy registry."""

from __future__ import annotations

from hivemem._engine.registry import default_registry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeVar

    S = TypeVar("S")

__all__ = [
    "disable_strategy",
    "enable_strategy",
    "register_strategy",
    "list_strategies",
    "unregister_strategy",
]


def register_strategy(strategy: S, *, replace: bool = False) -> S:
    """Add *strategy* to the process-wide registry; returns it (usable as a class decorator).

    *strategy* follows :class:`hivemem.Strategy`: ``name``, ``priority``,
    ``aggressiveness`` and ``apply(ctx)``. A class is instantiated with no
    arguments. Raises :class:`hivemem.StrategyError` for an invalid strategy
    or a name already taken (unless ``replace=True``).
    """
    return default_registry.register(strategy, replace=replace)


def unregister_strategy(name: str) -> None:
    """Remove a strategy by name; raises :class:`hivemem.UnknownStrategy` if there is none."""
    default_registry.unregister(name)


def enable_strategy(name: str) -> None:
    """Allow a disabled strategy to run again."""
    default_registry.enable(name)


def disable_strategy(name: str) -> None:
    """Keep a strategy from running; passes list it as skipped ("disabled")."""
    default_registry.disable(name)


def list_strategies() -> list[dict[str, object]]:
    """Every registered strategy in run order, as JSON-safe dicts.

    Keys: ``name``, ``priority``, ``aggressiveness``, ``enabled``, ``origin``
    (``builtin``, ``user`` or the entry point) and ``doc``.
    """
    return [
        {
            "name": e.name,
            "priority": e.priority,
            "aggressiveness": e.aggressiveness.name,
            "enabled": enabled,
            "origin": e.origin,
            "doc": e.doc,
        }
        for e, enabled in default_registry.ordered()
    ]
