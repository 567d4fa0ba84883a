"""The ``hivemem`` command line (also ``python -m hivemem``).

Importing this module costs argparse and nothing else: every command imports
what it needs when it runs. Errors a user can make (a missing script, a bad
size, an unknown process) print one line on stderr and exit non-zero; they
never print a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from hivemem._errors import HivememError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import NoReturn

__all__ = ["EXIT_CODES", "main"]

#: Exit codes shared by every command (``hivemem --help`` lists them).
EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_CHECK_FAILED: "the command ran but its check failed (demo: an answer changed; bench: a "
    "scenario failed); `hivemem run` instead exits with the script's own status",
    EXIT_USAGE: "usage error: bad option or size, missing script or file, no such process",
    EXIT_UNAVAILABLE: "a requested feature is not available here (e.g. `hivemem bench` outside a source "
    "checkout, /proc missing)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}

_EPILOG = "exit status:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items())


class CliError(HivememError):
    """A user error: printed as ``hivemem <command>: error: <message>``, exit with ``code``.

    Internal to the command line: :func:`main` turns it into a message and an
    exit status, so it never reaches a caller. (``_errors`` imports nothing, so
    deriving from :class:`hivemem.HivememError` keeps importing the CLI light.)
    """

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage block; one line is easier to read and grep.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _size(text: str) -> int:
    from hivemem._errors import InvalidSize
    from hivemem._sizes import parse_size

    try:
        return parse_size(text)
    except InvalidSize as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _say(text: str = "", *, err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout, flush=True)


# --------------------------------------------------------------------------- demo


def _cmd_demo(args: argparse.Namespace) -> int:
    from hivemem._cli.demo import DEFAULT_SIZE
    from hivemem._cli.demo import main as demo_main

    size = args.size if args.size is not None else (64 * 2**20 if args.small else DEFAULT_SIZE)
    if size < 2**20:
        raise CliError(f"--size {size} bytes is too small: give at least 1MB")
    if args.target is not None:
        target_mb: float | None = args.target / 2**20
    else:
        target_mb = 90 if size == DEFAULT_SIZE else None
    return demo_main(target_mb=target_mb, size=size, aggressiveness=args.aggressiveness)


# --------------------------------------------------------------------------- run


# hivemem run's own options, recognised after the script name too (until a bare "--").
_RUN_FLAGS = {"--govern": "govern", "--profile": "profile"}
_RUN_VALUES = {"--target": "target", "--interval": "interval", "--report": "report"}


def _split_run_args(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Take hivemem's own options out of what follows the script; returns (script args, taken).

    argparse stops at the script name; everything after it is scanned here:
    ``--govern``, ``--profile``, ``--target SIZE``, ``--interval S`` and
    ``--report FILE`` (or ``--name=value``) are hivemem's, anything else is
    the script's, and everything after a bare ``--`` is the script's as
    written. The script name itself may follow a ``--``.
    """
    rest = list(args.script)
    if args.module is None and rest[:1] == ["--"]:
        rest = rest[1:]
    head = [] if args.module is not None else rest[:1]
    script_args: list[str] = []
    taken: list[str] = []
    i = len(head)
    while i < len(rest):
        word = rest[i]
        if word == "--":
            script_args += rest[i + 1 :]
            break
        name, eq, value = word.partition("=")
        if name in _RUN_FLAGS and not eq:
            dest, value = _RUN_FLAGS[name], "true"
        elif name in _RUN_VALUES:
            dest = _RUN_VALUES[name]
            if not eq:
                if i + 1 >= len(rest):
                    raise CliError(
                        f"{name} after the script needs a value (or pass it to the script after --)"
                    )
                i += 1
                value = rest[i]
        else:
            script_args.append(word)
            i += 1
            continue
        if getattr(args, dest) not in (None, False):
            raise CliError(f"{name} is given twice (pass the script's own {name} after --)")
        if dest in ("govern", "profile"):
            setattr(args, dest, True)
        elif dest == "target":
            try:
                setattr(args, dest, _size(value))
            except argparse.ArgumentTypeError as exc:
                raise CliError(f"argument --target: {exc}") from None
        elif dest == "interval":
            try:
                setattr(args, dest, float(value))
            except ValueError:
                raise CliError(f"argument --interval: invalid float value: {value!r}") from None
        else:
            setattr(args, dest, value)
        taken.append(f"{name} {value}" if dest in _RUN_VALUES.values() else name)
        i += 1
    return head + script_args, taken


