"""hivemem's pytest plugin: memory ceilings and leak checks (registered through the ``pytest11`` entry point).

Loading this module costs next to nothing: it registers two markers, three
options, two ini keys and two fixtures, and imports nothing but pytest. The
machinery (``hivemem._pytest.runner``) is imported and registered only when
something asks for it:

* ``--memory-limit``/``memory_limit``, ``--hivemem-report`` or
  ``--hivemem-top`` is given (then every test is measured), or
* a collected test carries ``memory_limit`` or ``no_leaks`` or uses the
  ``memory`` fixture (then only those tests are measured).

Otherwise no test is measured and no per-test hook runs. Markers are read at
collection time; a marker added while tests run (``request.node.add_marker``)
is honoured only in sessions where the runner is already active.

See ``docs/pytest.md``.
"""

from __future__ import annotations

import pytest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from hivemem._pytest.ceiling import Ceiling, MemoryMeter

__all__ = ["MARKERS"]

# One table drives marker registration and the `pytest --markers` help.
MARKERS: dict[str, tuple[str, str]] = {
    "memory_limit": (
        "memory_limit(limit, *, kind='rss', include_fixtures=False)",
        "fail the test when the peak memory of its body rises more than `limit` "
        "(a size such as '50 MiB') above the start; kind='rss' is the whole process's "
        "peak RSS (kernel high-water mark), kind='python' the tracemalloc peak with the "
        "top allocation sites on failure; a test passes when peak <= limit. hivemem",
    ),
    "no_leaks": (
        "no_leaks(*, warmup=2, repeat=5, tolerance=32, types=True)",
        "run the test body warmup+repeat times (function-scoped fixtures are set up "
        "once) and fail when memory grew by more than `tolerance` bytes per call on every "
        "measured run (CPython's refleak rule); types=True names the growing object types "
        "of a leak (one more run that walks every object). hivemem",
    ),
}

ACTIVE = pytest.StashKey[bool]()


class Options:
    """The three options, each read and checked once, here; the runner is built from them.

    ``limit``   default ceiling in bytes (``--memory-limit``/``memory_limit``), ``None`` when off
    ``top``     how many of the heaviest tests the terminal summary lists (0: none)
    ``report``  the ``--hivemem-report`` path as given, or ``None``
    """

    __slots__ = ("limit", "report", "top")

    def __init__(self, limit: int | None, top: int, report: str | None) -> None:
        self.limit = limit
        self.top = top
        self.report = report

    @property
    def every_test(self) -> bool:
        """Whether every test is measured (a default limit, a report or a summary asks for it)."""
        return bool(self.limit is not None or self.report or self.top)

    @classmethod
    def read(cls, config: pytest.Config) -> Options:
        """Read and check the options; a bad value is a ``pytest.UsageError``.

        ``hivemem._sizes`` is imported only when a limit is given, so an
        unused plugin still loads nothing but this module.
        """
        raw = str(config.getoption("memory_limit") or config.getini("memory_limit") or "").strip()
        limit = None
        if raw.lower() not in ("", "none"):
            from hivemem._sizes import parse_size

            try:
                limit = parse_size(raw)
            except ValueError as exc:
                raise pytest.UsageError(f"--memory-limit / memory_limit: {exc}") from None
            if limit == 0:
                raise pytest.UsageError(
                    f"--memory-limit / memory_limit: {raw!r} is a limit of 0 bytes, which every test whose "
                    "memory rises at all would fail; use 'none' to switch the default limit off"
                )
        top: int | None = config.getoption("hivemem_top")
        if top is None:
            ini = config.getini("hivemem_top")
            try:
                top = int(str(ini).strip() or 0)
            except ValueError:
                raise pytest.UsageError(f"hivemem_top must be a whole number, got {ini!r}") from None
        if top < 0:
            raise pytest.UsageError(f"--hivemem-top must be >= 0, got {top}")
        report: str | None = config.getoption("hivemem_report") or None
        return cls(limit, top, report)


