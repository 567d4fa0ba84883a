"""dedup_strings under faults: no dict ever ends up with fewer or different items.

Faults: an exception at every line while keys are merged, a dict subclass
whose ``__setitem__`` validates, real SIGINT every 15 ms, ``fork()`` while a
background thread deduplicates. Sweeps run in subprocesses
(``tests/faultkit.py``).
"""

from __future__ import annotations

import json
import os

import pytest

import hivemem
from hivemem._reclaim.containers import dedup_registry as registered
from hivemem._reclaim.dedup import dedup_registered

from .conftest import linux_only, run_python

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setattr("hivemem._reclaim.held.other_threads", lambda: 0)
    yield
    registered.clear()


def run_kit(code: str, timeout: float = 300) -> dict[str, object]:
    out = run_python(
        "import gc, json, sys\nfrom tests import faultkit as fk\n"
        "from hivemem._reclaim.dedup import dedup_registered\ngc.freeze()\n" + code,
        timeout=timeout,
        env={"PYTHONPATH": ROOT},
    )
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def fresh(s: str) -> str:
    return "".join(list(s + "!"))[:-1]


@pytest.mark.parametrize("exc", ["KeyboardInterrupt", "MemoryError"])
def test_exception_at_every_line_leaves_every_dict_whole(exc: str) -> None:
    """keys=True over dicts, a validating subclass and a locked dict of dicts: an exception at every
    line event leaves every container with the same items in the same order, no lock held."""
    out = run_kit(
        f"""
res = [fk.sweep(k, dedup_registered, mode="all" if k == "keyed" else "critical", exc={exc},
                compact=False, dedup=True, keys=True, critical=("_reclaim/held.py",))
       for k in ("keyed", "rows", "odict", "subclasses")]
print(json.dumps(res))
"""
    )
    results: list[dict[str, object]] = out  # type: ignore[assignment]
    for r in results:
        assert r["damaged"] == [], r
        assert r["fired"] == r["points"], r
    assert int(results[0]["events"]) > 300  # type: ignore[call-overload]


def test_validating_setitem_subclass_keeps_every_item() -> None:
    """A dict subclass whose __setitem__ raises for some keys: 1000 items before and after, the
    hook never runs (the swap uses dict's own methods), keys merged."""

    class Picky(dict):  # type: ignore[type-arg]
        calls = 0

        def __setitem__(self, key: object, value: object) -> None:
            Picky.calls += 1
            if str(key).endswith("7"):
                raise TypeError(f"refusing {key!r}")
            super().__setitem__(key, value)

    first = {fresh(f"k{i}"): i for i in range(1000)}
    picky = Picky({fresh(f"k{i}"): fresh(f"v{i % 10}") for i in range(1000)})
    before = list(dict.items(picky))
    hivemem.register_container(first, keys=True)
    hivemem.register_container(picky, keys=True)
    stats = dedup_registered()
    assert stats["skipped"] == [] and stats["keys_merged"] == 1000, stats
    assert list(dict.items(picky)) == before and len(picky) == 1000 and Picky.calls == 0
    assert all(a is b for a, b in zip(picky, first, strict=True))


def test_list_subclass_setitem_hook_not_run() -> None:
    """Swapping an equal string in a list subclass never calls its __setitem__."""

    class Audited(list):  # type: ignore[type-arg]
        writes = 0

        def __setitem__(self, i: object, v: object) -> None:
            Audited.writes += 1
            super().__setitem__(i, v)  # type: ignore[index]

    rows = Audited([fresh("GB") for _ in range(100)])
    hivemem.register_container(rows)
    stats = dedup_registered()
    assert stats["strings_merged"] == 99 and Audited.writes == 0 and rows == ["GB"] * 100


def test_ordered_dict_keys_are_left_alone() -> None:
    """An OrderedDict keeps its own order list: its keys are not merged (values still are)."""
    import collections

    od = collections.OrderedDict((fresh("key"), fresh("v")) for _ in range(1))
    od[fresh("other")] = fresh("v")
    od.move_to_end(next(iter(od)))
    before = list(od.items())
    hivemem.register_container([{"key": 1}], keys=True)
    hivemem.register_container(od, keys=True)
    dedup_registered()
    assert list(od.items()) == before and od[next(iter(od))] is od[list(od)[-1]]


SIGINT_TRIALS = """
import random, time
from hivemem._reclaim.containers import dedup_registry as _dedup
sig = fk.SigintSender()
rng = random.Random({seed})
bad, interrupts, merged = [], 0, 0
for trial in range({trials}):
    w = fk.build("keyed", {size}, 2, seed=trial)
    w.register(compact=False, dedup=True, keys=True)
    t0 = time.perf_counter()
    dedup_registered()  # a warm run of the same size: how long a pass takes
    took = time.perf_counter() - t0
    _dedup.clear()
    w = fk.build("keyed", {size}, 2, seed=trial)
    before = w.values()
    w.register(compact=False, dedup=True, keys=True)
    sig.delay = rng.uniform(0, took)
    try:
        sig.sending = True
        try:
            st = dedup_registered()
            merged += st["keys_merged"] > 0
        finally:
            sig.sending = False
    except KeyboardInterrupt:
        interrupts += 1
    sig.drain()
    _dedup.clear()
    if w.values() != before or not w.locks_free() or fk.hivemem_state_clean():
        bad.append(trial)
sig.stop = True
print(json.dumps({{"bad": bad, "interrupts": interrupts, "merged": merged, "sent": sig.sent}}))
"""


