"""The one base for hivemem's frozen value objects (reports, readings, events)."""

from __future__ import annotations

__all__ = ["Frozen"]


class Frozen:
    """A slotted object whose attributes are set once, in ``__init__``, through :meth:`_set`.

    Subclasses declare ``__slots__`` and fill them with ``self._set(name=value, ...)``;
    afterwards setting or deleting an attribute raises :class:`AttributeError`.
    """

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen; cannot delete {name!r}")

    def _set(self, **values: object) -> None:
        for key, value in values.items():
            object.__setattr__(self, key, value)
