"""Results of an optimization pass: every figure measured, none estimated."""

from __future__ import annotations

from hivemem._frozen import Frozen
from hivemem._sizes import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from hivemem._measure.usage import MemoryUsage

__all__ = ["STEP_HEADER", "OptimizationReport", "StepResult", "climb_text", "headline_text", "step_row"]

STEP_HEADER = ("step", "level", "freed (RSS)", "seconds", "what happened")


def step_row(step: Mapping[str, object]) -> tuple[str, str, str, str, str]:
    """A step as a table row, from :meth:`StepResult.to_dict`: a live report and a saved one render alike."""
    freed, seconds = step.get("freed"), step.get("seconds")
    shown = format_size(freed, signed=True) if isinstance(freed, int) else "-"
    ran = step.get("skipped") is None
    secs = f"{seconds:.3f}" if ran and isinstance(seconds, (int, float)) else "-"
    if step.get("error"):
        note = f"error: {step['error']}"
    elif not ran:
        note = f"skipped: {step['skipped']}"
    else:
        note = str(step.get("summary") or "")
    return (str(step.get("name")), str(step.get("level") or "-"), shown, secs, note)


def climb_text(levels: Sequence[Mapping[str, object]]) -> str:
    """The levels a pass climbed, RSS at each and why one was left early ("" for a single level)."""
    if len(levels) < 2 and not any(x.get("left") for x in levels):
        return ""
    parts = []
    for x in levels:
        before, after = x.get("rss_before"), x.get("rss_after")
        text = f"{x.get('level')} {format_size(before if isinstance(before, int) else None)} -> "
        text += format_size(after if isinstance(after, int) else None)
        if x.get("left"):
            text += f" ({x['left']})"
        parts.append(text)
    return "; ".join(parts)


def headline_text(report: Mapping[str, object]) -> str:
    """The report's first line, from :meth:`OptimizationReport.to_dict`."""

    def rss(key: str) -> int | None:
        usage = report.get(key)
        value = usage.get("rss") if isinstance(usage, dict) else None
        return value if isinstance(value, int) else None

    target = report.get("target")
    if not isinstance(target, int):
        goal = "no target"
    elif report.get("reached"):
        at = report.get("reached_at")
        levels = report.get("levels")
        climbed = (isinstance(levels, list) and len(levels) > 1) or at != report.get("aggressiveness")
        goal = f"target {format_size(target)}: reached" + (f" at {at}" if at and climbed else "")
    else:
        goal = f"target {format_size(target)}: NOT reached"
    seconds = report.get("seconds")
    secs = float(seconds) if isinstance(seconds, (int, float)) else 0.0
    dry = " (dry run: nothing was changed)" if report.get("dry_run") else ""
    before, after = format_size(rss("before")), format_size(rss("after"))
    return f"hivemem optimize: RSS {before} -> {after} ({goal}) in {secs:.2f} s{dry}"


