"""Caches hivemem may clear: registered ones, the standard library's, and allowlisted lru_caches.

``register_cache(obj)`` accepts anything with ``cache_clear()`` (a
``functools.lru_cache``/``functools.cache`` wrapper) or ``clear()`` (a
``dict``, a cachetools cache, any mapping). Those can only be cleared whole.
``register_cache(d, evict="oldest")`` lets a pass evict part of a ``dict``
instead, oldest inserted first (:func:`evict_oldest`). ``register_cache("myapp.*")``
instead allows the ``caches`` strategy, at the aggressive level only, to
discover and clear every ``functools`` cache defined in the matching modules.
A ``hivemem.Cache`` (and a ``hivemem.cache`` function) needs no registration:
it shrinks by itself under pressure (``hivemem._stores.cache``).

Why discovery needs an allowlist: ``@functools.cache`` is a common way to
write a singleton (``def get_client(): return Client()``). Clearing that
cache makes the next call build a *second* client while the first is still
in use: two connection pools, two sets of credentials, broken identity
checks. Only the application knows which of its caches merely memoize.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sized

from hivemem._errors import InvalidArgument
from hivemem._reclaim.held import Entry, HeldSet, give_back, take_briefly
from hivemem._typing import cast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import Protocol, TypeGuard, TypeVar

    T = TypeVar("T")

    class Clearable(Protocol):
        """A registered cache without ``cache_clear()``: register_cache() checked it has ``clear()``."""

        def clear(self) -> object: ...

    class FunctoolsCache(Protocol):
        """A ``functools.lru_cache``/``cache`` wrapper (or anything shaped like one)."""

        def cache_clear(self) -> object: ...
        def cache_info(self) -> object: ...


__all__ = [
    "STDLIB_CACHES",
    "cache_registry",
    "clear_discovered",
    "clear_registered",
    "clear_stdlib",
    "discover",
    "estimate_bytes",
    "evict_oldest",
    "lru_cache_allowlist",
    "partial_registered",
    "register_cache",
    "unregister_cache",
]

#: What register_cache() registered (objects; module patterns are kept apart).
cache_registry = HeldSet("cache")
_patterns: list[str] = []

_IDENT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _check_pattern(pattern: str) -> str:
    body = pattern[:-2] if pattern.endswith(".*") else pattern
    parts = body.split(".")
    if not body or not all(p and set(p) <= _IDENT and not p[0].isdigit() for p in parts):
        raise InvalidArgument(
            f"invalid module pattern {pattern!r}: expected a dotted module name ('myapp.parsers') "
            "or one followed by '.*' for the package and its submodules ('myapp.*')"
        )
    return pattern


#: How a registered cache gives memory back: ``"clear"`` (whole) or ``"oldest"`` (a dict, in part).
EVICT = ("clear", "oldest")


def register_cache(obj: T, *, lock: object = None, evict: str = "clear") -> T:
    """Let the ``caches`` strategy clear *obj*; returns *obj* (usable as a decorator).

    *obj* is anything with ``cache_clear()`` (``functools.lru_cache`` and
    ``functools.cache`` wrappers) or ``clear()`` (dicts, cachetools caches).
    It is cleared at the ``moderate`` level and above. Register only caches
    that merely memoize: clearing must not change what the program computes.

    It is held by a weak reference when its type allows (functions, class
    instances); a plain ``dict`` is held strongly until
    :func:`unregister_cache`.

    *lock* (e.g. the ``threading.Lock`` your code holds around the cache) is
    acquired without waiting before clearing; when busy, the cache is left
    for the next pass.

    ``evict="oldest"`` (a ``dict`` only) opts in to partial eviction: a
    pass with a target removes the dict's oldest inserted entries until it
    has the bytes the pass still needs (weighed by ``hivemem._stores.cache.weigh``),
    and clears it whole only when there is no target. ``functools.lru_cache``
    objects cannot be evicted in part (they expose no way to drop one entry):
    they are always cleared whole.

    A string registers a module allowlist instead: ``register_cache("myapp.*")``
    lets the strategy, at the ``aggressive`` level only, discover and clear the
    ``functools`` caches defined in ``myapp`` and its submodules (functions and
    methods at module or class level). Never list a module that uses
    ``@functools.cache`` to build singletons.
    """
    if evict not in EVICT:
        from hivemem._validate import show

        raise InvalidArgument(f"evict={show(evict)}: expected 'clear' (whole) or 'oldest' (a dict, in part)")
    if isinstance(obj, str):
        if evict != "clear":
            raise InvalidArgument(f"evict={evict!r} applies to a dict, not to a module pattern ({obj!r})")
        pattern = _check_pattern(obj)
        if pattern not in _patterns:
            _patterns.append(pattern)
        return obj
    if evict == "oldest" and not isinstance(obj, dict):
        raise InvalidArgument(
            f"evict='oldest' needs a dict (evicted in insertion order), got {type(obj).__name__}; "
            "lru_cache objects and other caches can only be cleared whole (evict='clear'), "
            "or use hivemem.Cache, which shrinks by itself"
        )
    if not (callable(getattr(obj, "cache_clear", None)) or callable(getattr(obj, "clear", None))):
        raise InvalidArgument(
            f"cannot register {obj!r} as a cache: expected an object with cache_clear() "
            "(functools.lru_cache) or clear() (dict, cachetools cache), or a module pattern string"
        )
    cache_registry.add(obj, lock, evict=evict)
    return obj


def unregister_cache(obj: object) -> bool:
    """Stop clearing *obj* (or stop discovering in a module pattern). Returns whether it was registered."""
    if isinstance(obj, str):
        if obj in _patterns:
            _patterns.remove(obj)
            return True
        return False
    return cache_registry.remove(obj)


def lru_cache_allowlist() -> list[str]:
    """The module patterns given to :func:`register_cache`, in registration order."""
    return list(_patterns)


def _size(obj: object) -> int | None:
    info = getattr(obj, "cache_info", None)
    if callable(info):
        try:
            return int(info().currsize)
        except Exception:
            return None
    try:
        return len(obj) if isinstance(obj, Sized) else None
    except Exception:
        return None


def _clear(obj: object, slice_seconds: float = 0.0) -> None:
    fn = getattr(obj, "cache_clear", None)
    if callable(fn):
        fn()
    elif slice_seconds > 0.0 and type(obj) is dict:
        _clear_in_slices(obj, slice_seconds)
    else:
        cast("Clearable", obj).clear()


def _shrinks_itself(obj: object) -> bool:
    """A ``hivemem.Cache``, or a ``hivemem.cache`` function: the strategy shrinks those directly."""
    module = sys.modules.get("hivemem._stores.cache")
    if module is None:
        return False
    return isinstance(obj, module.Cache) or isinstance(getattr(obj, "cache", None), module.Cache)


def partial_registered() -> list[tuple[dict[object, object], Entry]]:
    """Registered dicts that opted in to partial eviction (``evict="oldest"``), with their entries."""
    return [
        (obj, entry)
        for obj, entry in cache_registry.entries()
        if entry.options.get("evict") == "oldest" and isinstance(obj, dict)
    ]


def _clear_in_slices(cache: dict[object, object], slice_seconds: float) -> None:
    """Empty *cache* a time slice at a time, letting other threads run in between.

    ``dict.clear()`` frees every entry in one C call that holds the GIL
    throughout: the whole program stops for it (~16 ms for a 200 MiB cache of
    1 MiB values, most of it the kernel unmapping them). Popping entries until
    the slice is spent, then ``time.sleep(0)`` (which releases the GIL), bounds
    each stop to about one slice. Only the entries present at the start are
    popped one by one; the final ``clear()`` frees the table and anything added
    meanwhile. A memoizing cache may be seen half-empty meanwhile, never wrong.
    Getting the GIL back after a yield takes about a switch interval; when one
    takes much longer (many threads, a busy machine: 145 ms was measured here
    with 8 threads under load), the rest is cleared in one call instead.
    """
    import time

    left = len(cache)
    clock = time.perf_counter
    while left > 0:
        deadline = clock() + slice_seconds
        while left > 0:
            for _ in range(min(left, 64)):
                try:
                    cache.popitem()
                except KeyError:
                    left = 0
                    break
                left -= 1
            if clock() >= deadline:
                break
        if left > 0:
            before = clock()
            time.sleep(0)
            if clock() - before > 2 * slice_seconds:
                break
    cache.clear()


def clear_registered(
    wait: float = 0.0, slice_seconds: float = 0.0, *, partial: bool = True
) -> dict[str, int]:
    """Clear every registered cache whole. Returns counts: caches, entries, busy (lock held), failed.

    ``hivemem.Cache`` objects are left alone (the strategy shrinks them itself); so are
    dicts registered with ``evict="oldest"`` unless *partial* is true.
    *wait*: seconds to wait for a cache's lock before leaving it as busy.
    *slice_seconds*: when above 0, a ``dict`` is emptied in slices of about that
    long, the GIL released in between (see :func:`_clear_in_slices`).
    """
    counts = {"caches": 0, "entries": 0, "busy": 0, "failed": 0}
    for obj, entry in cache_registry.entries():
        if _shrinks_itself(obj) or (not partial and entry.options.get("evict") == "oldest"):
            continue
        if not take_briefly(entry.lock, wait):
            counts["busy"] += 1
            continue
        try:
            n = _size(obj)
            _clear(obj, slice_seconds)
        except Exception:
            counts["failed"] += 1
            import logging

            logging.getLogger("hivemem").warning("hivemem: clearing cache %r failed", obj, exc_info=True)
            continue
        finally:
            give_back(entry.lock)
        counts["caches"] += 1
        counts["entries"] += n or 0
    return counts


def _pair_weight(key: object, value: object) -> int:
    from hivemem._stores.cache import weigh

    return weigh(key) + weigh(value)


def estimate_bytes(d: dict[object, object], sample: int = 16) -> int:
    """About how many bytes *d*'s entries weigh: its length times the mean of its oldest *sample*.

    Used only to split a pass's need between caches in proportion; what a
    pass reports is the weight of what it actually evicted.
    """
    n = len(d)
    if not n:
        return 0
    try:
        first = list(itertools.islice(d.items(), sample))
    except RuntimeError:  # changed size while sampled: try again next pass
        return 0
    if not first:
        return 0
    return int(n * sum(_pair_weight(k, v) for k, v in first) / len(first))


def evict_oldest(
    d: dict[object, object], nbytes: int, *, keep: int = 0, most: int | None = None
) -> dict[str, int]:
    """Remove *d*'s oldest inserted entries until *nbytes* of weight are gone or *keep* entries are left.

    Weights are ``hivemem._stores.cache.weigh`` of key and value. Each removal is one
    ``d.pop(key)``, so a thread writing to the dict meanwhile never sees it
    half-changed; keys are read in batches that double in size (popping from
    the front of a dict leaves holes that every new iterator steps over).
    *most* bounds the entries removed in this call (``more`` in the result
    says it stopped there). Returns ``entries`` and ``bytes`` evicted, and
    ``released``: the weight of values nothing else referenced.
    """
    missing = object()
    getrefcount = sys.getrefcount
    gone = weight = released = more = 0
    batch, retries = 64, 8
    while weight < nbytes and len(d) > keep and not more:
        try:
            keys = list(itertools.islice(d, batch))
        except RuntimeError:  # another thread resized it while we read: read again, a few times
            retries -= 1
            if retries < 0:
                break
            continue
        if not keys:
            break
        for key in keys:
            if weight >= nbytes or len(d) <= keep:
                break
            if most is not None and gone >= most:
                more = 1
                break
            value = d.pop(key, missing)
            if value is missing:
                continue
            w = _pair_weight(key, value)
            weight += w
            gone += 1
            if getrefcount(value) <= 2:  # this frame's name and getrefcount's argument
                released += w
            del value
        batch = min(batch * 2, 65_536)
    return {"entries": gone, "bytes": weight, "released": released, "more": more}


# ------------------------------------------------------------------ standard library


def _linecache(mod: ModuleType) -> int:
    # Entries read from files (mtime set) come back from disk on demand. Entries
    # with mtime None were registered by hand (IPython cells, doctest, exec'd
    # code): their source exists nowhere else, so they are kept.
    cache: dict[str, object] = mod.cache
    dropped = 0
    for name, value in list(cache.items()):
        if isinstance(value, tuple) and len(value) == 4 and value[1] is not None:
            if cache.get(name) is value:
                del cache[name]
                dropped += 1
    return dropped


def _typing(mod: object) -> int:
    n = 0
    for fn in list(getattr(mod, "_cleanups", ())):
        fn()
        n += 1
    return n


def _call(path: str) -> Callable[[object], int]:
    def run(mod: object) -> int:
        target: object = mod
        *parents, last = path.split(".")
        for part in parents:
            target = getattr(target, part)
        before = _size(target) if parents else None
        getattr(target, last)()
        return before or 0

    return run


#: ``(module, what it memoizes, how)``: cleared only when the module is
#: already imported. Everything here is recomputed on demand. Left out on
#: purpose, although CPython's test runner resets them: ``mimetypes`` (would
#: drop types the application added), ``urllib.request.urlcleanup`` (drops an
#: installed opener), ``ctypes._reset_cache`` (``POINTER(T)`` would stop
#: being the same class), ``zoneinfo`` (aware datetimes compare by tzinfo
#: identity) and ``__warningregistry__`` (warnings would show again).
STDLIB_CACHES: tuple[tuple[str, str, Callable[[ModuleType], int]], ...] = (
    ("re", "compiled regular expressions", _call("purge")),
    ("fnmatch", "compiled glob patterns", _call("_compile_pattern.cache_clear")),
    ("glob", "compiled glob patterns", _call("_compile_pattern.cache_clear")),
    ("pathlib", "glob selectors", _call("_make_selector.cache_clear")),
    ("urllib.parse", "split URLs", _call("clear_cache")),
    ("struct", "compiled struct formats", _call("_clearcache")),
    ("_strptime", "strptime regular expressions", _call("_regex_cache.clear")),
    ("filecmp", "file comparisons", _call("_cache.clear")),
    ("inspect", "module-to-file maps", _call("_filesbymodname.clear")),
    ("linecache", "source lines of files on disk", _linecache),
    ("typing", "generic aliases (List[int], ...)", _typing),
    ("encodings", "codec lookups", _call("_cache.clear")),
)


def clear_stdlib() -> list[str]:
    """Clear the standard library caches of modules already imported; returns their names."""
    done = []
    for module_name, _what, fn in STDLIB_CACHES:
        mod = sys.modules.get(module_name)
        if mod is None:
            continue
        try:
            fn(mod)
        except AttributeError:  # this Python version has no such cache
            continue
        except Exception:
            import logging

            logging.getLogger("hivemem").warning(
                "hivemem: clearing %s caches failed", module_name, exc_info=True
            )
            continue
        done.append(module_name)
    clear_type_cache = getattr(sys, "_clear_type_cache", None)
    if clear_type_cache is not None:
        clear_type_cache()
        done.append("sys (type attribute cache)")
    return done


# ------------------------------------------------------------------ discovered lru_caches


def _matches(module_name: str, patterns: list[str]) -> bool:
    for p in patterns:
        if p.endswith(".*"):
            base = p[:-2]
            if module_name == base or module_name.startswith(base + "."):
                return True
        elif module_name == p:
            return True
    return False


def _is_functools_cache(obj: object) -> TypeGuard[FunctoolsCache]:
    return callable(getattr(obj, "cache_clear", None)) and callable(getattr(obj, "cache_info", None))


def discover(patterns: list[str] | None = None) -> list[FunctoolsCache]:
    """``functools`` caches defined (``__module__``) in modules matching the allowlist."""
    patterns = _patterns if patterns is None else patterns
    if not patterns:
        return []
    found: dict[int, FunctoolsCache] = {}
    for name, mod in list(sys.modules.items()):
        if mod is None or not _matches(name, patterns):
            continue
        try:
            namespace = dict(vars(mod))
        except TypeError:
            continue
        for value in namespace.values():
            candidates = [value]
            if isinstance(value, type) and value.__module__ == name:
                for attr in vars(value).values():
                    candidates.append(getattr(attr, "__func__", attr))  # classmethod/staticmethod
            for c in candidates:
                if _is_functools_cache(c) and _matches(str(getattr(c, "__module__", "")), patterns):
                    found.setdefault(id(c), c)
    return list(found.values())


def clear_discovered() -> dict[str, int]:
    """Clear the allowlisted modules' ``functools`` caches. Returns counts: caches, entries."""
    counts = {"caches": 0, "entries": 0}
    for fn in discover():
        n = _size(fn)
        try:
            fn.cache_clear()
        except Exception:
            continue
        counts["caches"] += 1
        counts["entries"] += n or 0
    return counts
