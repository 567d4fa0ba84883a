"""Lazy imports and lazy proxies: pay for a heavy module or object only when it is used.

``lazy_import("xml.dom.minidom")`` finds the module now (so a typo fails at
once) and puts a module object into ``sys.modules`` whose code runs on the
first attribute access. It uses the standard library's
:class:`importlib.util.LazyLoader` to prepare the module, and its own module
class for the first load, which is thread-safe on every Python version (the
standard ``_LazyModule`` is not before 3.12): the first thread to touch the
module executes it under a lock; the others wait and then see it complete.

* ``isinstance(mod, types.ModuleType)`` holds before and after loading, and
  ``isinstance(x, mod.SomeClass)`` works (the attribute access loads it).
* Reading ``__name__``, ``__spec__``, ``__loader__``, ``__package__``,
  ``__path__``, ``__file__`` or ``__dict__`` does not load the module, so
  ``import mod`` elsewhere returns the same lazy module without loading it.
* ``from mod import name`` loads it at once: the import statement reads the
  attribute. ``import pkg.sub`` with a lazy ``pkg`` imports ``sub`` normally
  and leaves ``pkg`` lazy (setting an attribute does not load a lazy module;
  the attribute survives the load).
* The parent packages of a dotted name are imported normally (finding the
  module needs its package's ``__path__``).
* If the module's code raises on first use, the exception propagates to that
  attribute access and the module stays lazy; the next access retries.

``LazyProxy(factory)`` stands in for an object built by ``factory()`` on first
use. A proxy made with ``droppable=True`` may be dropped by the ``lazy``
strategy under pressure and is rebuilt by the factory on next use.
"""

from __future__ import annotations

import _thread
import operator
import os
import sys
import types

from hivemem._errors import InvalidArgument
from hivemem._stores.live import LiveSet

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["LazyProxy", "is_lazy", "lazy_import", "live_proxies"]

_NO_LOAD = frozenset(
    {
        "__name__",
        "__spec__",
        "__loader__",
        "__package__",
        "__path__",
        "__file__",
        "__cached__",
        "__dict__",
        "__class__",
        "__doc__",
    }
)
_STATE_KEY = "hivemem_lazy"
_lazy_lock = _thread.RLock()  # serializes lazy_import() calls racing for one name


class _LazyModule(types.ModuleType):
    """A module whose code runs, under a lock, on the first ordinary attribute access."""

    def __getattribute__(self, attr: str) -> object:
        if attr in _NO_LOAD:
            return types.ModuleType.__getattribute__(self, attr)
        _load(self)
        return types.ModuleType.__getattribute__(self, attr)

    def __delattr__(self, attr: str) -> None:
        _load(self)
        types.ModuleType.__delattr__(self, attr)

    def __dir__(self) -> list[str]:
        _load(self)
        return sorted(types.ModuleType.__getattribute__(self, "__dict__"))

    def __repr__(self) -> str:
        name = types.ModuleType.__getattribute__(self, "__name__")
        return f"<lazy module {name!r} (not loaded yet)>"


def _load(module: types.ModuleType) -> None:
    spec = types.ModuleType.__getattribute__(module, "__spec__")
    state = spec.loader_state
    lock, info = state[_STATE_KEY]
    with lock:
        if type(module) is not _LazyModule or info["loading"]:
            return  # loaded by another thread meanwhile, or re-entered from the module's own code
        info["loading"] = True
        try:
            attrs_then = state["__dict__"]
            attrs_now = types.ModuleType.__getattribute__(module, "__dict__")
            # Attributes set on the lazy module before loading (e.g. submodules) survive the load.
            updated = {
                key: value
                for key, value in attrs_now.items()
                if key not in attrs_then or attrs_then[key] is not value
            }
            spec.loader.exec_module(module)
            name = spec.name
            if name in sys.modules and sys.modules[name] is not module:
                raise ValueError(f"module object for {name!r} substituted in sys.modules during a lazy load")
            attrs_now.update(updated)
            object.__setattr__(module, "__class__", state["__class__"])
        finally:
            info["loading"] = False


def is_lazy(module: object) -> bool:
    """Whether *module* is a lazy module that has not been loaded yet."""
    return type(module) is _LazyModule