def _cmd_run(args: argparse.Namespace) -> int:
    from hivemem._cli import runner as _runner
    from hivemem._errors import HivememError

    words, taken = _split_run_args(args)
    if args.module is None:
        if not words:
            raise CliError("give a script to run (hivemem run [options] script.py [args]) or -m module")
        target_path, script_args = words[0], words[1:]
        if not os.path.isfile(target_path):
            raise CliError(f"no such script: {target_path!r}")
    else:
        target_path, script_args = args.module, words
    if args.report is not None and not args.report.endswith((".json", ".html", ".htm")):
        raise CliError(f"--report {args.report!r}: expected a file name ending in .json or .html")
    if args.report is not None:
        parent = os.path.dirname(os.path.abspath(args.report))
        if not os.path.isdir(parent):
            raise CliError(f"--report {args.report!r}: directory {parent!r} does not exist")
    try:
        run = _runner.prepare(
            govern=args.govern, profile=args.profile, target=args.target, interval=args.interval
        )
    except _runner.NotAvailable as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    except HivememError as exc:  # a bad --interval
        raise CliError(str(exc)) from None
    if taken:
        # said out loud: a script that has an option of the same name gets it only after --
        names = ", ".join(taken)
        _say(f"hivemem run: {names} after the script are hivemem's (the script's own go after --)", err=True)
    result = run.execute(target_path, script_args, module=args.module is not None)
    report = result.to_dict()
    _say(_runner.render_text(report), err=True)
    if args.report is not None:
        from hivemem._cli.report import write_report

        write_report(report, args.report)
        _say(f"hivemem run: report written to {args.report}", err=True)
    return result.exit_status


# --------------------------------------------------------------------------- status


def _cmd_status(args: argparse.Namespace) -> int:
    from hivemem._cli import status as _status

    pid = os.getpid() if args.pid is None else args.pid
    from hivemem._errors import HivememError, InvalidArgument

    try:
        info = _status.collect(pid, top=args.top)
    except _status.NotAvailable as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    except InvalidArgument as exc:  # no such process, a bad --top
        raise CliError(str(exc)) from None
    from hivemem._governor.signals import status_extras  # last kept report, --children (docs/cli.md)

    try:
        extra, extra_text = status_extras(pid, children=args.children)
    except HivememError as exc:
        raise CliError(str(exc)) from None
    info.update(extra)
    if args.json:
        import json

        _say(json.dumps(info, indent=2, default=str))
    else:
        _say(_status.render(info))
        if extra_text:
            _say(extra_text)
    return EXIT_OK


# --------------------------------------------------------------------------- bench


def _find_benchmarks() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    for root in (os.getcwd(), os.path.dirname(os.path.dirname(here))):
        path = os.path.join(root, "benchmarks")
        if os.path.isfile(os.path.join(path, "harness.py")):
            return path
    raise CliError(
        "feature unavailable: the benchmark suite is not installed with hivemem; run `hivemem bench` "
        "from a hivemem source checkout (it needs the benchmarks/ directory next to src/ or in the "
        "current directory)",
        EXIT_UNAVAILABLE,
    )


def _scenarios(bench: str) -> list[str]:
    folder = os.path.join(bench, "scenarios")
    return sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_"))


def _cmd_bench(args: argparse.Namespace) -> int:
    import importlib.util
    import subprocess

    if args.repeat < 1:
        raise CliError(f"--repeat {args.repeat}: expected 1 or more")
    bench = _find_benchmarks()
    known = _scenarios(bench)
    unknown = [name for name in args.scenario if name not in known]
    if unknown:
        raise CliError(f"no such scenario {unknown[0]!r}: expected one of {', '.join(known)}")
    if importlib.util.find_spec("pytest") is None:
        raise CliError(
            "feature unavailable: `hivemem bench` runs pytest, which is not installed", EXIT_UNAVAILABLE
        )
    cmd = [sys.executable, "-m", "pytest", bench, "-q", f"--bench-repeat={args.repeat}"]
    if args.quick:
        cmd.append("--bench-quick")
    if args.out:
        cmd.append(f"--bench-out={os.path.abspath(args.out)}")
    if args.scenario:
        cmd.append("--bench-only=" + ",".join(args.scenario))
    proc = subprocess.run(cmd, cwd=os.path.dirname(bench))
    return EXIT_OK if proc.returncode == 0 else EXIT_CHECK_FAILED


# --------------------------------------------------------------------------- report


