"""``cast`` and ``Generic`` for type checkers, at no run-time cost.

``import typing`` costs time and memory that ``import hivemem`` and a pass
must not pay (tests/test_public_api.py checks it stays unloaded), so modules
import these two from here:
under a type checker they are ``typing``'s; at run time ``cast`` returns its
value and ``Generic[T]`` is the bare base class.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Generic as Generic
    from typing import cast as cast
else:

    def cast(kind, value):
        return value

    class Generic:
        __slots__ = ()

        def __class_getitem__(cls, item):
            return cls


__all__ = ["Generic", "cast"]
