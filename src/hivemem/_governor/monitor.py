"""The governor's background thread: sleep until the paced wait ends or a kernel event comes, then tick.

Loaded only by ``MemoryGovernor.start()``: it imports ``threading``, which
``hivemem.optimize()`` must not load. The thread sleeps in ``poll()`` on a
self-pipe (so ``stop()`` wakes it at once) and on every armed wake source:
PSI triggers (``POLLPRI``), cgroup v1 threshold eventfds (``POLLIN``) and
cgroup v2 ``memory.events`` (``POLLPRI``); see ``_measure/psi.py`` and ``notify.py``.
Each source has ``fd``, ``mask``, ``name`` (passed to the tick as its
source) and ``drain(revents)``, which re-arms it and says whether it is still
usable; a dead one is dropped. The tick returns how long to wait next (the
governor paces itself, ``pacing.py``); a tick that returns nothing waits
*interval*. Where ``select.poll`` is missing (Windows) the thread waits on a
``threading.Event`` and polls only.

Fork: ``os.register_at_fork`` tells every running governor. In the child
the thread does not exist; the governor drops the inherited pipe and wake
descriptors (they are shared with the parent) and then stays stopped or
starts a fresh monitor, as its ``after_fork`` option says.
"""

from __future__ import annotations

import _thread
import os
import threading

from hivemem._measure.procfs import close_fd

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    class WakeSource(Protocol):
        fd: int
        mask: int
        name: str

        def drain(self, revents: int) -> bool: ...

        def close(self) -> None: ...

        def to_dict(self) -> dict[str, object]: ...


__all__ = ["Monitor"]

_running: list[Monitor] = []
_running_lock = threading.Lock()


def _after_fork_child() -> None:
    global _running_lock
    _running_lock = threading.Lock()
    monitors = list(_running)
    _running.clear()
    for monitor in monitors:
        monitor._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)


class Monitor:
    """Runs *tick(source)* in a daemon thread: after the wait it returns, or on a wake source's event.

    *on_fork()* is called in a forked child (the thread is gone by then).
    """

    def __init__(
        self,
        tick: Callable[[str], object],
        interval: float,
        triggers: list[WakeSource],
        on_fork: Callable[[], object],
        name: str = "hivemem-governor",
    ) -> None:
        self._tick = tick
        self.interval = interval
        self.triggers = triggers
        self._on_fork = on_fork
        self._name = name
        self._stopping = False
        self._event: threading.Event | None = None
        self._pipe: tuple[int, int] | None = None
        self._pipe_lock = _thread.allocate_lock()  # stop() must never write to a closed, reused fd
        self.thread: threading.Thread | None = None
        self.wakeups = {"poll": 0}
        for trig in triggers:
            self.wakeups.setdefault(trig.name, 0)

    def start(self) -> None:
        import select

        if hasattr(select, "poll"):
            r, w = os.pipe()
            for fd in (r, w):
                os.set_blocking(fd, False)
            self._pipe = (r, w)
        else:  # pragma: no cover - Windows
            self._event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        with _running_lock:
            _running.append(self)
        self.thread.start()

    def _run(self) -> None:
        import select

        poller = None
        pipe_r = -1
        sources: dict[int, WakeSource] = {}
        if self._pipe is not None:
            pipe_r = self._pipe[0]
            poller = select.poll()
            poller.register(pipe_r, select.POLLIN)
            for trig in self.triggers:
                if trig.fd >= 0:
                    sources[trig.fd] = trig
                    poller.register(trig.fd, trig.mask)
        tick = self._tick
        wakeups = self.wakeups
        wait = self.interval
        while not self._stopping:
            source = "poll"
            if poller is not None:
                # Kept lean: at NORMAL a wake-up is most of what the governor costs.
                ready = poller.poll(wait * 1000.0)
                if self._stopping:
                    break
                for fd, revents in ready:
                    if fd == pipe_r:
                        try:
                            os.read(fd, 64)
                        except OSError:
                            pass
                        continue
                    woke = sources.get(fd)
                    if woke is None:
                        continue
                    if woke.drain(revents):
                        if source == "poll":
                            source = woke.name
                    else:  # the group was removed, or the file can no longer be read: stop watching
                        poller.unregister(fd)
                        del sources[fd]
                if ready and source == "poll":
                    continue  # pipe noise or a dropped source: wait again
            else:  # pragma: no cover - Windows
                assert self._event is not None
                if self._event.wait(wait):
                    break
            wakeups[source] = wakeups.get(source, 0) + 1
            try:
                got = tick(source)
            except BaseException:  # the monitor must never die of one bad tick
                got = None
                try:
                    import logging

                    logging.getLogger("hivemem").exception("hivemem governor tick failed")
                except BaseException:
                    pass
            wait = got if isinstance(got, float) and got > 0.0 else self.interval
        self._close_fds()

    def _close_fds(self) -> None:
        with self._pipe_lock:
            pipe, self._pipe = self._pipe, None
            if pipe is not None:
                for fd in pipe:
                    close_fd(fd)
            for trig in self.triggers:
                trig.close()

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the thread to stop and wait up to *timeout* (default: one interval). True if it ended."""
        self._stopping = True
        with self._pipe_lock:
            if self._pipe is not None:
                try:
                    os.write(self._pipe[1], b"x")
                except OSError:
                    pass
        if self._event is not None:  # pragma: no cover - Windows
            self._event.set()
        with _running_lock:
            if self in _running:
                _running.remove(self)
        thread = self.thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(self.interval if timeout is None else timeout)
        return not thread.is_alive()

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive() and not self._stopping

    def _forked(self) -> None:
        # The parent's thread is gone; the pipe and wake descriptors are shared with the parent,
        # so writing or polling them here would disturb it: close our copies.
        self._stopping = True
        self.thread = None
        self._pipe_lock = _thread.allocate_lock()  # may have been held by a parent thread
        self._close_fds()
        try:
            self._on_fork()
        except Exception:
            pass
