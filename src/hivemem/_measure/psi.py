"""Linux pressure stall information (PSI): parse it, and wake on its poll() triggers.

``/proc/pressure/memory`` (system-wide) and a cgroup v2 group's
``memory.pressure`` read like::

    some avg10=0.00 avg60=0.00 avg300=0.00 total=0
    full avg10=0.00 avg60=0.00 avg300=0.00 total=0

Writing a trigger ``"some 150000 1000000"`` (stall µs within window µs) to
the file, on a descriptor kept open, makes ``poll()`` report ``POLLPRI``
when tasks stalled on memory that long within the window (kernel ≥ 5.2).
Windows must be 0.5-10 s. Without ``CAP_SYS_RESOURCE`` (kernel ≥ 6.5 allows
unprivileged triggers at all) the window must be a multiple of 2 s and the
trigger is only checked on the kernel's 2 s averaging tick; :func:`open_trigger`
then retries with the window rounded up and says so in ``PsiTrigger.note``.

PSI reports *stalls*, not RSS: it fires when the kernel is already
reclaiming (cgroup near its limit, or the machine short of memory). The
governor uses it to wake early, then judges the level by RSS as always.
"""

from __future__ import annotations

import os

from hivemem._errors import InvalidArgument, Unavailable
from hivemem._measure.procfs import close_fd

__all__ = [
    "PsiTrigger",
    "format_trigger",
    "open_trigger",
    "parse_pressure",
    "parse_trigger",
    "pressure_files",
    "read_pressure",
]

_MIN_WINDOW_US = 500_000
_MAX_WINDOW_US = 10_000_000
_UNPRIV_WINDOW_US = 2_000_000


def parse_pressure(text: str) -> dict[str, dict[str, float]]:
    """``{"some": {"avg10": 0.0, "avg60": 0.0, "avg300": 0.0, "total": 0.0}, "full": {...}}``.

    ``total`` is stall microseconds since boot; the averages are percentages.
    Lines other than ``some``/``full`` are ignored; a malformed field raises
    :class:`hivemem.InvalidArgument` naming it.
    """
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] not in ("some", "full"):
            continue
        fields: dict[str, float] = {}
        for item in parts[1:]:
            key, sep, value = item.partition("=")
            try:
                if not sep:
                    raise ValueError
                fields[key] = float(value) if key != "total" else int(value)
            except ValueError:
                raise InvalidArgument(f"malformed PSI field {item!r} in line {line!r}") from None
        out[parts[0]] = fields
    return out


def parse_trigger(spec: object) -> tuple[str, int, int]:
    """``("some", 150000, 1000000)`` from ``"some 150000 1000000"`` or a 3-tuple (µs).

    The kernel's rules are checked here so a bad trigger is a clear error,
    not ``EINVAL``: kind ``some`` or ``full``, window 500000-10000000 µs,
    stall 1 µs up to the window.
    """
    if isinstance(spec, str):
        parts: list[object] = list(spec.split())
    elif isinstance(spec, (tuple, list)):
        parts = list(spec)
    else:
        raise InvalidArgument(f"PSI trigger {spec!r}: expected 'some <stall µs> <window µs>'")
    if len(parts) != 3 or parts[0] not in ("some", "full"):
        raise InvalidArgument(
            f"PSI trigger {spec!r}: expected 'some|full <stall µs> <window µs>', e.g. 'some 150000 1000000'"
        )
    try:
        stall, window = (int(str(p)) for p in parts[1:])
    except ValueError:
        raise InvalidArgument(f"PSI trigger {spec!r}: stall and window must be whole microseconds") from None
    if not (_MIN_WINDOW_US <= window <= _MAX_WINDOW_US):
        raise InvalidArgument(f"PSI trigger {spec!r}: the window must be 500000-10000000 µs, got {window}")
    if not (0 < stall <= window):
        raise InvalidArgument(f"PSI trigger {spec!r}: the stall must be 1 µs up to the window, got {stall}")
    return str(parts[0]), stall, window


def format_trigger(kind: str, stall: int, window: int) -> bytes:
    """The bytes written to the pressure file (NUL-terminated, as the kernel docs show)."""
    return f"{kind} {stall} {window}".encode("ascii") + b"\0"


