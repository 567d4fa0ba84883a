"""Parsing and formatting of memory sizes.

Units are binary, as in pytest-memray: ``KB`` and ``KiB`` both mean 2**10
bytes, ``MB`` and ``MiB`` 2**20, and so on. Sizes are bytes (``int``)
everywhere inside hivemem; they are formatted only at the edges.
"""

from __future__ import annotations

import math

from hivemem._errors import InvalidArgument, InvalidSize, show

__all__ = ["format_size", "parse_size", "mib_to_bytes"]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kb": 2**10,
    "kib": 2**10,
    "m": 2**20,
    "mb": 2**20,
    "mib": 2**20,
    "g": 2**30,
    "gb": 2**30,
    "gib": 2**30,
    "t": 2**40,
    "tb": 2**40,
    "tib": 2**40,
}
_NUMBER_CHARS = frozenset("0123456789._")
#: The largest size parse_size() accepts: what a C ``ssize_t`` holds (8 EiB). Every real limit
#: fits; anything larger would overflow the first float or C conversion it met downstream.
MAX_BYTES = 2**63 - 1


def _bounded(value: object, nbytes: int) -> int:
    if nbytes > MAX_BYTES:
        raise InvalidSize(value, "too large: more than 8 EiB (2**63 - 1 bytes)")
    return nbytes


def _whole_bytes(value: object, number: float, scale: int) -> int:
    if math.isnan(number) or math.isinf(number):
        raise InvalidSize(value, "not a finite number")
    if number < 0:
        raise InvalidSize(value, "negative")
    scaled = number * scale
    if math.isinf(scaled):  # 1e308 TB: finite number, infinite bytes
        raise InvalidSize(value, "too large")
    return _bounded(value, round(scaled))


def parse_size(value: object) -> int:
    """Return *value* as a whole number of bytes.

    Accepts a non-negative ``int`` (bytes), a finite non-negative ``float``
    (bytes, rounded to the nearest byte), or a string made of a number and an
    optional unit: ``"4096"``, ``"90MB"``, ``"90 MiB"``, ``"1.5GB"``.
    Units are case-insensitive and binary (``1 MB == 2**20``).

    Raises :class:`hivemem.InvalidSize` (a ``ValueError``) for anything else,
    naming the value: negative numbers, NaN, infinity, sizes above
    ``MAX_BYTES`` (2**63 - 1), ``bool``, unknown units, empty strings and
    other types.

    >>> parse_size("1.5 GiB")
    1610612736
    >>> parse_size(4096)
    4096
    """
    if isinstance(value, bool):
        raise InvalidSize(value, "a bool is not a size")
    if isinstance(value, int):
        if value < 0:
            raise InvalidSize(value, "negative")
        return _bounded(value, int(value))
    if isinstance(value, float):
        return _whole_bytes(value, value, 1)
    if not isinstance(value, str):
        raise InvalidSize(value, f"a {type(value).__name__} is not a size")
    text = value.strip()
    end = 0
    while end < len(text) and text[end] in _NUMBER_CHARS:
        end += 1
    number_text, unit = text[:end], text[end:].strip().lower()
    if not number_text:
        reason = "negative" if text.startswith("-") else "no number"
        raise InvalidSize(value, reason)
    scale = _UNITS.get(unit)
    if scale is None:
        raise InvalidSize(value, f"unknown unit {text[end:].strip()!r}")
    try:
        whole = int(number_text) if "." not in number_text else None  # exact for integers of any size
        number = float(number_text) if whole is None else 0.0
    except ValueError:
        raise InvalidSize(value, "malformed number") from None
    if whole is not None:
        return _bounded(value, whole * scale)
    return _whole_bytes(value, number, scale)


def mib_to_bytes(value: object, *, name: str = "target_mb") -> int:
    """Convert a number of MiB (``target_mb=`` style arguments) to bytes."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidSize(value, f"{name} must be a number of MiB")
    try:
        number = float(value)
    except OverflowError:  # an int beyond a float's range
        raise InvalidSize(value, f"{name}: too large") from None
    return _whole_bytes(value, number, 2**20)


def format_size(nbytes: float | None, *, signed: bool = False) -> str:
    """Format a byte count for people: ``format_size(432_000_000) == '412.0 MiB'``.

    ``None`` (and a NaN or infinite float) formats as ``'n/a'``. With
    ``signed=True`` a leading ``+`` marks positive values (used for "freed"
    columns). Anything but a number, or a number beyond a float's range,
    raises :class:`hivemem.InvalidArgument`.
    """
    if not isinstance(signed, bool):
        raise InvalidArgument(f"signed={show(signed)}: expected True or False")
    if nbytes is None:
        return "n/a"
    try:
        if isinstance(nbytes, (bool, str, bytes, bytearray)):
            raise TypeError
        value = float(nbytes)  # numpy integers and floats are fine too
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgument(
            f"nbytes={show(nbytes)}: expected a number of bytes (within a float's range)"
        ) from None
    if value != value or value in (float("inf"), float("-inf")):
        return "n/a"
    sign = "-" if value < 0 else ("+" if signed and value > 0 else "")
    size = abs(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{sign}{size:.0f} {unit}" if unit == "B" else f"{sign}{size:.1f} {unit}"
        size /= 1024
    return f"{sign}{size:.1f} TiB"
