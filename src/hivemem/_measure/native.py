"""Allocator facts: which malloc this process runs, glibc's trim and stats, pymalloc's stats.

ctypes is imported only when one of these functions is first called.
"""

from __future__ import annotations

import _thread
import os
import sys

__all__ = [
    "is_thread_arena",
    "allocator",
    "glibc_version",
    "malloc_info",
    "malloc_trim",
    "mallinfo2_function",
    "mallopt",
    "pymalloc_stats",
    "set_malloc_thresholds",
    "trim_unavailable_reason",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes
    from collections.abc import Callable, Sequence
    from types import ModuleType
    from typing import Any

_libc: ctypes.CDLL | None = None
_ct: ModuleType | None = None
_REPLACEMENTS = ("jemalloc", "tcmalloc", "mimalloc", "hoard", "snmalloc")

_HEAP_MAX = 64 * 2**20  # glibc's HEAP_MAX_SIZE on 64-bit: thread arenas are aligned to it


def is_thread_arena(rows: Sequence[tuple[int, int, str, str]], i: int) -> bool:
    """Whether mapping *i* of ``(start, end, perms, name)`` rows is one of glibc's per-thread heaps.

    glibc maps them 64 MiB-aligned and leaves the unused rest of the 64 MiB
    ``PROT_NONE`` right after the used part.
    """
    start, end, perms, name = rows[i]
    if start % _HEAP_MAX or name or perms.startswith("---"):
        return False
    nxt = rows[i + 1] if i + 1 < len(rows) else None
    return end - start == _HEAP_MAX or (
        nxt is not None and nxt[0] == end and nxt[2].startswith("---") and not nxt[3]
    )


def _load_libc() -> ctypes.CDLL:
    global _libc, _ct
    if _libc is None:
        import ctypes

        # Keep the ctypes module the handle came from: argtypes must be that module's types
        # (an in-process pytester session can re-import ctypes, and mixing the two fails).
        _ct = ctypes
        _libc = ctypes.CDLL(None)
    return _libc


def _ctypes() -> ModuleType:
    """The ctypes module that loaded :func:`_load_libc`'s handle."""
    _load_libc()
    assert _ct is not None
    return _ct


def glibc_version() -> str | None:
    """glibc's version string (``"2.36"``), or ``None`` when libc is not glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        ctypes = _ctypes()
        fn = _load_libc().gnu_get_libc_version
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_char_p
    value = fn()
    return value.decode("ascii") if value else None


_allocator: str | None = None


def allocator() -> str:
    """Name the C allocator serving ``malloc`` here: ``glibc``, ``jemalloc``, ``musl``, ... or ``unknown``.

    A replacement loaded with ``LD_PRELOAD`` (or linked in) shows up as a
    mapped library in ``/proc/self/maps``; it takes precedence over glibc.
    The answer is cached: ``malloc`` is bound when the process starts, and
    scanning the maps of a big process costs milliseconds.
    """
    global _allocator
    if _allocator is None:
        _allocator = _find_allocator()
    return _allocator


def _find_allocator() -> str:
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
                maps = f.read()
        except OSError:
            maps = ""
        for name in _REPLACEMENTS:
            if f"lib{name}" in maps:
                return name
        if glibc_version() is not None:
            return "glibc"
        if "ld-musl" in maps or "libc.musl" in maps:
            return "musl"
        return "unknown"
    return {"darwin": "macOS libmalloc", "win32": "Windows heap"}.get(sys.platform, "unknown")


def trim_unavailable_reason() -> str | None:
    """Why ``malloc_trim`` cannot work here, or ``None`` when it can."""
    if not sys.platform.startswith("linux"):
        return f"malloc_trim is a glibc function; this is {sys.platform}"
    name = allocator()
    if name != "glibc":
        return f"malloc is {name}, not glibc, and has no malloc_trim"
    try:
        _load_libc().malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return "glibc without malloc_trim"
    return None


def malloc_trim(pad: int = 0) -> bool:
    """Call glibc's ``malloc_trim(pad)``: give free heap pages back to the OS.

    Since glibc 2.8 this releases free pages inside every arena, not only the
    top of the main heap. Returns ``True`` when glibc released something.
    ctypes releases the GIL for the call, so other threads keep running.
    """
    reason = trim_unavailable_reason()
    if reason is not None:
        from hivemem._errors import Unavailable

        raise Unavailable(reason)
    ctypes = _ctypes()
    fn = _load_libc().malloc_trim
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return bool(fn(pad))


_mallinfo2_fn: Callable[[], Any] | None = None
_mallinfo2_loaded = False


#: glibc's ``struct mallinfo2``, in order: every field a ``size_t`` (glibc 2.33+).
MALLINFO2_FIELDS = (
    "arena",
    "ordblks",
    "smblks",
    "hblks",
    "hblkhd",
    "usmblks",
    "fsmblks",
    "uordblks",
    "fordblks",
    "keepcost",
)


def mallinfo2_function() -> Callable[[], Any] | None:
    """glibc's ``mallinfo2`` with its result type, set up once (``None`` before glibc 2.33).

    The result has one attribute per :data:`MALLINFO2_FIELDS` name.
    """
    global _mallinfo2_fn, _mallinfo2_loaded
    if not _mallinfo2_loaded:
        ctypes = _ctypes()
        fields = tuple((name, ctypes.c_size_t) for name in MALLINFO2_FIELDS)
        struct = type("_MallInfo2", (ctypes.Structure,), {"_fields_": fields})
        try:
            fn = _load_libc().mallinfo2
        except AttributeError:
            pass
        else:
            fn.argtypes = []
            fn.restype = struct
            _mallinfo2_fn = fn
        _mallinfo2_loaded = True
    return _mallinfo2_fn


def malloc_info() -> dict[str, int] | None:
    """glibc's ``mallinfo2()`` in bytes, or ``None`` where unavailable.

    Keys: ``arena`` (heap from brk/sbrk and arenas), ``mmapped`` (large blocks
    from mmap), ``in_use`` (allocated bytes), ``free`` (free bytes held by
    malloc), ``releasable`` (free at the top, what a plain trim would return).
    """
    if trim_unavailable_reason() is not None:
        return None
    fn = mallinfo2_function()
    if fn is None:  # glibc < 2.33
        return None
    info = fn()
    return {
        "arena": int(info.arena),
        "mmapped": int(info.hblkhd),
        "in_use": int(info.uordblks) + int(info.hblkhd),
        "free": int(info.fordblks),
        "releasable": int(info.keepcost),
    }


def pymalloc_stats() -> dict[str, int] | None:
    """Python's small-object allocator, in bytes, as ``sys._debugmallocstats()`` reports it.

    Keys: ``arenas`` (bytes in arenas), ``allocated`` (live blocks),
    ``free`` (available blocks plus unused pools: the space freed objects left
    behind), ``overhead`` (pool headers, quantization, alignment), ``alignment``
    (the part of overhead lost to arena alignment: never touched, so not
    resident), ``arena_count``.
    Returns ``None`` where pymalloc is off or the statistics are missing.

    The statistics are written by CPython's ``_PyObject_DebugMallocStats(FILE *)``
    into a private in-memory stream (libc ``open_memstream``), called with
    the GIL held: file descriptor 2 is never touched, so concurrent callers,
    other threads' stderr output and forked children are unaffected. Where
    that function or ``open_memstream`` is missing, the fallback points fd 2
    at a temporary file around ``sys._debugmallocstats()``, one caller at a
    time and never across a ``fork()`` (see docs/measurement.md).
    """
    text = _stats_private()
    if text is _MISSING:
        text = _stats_through_fd2()
    if text is None:
        return None
    assert isinstance(text, str)
    return _parse_pymalloc(text)


_MISSING = object()
_memstream: tuple[Any, Any, Any, Any] | bool | None = None


def _memstream_fns() -> tuple[Any, Any, Any, Any] | None:
    """``(_PyObject_DebugMallocStats, open_memstream, fclose, free)`` set up once, or ``None``."""
    if _memstream is None:
        # One line: a multi-line with gets a line event before __exit__ (see _engine's docstring).
        with _memstream_init: _memstream_load()  # noqa: E701  # fmt: skip
    return _memstream if isinstance(_memstream, tuple) else None


_memstream_init = _thread.allocate_lock()


def _memstream_unlock_in_child() -> None:
    global _memstream_init
    _memstream_init = _thread.allocate_lock()  # only the global name is used to take it


if hasattr(os, "register_at_fork"):  # a child forked while another thread was loading starts unlocked
    os.register_at_fork(after_in_child=_memstream_unlock_in_child)


def _memstream_load() -> None:
    """Set up :func:`_memstream_fns`'s functions, once; concurrent first callers wait for it.

    Were ``_memstream`` marked as tried before the loading finished, a thread
    arriving meanwhile would take the fd 2 fallback.
    """
    global _memstream
    if _memstream is None:
        loaded: tuple[Any, Any, Any, Any] | bool = False
        try:
            ctypes = _ctypes()
            libc = _load_libc()
            stats = ctypes.pythonapi._PyObject_DebugMallocStats  # a PyDLL: the GIL stays held
            open_memstream, fclose, free = libc.open_memstream, libc.fclose, libc.free
        except (OSError, AttributeError, ImportError, MemoryError):
            # ImportError/MemoryError: ctypes cannot load under a tight RLIMIT_AS; the
            # fallback needs no ctypes. Marked False: not retried on every call.
            pass
        else:
            stats.argtypes, stats.restype = [ctypes.c_void_p], ctypes.c_int
            open_memstream.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
            open_memstream.restype = ctypes.c_void_p
            fclose.argtypes, fclose.restype = [ctypes.c_void_p], ctypes.c_int
            free.argtypes, free.restype = [ctypes.c_void_p], None
            loaded = (stats, open_memstream, fclose, free)
        _memstream = loaded


def _stats_private() -> object:
    """The statistics text from a private ``FILE *``.

    ``None`` when pymalloc is off; ``_MISSING`` where this way is unsupported.
    """
    fns = _memstream_fns()
    if fns is None:
        return _MISSING
    stats, open_memstream, fclose, free = fns
    ctypes = _ctypes()
    buf, size = ctypes.c_void_p(), ctypes.c_size_t()
    stream = open_memstream(ctypes.byref(buf), ctypes.byref(size))
    if not stream:
        return _MISSING
    try:
        used = stats(stream)
    finally:
        fclose(stream)  # writes the final size and pointer
        try:
            data = ctypes.string_at(buf.value, size.value) if buf.value else b""
        finally:
            free(buf)
    return data.decode("ascii", "replace") if used else None


_fd2_lock = _thread.allocate_lock()
_fd2_fork_guard = False


def _guard_forks() -> None:
    """Hold forks back while fd 2 is redirected, so no child starts with hivemem's stream as stderr."""
    global _fd2_fork_guard
    if _fd2_fork_guard or not hasattr(os, "register_at_fork"):
        return
    _fd2_fork_guard = True
    os.register_at_fork(before=_fd2_hold, after_in_parent=_fd2_release, after_in_child=_fd2_new_lock)


def _fd2_hold() -> None:
    _fd2_lock.acquire()


def _fd2_release() -> None:
    _fd2_lock.release()


def _fd2_new_lock() -> None:
    global _fd2_lock
    _fd2_lock = _thread.allocate_lock()  # the child's copy is held (by the fork's before hook)


def _stats_through_fd2() -> str | None:  # pragma: no cover - CPython without the C entry point
    fn = getattr(sys, "_debugmallocstats", None)
    if fn is None:
        return None
    _guard_forks()
    if hasattr(os, "memfd_create"):
        out_fd = os.memfd_create("hivemem-mallocstats")
    else:
        import tempfile

        out_fd = os.dup(tempfile.TemporaryFile().fileno())
    try:
        # One line: a multi-line with gets a line event before __exit__ (see _engine's docstring).
        with _fd2_lock: _redirect_fd2(fn, out_fd)  # noqa: E701  # fmt: skip
        size = os.lseek(out_fd, 0, os.SEEK_END)
        text = os.pread(out_fd, size, 0).decode("ascii", "replace")
    finally:
        os.close(out_fd)
    return _pass_on_foreign_lines(text)


def _redirect_fd2(fn: Callable[[], object], out_fd: int) -> None:  # pragma: no cover - fallback
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError, OSError):
        pass
    saved = os.dup(2)
    try:
        os.dup2(out_fd, 2)
        fn()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _pass_on_foreign_lines(text: str) -> str:
    """Write back what another thread sent to fd 2 while it pointed at the stats file."""
    head = text.find("Small block threshold")
    extra = text[:head] if head > 0 else ""
    if extra.strip():
        try:
            os.write(2, extra.encode())
        except OSError:
            pass
    return text[head:] if head > 0 else text


