"""Release hooks: the application says what it can give back at each pressure level.

``@hivemem.on_pressure("high")`` registers a callback, like Android's
``onTrimMemory`` or an iOS memory warning. When a pass runs at pressure level
L, every callback registered for a level ``<= L`` runs (levels compare with
``>=``: a hook for ``HIGH`` also runs at ``CRITICAL``), in registration order,
with L as its only argument.

* Bound methods are held through :class:`weakref.WeakMethod`: registering
  ``cache.clear`` does not keep ``cache`` alive; when it dies the hook goes
  away by itself. Plain functions (and other callables) are held strongly,
  because a weakly held lambda would vanish at once; remove them with
  :func:`remove_pressure_hook`.
* A callback that raises is recorded in its :class:`HookRun` (and logged on
  the ``hivemem`` logger); the other callbacks still run. Nothing is raised
  into the code that triggered the pass.
* Thread-safe: registration takes a lock, callbacks run outside it (so a
  callback may register or remove hooks).
"""

from __future__ import annotations

import _thread
import os
import time
import weakref

from hivemem._errors import InvalidArgument
from hivemem._frozen import Frozen
from hivemem._levels import Pressure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar, overload

    Callback = Callable[[Pressure], object]
    F = TypeVar("F", bound=Callback)

__all__ = ["HookRun", "hooks", "on_pressure", "remove_pressure_hook", "run_hooks"]


class _Hook:
    __slots__ = ("level", "name", "ref", "strong")

    def __init__(self, callback: Callback, level: Pressure) -> None:
        self.level = level
        self.name = _describe(callback)
        self.strong: Callback | None = None
        self.ref: weakref.WeakMethod[Callback] | None = None
        if getattr(callback, "__self__", None) is not None and hasattr(callback, "__func__"):
            self.ref = weakref.WeakMethod(callback)
        else:
            self.strong = callback

    def callback(self) -> Callback | None:
        if self.strong is not None:
            return self.strong
        assert self.ref is not None
        return self.ref()

    def matches(self, callback: object) -> bool:
        mine = self.callback()
        return mine is not None and (mine is callback or mine == callback)


def _describe(callback: object) -> str:
    name = getattr(callback, "__qualname__", None) or getattr(callback, "__name__", None)
    module = getattr(callback, "__module__", None)
    if name is None:
        return repr(callback)
    return f"{module}.{name}" if module else str(name)


_lock = _thread.allocate_lock()
_hooks: list[_Hook] = []


def _after_fork_child() -> None:
    global _lock
    _lock = _thread.allocate_lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)


class HookRun(Frozen):
    """One callback's run: ``name``, the ``level`` it was registered for, the
    pressure ``ran_at``, ``seconds`` of wall time, and ``error``
    (``"Type: message"``) if it raised. Frozen; ``to_dict()`` is JSON-safe."""

    __slots__ = ("error", "level", "name", "ran_at", "seconds")
    __module__ = "hivemem"

    name: str
    level: Pressure
    ran_at: Pressure
    seconds: float
    error: str | None

    def __init__(
        self, name: str, level: Pressure, ran_at: Pressure, seconds: float, error: str | None
    ) -> None:
        self._set(name=name, level=level, ran_at=ran_at, seconds=seconds, error=error)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "level": self.level.name,
            "ran_at": self.ran_at.name,
            "seconds": self.seconds,
            "error": self.error,
        }

    def __repr__(self) -> str:
        tail = f", error={self.error!r}" if self.error else ""
        return f"HookRun({self.name!r}, level={self.level.name!r}, seconds={self.seconds:.6f}{tail})"


if TYPE_CHECKING:  # a bare decorator, a call with the callback, a decorator factory

    @overload
    def on_pressure(level: F, callback: None = None) -> F: ...
    @overload
    def on_pressure(level: Pressure | str | int, callback: F) -> F: ...
    @overload
    def on_pressure(level: Pressure | str | int = "moderate", callback: None = None) -> Callable[[F], F]: ...


def on_pressure(level: object = "moderate", callback: Callback | None = None) -> object:
    """Register *callback(level)* to run when memory pressure reaches *level*.

    Use as a decorator (``@hivemem.on_pressure("high")``, or bare
    ``@hivemem.on_pressure`` for ``"moderate"``) or call it with the
    callback (``hivemem.on_pressure("high", cache.clear_all)``; the callback
    still receives the level). *level* is a :class:`hivemem.Pressure` or its
    name; ``"normal"`` hooks run on every pass. Returns the callback, so a
    decorated function stays usable. Registering the same callback again
    replaces its level. Raises :class:`hivemem.InvalidArgument` for an
    unknown level or a callback that is not callable.
    """
    if callback is None and callable(level) and not isinstance(level, (str, int)):
        callback, level = level, "moderate"  # used bare: @hivemem.on_pressure
    lvl = Pressure.parse(level)

    def register(fn: Callback) -> Callback:
        if not callable(fn):
            raise InvalidArgument(f"on_pressure callback {fn!r} is not callable")
        hook = _Hook(fn, lvl)
        with _lock:
            _hooks[:] = [h for h in _hooks if not h.matches(fn) and h.callback() is not None]
            _hooks.append(hook)
        return fn

    if callback is not None:
        return register(callback)
    return register


def remove_pressure_hook(callback: object) -> bool:
    """Unregister *callback*; returns whether it was registered."""
    with _lock:
        before = len(_hooks)
        _hooks[:] = [h for h in _hooks if not h.matches(callback)]
        return len(_hooks) != before


def hooks() -> list[tuple[str, Pressure]]:
    """``(name, level)`` of every live registered hook, in run order."""
    with _lock:
        return [(h.name, h.level) for h in _hooks if h.callback() is not None]


def run_hooks(level: object) -> list[HookRun]:
    """Run every hook registered for a level ``<= level``; return what ran.

    Hooks whose bound object has died are dropped first. A hook that raises
    is recorded (``HookRun.error``) and logged; the others still run.
    """
    current = Pressure.parse(level)
    with _lock:
        live = [(h, h.callback()) for h in _hooks]
        _hooks[:] = [h for h, fn in live if fn is not None]
    ran: list[HookRun] = []
    for hook, fn in live:
        if fn is None or hook.level > current:
            continue
        error = None
        started = time.perf_counter()
        try:
            fn(current)
        except Exception as exc:  # a failing hook must not break the host or the other hooks
            error = f"{type(exc).__name__}: {exc}"
            import logging

            logging.getLogger("hivemem").warning(
                "hivemem pressure hook %s failed: %s", hook.name, error, exc_info=True
            )
        ran.append(HookRun(hook.name, hook.level, current, time.perf_counter() - started, error))
        del fn
    return ran
