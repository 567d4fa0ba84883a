"""A shorter GIL switch interval while the governor is racing a memory limit, restored after.

A thread waiting for the GIL gets it once the holder has run for the switch
interval (``sys.getswitchinterval()``, 5 ms by default). The governor's
thread waits once when it wakes and once more after every blocking call of a
pass (a ``/proc`` read, a ``ctypes`` call, a ``poll``), so under a CPU-bound
main thread a pass of a dozen such calls took about 0.2 s while the program
grew 60 MiB. With a 0.2 ms interval each wait is at most 0.2 ms.

The interval is process-wide. While no other thread wants the GIL a short
interval costs nothing (the holder is never asked to drop it); it costs when
several threads compete for it, which then switch more often. So it is
lowered only while the governor is *alert* (``docs/governor.md``, "Passes
under a busy GIL") and restored as soon as it is not, and only if nobody else
changed it meanwhile. A forked child gets the value restored.

Cost: one ``sys.setswitchinterval`` call at each change, none per tick.
"""

from __future__ import annotations

import os
import sys

__all__ = ["SwitchInterval"]

_lowered: list[SwitchInterval] = []


class SwitchInterval:
    """Lower the interpreter's switch interval to *value* seconds on demand; restore it after."""

    __slots__ = ("_ours", "_saved", "value")

    def __init__(self, value: float) -> None:
        self.value = value
        self._saved: float | None = None
        self._ours: float | None = None

    @property
    def lowered(self) -> bool:
        return self._saved is not None

    def lower(self) -> bool:
        """Lower the interval (no-op when already lowered or already shorter). True if it changed now."""
        if self._saved is not None:
            return False
        current = sys.getswitchinterval()
        if current <= self.value:
            return False
        sys.setswitchinterval(self.value)
        self._saved, self._ours = current, sys.getswitchinterval()
        _lowered.append(self)
        return True

    def restore(self) -> bool:
        """Put the saved interval back, unless someone changed it since. True if it was lowered."""
        saved, self._saved = self._saved, None
        if saved is None:
            return False
        try:
            _lowered.remove(self)
        except ValueError:
            pass
        if sys.getswitchinterval() == self._ours:
            sys.setswitchinterval(saved)
        return True

    def to_dict(self) -> dict[str, object]:
        return {"value": self.value, "lowered": self.lowered, "current": sys.getswitchinterval()}


def _after_fork_child() -> None:
    # The child has no governor thread racing anything: give it the interval it started with.
    for switch in list(_lowered):
        switch.restore()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)
