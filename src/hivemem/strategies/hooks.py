"""``hooks``: run the application's release hooks (``hivemem.on_pressure``) for this pass's level.

Returns: whatever the application's callbacks let go of (caches cleared,
buffers dropped, windows closed). Where that memory goes depends on the
objects: large blocks go straight back to the OS, small objects back to
Python's allocators (``gc`` and ``trim`` run after this and pick them up).

Which hooks run: a pass started by the governor for a pressure level runs
every hook registered for that level or below (``ctx.level``, compared with
``>=`` like Android's ``onTrimMemory``). A direct ``hivemem.optimize()`` has
no pressure level, so its aggressiveness stands in for one: ``cheap`` runs
hooks up to ``MODERATE``, ``moderate`` (the default) up to ``HIGH``,
``aggressive`` up to ``CRITICAL``.

Does nothing when no hook is registered (``hivemem._reclaim.hooks`` is then not even
imported). A hook that raises is recorded in the stats and the others run.

Cost: the callbacks' own; the strategy itself added ~3 µs per hook here.
Runs at CHEAP (the level filter decides what runs), early (priority 15) so
that the memory the hooks free is collected and trimmed later in the pass.
"""

from __future__ import annotations

import sys

from hivemem._engine.context import StrategyContext, StrategyResult
from hivemem._levels import CHEAP

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["ReleaseHooks", "STRATEGY", "pressure_of"]

#: The pressure a direct optimize() call stands for, by aggressiveness value.
_BY_AGGRESSIVENESS = {1: "moderate", 2: "high", 3: "critical"}


def pressure_of(ctx: StrategyContext) -> str:
    """The pressure level name a pass runs at: ``ctx.level``, else mapped from its aggressiveness."""
    if ctx.level is not None:
        return str(ctx.level)
    return _BY_AGGRESSIVENESS.get(int(ctx.aggressiveness), "high")


def _more_at(ctx: StrategyContext, module: ModuleType) -> dict[str, object]:
    """``{"more_at": level}`` when a direct pass at a higher aggressiveness would run more hooks.

    A climbing ``optimize()`` reads it to call this strategy again there (the
    hooks then run again with the higher pressure, as Android's onTrimMemory does).
    """
    if ctx.level is not None:
        return {}
    now = int(ctx.aggressiveness)
    above = [int(lvl) for _, lvl in module.hooks() if int(lvl) > now]
    if not above:
        return {}
    return {"more_at": ("cheap", "moderate", "aggressive")[min(min(above), 3) - 1]}


class ReleaseHooks:
    """Call the ``on_pressure`` callbacks registered at or below this pass's pressure level."""

    name = "hooks"
    priority = 15
    aggressiveness = CHEAP

    def apply(self, ctx: StrategyContext) -> StrategyResult:
        module = sys.modules.get("hivemem._reclaim.hooks")
        if module is None:
            return StrategyResult.skip("no release hook registered (hivemem.on_pressure)")
        level = pressure_of(ctx)
        ran = module.run_hooks(level)
        more = _more_at(ctx, module)
        if not ran:
            return StrategyResult.skip(f"no release hook registered at pressure {level} or below", **more)
        failed = [r for r in ran if r.error is not None]
        summary = f"ran {len(ran)} release hook(s) at pressure {level}"
        if failed:
            summary += f"; {len(failed)} raised: " + ", ".join(f"{r.name} ({r.error})" for r in failed)
        return StrategyResult(
            summary,
            stats={
                "level": level,
                "ran": len(ran),
                "failed": len(failed),
                "hooks": [r.to_dict() for r in ran],
                **more,
            },
        )

    def __repr__(self) -> str:
        return "ReleaseHooks()"


#: The strategy this module adds (the registry finds it by the module's name).
STRATEGY = ReleaseHooks
