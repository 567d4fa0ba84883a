"""gunicorn server hooks: share the preloaded app copy-on-write, and reclaim on ``SIGUSR2``.

Import the hooks into ``gunicorn.conf.py`` (gunicorn looks hooks up by name
in its config module)::

    import hivemem
    from hivemem.integrations.gunicorn import child_exit, post_fork, post_worker_init, pre_fork

    hivemem.prepare_fork()   # early: no collection in the master from here on
    preload_app = True

``pre_fork``          :func:`hivemem.prepare_fork` in the master before each worker is forked
``post_fork``         :func:`hivemem.after_fork_child` in the new worker
``post_worker_init``  :func:`hivemem.install_signal_handler` (``SIGUSR2``) in each worker, after
                      gunicorn has reset the worker's signals; ``kill -USR2 <worker pid>`` then
                      runs a pass there (never signal the master: USR2 re-executes it)
``child_exit``        with prometheus_client's multiprocess mode on, marks the dead worker's
                      metric files dead (``multiprocess.mark_process_dead``)

This module does not import gunicorn. Every hook logs its failure on the
server's logger and never raises into gunicorn: memory tuning must not stop
a worker from booting.
"""

from __future__ import annotations

import os
from typing import cast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    class _Worker(Protocol):
        """What ``child_exit`` reads of gunicorn's worker object."""

        pid: int


__all__ = ["child_exit", "post_fork", "post_worker_init", "pre_fork"]


def _log_failure(owner: object, what: str) -> None:
    log = getattr(owner, "log", None)
    if log is None:
        import logging

        log = logging.getLogger("hivemem")
    try:
        log.exception("hivemem: %s failed; continuing without it", what)
    except Exception:  # pragma: no cover - a broken logger must not break the hook
        pass


def pre_fork(server: object, worker: object) -> None:
    """Master, before forking each worker: freeze everything built so far (``hivemem.prepare_fork``)."""
    try:
        from hivemem._governor.fork import prepare_fork

        prepare_fork()
    except Exception:
        _log_failure(server, "prepare_fork()")


def post_fork(server: object, worker: object) -> None:
    """Worker, right after the fork: automatic GC back on (``hivemem.after_fork_child``)."""
    try:
        from hivemem._governor.fork import after_fork_child

        after_fork_child()
    except Exception:
        _log_failure(server, "after_fork_child()")


def post_worker_init(worker: object) -> None:
    """Worker, once booted: ``SIGUSR2`` runs an optimize pass (``hivemem.install_signal_handler``).

    The signal can be changed with the environment variable
    ``HIVEMEM_SIGNAL`` (a name such as ``SIGUSR1``), or turned off with
    ``HIVEMEM_SIGNAL=off``.
    """
    choice = os.environ.get("HIVEMEM_SIGNAL", "SIGUSR2").strip()
    if choice.lower() in ("", "0", "off", "none", "no"):
        return
    try:
        from hivemem._governor.signals import install_signal_handler

        install_signal_handler(choice)
    except Exception:
        _log_failure(worker, f"install_signal_handler({choice!r})")


def child_exit(server: object, worker: _Worker) -> None:
    """Master, after a worker exits: drop its live prometheus gauges (multiprocess mode only)."""
    if not (os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")):
        return
    try:
        from prometheus_client import multiprocess

        mark_dead = cast("Callable[[int], None]", multiprocess.mark_process_dead)  # not annotated upstream
        mark_dead(worker.pid)
    except Exception:
        _log_failure(server, "prometheus_client.multiprocess.mark_process_dead()")
