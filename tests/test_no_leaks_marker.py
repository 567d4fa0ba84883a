"""The no_leaks marker through pytester: what pytest itself keeps is not the test's leak; options; screen."""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]

QUIET = ("-p", "no:memray", "-p", "no:hypothesispytest", "-p", "no:cacheprovider")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # In a subprocess: an in-process session would also log into the outer session's capture.
    return pytester.runpytest_subprocess(*QUIET, *args)


LOOKALIKES = """
import inspect
import logging
import sys
import traceback
import unittest
import warnings

import pytest

log = logging.getLogger("app")


@pytest.mark.no_leaks
def test_warns_deprecation_every_call():
    warnings.warn("old api", DeprecationWarning, stacklevel=2)


@pytest.mark.no_leaks
def test_warns_user_warning():
    warnings.warn("careful", UserWarning)


@pytest.mark.no_leaks
def test_logs_a_warning_every_call():
    log.warning("something happened: %d", 42)


@pytest.mark.no_leaks
def test_caplog_sees_one_run(caplog):
    log.error("boom")
    assert [r.getMessage() for r in caplog.records] == ["boom"]


@pytest.mark.no_leaks
def test_inspects_the_stack():
    assert sys._getframe(1) is not None
    assert len(inspect.stack(0)) > 3
    assert traceback.extract_stack()


@pytest.mark.no_leaks
def test_formats_exceptions():
    try:
        {}["missing"]
    except KeyError:
        log.exception("caught")


@pytest.mark.no_leaks
def test_subtests_fixture(subtests):
    for i in range(3):
        with subtests.test(msg="each", i=i, obj=object()):  # a parameter whose text differs every call
            assert i < 5


class TestUnittest(unittest.TestCase):
    @pytest.mark.no_leaks
    def test_subtest(self):
        for i in range(3):
            with self.subTest(i=i, it=iter(range(i))):  # a parameter whose text differs every call
                self.assertLess(i, 5)
"""


def test_what_pytest_keeps_is_not_the_tests_leak(pytester: pytest.Pytester) -> None:
    """Warnings, log records, caplog, stack inspection and subtests pass; each warning is listed once."""
    pytester.makepyfile(test_lookalikes=LOOKALIKES)
    result = run(pytester, "-v", "-W", "default")
    result.assert_outcomes(passed=8)
    text = result.stdout.str()
    assert text.count("DeprecationWarning: old api") == 1
    assert text.count("UserWarning: careful") == 1
    result.stdout.fnmatch_lines(["*6 subtests passed*"])  # 3 + 3, not 7 times as many


def test_types_false_and_the_report_summary(pytester: pytest.Pytester) -> None:
    """types=False leaves the growing types out; the report JSON carries how each check was made."""
    pytester.makepyfile(
        test_report="""
import pytest

_kept = []


@pytest.mark.no_leaks(types=False, warmup=1, repeat=3)
def test_leaks_without_types():
    _kept.append(bytes(1000))


@pytest.mark.no_leaks
def test_clean():
    assert sum(range(100)) == 4950
"""
    )
    result = run(pytester, "--hivemem-report=report.json")
    result.assert_outcomes(passed=1, failed=1)
    assert "growing types" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*the test body leaks: memory grew on every one of 3 measured runs*"])
    tests = {
        t["nodeid"].split("::")[1]: t
        for t in json.loads((pytester.path / "report.json").read_text())["tests"]
    }
    leak = tests["test_leaks_without_types"]["leak"]
    assert leak["leaking"] is True and leak["method"] == "tracemalloc"
    assert all(run >= 1000 for run in leak["per_run"])
    clean = tests["test_clean"]["leak"]
    assert clean["leaking"] is False
    assert clean["method"] in ("screen", "tracemalloc")  # the screen needs glibc's mallinfo2


def test_bad_marker_arguments_are_setup_errors(pytester: pytest.Pytester) -> None:
    """Absurd marker arguments are setup errors naming the value, and the bodies never run."""
    pytester.makepyfile(
        test_bad="""
import pytest

RAN = []


@pytest.mark.no_leaks(repeat=1)
def test_repeat():
    RAN.append(1)


@pytest.mark.no_leaks(warmup=10**30)
def test_warmup():
    RAN.append(1)


@pytest.mark.no_leaks(types="yes")
def test_types():
    RAN.append(1)


@pytest.mark.no_leaks(tolerance="lots")
def test_tolerance():
    RAN.append(1)


def test_bodies_never_ran():
    assert RAN == []
"""
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=4)
    result.stdout.fnmatch_lines_random(
        [
            "*no_leaks: repeat=1: expected a whole number between 2 and 1,000*",
            "*no_leaks: warmup=1000000000000000000000000000000: expected a whole number between 0 and 1,000*",
            "*no_leaks: types='yes': expected True or False*",
            "*invalid size 'lots'*",
        ]
    )
