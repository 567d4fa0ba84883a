"""Every command-line example in README.md and docs/cli.md runs and does what its comment or output says.

The ```console blocks are parsed into examples: a synopsis line (``hivemem
demo [--size SIZE ...]``), a command with a ``# comment``, or ``$ command``
lines followed by the output they print. Each command has a check below,
keyed by its first words; an example with no check fails the coverage test,
so a new example cannot go untested. Commands run in a subprocess in a
temporary directory, with the scripts they name written there and sizes kept
small where the example allows. Printed output is compared line by line, in
order, with every number (and size unit) free and everything else literal,
so ``build.py:4`` must be ``build.py:4``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import SRC

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "docs" / "cli.md"]
BLOCK = re.compile(r"^```console\n(.*?)^```", re.S | re.M)


@dataclass
class Example:
    where: str
    commands: list[str]
    comment: str = ""
    output: list[str] = field(default_factory=list)
    synopsis: bool = False

    @property
    def key(self) -> str:
        return " ".join(self.commands[0].split()[:2])


def examples() -> list[Example]:
    out: list[Example] = []
    for page in PAGES:
        for n, m in enumerate(BLOCK.finditer(page.read_text()), 1):
            where = f"{page.relative_to(ROOT)}#console{n}"
            lines = [ln for ln in m.group(1).splitlines() if ln.strip()]
            if any(ln.startswith("$ ") for ln in lines):
                current: Example | None = None
                for ln in lines:
                    if ln.startswith("$ "):
                        cmd, _, comment = ln[2:].partition("  # ")
                        if current is not None and not current.output and not current.comment:
                            current.commands.append(cmd.strip())  # consecutive commands, one output
                            current.comment = comment.strip()
                            continue
                        current = Example(where, [cmd.strip()], comment.strip())
                        out.append(current)
                    else:
                        assert current is not None, (where, ln)
                        current.output.append(ln)
            else:
                for ln in lines:
                    cmd, _, comment = ln.partition("#")
                    out.append(Example(where, [cmd.strip()], comment.strip(), synopsis="[" in cmd))
    return out


# --------------------------------------------------------------------------- running and matching

_NUM = r"[+-]?\d[\d,]*(?:\.\d+)?"
_TOKEN = re.compile(r"\.\.\.|(?<![\w:.])[+-]?\d[\d,]*(?:\.\d+)?(?: (?:B|KiB|MiB|GiB|TiB)\b)?|\s+")


def line_pattern(expected: str) -> re.Pattern[str]:
    """*expected* as a regex: numbers and sizes free, ``...`` anything, runs of spaces any width."""
    parts, pos = [], 0
    expected = expected.strip()
    for m in _TOKEN.finditer(expected):
        parts.append(re.escape(expected[pos : m.start()]))
        tok = m.group()
        if tok == "...":
            parts.append(".*")
        elif tok.isspace():
            parts.append(r"\s+")
        elif tok.endswith("B"):
            parts.append(_NUM + r" (?:B|KiB|MiB|GiB|TiB)")
        else:
            parts.append(_NUM)
        pos = m.end()
    parts.append(re.escape(expected[pos:]))
    return re.compile("".join(parts))


def assert_output(expected: list[str], actual: str) -> None:
    """Each expected line matches a line of *actual*, in order (lines between them may differ)."""
    lines = actual.splitlines()
    i = 0
    for want in expected:
        if want.strip() == "...":
            continue
        pattern = line_pattern(want)
        while i < len(lines) and not pattern.fullmatch(lines[i].strip()):
            i += 1
        assert i < len(lines), f"no line matches {want!r} (as {pattern.pattern!r}) in:\n{actual}"
        i += 1


def run(
    command: str, cwd: Path, *, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run *command* as a user would type it: ``hivemem`` is this checkout's command line."""
    words = command.split()
    if words[0] == "hivemem":
        words = [sys.executable, "-m", "hivemem", *words[1:]]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    full_env["PYTHONPATH"] = SRC + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run(words, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)


def write(path: Path, text: str) -> None:
    path.write_text(textwrap.dedent(text).lstrip("\n"))


# --------------------------------------------------------------------------- the checks

Check = Callable[[Example, Path], None]
CHECKS: dict[str, Check] = {}


