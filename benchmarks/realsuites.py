"""Real third-party test suites for the benchmarks: fetched from the package registry, cached, run.

The pytest-plugin and leak-check figures are taken on suites nobody on this
project wrote: pure-Python packages with many small tests, where per-test
fixed costs dominate. Their source distributions (which carry the tests) are
downloaded with pip at benchmark time into ``benchmarks/.cache/`` and
unpacked there; nothing is downloaded by the test suite.

``python benchmarks/realsuites.py`` fetches every suite and runs each once
plainly, as a check that the cache is usable.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tarfile
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache" / "suites"


@dataclasses.dataclass(frozen=True)
class Suite:
    """A pinned sdist and where its tests live inside it."""

    name: str  # the distribution on the registry
    version: str
    tests: str  # path of the tests, relative to the unpacked sdist

    @property
    def root(self) -> Path:
        """The unpacked sdist (fetched on first use)."""
        return fetch(self)

    def command(self, *pytest_args: str, python: str = sys.executable) -> list[str]:
        """A pytest command line that runs this suite from its own root, with no ini file of ours."""
        return [
            python,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--rootdir={self.root}",
            "-c",
            os.devnull,
            *pytest_args,
            str(self.root / self.tests),
        ]

    def env(self) -> dict[str, str]:
        """The environment for :meth:`command`: the sdist's root first on ``sys.path``."""
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.root)
        env.pop("PYTEST_ADDOPTS", None)
        return env


SUITES = {
    "toolz": Suite("toolz", "1.2.0", "toolz/tests"),
    "more-itertools": Suite("more-itertools", "11.2.1", "tests"),
}


def fetch(suite: Suite) -> Path:
    """Download and unpack *suite*'s sdist into the cache once; return the unpacked directory."""
    stem = f"{suite.name.replace('-', '_')}-{suite.version}"
    root = CACHE / stem
    if (root / suite.tests).exists():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    archive = CACHE / f"{stem}.tar.gz"
    if not archive.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(CACHE),
                f"{suite.name}=={suite.version}",
            ],
            check=True,
        )
    with tarfile.open(archive) as tar:
        tar.extractall(CACHE, filter="data") if sys.version_info >= (3, 12) else tar.extractall(CACHE)
    if not (root / suite.tests).exists():
        raise RuntimeError(f"{archive} has no {suite.tests}")
    return root


def main() -> int:
    for suite in SUITES.values():
        done = subprocess.run(suite.command(), env=suite.env(), cwd=suite.root, check=False)
        print(f"{suite.name} {suite.version}: pytest exit {done.returncode}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
