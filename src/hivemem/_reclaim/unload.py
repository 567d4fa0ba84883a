"""Opt-in module unloading: remove allowlisted modules that nothing else still uses.

Removing a module from ``sys.modules`` frees nothing while anything else
still references the module, its functions, its classes or its data (and
it makes a later ``import`` build a second copy whose classes differ from
the first's). So :func:`unload_modules` removes a module only when all of
this holds, checked on the live heap:

* its name matches a pattern given to :func:`allow_unload` (nothing is
  unloaded by default), it is pure Python (an extension module's code stays
  mapped and it cannot be re-initialized), and it is not ``hivemem``,
  ``__main__`` or a built-in;
* no object outside the module references it, its globals, or anything the
  module owns (its functions and classes and the data its globals hold),
  apart from ``sys.modules`` and its parent package's attribute. Instances
  of its classes, a ``from mod import f`` in another module, a bound method
  kept in a callback list, a subclass elsewhere: each keeps it loaded;
* no reference hides where the garbage collector cannot see it (a function
  of the module running in some thread, a C extension holding one): its
  reference counts must match what the heap walk found.

Modules that depend on each other are decided together: if one is kept,
the allowlisted modules it references are kept too. The check walks every
tracked object once per round (~0.2-1 s for a million objects), which is why
unloading is AGGRESSIVE and opt-in. It often frees nothing; that is reported
honestly with the reason for each kept module.
"""

from __future__ import annotations

import _thread
import gc
import sys

from hivemem._errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["allow_unload", "disallow_unload", "unload_allowlist", "unload_modules"]

_lock = _thread.allocate_lock()
_patterns: list[str] = []
_NEVER = ("hivemem", "__main__", "builtins", "sys", "_frozen_importlib", "_frozen_importlib_external")
#: Containers the ownership walk looks into; instances of other foreign types are owned but not entered.
_ENTER = (dict, list, tuple, set, frozenset)
_MAX_ROUNDS = 8
_MODULE_TYPES: tuple[type, ...] = (type(sys),)


def allow_unload(*patterns: str) -> list[str]:
    """Allow modules matching *patterns* to be unloaded; returns the whole allowlist.

    Patterns are module names or :mod:`fnmatch` patterns: ``"reports"``
    matches that module only, ``"reports.*"`` its submodules. Nothing is
    unloaded until a pattern is allowed.
    """
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            raise InvalidArgument(
                f"allow_unload({pattern!r}): expected a module name or fnmatch pattern such as 'mypkg.*'"
            )
    with _lock:
        for pattern in patterns:
            if pattern not in _patterns:
                _patterns.append(pattern)
        return list(_patterns)


def disallow_unload(*patterns: str) -> list[str]:
    """Remove *patterns* from the allowlist (all of them when none is given); returns what is left."""
    with _lock:
        if not patterns:
            _patterns.clear()
        for pattern in patterns:
            if pattern in _patterns:
                _patterns.remove(pattern)
        return list(_patterns)


def unload_allowlist() -> list[str]:
    """The patterns given to :func:`allow_unload`."""
    with _lock:
        return list(_patterns)


def _allowed(name: str, patterns: list[str]) -> bool:
    from fnmatch import fnmatchcase

    return any(fnmatchcase(name, p) for p in patterns)


def _refusal(name: str, module: object) -> str | None:
    root = name.partition(".")[0]
    if root in _NEVER or name in sys.builtin_module_names:
        return "never unloaded (hivemem, __main__ or built into the interpreter)"
    spec = getattr(module, "__spec__", None)
    origin = getattr(spec, "origin", None) or ""
    from importlib.machinery import EXTENSION_SUFFIXES

    if origin.endswith(tuple(EXTENSION_SUFFIXES)) or origin in ("built-in", "frozen"):
        return f"not pure Python ({origin}): its code cannot be unmapped or re-initialized"
    return None


