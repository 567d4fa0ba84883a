"""The ``hivemem`` command line: commands, exit codes, one-line errors, reports, the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hivemem
from hivemem._cli.main import EXIT_CODES, main
from hivemem.testing import FakeReader

from .conftest import SRC, linux_only, run_python


def hivemem_cli(*args: str, cwd: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hivemem ARGS`` in a fresh interpreter."""
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "hivemem", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


def test_help_lists_every_command_and_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    """--help names the five commands and documents every exit code."""
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "run", "status", "bench", "report"):
        assert f"    {command}" in out
    for code in EXIT_CODES:
        assert f"  {code} " in out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A bare ``hivemem`` prints the help and exits with the usage status."""
    assert main([]) == 2
    assert "usage: hivemem" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["demo", "--size", "5xB"], "invalid size '5xB'"),
        (["demo", "--target=-3MB"], "invalid size '-3MB'"),
        (["demo", "--size", "100"], "too small"),
        (["run", "no/such/script.py"], "no such script: 'no/such/script.py'"),
        (["run"], "give a script to run"),
        (["run", "--target", "lots", "x.py"], "invalid size 'lots'"),
        (["report", "missing.json"], "no such file: 'missing.json'"),
        (["status", "999999999"], "no process with pid 999999999"),
        (["status", "notapid"], "invalid int value"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args: list[str], needle: str, tmp_path: Path) -> None:
    """Bad input gives exactly one line on stderr, exit status 2 and never a traceback."""
    proc = hivemem_cli(*args, cwd=str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr


def test_version_flag() -> None:
    """``python -m hivemem --version`` prints the package version."""
    proc = hivemem_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"hivemem {hivemem.__version__}"


def test_cli_import_is_light() -> None:
    """Importing the CLI loads argparse and hivemem's __init__/_cli only; commands import on use."""
    out = run_python(
        """
        import sys
        before = set(sys.modules)
        import hivemem._cli.main
        print(sorted(m for m in set(sys.modules) - before if m.startswith("hivemem")))
        """
    )
    assert out.strip() == "['hivemem', 'hivemem._cli', 'hivemem._cli.main', 'hivemem._errors']"


# --------------------------------------------------------------------------- run


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "script.py"
    path.write_text(body)
    return str(path)


def test_run_executes_script_as_main_with_args_and_writes_json(tmp_path: Path) -> None:
    """The script runs as __main__ with its own argv, its exit status passes through, the JSON is written."""
    script = _script(
        tmp_path,
        "import sys\nassert __name__ == '__main__'\nprint('args', sys.argv[1:])\n"
        "data = bytearray(30 * 2**20)\nsys.exit(int(sys.argv[2]))\n",
    )
    out = tmp_path / "r.json"
    proc = hivemem_cli("run", "--report", str(out), script, "--flag", "7")
    assert proc.returncode == 7, proc.stderr
    assert "args ['--flag', '7']" in proc.stdout
    report = json.loads(out.read_text())
    assert report["kind"] == "hivemem-run"
    assert report["exit_status"] == 7
    assert report["argv"] == ["--flag", "7"]
    # the exact peak (VmHWM reset at start) saw the 30 MiB bytearray; tolerance: interpreter noise
    assert report["peak"] >= report["start"]["rss"] + 29 * 2**20
    assert report["options"] == {"govern": False, "profile": False, "interval": None}
    assert "profile" not in report and "governor" not in report


@linux_only
def test_status_into_a_closed_pipe_is_quiet() -> None:
    """``hivemem status | head -1`` ends without a BrokenPipeError traceback."""
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        f"{sys.executable} -m hivemem status --top 50 | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.stdout.startswith("process")
    assert "Traceback" not in proc.stderr


def test_run_script_exception_exits_1_with_the_scripts_traceback(tmp_path: Path) -> None:
    """A script that raises prints its own traceback (as python would) and the run exits 1."""
    script = _script(tmp_path, "raise RuntimeError('boom')\n")
    proc = hivemem_cli("run", script)
    assert proc.returncode == 1
    assert "RuntimeError: boom" in proc.stderr
    assert "the script raised RuntimeError: boom" in proc.stderr


def test_run_with_target_records_a_final_optimize_and_html(tmp_path: Path) -> None:
    """--target alone runs one measured optimize() at exit; an .html report is a page with its table."""
    script = _script(tmp_path, "x = [bytes(2000) for _ in range(1000)]\n")
    out = tmp_path / "r.html"
    proc = hivemem_cli("run", "--target", "1GB", "--report", str(out), script)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert page.lower().startswith("<!doctype html>")
    assert "target 1.0 GiB: reached" in page


