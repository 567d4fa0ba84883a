"""The strategy registry: built-ins, user strategies and third-party plugins.

Run order is deterministic: ascending ``priority``, then ``name``. Built-in
strategies are imported the first time the registry is used, and third-party
strategies from the ``hivemem.strategies`` entry-point group are discovered
then too, by reading ``entry_points.txt`` of installed distributions directly
(``importlib.metadata`` alone costs ~2 MB and ~20 ms to import). A plugin that
fails to load, or whose name is taken, becomes a :class:`hivemem.PluginWarning`
naming it; it never breaks the host program.
"""

from __future__ import annotations

import _thread
import os
import sys

from hivemem._errors import HivememWarning, InvalidArgument, PluginWarning, StrategyError, UnknownStrategy
from hivemem._levels import Aggressiveness
from hivemem._typing import cast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import TypeVar

    from hivemem._engine.protocol import Strategy

    S = TypeVar("S")

__all__ = [
    "BUILTIN_PACKAGE",
    "ENTRY_POINT_GROUP",
    "Registry",
    "RegisteredStrategy",
    "builtin_names",
    "default_registry",
]

ENTRY_POINT_GROUP = "hivemem.strategies"

#: The package of the built-in strategies: module ``<name>.py`` holds the strategy
#: called ``<name>`` in its ``STRATEGY`` constant (a class instantiated with no
#: arguments, or a ready instance). Nothing else lists them.
BUILTIN_PACKAGE = "hivemem.strategies"


def builtin_names() -> list[str]:
    """The built-in strategies' names: the modules of :data:`BUILTIN_PACKAGE`, sorted.

    Reads the package's directory rather than importing every module
    (``pkgutil`` would cost ``typing`` and ``enum``); nothing is imported but
    the package itself.
    """
    __import__(BUILTIN_PACKAGE)
    names: set[str] = set()
    for entry in getattr(sys.modules[BUILTIN_PACKAGE], "__path__", ()):
        try:
            files = os.listdir(entry)
        except OSError:
            continue
        for file in files:
            stem, dot, ext = file.partition(".")
            if dot and ext == "py" and stem.isidentifier() and not stem.startswith("_"):
                names.add(stem)
    return sorted(names)


_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz")
_NAME_REST = _NAME_FIRST | frozenset("0123456789_-.")


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name or name[0] not in _NAME_FIRST or not set(name) <= _NAME_REST:
        raise StrategyError(
            f"invalid strategy name {name!r}: expected lowercase letters, digits, '_', '-' or '.', "
            "starting with a letter"
        )
    return name


class RegisteredStrategy:
    """A strategy as the registry holds it: the object plus its checked metadata."""

    __slots__ = ("aggressiveness", "name", "origin", "priority", "strategy")
    __module__ = "hivemem"

    strategy: Strategy

    def __init__(self, strategy: object, origin: str) -> None:
        if isinstance(strategy, type):
            raise StrategyError(f"{strategy.__name__} is a class: register an instance of it")
        name = _check_name(getattr(strategy, "name", None))
        priority = getattr(strategy, "priority", None)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise StrategyError(f"strategy {name!r}: priority must be an int, got {priority!r}")
        try:
            level = Aggressiveness.parse(getattr(strategy, "aggressiveness", None))
        except InvalidArgument as exc:
            raise StrategyError(f"strategy {name!r}: {exc}") from None
        if not callable(getattr(strategy, "apply", None)):
            raise StrategyError(f"strategy {name!r} has no callable apply(ctx) method")
        self.strategy = cast("Strategy", strategy)  # checked above: name, priority, level, apply
        self.name = name
        self.priority = priority
        self.aggressiveness = level
        self.origin = origin

    @property
    def doc(self) -> str:
        """First line of the strategy's docstring (its module's when the class has none)."""
        text = type(self.strategy).__doc__ or sys.modules[type(self.strategy).__module__].__doc__ or ""
        return text.strip().splitlines()[0] if text.strip() else ""

    def __repr__(self) -> str:
        return (
            f"<strategy {self.name!r} priority={self.priority} aggressiveness={self.aggressiveness.name} "
            f"origin={self.origin!r}>"
        )


def _load_object(spec: str) -> object:
    module_name, _, attr = spec.partition(":")
    __import__(module_name)
    obj: object = sys.modules[module_name]
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "apply")):
        obj = obj()
    return obj


def _entry_point_specs(group: str, paths: Iterable[str]) -> list[tuple[str, str, str]]:
    """``(name, "module:attr", distribution)`` for *group*, from every dist-info/egg-info on *paths*."""
    found: list[tuple[str, str, str]] = []
    seen_dists: set[str] = set()
    for entry in paths:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        for child in names:
            if not child.endswith((".dist-info", ".egg-info")):
                continue
            dist = child.rsplit(".", 1)[0]
            project = dist.split("-", 1)[0].lower().replace("_", "-")
            if project in seen_dists:  # first on sys.path wins, like the import system
                continue
            path = os.path.join(entry or ".", child, "entry_points.txt")
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            seen_dists.add(project)
            section = None
            for raw in text.splitlines():
                line = raw.strip()
                if not line or line.startswith(("#", ";")):
                    continue
                if line.startswith("[") and line.endswith("]"):
                    section = line[1:-1].strip()
                    continue
                if section == group and "=" in line:
                    name, _, value = line.partition("=")
                    value = value.split("[", 1)[0].strip()  # drop extras
                    found.append((name.strip(), value, dist))
    return found


