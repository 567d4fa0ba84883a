"""Run ``optimize()`` on a signal, and keep the last report where ``hivemem status PID`` finds it.

``hivemem.install_signal_handler(signal.SIGUSR2)`` lets an operator reclaim
memory in a running process with ``kill -USR2 <pid>`` and read what happened
with ``hivemem status <pid>``.

How it stays safe:

* The signal handler only writes one byte to a private non-blocking pipe.
  That is all it does: no lock, no allocation worth the name, nothing that
  can deadlock if a second signal interrupts the first handler. A daemon
  thread (``hivemem-signal``) waits on the pipe and runs the pass, outside
  the handler and off the main thread.
* One pass at a time: signals that arrive while a pass runs (this one, or a
  pass someone else started in the process) are counted as *coalesced* and
  start nothing; the pass under way already answers them.
* After every pass in the process (whoever started it) the report is written
  as a small JSON file ``<pid>.json`` in a private runtime directory: the
  directory is created ``0700`` and must be owned by this user and not be
  group/other accessible (otherwise nothing is written and a warning is
  logged); the file is written ``0600`` under a temporary name and renamed,
  so a reader never sees half a report. The directory is
  ``$HIVEMEM_RUNTIME_DIR`` if set, else ``$XDG_RUNTIME_DIR/hivemem`` (or
  ``/run/user/<uid>/hivemem``), else ``/tmp/hivemem-<uid>``. The file is
  removed at normal exit; a file left by a killed process is recognised as
  stale by the process start time it records.
* After ``fork()`` the child gets its own pipe and thread (the handler is
  inherited); its reports go to its own ``<pid>.json``.
"""

from __future__ import annotations

import _thread
import json
import os
import signal
import sys
import time

from hivemem._errors import InvalidArgument, Unavailable
from hivemem._measure.procfs import close_fd, pid_alive

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from types import FrameType
    from typing import Any, Protocol, TypeAlias, TypeGuard

    from hivemem._engine.registry import Registry
    from hivemem._engine.report import OptimizationReport
    from hivemem._levels import Aggressiveness
    from hivemem._measure.reader import Reader

    #: What signal.signal() returns: a handler, SIG_DFL/SIG_IGN, or None (not set from Python).
    _Handler: TypeAlias = Callable[[int, FrameType | None], Any] | int | None

    class _PassSettings(Protocol):
        """What a signal's pass takes from its governor (a :class:`hivemem.MemoryGovernor`)."""

        @property
        def registry(self) -> Registry: ...
        @property
        def reader(self) -> Reader: ...
        @property
        def target(self) -> int | None: ...
        @property
        def limit(self) -> int | None: ...
        def ceiling_for(self, target: int | None) -> Aggressiveness: ...


__all__ = [
    "install_signal_handler",
    "read_status",
    "runtime_dir",
    "status_path",
    "uninstall_signal_handler",
]

_UNCATCHABLE = {getattr(signal, n) for n in ("SIGKILL", "SIGSTOP") if hasattr(signal, n)}


class _State:
    def __init__(self) -> None:
        self.previous: dict[int, _Handler] = {}  # signum -> handler we replaced
        self.rfd = -1
        self.wfd = -1
        self.worker: threading.Thread | None = None
        self.worker_ident: int | None = None
        self.governor: _PassSettings | None = None
        self.received = 0
        self.passes = 0
        self.coalesced = 0
        self.last_signal = 0
        self.written_pid = 0
        self.warned = False
        self.listening = False


_state = _State()
_install_lock = _thread.allocate_lock()


# --------------------------------------------------------------------------- runtime directory


def _candidate_dirs(uid: int) -> list[str]:
    dirs = []
    override = os.environ.get("HIVEMEM_RUNTIME_DIR")
    if override:
        return [override]
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        dirs.append(os.path.join(xdg, "hivemem"))
    run_user = f"/run/user/{uid}"
    if os.path.isdir(run_user):
        dirs.append(os.path.join(run_user, "hivemem"))
    dirs.append(os.path.join("/tmp", f"hivemem-{uid}"))
    out: list[str] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def runtime_dir() -> str:
    """The private directory this process writes its status file to (not created here)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    for d in _candidate_dirs(uid):
        parent = os.path.dirname(d)
        try:
            st = os.stat(parent)
        except OSError:
            continue
        # $XDG_RUNTIME_DIR and /run/user/<uid> must be ours; /tmp is shared by design.
        if d.startswith("/tmp/") or st.st_uid == uid or "HIVEMEM_RUNTIME_DIR" in os.environ:
            return d
    return _candidate_dirs(uid)[-1]


def _private_dir() -> str:
    """Create (0700) or check the runtime directory; raise Unavailable if it is not private."""
    import stat

    path = runtime_dir()
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise Unavailable(f"cannot create runtime directory {path!r}: {exc.strerror or exc}") from None
    st = os.lstat(path)
    uid = os.getuid() if hasattr(os, "getuid") else st.st_uid
    if not stat.S_ISDIR(st.st_mode):
        raise Unavailable(f"runtime directory {path!r} is not a directory (a symlink or file is in the way)")
    if st.st_uid != uid:
        raise Unavailable(f"runtime directory {path!r} belongs to uid {st.st_uid}, not {uid}")
    if st.st_mode & 0o077:
        raise Unavailable(
            f"runtime directory {path!r} has mode {stat.S_IMODE(st.st_mode):o}; expected 700 (private)"
        )
    return path


def status_path(pid: int | None = None) -> str:
    """Where process *pid* (default: this one) writes its last report, from this process's view."""
    return os.path.join(runtime_dir(), f"{os.getpid() if pid is None else pid}.json")