def pressure_files(root: str = "") -> list[str]:
    """Memory pressure files to watch, most specific first.

    The process's own cgroup v2 ``memory.pressure`` (found through
    ``/proc/self/cgroup``, so nested groups resolve), then the system-wide
    ``/proc/pressure/memory``. Only files that exist are listed. *root*
    prefixes every path, for tests.
    """
    from hivemem._measure.limits import cgroup_dirs

    found: list[str] = []
    v2 = cgroup_dirs(root).get("v2")
    if v2 is not None:
        candidate = os.path.join(v2, "memory.pressure")
        if os.path.isfile(candidate):
            found.append(candidate)
    system = f"{root}/proc/pressure/memory"
    if os.path.isfile(system):
        found.append(system)
    return found


def read_pressure(path: str = "/proc/pressure/memory") -> dict[str, dict[str, float]]:
    """Parse a pressure file now (see :func:`parse_pressure`)."""
    try:
        with open(path, encoding="ascii") as f:
            return parse_pressure(f.read())
    except OSError as exc:
        raise Unavailable(f"cannot read {path}: {exc.strerror or exc} (PSI needs Linux >= 4.20)") from None


class PsiTrigger:
    """An armed trigger: poll ``fd`` for ``POLLPRI``. ``note`` says if the window was rounded.

    Like the sources of ``_governor/notify.py`` it has ``mask``, ``name`` and ``drain()``
    for the governor's monitor.
    """

    __slots__ = ("fd", "kind", "note", "path", "stall", "window")
    mask = 0x002  # POLLPRI
    name = "psi"

    def __init__(self, fd: int, path: str, kind: str, stall: int, window: int, note: str = "") -> None:
        self.fd, self.path, self.kind, self.stall, self.window, self.note = (
            fd,
            path,
            kind,
            stall,
            window,
            note,
        )

    def drain(self, revents: int) -> bool:
        """``False`` when the trigger is gone (its group was removed: ``POLLERR``), else ``True``."""
        return not revents & (0x008 | 0x020)  # POLLERR, POLLNVAL

    def close(self) -> None:
        self.fd = close_fd(self.fd)

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "trigger": f"{self.kind} {self.stall} {self.window}", "note": self.note}

    def __repr__(self) -> str:
        extra = f", note={self.note!r}" if self.note else ""
        return f"PsiTrigger({self.path!r}, '{self.kind} {self.stall} {self.window}'{extra})"


def _arm(path: str, payload: bytes) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        os.write(fd, payload)
    except OSError:
        os.close(fd)
        raise
    return fd


def open_trigger(path: str, spec: object = "some 150000 1000000") -> PsiTrigger:
    """Arm a PSI trigger on *path*; raises :class:`hivemem.Unavailable` saying why it cannot.

    When the kernel refuses the window (unprivileged triggers need a
    multiple of 2 s), retry once with the window rounded up to 2 s
    multiples and the stall scaled in proportion.
    """
    kind, stall, window = parse_trigger(spec)
    try:
        return PsiTrigger(_arm(path, format_trigger(kind, stall, window)), path, kind, stall, window)
    except OSError as first:
        if first.errno not in (22, 1, 13):  # EINVAL, EPERM, EACCES
            raise Unavailable(f"cannot arm a PSI trigger on {path}: {first.strerror or first}") from None
        wide = min(-(-window // _UNPRIV_WINDOW_US) * _UNPRIV_WINDOW_US, _MAX_WINDOW_US)
        if wide == window:
            wide = min(window + _UNPRIV_WINDOW_US, _MAX_WINDOW_US)
        wide -= wide % _UNPRIV_WINDOW_US
        scaled = max(1, stall * wide // window)
        try:
            fd = _arm(path, format_trigger(kind, scaled, wide))
        except OSError as second:
            raise Unavailable(
                f"cannot arm a PSI trigger on {path}: '{kind} {stall} {window}' failed "
                f"({first.strerror or first}) and so did the unprivileged form '{kind} {scaled} {wide}' "
                f"({second.strerror or second}); PSI triggers need Linux >= 5.2 (>= 6.5 without "
                "CAP_SYS_RESOURCE)"
            ) from None
        note = (
            f"the kernel refused '{kind} {stall} {window}' ({first.strerror or first}); armed "
            f"'{kind} {scaled} {wide}' instead: unprivileged triggers need a window that is a multiple "
            "of 2 s and are checked on the 2 s averaging tick, so they can fire up to ~2 s late"
        )
        return PsiTrigger(fd, path, kind, scaled, wide, note)
