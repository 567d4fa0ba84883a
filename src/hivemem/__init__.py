"""hivemem: keep a running Python process inside a memory budget, and prove it with measurements.

>>> import hivemem
>>> report = hivemem.optimize(target_mb=90)   # doctest: +SKIP
>>> hivemem.usage()                            # doctest: +SKIP
MemoryUsage(rss='41.2 MiB', ...)

``import hivemem`` loads nothing but this file: every public name is
imported on first use (PEP 562 ``__getattr__``), so the import costs well
under 1 MB and 1 ms. See ``docs/`` for a page per capability.
"""

from __future__ import annotations

__version__ = "0.1.0"

# Public name -> "module" (attribute of the same name) or "module:attribute".
# Keep sorted; tests/test_public_api.py pins this list.
_LAZY: dict[str, str] = {
    "AGGRESSIVE": "hivemem._levels",
    "Aggressiveness": "hivemem._levels",
    "BufferPool": "hivemem._pool",
    "CHEAP": "hivemem._levels",
    "Cache": "hivemem._cache",
    "CompressedStore": "hivemem._compress",
    "CorruptedValue": "hivemem._errors",
    "Fragmentation": "hivemem._containers",
    "GCPauses": "hivemem._gctools",
    "GovernorEvent": "hivemem._events",
    "HivememError": "hivemem._errors",
    "HivememWarning": "hivemem._errors",
    "InvalidArgument": "hivemem._errors",
    "InvalidSize": "hivemem._errors",
    "LazyProxy": "hivemem._lazy",
    "LeakDetected": "hivemem._errors",
    "LeakReport": "hivemem._leaks",
    "MODERATE": "hivemem._levels",
    "MemoryCeilingExceeded": "hivemem._errors",
    "MemoryGovernor": "hivemem._governor",
    "MemoryLimit": "hivemem._limits",
    "MemoryLimitExceeded": "hivemem._errors",
    "MemoryUsage": "hivemem._measure",
    "ObjectPool": "hivemem._pool",
    "OptimizationReport": "hivemem._report",
    "PluginWarning": "hivemem._errors",
    "Pressure": "hivemem._levels",
    "ProcReader": "hivemem._measure",
    "ProcessMemory": "hivemem._proctree",
    "ProcessTree": "hivemem._proctree",
    "ProfileReport": "hivemem._profiler",
    "Profiler": "hivemem._profiler",
    "ReentrantOptimize": "hivemem._errors",
    "Registry": "hivemem._registry",
    "SpillStore": "hivemem._spill",
    "StepResult": "hivemem._report",
    "Strategy": "hivemem._protocol",
    "StrategyContext": "hivemem._strategy",
    "StrategyError": "hivemem._errors",
    "StrategyResult": "hivemem._strategy",
    "StringPool": "hivemem._containers",
    "Unavailable": "hivemem._errors",
    "UnknownStrategy": "hivemem._errors",
    "add_listener": "hivemem._engine:subscribe",
    "after_fork_child": "hivemem._fork",
    "allow_unload": "hivemem._unload",
    "cache": "hivemem._cache",
    "compactable": "hivemem._containers",
    "disable_strategy": "hivemem._api",
    "disallow_unload": "hivemem._unload",
    "enable_strategy": "hivemem._api",
    "find_leaks": "hivemem._leaks",
    "format_size": "hivemem._sizes",
    "fragmentation": "hivemem._containers",
    "freeze": "hivemem._gctools",
    "gc_pauses": "hivemem._gctools",
    "gc_tuning": "hivemem._gctools",
    "govern": "hivemem._governor",
    "growth": "hivemem._inspect",
    "install_signal_handler": "hivemem._signals",
    "lazy_import": "hivemem._lazy",
    "list_strategies": "hivemem._api",
    "load_ipython_extension": "hivemem._ipython",
    "memory_limit": "hivemem._limits",
    "on_pressure": "hivemem._hooks",
    "optimize": "hivemem._governor",
    "parse_size": "hivemem._sizes",
    "prepare_fork": "hivemem._fork",
    "process_tree": "hivemem._proctree",
    "register_cache": "hivemem._caches",
    "register_container": "hivemem._containers",
    "register_strategy": "hivemem._api",
    "remove_listener": "hivemem._engine:unsubscribe",
    "remove_pressure_hook": "hivemem._hooks",
    "reset_peak": "hivemem._measure",
    "rss": "hivemem._measure",
    "set_malloc_thresholds": "hivemem._native",
    "sizeof": "hivemem._inspect",
    "status": "hivemem._inspect",
    "top": "hivemem._inspect",
    "uncompactable": "hivemem._containers",
    "unfreeze": "hivemem._gctools",
    "uninstall_signal_handler": "hivemem._signals",
    "unload_modules": "hivemem._unload",
    "unregister_cache": "hivemem._caches",
    "unregister_container": "hivemem._containers",
    "unregister_strategy": "hivemem._api",
    "usage": "hivemem._measure",
    "why": "hivemem._inspect",
}