class StepResult(Frozen):
    """One strategy's turn in a pass.

    ``name``          the strategy
    ``level``         the aggressiveness the step ran at (``"cheap"``, ``"moderate"``,
                      ``"aggressive"``); ``None`` when it was skipped without being called
    ``freed``         RSS before minus RSS after the step, in bytes, as read by
                      the governor (negative when RSS grew); ``None`` when the step
                      did not run or the strategy declined (RSS that moved meanwhile
                      moved by itself, and stays in ``rss_before``/``rss_after``)
    ``rss_before``, ``rss_after``   the two readings
    ``seconds``       wall time of ``apply``; ``cpu_seconds`` its thread CPU time
    ``skipped``       why the step did not run (``None`` if it ran)
    ``error``         ``"ExceptionType: message"`` if ``apply`` raised
    ``summary``, ``stats``  what the strategy said it did
    ``malloc_released``  malloc in-use bytes before minus after the step (glibc
                      ``mallinfo2``): what it gave back to malloc, whether or not
                      RSS fell yet (``None`` where not measured)
    ``blocks_released``  ``sys.getallocatedblocks()`` before minus after: pymalloc
                      blocks it gave back (``None`` where not measured)
    """

    __slots__ = (
        "blocks_released",
        "cpu_seconds",
        "error",
        "freed",
        "level",
        "malloc_released",
        "name",
        "rss_after",
        "rss_before",
        "seconds",
        "skipped",
        "stats",
        "summary",
    )
    __module__ = "hivemem"

    name: str
    level: str | None
    freed: int | None
    rss_before: int | None
    rss_after: int | None
    seconds: float
    cpu_seconds: float
    skipped: str | None
    error: str | None
    summary: str
    stats: dict[str, object]
    malloc_released: int | None
    blocks_released: int | None

    def __init__(
        self,
        name: str,
        *,
        rss_before: int | None = None,
        rss_after: int | None = None,
        seconds: float = 0.0,
        cpu_seconds: float = 0.0,
        skipped: str | None = None,
        error: str | None = None,
        summary: str = "",
        stats: dict[str, object] | None = None,
        malloc_released: int | None = None,
        blocks_released: int | None = None,
        level: str | None = None,
    ) -> None:
        measured = skipped is None and rss_before is not None and rss_after is not None
        freed = rss_before - rss_after if measured else None  # type: ignore[operator]
        self._set(
            name=name,
            level=level,
            freed=freed,
            rss_before=rss_before,
            rss_after=rss_after,
            seconds=seconds,
            cpu_seconds=cpu_seconds,
            skipped=skipped,
            error=error,
            summary=summary,
            stats=dict(stats or {}),
            malloc_released=malloc_released,
            blocks_released=blocks_released,
        )

    @property
    def ran(self) -> bool:
        """True when ``apply`` was called (whether or not it raised)."""
        return self.skipped is None

    def note(self) -> str:
        if self.error:
            return f"error: {self.error}"
        if self.skipped is not None:
            return f"skipped: {self.skipped}"
        return self.summary

    def to_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __repr__(self) -> str:
        freed = format_size(self.freed, signed=True) if self.freed is not None else "-"
        return f"<StepResult {self.name} freed={freed} {self.note()!r}>"


