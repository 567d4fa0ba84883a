"""Kernel notifications that wake the governor at a memory crossing, instead of a poll finding it late.

Two sources besides the PSI triggers of ``_measure/psi.py``; the governor's monitor
``poll()``\\ s every armed one together with its stop pipe:

**cgroup v1 memory thresholds** (:class:`CgroupThresholds`). For each bound,
the governor writes ``"<eventfd> <fd of memory.usage_in_bytes> <bytes>"`` to
the group's ``cgroup.event_control``; the kernel signals the eventfd each time
the group's usage crosses one of them, up or down. It checks every 128 page
charges per CPU (about 0.5 MiB), so the wake-up comes within a fraction of a
MiB of the crossing. Closing the eventfd unregisters them all.
The group's usage is not this process's RSS: it counts page cache, other
processes of the group, and not the pages charged to the group the process
was in when it touched them. The bounds are RSS values shifted by the
usage-minus-RSS gap measured when they are armed; the governor re-aims them
when that gap drifts (at most every few seconds), judges by RSS as always,
and its paced polls bound how late a mis-aimed wake-up can leave it. The
control file is writable by anyone the group's directory lets in; where it
is not (or there is no v1 memory controller) :func:`open_thresholds` raises
:class:`hivemem.Unavailable` with the reason.

**cgroup v2 memory.events** (:class:`CgroupEvents`). v2 has no thresholds.
Its ``memory.events`` file changes when the group goes over ``memory.high``
(``high``) or hits ``memory.max`` (``max``, ``oom``), and a ``poll()`` for
``POLLPRI`` returns at each change. That is the kernel already reclaiming,
so it is a late signal, armed on the nearest group with a limit.

Cost: nothing per tick. One wake-up per crossing, and one ``read`` of 8 bytes
(eventfd) or of the small events file to re-arm.
"""

from __future__ import annotations

import os

from hivemem._errors import Unavailable
from hivemem._measure.procfs import close_fd

__all__ = ["CgroupEvents", "CgroupThresholds", "open_events", "open_thresholds"]

POLLIN, POLLPRI, POLLERR, POLLNVAL = 0x001, 0x002, 0x008, 0x020


class CgroupThresholds:
    """An eventfd the kernel signals when a cgroup v1 group's usage crosses one of its marks.

    ``rss_marks`` are the RSS values the governor wants to hear about; ``marks``
    the usage values armed for them (shifted by ``shift``, usage minus RSS when
    armed). ``fd``/``mask``/``name``/``drain()``/``close()``/``to_dict()`` are
    what the monitor uses from every wake source.
    """

    __slots__ = ("_control", "_usage_fd", "fd", "group", "marks", "rearmed", "rss_marks", "shift")
    mask = POLLIN
    name = "cgroup"

    def __init__(self, group: str, usage_fd: int, rss_marks: list[int]) -> None:
        self.group, self._usage_fd, self.rss_marks = group, usage_fd, rss_marks
        self._control = os.path.join(group, "cgroup.event_control")
        self.fd, self.shift, self.rearmed = -1, 0, 0
        self.marks: list[int] = []

    def _arm(self, rss: int) -> int:
        """A new eventfd with every mark registered for the usage-minus-RSS gap now."""
        shift = self.usage() - rss
        marks = sorted({max(m + shift, 1) for m in self.rss_marks})
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            ctl = os.open(self._control, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                for mark in marks:  # one registration per write
                    os.write(ctl, f"{efd} {self._usage_fd} {mark}".encode("ascii"))
            finally:
                os.close(ctl)
        except OSError:
            os.close(efd)
            raise
        self.marks, self.shift = marks, shift
        return efd

    def rearm(self, rss: int, tolerance: int) -> bool:
        """Re-aim the marks when the usage-minus-RSS gap moved by more than *tolerance* bytes.

        The new eventfd takes over the old descriptor number (``dup2``), so the
        monitor keeps polling the same fd; the old eventfd's last reference goes,
        and with it every threshold registered on it. True when re-armed.
        """
        if self.fd < 0 or abs(self.usage() - rss - self.shift) <= tolerance:
            return False
        efd = self._arm(rss)
        try:
            os.dup2(efd, self.fd, inheritable=False)
        finally:
            os.close(efd)
        self.rearmed += 1
        return True

    def drain(self, revents: int) -> bool:
        """Reset the eventfd's counter; ``False`` when the descriptor is no longer usable."""
        if revents & (POLLERR | POLLNVAL):
            return False
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            pass
        except OSError:
            return False
        return True

    def usage(self) -> int:
        """The group's ``memory.usage_in_bytes`` now (raises ``OSError``/``ValueError``)."""
        return int(os.pread(self._usage_fd, 64, 0))

    def close(self) -> None:
        self.fd = close_fd(self.fd)
        self._usage_fd = close_fd(self._usage_fd)

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": "cgroup v1 memory thresholds",
            "group": self.group,
            "marks": list(self.marks),
            "shift": self.shift,
            "rearmed": self.rearmed,
        }

    def __repr__(self) -> str:
        return f"CgroupThresholds({self.group!r}, marks={len(self.marks)}, shift={self.shift})"