def _owned(
    modules: dict[str, ModuleType],
) -> tuple[dict[int, object], dict[int, str], set[int], set[int]]:
    """``(internal, owner, guarded, counted)`` for *modules*.

    *internal*: every object reachable from the modules' globals without
    entering other modules' code (by id); *owner*: which module reached it;
    *guarded*: ids that no outside object may reference (the modules, their
    functions and classes, and data holding those); *counted*: ids whose
    reference counts must match what the heap walk sees.
    """
    import types

    dict_owner = {id(m.__dict__): n for n, m in modules.items()}
    internal: dict[int, object] = {}
    owner: dict[int, str] = {}
    checked: set[int] = set()
    holds: dict[int, list[int]] = {}
    builtins_dict = sys.modules["builtins"].__dict__
    for name, module in modules.items():
        stack: list[object] = [module, module.__dict__]
        while stack:
            obj = stack.pop()
            if id(obj) in internal or obj is builtins_dict or obj is sys.modules:
                continue
            if isinstance(obj, types.ModuleType) and obj.__name__ != name:
                continue  # another module: not ours (an allowlisted one is walked on its own)
            if isinstance(obj, dict) and id(obj) in dict_owner and dict_owner[id(obj)] != name:
                continue
            enter = False
            if isinstance(obj, types.FunctionType):
                if id(obj.__globals__) not in dict_owner:
                    continue  # a function of another module, imported here
                checked.add(id(obj))
                enter = True
            elif isinstance(obj, type):
                if obj.__module__ not in modules:
                    continue  # a class of another module
                checked.add(id(obj))
                enter = True
            elif isinstance(obj, types.ModuleType):
                checked.add(id(obj))
                enter = True
            elif type(obj) in _ENTER or type(obj).__module__ in modules:
                enter = True
            elif isinstance(obj, (types.CodeType, types.CellType, staticmethod, classmethod, property)):
                enter = True
            internal[id(obj)] = obj
            owner[id(obj)] = name
            referents = gc.get_referents(obj)
            if id(obj) not in checked:
                # Data the module holds matters only when it holds the module's code (a registry
                # of callbacks shared with another module); remember which code it holds.
                code = [id(r) for r in referents if isinstance(r, (types.FunctionType, type))]
                if code:
                    holds[id(obj)] = code
            if not enter:  # a foreign object: its own attribute dict (materialized before 3.11) is part of it
                attrs = getattr(obj, "__dict__", None)
                if type(attrs) is dict and id(attrs) not in internal:
                    internal[id(attrs)] = attrs
                    owner[id(attrs)] = name
                    code = [id(r) for r in attrs.values() if isinstance(r, (types.FunctionType, type))]
                    if code:
                        holds[id(attrs)] = code
            if enter:
                stack.extend(r for r in referents if gc.is_tracked(r) or isinstance(r, type))
    holders = {key for key, code in holds.items() if any(i in checked for i in code)}
    return internal, owner, checked | holders, checked


def _describe(obj: object, module_dicts: dict[int, str]) -> str:
    import types

    if isinstance(obj, dict) and id(obj) in module_dicts:
        return f"module {module_dicts[id(obj)]!r}"
    if isinstance(obj, types.FrameType):
        return f"a running frame of {getattr(obj.f_code, 'co_qualname', obj.f_code.co_name)}"
    if isinstance(obj, type):
        return f"class {obj.__module__}.{obj.__qualname__}"
    return f"a {type(obj).__module__}.{type(obj).__qualname__} object"


def _parent_dicts(modules: dict[str, ModuleType]) -> set[int]:
    """Ids of the globals of parent packages that stay loaded (their attribute is removed with the module)."""
    found = set()
    for name in modules:
        parent = sys.modules.get(name.rpartition(".")[0])
        if parent is not None and parent.__name__ not in modules:
            found.add(id(parent.__dict__))
    return found