__all__ = [
    "AGGRESSIVE",
    "Aggressiveness",
    "BufferPool",
    "CHEAP",
    "Cache",
    "CompressedStore",
    "CorruptedValue",
    "Fragmentation",
    "GCPauses",
    "GovernorEvent",
    "HivememError",
    "HivememWarning",
    "InvalidArgument",
    "InvalidSize",
    "LazyProxy",
    "LeakDetected",
    "LeakReport",
    "MODERATE",
    "MemoryCeilingExceeded",
    "MemoryGovernor",
    "MemoryLimit",
    "MemoryLimitExceeded",
    "MemoryUsage",
    "ObjectPool",
    "OptimizationReport",
    "PluginWarning",
    "Pressure",
    "ProcReader",
    "ProcessMemory",
    "ProcessTree",
    "ProfileReport",
    "Profiler",
    "ReentrantOptimize",
    "Registry",
    "SpillStore",
    "StepResult",
    "Strategy",
    "StrategyContext",
    "StrategyError",
    "StrategyResult",
    "StringPool",
    "Unavailable",
    "UnknownStrategy",
    "add_listener",
    "after_fork_child",
    "allow_unload",
    "cache",
    "compactable",
    "disable_strategy",
    "disallow_unload",
    "enable_strategy",
    "find_leaks",
    "format_size",
    "fragmentation",
    "freeze",
    "gc_pauses",
    "gc_tuning",
    "govern",
    "growth",
    "install_signal_handler",
    "lazy_import",
    "list_strategies",
    "load_ipython_extension",
    "memory_limit",
    "on_pressure",
    "optimize",
    "parse_size",
    "prepare_fork",
    "process_tree",
    "register_cache",
    "register_container",
    "register_strategy",
    "remove_listener",
    "remove_pressure_hook",
    "reset_peak",
    "rss",
    "set_malloc_thresholds",
    "sizeof",
    "status",
    "top",
    "uncompactable",
    "unfreeze",
    "uninstall_signal_handler",
    "unload_modules",
    "unregister_cache",
    "unregister_container",
    "unregister_strategy",
    "usage",
    "why",
]

