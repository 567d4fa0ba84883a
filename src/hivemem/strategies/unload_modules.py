"""``unload_modules``: remove allowlisted modules that nothing else uses from ``sys.modules``.

Returns: the modules' functions, classes, code objects and globals, to
pymalloc/malloc (``trim`` returns freed pages later in the pass). Often
nothing: a module is unloaded only when no object outside it references it,
its functions, its classes or its data, and no running code holds it
(``hivemem.allow_unload`` explains the check). MEMORY-FACTS measured 0.0
MiB back from removing 127 modules naively. Measured here
(``benchmarks/bench_cooperative.py unload``): http.server and its imports used
once and released: 19 modules unloaded, 3 kept, 0.84 MiB of live objects
back to pymalloc and 0 MiB of RSS back to the OS.

Does nothing unless the application opted in with
``hivemem.allow_unload("pattern", ...)``; extension modules, ``hivemem``,
``__main__`` and built-ins are never unloaded. The stats list every kept
module with the reason.

Cost: one walk of every tracked object per round of the dependency check
(~0.2-1 s for a million objects). Runs at AGGRESSIVE only.
"""

from __future__ import annotations

import sys

from hivemem._engine.context import StrategyContext, StrategyResult
from hivemem._levels import AGGRESSIVE

__all__ = ["STRATEGY", "UnloadModules"]


class UnloadModules:
    """Unload the allowlisted modules nothing references any more."""

    name = "unload_modules"
    priority = 70
    aggressiveness = AGGRESSIVE

    def apply(self, ctx: StrategyContext) -> StrategyResult:
        module = sys.modules.get("hivemem._reclaim.unload")
        if module is None or not module.unload_allowlist():
            return StrategyResult.skip("opt-in: no module is allowed to unload (hivemem.allow_unload)")
        done = module.unload_modules()
        unloaded, kept = done["unloaded"], done["kept"]
        stats: dict[str, object] = {"unloaded": unloaded, "kept": kept, "rounds": done["rounds"]}
        if not unloaded:
            reason = f"no allowlisted module can go: {len(kept)} kept"
            if kept:
                reason += " (" + "; ".join(list(kept.values())[:3]) + ")"
            return StrategyResult.skip(reason, **stats)
        return StrategyResult(f"unloaded {len(unloaded)} module(s); kept {len(kept)}", stats=stats)

    def __repr__(self) -> str:
        return "UnloadModules()"


#: The strategy this module adds (the registry finds it by the module's name).
STRATEGY = UnloadModules