def _blockers(modules: dict[str, ModuleType]) -> dict[str, str]:
    """Why each module in *modules* must stay, by name (modules not listed may go)."""
    internal, owner, guarded, checked = _owned(modules)
    allowed = {id(sys.modules)} | _parent_dicts(modules)
    module_dicts = {id(m.__dict__): n for n, m in list(sys.modules.items()) if m is not None}
    seen_refs: dict[int, int] = dict.fromkeys(checked, 0)
    blocked: dict[str, str] = {}
    ours = {id(internal), id(owner), id(modules)}
    objects = gc.get_objects()
    ours.add(id(objects))
    frame_type = type(sys._getframe())
    for obj in objects:
        key = id(obj)
        if key in ours or (type(obj) is frame_type and obj.f_globals is globals()):
            continue
        outside = key not in internal and key not in allowed
        for ref in gc.get_referents(obj):
            rid = id(ref)
            if rid not in internal:
                continue
            if rid in seen_refs:
                seen_refs[rid] += 1
            if outside and rid in guarded:
                mod = owner[rid]
                if mod not in blocked:
                    what = getattr(ref, "__qualname__", None) or type(ref).__name__
                    blocked[mod] = f"{mod}: {what} is still referenced by {_describe(obj, module_dicts)}"
    del objects
    # References the walk cannot see: a running frame, C code. sys.getrefcount counts its own
    # argument, the ``obj`` local, the ``internal`` map and *modules* for a module; the object list is gone.
    for rid in checked:
        obj = internal[rid]
        hidden = sys.getrefcount(obj) - 3 - seen_refs[rid] - (1 if obj.__class__ in _MODULE_TYPES else 0)
        mod = owner[rid]
        if hidden > 0 and mod not in blocked:
            what = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", "?")
            blocked[mod] = (
                f"{mod}: {what} has {hidden} reference(s) the garbage collector cannot see "
                "(running code or a C extension)"
            )
        del obj
    return blocked


def _candidates(patterns: list[str], kept: dict[str, str]) -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for name, module in list(sys.modules.items()):
        if module is None or not _allowed(name, patterns):
            continue
        reason = _refusal(name, module)
        if reason is not None:
            kept[name] = reason
        else:
            found[name] = module
    return found


def _packages_kept(candidates: dict[str, ModuleType], blocked: dict[str, str]) -> dict[str, str]:
    """A package stays while any of its submodules stays (the import system expects the parent)."""
    staying = [n for n in sys.modules if n not in candidates or n in blocked]
    found: dict[str, str] = {}
    for name in candidates:
        if name in blocked:
            continue
        prefix = name + "."
        child = next((n for n in staying if n.startswith(prefix)), None)
        if child is not None:
            found[name] = f"{name}: its submodule {child} stays loaded"
    return found


def _remove(candidates: dict[str, ModuleType], names: list[str]) -> None:
    import linecache

    for name in names:
        module = candidates[name]
        if sys.modules.get(name) is module:
            del sys.modules[name]
        parent_name, _, child = name.rpartition(".")
        parent = sys.modules.get(parent_name) if parent_name else None
        if parent is not None and parent.__dict__.get(child) is module:
            delattr(parent, child)
        filename = getattr(module, "__file__", None)
        if filename:
            linecache.cache.pop(filename, None)


def unload_modules(*, dry_run: bool = False) -> dict[str, object]:
    """Unload every allowlisted module that nothing else uses; report what was kept and why.

    Returns ``{"unloaded": [names], "kept": {name: reason}, "rounds": n}``.
    With ``dry_run=True`` nothing is removed. Unloaded modules are imported
    afresh by the next ``import``.
    """
    patterns = unload_allowlist()
    if not patterns:
        return {"unloaded": [], "kept": {}, "rounds": 0}
    kept: dict[str, str] = {}
    candidates = _candidates(patterns, kept)
    gc.collect()
    rounds = 0
    while candidates and rounds < _MAX_ROUNDS:
        rounds += 1
        blocked = _blockers(candidates)
        blocked.update(_packages_kept(candidates, blocked))
        if not blocked:
            break
        for name, reason in blocked.items():
            kept[name] = reason
            del candidates[name]
    else:
        if candidates and rounds >= _MAX_ROUNDS:
            for name in candidates:
                kept[name] = f"{name}: undecided after {rounds} rounds of dependency checks"
            candidates = {}
    names = sorted(candidates, key=lambda n: -n.count("."))
    if not dry_run:
        _remove(candidates, names)
        candidates.clear()
        gc.collect()
    return {"unloaded": sorted(names), "kept": kept, "rounds": rounds}
