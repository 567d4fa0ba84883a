"""The governor's two hot-path readings, taken without releasing the GIL.

``os.pread`` and ordinary ``ctypes`` calls release the GIL around the system
call. Under a CPU-bound main thread the governor's thread then waits up to a
switch interval (5 ms by default) to get it back, for a call that took
microseconds: a pass made of a dozen such readings took about 0.2 s (see
``docs/governor.md``, "Passes under a busy GIL"). These versions call libc
through ``ctypes.PyDLL``, which keeps the GIL for the call, so a reading costs
what the system call costs:

* :func:`statm_rss`: RSS from one ``pread`` of ``/proc/self/statm`` (~10 µs);
* :func:`malloc_in_use`: glibc ``mallinfo2()`` ``uordblks + hblkhd`` (a few µs
  on a compact heap, ~0.2 ms on one fragmented into ~100k free chunks, which
  is then the longest the program waits for the GIL because of it).

Where ctypes or glibc is missing they fall back to ``os.pread`` and ``None``.
ctypes is imported on first use, not with hivemem.
"""

from __future__ import annotations

import os

from hivemem._measure.procfs import PAGE as _PAGE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["malloc_in_use", "statm_rss"]


_pread: Callable[[int], bytes] | None = None
_mallinfo: Callable[[], int | None] | None = None


def _make_pread() -> Callable[[int], bytes]:
    try:
        import ctypes

        libc = ctypes.PyDLL(None, use_errno=True)
        fn = libc.pread
    except (ImportError, OSError, AttributeError):
        return lambda fd: os.pread(fd, 64, 0)
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_long]
    fn.restype = ctypes.c_ssize_t
    buf = ctypes.create_string_buffer(64)

    def pread(fd: int) -> bytes:
        n = fn(fd, buf, 64, 0)
        if n < 0:
            raise OSError(ctypes.get_errno(), "pread failed")
        return buf.raw[:n]

    return pread


def statm_rss(fd: int) -> int:
    """RSS in bytes from an open ``/proc/self/statm`` descriptor, the GIL held throughout."""
    global _pread
    if _pread is None:
        _pread = _make_pread()
    return int(_pread(fd).split()[1]) * _PAGE


def _make_mallinfo() -> Callable[[], int | None]:
    from hivemem._measure.native import MALLINFO2_FIELDS, allocator

    if allocator() != "glibc":  # another malloc: glibc's statistics would describe an unused heap
        return lambda: None
    try:
        import ctypes

        fn = ctypes.PyDLL(None).mallinfo2
    except (ImportError, OSError, AttributeError):  # glibc < 2.33
        return lambda: None

    class MallInfo2(ctypes.Structure):
        _fields_ = tuple((name, ctypes.c_size_t) for name in MALLINFO2_FIELDS)

    fn.argtypes = []
    fn.restype = MallInfo2

    def in_use() -> int:
        info = fn()
        return int(info.uordblks) + int(info.hblkhd)

    return in_use


def malloc_in_use() -> int | None:
    """glibc malloc's in-use bytes (heap blocks plus mmap'd blocks), or ``None`` where unknown."""
    global _mallinfo
    if _mallinfo is None:
        _mallinfo = _make_mallinfo()
    return _mallinfo()
