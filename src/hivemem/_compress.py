"""CompressedStore: a mapping whose least recently used values are compressed under pressure.

Values stay as they are (``store[k] is value``) until the ``compress``
strategy, or :meth:`CompressedStore.compress`, compresses the least recently
used ones. Reading a compressed value decompresses it transparently and keeps
the result (it is recently used now); :meth:`CompressedStore.peek` reads
without doing either. zstd is used when the optional ``zstandard`` package
is installed (``pip install hivemem[zstd]``), zlib otherwise.

Round trips are exact: ``bytes``, ``bytearray`` and ``str`` (any code point,
lone surrogates included) are compressed as their bytes; everything else
(``array.array``, NumPy arrays, any picklable object) through pickle protocol
5. A value that cannot be pickled, is smaller than *min_size*, or does not
compress by at least *min_ratio* stays as it is, and :meth:`status` says why.

A mutable value (a ``bytearray``, a list) is captured when it is compressed:
mutating the original object afterwards does not change what the store
returns. Read it back through the store after a pass, or store immutable
values.
"""

from __future__ import annotations

import _thread
import sys
from collections import OrderedDict
from collections.abc import MutableMapping

from hivemem._errors import InvalidArgument
from hivemem._live import LiveSet
from hivemem._sizes import format_size, parse_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterator

__all__ = ["CompressedStore", "live_stores"]

_MISSING = object()


def _new_lock(store: CompressedStore) -> None:
    store._lock = _thread.RLock()


_live: LiveSet[CompressedStore] = LiveSet(on_fork=_new_lock)


def live_stores() -> list[CompressedStore]:
    """Every CompressedStore still alive (the ``compress`` strategy's work list)."""
    return _live.items()


def zstd_available() -> bool:
    """Whether the optional ``zstandard`` package can be imported."""
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


def _encode(value: object) -> tuple[str, bytes | bytearray | memoryview]:
    """``(kind, payload)`` for *value*; raises when it cannot be serialized."""
    cls = type(value)
    if cls is bytes:
        return "bytes", value  # type: ignore[return-value]
    if cls is bytearray:
        return "bytearray", value  # type: ignore[return-value]
    if cls is str:
        return "str", value.encode("utf-8", "surrogatepass")  # type: ignore[attr-defined]
    import pickle

    return "pickle", pickle.dumps(value, protocol=5)


def _decode(kind: str, payload: bytes) -> object:
    if kind == "bytes":
        return payload
    if kind == "bytearray":
        return bytearray(payload)
    if kind == "str":
        return payload.decode("utf-8", "surrogatepass")
    import pickle

    return pickle.loads(payload)


def _raw_size(value: object) -> int:
    try:
        return memoryview(value).nbytes  # type: ignore[arg-type]
    except TypeError:
        return sys.getsizeof(value)


def _compressor(codec: str, level: int | None) -> Callable[[bytes | bytearray | memoryview], bytes]:
    if codec == "zstd":
        import zstandard

        compress = zstandard.ZstdCompressor(level=3 if level is None else level).compress

        def squeeze(data: bytes | bytearray | memoryview) -> bytes:
            # python-zstandard returns a bytes object that keeps its compressBound-sized
            # allocation (about the input's size); a copy holds only the compressed bytes.
            out: bytes = compress(data)
            return bytes(memoryview(out)) if len(out) < len(data) // 2 else out

        return squeeze
    import zlib

    lvl = 6 if level is None else level
    return lambda data: zlib.compress(data, lvl)


def _decompress(codec: str, blob: bytes) -> bytes:
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompress(blob)
    import zlib

    return zlib.decompress(blob)


class _Entry:
    __slots__ = ("blob", "codec", "kind", "note", "raw", "stored", "value")

    def __init__(self, value: object) -> None:
        self.value = value
        self.blob: bytes | None = None
        self.kind = ""
        self.codec = ""
        self.note: str | None = None  # why the value is kept as it is
        self.raw = _raw_size(value)
        self.stored = self.raw