def _start_time(pid: int) -> int | None:
    """The process start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rfind(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _write_json(directory: str, pid: int, payload: dict[str, object]) -> str:
    final = os.path.join(directory, f"{pid}.json")
    tmp = os.path.join(directory, f".{pid}.{_thread.get_ident()}.tmp")
    data = json.dumps(payload, default=str, separators=(",", ":")).encode()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
    except FileExistsError:  # left behind by a crash in the middle of a write
        os.unlink(tmp)
        fd = os.open(tmp, flags, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    return final


def _payload(report: OptimizationReport, trigger: str) -> dict[str, object]:
    import hivemem

    pid = os.getpid()
    return {
        "pid": pid,
        "start_time": _start_time(pid),
        "written": time.time(),
        "trigger": trigger,
        "hivemem": hivemem.__version__,
        "signals": {
            "signal": _signame(_state.last_signal) if _state.last_signal else None,
            "received": _state.received,
            "passes": _state.passes,
            "coalesced": _state.coalesced,
        },
        "headline": report.headline(),
        "report": report.to_dict(),
    }


def _signame(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return str(num)


def _on_report(report: OptimizationReport) -> None:
    """Engine listener: keep every pass's report as this process's status file."""
    trigger = "signal" if _thread.get_ident() == _state.worker_ident else "optimize"
    if trigger == "signal":
        _state.passes += 1  # counted here so the file written for this pass includes it
    try:
        directory = _private_dir()
        _write_json(directory, os.getpid(), _payload(report, trigger))
        _state.written_pid = os.getpid()
    except Exception as exc:
        if not _state.warned:  # once per process: a status file is a nicety, never a failure
            _state.warned = True
            import logging

            logging.getLogger("hivemem").warning("hivemem: cannot write the status file: %s", exc)


def _remove_status_file() -> None:
    if _state.written_pid and _state.written_pid == os.getpid():
        try:
            os.unlink(status_path())
        except OSError:
            pass
        _state.written_pid = 0


def read_status(pid: int) -> dict[str, object] | None:
    """The last report process *pid* wrote, as a dict; ``None`` if it never wrote one.

    The dict is the JSON file's content plus ``"path"`` and ``"stale"``:
    ``stale`` is ``True`` when the process is gone or the pid now belongs to
    another process (its start time differs), so the report is history.
    Looks in every directory the process may have used (``HIVEMEM_RUNTIME_DIR``,
    ``$XDG_RUNTIME_DIR/hivemem``, ``/run/user/<uid>/hivemem``, ``/tmp/hivemem-<uid>``)
    for the process's owner.
    """
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise InvalidArgument(f"pid must be a positive int, got {pid!r}")
    uids = []
    try:
        uids.append(os.stat(f"/proc/{pid}").st_uid)
    except OSError:
        pass
    if hasattr(os, "getuid") and os.getuid() not in uids:
        uids.append(os.getuid())
    best: tuple[float, str] | None = None
    for uid in uids:
        for d in _candidate_dirs(uid):
            path = os.path.join(d, f"{pid}.json")
            try:
                mtime = os.stat(path).st_mtime
            except OSError:
                continue
            if best is None or mtime > best[0]:
                best = (mtime, path)
    if best is None:
        return None
    try:
        with open(best[1], "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    recorded = data.get("start_time")
    alive = os.path.exists(f"/proc/{pid}") if sys.platform.startswith("linux") else pid_alive(pid)
    data["path"] = best[1]
    data["stale"] = not alive or (recorded is not None and _start_time(pid) not in (None, recorded))
    return data


# --------------------------------------------------------------------------- handler and worker


def _handler(signum: int, frame: FrameType | None) -> None:
    # Runs in the main thread between bytecodes, possibly nested in itself:
    # only a write to a non-blocking pipe. A full pipe means a pass is pending.
    _state.received += 1
    _state.last_signal = signum
    try:
        os.write(_state.wfd, b"\x01")
    except OSError:
        _state.coalesced += 1


def _read_all(fd: int) -> tuple[int, str]:
    """Read what waits on the non-blocking *fd*: the bytes read and why it stopped,
    ``"empty"`` (nothing more waiting), ``"eof"`` (the write end closed) or ``"error"``."""
    n = 0
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return n, "empty"
        except OSError:
            return n, "error"
        if not chunk:
            return n, "eof"
        n += len(chunk)


def _run_pass() -> OptimizationReport | None:
    from hivemem._engine.engine import run_pass
    from hivemem._governor.governor import default_governor

    gov: _PassSettings = _state.governor if _state.governor is not None else default_governor()
    # as optimize() does: with a target, climb level by level up to the governor's ceiling
    target = gov.target
    return run_pass(
        gov.registry,
        gov.reader,
        target=target,
        aggressiveness=gov.ceiling_for(target),
        limit=gov.limit,
        blocking=False,
        climb=target is not None,
    )


def _worker(rfd: int) -> None:
    import select

    _state.worker_ident = _thread.get_ident()
    while True:
        try:
            ready, _, _ = select.select([rfd], [], [])
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue
        except (OSError, ValueError):
            return  # the pipe was closed under us
        if not ready:
            continue
        woken, why = _read_all(rfd)
        if why == "error" or (why == "eof" and woken == 0):  # the write end closed: uninstalled
            close_fd(rfd)
            return
        if woken > 1:
            _state.coalesced += woken - 1
        try:
            report = _run_pass()
        except Exception:
            import logging

            logging.getLogger("hivemem").exception("hivemem: optimize() on signal failed")
            report = None
        if report is None:
            _state.coalesced += 1  # another pass was running: it answers this signal
        # Signals that arrived during the pass start nothing: the pass just run answers them.
        late, _ = _read_all(rfd)
        _state.coalesced += late


def _make_pipe() -> tuple[int, int]:
    if hasattr(os, "pipe2"):
        return os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    return rfd, wfd


def _start_worker() -> None:
    import threading

    rfd, wfd = _make_pipe()
    _state.rfd, _state.wfd = rfd, wfd
    thread = threading.Thread(target=_worker, args=(rfd,), name="hivemem-signal", daemon=True)
    _state.worker = thread
    thread.start()


def _stop_worker() -> None:
    wfd, thread = _state.wfd, _state.worker
    _state.wfd = -1
    _state.worker = None
    if wfd >= 0:
        os.close(wfd)  # the worker sees end-of-file and exits
    if thread is not None and thread is not _current_thread():
        thread.join(timeout=5)
    _state.rfd = -1
    _state.worker_ident = None


def _current_thread() -> object:
    import threading

    return threading.current_thread()


def _after_fork_child() -> None:
    # The parent's thread does not exist here and its pipe is shared with the
    # parent: a signal to the child must wake the child. New pipe, new thread.
    if not _state.previous:
        return
    _state.rfd = close_fd(_state.rfd)
    _state.wfd = close_fd(_state.wfd)
    _state.worker = None
    _state.worker_ident = None
    _state.received = _state.passes = _state.coalesced = 0
    _state.written_pid = 0
    _state.warned = False
    try:
        _start_worker()
    except Exception:
        import logging

        logging.getLogger("hivemem").exception("hivemem: cannot restart the signal worker after fork")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)


def _parse_signal(signum: object) -> int:
    if isinstance(signum, str):
        name = signum.strip().upper()
        name = name if name.startswith("SIG") else "SIG" + name
        value = getattr(signal, name, None)
        if not isinstance(value, int):
            raise InvalidArgument(f"unknown signal {signum!r}: expected a name such as 'SIGUSR2' or a number")
        return int(value)
    if isinstance(signum, bool) or not isinstance(signum, int):
        raise InvalidArgument(f"signal must be a signal number or name, got {signum!r}")
    valid = getattr(signal, "valid_signals", lambda: set(range(1, 65)))()
    if signum not in valid:
        raise InvalidArgument(f"invalid signal number {signum!r}")
    return int(signum)


def _is_governor(governor: object) -> TypeGuard[_PassSettings]:
    return all(hasattr(governor, a) for a in ("registry", "reader", "target", "ceiling_for"))


def install_signal_handler(signum: int | str | None = None, *, governor: object = None) -> str:
    """Run an optimize pass whenever this process receives *signum* (default ``SIGUSR2``).

    The handler only wakes a daemon thread that runs the pass with
    *governor*'s registry, reader, target and ceiling (default: the governor
    behind :func:`hivemem.optimize`); with a target it climbs level by level,
    as ``optimize()`` does. A signal that arrives during a
    pass starts no second pass. From now on every pass's report is kept as
    a private JSON file that ``hivemem status PID`` shows.

    Call it from the main thread. Installing it for several signals is
    allowed; :func:`uninstall_signal_handler` restores the previous handlers.
    Returns the path of the status file. Raises :class:`hivemem.Unavailable`
    where signals cannot be used (not the main thread, no such signal on
    this platform) and :class:`hivemem.InvalidArgument` for a bad signal.
    """
    if signum is None:
        if not hasattr(signal, "SIGUSR2"):
            raise Unavailable(f"there is no SIGUSR2 on {sys.platform}; pass another signal")
        signum = signal.SIGUSR2
    num = _parse_signal(signum)
    if num in _UNCATCHABLE:
        raise InvalidArgument(f"signal {_signame(num)} cannot be caught; use SIGUSR1 or SIGUSR2")
    if governor is not None and not _is_governor(governor):
        raise InvalidArgument(f"governor must be a hivemem.MemoryGovernor, got {governor!r}")
    import threading

    if threading.current_thread() is not threading.main_thread():
        raise Unavailable("signal handlers can only be installed from the main thread")
    with _install_lock:
        started = False
        if _state.worker is None:
            _start_worker()
            started = True
        try:
            previous = signal.signal(num, _handler)
        except (OSError, ValueError, RuntimeError) as exc:
            if started:
                _stop_worker()
            raise Unavailable(f"cannot handle signal {num}: {exc}") from None
        if num not in _state.previous:
            _state.previous[num] = previous
        _state.governor = governor
        if not _state.listening:
            from hivemem._engine.engine import subscribe

            subscribe(_on_report)
            _state.listening = True
            import atexit

            atexit.register(_remove_status_file)
    return status_path()


def uninstall_signal_handler(signum: int | str | None = None) -> None:
    """Restore the handler *signum* had before; with no argument, every signal installed.

    When no signal is left, the worker thread stops, reports are no longer
    written, and this process's status file is removed.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        raise Unavailable("signal handlers can only be changed from the main thread")
    with _install_lock:
        nums = list(_state.previous) if signum is None else [_parse_signal(signum)]
        for num in nums:
            if num in _state.previous:
                signal.signal(num, _state.previous.pop(num))
        if _state.previous:
            return
        _stop_worker()
        if _state.listening:
            from hivemem._engine.engine import unsubscribe

            unsubscribe(_on_report)
            _state.listening = False
        _remove_status_file()
        _state.governor = None
        _state.received = _state.passes = _state.coalesced = 0
        _state.last_signal = 0


