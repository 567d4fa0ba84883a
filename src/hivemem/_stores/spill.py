"""SpillStore: a mapping whose least recently used values move to disk under pressure.

In the spirit of Dask's zict-based spilling: values live in memory until the
``spill`` strategy, or :meth:`SpillStore.spill`, writes the least recently
used ones to files and drops them from memory.

* Files live in a private directory (mode 0700) made under *directory* (the
  system's temporary directory by default; a relative path is made absolute
  at construction); each file is mode 0400.
* Each value is written to a temporary name and renamed into place, so a
  crash or an interrupt never leaves a half-written value under a real name.
  Files are not fsync'd: they never outlive the process.
* Every file carries a CRC-32 and length taken while it was written, kept in
  memory. Every read checks both before anything is decoded or returned; a
  mismatch or a missing file raises :class:`hivemem.CorruptedValue` naming
  the key and the file (see ``docs/cooperative.md``, "Integrity").
* A pickled value is loaded back once when it is written; one that pickles
  but cannot be unpickled stays in memory and :meth:`status` says why.
* Everything is removed by :meth:`close`, at interpreter exit, and when the
  store is garbage-collected (``weakref.finalize``; only by the process that
  made the directory).
* After ``fork()`` a child reads the values spilled before the fork from the
  parent's files, read-only: it never writes, renames or deletes them. Its
  own spills go to a directory of its own, made at its first spill.
* NumPy arrays and ``memoryview`` values come back memory-mapped
  (copy-on-write: writing to the result never changes the stored value).
  On Linux the mapping is made without keeping a file descriptor, so reading
  many values back cannot exhaust the process's descriptors. ``bytes``,
  ``bytearray``, ``str``, ``array.array`` and pickled objects are read whole
  and move back into memory.
* No data loss: if a write fails (disk full, I/O error, no descriptor left)
  the value stays in memory, the temporary file is removed, and the error is
  kept in :attr:`errors` and reported by the strategy.
"""

from __future__ import annotations

import os
import sys
import weakref
import zlib

from hivemem import _validate
from hivemem._errors import InvalidArgument
from hivemem._measure.procfs import pid_alive
from hivemem._sizes import format_size
from hivemem._stores.live import LiveSet
from hivemem._stores.lru import MISSING, LRUStore, Pickler, StoreEntry, StoreTicket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Hashable
    from io import FileIO
    from typing import Any, BinaryIO

    from hivemem._stores.lru import Initial

__all__ = ["SpillStore", "live_stores"]

_NATIVE_FORMATS = frozenset("bBhHiIlLqQnNfd?ce")
_MAPPED = frozenset({"ndarray", "memoryview"})
_IMMUTABLE = frozenset({"bytes", "str"})
_MAX_ERRORS = 20
_CHUNK = 256 * 1024  # mutable values are written through a scratch copy of this size


_live: LiveSet[SpillStore] = LiveSet(on_fork=lambda store: store._after_fork())


def live_stores() -> list[SpillStore]:
    """Every open SpillStore (the ``spill`` strategy's work list)."""
    return [s for s in _live.items() if not s.closed]


def _remove_tree(path: str, pid: int) -> None:
    """Remove *path* (only in process *pid*) and the directories its dead forked children left."""
    if os.getpid() != pid:  # a forked child must not delete its parent's files
        return
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    # A child that left through os._exit() (multiprocessing does) never ran its cleanup:
    # its directory, named "<ours>.fork<pid>-...", goes once every process named in it is gone.
    parent, prefix = os.path.split(path)
    prefix += ".fork"
    try:
        names = [n for n in os.listdir(parent) if n.startswith(prefix)]
    except OSError:
        return
    import re

    for name in names:
        pids = [int(p) for p in re.findall(r"\.fork(\d+)-", name[len(prefix) - 5 :])]
        if pids and not any(pid_alive(p) for p in pids):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _too_small(size: int, min_size: int) -> str:
    return f"kept in memory: {format_size(size)} is below min_size {format_size(min_size)}"


def _is_ndarray(value: object) -> bool:
    cls = type(value)
    return cls.__name__ == "ndarray" and cls.__module__ == "numpy"


