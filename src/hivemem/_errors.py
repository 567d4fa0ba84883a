"""hivemem's exceptions and warnings.

Every exception hivemem raises on purpose derives from :class:`HivememError`,
and most also derive from the builtin a caller would naturally catch::

    HivememError
    ├── InvalidSize(HivememError, ValueError)        a size that cannot be parsed
    ├── InvalidArgument(HivememError, ValueError)    a bad name, level, option
    ├── UnknownStrategy(HivememError, LookupError)   no strategy by that name
    ├── StrategyError(HivememError, TypeError)       not a valid Strategy / duplicate
    ├── ReentrantOptimize(HivememError, RuntimeError)  optimize() inside a strategy
    ├── Unavailable(HivememError, OSError)           feature not available here, and why
    │   └── NotAvailable                             a command-line feature missing here
    ├── CorruptedValue(HivememError, OSError)        a stored value failed its integrity check
    ├── MemoryLimitExceeded(HivememError)            carries .usage and .limit
    │   └── MemoryCeilingExceeded(.., AssertionError)  a test's peak went over its ceiling
    └── LeakDetected(HivememError, AssertionError)   assert_no_leaks / no_leaks found growth

    HivememWarning(UserWarning)
    └── PluginWarning                                a third-party strategy failed to load

A failing strategy is never raised into the application: it is recorded in
the report. These exceptions are for bad input and explicit requests only.
"""

from __future__ import annotations

__all__ = [
    "CorruptedValue",
    "HivememError",
    "HivememWarning",
    "InvalidArgument",
    "InvalidSize",
    "LeakDetected",
    "MemoryCeilingExceeded",
    "MemoryLimitExceeded",
    "NotAvailable",
    "PluginWarning",
    "ReentrantOptimize",
    "StrategyError",
    "Unavailable",
    "UnknownStrategy",
    "show",
]


# ``show`` lives here, below _sizes and _validate, because the error messages use it
# (_validate re-exports it for the argument checks).
def show(value: object, limit: int = 60) -> str:
    """``repr(value)``, shortened in the middle when longer than *limit* (``10**400`` has 401 digits)."""
    try:
        text = repr(value)
    except Exception as exc:  # a repr that raises must not hide the real error
        text = f"<{type(value).__name__} with a failing repr: {type(exc).__name__}>"
    if len(text) > limit:
        text = f"{text[: limit // 2]}...{text[-(limit // 2 - 3) :]} ({len(text):,} characters)"
    return text


class HivememError(Exception):
    """Root of every exception hivemem raises on purpose."""


class InvalidSize(HivememError, ValueError):
    """A size could not be understood; the message names the value and the accepted forms."""

    def __init__(self, value: object, reason: str = "") -> None:
        self.value = value
        self.reason = reason
        accepted = (
            "expected a non-negative number of bytes, or a string such as '90MB', "
            "'90 MiB' or '1.5GB' (units B, KB/KiB, MB/MiB, GB/GiB, TB/TiB; binary: "
            "1 MB = 2**20 bytes)"
        )
        detail = f" ({reason})" if reason else ""
        super().__init__(f"invalid size {show(value)}{detail}: {accepted}")


class InvalidArgument(HivememError, ValueError):
    """An argument other than a size has a bad value; the message names it."""


class UnknownStrategy(HivememError, LookupError):
    """No strategy is registered under the given name."""

    def __init__(self, name: object, known: list[str]) -> None:
        self.name = name
        self.known = list(known)
        choices = ", ".join(self.known) or "none registered"
        super().__init__(f"unknown strategy {name!r}: expected one of {choices}")

    def __str__(self) -> str:  # LookupError would otherwise quote the message
        return str(self.args[0])


class StrategyError(HivememError, TypeError):
    """An object is not a valid Strategy, or its name is already taken."""


class ReentrantOptimize(HivememError, RuntimeError):
    """optimize() was called from inside a running strategy."""


class Unavailable(HivememError, OSError):
    """A feature is not available on this platform or in this process; the message says why."""


class NotAvailable(Unavailable):
    """A command-line feature is missing from this build or platform (an :class:`Unavailable`).

    The one class ``hivemem run`` and ``hivemem status`` raise for it; the
    command line turns it into the "unavailable" exit status.
    """


class CorruptedValue(HivememError, OSError):
    """A SpillStore or CompressedStore value cannot be read back intact (checksum, size, missing file).

    ``key`` is the store's key, ``path`` the spill file (``None`` for a value
    held in memory), ``reason`` what was found. The store never returns the
    damaged data.
    """

    def __init__(
        self, message: str, *, key: object = None, path: str | None = None, reason: str = ""
    ) -> None:
        super().__init__(message)
        self.key = key
        self.path = path
        self.reason = reason or message

    def __str__(self) -> str:  # OSError would format its own fields
        return str(self.args[0]) if self.args else ""


class MemoryLimitExceeded(HivememError):
    """Memory stayed above a limit that hivemem was asked to enforce.

    ``usage`` is the :class:`hivemem.MemoryUsage` (or RSS in bytes) measured at
    the time, ``limit`` the limit in bytes.
    """

    def __init__(self, message: str, *, usage: object = None, limit: int | None = None) -> None:
        super().__init__(message)
        self.usage = usage
        self.limit = limit


class MemoryCeilingExceeded(MemoryLimitExceeded, AssertionError):
    """A measured peak went over a test's ceiling (``hivemem.testing``, the pytest plugin).

    ``usage`` is the peak in bytes above the start, ``limit`` the ceiling in
    bytes, ``measurement`` the full ``hivemem.testing.PeakMeasurement``.
    """

    def __init__(
        self, message: str, *, usage: int | None = None, limit: int | None = None, measurement: object = None
    ) -> None:
        super().__init__(message, usage=usage, limit=limit)
        self.measurement = measurement


class LeakDetected(HivememError, AssertionError):
    """Memory grew on every measured repetition; ``report`` is the :class:`hivemem.LeakReport`."""

    def __init__(self, message: str, *, report: object = None) -> None:
        super().__init__(message)
        self.report = report


class HivememWarning(UserWarning):
    """Root of hivemem's warnings."""


class PluginWarning(HivememWarning):
    """A third-party strategy could not be loaded; ``plugin`` names it."""

    def __init__(self, message: str, plugin: str = "") -> None:
        super().__init__(message)
        self.plugin = plugin


for _cls in (
    HivememError,
    InvalidSize,
    InvalidArgument,
    UnknownStrategy,
    StrategyError,
    ReentrantOptimize,
    Unavailable,
    CorruptedValue,
    MemoryLimitExceeded,
    MemoryCeilingExceeded,
    LeakDetected,
    HivememWarning,
    PluginWarning,
):
    _cls.__module__ = "hivemem"
del _cls
