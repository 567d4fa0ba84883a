"""SpillStore: a mapping whose least recently used values move to disk under pressure.

In the spirit of Dask's zict-based spilling: values live in memory until the
``spill`` strategy, or :meth:`SpillStore.spill`, writes the least recently
used ones to files and drops them from memory.

* Files live in a private directory (mode 0700) made under *directory* (the
  system's temporary directory by default); each file is mode 0600.
* Each value is written to a temporary name and renamed into place, so a
  crash never leaves a half-written value under a real name. Files are not
  fsync'd: they never outlive the process.
* Everything is removed by :meth:`close`, at interpreter exit, and when the
  store is garbage-collected (``weakref.finalize``; only by the process that
  made the directory, never by a forked child).
* NumPy arrays and ``memoryview`` values come back memory-mapped
  (copy-on-write: writing to the result never changes the stored value);
  ``bytes``, ``bytearray``, ``str``, ``array.array`` and pickled objects are
  read whole and move back into memory.
* A value that cannot be spilled (not picklable) stays in memory and
  :meth:`status` says why; with ``strict=True`` storing it raises instead.
* No data loss: if a write fails (disk full, I/O error) the value stays in
  memory, the temporary file is removed, and the error is kept in
  :attr:`errors` and reported by the strategy.
"""

from __future__ import annotations

import _thread
import os
import sys
import weakref
from collections import OrderedDict
from collections.abc import MutableMapping

from hivemem._errors import InvalidArgument
from hivemem._live import LiveSet
from hivemem._sizes import format_size, parse_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterator
    from typing import Any, BinaryIO

__all__ = ["SpillStore", "live_stores"]

_MISSING = object()
_NATIVE_FORMATS = frozenset("bBhHiIlLqQnNfd?ce")
_MAX_ERRORS = 20


def _new_lock(store: SpillStore) -> None:
    store._lock = _thread.RLock()


_live: LiveSet[SpillStore] = LiveSet(on_fork=_new_lock)


def live_stores() -> list[SpillStore]:
    """Every open SpillStore (the ``spill`` strategy's work list)."""
    return [s for s in _live.items() if not s.closed]


def _remove_tree(path: str, pid: int) -> None:
    if os.getpid() != pid:  # a forked child must not delete its parent's files
        return
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _too_small(size: int, min_size: int) -> str:
    return f"kept in memory: {format_size(size)} is below min_size {format_size(min_size)}"


def _is_ndarray(value: object) -> bool:
    cls = type(value)
    return cls.__name__ == "ndarray" and cls.__module__ == "numpy"


class _Entry:
    __slots__ = ("error", "kind", "meta", "note", "path", "size", "value")

    def __init__(self, value: object, kind: str, meta: object, size: int) -> None:
        self.value = value
        self.kind = kind
        self.meta: Any = meta
        self.size = size
        self.path: str | None = None
        self.note: str | None = None  # why it stays in memory for good
        self.error: str | None = None  # why the last spill attempt failed


def _classify(value: object) -> tuple[str, object, int]:
    """``(kind, meta, size)``: how *value* is written and read back."""
    cls = type(value)
    if cls is bytes or cls is bytearray:
        return cls.__name__, None, len(value)  # type: ignore[arg-type]
    if cls is str:
        return "str", None, sys.getsizeof(value)
    if _is_ndarray(value):
        arr = value
        if not arr.dtype.hasobject and arr.flags.c_contiguous and arr.nbytes:  # type: ignore[attr-defined]
            return "ndarray", (arr.dtype, arr.shape, arr.flags.writeable), arr.nbytes  # type: ignore[attr-defined]
        return "pickle", None, arr.nbytes  # type: ignore[attr-defined]
    if cls is memoryview:
        mv: memoryview = value  # type: ignore[assignment]
        if mv.c_contiguous and mv.format in _NATIVE_FORMATS and mv.nbytes:
            return "memoryview", (mv.format, mv.shape, mv.readonly), mv.nbytes
        reason = (
            f"a memoryview (format {mv.format!r}) that is empty, not C-contiguous "
            "or not in a native format cannot be mapped back"
        )
        return "unspillable", reason, 0
    import array

    if cls is array.array:
        return "array", value.typecode, value.itemsize * len(value)  # type: ignore[attr-defined, arg-type]
    return "pickle", None, sys.getsizeof(value)


def _write(f: BinaryIO, kind: str, value: object) -> None:
    if kind in ("bytes", "bytearray"):
        f.write(value)  # type: ignore[call-overload]
    elif kind == "str":
        f.write(value.encode("utf-8", "surrogatepass"))  # type: ignore[attr-defined]
    elif kind in ("ndarray", "memoryview", "array"):
        f.write(memoryview(value).cast("B"))  # type: ignore[arg-type]
    else:
        import pickle

        pickle.dump(value, f, protocol=5)