class OptimizationReport(Frozen):
    """What one ``optimize()`` pass did, measured.

    ``before``, ``after``   full :class:`hivemem.MemoryUsage` snapshots
    ``target``              bytes, or ``None`` when no target was given
    ``reached``             ``after.rss <= target`` (``None`` without a target)
    ``steps``               a tuple of :class:`hivemem.StepResult`, in run order
    ``freed``               ``before.rss - after.rss``
    ``seconds``             wall time of the whole pass
    ``aggressiveness``      the ceiling: the most aggressive level the pass was allowed
    ``levels``              the levels the pass climbed, in order: one dict per level with
                            ``level``, ``rss_before``, ``rss_after`` (bytes) and ``ran``
                            (the steps that ran there)
    ``explanation``         when the target was not reached: why, in words, from
                            figures measured after the pass, and what would help
    ``breakdown``           those figures, bytes (may be empty): RSS in parts that add
                            up to ``breakdown["total"]`` (see ``docs/optimize.md``)
    """

    __slots__ = (
        "after",
        "aggressiveness",
        "before",
        "breakdown",
        "dry_run",
        "explanation",
        "level",
        "levels",
        "reached",
        "seconds",
        "steps",
        "target",
    )
    __module__ = "hivemem"

    before: MemoryUsage
    after: MemoryUsage
    target: int | None
    reached: bool | None
    steps: tuple[StepResult, ...]
    seconds: float
    aggressiveness: str
    dry_run: bool
    explanation: str
    breakdown: dict[str, int]
    level: str | None
    levels: tuple[dict[str, object], ...]

    def __init__(
        self,
        *,
        before: MemoryUsage,
        after: MemoryUsage,
        target: int | None,
        steps: tuple[StepResult, ...] | list[StepResult],
        seconds: float,
        aggressiveness: str = "moderate",
        dry_run: bool = False,
        explanation: str = "",
        breakdown: dict[str, int] | None = None,
        level: str | None = None,
        levels: tuple[dict[str, object], ...] | list[dict[str, object]] = (),
    ) -> None:
        reached = None
        if target is not None and after.rss is not None:
            reached = after.rss <= target
        self._set(
            before=before,
            after=after,
            target=target,
            reached=reached,
            steps=tuple(steps),
            seconds=seconds,
            aggressiveness=str(aggressiveness),
            dry_run=dry_run,
            explanation=explanation,
            breakdown=dict(breakdown or {}),
            level=level,
            levels=tuple(dict(x) for x in levels),
        )

    @property
    def freed(self) -> int | None:
        if self.before.rss is None or self.after.rss is None:
            return None
        return self.before.rss - self.after.rss

    def step(self, name: str) -> StepResult:
        """The last step of strategy *name* (``KeyError`` when it was not part of the pass).

        A climbing pass may run a strategy at several levels (``gc`` and
        ``trim`` after later steps released memory); ``steps`` has every run.
        """
        for s in reversed(self.steps):
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def errors(self) -> list[StepResult]:
        return [s for s in self.steps if s.error]

    @property
    def reached_at(self) -> str | None:
        """The level at which the target was reached (``None`` when it was not, or without a target)."""
        if not self.reached:
            return None
        return str(self.levels[-1]["level"]) if self.levels else self.aggressiveness

    def headline(self) -> str:
        return headline_text(self.to_dict())

    def climb(self) -> str:
        """The levels the pass climbed, RSS at each and why one was left early ("" for a single level)."""
        return climb_text(self.levels)

    def _rows(self) -> list[tuple[str, str, str, str, str]]:
        return [step_row(s.to_dict()) for s in self.steps]

    def __str__(self) -> str:
        header = STEP_HEADER
        rows = self._rows()
        w = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
        lines = [self.headline()]
        fmt = "  {0:<{w0}}  {1:<{w1}}  {2:>{w2}}  {3:>{w3}}  {4}"
        lines.append(fmt.format(*header, w0=w[0], w1=w[1], w2=w[2], w3=w[3]))
        for r in rows:
            lines.append(fmt.format(*r, w0=w[0], w1=w[1], w2=w[2], w3=w[3]))
        freed = self.freed
        if freed is not None:
            lines.append(f"  total freed: {format_size(freed, signed=True)}")
        climb = self.climb()
        if climb:
            lines.append(f"  levels: {climb}")
        if self.explanation:
            lines.append(f"  why: {self.explanation}")
        return "\n".join(lines)

    __repr__ = __str__

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        yield "before", format_size(self.before.rss)
        yield "after", format_size(self.after.rss)
        yield "target", format_size(self.target) if self.target is not None else None
        yield "reached", self.reached
        yield "steps", [f"{n} ({lvl}): {f} {note}" for n, lvl, f, _, note in self._rows()]

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in self._rows())
        why = f"<p><b>why:</b> {escape(self.explanation)}</p>" if self.explanation else ""
        climb = self.climb()
        if climb:
            why = f"<p><b>levels:</b> {escape(climb)}</p>" + why
        return (
            f"<div class='hivemem-report'><p>{escape(self.headline())}</p>"
            "<table><thead><tr><th>step</th><th>level</th><th>freed (RSS)</th><th>seconds</th>"
            f"<th>what happened</th></tr></thead><tbody>{rows}</tbody></table>{why}</div>"
        )

    def to_dict(self) -> dict[str, object]:
        """A JSON-safe dict with every field; sizes in bytes."""
        return {
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "target": self.target,
            "reached": self.reached,
            "freed": self.freed,
            "seconds": self.seconds,
            "aggressiveness": self.aggressiveness,
            "dry_run": self.dry_run,
            "level": self.level,
            "levels": [dict(x) for x in self.levels],
            "reached_at": self.reached_at,
            "steps": [s.to_dict() for s in self.steps],
            "explanation": self.explanation,
            "breakdown": dict(self.breakdown),
        }

    def to_json(self, **kwargs: object) -> str:
        import json

        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), default=str, **kwargs)  # type: ignore[arg-type]