def stats() -> dict[str, int]:
    """Signals received, passes run and signals coalesced in this process since install."""
    return {"received": _state.received, "passes": _state.passes, "coalesced": _state.coalesced}


def status_extras(pid: int, *, children: bool = False) -> tuple[dict[str, object], str]:
    """What ``hivemem status PID`` adds: the last report the process kept, and ``--children``.

    Returns ``(fields, text)``: JSON-safe fields to merge into the status
    dict (``last_report``, ``children``) and the text to print after the
    status table (empty when there is nothing to add).
    """
    fields: dict[str, object] = {}
    lines: list[str] = []
    if children:
        from hivemem._measure.proctree import process_tree

        tree = process_tree(pid)
        fields["children"] = tree.to_dict()
        lines += [
            "",
            f"process tree of {pid} (PSS shares shared pages fairly; its sum is what the tree costs):",
        ]
        lines += ["  " + row for row in tree.table().splitlines()]
    last = read_status(pid)
    fields["last_report"] = last
    if last is not None:
        written = last.get("written")
        stamp = float(written) if isinstance(written, (int, float)) else 0.0
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
        stale = "  (STALE: that process is gone; this is history)" if last.get("stale") else ""
        signals = last.get("signals") or {}
        lines += ["", f"last optimize pass, kept by the process ({last.get('trigger')}, {when}){stale}:"]
        lines.append(f"  {last.get('headline', '')}")
        report = last.get("report")
        if isinstance(report, dict) and report.get("steps"):
            from hivemem._engine.report import STEP_HEADER, step_row

            step, level, freed, _, note = STEP_HEADER
            lines.append(f"    {step:<16} {level:<10} {freed:>12}  {note}")
            for entry in report.get("steps", []):
                if isinstance(entry, dict):
                    step, level, freed, _, note = step_row(entry)
                    lines.append(f"    {step:<16} {level:<10} {freed:>12}  {note}")
        if isinstance(signals, dict) and signals.get("received"):
            lines.append(
                f"  signals: {signals.get('received')} received, {signals.get('passes')} passes, "
                f"{signals.get('coalesced')} coalesced into a running pass"
            )
        lines.append(f"  file: {last.get('path')}")
    elif pid != os.getpid():
        lines += ["", "no optimize report kept (the process has not called hivemem.install_signal_handler())"]
    return fields, "\n".join(lines).rstrip("\n")
