"""hivemem.integrations.dask: a governor in every Dask worker, thresholds under Dask's, failures logged."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hivemem

pytest.importorskip("distributed")

from hivemem.integrations import dask as hd


@pytest.fixture(autouse=True)
def _restore_environ():  # type: ignore[no-untyped-def]
    """Dask's Nanny writes MALLOC_TRIM_THRESHOLD_ (and more) into this process's os.environ;
    left there it changes glibc's behaviour in every later test's subprocess."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


MiB = 2**20


class FakeMemoryManager:
    def __init__(self, limit: int | None, **fractions: object) -> None:
        self.memory_limit = limit
        self.memory_target_fraction = fractions.get("target", 0.6)
        self.memory_spill_fraction = fractions.get("spill", 0.7)
        self.memory_pause_fraction = fractions.get("pause", 0.8)


class FakeWorker:
    def __init__(
        self, address: str = "tcp://127.0.0.1:1", limit: int | None = 600 * MiB, **fr: object
    ) -> None:
        self.address = address
        self.memory_manager = FakeMemoryManager(limit, **fr)


def test_default_thresholds_sit_below_dasks_actions() -> None:
    """With Dask's defaults hivemem enters at 0.60/0.65/0.75 and releases under Dask's target 0.60."""
    th = hd.thresholds_for()
    assert th == {"moderate": (0.6, 0.5), "high": (0.65, 0.55), "critical": (0.75, 0.65)}
    for enter, release in th.values():
        assert release < enter
    assert th["high"][0] < hd.DASK_DEFAULTS["spill"]  # before Dask spills on process memory
    assert th["critical"][0] < hd.DASK_DEFAULTS["pause"]  # before Dask pauses the worker
    assert max(r for _, r in th.values()) < hd.DASK_DEFAULTS["spill"]


@pytest.mark.parametrize(
    ("target", "spill", "pause"),
    [(0.5, 0.6, 0.7), (0.6, 0.7, 0.8), (0.8, 0.85, 0.9), (False, False, False), (0.6, 0.6, 0.6)],
)
def test_thresholds_follow_the_workers_fractions(target: object, spill: object, pause: object) -> None:
    """Each level enters at or below the Dask action it precedes, and releases below where it enters."""
    th = hd.thresholds_for(target, spill, pause)  # type: ignore[arg-type]
    t = target or 0.6
    p = pause or 0.8
    assert th["moderate"][0] <= t  # type: ignore[operator]
    if t < (spill or 0.7):  # type: ignore[operator]
        assert th["moderate"][0] == pytest.approx(t)  # room to spare: exactly at Dask's target
    assert th["critical"][0] <= p  # type: ignore[operator]
    levels = [th["moderate"], th["high"], th["critical"]]
    assert [e for e, _ in levels] == sorted(e for e, _ in levels)
    for enter, release in levels:
        assert 0 < release < enter <= 1


fraction = st.one_of(st.just(False), st.floats(min_value=0.001, max_value=1.0))


@settings(max_examples=200, deadline=None)
@given(fraction, fraction, fraction)
def test_every_mapping_is_a_valid_governor_configuration(target: float, spill: float, pause: float) -> None:
    """For any Dask fractions the mapping is strictly ordered and the real MemoryGovernor accepts it."""
    th = hd.thresholds_for(target, spill, pause)
    enters = [th[k][0] for k in ("moderate", "high", "critical")]
    assert enters == sorted(set(enters))
    for enter, release in th.values():
        assert 0 < release < enter <= 1
    hivemem.MemoryGovernor(budget=2**30, limit=2**30, thresholds=th, psi=False)  # type: ignore[arg-type]


def test_bad_fraction_is_refused() -> None:
    """A Dask fraction outside (0, 1] is refused with its value in the message."""
    with pytest.raises(hivemem.InvalidArgument, match=r"Dask fraction 1\.5"):
        hd.thresholds_for(1.5)


@pytest.mark.parametrize("banned", ["escalation", "reader", "registry", "on_escalate"])
def test_plugin_refuses_options_that_could_hurt_a_worker(banned: str) -> None:
    """escalation= and friends are refused on the client: a worker governor only warns."""
    with pytest.raises(hivemem.InvalidArgument, match=f"does not accept {banned}="):
        hd.GovernorPlugin(**{banned: "raise"})


def test_plugin_options_are_checked_on_the_client() -> None:
    """A bad governor option fails at construction, before anything reaches a worker."""
    with pytest.raises(hivemem.HivememError):
        hd.GovernorPlugin(interval=-1)


def test_setup_and_teardown_on_a_worker_object() -> None:
    """setup() starts a governor with the worker's limit as budget; teardown() stops it."""
    plugin = hd.GovernorPlugin(interval=0.05, psi=False)
    worker = FakeWorker(limit=600 * MiB)
    plugin.setup(worker)
    try:
        report = hd.worker_report(worker)
        assert report["running"] is True, report
        assert report["budget"] == 600 * MiB
        assert report["error"] is None
        gov = hd._state.governors[worker.address]
        assert gov.thresholds.enter(hivemem.Pressure.MODERATE) == int(600 * MiB * 0.6)  # type: ignore[attr-defined]
    finally:
        plugin.teardown(worker)
    assert not gov.running  # type: ignore[attr-defined]
    assert worker.address not in hd._state.governors


