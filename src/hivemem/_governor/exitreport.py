"""The report ``escalation="exit"`` writes to stderr before the process exits."""

from __future__ import annotations

import sys

from hivemem._sizes import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hivemem._governor.events import GovernorEvent
    from hivemem._governor.governor import MemoryGovernor

__all__ = ["write_exit_report"]


def write_exit_report(gov: MemoryGovernor, event: GovernorEvent) -> None:
    """Fil-style last words on stderr: what memory was, what was tried, where it was allocated."""
    lines = [
        "",
        "=" * 72,
        "hivemem: out of memory budget, exiting (escalation='exit')",
        event.message,
    ]
    try:
        th = gov.thresholds
        lines.append(f"budget {format_size(th.budget)}; limit {format_size(gov.limit)}")
        for lvl, (enter, release) in th.levels.items():
            lines.append(
                f"  {lvl.name:<9} enter {format_size(enter):>11}  release {format_size(release):>11}"
            )
        usage = gov.reader.usage()
        lines.append(f"memory now: {usage!r}")
        cpu = gov._cpu
        lines.append(
            f"reclamation CPU budget: {cpu.share:.0%} of wall time over {cpu.window:g} s; "
            f"{cpu.spent_total:.3f} s spent in {gov.passes} passes"
        )
        lines.append("strategies (runs, demoted, bytes/s):")
        for name, stats in gov.strategy_stats.items():
            lines.append(f"  {name}: {stats}")
        lines.append("last events:")
        lines.extend(f"  {e.describe()}" for e in gov.events[-10:])
        import tracemalloc

        if tracemalloc.is_tracing():
            lines.append("largest allocation sites (tracemalloc):")
            for stat in tracemalloc.take_snapshot().statistics("lineno")[:10]:
                lines.append(f"  {stat}")
        else:
            lines.append("start tracemalloc (PYTHONTRACEMALLOC=1) to see where memory was allocated")
    except Exception as exc:  # the report must not stop the exit
        lines.append(f"(report incomplete: {type(exc).__name__}: {exc})")
    lines.append("=" * 72)
    try:
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()
    except Exception:
        pass