def lazy_import(name: str) -> types.ModuleType:
    """Return module *name*, executing its code only on first attribute access.

    An already imported module is returned as it is. A module that cannot be
    found raises :class:`ModuleNotFoundError` now, not on first use. See the
    module docstring for how the lazy module behaves.
    """
    if not isinstance(name, str) or not all(part.isidentifier() for part in name.split(".")):
        raise InvalidArgument(f"lazy_import({name!r}): expected an absolute module name such as 'json'")
    module = sys.modules.get(name)
    if module is not None:
        return module
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    if not hasattr(spec.loader, "exec_module"):
        raise InvalidArgument(f"lazy_import({name!r}): its loader {spec.loader!r} cannot load lazily")
    # Prepare the module exactly as the standard library's lazy loader does.
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    with _lazy_lock:
        existing = sys.modules.get(name)
        if existing is not None:  # imported by another thread meanwhile
            return existing
        sys.modules[name] = module
        try:
            loader.exec_module(module)  # records the pre-load __dict__ and restores the real loader
        except BaseException:
            del sys.modules[name]
            raise
        spec.loader_state[_STATE_KEY] = (_thread.RLock(), {"loading": False})
        object.__setattr__(module, "__class__", _LazyModule)
    if "." in name:  # like the import system: bind the submodule on its parent package
        parent, _, child = name.rpartition(".")
        setattr(sys.modules[parent], child, module)
    return module


# ----------------------------------------------------------------------- proxies

_UNBUILT = object()


def _new_lock(proxy: LazyProxy) -> None:
    object.__setattr__(proxy, "_hm_lock", _thread.RLock())


_droppable: LiveSet[LazyProxy] = LiveSet(on_fork=_new_lock)


def live_proxies() -> list[LazyProxy]:
    """Every droppable proxy still alive (the ``lazy`` strategy's work list)."""
    return _droppable.items()


def _target(proxy: LazyProxy) -> Any:  # whatever the factory built: the proxy forwards to it unchecked
    target = object.__getattribute__(proxy, "_hm_target")
    if target is not _UNBUILT:
        return target
    with object.__getattribute__(proxy, "_hm_lock"):
        target = object.__getattribute__(proxy, "_hm_target")
        if target is _UNBUILT:
            target = object.__getattribute__(proxy, "_hm_factory")()
            object.__setattr__(proxy, "_hm_target", target)
            object.__setattr__(proxy, "_hm_builds", object.__getattribute__(proxy, "_hm_builds") + 1)
        return target


class _ProxyMeta(type):
    """Holds LazyProxy's helpers, so they never hide an attribute of the wrapped object."""

    def is_built(cls, proxy: LazyProxy) -> bool:
        """Whether *proxy* currently holds its object."""
        return object.__getattribute__(proxy, "_hm_target") is not _UNBUILT

    def builds(cls, proxy: LazyProxy) -> int:
        """How many times *proxy*'s factory has run."""
        return int(object.__getattribute__(proxy, "_hm_builds"))

    def is_droppable(cls, proxy: LazyProxy) -> bool:
        """Whether the ``lazy`` strategy may drop *proxy*'s object."""
        return bool(object.__getattribute__(proxy, "_hm_droppable"))

    def drop(cls, proxy: LazyProxy) -> bool:
        """Forget *proxy*'s object (rebuilt on next use); returns whether there was one."""
        with object.__getattribute__(proxy, "_hm_lock"):
            had = object.__getattribute__(proxy, "_hm_target") is not _UNBUILT
            object.__setattr__(proxy, "_hm_target", _UNBUILT)
        return had

    def unwrap(cls, proxy: LazyProxy) -> object:
        """The wrapped object itself (built if needed)."""
        return _target(proxy)