OPTIONS = pytest.StashKey[Options]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hivemem", "hivemem memory ceilings and leak checks")
    group.addoption(
        "--memory-limit",
        metavar="SIZE",
        default=None,
        help="default ceiling for every test without a memory_limit marker: peak RSS of the "
        "test body above its start (e.g. '200 MiB'; ini: memory_limit). Use 'none' to disable "
        "(a limit of 0 is refused).",
    )
    group.addoption(
        "--hivemem-report",
        metavar="PATH",
        default=None,
        help="measure every test and write a report of peak, duration, limit and outcome per "
        "test: HTML when PATH ends in .html/.htm, JSON otherwise.",
    )
    group.addoption(
        "--hivemem-top",
        metavar="N",
        type=int,
        default=None,
        help="measure every test and list the N heaviest under a 'hivemem' section of the "
        "terminal summary (ini: hivemem_top; default 0: no section).",
    )
    parser.addini(
        "memory_limit", "default memory ceiling for tests without a memory_limit marker", default=""
    )
    parser.addini("hivemem_top", "list the N heaviest tests in the terminal summary (0: off)", default="0")


def pytest_configure(config: pytest.Config) -> None:
    for signature, help_text in MARKERS.values():
        config.addinivalue_line("markers", f"{signature}: {help_text}")
    config.stash[ACTIVE] = False
    _no_assertion_rewriting(config)
    options = config.stash[OPTIONS] = Options.read(config)
    if options.every_test:
        _activate(config)


def _no_assertion_rewriting(config: pytest.Config) -> None:
    """Take the ``hivemem`` package off pytest's assertion-rewriting list.

    pytest rewrites every package of a distribution that has a ``pytest11``
    entry point. hivemem is a library first: its modules raise their own
    errors and have no test asserts to rewrite, and rewriting them made the
    plugin's first measured test cost 4-10 ms more (and every hivemem import
    in a user's test session slower; see docs/design.md,
    "Assertion rewriting slows the first measured test"). The list is pytest's private state, so
    this is best effort: if it is not where expected, nothing changes.
    """
    hook = getattr(config.pluginmanager, "rewrite_hook", None)
    names = getattr(hook, "_must_rewrite", None)
    if isinstance(names, set):
        names.discard("hivemem")


def _activate(config: pytest.Config) -> None:
    if config.stash.get(ACTIVE, False):
        return
    from hivemem._pytest.runner import Runner

    config.stash[ACTIVE] = True
    config.pluginmanager.register(Runner(config, config.stash[OPTIONS]), "hivemem-runner")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash.get(ACTIVE, False):
        return
    for item in items:
        for marker in item.iter_markers():
            if marker.name in MARKERS:
                _activate(config)
                return
        if "memory" in getattr(item, "fixturenames", ()):
            _activate(config)
            return


@pytest.fixture
def memory(request: pytest.FixtureRequest) -> Iterator[MemoryMeter]:
    """A live RSS meter: ``.peak``, ``.current``, ``.reset()``, ``.usage()`` (bytes above its baseline).

    The meter is reset right before the test body, so fixture setup is not
    counted; call ``memory.reset()`` to start again anywhere in the body.
    """
    from hivemem._pytest.ceiling import MemoryMeter
    from hivemem._pytest.runner import METER

    meter = MemoryMeter("rss", label="memory fixture")
    request.node.stash[METER] = meter
    try:
        yield meter
    finally:
        del request.node.stash[METER]
        meter.stop()


@pytest.fixture
def memory_ceiling(request: pytest.FixtureRequest) -> Callable[..., Ceiling]:
    """``with memory_ceiling("20 MiB"): ...`` fails the test when the block's peak exceeds the limit.

    Several blocks per test, each with its own limit and kind; the block
    passes when its peak is ``<=`` the limit. Each block appears in
    ``--hivemem-report``.
    """
    from hivemem._pytest.runner import ceiling_factory

    return ceiling_factory(request.node)
