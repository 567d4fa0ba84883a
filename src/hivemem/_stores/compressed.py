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

Every compressed blob carries a CRC-32 taken when it was made (and zstd
frames their own content checksum; zlib streams always have one). Reading
checks the blob, the codec's check and the decompressed length before
anything is decoded; a mismatch raises :class:`hivemem.CorruptedValue`
naming the key and never returns the wrong data. A pickled value is loaded
back once when it is compressed: one that pickles but cannot be unpickled
stays as it is, and :meth:`status` says why.

A mutable value (a ``bytearray``, a list) is captured when it is compressed:
mutating the original object afterwards does not change what the store
returns. Read it back through the store after a pass, or store immutable
values.
"""

from __future__ import annotations

import math
import sys
import zlib

from hivemem import _validate
from hivemem._errors import InvalidArgument
from hivemem._sizes import format_size
from hivemem._stores.live import LiveSet
from hivemem._stores.lru import MISSING, LRUStore, StoreEntry, StoreTicket, dumps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Hashable
    from typing import Any

    from hivemem._stores.lru import Initial

__all__ = ["MAX_RATIO", "CompressedStore", "live_stores"]

#: Largest ``min_ratio`` accepted (zstd turns 1 MiB of zeros into ~40 bytes: 26,000x).
MAX_RATIO = 1e6
#: Level bounds per codec: zlib's own; zstd's fast negative levels down to ZSTD_minCLevel.
LEVELS = {"zlib": (-1, 9), "zstd": (-131072, 22)}


_live: LiveSet[CompressedStore] = LiveSet(on_fork=lambda store: store._after_fork())


def live_stores() -> list[CompressedStore]:
    """Every open CompressedStore still alive (the ``compress`` strategy's work list)."""
    return [s for s in _live.items() if not s.closed]


def zstd_available() -> bool:
    """Whether the optional ``zstandard`` package can be imported."""
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


def _encode(value: object) -> tuple[str, bytes | bytearray | memoryview, bool]:
    """``(kind, payload, names_global)`` for *value*; raises when it cannot be serialized."""
    if type(value) is bytes:
        return "bytes", value, False
    if type(value) is bytearray:
        return "bytearray", value, False
    if type(value) is str:
        return "str", value.encode("utf-8", "surrogatepass"), False
    payload, names_global = dumps(value)
    return "pickle", payload, names_global


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
    """Bytes *value* holds: its buffer, else a NumPy array's ``nbytes`` (datetime64 has no buffer)."""
    anything: Any = value  # a buffer, a NumPy array (no types for it: optional) or anything else
    try:
        return memoryview(anything).nbytes
    except Exception:
        pass
    cls = type(value)
    if cls.__name__ == "ndarray" and cls.__module__ == "numpy":
        return int(anything.nbytes)
    try:
        return sys.getsizeof(value)
    except Exception:
        return 0


def _compressor(codec: str, level: int | None) -> Callable[[bytes | bytearray | memoryview], bytes]:
    if codec == "zstd":
        import zstandard

        # write_checksum: the frame carries the content's checksum, checked on decompression.
        compress = zstandard.ZstdCompressor(level=3 if level is None else level, write_checksum=True).compress

        def squeeze(data: bytes | bytearray | memoryview) -> bytes:
            # python-zstandard returns a bytes object that keeps its compressBound-sized
            # allocation (about the input's size); a copy holds only the compressed bytes.
            out: bytes = compress(data)
            return bytes(memoryview(out)) if len(out) < len(data) // 2 else out

        return squeeze
    lvl = 6 if level is None else level
    return lambda data: zlib.compress(data, lvl)


def _decompress(codec: str, blob: bytes) -> bytes:
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompress(blob)
    return zlib.decompress(blob)


class _Entry(StoreEntry):
    __slots__ = ("codec", "kind", "plen", "raw", "size")

    def __init__(self, value: object) -> None:
        super().__init__(value)
        self.kind = ""
        self.codec = ""
        self.plen = 0  # length of the payload that was compressed
        self.raw = _raw_size(value)
        self.size = self.raw  # bytes it takes now


class _Ticket(StoreTicket):
    __slots__ = ("codec", "kind", "plen")

    stored: bytes

    def __init__(self, entry: _Entry) -> None:
        super().__init__(entry)
        self.kind = entry.kind
        self.codec = entry.codec
        self.plen = entry.plen


class CompressedStore(LRUStore):
    """A thread-safe mapping that compresses its least recently used values under pressure.

    ``CompressedStore(codec="auto", level=None, min_ratio=1.5, min_size="1KiB")``

    *codec* is ``"zstd"`` (needs ``zstandard``), ``"zlib"`` or ``"auto"``
    (zstd when installed). *level* is the codec's level (default zstd 3,
    zlib 6; zlib takes -1 to 9, zstd -131072 to 22), checked here. A value
    is kept compressed only when ``raw / compressed >= min_ratio`` (0 to
    ``MAX_RATIO``); values smaller than *min_size* are never compressed.

    Reads are checked against the checksum taken at compression: a damaged
    blob raises :class:`hivemem.CorruptedValue`. ``repr(store)`` shows entry
    counts and raw and stored sizes; the ``raw_bytes`` and ``stored_bytes``
    properties give them in bytes. :meth:`close` forgets every value.
    """

    __module__ = "hivemem"

    def __init__(
        self,
        data: Initial = None,
        *,
        codec: str = "auto",
        level: int | None = None,
        min_ratio: float = 1.5,
        min_size: int | str = "1KiB",
    ) -> None:
        if codec not in ("auto", "zstd", "zlib"):
            raise InvalidArgument(f"codec={_validate.show(codec)}: expected 'auto', 'zstd' or 'zlib'")
        if codec == "zstd" and not zstd_available():
            raise InvalidArgument(
                "codec='zstd' needs the optional 'zstandard' package (pip install 'hivemem[zstd]'); "
                "use codec='auto' to fall back to zlib"
            )
        self._codec = codec
        if level is not None:
            low, high = LEVELS[self.codec]  # resolves 'auto' now: the bounds depend on the codec
            if isinstance(level, bool) or not isinstance(level, int) or not low <= level <= high:
                raise InvalidArgument(
                    f"level={_validate.show(level)}: expected None or a whole number from {low:,} "
                    f"to {high:,} (the {self.codec} codec's levels)"
                )
        self.level = level
        self.min_ratio = _ratio(min_ratio)
        self.min_size: int = _validate.size("min_size", min_size)
        self._init_store()
        self._raw_total = 0
        self._stored_total = 0
        self._compressed = 0
        if data is not None:
            self.update(data)
        _live.add(self)

    @property
    def codec(self) -> str:
        """The codec new compressions use: ``"zstd"`` or ``"zlib"``."""
        if self._codec == "auto":
            self._codec = "zstd" if zstd_available() else "zlib"
        return self._codec

    def _on_close(self) -> None:
        self._raw_total = self._stored_total = self._compressed = 0
        _live.discard(self)

    # ------------------------------------------------------------ mapping
    def _entry(self, key: Hashable, value: object) -> _Entry:
        return _Entry(value)

    def _count(self, entry: _Entry) -> None:
        self._raw_total += entry.raw
        self._stored_total += entry.size

    def _forget(self, entry: _Entry) -> None:
        self._raw_total -= entry.raw
        self._stored_total -= entry.size
        if entry.stored is not None:
            self._compressed -= 1

    def _fetch(self, key: Hashable, entry: _Entry) -> _Ticket:
        return _Ticket(entry)

    def _load(self, key: Hashable, t: _Ticket) -> object:
        crc = zlib.crc32(t.stored)
        if crc != t.crc:
            raise self._corrupted(
                key, f"its compressed form fails its checksum (crc32 {crc:#010x}, made {t.crc:#010x})"
            )
        try:
            payload = _decompress(t.codec, t.stored)
        except MemoryError:
            raise
        except Exception as exc:  # zlib.error, ZstdError: the codec's own content check failed
            raise self._corrupted(
                key, f"its compressed form does not decompress ({type(exc).__name__}: {exc})"
            ) from None
        if len(payload) != t.plen:
            raise self._corrupted(
                key, f"its compressed form decompresses to {len(payload):,} bytes, {t.plen:,} were compressed"
            )
        return _decode(t.kind, payload)

    def _adopt(self, entry: _Entry, t: _Ticket, value: object) -> object:
        if entry.stored is not t.stored:
            return entry.value if entry.stored is None else value  # decompressed by another thread meanwhile
        self._stored_total += entry.raw - entry.size
        self._compressed -= 1
        entry.value = value
        entry.stored = None
        entry.size = entry.raw
        return value

    # ------------------------------------------------------------ pressure
    def compress(
        self, nbytes: int | str | None = None, *, stop: Callable[[], bool] | None = None
    ) -> dict[str, int]:
        """Compress uncompressed values, least recently used first.

        Stops after *nbytes* raw bytes were compressed (all when ``None``) or
        when ``stop()`` returns true (checked before each value). Returns
        counts: ``compressed`` values, their ``raw_bytes`` and ``stored_bytes``,
        values ``kept`` as they are (too small, ratio too low, not
        picklable or not unpicklable) and ``failed`` ones (no memory for the
        work: they stay as they are and are retried). Other threads may read
        and write meanwhile: a value replaced while it was being compressed
        is left alone.
        """
        budget, todo = self._begin_pass(nbytes, stop)
        codec = self.codec
        squeeze = _compressor(codec, self.level)
        done = {"compressed": 0, "raw_bytes": 0, "stored_bytes": 0, "kept": 0, "failed": 0}
        for key in todo:
            if self._pass_over(budget, done["raw_bytes"], stop):
                break
            with self._lock:
                entry = self._still_unstored(key)
                if entry is None:
                    continue
                value = entry.value
            made = self._squeeze(entry, value, squeeze)
            del value
            if made is None:
                done["kept" if entry.note is not None else "failed"] += 1
                continue
            kind, plen, raw, blob = made
            crc = zlib.crc32(blob)
            with self._lock:
                if not self._holds(key, entry) or entry.stored is not None or self._closed:
                    continue  # replaced, deleted or compressed by another thread meanwhile
                self._raw_total += raw - entry.raw
                self._stored_total += len(blob) - entry.size
                self._compressed += 1
                entry.raw, entry.size, entry.plen, entry.crc = raw, len(blob), plen, crc
                entry.kind, entry.codec, entry.error = kind, codec, None
                entry.stored = blob  # from here on reads decompress ...
                entry.value = MISSING  # ... and the value can go
            done["compressed"] += 1
            done["raw_bytes"] += raw
            done["stored_bytes"] += len(blob)
            del blob
        return done

    def _squeeze(
        self, entry: _Entry, value: object, squeeze: Callable[[bytes | bytearray | memoryview], bytes]
    ) -> tuple[str, int, int, bytes] | None:
        """``(kind, payload length, raw size, blob)``, or ``None``: ``entry.note``/``error`` say why."""
        refused = "cannot be serialized"
        try:
            kind, payload, names_global = _encode(value)
            if names_global:
                import pickle

                refused = "pickles but cannot be unpickled"
                pickle.loads(payload)  # a value that pickles but cannot be unpickled must not be dropped
        except MemoryError as exc:
            entry.error = f"failed, kept: {type(exc).__name__}: {exc}"
            return None
        except Exception as exc:
            entry.note = f"kept: {refused} ({type(exc).__name__}: {exc})"
            return None
        plen = len(payload)
        raw = plen if kind == "pickle" else entry.raw
        if raw < self.min_size:
            entry.note = f"kept: {format_size(raw)} is below min_size {format_size(self.min_size)}"
            return None
        try:
            blob = squeeze(payload)
        except Exception as exc:
            entry.error = f"failed, kept: {type(exc).__name__}: {exc}"
            return None
        del payload
        ratio = raw / max(len(blob), 1)
        if ratio < self.min_ratio:
            entry.note = f"kept: compresses only {ratio:.2f}x, below min_ratio {self.min_ratio:g}"
            return None
        return kind, plen, raw, blob

    def _describe(self, entry: _Entry) -> str:
        if entry.stored is not None:
            return f"compressed ({entry.codec}, {entry.raw / max(entry.size, 1):.1f}x)"
        return entry.note or entry.error or "uncompressed"

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
        state = "closed, " if self._closed else ""
        return (
            f"CompressedStore({state}entries={len(self._data)}, compressed={self._compressed}, "
            f"raw={format_size(self._raw_total)!r}, stored={format_size(self._stored_total)!r}, "
            f"codec={self.codec!r})"
        )


def _ratio(value: object) -> float:
    """*min_ratio*: a finite number from 0 to MAX_RATIO."""
    ok = False
    if not isinstance(value, bool) and isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            ok = False
        else:
            ok = math.isfinite(number) and 0 <= number <= MAX_RATIO
    if not ok:
        raise InvalidArgument(
            f"min_ratio={_validate.show(value)}: expected a number from 0 to {MAX_RATIO:,.0f} "
            "(1.5 keeps values that compress to 2/3 or less)"
        )
    return number