class _Entry(StoreEntry):
    __slots__ = ("kind", "meta", "owner", "size")

    def __init__(self, value: object, kind: str, meta: object, size: int) -> None:
        super().__init__(value)
        self.kind = kind
        self.meta: Any = meta
        self.size = size
        self.owner = 0  # pid of the process that wrote the file


class _Ticket(StoreTicket):
    """What a read needs, taken under the lock: the open file and what was written."""

    __slots__ = ("f", "kind", "meta", "size")

    stored: str

    def __init__(self, f: FileIO, entry: _Entry) -> None:
        super().__init__(entry)
        self.f = f
        self.kind = entry.kind
        self.meta = entry.meta
        self.size = entry.size


class _Unpicklable(Exception):
    """The value cannot be spilled, ever (until it is replaced): the message says why."""


def _classify(value: object) -> tuple[str, object, int]:
    """``(kind, meta, size)``: how *value* is written and read back."""
    cls = type(value)
    if type(value) is bytes or type(value) is bytearray:
        return cls.__name__, None, len(value)
    if cls is str:
        return "str", None, sys.getsizeof(value)
    if _is_ndarray(value):
        arr: Any = value
        if not arr.dtype.hasobject and arr.flags.c_contiguous and arr.nbytes:
            return "ndarray", (arr.dtype, arr.shape, arr.flags.writeable), arr.nbytes
        return "pickle", None, arr.nbytes
    if type(value) is memoryview:
        mv = value
        if mv.c_contiguous and mv.format in _NATIVE_FORMATS and mv.nbytes:
            return "memoryview", (mv.format, mv.shape, mv.readonly), mv.nbytes
        reason = (
            f"a memoryview (format {mv.format!r}) that is empty, not C-contiguous "
            "or not in a native format cannot be mapped back"
        )
        return "unspillable", reason, 0
    import array

    if isinstance(value, array.array) and cls is array.array:
        return "array", value.typecode, value.itemsize * len(value)
    return "pickle", None, sys.getsizeof(value)


# ----------------------------------------------------------------------------- writing
def _bytes_of(kind: str, value: Any) -> memoryview:
    """The bytes a buffer kind writes, as a flat ``"B"`` view."""
    if kind == "str":
        return memoryview(value.encode("utf-8", "surrogatepass"))
    if kind == "ndarray":  # through uint8: datetime64 and other dtypes refuse the buffer protocol
        import numpy  # type: ignore[import-not-found, unused-ignore]

        return memoryview(value.reshape(-1).view(numpy.uint8))
    return memoryview(value).cast("B")


def _write_buffer(f: BinaryIO, data: memoryview, mutable: bool) -> int:
    """Write *data*; return its CRC-32, taken over exactly the bytes written.

    A mutable value is copied through a small scratch buffer first, so a
    thread changing it meanwhile can make the file hold a mix of old and new
    bytes (its own race) but never a file that fails its checksum.
    """
    crc = 0
    scratch = memoryview(bytearray(min(len(data), _CHUNK))) if mutable else None
    for start in range(0, len(data), _CHUNK):
        piece = data[start : start + _CHUNK]
        if scratch is not None:
            n = len(piece)
            scratch[:n] = piece
            piece = scratch[:n]
        crc = zlib.crc32(piece, crc)
        f.write(piece)
    return crc


class _CrcWriter:
    """A file wrapper for the pickler that checksums what it writes."""

    __slots__ = ("crc", "f")

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.crc = 0

    def write(self, data: Any) -> int:
        if type(data) is not bytes:  # a bytearray payload: checksum and write one snapshot
            data = bytes(data)
        self.crc = zlib.crc32(data, self.crc)
        return self.f.write(data)


def _dump_pickle(f: BinaryIO, value: object) -> tuple[int, bool]:
    """``(crc, whether the pickle names a global)``: only then can loading it fail."""
    writer = _CrcWriter(f)
    pickler = Pickler(writer)
    try:
        pickler.dump(value)
    except (OSError, MemoryError):
        raise  # the disk or memory, not the value: retried on a later pass
    except Exception as exc:
        raise _Unpicklable(f"cannot be pickled ({type(exc).__name__}: {exc})") from None
    return writer.crc, pickler.names_global