class Registry:
    """An ordered, thread-safe set of strategies with enable/disable by name.

    ``Registry()`` starts with the built-ins and, on first use, third-party
    entry points. ``Registry(builtins=False, entry_points=False)`` starts
    empty, which is what unit tests of a custom strategy want.
    """

    __module__ = "hivemem"

    def __init__(self, *, builtins: bool = True, entry_points: bool = True) -> None:
        self._lock = _thread.RLock()
        self._entries: dict[str, RegisteredStrategy] = {}
        self._disabled: set[str] = set()
        self._want_builtins = builtins
        self._want_entry_points = entry_points
        self._loaded = False

    # ----------------------------------------------------------------- loading
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            if self._want_builtins:
                for name in builtin_names():
                    if name in self._entries:
                        continue
                    spec = f"{BUILTIN_PACKAGE}.{name}:STRATEGY"
                    try:
                        entry = RegisteredStrategy(_load_object(spec), "builtin")
                        if entry.name != name:
                            raise StrategyError(
                                f"the module is {name}.py but the strategy is named {entry.name!r}"
                            )
                        self._entries[name] = entry
                    except Exception as exc:  # never break the host, even for our own bug
                        import warnings

                        warnings.warn(
                            HivememWarning(f"built-in strategy {name!r} ({spec}) failed to load: {exc!r}"),
                            stacklevel=3,
                        )
            if self._want_entry_points:
                self._load_entry_points(sys.path)

    def _load_entry_points(self, paths: Iterable[str]) -> None:
        import warnings

        for ep_name, spec, dist in _entry_point_specs(ENTRY_POINT_GROUP, paths):
            plugin = f"{ep_name} = {spec} (from {dist})"
            try:
                entry = RegisteredStrategy(_load_object(spec), f"entry point {plugin}")
            except Exception as exc:  # a broken plugin must not break the host
                warnings.warn(
                    PluginWarning(
                        f"hivemem strategy plugin {plugin} failed to load: {type(exc).__name__}: {exc}",
                        plugin=ep_name,
                    ),
                    stacklevel=3,
                )
                continue
            if entry.name in self._entries:
                warnings.warn(
                    PluginWarning(
                        f"hivemem strategy plugin {plugin} is named {entry.name!r}, which is taken by "
                        f"{self._entries[entry.name].origin}; the plugin is ignored",
                        plugin=ep_name,
                    ),
                    stacklevel=3,
                )
                continue
            self._entries[entry.name] = entry

    # ----------------------------------------------------------------- changes
    def register(self, strategy: S, *, replace: bool = False) -> S:
        """Add *strategy* (an object following :class:`hivemem.Strategy`). Returns it.

        A class is instantiated with no arguments first, so this works as a
        class decorator. A name already registered raises
        :class:`hivemem.StrategyError` unless ``replace=True``.
        """
        obj = strategy() if isinstance(strategy, type) else strategy
        entry = RegisteredStrategy(obj, "user")
        self._ensure_loaded()
        with self._lock:
            if entry.name in self._entries and not replace:
                raise StrategyError(
                    f"a strategy named {entry.name!r} is already registered "
                    f"({self._entries[entry.name].origin}); pass replace=True to replace it"
                )
            self._entries[entry.name] = entry
        return strategy

    def unregister(self, name: str) -> None:
        """Remove the strategy called *name*."""
        with self._lock:
            self._get(name)
            del self._entries[name]
            self._disabled.discard(name)

    def enable(self, name: str) -> None:
        """Let the strategy called *name* run again."""
        with self._lock:
            self._get(name)
            self._disabled.discard(name)

    def disable(self, name: str) -> None:
        """Keep the strategy called *name* from running; it is reported as skipped."""
        with self._lock:
            self._get(name)
            self._disabled.add(name)

    # ----------------------------------------------------------------- queries
    def _get(self, name: object) -> RegisteredStrategy:
        self._ensure_loaded()
        entry = self._entries.get(name) if isinstance(name, str) else None
        if entry is None:
            raise UnknownStrategy(name, sorted(self._entries))
        return entry

    def get(self, name: str) -> RegisteredStrategy:
        """The registered entry for *name*; raises :class:`hivemem.UnknownStrategy`."""
        with self._lock:
            return self._get(name)

    def is_enabled(self, name: str) -> bool:
        with self._lock:
            self._get(name)
            return name not in self._disabled

    def names(self) -> list[str]:
        """Every registered name, in run order."""
        return [e.name for e, _ in self.ordered()]

    def ordered(self, names: Iterable[str] | None = None) -> list[tuple[RegisteredStrategy, bool]]:
        """``(entry, enabled)`` pairs in run order: ``(priority, name)``.

        With *names*, only those strategies (every name is checked first, so a
        typo raises before anything runs).
        """
        self._ensure_loaded()
        with self._lock:
            if names is None:
                chosen = list(self._entries.values())
            else:
                # Each name checked first (a list or an int among them is an unknown name, not a crash).
                chosen = list({e.name: e for e in [self._get(n) for n in _name_list(names)]}.values())
            chosen.sort(key=lambda e: (e.priority, e.name))
            return [(e, e.name not in self._disabled) for e in chosen]

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.names()!r})"


def _name_list(names: object, what: str = "strategies") -> list[object]:
    """*names* as a list, or :class:`hivemem.InvalidArgument` (naming the argument *what*) when
    it is not a collection of names."""
    from hivemem._validate import show

    if isinstance(names, (str, bytes)):
        raise InvalidArgument(f"{what}={show(names)}: expected a list of strategy names, not one string")
    try:
        items: list[object] = list(names)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidArgument(f"{what}={show(names)}: expected a list of strategy names") from None
    return items


default_registry = Registry()