def _cmd_report(args: argparse.Namespace) -> int:
    import json

    from hivemem._cli import report as _clireport

    try:
        with open(args.file, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise CliError(f"no such file: {args.file!r}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CliError(f"{args.file!r} is not a JSON report: {exc}") from None
    try:
        if args.html:
            _clireport.write_report(data, args.html)
            _say(f"hivemem report: {args.html} written")
        else:
            _say(_clireport.render_text(data))
    except _clireport.UnknownReport as exc:
        raise CliError(f"{args.file!r}: {exc}") from None
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (documented in docs/cli.md)."""
    parser = _Parser(
        prog="hivemem",
        description="Keep a Python process inside a memory budget, and prove it with measurements. "
        "Sizes take binary units: 90MB = 90 MiB.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from hivemem import __version__

    parser.add_argument("--version", action="version", version=f"hivemem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            description=description,
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    demo = add(
        "demo",
        "build a 1.7 GB 'hive mind' app in this process, then optimize it under a target",
        "Build the composite 'hive mind' application in this process (caches, events, reference "
        "cycles, buffers, duplicate strings; under 50 MB of live data), showing RSS as it grows; run "
        "hivemem.optimize() toward --target with one line per strategy, print the report and verify "
        "that every answer the app computes is unchanged.",
    )
    demo.add_argument(
        "--target",
        type=_size,
        help="target RSS (default: 90MB at the default size; with --size or --small, RSS at start "
        "plus 4.4%% of the size, at least 24MB)",
    )
    demo.add_argument("--size", type=_size, help="how much the app grows before optimizing (default: 1700MB)")
    demo.add_argument("--small", action="store_true", help="a quick 64MB run (same as --size 64MB)")
    demo.add_argument(
        "--aggressiveness",
        default=None,
        choices=("cheap", "moderate", "aggressive"),
        help="optimize()'s ceiling (default: none given, as in the README's one-liner: it climbs to "
        "aggressive, where compaction may rebuild the registered data, only if the target needs it)",
    )
    demo.set_defaults(func=_cmd_demo)

    run = add(
        "run",
        "run a Python script under the governor and/or profiler and write a report",
        "Run SCRIPT as __main__ (like `python SCRIPT ARGS`) and report its memory: RSS at start, "
        "exact peak, at exit. --govern keeps it under --target with hivemem's background governor, "
        "--profile records where memory went; --target alone runs one measured optimize() pass when "
        "the script ends. hivemem's options may come before or after the script name; every other "
        "argument, and everything after a bare --, is the script's (hivemem run job.py --govern "
        "--report out.html -- --verbose).",
    )
    run.add_argument("--target", type=_size, help="budget for --govern; target of the final pass")
    run.add_argument("--govern", action="store_true", help="run under hivemem.govern() the whole time")
    run.add_argument(
        "--profile",
        action="store_true",
        help="run under hivemem.Profiler(trace=True): timeline, and the allocation sites at the peak",
    )
    run.add_argument("--interval", type=float, default=None, help="governor poll interval in seconds")
    run.add_argument("--report", metavar="FILE", help="write the report to FILE (.json or .html)")
    run.add_argument("-m", dest="module", metavar="MODULE", help="run a module, like python -m")
    run.add_argument("script", nargs=argparse.REMAINDER, metavar="script.py [args] [-- script args]")
    run.set_defaults(func=_cmd_run)

    status = add(
        "status",
        "memory usage, limit, pressure and top memory facts of a process",
        "Show RSS/USS/PSS/swap/peak, the effective memory limit and where it comes from, the "
        "pressure (share of the limit, PSI) and the largest memory mappings of PID (default: this "
        "hivemem process), read from /proc.",
    )
    status.add_argument("pid", nargs="?", type=int, help="process id (default: this process)")
    status.add_argument("--top", type=int, default=5, help="how many mappings to list (default: 5)")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument(
        "--children", action="store_true", help="also every descendant with RSS, PSS, USS, swap and the sums"
    )
    status.set_defaults(func=_cmd_status)

    bench = add(
        "bench",
        "run the benchmark suite (from a source checkout)",
        "Run `pytest benchmarks/`: every scenario and baseline in fresh interpreters, then the "
        "overhead benchmarks; the run is saved in benchmarks/results/runs/ and merged into "
        "benchmarks/results/latest.json (docs/benchmarks.md is generated from it by "
        "scripts/gen_benchmarks_md.py).",
    )
    bench.add_argument("scenario", nargs="*", help="only these scenarios (default: all)")
    bench.add_argument("--quick", action="store_true", help="scenarios and baselines only, no overhead runs")
    bench.add_argument("--repeat", type=int, default=1, help="runs per baseline; the best is kept")
    bench.add_argument("--out", metavar="FILE", help="results JSON (default: benchmarks/results/)")
    bench.set_defaults(func=_cmd_bench)

    report = add(
        "report",
        "show a saved report (run, optimize or benchmark JSON) as a table or HTML",
        "Render a JSON report saved by `hivemem run --report x.json`, by OptimizationReport.to_json() "
        "or by `hivemem bench`, as a terminal table or, with --html, an HTML page.",
    )
    report.add_argument("file", metavar="FILE.json")
    report.add_argument("--html", metavar="OUT.html", help="write HTML here instead of printing a table")
    report.set_defaults(func=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see ``EXIT_CODES``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return func(args)
    except CliError as exc:
        print(f"hivemem {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"hivemem {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`hivemem status | head`): stop quietly, as cat and ls do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
