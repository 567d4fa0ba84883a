"""Keep a pre-fork server's memory shared: ``prepare_fork()`` and ``after_fork_child()``.

After ``fork()`` the parent and its workers share every page copy-on-write;
a page is copied the first time any process writes to it. CPython writes to
objects it merely looks at (reference counts) and, worse, a full garbage
collection writes into the header of *every* tracked object it visits: one
``gc.collect()`` in a worker copies nearly every page holding a container
that the parent built. Collections in the parent before the fork do harm
too: they free objects in the middle of pages, and the workers' allocations
then fill those holes, writing to shared pages.

The documented remedy (``gc.freeze`` in the CPython docs; Instagram's
"Copy-on-write friendly Python garbage collection"):

1. turn automatic collection off **early** in the parent, so no collection
   punches holes into pages the workers will share;
2. ``gc.freeze()`` **just before** forking: every object tracked so far
   moves to a permanent generation that no collection visits, in the parent
   or in any child;
3. turn automatic collection back **on in each child**: the workers collect
   their own new garbage normally and never touch the frozen objects.

:func:`prepare_fork` does 1 and 2 and may be called any number of times:
call it once early (after imports, before building the shared data) and once
right before each fork (the gunicorn ``pre_fork`` hook in
:mod:`hivemem.integrations.gunicorn` does the latter). :func:`after_fork_child`
does 3. The first :func:`prepare_fork` also registers :func:`after_fork_child`
with ``os.register_at_fork(after_in_child=...)``, so children forked with
``os.fork()`` or ``multiprocessing``'s fork start method get step 3 even if
nobody calls it; calling it again is harmless.

What it costs: objects frozen in the parent are never collected, so cyclic
garbage that exists at the freeze stays until ``gc.unfreeze()``; the parent
itself no longer collects automatically (a pre-fork master allocates little;
call ``gc.collect()`` or ``gc.enable()`` in it if it does). If automatic
collection was already off before the first :func:`prepare_fork` (the program
chose that), the children keep it off.

Measured on this machine: a parent holding 600k small dicts forks 4 workers
that allocate per request and run a full collection; summed PSS of parent +
workers was 741 MiB without this and 289 MiB with it
(``benchmarks/bench_prefork.py`` re-measures it).
"""

from __future__ import annotations

import gc
import os

__all__ = ["after_fork_child", "prepare_fork"]


class _State:
    prepared = False  # prepare_fork() ran in this process (or in the parent that forked it)
    gc_was_enabled = True  # automatic collection was on before the first prepare_fork()
    hook_registered = False


_state = _State()


def prepare_fork() -> int:
    """Make the objects built so far safe to share with workers forked from now on.

    Turns automatic garbage collection off (so no collection punches holes
    into pages the workers will share) and ``gc.freeze()``s every object
    tracked so far (so no collection, here or in a child, writes to them).
    Call it early in the parent and again right before forking; each call
    freezes what was built since the last one.

    Returns the number of frozen objects (``gc.get_freeze_count()``).
    """
    if not _state.prepared:
        _state.gc_was_enabled = gc.isenabled()
        _state.prepared = True
        if not _state.hook_registered and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=after_fork_child)
            _state.hook_registered = True
    gc.disable()
    gc.freeze()
    return gc.get_freeze_count()


def after_fork_child() -> bool:
    """In a forked worker: turn automatic garbage collection back on.

    The objects frozen by :func:`prepare_fork` in the parent stay frozen, so
    the worker's collections never touch (and never copy) their pages.
    Does nothing when :func:`prepare_fork` was not called in the parent, or
    when automatic collection was off before it. Returns whether automatic
    collection is on afterwards.
    """
    if _state.prepared and _state.gc_was_enabled:
        gc.enable()
    return gc.isenabled()
