"""The IPython extension: ``%load_ext hivemem``, then ``%%hivemem`` to profile a cell.

Cell magic::

    %%hivemem [--trace] [--frames N] [--interval SECONDS] [--top N] [--html PATH]
    ...code...

runs the cell under :class:`hivemem.Profiler` and shows its
:class:`hivemem.ProfileReport` (peak RSS exactly, the timeline, with
``--trace`` the top allocation sites and what grew). Line magic::

    %hivemem              one screen of status (hivemem.status())
    %hivemem top          the biggest types (hivemem.top())
    %hivemem growth       the types that grew since the last call

IPython is never imported by hivemem; it calls us.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    class _Shell(Protocol):
        """The two methods of IPython's ``InteractiveShell`` used here."""

        def run_cell(self, raw_cell: str) -> object: ...

        def register_magic_function(
            self, func: Callable[..., object], magic_kind: str = ..., magic_name: str | None = ...
        ) -> None: ...


__all__ = ["hivemem_magic", "load_ipython_extension", "parse_options", "profile_cell"]

_USAGE = "%%hivemem [--trace] [--frames N] [--interval SECONDS] [--top N] [--html PATH]"


def parse_options(line: str) -> dict[str, object]:
    """Parse the magic's options; raises :class:`hivemem.InvalidArgument` naming a bad one."""
    import shlex

    from hivemem._errors import InvalidArgument

    opts: dict[str, object] = {"trace": False, "frames": 1, "interval": 0.05, "top": 10, "html": None}
    words = shlex.split(line)
    i = 0
    while i < len(words):
        word = words[i]
        key, eq, value = word.partition("=")
        name = key.lstrip("-")
        if not key.startswith("--") or name not in opts:
            raise InvalidArgument(f"unknown option {word!r}: usage {_USAGE}")
        if name == "trace":
            opts["trace"] = True
            i += 1
            continue
        if not eq:
            if i + 1 >= len(words):
                raise InvalidArgument(f"option {key} needs a value: usage {_USAGE}")
            value = words[i + 1]
            i += 1
        i += 1
        try:
            if name in ("frames", "top"):
                opts[name] = int(value)
            elif name == "interval":
                opts[name] = float(value)
            else:
                opts[name] = value
        except ValueError:
            raise InvalidArgument(f"bad value {value!r} for {key}: usage {_USAGE}") from None
    return opts


def profile_cell(
    cell: str, run: Callable[[str], object], line: str = "", *, namespace: dict[str, object] | None = None
) -> object:
    """Run *cell* through *run* (IPython's ``run_cell``, or ``exec`` in tests) under a Profiler.

    Returns the :class:`hivemem.ProfileReport`; with ``--html PATH`` the
    self-contained HTML report is written there too. With ``--trace``, the
    code that runs with *namespace* as its globals (the cell, and functions
    defined in cells) checks traced memory at each line, so a peak that lives
    for milliseconds is kept (docs/profiler.md, "Allocation sites at the peak").
    """
    from hivemem._profile.profiler import LineWatch, Profiler

    opts = parse_options(line)
    frames, top, interval = opts["frames"], opts["top"], opts["interval"]
    assert isinstance(frames, int) and isinstance(top, int) and isinstance(interval, float)
    prof = Profiler(trace=bool(opts["trace"]), frames=frames, interval=interval)
    with prof:
        watch = LineWatch(prof, namespace) if namespace is not None and prof.trace else None
        if watch is not None:
            watch.start()
        try:
            run(cell)
        finally:
            if watch is not None:
                watch.stop()
    report = prof.report(top=top)
    if opts["html"]:
        report.to_html(str(opts["html"]))
    return report


def hivemem_magic(
    line: str,
    cell: str | None = None,
    *,
    run: Callable[[str], object] | None = None,
    namespace: dict[str, object] | None = None,
) -> object:
    """The ``%hivemem`` / ``%%hivemem`` magic: profile a cell (*namespace*: the globals it runs
    in), or show status, top or growth."""
    if cell is not None:
        if run is None:
            from hivemem._errors import InvalidArgument

            raise InvalidArgument("profiling a cell needs a runner (IPython's run_cell)")
        return profile_cell(cell, run, line, namespace=namespace)
    from hivemem._profile.inspect import growth, status, top

    command = line.strip() or "status"
    if command == "status":
        return status()
    if command == "top":
        return top()
    if command == "growth":
        return growth()
    from hivemem._errors import InvalidArgument

    raise InvalidArgument(f"unknown %hivemem command {command!r}: expected status, top or growth")


def load_ipython_extension(ipython: _Shell) -> None:
    """Called by ``%load_ext hivemem``: registers the ``%hivemem`` line and cell magic."""

    def run(code: str) -> object:
        result = ipython.run_cell(code)
        error = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
        if error is not None:
            raise error
        return result

    def magic(line: str, cell: str | None = None) -> object:
        return hivemem_magic(line, cell, run=run, namespace=getattr(ipython, "user_global_ns", None))

    magic.__doc__ = __doc__
    ipython.register_magic_function(magic, magic_kind="line_cell", magic_name="hivemem")
