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
# This is the only list of public names: ``__all__`` is derived from it.
# Keep sorted; tests/test_public_api.py pins it and checks the TYPE_CHECKING
# imports below against it.
_LAZY: dict[str, str] = {
    "AGGRESSIVE": "hivemem._levels",
    "Aggressiveness": "hivemem._levels",
    "BufferPool": "hivemem._stores.pools",
    "CHEAP": "hivemem._levels",
    "Cache": "hivemem._stores.cache",
    "CompressedStore": "hivemem._stores.compressed",
    "CorruptedValue": "hivemem._errors",
    "Fragmentation": "hivemem._reclaim.containers",
    "GCPauses": "hivemem._reclaim.gctools",
    "GovernorEvent": "hivemem._governor.events",
    "HivememError": "hivemem._errors",
    "HivememWarning": "hivemem._errors",
    "InvalidArgument": "hivemem._errors",
    "InvalidSize": "hivemem._errors",
    "LazyProxy": "hivemem._stores.lazy",
    "LeakDetected": "hivemem._errors",
    "LeakReport": "hivemem._profile.leaks",
    "MODERATE": "hivemem._levels",
    "MemoryCeilingExceeded": "hivemem._errors",
    "MemoryGovernor": "hivemem._governor.governor",
    "MemoryLimit": "hivemem._measure.limits",
    "MemoryLimitExceeded": "hivemem._errors",
    "MemoryUsage": "hivemem._measure.usage",
    "ObjectPool": "hivemem._stores.pools",
    "OptimizationReport": "hivemem._engine.report",
    "PluginWarning": "hivemem._errors",
    "Pressure": "hivemem._levels",
    "ProcReader": "hivemem._measure.usage",
    "ProcessMemory": "hivemem._measure.proctree",
    "ProcessTree": "hivemem._measure.proctree",
    "ProfileReport": "hivemem._profile.profiler",
    "Profiler": "hivemem._profile.profiler",
    "ReentrantOptimize": "hivemem._errors",
    "Registry": "hivemem._engine.registry",
    "SpillStore": "hivemem._stores.spill",
    "StepResult": "hivemem._engine.report",
    "Strategy": "hivemem._engine.protocol",
    "StrategyContext": "hivemem._engine.context",
    "StrategyError": "hivemem._errors",
    "StrategyResult": "hivemem._engine.context",
    "StringPool": "hivemem._reclaim.containers",
    "Unavailable": "hivemem._errors",
    "UnknownStrategy": "hivemem._errors",
    "add_listener": "hivemem._engine.engine",
    "after_fork_child": "hivemem._governor.fork",
    "allow_unload": "hivemem._reclaim.unload",
    "cache": "hivemem._stores.cache",
    "compactable": "hivemem._reclaim.containers",
    "disable_strategy": "hivemem._engine.api",
    "disallow_unload": "hivemem._reclaim.unload",
    "enable_strategy": "hivemem._engine.api",
    "find_leaks": "hivemem._profile.leaks",
    "format_size": "hivemem._sizes",
    "fragmentation": "hivemem._reclaim.containers",
    "freeze": "hivemem._reclaim.gctools",
    "gc_pauses": "hivemem._reclaim.gctools",
    "gc_tuning": "hivemem._reclaim.gctools",
    "govern": "hivemem._governor.governor",
    "growth": "hivemem._profile.inspect",
    "install_signal_handler": "hivemem._governor.signals",
    "lazy_import": "hivemem._stores.lazy",
    "list_strategies": "hivemem._engine.api",
    "load_ipython_extension": "hivemem._profile.ipython",
    "memory_limit": "hivemem._measure.limits",
    "on_pressure": "hivemem._reclaim.hooks",
    "optimize": "hivemem._governor.governor",
    "parse_size": "hivemem._sizes",
    "prepare_fork": "hivemem._governor.fork",
    "process_tree": "hivemem._measure.proctree",
    "register_cache": "hivemem._reclaim.caches",
    "register_container": "hivemem._reclaim.containers",
    "register_strategy": "hivemem._engine.api",
    "remove_listener": "hivemem._engine.engine",
    "remove_pressure_hook": "hivemem._reclaim.hooks",
    "reset_peak": "hivemem._measure.usage",
    "rss": "hivemem._measure.usage",
    "set_malloc_thresholds": "hivemem._measure.native",
    "sizeof": "hivemem._profile.inspect",
    "status": "hivemem._profile.inspect",
    "top": "hivemem._profile.inspect",
    "uncompactable": "hivemem._reclaim.containers",
    "unfreeze": "hivemem._reclaim.gctools",
    "uninstall_signal_handler": "hivemem._governor.signals",
    "unload_modules": "hivemem._reclaim.unload",
    "unregister_cache": "hivemem._reclaim.caches",
    "unregister_container": "hivemem._reclaim.containers",
    "unregister_strategy": "hivemem._engine.api",
    "usage": "hivemem._measure.usage",
    "why": "hivemem._profile.inspect",
}

