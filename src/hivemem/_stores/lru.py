"""The skeleton SpillStore and CompressedStore share: a thread-safe LRU mapping with verified reads.

Each value lives either as it is (in memory) or in a stored form (a spill
file, a compressed blob) that carries a CRC-32 taken when it was written.
Reading a stored value checks that checksum (and the stored length) before
anything is decoded; a mismatch raises :class:`hivemem.CorruptedValue`
naming the key and the file, marks the entry damaged (:meth:`status` says
why, later reads raise the same error) and never returns the wrong data.
Why CRC-32: ``docs/cooperative.md`` ("Integrity").

A subclass supplies the stored form through these hooks, all but
``_entry`` and ``_load`` called with the store's lock held:

* ``_entry(key, value)``: a new entry (may refuse the value);
* ``_count(entry)``: add a new entry's bytes to the totals;
* ``_retiring(entry)``: an entry is about to be replaced or deleted;
* ``_fetch(key, entry)``: a ticket for reading its stored form (an open
  file, the blob): a :class:`StoreTicket`, with the entry's ``stored`` and ``crc``;
* ``_load(key, ticket)``: the value, verified (runs outside the lock);
* ``_adopt(entry, ticket, value)``: move a value read by ``store[key]`` back
  into memory, if the entry still holds the form that was read;
* ``_forget(entry)``: drop an entry's stored form and its byte counts;
* ``_describe(entry)``: what :meth:`status` says;
* ``_before_pass()``: tidy up before a pass (``spill()``, ``compress()``) picks its keys.

``entry.stored`` is the stored form (a path, a blob) or ``None`` while the
value is in memory.

Use after :meth:`close` raises :class:`hivemem.InvalidArgument` saying the
store is closed; ``len()`` of a closed store is 0.
"""

from __future__ import annotations

import _thread
import pickle
from collections import OrderedDict
from collections.abc import Hashable, MutableMapping

from hivemem import _validate
from hivemem._errors import CorruptedValue, InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    #: What a store's constructor fills it from, as dict() takes it.
    Initial = Mapping[Hashable, object] | Iterable[tuple[Hashable, object]] | None
    from typing import Any

__all__ = ["MISSING", "LRUStore", "Pickler", "StoreEntry", "StoreTicket", "dumps", "run_passes"]

#: ``entry.value`` of a value that lives only in its stored form.
MISSING: Any = object()


class Pickler(pickle.Pickler):
    """Protocol 5, and notes whether the pickle names a global (a class, a function, a reducer).

    The C pickler calls ``reducer_override`` for every object except None,
    bools and exact ints, floats, str, bytes, bytearray, list, tuple, dict,
    set and frozenset. A pickle made of those alone cannot fail to load, so
    only a pickle with ``names_global`` set is loaded back to prove it
    round-trips (``docs/cooperative.md``, "Integrity").
    """

    def __init__(self, file: Any) -> None:
        super().__init__(file, protocol=5)
        self.names_global = False

    def reducer_override(self, obj: object) -> Any:
        self.names_global = True
        return NotImplemented


def dumps(value: object) -> tuple[bytes, bool]:
    """``(pickle, names_global)`` for *value*."""
    import io

    buf = io.BytesIO()
    pickler = Pickler(buf)
    pickler.dump(value)
    return buf.getvalue(), pickler.names_global


class StoreEntry:
    """One value: as it is (``value``) or stored; ``note``/``error``/``damage`` say why, when."""

    __slots__ = ("crc", "damage", "error", "note", "stored", "value")

    def __init__(self, value: object) -> None:
        self.value = value
        self.stored: Any = None  # the stored form (a path, a blob), or None while in memory
        self.crc = 0
        self.note: str | None = None  # why the value stays as it is for good (until replaced)
        self.error: str | None = None  # why the last attempt to store it failed (retried later)
        self.damage: str | None = None  # why its stored form cannot be read back (set on a failed read)


class StoreTicket:
    """What a read needs, taken under the lock: the entry's stored form and its checksum."""

    __slots__ = ("crc", "stored")

    def __init__(self, entry: StoreEntry) -> None:
        self.stored: Any = entry.stored
        self.crc = entry.crc