def check(*keys: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        for key in keys:
            CHECKS[key] = fn
        return fn

    return register


def make(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``make -o .venv/.installed ARGS`` in the checkout: the venv taken as it is (a test must not
    reinstall it), and no state of an outer make (this suite may itself run under `make test`)."""
    clean = {k: v for k, v in (env or os.environ).items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean,
    )


@check("make demo")
def _make_demo(ex: Example, tmp: Path) -> None:
    """make demo runs `python -m hivemem demo`, whose claims the `hivemem demo` example checks."""
    assert shutil.which("make"), "make is missing"
    proc = make("-n", "demo")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].endswith("/python -m hivemem demo")
    assert "hivemem.optimize()" in ex.comment and "90 MiB" in ex.comment


@check("make test")
def _make_test(ex: Example, tmp: Path) -> None:
    """make test arranges Xvfb, Chromium and Graphviz, then runs pytest on the whole suite (collected)."""
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("this checkout has no .venv (make .venv/.installed makes it)")
    proc = make("-n", "test")
    recipe = proc.stdout.strip().splitlines()
    assert [ln for ln in recipe if "ensure-" in ln] == [
        "./scripts/ensure-xvfb.sh",
        "./scripts/ensure-chromium.sh",
        "./scripts/ensure-graphviz.sh",
    ]
    assert recipe[-1].endswith("/python -m pytest")  # no selection: every test under testpaths
    env = {**os.environ, "PYTEST_ADDOPTS": "--collect-only -q -p no:cacheprovider"}
    proc = make("test", env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    collected = {line.split("::")[0] for line in proc.stdout.splitlines() if "::" in line}
    skipped = set(re.findall(r"SKIPPED \[\d+\] (tests/test_\w+\.py)", proc.stdout))  # importorskip
    assert collected | skipped == {f"tests/{p.name}" for p in (ROOT / "tests").glob("test_*.py")}


@check("hivemem demo")
def _demo(ex: Example, tmp: Path) -> None:
    """hivemem demo: the composite app grows to ~1.7 GiB and ends under 90 MiB, answers identical."""
    if ex.synopsis:
        _synopsis(ex, tmp)
        return
    proc = run("hivemem demo", tmp, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "results checksum identical" in proc.stdout
    m = re.search(r"target 90\.0 MiB REACHED: RSS ([\d.]+) GiB -> ([\d.]+) MiB", proc.stdout)
    assert m is not None, proc.stdout[-2000:]
    assert 1.4 <= float(m.group(1)) <= 2.0 and float(m.group(2)) <= 90.0


_JOB = """
    import argparse, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--day")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    print("job", args.day, args.verbose)
    rows = [bytes(1000) for _ in range(30_000)]  # 30 MiB, freed below
    time.sleep(0.3)
    del rows
    import csv, decimal
"""


@check("hivemem run")
def _run(ex: Example, tmp: Path) -> None:
    """Each hivemem run example: its script written small, its comment's or output's claims checked."""
    if ex.synopsis:
        _synopsis(ex, tmp)
        return
    command = ex.commands[0]
    write(tmp / "job.py", _JOB)
    write(
        tmp / "etl.py",
        """
        import sys
        assert sys.argv[1:] == ["--day", "2024-01-01"], sys.argv
        rows = [bytes(800) for _ in range(100_000)]
        kept = rows[::10]
        del rows
        """,
    )
    write(
        tmp / "build.py",
        """
        # build.py: names, then one big buffer held for milliseconds
        import csv, decimal, email.mime.text
        names = {i: str(i) for i in range(30_000)}
        buf = bytearray(32 * 2**20)
        for i in range(0, len(buf), 4096):
            buf[i] = 1
        del buf
        """,
    )
    procs = [run(cmd, tmp) for cmd in ex.commands]
    for proc in procs:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    printed = "\n".join(p.stdout + p.stderr for p in procs)
    if ex.output:
        assert_output(ex.output, printed)
    if "job.py" in command:
        # the documented rule: hivemem's options are taken before a bare --, the rest is the script's
        words, script_args = command.split("job.py", 1)[1].split(), []
        while words:
            word = words.pop(0)
            if word == "--":
                script_args += words
                break
            if word in ("--report", "--target", "--interval"):
                words.pop(0)
            elif word not in ("--govern", "--profile"):
                script_args.append(word)
        day = script_args[script_args.index("--day") + 1] if "--day" in script_args else None
        assert f"job {day} {'--verbose' in script_args}" in printed  # exactly its own arguments
    if "--govern" in command and "--report" in command:
        # "governed; the page lists the governor's events", "governed, out.html written"
        page = (tmp / "out.html").read_text()
        assert "Governor events" in page and re.search(
            r"<td>\d\d:\d\d:\d\d\.\d{3}</td>.*?<td>start</td>", page
        )
        assert "report written to out.html" in printed
    if "--profile" in command and "job.py" in command:
        # "the allocation sites at the peak, not after the frees": job.py's line 7 is first
        sites = printed.split("top allocation sites in snapshot 'peak'", 1)[1].splitlines()
        assert sites[1].rstrip().endswith(" job.py:7"), printed
    if "--report run.json" in command:
        report = json.loads((tmp / "run.json").read_text())
        assert report["argv"] == ["--day", "2024-01-01"] and report["optimize"]["reached"]


@check("hivemem report")
def _report(ex: Example, tmp: Path) -> None:
    """The report synopsis matches the parser."""
    _synopsis(ex, tmp)


@check("hivemem bench")
def _bench(ex: Example, tmp: Path) -> None:
    """The bench synopsis matches the parser."""
    _synopsis(ex, tmp)


@check("hivemem status")
def _status(ex: Example, tmp: Path) -> None:
    """status PID (--children): a real process, and its table as the example shows it."""
    if ex.synopsis:
        _synopsis(ex, tmp)
        return
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    # a worker named python3 with a 3 GiB RLIMIT_AS and its memory on the malloc heap, as shown
    os.symlink(sys.executable, tmp / "python3")
    write(
        tmp / "worker.py",
        """
        import resource, subprocess, sys, time
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, resource.RLIM_INFINITY))
        rows = [bytes(1000) for _ in range(40_000)]
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print("ready", child.pid, flush=True)
        time.sleep(60)
        """,
    )
    worker = subprocess.Popen(
        ["python3", "worker.py"], executable=str(tmp / "python3"), cwd=tmp, stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None
        child_pid = worker.stdout.readline().split()[1]
        example_pid = next(w for w in ex.commands[0].split() if w.isdigit())
        proc = run(ex.commands[0].replace(example_pid, str(worker.pid)), tmp)
    finally:
        worker.kill()
        worker.communicate()  # reaps it and closes its pipe
    assert proc.returncode == 0, proc.stderr
    if ex.output:
        expected = [
            ln.replace("from physical RAM", "from ...") for ln in ex.output
        ]  # the limit's source varies
        assert_output(expected, proc.stdout)
    if "--children" in ex.commands[0]:
        # "RSS, PSS, USS and swap of a process tree": the worker and its child, with the sums
        assert re.search(r"pid\s+rss\s+pss\s+uss\s+swap", proc.stdout)
        assert f"{worker.pid} " in proc.stdout and f"{child_pid} " in proc.stdout
        assert re.search(r"total\s.*2 processes", proc.stdout)


def _synopsis(ex: Example, tmp: Path) -> None:
    """Every option a synopsis line names is one `hivemem COMMAND --help` lists."""
    command = ex.commands[0].split()[1]
    proc = run(f"hivemem {command} --help", tmp)
    assert proc.returncode == 0, proc.stderr
    for option in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", ex.commands[0]):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", proc.stdout), (option, proc.stdout)


# --------------------------------------------------------------------------- the tests

ALL = examples()


def test_every_example_has_a_check() -> None:
    """The pages hold CLI examples, and each command has a check here (a new example must get one)."""
    assert len(ALL) >= 10
    missing = sorted({f"{ex.where}: {ex.key}" for ex in ALL if ex.key not in CHECKS})
    assert not missing, missing
    for ex in ALL:
        assert ex.synopsis or ex.comment or ex.output or len(ex.commands) > 1 or ex.key == "hivemem run", ex


def test_output_patterns_free_numbers_only() -> None:
    """The output matcher frees numbers and sizes, keeps file:line and words literal."""
    pattern = line_pattern("     100.0 MiB          3 blocks  build.py:4")
    assert pattern.fullmatch("6.5 KiB  12,345 blocks  build.py:4")
    assert not pattern.fullmatch("6.5 KiB  12,345 blocks  build.py:5")
    assert line_pattern("process 4242 (python3): python3 worker.py").fullmatch(
        "process 17 (python3): python3 worker.py"
    )
    assert not line_pattern("limit   23.5 GiB from physical RAM").fullmatch("limit 2.0 GiB from cgroup v2")
    with pytest.raises(AssertionError, match="no line matches"):
        assert_output(["a 1", "b 2"], "b 2\na 1")


@pytest.mark.parametrize("ex", ALL, ids=[f"{ex.where}:{ex.commands[0][:60]}" for ex in ALL])
def test_cli_example(ex: Example, tmp_path: Path) -> None:
    """The example runs and does what its comment or printed output says."""
    CHECKS[ex.key](ex, tmp_path)