TYPE_CHECKING = False
if TYPE_CHECKING:  # what static analysers and IDEs see; nothing is imported at run time
    from hivemem._api import (
        disable_strategy as disable_strategy,
    )
    from hivemem._api import (
        enable_strategy as enable_strategy,
    )
    from hivemem._api import (
        list_strategies as list_strategies,
    )
    from hivemem._api import (
        register_strategy as register_strategy,
    )
    from hivemem._api import (
        unregister_strategy as unregister_strategy,
    )
    from hivemem._cache import Cache as Cache
    from hivemem._cache import cache as cache
    from hivemem._caches import register_cache as register_cache
    from hivemem._caches import unregister_cache as unregister_cache
    from hivemem._compress import CompressedStore as CompressedStore
    from hivemem._containers import Fragmentation as Fragmentation
    from hivemem._containers import StringPool as StringPool
    from hivemem._containers import compactable as compactable
    from hivemem._containers import fragmentation as fragmentation
    from hivemem._containers import register_container as register_container
    from hivemem._containers import uncompactable as uncompactable
    from hivemem._containers import unregister_container as unregister_container
    from hivemem._engine import subscribe as add_listener
    from hivemem._engine import unsubscribe as remove_listener
    from hivemem._errors import (
        CorruptedValue as CorruptedValue,
    )
    from hivemem._errors import (
        HivememError as HivememError,
    )
    from hivemem._errors import (
        HivememWarning as HivememWarning,
    )
    from hivemem._errors import (
        InvalidArgument as InvalidArgument,
    )
    from hivemem._errors import (
        InvalidSize as InvalidSize,
    )
    from hivemem._errors import (
        LeakDetected as LeakDetected,
    )
    from hivemem._errors import (
        MemoryCeilingExceeded as MemoryCeilingExceeded,
    )
    from hivemem._errors import (
        MemoryLimitExceeded as MemoryLimitExceeded,
    )
    from hivemem._errors import (
        PluginWarning as PluginWarning,
    )
    from hivemem._errors import (
        ReentrantOptimize as ReentrantOptimize,
    )
    from hivemem._errors import (
        StrategyError as StrategyError,
    )
    from hivemem._errors import (
        Unavailable as Unavailable,
    )
    from hivemem._errors import (
        UnknownStrategy as UnknownStrategy,
    )
    from hivemem._events import GovernorEvent as GovernorEvent
    from hivemem._fork import after_fork_child as after_fork_child
    from hivemem._fork import prepare_fork as prepare_fork
    from hivemem._gctools import GCPauses as GCPauses
    from hivemem._gctools import freeze as freeze
    from hivemem._gctools import gc_pauses as gc_pauses
    from hivemem._gctools import gc_tuning as gc_tuning
    from hivemem._gctools import unfreeze as unfreeze
    from hivemem._governor import MemoryGovernor as MemoryGovernor
    from hivemem._governor import govern as govern
    from hivemem._governor import optimize as optimize
    from hivemem._hooks import on_pressure as on_pressure
    from hivemem._hooks import remove_pressure_hook as remove_pressure_hook
    from hivemem._inspect import growth as growth
    from hivemem._inspect import sizeof as sizeof
    from hivemem._inspect import status as status
    from hivemem._inspect import top as top
    from hivemem._inspect import why as why
    from hivemem._ipython import load_ipython_extension as load_ipython_extension
    from hivemem._lazy import LazyProxy as LazyProxy
    from hivemem._lazy import lazy_import as lazy_import
    from hivemem._leaks import LeakReport as LeakReport
    from hivemem._leaks import find_leaks as find_leaks
    from hivemem._levels import (
        AGGRESSIVE as AGGRESSIVE,
    )
    from hivemem._levels import (
        CHEAP as CHEAP,
    )
    from hivemem._levels import (
        MODERATE as MODERATE,
    )
    from hivemem._levels import (
        Aggressiveness as Aggressiveness,
    )
    from hivemem._levels import (
        Pressure as Pressure,
    )
    from hivemem._limits import MemoryLimit as MemoryLimit
    from hivemem._limits import memory_limit as memory_limit
    from hivemem._measure import (
        MemoryUsage as MemoryUsage,
    )
    from hivemem._measure import (
        ProcReader as ProcReader,
    )
    from hivemem._measure import (
        reset_peak as reset_peak,
    )
    from hivemem._measure import (
        rss as rss,
    )
    from hivemem._measure import (
        usage as usage,
    )
    from hivemem._native import set_malloc_thresholds as set_malloc_thresholds
    from hivemem._pool import BufferPool as BufferPool
    from hivemem._pool import ObjectPool as ObjectPool
    from hivemem._proctree import ProcessMemory as ProcessMemory
    from hivemem._proctree import ProcessTree as ProcessTree
    from hivemem._proctree import process_tree as process_tree
    from hivemem._profiler import Profiler as Profiler
    from hivemem._profiler import ProfileReport as ProfileReport
    from hivemem._protocol import Strategy as Strategy
    from hivemem._registry import Registry as Registry
    from hivemem._report import OptimizationReport as OptimizationReport
    from hivemem._report import StepResult as StepResult
    from hivemem._signals import install_signal_handler as install_signal_handler
    from hivemem._signals import uninstall_signal_handler as uninstall_signal_handler
    from hivemem._sizes import format_size as format_size
    from hivemem._sizes import parse_size as parse_size
    from hivemem._spill import SpillStore as SpillStore
    from hivemem._strategy import StrategyContext as StrategyContext
    from hivemem._strategy import StrategyResult as StrategyResult
    from hivemem._unload import allow_unload as allow_unload
    from hivemem._unload import disallow_unload as disallow_unload
    from hivemem._unload import unload_modules as unload_modules


def __getattr__(name: str) -> object:
    spec = _LAZY.get(name)
    if spec is None:
        raise AttributeError(f"module 'hivemem' has no attribute {name!r}")
    module_name, _, attr = spec.partition(":")
    __import__(module_name)
    import sys

    value = getattr(sys.modules[module_name], attr or name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