class LazyProxy(metaclass=_ProxyMeta):
    """An object built by ``factory()`` on first use; behaves like it afterwards.

    Attribute access, calls, ``len``, iteration, indexing, ``in``, comparisons,
    ``hash``, ``bool``, ``str`` and arithmetic go to the wrapped object, and
    ``isinstance(proxy, WrappedType)`` holds (``proxy.__class__`` reports the
    wrapped type). ``type(proxy)`` is still ``LazyProxy``. The first build is
    thread-safe: the factory runs once even when many threads race.

    ``droppable=True`` lets the ``lazy`` strategy drop the object under
    pressure; the next use calls the factory again. Only make a proxy
    droppable when the factory rebuilds an equivalent object: changes made
    to the old object are lost, and code still holding the old object (or a
    bound method of it) keeps it alive.

    Helpers live on the class, so they never hide the wrapped object's
    attributes: ``LazyProxy.is_built(p)``, ``LazyProxy.drop(p)``,
    ``LazyProxy.unwrap(p)``, ``LazyProxy.builds(p)``.
    """

    __module__ = "hivemem"
    __slots__ = ("__weakref__", "_hm_builds", "_hm_droppable", "_hm_factory", "_hm_lock", "_hm_target")

    def __init__(self, factory: Callable[[], object], *, droppable: bool = False) -> None:
        if not callable(factory):
            raise InvalidArgument(f"LazyProxy factory {factory!r} is not callable: expected a function")
        if not isinstance(droppable, bool):
            raise InvalidArgument(f"droppable={droppable!r}: expected True or False")
        object.__setattr__(self, "_hm_factory", factory)
        object.__setattr__(self, "_hm_target", _UNBUILT)
        object.__setattr__(self, "_hm_lock", _thread.RLock())
        object.__setattr__(self, "_hm_droppable", droppable)
        object.__setattr__(self, "_hm_builds", 0)
        if droppable:
            _droppable.add(self)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(_target(self))

    def __getattr__(self, name: str) -> object:
        return getattr(_target(self), name)

    def __setattr__(self, name: str, value: object) -> None:
        setattr(_target(self), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(_target(self), name)

    def __dir__(self) -> list[str]:
        return dir(_target(self))

    def __repr__(self) -> str:
        target = object.__getattribute__(self, "_hm_target")
        if target is _UNBUILT:
            factory = object.__getattribute__(self, "_hm_factory")
            name = getattr(factory, "__qualname__", None) or repr(factory)
            return f"<LazyProxy of {name} (not built)>"
        return repr(target)

    def __str__(self) -> str:
        return str(_target(self))

    def __bytes__(self) -> bytes:
        data: bytes = bytes(_target(self))
        return data

    def __format__(self, spec: str) -> str:
        return format(_target(self), spec)

    def __bool__(self) -> bool:
        return bool(_target(self))

    def __hash__(self) -> int:
        return hash(_target(self))

    def __len__(self) -> int:
        return len(_target(self))

    def __iter__(self) -> object:
        return iter(_target(self))

    def __reversed__(self) -> object:
        return reversed(_target(self))

    def __contains__(self, item: object) -> bool:
        return item in _target(self)

    def __getitem__(self, key: object) -> object:
        return _target(self)[key]

    def __setitem__(self, key: object, value: object) -> None:
        _target(self)[key] = value

    def __delitem__(self, key: object) -> None:
        del _target(self)[key]

    def __call__(self, *args: object, **kwargs: object) -> object:
        return _target(self)(*args, **kwargs)

    def __enter__(self) -> object:
        return _target(self).__enter__()

    def __exit__(self, *exc: object) -> object:
        return _target(self).__exit__(*exc)

    def __index__(self) -> int:
        number: int = _target(self).__index__()
        return number

    def __int__(self) -> int:
        return int(_target(self))

    def __float__(self) -> float:
        return float(_target(self))

    def __fspath__(self) -> str:
        path: str = os.fspath(_target(self))
        return path


def _binary(op: str) -> tuple[Callable[[LazyProxy, object], object], Callable[[LazyProxy, object], object]]:
    fn = getattr(operator, op)

    def forward(self: LazyProxy, other: object) -> object:
        return fn(_target(self), other)

    def reflected(self: LazyProxy, other: object) -> object:
        return fn(other, _target(self))

    return forward, reflected


for _op in (
    "add",
    "sub",
    "mul",
    "truediv",
    "floordiv",
    "mod",
    "pow",
    "and",
    "or",
    "xor",
    "lshift",
    "rshift",
    "matmul",
):
    _fwd, _rev = _binary(_op + "_" if _op in ("and", "or") else _op)
    setattr(LazyProxy, f"__{_op}__", _fwd)
    setattr(LazyProxy, f"__r{_op}__", _rev)
for _op in ("eq", "ne", "lt", "le", "gt", "ge"):
    setattr(LazyProxy, f"__{_op}__", _binary(_op)[0])


def _unary(op: str) -> Callable[[LazyProxy], object]:
    fn = getattr(operator, op)

    def forward(self: LazyProxy) -> object:
        return fn(_target(self))

    return forward


for _op in ("neg", "pos", "abs", "invert"):
    setattr(LazyProxy, f"__{_op}__", _unary(_op))
del _op, _fwd, _rev