def _read(f: BinaryIO, kind: str, meta: Any, size: int) -> object:
    """Read a value back from the open spill file *f* (mode ``"rb"``, unbuffered)."""
    if kind == "ndarray":
        import numpy  # type: ignore[import-not-found, unused-ignore]

        dtype, shape, writeable = meta
        arr = numpy.memmap(f, dtype=dtype, mode="c", shape=shape)
        if not writeable:
            arr.flags.writeable = False
        return arr
    if kind == "memoryview":
        import mmap

        fmt, shape, readonly = meta
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ if readonly else mmap.ACCESS_COPY)
        return memoryview(mapped).cast(fmt, shape)
    if kind == "bytes":
        return f.read()
    if kind == "bytearray":
        buf = bytearray(size)
        f.readinto(buf)  # type: ignore[attr-defined]
        return buf
    if kind == "str":
        return f.read().decode("utf-8", "surrogatepass")
    if kind == "array":
        import array

        one = array.array(meta, bytes(array.array(meta).itemsize))
        values = one * (size // one.itemsize)  # one allocation of the value's size, filled in place
        f.readinto(memoryview(values).cast("B"))  # type: ignore[attr-defined]
        return values
    import pickle

    return pickle.load(f)


class SpillStore(MutableMapping):  # type: ignore[type-arg]
    """A thread-safe mapping that moves its least recently used values to disk under pressure.

    ``SpillStore(directory=None, *, strict=False, min_size="4KiB")``

    *directory* is where the private spill directory is made (the system's
    temporary directory by default); one that cannot be written raises
    :class:`hivemem.InvalidArgument` at once. With ``strict=True`` a value
    that cannot be spilled raises :class:`hivemem.InvalidArgument` when it is
    stored (the check pickles it once); otherwise it stays in memory.
    Values smaller than *min_size* are never spilled.

    ``store[key]`` reads a spilled value back (memory-mapped for NumPy arrays
    and memoryviews, read whole otherwise, which brings it back into memory);
    :meth:`peek` reads without bringing it back. ``repr(store)`` shows the
    bytes in memory and on disk.
    """

    __module__ = "hivemem"

    def __init__(
        self,
        data: object = None,
        *,
        directory: str | os.PathLike[str] | None = None,
        strict: bool = False,
        min_size: int | str = "4KiB",
    ) -> None:
        if not isinstance(strict, bool):
            raise InvalidArgument(f"strict={strict!r}: expected True or False")
        self.min_size = parse_size(min_size)
        self.strict = strict
        import tempfile

        if directory is not None and not isinstance(directory, (str, os.PathLike)):
            raise InvalidArgument(f"directory={directory!r}: expected a path (str or os.PathLike) or None")
        parent = None if directory is None else os.fspath(directory)
        try:
            self.directory = tempfile.mkdtemp(prefix="hivemem-spill-", dir=parent)
            probe = os.path.join(self.directory, ".probe")
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
        except OSError as exc:
            where = parent if parent is not None else tempfile.gettempdir()
            raise InvalidArgument(
                f"cannot use {where!r} for spill files: {exc.strerror or exc}; "
                "expected an existing, writable directory"
            ) from None
        os.chmod(self.directory, 0o700)
        self._finalizer = weakref.finalize(self, _remove_tree, self.directory, os.getpid())
        self._lock = _thread.RLock()
        self._data: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._counter = 0
        self._memory_total = 0
        self._disk_total = 0
        self._spilled = 0
        self.errors: list[str] = []
        if data is not None:
            self.update(data)  # type: ignore[call-overload]
        _live.add(self)

    # ------------------------------------------------------------ lifecycle
    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Forget every value and delete the spill directory. Idempotent."""
        with self._lock:
            self._data.clear()
            self._memory_total = self._disk_total = self._spilled = 0
            self._finalizer()

    def __enter__(self) -> SpillStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise InvalidArgument(f"this SpillStore ({self.directory}) is closed")

    # ------------------------------------------------------------ mapping
    def __setitem__(self, key: Hashable, value: object) -> None:
        self._check_open()
        kind, meta, size = _classify(value)
        note = None
        if kind == "unspillable":
            note, meta = f"kept in memory: {meta}", None
        elif kind == "pickle" and self.strict:
            import pickle

            try:
                size = len(pickle.dumps(value, protocol=5))
            except Exception as exc:
                raise InvalidArgument(
                    f"SpillStore(strict=True) cannot store {key!r}: the value cannot be pickled "
                    f"({type(exc).__name__}: {exc}); store something picklable or use strict=False"
                ) from None
        if self.strict and note is not None:
            raise InvalidArgument(f"SpillStore(strict=True) cannot store {key!r}: {note}")
        entry = _Entry(value, kind, meta, size)
        entry.note = note
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._forget(old)
            self._data[key] = entry
            self._memory_total += size

    def _forget(self, entry: _Entry) -> None:
        if entry.path is not None:
            self._disk_total -= entry.size
            self._spilled -= 1
            try:
                os.unlink(entry.path)
            except OSError:
                pass
            entry.path = None
        else:
            self._memory_total -= entry.size

    def __delitem__(self, key: Hashable) -> None:
        with self._lock:
            self._forget(self._data.pop(key))

    def __getitem__(self, key: Hashable) -> object:
        return self._get(key, promote=True)

    def peek(self, key: Hashable) -> object:
        """The value, without moving it back into memory or marking it recently used."""
        return self._get(key, promote=False)

    def _get(self, key: Hashable, *, promote: bool) -> object:
        with self._lock:
            entry = self._data[key]
            if promote:
                self._data.move_to_end(key)
            if entry.path is None:
                return entry.value
            path, kind, meta, size = entry.path, entry.kind, entry.meta, entry.size
            # Opened under the lock: a concurrent delete may unlink the name, never the open file.
            f = open(path, "rb", buffering=0)
        with f:
            value = _read(f, kind, meta, size)
        if not promote or kind in ("ndarray", "memoryview"):
            return value  # mapped values stay on disk: the mapping is the value
        with self._lock:
            if self._data.get(key) is not entry or entry.path != path:
                return value  # replaced, deleted or already read back meanwhile
            self._disk_total -= size
            self._memory_total += size
            self._spilled -= 1
            entry.value, entry.path = value, None
        try:
            os.unlink(path)
        except OSError:
            pass
        return value

    def __iter__(self) -> Iterator[Hashable]:
        with self._lock:
            return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    # ------------------------------------------------------------ pressure
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
        from hivemem._validate import callable_or_none

        self._check_open()
        callable_or_none("stop", stop)
        budget = None if nbytes is None else parse_size(nbytes)
        moved = spilled = kept = failed = 0
        with self._lock:
            todo = [k for k, e in self._data.items() if e.path is None and e.note is None]
        for key in todo:
            if budget is not None and moved >= budget:
                break
            if stop is not None and stop():
                break
            with self._lock:
                entry = self._data.get(key)
                if entry is None or entry.path is not None or entry.note is not None:
                    continue
                value = entry.value
                self._counter += 1
                name = os.path.join(self.directory, f"{os.getpid()}-{self._counter}")
            if entry.kind != "pickle" and entry.size < self.min_size:
                entry.note = _too_small(entry.size, self.min_size)
                kept += 1
                continue
            size = self._write_file(name, entry, value)
            del value
            if size is None:
                if entry.note is not None:
                    kept += 1
                else:
                    failed += 1
                continue
            with self._lock:
                if self._data.get(key) is not entry or entry.path is not None or self.closed:
                    os.unlink(name)  # replaced or deleted meanwhile: the file is stale
                    continue
                if entry.kind == "pickle" and size < self.min_size:  # its size is known only now
                    os.unlink(name)
                    self._memory_total += size - entry.size
                    entry.size = size
                    entry.note = _too_small(size, self.min_size)
                    kept += 1
                    continue
                self._memory_total -= entry.size
                entry.size = size
                self._disk_total += size
                self._spilled += 1
                entry.path, entry.value, entry.error = name, _MISSING, None
            moved += size
            spilled += 1
        done: dict[str, object] = {"spilled": spilled, "bytes": moved, "kept": kept, "failed": failed}
        if self.errors and failed:
            done["error"] = self.errors[-1]
        return done

    def _write_file(self, name: str, entry: _Entry, value: object) -> int | None:
        """Write *value* to ``name`` via a temporary file; the size written, or ``None`` on failure."""
        tmp = name + ".tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
            with open(fd, "wb") as f:
                _write(f, entry.kind, value)
                size = f.tell()
            os.rename(tmp, name)
            return size
        except Exception as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            message = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, OSError):
                entry.error = f"write failed, kept in memory: {message}"
                self.errors.append(entry.error)
                del self.errors[:-_MAX_ERRORS]
            else:  # pickling failed: this value can never be spilled
                entry.note = f"kept in memory: cannot be pickled ({message})"
            return None

    def status(self, key: Hashable) -> str:
        """``"in memory"``, ``"on disk"``, or why the value stays in memory."""
        with self._lock:
            entry = self._data[key]
            if entry.path is not None:
                return f"on disk ({format_size(entry.size)})"
            return entry.note or entry.error or "in memory"

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
        state = "closed" if self.closed else f"entries={len(self._data)}, spilled={self._spilled}"
        return (
            f"SpillStore({state}, in_memory={format_size(self._memory_total)!r}, "
            f"on_disk={format_size(self._disk_total)!r}, directory={self.directory!r})"
        )