@linux_only
def test_repeated_sigint_during_key_merging_changes_nothing() -> None:
    """SIGINT every 15 ms during 18 keys=True passes: every dict keeps all its items, in order (at
    least a third of the passes interrupted; a pass can end before its first signal)."""
    out = run_kit(SIGINT_TRIALS.format(seed=5, trials=18, size=8000), timeout=600)
    assert out["bad"] == [], out
    assert int(out["interrupts"]) >= 6 and int(out["sent"]) >= int(out["interrupts"]), out  # type: ignore[call-overload]


FORK_TRIAL = """
import os, random, threading, time
import hivemem
from hivemem._reclaim import held as _held
_held.FORK_WAIT = {wait}
lock = threading.Lock()
def fresh(s):
    return "".join(list(s + "!"))[:-1]
def make():
    return {{fresh("key") + str(i % 5000): fresh("v") for i in range(20_000)}}
table = make()
hivemem.register_container({{fresh("key") + str(i): 0 for i in range(5000)}}, keys=True)
hivemem.register_container(table, lock=lock, keys=True)
expected = list(table.items())
stop, passes = [False], [0]
def worker():
    while not stop[0]:
        dedup_registered()
        # Undo the merge so that every pass swaps keys again; through hivemem's gate, so
        # that a fork never catches this test's own undo half done either.
        new = dict((fresh(k), v) for k, v in table.items())
        hold = None
        while hold is None:
            hold = _held.begin()
        try:
            while not hold.take(lock):
                pass
            hold.repair = lambda: dict.clear(table) or dict.update(table, new)
            dict.clear(table) or dict.update(table, new)
        finally:
            _held.end()
        passes[0] += 1
t = threading.Thread(target=worker, daemon=True)
t.start()
rng = random.Random(2)
bad = []
for i in range({forks}):
    time.sleep(rng.uniform(0, 0.02))
    pid = os.fork()
    if pid == 0:
        code = 0
        if not _held._gate.acquire(False):
            code |= 2
        if not lock.acquire(False):
            code |= 1
        elif list(table.items()) != expected:
            code |= 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status):
        bad.append((i, os.waitstatus_to_exitcode(status)))
stop[0] = True
t.join()
print(json.dumps({{"bad": bad, "passes": passes[0]}}))
"""


@linux_only
@pytest.mark.parametrize("wait", [10.0, 0.0])
def test_fork_during_background_dedup_sees_whole_dicts(wait: float) -> None:
    """30 forks while a thread merges keys of a 20,000-item dict: no child sees a lock held or a dict
    missing items (wait=0: the child completes a cut swap itself)."""
    out = run_kit(FORK_TRIAL.format(wait=wait, forks=30), timeout=300)
    assert out["bad"] == [] and int(out["passes"]) >= 3, out  # type: ignore[call-overload]


SWITCH_TRIAL = """
import os, sys, threading, json
from hivemem._reclaim import held as _held
_held.FORK_WAIT = 0.0  # never wait for a pass: the child must clean up after any cut
sys.setswitchinterval(1e-6)  # switch threads as often as CPython can
lock, brief = threading.Lock(), threading.Lock()
stop = [False]
def passes():
    while not stop[0]:
        hold = _held.begin()
        if hold is None:
            continue
        try:
            hold.take(lock)
        finally:
            _held.end()
def briefly():
    while not stop[0]:
        if _held.take_briefly(brief, 0.001):
            _held.give_back(brief)
for target in (passes, briefly):
    threading.Thread(target=target, daemon=True).start()
bad = []
for i in range({forks}):
    pid = os.fork()
    if pid == 0:
        os._exit((not lock.acquire(False)) | (not brief.acquire(False)) << 1)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status):
        bad.append((i, os.waitstatus_to_exitcode(status)))
stop[0] = True
print(json.dumps({{"bad": bad}}))
"""


@linux_only
def test_fork_between_taking_and_recording_a_lock_leaves_the_child_nothing_held() -> None:
    """400 forks while two threads take and give back locks through hivemem, switching threads every
    microsecond: a lock is taken and recorded in one call into C, so no child inherits one held
    without a record (before, about half of the children did: the switch after acquire())."""
    out = run_python(SWITCH_TRIAL.format(forks=400), timeout=300)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["bad"] == [], result["bad"][:5]