class CompressedStore(MutableMapping):  # type: ignore[type-arg]
    """A thread-safe mapping that compresses its least recently used values under pressure.

    ``CompressedStore(codec="auto", level=None, min_ratio=1.5, min_size="1KiB")``

    *codec* is ``"zstd"`` (needs ``zstandard``), ``"zlib"`` or ``"auto"``
    (zstd when installed). *level* is the codec's level (default zstd 3,
    zlib 6). A value is kept compressed only when ``raw / compressed >=
    min_ratio``; values smaller than *min_size* are never compressed.

    ``repr(store)`` shows entry counts and raw and stored sizes; the
    ``raw_bytes`` and ``stored_bytes`` properties give them in bytes.
    """

    __module__ = "hivemem"

    def __init__(
        self,
        data: object = None,
        *,
        codec: str = "auto",
        level: int | None = None,
        min_ratio: float = 1.5,
        min_size: int | str = "1KiB",
    ) -> None:
        if codec not in ("auto", "zstd", "zlib"):
            raise InvalidArgument(f"codec={codec!r}: expected 'auto', 'zstd' or 'zlib'")
        if codec == "zstd" and not zstd_available():
            raise InvalidArgument(
                "codec='zstd' needs the optional 'zstandard' package (pip install 'hivemem[zstd]'); "
                "use codec='auto' to fall back to zlib"
            )
        if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
            raise InvalidArgument(f"level={level!r}: expected None or an int")
        zlib_levels = codec == "zlib" or (codec == "auto" and not zstd_available())
        low, high = (-1, 9) if zlib_levels else (-(2**17), 22)  # zlib's and zstd's own ranges
        if level is not None and not low <= level <= high:
            from hivemem._validate import show

            raise InvalidArgument(f"level={show(level)}: expected {low}..{high} for this codec")
        if (
            isinstance(min_ratio, bool)
            or not isinstance(min_ratio, (int, float))
            or not 0 <= min_ratio <= 1e6
        ):
            raise InvalidArgument(f"min_ratio={min_ratio!r}: expected a number >= 0 (1.5 keeps 2/3 or less)")
        self._codec = codec
        self.level = level
        self.min_ratio = float(min_ratio)
        self.min_size = parse_size(min_size)
        self._lock = _thread.RLock()
        self._data: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._raw_total = 0
        self._stored_total = 0
        self._compressed = 0
        if data is not None:
            self.update(data)  # type: ignore[call-overload]
        _live.add(self)

    @property
    def codec(self) -> str:
        """The codec new compressions use: ``"zstd"`` or ``"zlib"``."""
        if self._codec == "auto":
            self._codec = "zstd" if zstd_available() else "zlib"
        return self._codec

    # ------------------------------------------------------------ mapping
    def __setitem__(self, key: Hashable, value: object) -> None:
        entry = _Entry(value)
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._forget(old)
            self._data[key] = entry
            self._raw_total += entry.raw
            self._stored_total += entry.stored

    def _forget(self, entry: _Entry) -> None:
        self._raw_total -= entry.raw
        self._stored_total -= entry.stored
        if entry.blob is not None:
            self._compressed -= 1

    def __delitem__(self, key: Hashable) -> None:
        with self._lock:
            self._forget(self._data.pop(key))

    def __getitem__(self, key: Hashable) -> object:
        return self._get(key, touch=True)

    def peek(self, key: Hashable) -> object:
        """The value, without decompressing it in place or marking it recently used."""
        return self._get(key, touch=False)

    def _get(self, key: Hashable, *, touch: bool) -> object:
        with self._lock:
            entry = self._data[key]
            if touch:
                self._data.move_to_end(key)
            if entry.blob is None:
                return entry.value
            blob, kind, codec = entry.blob, entry.kind, entry.codec
        value = _decode(kind, _decompress(codec, blob))
        if not touch:
            return value
        with self._lock:
            if self._data.get(key) is entry:
                if entry.blob is not None:  # nobody rehydrated it meanwhile
                    self._stored_total += entry.raw - entry.stored
                    self._compressed -= 1
                    entry.value, entry.blob, entry.stored = value, None, entry.raw
                else:
                    value = entry.value
        return value

    def __iter__(self) -> Iterator[Hashable]:
        with self._lock:
            return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    # ------------------------------------------------------------ pressure
    def compress(
        self, nbytes: int | str | None = None, *, stop: Callable[[], bool] | None = None
    ) -> dict[str, int]:
        """Compress uncompressed values, least recently used first.

        Stops after *nbytes* raw bytes were compressed (all when ``None``) or
        when ``stop()`` returns true (checked before each value). Returns
        counts: ``compressed`` values, their ``raw_bytes`` and ``stored_bytes``,
        and values ``kept`` as they are (too small, ratio too low, not
        picklable). Other threads may read and write meanwhile: a value
        replaced while it was being compressed is left alone.
        """
        from hivemem._validate import callable_or_none

        callable_or_none("stop", stop)
        budget = None if nbytes is None else parse_size(nbytes)
        codec = self.codec
        squeeze = _compressor(codec, self.level)
        done = {"compressed": 0, "raw_bytes": 0, "stored_bytes": 0, "kept": 0}
        with self._lock:
            todo = [k for k, e in self._data.items() if e.blob is None and e.note is None]
        for key in todo:
            if budget is not None and done["raw_bytes"] >= budget:
                break
            if stop is not None and stop():
                break
            with self._lock:
                entry = self._data.get(key)
                if entry is None or entry.blob is not None or entry.note is not None:
                    continue
                value = entry.value
            try:
                kind, payload = _encode(value)
            except Exception as exc:
                entry.note = f"kept: cannot be serialized ({type(exc).__name__}: {exc})"
                done["kept"] += 1
                continue
            finally:
                del value
            raw = len(payload) if kind == "pickle" else entry.raw
            if raw < self.min_size:
                entry.note = f"kept: {format_size(raw)} is below min_size {format_size(self.min_size)}"
                done["kept"] += 1
                continue
            blob = squeeze(payload)
            del payload
            ratio = raw / max(len(blob), 1)
            if ratio < self.min_ratio:
                entry.note = f"kept: compresses only {ratio:.2f}x, below min_ratio {self.min_ratio:g}"
                done["kept"] += 1
                continue
            with self._lock:
                if self._data.get(key) is not entry or entry.blob is not None:
                    continue  # replaced, deleted or compressed by another thread meanwhile
                self._raw_total += raw - entry.raw
                self._stored_total += len(blob) - entry.stored
                self._compressed += 1
                entry.raw = raw
                entry.blob, entry.kind, entry.codec, entry.stored = blob, kind, codec, len(blob)
                entry.value = _MISSING
            done["compressed"] += 1
            done["raw_bytes"] += raw
            done["stored_bytes"] += len(blob)
            del blob
        return done

    def status(self, key: Hashable) -> str:
        """``"compressed (zstd, 8.1x)"``, ``"uncompressed"``, or why the value is kept as it is."""
        with self._lock:
            entry = self._data[key]
            if entry.blob is not None:
                return f"compressed ({entry.codec}, {entry.raw / max(entry.stored, 1):.1f}x)"
            return entry.note or "uncompressed"

    @property
    def raw_bytes(self) -> int:
        """Bytes the values take uncompressed (buffers exactly; other objects: their pickle, once known)."""
        return self._raw_total

    @property
    def stored_bytes(self) -> int:
        """Bytes the values take now: compressed sizes plus uncompressed values."""
        return self._stored_total

    @property
    def compressed_count(self) -> int:
        """How many values are stored compressed."""
        return self._compressed

    def stats(self) -> dict[str, object]:
        """``entries``, ``compressed``, ``raw_bytes``, ``stored_bytes``, ``codec`` (JSON-safe)."""
        return {
            "entries": len(self._data),
            "compressed": self._compressed,
            "raw_bytes": self._raw_total,
            "stored_bytes": self._stored_total,
            "codec": self.codec,
        }

    def __repr__(self) -> str:
        return (
            f"CompressedStore(entries={len(self._data)}, compressed={self._compressed}, "
            f"raw={format_size(self._raw_total)!r}, stored={format_size(self._stored_total)!r}, "
            f"codec={self.codec!r})"
        )