def test_run_module_mode(tmp_path: Path) -> None:
    """``hivemem run -m module`` runs a module as __main__, like ``python -m``."""
    (tmp_path / "mymod.py").write_text("print('module ran', __name__)\n")
    env_cwd = str(tmp_path)
    proc = hivemem_cli("run", "-m", "mymod", cwd=env_cwd)
    assert proc.returncode == 0, proc.stderr
    assert "module ran __main__" in proc.stdout


def test_run_report_needs_json_or_html(tmp_path: Path) -> None:
    """--report with another extension is a usage error, before the script runs."""
    script = _script(tmp_path, "open('ran', 'w').close()\n")
    proc = hivemem_cli("run", "--report", str(tmp_path / "r.txt"), script, cwd=str(tmp_path))
    assert proc.returncode == 2
    assert "expected a file name ending in .json or .html" in proc.stderr
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(("flag", "name"), [("--govern", "govern"), ("--profile", "Profiler")])
def test_run_govern_and_profile_are_used_or_refused_plainly(flag: str, name: str, tmp_path: Path) -> None:
    """--govern/--profile use hivemem.govern/Profiler when present; otherwise exit 3 and say why."""
    script = _script(tmp_path, "x = list(range(1000))\n")
    out = tmp_path / "r.json"
    proc = hivemem_cli("run", flag, "--target", "2GB", "--report", str(out), script)
    if name in hivemem._LAZY:
        assert proc.returncode == 0, proc.stderr
        key = "governor" if name == "govern" else "profile"
        assert key in json.loads(out.read_text())
    else:
        assert proc.returncode == 3
        assert f"needs hivemem.{name}" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_run_profile_html_is_the_profilers_page(tmp_path: Path) -> None:
    """--profile with an .html report writes the profiler's page; the run summary goes to stderr."""
    if "Profiler" not in hivemem._LAZY:
        pytest.skip("this build has no hivemem.Profiler")
    script = _script(tmp_path, "x = [bytes(3000) for _ in range(5000)]\n")
    out = tmp_path / "p.html"
    proc = hivemem_cli("run", "--profile", "--report", str(out), script)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().lstrip().lower().startswith("<!doctype html")
    assert "hivemem run " in proc.stderr and "peak" in proc.stderr