def _parse_pymalloc(text: str) -> dict[str, int] | None:
    values: dict[str, int] = {}
    in_stats = False
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        key = key.strip()
        if key.startswith("Small block threshold"):
            in_stats = True
            continue
        if not in_stats:
            continue
        if not sep:
            continue
        try:
            number = int(value.strip().replace(",", ""))
        except ValueError:
            continue
        if key == "Total" and "arenas" not in values:
            values["arenas"] = number
        elif key == "# arenas allocated current":
            values["arena_count"] = number
        elif key == "# bytes in allocated blocks":
            values["allocated"] = number
        elif key == "# bytes in available blocks":
            values["free"] = values.get("free", 0) + number
        elif "unused pools" in key:
            values["free"] = values.get("free", 0) + number
        elif key.startswith("# bytes lost to") and "arena map" not in key:
            values["overhead"] = values.get("overhead", 0) + number
            if "arena alignment" in key:  # part of overhead: pages pymalloc never touches, not resident
                values["alignment"] = number
    if "allocated" not in values:
        return None
    values.setdefault("free", 0)
    values.setdefault("overhead", 0)
    values.setdefault("alignment", 0)
    values.setdefault("arenas", values["allocated"] + values["free"] + values["overhead"])
    values.setdefault("arena_count", 0)
    return values


# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's HEAP_MAX_SIZE / 2 on 64-bit: larger values are rejected


def mallopt(param: int, value: int) -> bool:
    """Call glibc's ``mallopt(param, value)``; returns whether glibc accepted it.

    Raises :class:`hivemem.Unavailable` where the allocator is not glibc.
    """
    reason = trim_unavailable_reason()
    if reason is not None:
        from hivemem._errors import Unavailable

        raise Unavailable(reason.replace("malloc_trim", "mallopt"))
    ctypes = _ctypes()
    fn = _load_libc().mallopt
    fn.argtypes = [ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    return bool(fn(param, value))


def set_malloc_thresholds(
    mmap_threshold: int | str | None = None,
    trim_threshold: int | str | None = None,
    *,
    arena_max: int | None = None,
) -> dict[str, int]:
    """Set glibc malloc's mmap and trim thresholds in this running process.

    The environment variables ``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_ARENA_MAX`` are read once, when
    the process starts; this is the in-process equivalent, through
    ``mallopt``. Sizes are bytes or strings such as ``"128KiB"``.

    ``mmap_threshold``
        Blocks at least this large are served by their own ``mmap`` and go
        back to the OS the moment they are freed. By default glibc starts at
        128 KiB and *raises* the threshold (up to 32 MiB) each time such a
        block is freed, after which big blocks live in the heap and stay
        resident until trimmed (7000 x 160 KiB freed: 1108 MiB kept; see
        docs/design.md, "glibc's mmap threshold rises"). Setting it fixes the value and turns that dynamic
        adjustment off. At most 32 MiB.
    ``trim_threshold``
        Free memory at the top of the heap beyond this is returned to the OS
        automatically on ``free``. Setting it also turns the dynamic
        adjustment off.
    ``arena_max``
        Upper bound on malloc arenas; many threads allocating each get an
        arena (up to 8 per core) whose free space is not shared.

    Costs: a lower mmap threshold means a system call per large allocation
    and free. Everything is checked before anything is set. Returns what was
    set, in bytes. Raises :class:`hivemem.Unavailable` where malloc is not
    glibc, :class:`hivemem.InvalidSize` / :class:`hivemem.InvalidArgument`
    for bad values.
    """
    from hivemem._errors import InvalidArgument
    from hivemem._sizes import parse_size

    plan: list[tuple[str, int, int]] = []
    if mmap_threshold is not None:
        value = parse_size(mmap_threshold)
        if value > _MMAP_THRESHOLD_MAX:
            raise InvalidArgument(
                f"mmap_threshold={mmap_threshold!r}: glibc accepts at most 32 MiB "
                f"({_MMAP_THRESHOLD_MAX} bytes)"
            )
        plan.append(("mmap_threshold", _M_MMAP_THRESHOLD, value))
    if trim_threshold is not None:
        value = parse_size(trim_threshold)
        if value >= 2**31:
            raise InvalidArgument(
                f"trim_threshold={trim_threshold!r}: expected less than 2 GiB (an int in C)"
            )
        plan.append(("trim_threshold", _M_TRIM_THRESHOLD, value))
    if arena_max is not None:
        if isinstance(arena_max, bool) or not isinstance(arena_max, int) or not 1 <= arena_max < 2**31:
            raise InvalidArgument(f"arena_max={arena_max!r}: expected a positive int")
        plan.append(("arena_max", _M_ARENA_MAX, arena_max))
    if not plan:
        raise InvalidArgument("set_malloc_thresholds(): give mmap_threshold, trim_threshold or arena_max")
    reason = trim_unavailable_reason()
    if reason is not None:
        from hivemem._errors import Unavailable

        raise Unavailable(
            reason.replace("has no malloc_trim", "has no mallopt").replace("malloc_trim", "mallopt")
        )
    done: dict[str, int] = {}
    for name, param, value in plan:
        if not mallopt(param, value):
            raise InvalidArgument(f"glibc rejected {name}={value} (already set: {done})")
        done[name] = value
    return done