def test_failing_setup_is_logged_and_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    """A plugin that cannot start logs why on the worker's log and does not raise into Dask."""

    class Broken(hd.GovernorPlugin):
        def _start(self, worker: object, address: str) -> None:
            raise RuntimeError("no governor today")

    worker = FakeWorker(address="tcp://127.0.0.1:2")
    with caplog.at_level(logging.ERROR, logger="distributed.worker"):
        Broken(psi=False).setup(worker)  # must not raise
    assert "could not start on worker tcp://127.0.0.1:2" in caplog.text
    assert hd.worker_report(worker)["error"] == "RuntimeError: no governor today"
    hd._state.errors.clear()


# --------------------------------------------------------------------------- a real LocalCluster

# bloat, digest_of_kept and local_cluster also run benchmarks/bench_dask.py's workload.
FILL = 0.65  # of the worker's limit: past hivemem's MODERATE (Dask's target 0.60), before Dask's spill 0.70
BATCH = 4096


def bloat(seed: int) -> tuple[str, int, int]:
    """Fill the worker to FILL of its limit with 1-4 KiB blocks, keep 1 in 64, free the rest.

    The freed blocks stay in malloc's heap. Returns the digest of the kept
    data, the peak RSS (the kernel's VmHWM: what the bloat reached, whether or
    not the governor has acted by the time the task returns) and the number
    of blocks made. Filling to a fraction, not a count, keeps the workload at
    the same place relative to the thresholds on every Python version.
    """
    import hashlib
    import random

    from distributed import get_worker

    import hivemem

    worker = get_worker()
    goal = int(worker.memory_manager.memory_limit * FILL)
    rng = random.Random(seed)
    blocks: list[bytes] = []
    while hivemem.rss() < goal:
        base = len(blocks)
        blocks.extend(bytes([(base + i) % 251]) * rng.randint(1024, 4096) for i in range(BATCH))
    count = len(blocks)
    keep = blocks[::64]
    del blocks
    worker._hivemem_test_keep = keep  # type: ignore[attr-defined]
    return hashlib.sha256(b"".join(keep)).hexdigest(), hivemem.usage().peak, count  # type: ignore[return-value]


def digest_of_kept() -> str:
    import hashlib

    from distributed import get_worker

    return hashlib.sha256(b"".join(get_worker()._hivemem_test_keep)).hexdigest()  # type: ignore[attr-defined]


def expected_digest(seed: int, count: int) -> str:
    """The digest bloat's kept blocks must have, computed here from the seed."""
    import hashlib
    import random

    rng = random.Random(seed)
    blocks = [bytes([i % 251]) * rng.randint(1024, 4096) for i in range(count)]
    return hashlib.sha256(b"".join(blocks[::64])).hexdigest()


@contextlib.contextmanager
def local_cluster() -> Iterator[Any]:
    """Two single-threaded worker processes on loopback, 600 MiB each, and a client for them."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit="600MiB",
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.mark.slow
def test_local_cluster_workers_shrink_and_results_hold() -> None:
    """Two worker processes on 127.0.0.1: after the bloat each worker's RSS falls >= 150 MiB below its peak.

    Each worker (limit 600 MiB) runs a task that fills it to 0.65 of the limit
    with 1-4 KiB blocks and frees all but 1 in 64, leaving them in malloc's heap
    (past hivemem's MODERATE entry at Dask's target 0.60, before Dask's spill
    at 0.70). The plugin's governor acts on its own (cheap pass: gc +
    malloc_trim). The observed drop is ~300 MiB; the assertion allows 150 MiB
    for noise. The data the task kept hashes the same before and after, and
    as computed here.
    """
    with local_cluster() as client:
        client.register_plugin(hd.GovernorPlugin(interval=0.2))
        workers = sorted(client.scheduler_info()["workers"])
        assert len(workers) == 2
        started = hd.reports(client)
        assert all(r["running"] for r in started.values()), started
        futures = {w: client.submit(bloat, i, workers=[w], pure=False) for i, w in enumerate(workers)}
        results = {w: f.result() for w, f in futures.items()}
        before = {w: rss for w, (_, rss, _) in results.items()}
        deadline = time.monotonic() + 60
        while True:
            now = hd.reports(client)
            if all(now[w]["rss"] < before[w] - 150 * MiB for w in workers):  # type: ignore[operator]
                break
            if time.monotonic() > deadline:
                raise AssertionError({w: (before[w], now[w]["rss"], now[w].get("events")) for w in workers})
            time.sleep(0.2)
        for i, w in enumerate(workers):
            digest = results[w][0]
            assert client.submit(digest_of_kept, workers=[w], pure=False).result() == digest
            assert digest == expected_digest(i, results[w][2])
            acts = [e for e in now[w]["events"] if e["kind"] == "act"]  # type: ignore[union-attr]
            assert acts, now[w]["events"]
            assert now[w]["last_report"] is not None
        print({w: (before[w] // MiB, now[w]["rss"] // MiB) for w in workers})  # type: ignore[operator]


@pytest.mark.slow
def test_local_cluster_survives_a_plugin_that_cannot_start() -> None:
    """A plugin whose setup fails in the workers leaves them alive and working; the reason is in their logs.

    A fixed 700 MiB threshold passes the client-side check but is above these
    workers' 600 MiB limit, so every worker's governor refuses it at setup.
    """
    with local_cluster() as client:
        client.register_plugin(hd.GovernorPlugin(interval=0.2, psi=False, thresholds={"moderate": "700MiB"}))
        assert len(client.scheduler_info()["workers"]) == 2
        assert client.submit(sum, [1, 2, 3]).result() == 6
        states = hd.reports(client)
        for state in states.values():
            assert state["running"] is False, state
            assert "above the memory limit" in state["error"], state  # type: ignore[operator]
        logs = client.get_worker_logs()
        assert all(any("could not start" in msg for _, msg in entries) for entries in logs.values()), logs