@pytest.mark.parametrize("shape", ["early_small_blocks", "late_big_brief", "thread_dicts", "in_a_module"])
def test_run_profile_lists_the_scripts_own_line_at_the_peak(shape: str, tmp_path: Path) -> None:
    """--profile lists the script's allocating line first: sites at the peak, not after the frees."""
    from .peak_workloads import write

    script, line = write(shape, str(tmp_path), 48)
    out = tmp_path / "r.json"
    proc = hivemem_cli("run", "--profile", "--report", str(out), script, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    profile = json.loads(out.read_text())["profile"]
    first = profile["top"]["rows"][0]
    assert first["where"] == line, profile["top"]["rows"][:3]
    # the kept snapshot holds at least half of the largest traced memory sampled (a loaded machine
    # samples less often), unless the snapshots' CPU budget ran out first: then the report says so
    sampled = max(profile["timeline"]["traced"])
    skipped = profile["peak"]["sites_skipped"] or ""
    assert profile["peak"]["sites_traced"] >= 0.45 * sampled or "CPU budget" in skipped, (sampled, skipped)
    assert first["size"] >= 8 * 2**20
    assert profile["top"]["label"] == profile["peak"]["sites"] == "peak"
    # the terminal summary lists the same line first (it prints to stderr only without --report)
    proc = hivemem_cli("run", "--profile", script, cwd=str(tmp_path))
    sites = proc.stderr.split("top allocation sites in snapshot", 1)[1].splitlines()
    assert sites[1].endswith(f"  {line}"), proc.stderr


def test_options_after_the_script_are_hivemems_and_said_so(tmp_path: Path) -> None:
    """The README's form works: run job.py --govern --report out.html governs, writes the page, says so."""
    import re
    import time

    script = _script(tmp_path, "import sys\nprint('argv', sys.argv[1:])\nx = bytearray(5 * 2**20)\n")
    before = time.time()
    proc = hivemem_cli("run", script, "--govern", "--report", "out.html", cwd=str(tmp_path))
    after = time.time()
    assert proc.returncode == 0, proc.stderr
    assert "argv []" in proc.stdout
    assert "--govern, --report out.html after the script are hivemem's" in proc.stderr
    assert "report written to out.html" in proc.stderr
    page = (tmp_path / "out.html").read_text()
    assert "<h2>Governor events</h2>" in page and "{'time'" not in page and "'kind'" not in page
    times = re.findall(r"<td>(\d\d:\d\d:\d\d\.\d{3})</td>", page)
    assert len(times) >= 2  # the governor's start and stop events, as wall-clock times
    for text in times:
        hms = time.strftime("%H:%M:%S", time.localtime(before))
        end = time.strftime("%H:%M:%S", time.localtime(after + 1))
        assert hms <= text[:8] <= end or end < hms  # (a run across midnight wraps)
    assert re.search(r"<h1>[^<]*</h1><p class='hivemem-summary good' role='status'>", page)


@pytest.mark.parametrize(
    ("args", "argv"),
    [
        (["{script}", "--", "--govern", "--report", "x.html"], ["--govern", "--report", "x.html"]),
        (["--", "{script}", "--day", "1"], ["--day", "1"]),
        (["{script}", "--day", "1", "--", "--", "--target"], ["--day", "1", "--", "--target"]),
        (["{script}", "--verbose", "-m", "x"], ["--verbose", "-m", "x"]),
    ],
)
def test_everything_after_double_dash_is_the_scripts(
    args: list[str], argv: list[str], tmp_path: Path
) -> None:
    """After a bare --, hivemem's option names go to the script; other unknown options always do."""
    script = _script(tmp_path, "import sys, json\nprint(json.dumps(sys.argv[1:]))\n")
    proc = hivemem_cli("run", *[a.format(script=script) for a in args], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == argv
    assert "after the script are hivemem's" not in proc.stderr
    assert not list(tmp_path.glob("*.html")) and "governor" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["{script}", "--target"], "--target after the script needs a value"),
        (["--govern", "{script}", "--govern"], "--govern is given twice"),
        (["{script}", "--report=r.txt"], "expected a file name ending in .json or .html"),
        (["{script}", "--interval", "inf"], "--interval=inf: expected a number of seconds > 0"),
        (["{script}", "--interval", "0"], "--interval=0.0: expected a number of seconds > 0"),
        (["{script}", "--target=lots"], "invalid size 'lots'"),
    ],
)
def test_bad_options_after_the_script_fail_loudly(args: list[str], needle: str, tmp_path: Path) -> None:
    """A bad hivemem option after the script is a one-line usage error (exit 2); the script never runs."""
    script = _script(tmp_path, "open('ran', 'w').close()\n")
    proc = hivemem_cli("run", *[a.format(script=script) for a in args], cwd=str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert not (tmp_path / "ran").exists()


# --------------------------------------------------------------------------- status


@linux_only
def test_status_of_this_process_shows_usage_limit_pressure_and_mappings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``status`` shows usage, the limit with its source, the pressure share and the largest mappings."""
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"process {os.getpid()} ")
    for needle in ("usage   rss=", "limit   ", "pressure ", "largest mappings", "python  "):
        assert needle in out


@linux_only
def test_status_lists_the_rlimits_it_mentions() -> None:
    """status PID lists the process's own RLIMIT_AS/RSS/DATA, soft and hard, in the table and JSON."""
    code = (
        "import resource, time; resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, resource.RLIM_INFINITY)); "
        "time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        import time

        time.sleep(0.5)
        table = hivemem_cli("status", str(child.pid))
        data = hivemem_cli("status", str(child.pid), "--json")
    finally:
        child.kill()
        child.wait()
    assert table.returncode == 0, table.stderr
    assert "its own rlimits are listed below" in table.stdout
    assert (
        "rlimits RLIMIT_AS soft=3.0 GiB hard=unlimited  RLIMIT_RSS soft=unlimited hard=unlimited"
        in table.stdout
    )
    rlimits = json.loads(data.stdout)["limit"]["rlimits"]
    assert rlimits["RLIMIT_AS"] == {"soft": 3 * 2**30, "hard": None}
    assert set(rlimits) == {"RLIMIT_AS", "RLIMIT_RSS", "RLIMIT_DATA"}


def test_cli_errors_are_in_hivemems_tree() -> None:
    """The errors the CLI's modules raise are hivemem errors, catchable as InvalidArgument or Unavailable."""
    from hivemem._cli import report as _clireport
    from hivemem._cli import runner as _runner
    from hivemem._cli import status as _status

    assert issubclass(_status.NoSuchProcess, hivemem.InvalidArgument)
    assert issubclass(_status.NotAvailable, hivemem.Unavailable)
    assert issubclass(_runner.NotAvailable, hivemem.Unavailable)
    assert issubclass(_clireport.UnknownReport, hivemem.InvalidArgument)
    with pytest.raises(hivemem.InvalidArgument, match="no process with pid"):
        _status.collect(999_999_999)
    with pytest.raises(hivemem.InvalidArgument, match="--top=-1"):
        _status.collect(os.getpid(), top=-1)
    with pytest.raises(hivemem.InvalidArgument, match="not a hivemem report"):
        _clireport.render_text({"some": "thing"})
    with pytest.raises(hivemem.InvalidArgument, match="--interval=inf"):
        _runner.prepare(interval=float("inf"))


@linux_only
def test_status_json_of_another_process() -> None:
    """``status PID --json`` reads another process's /proc and reports its RSS."""
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(40 * 2**20); time.sleep(30)"])
    try:
        import time

        time.sleep(0.5)
        proc = hivemem_cli("status", str(child.pid), "--json", "--top", "3")
    finally:
        child.kill()
        child.wait()
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["pid"] == child.pid
    assert info["usage"]["rss"] >= 40 * 2**20  # the bytearray is touched: all of it is resident
    assert len(info["mappings"]) <= 3


# --------------------------------------------------------------------------- report


def _optimize_json(tmp_path: Path) -> Path:
    reader = FakeReader(rss="500MB")
    registry = hivemem.Registry(builtins=False, entry_points=False)
    report = hivemem.MemoryGovernor(registry=registry, reader=reader).optimize(target="100MB")
    path = tmp_path / "opt.json"
    path.write_text(report.to_json())
    return path


def test_report_renders_saved_optimize_report_as_table_and_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``report FILE.json`` prints the headline; ``--html`` writes a page with the same headline."""
    path = _optimize_json(tmp_path)
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("hivemem optimize: RSS 500.0 MiB -> 500.0 MiB (target 100.0 MiB: NOT reached)")
    html = tmp_path / "o.html"
    assert main(["report", str(path), "--html", str(html)]) == 0
    assert "target 100.0 MiB: NOT reached" in html.read_text()


@pytest.mark.parametrize("content", ["not json", '{"some": "thing"}', "[1, 2]"])
def test_report_rejects_what_is_not_a_report(content: str, tmp_path: Path) -> None:
    """Files that are not hivemem reports give a one-line error and exit 2."""
    path = tmp_path / "x.json"
    path.write_text(content)
    proc = hivemem_cli("report", str(path))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_report_renders_benchmark_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A benchmark results file renders one row per scenario and baseline, with reclaim and answers."""
    data = {
        "kind": "hivemem-bench",
        "machine": {"date": "2024-01-01", "python": "3.11.7", "platform": "Linux"},
        "scenarios": [
            {
                "scenario": "demo",
                "floor": 50 * 2**20,
                "baselines": {
                    "optimize": {
                        "before": 150 * 2**20,
                        "after": 60 * 2**20,
                        "reclaim": 0.9,
                        "seconds": 0.5,
                        "checksum_ok": True,
                    }
                },
            }
        ],
    }
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "demo      optimize  150.0 MiB  60.0 MiB  50.0 MiB     0.90" in out
    assert out.rstrip().endswith("ok")


# --------------------------------------------------------------------------- bench


def test_bench_outside_a_checkout_is_unavailable(tmp_path: Path) -> None:
    """An installed copy without benchmarks/ exits 3 ("feature unavailable") with one line naming the fix."""
    import shutil

    site = tmp_path / "site"
    shutil.copytree(os.path.join(SRC, "hivemem"), site / "hivemem")
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-m", "hivemem", "bench", "--quick"],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "feature unavailable" in lines[0] and "source checkout" in lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--quick", "no_such_scenario"], "no such scenario 'no_such_scenario': expected one of"),
        (["caches", "nope"], "no such scenario 'nope'"),
        (["--repeat", "0"], "--repeat 0: expected 1 or more"),
    ],
)
def test_bench_usage_errors_exit_2_before_running(args: list[str], needle: str) -> None:
    """An unknown scenario or a bad --repeat is a usage error (2), found before pytest starts."""
    proc = hivemem_cli("bench", *args, cwd=os.path.dirname(SRC))
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- the demo app


def test_demo_app_answers_survive_cache_clearing_and_rebuilding() -> None:
    """The app's answers depend on its data, not on identities or cache contents; floor answers match."""
    import pickle

    from hivemem._cli.demo import answers, build_app, build_floor

    app = build_app(4 * 2**20)
    expected = answers(app)
    assert answers(build_floor(4 * 2**20)) == expected
    app.cache.clear()
    app.page.cache_clear()  # type: ignore[attr-defined]
    for container in (app.events, app.rows, app.buffers):
        container[:] = pickle.loads(pickle.dumps(container))  # type: ignore[index]
    assert answers(app) == expected
    assert len(app.events) == app.n_events // 50 + (app.n_events % 50 > 0)


def test_demo_small_runs_end_to_end() -> None:
    """``demo --small`` builds, optimizes, verifies the checksum, says whether the target was reached."""
    proc = hivemem_cli("demo", "--small", timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "results checksum identical" in out
    assert ("REACHED" in out) != ("NOT reached:" in out)
    assert "running hivemem.optimize(target_mb=" in out
    assert "demo finished in" in out