def open_thresholds(group: str | None, marks: list[int], rss: int) -> CgroupThresholds:
    """Arm cgroup v1 usage thresholds for *marks* (RSS bytes) on *group* (a v1 memory directory).

    *rss* is this process's RSS now: with the group's usage it gives the
    shift applied to every mark (usage minus RSS), so a mark fires when this
    process's RSS reaches it as long as the rest of the group holds still;
    :meth:`CgroupThresholds.rearm` re-aims them when it does not. Raises
    :class:`hivemem.Unavailable` saying why when they cannot be armed.
    """
    if group is None:
        raise Unavailable("no cgroup v1 memory controller for this process")
    if getattr(os, "eventfd", None) is None:
        raise Unavailable("os.eventfd is missing (Python >= 3.10 on Linux)")
    usage_path = os.path.join(group, "memory.usage_in_bytes")
    try:
        usage_fd = os.open(usage_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise Unavailable(f"cannot open {usage_path}: {exc.strerror or exc}") from None
    src = CgroupThresholds(group, usage_fd, list(marks))
    try:
        src.fd = src._arm(rss)
    except (OSError, ValueError) as exc:
        src.close()
        why = getattr(exc, "strerror", None) or exc
        raise Unavailable(f"cannot arm cgroup v1 thresholds through {src._control}: {why}") from None
    return src


class CgroupEvents:
    """A descriptor on a cgroup v2 ``memory.events`` file: ``POLLPRI`` when a counter changes."""

    __slots__ = ("fd", "path")
    mask = POLLPRI
    name = "memory.events"

    def __init__(self, fd: int, path: str) -> None:
        self.fd, self.path = fd, path

    def drain(self, revents: int) -> bool:
        """Re-read the file (which re-arms the notification); ``False`` once it cannot be read."""
        if revents & POLLNVAL:
            return False
        try:
            os.pread(self.fd, 4096, 0)
        except OSError:
            return False  # the group is gone: a removed kernfs file polls as an error forever
        return True

    def close(self) -> None:
        self.fd = close_fd(self.fd)

    def to_dict(self) -> dict[str, object]:
        return {"kind": "cgroup v2 memory.events", "path": self.path}

    def __repr__(self) -> str:
        return f"CgroupEvents({self.path!r})"


def limited_v2_group(group: str | None) -> str | None:
    """The nearest group at or above *group* (a v2 directory) with ``memory.max`` or ``memory.high`` set."""
    current = group
    while current and os.path.isfile(os.path.join(current, "memory.events")):
        for name in ("memory.max", "memory.high"):
            try:
                with open(os.path.join(current, name), encoding="ascii") as f:
                    value = f.read().strip()
            except OSError:
                continue
            if value and value != "max":
                return current
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return None


def open_events(group: str | None) -> CgroupEvents:
    """Watch ``memory.events`` of the nearest limited v2 group from *group*; :class:`Unavailable` if none."""
    if group is None:
        raise Unavailable("no cgroup v2 group for this process")
    limited = limited_v2_group(group)
    if limited is None:
        raise Unavailable(f"no cgroup v2 group at or above {group} sets memory.max or memory.high")
    path = os.path.join(limited, "memory.events")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise Unavailable(f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        os.pread(fd, 4096, 0)  # the first read arms the notification
    except OSError as exc:
        os.close(fd)
        raise Unavailable(f"cannot read {path}: {exc.strerror or exc}") from None
    return CgroupEvents(fd, path)
