"""The SIGINT bridge of ``escalation="raise"``: make the main thread raise a hivemem error.

The monitor thread cannot raise in the main thread; it queues the error and
sends SIGINT to the main thread, whose handler (installed by ``start()``,
from the main thread) raises it. A SIGINT with nothing queued goes to the
handler that was there before. See docs/governor.md.
"""

from __future__ import annotations

import _thread
import sys

from hivemem._errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Any, TypeAlias

    #: What signal.getsignal() returns: a handler, SIG_DFL/SIG_IGN, or None (not set from Python).
    _Handler: TypeAlias = Callable[[int, FrameType | None], Any] | int | None

__all__ = ["install_sigint_bridge", "main_ident", "raise_in_main", "uninstall_sigint_bridge"]


def main_ident() -> int:
    """The main thread's ident, without importing threading when nothing did."""
    if "threading" not in sys.modules:  # no thread was ever started through threading: we are the main thread
        return _thread.get_ident()
    import threading

    ident = threading.main_thread().ident
    return _thread.get_ident() if ident is None else ident


_pending: list[BaseException] = []
_previous_handler: _Handler = None
_bridge_users = 0


def _sigint_bridge(signum: int, frame: FrameType | None) -> None:
    """SIGINT handler while escalation='raise' is active: raise a pending hivemem error, else defer."""
    if _pending:
        raise _pending.pop()
    import signal

    prev = _previous_handler
    if callable(prev):
        prev(signum, frame)
    elif prev == signal.SIG_IGN:
        return
    else:
        raise KeyboardInterrupt


def install_sigint_bridge() -> None:
    global _previous_handler, _bridge_users
    import signal

    if _thread.get_ident() != main_ident():
        raise InvalidArgument(
            "escalation='raise' installs a SIGINT handler to raise MemoryLimitExceeded in the main "
            "thread, so start() must be called from the main thread"
        )
    current = signal.getsignal(signal.SIGINT)
    if current is not _sigint_bridge:
        _previous_handler = current
        signal.signal(signal.SIGINT, _sigint_bridge)
    _bridge_users += 1


def uninstall_sigint_bridge() -> None:
    global _bridge_users
    import signal

    _bridge_users = max(_bridge_users - 1, 0)
    if _bridge_users or _thread.get_ident() != main_ident():
        return
    if signal.getsignal(signal.SIGINT) is _sigint_bridge:
        signal.signal(signal.SIGINT, _previous_handler)


def raise_in_main(exc: BaseException) -> None:
    """Make the main thread raise *exc* at its next bytecode boundary (a safe point).

    A real SIGINT is sent to the main thread only (``pthread_kill``), so a
    blocking call there returns with EINTR and the bridge handler raises.
    If the bridge is not installed any more, the error is logged instead.
    """
    import signal

    if signal.getsignal(signal.SIGINT) is not _sigint_bridge:
        import logging

        logging.getLogger("hivemem").error(
            "hivemem could not raise in the main thread (its SIGINT handler was replaced): %s", exc
        )
        return
    _pending.append(exc)
    try:
        signal.pthread_kill(main_ident(), signal.SIGINT)
    except (AttributeError, OSError):  # pragma: no cover - no pthread_kill
        _thread.interrupt_main()