def _prove_loads(path: str) -> None:
    """Load the pickle just written: a value that pickles but cannot be unpickled must stay in memory."""
    import pickle

    with open(path, "rb") as f:
        try:
            pickle.load(f)
        except (OSError, MemoryError):
            raise
        except Exception as exc:
            raise _Unpicklable(f"pickles but cannot be unpickled ({type(exc).__name__}: {exc})") from None


# ----------------------------------------------------------------------------- reading
def _readinto_all(f: FileIO, view: memoryview) -> int:
    done = 0
    while done < len(view):
        got = f.readinto(view[done:])
        if not got:
            break
        done += got
    return done


class _Mapping:
    """Owns one mapped region: it is unmapped when the last buffer over it is gone."""

    __slots__ = ("addr", "length", "munmap")

    def __init__(self, munmap: Callable[[int, int], int], addr: int, length: int) -> None:
        self.munmap = munmap
        self.addr = addr
        self.length = length

    def __del__(self) -> None:
        self.munmap(self.addr, self.length)


class _Mapper:
    """Private file mappings that keep no file descriptor (Linux, through libc's mmap).

    ``mmap.mmap`` duplicates the descriptor and holds it for the mapping's
    life (before Python 3.13), so 250 mapped values held 250 descriptors. A
    mapping itself needs none: this maps the file with libc, closes nothing
    of the caller's, and exposes the region as a ``ctypes`` array that owns
    it. The region is reserved at a size rounded up to one of 8 classes per
    power of two (anonymous pages past the file: readable zeros, never a
    SIGBUS), so only a bounded number of array types is ever made.
    """

    def __init__(self) -> None:
        import ctypes
        import mmap

        libc = ctypes.CDLL(None, use_errno=True)
        self._ctypes = ctypes
        self._mmap = libc.mmap
        self._mmap.restype = ctypes.c_void_p
        self._mmap.argtypes = (
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        )
        self._munmap = libc.munmap
        self._munmap.restype = ctypes.c_int
        self._munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        self._madvise = libc.madvise
        self._madvise.restype = ctypes.c_int
        self._madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        self._failed = ctypes.c_void_p(-1).value
        self._page = mmap.PAGESIZE
        self._prot = mmap.PROT_READ | mmap.PROT_WRITE
        self._anon = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        self._fixed = mmap.MAP_PRIVATE | 0x10  # MAP_FIXED on Linux
        self._dontneed = mmap.MADV_DONTNEED
        self._types: dict[int, Any] = {}

    def _length(self, size: int) -> int:
        pages = -(-size // self._page)
        if pages > 8:
            step = 1 << (pages.bit_length() - 4)
            pages = -(-pages // step) * step
        return pages * self._page

    def map(self, fd: int, size: int) -> tuple[memoryview, _Mapping] | None:
        """A copy-on-write view of the file's first *size* bytes, or ``None`` if it cannot be mapped."""
        length = self._length(size)
        base = self._mmap(None, length, self._prot, self._anon, -1, 0)
        if base is None or base == self._failed:
            return None
        owner = _Mapping(self._munmap, base, length)  # from here on the region is unmapped with owner
        got = self._mmap(base, size, self._prot, self._fixed, fd, 0)
        if got != base:
            return None
        array_type = self._types.get(length)
        if array_type is None:
            array_type = self._types[length] = self._ctypes.c_char * length
        region: Any = array_type.from_address(base)
        region._hivemem_owner = owner  # the array keeps the mapping alive; every view keeps the array
        return memoryview(region).cast("B")[:size], owner

    def drop_pages(self, owner: _Mapping) -> None:
        """Forget the pages read by the checksum; the next access faults them in from the page cache."""
        self._madvise(owner.addr, owner.length, self._dontneed)


_MAPPER: Any = None  # None: not tried yet; False: unavailable


def _mapper() -> _Mapper | None:
    global _MAPPER
    if _MAPPER is None:
        mapper: Any = False
        if sys.platform.startswith("linux"):
            try:
                mapper = _Mapper()
            except Exception:  # no ctypes, no libc symbols: read values whole instead
                mapper = False
        _MAPPER = mapper
    return _MAPPER or None


def _mapped_bytes(f: FileIO, size: int) -> tuple[memoryview, _Mapping | None]:
    """The file's *size* bytes: mapped without a descriptor where possible, else read into memory."""
    mapper = _mapper()
    if mapper is not None:
        mapped = mapper.map(f.fileno(), size)
        if mapped is not None:
            return mapped
    buf = memoryview(bytearray(size))
    if _readinto_all(f, buf) != size:
        raise EOFError
    return buf, None


# ----------------------------------------------------------------------------- the store
class SpillStore(LRUStore):
    """A thread-safe mapping that moves its least recently used values to disk under pressure.

    ``SpillStore(directory=None, *, strict=False, min_size="4KiB")``

    *directory* is where the private spill directory is made (the system's
    temporary directory by default; a relative path is resolved now); one
    that cannot be written raises :class:`hivemem.InvalidArgument` at once.
    With ``strict=True`` a value that cannot be spilled raises
    :class:`hivemem.InvalidArgument` when it is stored (the check pickles and
    unpickles it once); otherwise it stays in memory. Values smaller than
    *min_size* are never spilled.

    ``store[key]`` reads a spilled value back (memory-mapped for NumPy arrays
    and memoryviews, read whole otherwise, which brings it back into memory);
    :meth:`peek` reads without bringing it back. Every read is checked
    against the checksum taken when the file was written: a damaged or
    missing file raises :class:`hivemem.CorruptedValue`. ``repr(store)``
    shows the bytes in memory and on disk.
    """

    __module__ = "hivemem"

    def __init__(
        self,
        data: Initial = None,
        *,
        directory: str | os.PathLike[str] | None = None,
        strict: bool = False,
        min_size: int | str = "4KiB",
    ) -> None:
        if not isinstance(strict, bool):
            raise InvalidArgument(f"strict={_validate.show(strict)}: expected True or False")
        self.min_size: int = _validate.size("min_size", min_size)
        self.strict = strict
        import tempfile

        if directory is None:
            base = tempfile.gettempdir()
        else:
            try:
                given: object = os.fspath(directory)
            except TypeError:
                given = None
            if not isinstance(given, str):
                raise InvalidArgument(
                    f"directory={_validate.show(directory)}: expected None or a path (str or PathLike)"
                )
            base = given
        # Absolute now: a relative name would point elsewhere after os.chdir().
        self._base = os.path.abspath(base)
        try:
            self.directory = self._make_directory()
        except OSError as exc:
            raise InvalidArgument(
                f"cannot use {self._base!r} for spill files: {exc.strerror or exc}; "
                "expected an existing, writable directory"
            ) from None
        self._dir_pid = os.getpid()
        self._finalizer = weakref.finalize(self, _remove_tree, self.directory, self._dir_pid)
        self._init_store()
        self._counter = 0
        self._unswept = 0  # file removals begun and not finished (an interrupt): the next pass sweeps
        self._writing: set[str] = set()  # names being written now: never swept
        self._memory_total = 0
        self._disk_total = 0
        self._spilled = 0
        self.errors: list[str] = []
        if data is not None:
            self.update(data)
        _live.add(self)

    def _make_directory(self, prefix: str = "hivemem-spill-") -> str:
        import tempfile

        path = tempfile.mkdtemp(prefix=prefix, dir=self._base)
        try:
            probe = os.path.join(path, ".probe")
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
            os.chmod(path, 0o700)
        except BaseException:
            _remove_tree(path, os.getpid())
            raise
        return path

    def _own_directory(self) -> str:
        """This process's spill directory; a forked child makes its own at its first spill."""
        if self._dir_pid != os.getpid():
            pid = os.getpid()
            # Named after the parent's, which removes it once this process is gone (see _remove_tree).
            path = self._make_directory(f"{os.path.basename(self.directory)}.fork{pid}-")
            old, self._finalizer = self._finalizer, weakref.finalize(self, _remove_tree, path, pid)
            old.detach()
            self.directory, self._dir_pid, self._counter = path, pid, 0
        return self.directory

    # ------------------------------------------------------------ lifecycle
    def _closed_detail(self) -> str:
        return f"{self.directory}: its values were forgotten and its files deleted"

    def _on_close(self) -> None:
        self._memory_total = self._disk_total = self._spilled = 0
        # Called directly, not through the finalizer (which runs once): a close() cut short
        # by an interrupt removes the rest next time. Only the process that made it removes it.
        self._finalizer.detach()
        _remove_tree(self.directory, self._dir_pid)
        _live.discard(self)

    # ------------------------------------------------------------ mapping
    def _entry(self, key: Hashable, value: object) -> _Entry:
        kind, meta, size = _classify(value)
        note = None
        if kind == "unspillable":
            note, meta = f"kept in memory: {meta}", None
        elif kind == "pickle" and self.strict:
            size = self._prove_strict(key, value)
        if self.strict and note is not None:
            raise InvalidArgument(f"SpillStore(strict=True) cannot store {key!r}: {note}")
        entry = _Entry(value, kind, meta, size)
        entry.note = note
        return entry

    def _count(self, entry: _Entry) -> None:
        self._memory_total += entry.size

    @staticmethod
    def _prove_strict(key: Hashable, value: object) -> int:
        import pickle

        try:
            data = pickle.dumps(value, protocol=5)
        except Exception as exc:
            reason = f"the value cannot be pickled ({type(exc).__name__}: {exc})"
        else:
            try:
                pickle.loads(data)
            except Exception as exc:
                reason = f"the value pickles but cannot be unpickled ({type(exc).__name__}: {exc})"
            else:
                return len(data)
        raise InvalidArgument(
            f"SpillStore(strict=True) cannot store {key!r}: {reason}; "
            "store something that round-trips through pickle or use strict=False"
        )

    def _retiring(self, entry: _Entry) -> None:
        if entry.stored is not None and entry.owner == os.getpid():
            self._unswept += 1  # undone by _forget: an interrupt before that leaves a stray file to sweep

    def _forget(self, entry: _Entry) -> None:
        if entry.stored is not None:
            self._disk_total -= entry.size
            self._spilled -= 1
            if entry.owner == os.getpid():  # never a file another process wrote
                self._drop_file(entry)
                self._unswept -= 1
            else:
                entry.stored = None
        else:
            self._memory_total -= entry.size

    def _where(self, entry: _Entry) -> str | None:
        path: str | None = entry.stored
        return path

    def _missing(self, entry: _Entry) -> str:
        reason = f"its spill file {entry.stored} is missing"
        if entry.owner != os.getpid():
            return (
                f"{reason}: process {entry.owner} wrote it before this process was forked from it, "
                "and has removed it since"
            )
        return f"{reason}: something other than this store deleted it"

    def _fetch(self, key: Hashable, entry: _Entry) -> _Ticket:
        # Opened under the lock: a concurrent delete may unlink the name, never the open file.
        try:
            f = open(entry.stored, "rb", buffering=0)
        except FileNotFoundError:
            entry.damage = self._missing(entry)
            raise self._corrupted(key, entry.damage, entry.stored) from None
        return _Ticket(f, entry)

    def _load(self, key: Hashable, t: _Ticket) -> object:
        with t.f as f:
            actual = os.fstat(f.fileno()).st_size
            if actual == t.size:
                try:
                    if t.kind in _MAPPED:
                        return self._load_mapped(key, t, f)
                    return self._load_whole(key, t, f)
                except EOFError:
                    actual = os.fstat(f.fileno()).st_size  # shrank while it was read
        reason = f"its spill file {t.stored} has {actual:,} bytes, {t.size:,} were written"
        raise self._corrupted(key, reason, t.stored)

    def _check(self, key: Hashable, t: _Ticket, crc: int) -> None:
        if crc != t.crc:
            reason = (
                f"its spill file {t.stored} fails its checksum (crc32 {crc:#010x}, written {t.crc:#010x})"
            )
            raise self._corrupted(key, reason, t.stored)

    def _load_whole(self, key: Hashable, t: _Ticket, f: FileIO) -> object:
        kind = t.kind
        if kind in ("bytes", "str", "pickle"):
            data: Any = f.readall()
            if len(data) != t.size:
                raise EOFError
        elif kind == "bytearray":
            data = bytearray(t.size)
            if _readinto_all(f, memoryview(data)) != t.size or f.read(1):
                raise EOFError
        else:  # array.array: one allocation of the value's size, filled in place
            import array

            one = array.array(t.meta, bytes(array.array(t.meta).itemsize))
            data = one * (t.size // one.itemsize)
            if _readinto_all(f, memoryview(data).cast("B")) != t.size or f.read(1):
                raise EOFError
        self._check(key, t, zlib.crc32(data))  # before anything is decoded or unpickled
        if kind == "str":
            return data.decode("utf-8", "surrogatepass")
        if kind == "pickle":
            import pickle

            return pickle.loads(data)
        return data

    def _load_mapped(self, key: Hashable, t: _Ticket, f: FileIO) -> object:
        view, owner = _mapped_bytes(f, t.size)
        self._check(key, t, zlib.crc32(view))
        if owner is not None:
            _MAPPER.drop_pages(owner)
        if t.kind == "memoryview":
            fmt, shape, readonly = t.meta
            mv = view.cast(fmt, shape)
            return mv.toreadonly() if readonly else mv
        import numpy

        dtype, shape, writeable = t.meta
        arr = numpy.frombuffer(view, dtype=dtype, count=t.size // dtype.itemsize).reshape(shape)
        arr = arr.view(numpy.memmap)
        if not writeable:
            arr.flags.writeable = False
        return arr

    def _adopt(self, entry: _Entry, t: _Ticket, value: object) -> object:
        if t.kind in _MAPPED:
            return value  # mapped values stay on disk: the mapping is the value
        if entry.stored is not t.stored:
            return entry.value if entry.stored is None else value  # read back by another thread meanwhile
        self._disk_total -= entry.size
        self._memory_total += entry.size
        self._spilled -= 1
        entry.value = value  # the file goes only after this: an interrupt never leaves neither
        if entry.owner == os.getpid():
            self._drop_file(entry)
        else:
            entry.stored = None
        return value

    def _drop_file(self, entry: _Entry) -> None:
        """Point *entry* away from its file, then remove the file (under the lock)."""
        self._unswept += 1  # an interrupt from here to the end leaves a stray file: swept later
        path, entry.stored = entry.stored, None
        _unlink(path)
        self._unswept -= 1

    def _sweep(self) -> None:
        """Remove this process's files that no entry references (left by an interrupted removal)."""
        self._unswept = 0
        if self._dir_pid != os.getpid():
            return
        keep = {e.stored for e in self._data.values() if e.stored is not None} | self._writing
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            path = os.path.join(self.directory, name)
            if path not in keep and not name.endswith(".tmp"):
                _unlink(path)

    # ------------------------------------------------------------ pressure
    def _before_pass(self) -> None:
        if self._unswept:
            self._sweep()

    def spill(
        self, nbytes: int | str | None = None, *, stop: Callable[[], bool] | None = None
    ) -> dict[str, object]:
        """Write values to disk, least recently used first, and drop them from memory.

        Stops after *nbytes* (all when ``None``) or when ``stop()`` returns
        true (checked before each value). Returns ``spilled`` (count),
        ``bytes``, ``kept`` (not spillable or too small) and ``failed`` (write
        errors; those values stay in memory and the errors are in
        :attr:`errors`).
        """
        budget, todo = self._begin_pass(nbytes, stop)
        moved = spilled = kept = failed = 0
        for key in todo:
            if self._pass_over(budget, moved, stop):
                break
            with self._lock:
                entry = self._still_unstored(key)
                if entry is None:
                    continue
                if entry.kind != "pickle" and entry.size < self.min_size:
                    entry.note = _too_small(entry.size, self.min_size)
                    kept += 1
                    continue
                try:
                    directory = self._own_directory()
                except OSError as exc:
                    self._record(entry, f"cannot make a spill directory: {exc.strerror or exc}")
                    failed += 1
                    break
                value = entry.value
                self._counter += 1
                name = os.path.join(directory, f"{os.getpid()}-{self._counter}")
                self._writing.add(name)
            try:
                written = self._write_file(name, entry, value)
                del value
                if written is None:
                    if entry.note is not None:
                        kept += 1
                    else:
                        failed += 1
                    continue
                size, crc = written
                with self._lock:
                    if not self._holds(key, entry) or entry.stored is not None or self._closed:
                        continue  # replaced or deleted meanwhile: the file is stale
                    if entry.kind == "pickle" and size < self.min_size:  # its size is known only now
                        self._memory_total += size - entry.size
                        entry.size = size
                        entry.note = _too_small(size, self.min_size)
                        kept += 1
                        continue
                    self._memory_total -= entry.size
                    self._disk_total += size
                    self._spilled += 1
                    entry.crc, entry.owner, entry.error = crc, os.getpid(), None
                    entry.stored, entry.size = name, size  # from here on reads go to the file ...
                    entry.value = MISSING  # ... and the memory can go
            finally:
                if entry.stored is not name:  # not committed (also on an interrupt): no stray file
                    _unlink(name)
                self._writing.discard(name)
            moved += size
            spilled += 1
        done: dict[str, object] = {"spilled": spilled, "bytes": moved, "kept": kept, "failed": failed}
        if self.errors and failed:
            done["error"] = self.errors[-1]
        return done

    def _record(self, entry: _Entry, message: str) -> None:
        entry.error = f"write failed, kept in memory: {message}"
        self.errors.append(entry.error)
        del self.errors[:-_MAX_ERRORS]

    def _write_file(self, name: str, entry: _Entry, value: object) -> tuple[int, int] | None:
        """Write *value* to ``name`` through a temporary file: ``(size, crc)``, or ``None`` (kept)."""
        tmp = name + ".tmp"
        renamed = False
        try:
            # One call makes the descriptor and its owner: no interrupt can fall between the two.
            with open(tmp, "xb") as f:
                if hasattr(os, "fchmod"):
                    os.fchmod(f.fileno(), 0o400)  # read-only: a stray open(path, "w") fails
                prove = False
                if entry.kind == "pickle":
                    crc, prove = _dump_pickle(f, value)
                else:
                    crc = _write_buffer(f, _bytes_of(entry.kind, value), entry.kind not in _IMMUTABLE)
                size = f.tell()
            if prove:
                _prove_loads(tmp)
            os.rename(tmp, name)
            renamed = True
            return size, crc
        except _Unpicklable as exc:
            entry.note = f"kept in memory: {exc}"
        except Exception as exc:  # disk full, I/O error, no descriptor, no memory: retried later
            self._record(entry, f"{type(exc).__name__}: {exc}")
        finally:
            if not renamed:  # also on KeyboardInterrupt: no temporary file is left behind
                _unlink(tmp)
        return None

    def _describe(self, entry: _Entry) -> str:
        if entry.stored is None:
            return entry.note or entry.error or "in memory"
        try:
            actual = os.stat(entry.stored).st_size
        except FileNotFoundError:
            entry.damage = self._missing(entry)
            return f"damaged: {entry.damage}"
        except OSError:
            actual = entry.size
        if actual != entry.size:
            entry.damage = f"its spill file {entry.stored} has {actual:,} bytes, {entry.size:,} were written"
            return f"damaged: {entry.damage}"
        if entry.owner != os.getpid():
            size = format_size(entry.size)
            return f"on disk ({size}, read-only: process {entry.owner} wrote it before the fork)"
        return f"on disk ({format_size(entry.size)})"

    @property
    def memory_bytes(self) -> int:
        """Bytes of the values held in memory (buffers exactly; other objects roughly, until spilled once)."""
        return self._memory_total

    @property
    def disk_bytes(self) -> int:
        """Bytes of the values on disk."""
        return self._disk_total

    @property
    def spilled_count(self) -> int:
        """How many values are on disk."""
        return self._spilled

    def stats(self) -> dict[str, object]:
        """``entries``, ``spilled``, ``memory_bytes``, ``disk_bytes``, ``errors`` (JSON-safe)."""
        return {
            "entries": len(self._data),
            "spilled": self._spilled,
            "memory_bytes": self._memory_total,
            "disk_bytes": self._disk_total,
            "errors": len(self.errors),
        }

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"entries={len(self._data)}, spilled={self._spilled}"
        return (
            f"SpillStore({state}, in_memory={format_size(self._memory_total)!r}, "
            f"on_disk={format_size(self._disk_total)!r}, directory={self.directory!r})"
        )