class LRUStore(MutableMapping[Hashable, "Any"]):  # values of any type ("Any": no typing at run time)
    """Base of the LRU stores: lookups, LRU order, verified reads, close(). Not public."""

    _lock: _thread.RLock
    _data: OrderedDict[Hashable, Any]
    _closed: bool

    def _init_store(self) -> None:
        self._lock = _thread.RLock()
        self._data = OrderedDict()
        self._closed = False

    # ------------------------------------------------------------ hooks
    def _entry(self, key: Hashable, value: object) -> Any:
        raise NotImplementedError

    def _count(self, entry: Any) -> None:
        raise NotImplementedError

    def _retiring(self, entry: Any) -> None:
        """*entry* is about to leave the mapping (replaced or deleted); ``_forget`` follows."""

    def _fetch(self, key: Hashable, entry: Any) -> Any:
        raise NotImplementedError

    def _load(self, key: Hashable, ticket: Any) -> object:
        raise NotImplementedError

    def _adopt(self, entry: Any, ticket: Any, value: object) -> object:
        raise NotImplementedError

    def _forget(self, entry: Any) -> None:
        raise NotImplementedError

    def _describe(self, entry: Any) -> str:
        raise NotImplementedError

    def _where(self, entry: Any) -> str | None:
        """The file holding *entry*'s stored form, if it has one."""
        return None

    def _closed_detail(self) -> str:
        return "its values were forgotten"

    def _on_close(self) -> None:
        """Release what the stored forms hold (under the lock, after the entries are gone; idempotent)."""

    # ------------------------------------------------------------ lifecycle
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Forget every value and release what the store holds. Idempotent.

        Every step runs again on a second call, so a close() cut short by an
        interrupt finishes the next time.
        """
        with self._lock:
            self._closed = True
            self._data.clear()
            self._on_close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgument(
                f"this {type(self).__name__} is closed ({self._closed_detail()}); make a new one"
            )

    def _after_fork(self) -> None:
        """In a forked child: a new lock (another thread may have held the parent's at the fork)."""
        self._lock = _thread.RLock()

    # ------------------------------------------------------------ mapping
    def __setitem__(self, key: Hashable, value: object) -> None:
        self._check_open()
        entry = self._entry(key, value)
        with self._lock:
            self._check_open()
            old = self._data.get(key)
            if old is not None:
                self._retiring(old)
            # The new entry goes in before the old one is dropped: an interrupt between the two
            # leaves the key holding one of them, never neither.
            self._data[key] = entry
            self._data.move_to_end(key)
            self._count(entry)
            if old is not None:
                self._forget(old)

    def __delitem__(self, key: Hashable) -> None:
        with self._lock:
            self._check_open()
            entry = self._data[key]
            self._retiring(entry)
            del self._data[key]
            self._forget(entry)

    def clear(self) -> None:
        """Remove every value without reading any back (a damaged one included)."""
        with self._lock:
            self._check_open()
            while self._data:
                key, entry = next(iter(self._data.items()))
                self._retiring(entry)
                del self._data[key]
                self._forget(entry)

    def __getitem__(self, key: Hashable) -> object:
        return self._get(key, promote=True)

    def peek(self, key: Hashable) -> object:
        """The value, without bringing it back into memory or marking it recently used."""
        return self._get(key, promote=False)

    def _get(self, key: Hashable, *, promote: bool) -> object:
        with self._lock:
            self._check_open()
            entry = self._data[key]
            if promote:
                self._data.move_to_end(key)
            if entry.damage is not None:
                raise self._corrupted(key, entry.damage, self._where(entry))
            if entry.stored is None:
                return entry.value
            ticket = self._fetch(key, entry)
        try:
            value = self._load(key, ticket)
        except CorruptedValue as exc:
            with self._lock:
                if self._holds(key, entry) and entry.stored is ticket.stored:
                    entry.damage = exc.reason  # that form is bad: later reads raise at once
            raise
        if not promote:
            return value
        with self._lock:
            if not self._holds(key, entry):
                return value  # replaced or deleted meanwhile: the caller still gets what it asked for
            return self._adopt(entry, ticket, value)

    # ------------------------------------------------------------ pressure (spill(), compress())
    def _before_pass(self) -> None:
        """Tidy up before a pass picks its keys (lock held, store open)."""

    def _begin_pass(
        self, nbytes: int | str | None, stop: Callable[[], bool] | None
    ) -> tuple[int | None, list[Hashable]]:
        """``(budget, keys)``: *nbytes* checked, and the keys a pass may store, least recently used first."""
        budget = _validate.size("nbytes", nbytes, allow_none=True)
        _validate.callable_or_none("stop", stop)
        with self._lock:
            self._check_open()
            self._before_pass()
            return budget, self._unstored()

    @staticmethod
    def _pass_over(budget: int | None, spent: int, stop: Callable[[], bool] | None) -> bool:
        """Whether a pass stops before its next value: *budget* bytes are done, or ``stop()`` says so."""
        return (budget is not None and spent >= budget) or (stop is not None and stop())

    def _unstored(self) -> list[Hashable]:
        """Keys whose values are held as they are and may be stored, least recently used first."""
        return [k for k, e in self._data.items() if e.stored is None and e.note is None]

    def _still_unstored(self, key: Hashable) -> Any:
        """*key*'s entry if it is still held as it is and may be stored, else ``None`` (lock held)."""
        entry = self._data.get(key)
        if self._closed or entry is None or entry.stored is not None or entry.note is not None:
            return None
        return entry

    def _holds(self, key: Hashable, entry: object) -> bool:
        """Whether *entry* is still the one stored under *key* (not replaced or deleted meanwhile)."""
        return self._data.get(key) is entry

    def _corrupted(self, key: Hashable, reason: str, path: str | None = None) -> CorruptedValue:
        return CorruptedValue(
            f"{type(self).__name__} value {key!r} cannot be read back: {reason}; "
            "delete the key or store the value again",
            key=key,
            path=path,
            reason=reason,
        )

    def __iter__(self) -> Iterator[Hashable]:
        with self._lock:
            self._check_open()
            return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        self._check_open()
        return key in self._data

    def status(self, key: Hashable) -> str:
        """Where the value is now, or why it stays as it is, or why it cannot be read back."""
        with self._lock:
            self._check_open()
            entry = self._data[key]
            if entry.damage is not None:
                return f"damaged: {entry.damage}"
            return self._describe(entry)


def run_passes(
    stores: list[Any], run: Callable[[Any], dict[str, Any]], stop: Callable[[], bool], totals: dict[str, int]
) -> list[str]:
    """Run *run(store)* (a ``spill()``, a ``compress()``) on each store until ``stop()``, checked before each.

    Adds each pass's counts to *totals* and returns the errors: a store that
    fails (closed meanwhile by another thread) is recorded and the others
    still run; a pass's own ``"error"`` is recorded too.
    """
    errors: list[str] = []
    for store in stores:
        if stop():
            break
        try:
            done = run(store)
        except Exception as exc:  # closed meanwhile by another thread: the other stores still run
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        for key, value in done.items():
            if key == "error":
                errors.append(value)
            else:
                totals[key] = totals.get(key, 0) + value
    return errors