# The one list of public names is _LAZY; the TYPE_CHECKING block below mirrors it
# for static analysers (tests/test_public_api.py checks the two agree).
__all__ = sorted(_LAZY)

TYPE_CHECKING = False
if TYPE_CHECKING:  # what static analysers and IDEs see; nothing is imported at run time
    from hivemem._engine.api import (
        disable_strategy as disable_strategy,
    )
    from hivemem._engine.api import (
        enable_strategy as enable_strategy,
    )
    from hivemem._engine.api import (
        list_strategies as list_strategies,
    )
    from hivemem._engine.api import (
        register_strategy as register_strategy,
    )
    from hivemem._engine.api import (
        unregister_strategy as unregister_strategy,
    )
    from hivemem._engine.context import StrategyContext as StrategyContext
    from hivemem._engine.context import StrategyResult as StrategyResult
    from hivemem._engine.engine import add_listener as add_listener
    from hivemem._engine.engine import remove_listener as remove_listener
    from hivemem._engine.protocol import Strategy as Strategy
    from hivemem._engine.registry import Registry as Registry
    from hivemem._engine.report import OptimizationReport as OptimizationReport
    from hivemem._engine.report import StepResult as StepResult
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
    from hivemem._governor.events import GovernorEvent as GovernorEvent
    from hivemem._governor.fork import after_fork_child as after_fork_child
    from hivemem._governor.fork import prepare_fork as prepare_fork
    from hivemem._governor.governor import MemoryGovernor as MemoryGovernor
    from hivemem._governor.governor import govern as govern
    from hivemem._governor.governor import optimize as optimize
    from hivemem._governor.signals import install_signal_handler as install_signal_handler
    from hivemem._governor.signals import uninstall_signal_handler as uninstall_signal_handler
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
    from hivemem._measure.limits import MemoryLimit as MemoryLimit
    from hivemem._measure.limits import memory_limit as memory_limit
    from hivemem._measure.native import set_malloc_thresholds as set_malloc_thresholds
    from hivemem._measure.proctree import ProcessMemory as ProcessMemory
    from hivemem._measure.proctree import ProcessTree as ProcessTree
    from hivemem._measure.proctree import process_tree as process_tree
    from hivemem._measure.usage import (
        MemoryUsage as MemoryUsage,
    )
    from hivemem._measure.usage import (
        ProcReader as ProcReader,
    )
    from hivemem._measure.usage import (
        reset_peak as reset_peak,
    )
    from hivemem._measure.usage import (
        rss as rss,
    )
    from hivemem._measure.usage import (
        usage as usage,
    )
    from hivemem._profile.inspect import growth as growth
    from hivemem._profile.inspect import sizeof as sizeof
    from hivemem._profile.inspect import status as status
    from hivemem._profile.inspect import top as top
    from hivemem._profile.inspect import why as why
    from hivemem._profile.ipython import load_ipython_extension as load_ipython_extension
    from hivemem._profile.leaks import LeakReport as LeakReport
    from hivemem._profile.leaks import find_leaks as find_leaks
    from hivemem._profile.profiler import Profiler as Profiler
    from hivemem._profile.profiler import ProfileReport as ProfileReport
    from hivemem._reclaim.caches import register_cache as register_cache
    from hivemem._reclaim.caches import unregister_cache as unregister_cache
    from hivemem._reclaim.containers import Fragmentation as Fragmentation
    from hivemem._reclaim.containers import StringPool as StringPool
    from hivemem._reclaim.containers import compactable as compactable
    from hivemem._reclaim.containers import fragmentation as fragmentation
    from hivemem._reclaim.containers import register_container as register_container
    from hivemem._reclaim.containers import uncompactable as uncompactable
    from hivemem._reclaim.containers import unregister_container as unregister_container
    from hivemem._reclaim.gctools import GCPauses as GCPauses
    from hivemem._reclaim.gctools import freeze as freeze
    from hivemem._reclaim.gctools import gc_pauses as gc_pauses
    from hivemem._reclaim.gctools import gc_tuning as gc_tuning
    from hivemem._reclaim.gctools import unfreeze as unfreeze
    from hivemem._reclaim.hooks import on_pressure as on_pressure
    from hivemem._reclaim.hooks import remove_pressure_hook as remove_pressure_hook
    from hivemem._reclaim.unload import allow_unload as allow_unload
    from hivemem._reclaim.unload import disallow_unload as disallow_unload
    from hivemem._reclaim.unload import unload_modules as unload_modules
    from hivemem._sizes import format_size as format_size
    from hivemem._sizes import parse_size as parse_size
    from hivemem._stores.cache import Cache as Cache
    from hivemem._stores.cache import cache as cache
    from hivemem._stores.compressed import CompressedStore as CompressedStore
    from hivemem._stores.lazy import LazyProxy as LazyProxy
    from hivemem._stores.lazy import lazy_import as lazy_import
    from hivemem._stores.pools import BufferPool as BufferPool
    from hivemem._stores.pools import ObjectPool as ObjectPool
    from hivemem._stores.spill import SpillStore as SpillStore


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
