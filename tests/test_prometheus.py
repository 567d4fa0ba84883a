"""hivemem.integrations.prometheus: metrics scraped as exposition text, in-process or over 127.0.0.1."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import hivemem
from hivemem.testing import FakeReader

from .conftest import linux_only, run_python

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from hivemem.integrations import prometheus as hp  # noqa: E402

MiB = 2**20


class FullReader(FakeReader):
    """A FakeReader whose usage() also has uss, pss and swap."""

    def usage(self) -> hivemem.MemoryUsage:
        rss = self.rss()
        return hivemem.MemoryUsage(rss=rss, uss=rss // 2, pss=rss * 3 // 4, swap=5 * MiB, source="fake")


class Frees:
    """A strategy that frees a fixed amount from the fake reader (or grows it, or raises)."""

    aggressiveness = "cheap"

    def __init__(self, name: str, reader: FakeReader, delta: int, *, fail: bool = False) -> None:
        self.name, self.reader, self.delta, self.fail = name, reader, delta, fail
        self.priority = len(name)

    def apply(self, ctx: object) -> hivemem.StrategyResult:
        if self.fail:
            raise RuntimeError("boom")
        if self.delta >= 0:
            self.reader.free(self.delta)
        else:
            self.reader.grow(-self.delta)
        return hivemem.StrategyResult("done")


class FakeGovernor:
    """Just enough of a governor: subscribe(fn), unsubscribe(fn), level."""

    def __init__(self) -> None:
        self.level = hivemem.Pressure.NORMAL
        self.subscribers: list[object] = []

    def subscribe(self, fn: object) -> None:
        self.subscribers.append(fn)

    def unsubscribe(self, fn: object) -> None:
        self.subscribers.remove(fn)

    def emit(self, kind: str, level: str) -> None:
        self.level = hivemem.Pressure.parse(level)
        event = type("Event", (), {"kind": kind, "level": level})()
        for fn in self.subscribers:
            fn(event)  # type: ignore[operator]


def scrape(registry: object) -> dict[str, float]:
    """Sample name with sorted labels -> value, from the text exposition format."""
    text = prometheus_client.generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


@pytest.fixture
def registry() -> prometheus_client.CollectorRegistry:
    return prometheus_client.CollectorRegistry()


@pytest.fixture
def reader() -> FullReader:
    return FullReader(rss="400MB")


@pytest.fixture
def metrics(registry: object, reader: FullReader) -> Iterator[hp.HivememMetrics]:
    m = hp.install(registry, reader=reader, multiprocess=False)
    yield m
    m.close()


def test_memory_gauges_are_read_at_scrape_time(
    metrics: hp.HivememMetrics, registry: object, reader: FullReader
) -> None:
    """rss, uss, pss, swap come from the reader when scraped; the limit from memory_limit()."""
    values = scrape(registry)
    assert values["hivemem_rss_bytes"] == 400 * MiB
    assert values["hivemem_uss_bytes"] == 200 * MiB
    assert values["hivemem_pss_bytes"] == 300 * MiB
    assert values["hivemem_swap_bytes"] == 5 * MiB
    assert values["hivemem_limit_bytes"] == hivemem.memory_limit().bytes
    assert values["hivemem_pressure_level"] == 0
    reader.set("100MB")
    metrics._cache._at = -1e9  # expire the per-scrape cache
    assert scrape(registry)["hivemem_rss_bytes"] == 100 * MiB


def test_unreadable_field_is_nan(registry: object) -> None:
    """A figure the reader cannot give (None) is exported as NaN, not as a fake zero."""
    m = hp.install(registry, reader=FakeReader(rss="1MB"), multiprocess=False)
    try:
        assert math.isnan(scrape(registry)["hivemem_uss_bytes"])
    finally:
        m.close()


def test_passes_feed_counters_and_histogram(
    metrics: hp.HivememMetrics, registry: object, reader: FullReader
) -> None:
    """Freed bytes count per strategy; growth adds nothing; errors count as outcome=error; passes timed."""
    reg = hivemem.Registry(builtins=False, entry_points=False)
    reg.register(Frees("aa", reader, 10 * MiB))
    reg.register(Frees("bbb", reader, -3 * MiB))
    reg.register(Frees("cccc", reader, 0, fail=True))
    gov = hivemem.MemoryGovernor(registry=reg, reader=reader)
    gov.optimize()
    gov.optimize()
    values = scrape(registry)
    assert values["hivemem_freed_bytes_total{strategy=aa}"] == 20 * MiB
    assert values.get("hivemem_freed_bytes_total{strategy=bbb}", 0) == 0
    assert values["hivemem_strategy_runs_total{outcome=ok,strategy=aa}"] == 2
    assert values["hivemem_strategy_runs_total{outcome=error,strategy=cccc}"] == 2
    assert values["hivemem_optimize_duration_seconds_count"] == 2
    assert values["hivemem_optimize_duration_seconds_bucket{le=+Inf}"] == 2


def test_watched_governor_drives_pressure_and_escalations(
    metrics: hp.HivememMetrics, registry: object
) -> None:
    """Governor events set the pressure gauge and count escalations; close() unsubscribes."""
    gov = FakeGovernor()
    metrics.watch(gov)
    metrics.watch(gov)  # twice is once
    assert len(gov.subscribers) == 1
    gov.emit("level", "high")
    assert scrape(registry)["hivemem_pressure_level"] == 2
    gov.emit("escalate", "critical")
    gov.emit("escalate", "critical")
    values = scrape(registry)
    assert values["hivemem_governor_escalations_total"] == 2
    assert values["hivemem_pressure_level"] == 3
    metrics.close()
    assert gov.subscribers == []


def test_real_governor_events_are_counted(metrics: hp.HivememMetrics, registry: object) -> None:
    """With the real MemoryGovernor, a tick that crosses a threshold moves the pressure gauge."""
    if not hasattr(hivemem.MemoryGovernor, "subscribe"):
        pytest.skip("this MemoryGovernor has no subscribe() yet")
    reader = FakeReader(rss="100MB")
    gov = hivemem.MemoryGovernor(
        reader=reader,
        registry=hivemem.Registry(builtins=False, entry_points=False),
        budget="1GB",
        limit="1GB",
        psi=False,
    )
    metrics.watch(gov)
    reader.set("900MB")
    gov.tick()
    assert int(gov.level) >= 2
    assert scrape(registry)["hivemem_pressure_level"] == int(gov.level)


def test_install_twice_returns_the_same_and_close_unregisters(registry: object, reader: FullReader) -> None:
    """A second install into one registry is the first one; close() removes every hivemem metric."""
    first = hp.install(registry, reader=reader, multiprocess=False)
    assert hp.install(registry, reader=reader, multiprocess=False) is first
    first.close()
    assert not [k for k in scrape(registry) if k.startswith("hivemem_")]
    again = hp.install(registry, reader=reader, multiprocess=False)
    assert again is not first
    again.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"namespace": "bad-name"}, "namespace must be"),
        ({"refresh_interval": 0}, "refresh_interval must be"),
        ({"refresh_interval": True}, "refresh_interval must be"),
        ({"governor": object()}, "no subscribe"),
        ({"reader": object()}, "must have rss"),
    ],
)
def test_bad_arguments(registry: object, kwargs: dict[str, object], message: str) -> None:
    """Bad options are refused by name, before any metric is registered."""
    with pytest.raises(hivemem.InvalidArgument, match=message):
        hp.install(registry, **kwargs)  # type: ignore[arg-type]
    assert not [k for k in scrape(registry) if k.startswith("hivemem_")]


def test_scrape_over_loopback(metrics: hp.HivememMetrics, registry: object) -> None:
    """prometheus_client's HTTP server on 127.0.0.1 (port chosen by the OS) serves hivemem's metrics."""
    import urllib.request

    started = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
    if not isinstance(started, tuple):
        pytest.skip("this prometheus_client does not return the server (needed to learn the port)")
    server, thread = started
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert "# TYPE hivemem_rss_bytes gauge" in text
    assert "hivemem_rss_bytes 4.194304e+08" in text


@linux_only
def test_multiprocess_mode_across_forked_workers(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, each forked worker exports its own pid series; counters add up.

    A parent installs the metrics, forks two workers that each run one real
    optimize() pass; a MultiProcessCollector then sees three rss series (one
    per live pid) and two observed passes. mark_process_dead() drops a worker.
    """
    mp = tmp_path / "prom"
    mp.mkdir()
    out = run_python(
        """
        import json, os, time
        import hivemem
        from hivemem.integrations import prometheus as hp
        import prometheus_client
        from prometheus_client import multiprocess
        from prometheus_client.parser import text_string_to_metric_families

        m = hp.install(refresh_interval=0.05)
        assert m.multiprocess
        kids = []
        for _ in range(2):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                hivemem.optimize()
                os.write(w, b"1")
                time.sleep(30)
                os._exit(0)
            os.read(r, 1)
            kids.append(pid)

        def scrape():
            reg = prometheus_client.CollectorRegistry()
            multiprocess.MultiProcessCollector(reg)
            text = prometheus_client.generate_latest(reg).decode()
            out = {}
            for fam in text_string_to_metric_families(text):
                for s in fam.samples:
                    out.setdefault(s.name, []).append([s.labels, s.value])
            return out

        first = scrape()
        multiprocess.mark_process_dead(kids[0])
        second = scrape()
        for pid in kids:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        print(json.dumps({"pids": [os.getpid(), *kids], "first": first, "second": second}))
        """,
        env={"PROMETHEUS_MULTIPROC_DIR": str(mp)},
    )
    data = json.loads(out)
    parent, kid1, kid2 = data["pids"]
    rss_pids = sorted(int(labels["pid"]) for labels, _ in data["first"]["hivemem_rss_bytes"])
    assert rss_pids == sorted([parent, kid1, kid2])
    assert all(value > 0 for _, value in data["first"]["hivemem_rss_bytes"])
    assert data["first"]["hivemem_optimize_duration_seconds_count"][0][1] == 2
    runs = {labels["strategy"]: v for labels, v in data["first"]["hivemem_strategy_runs_total"]}
    assert runs["gc"] == 2
    after = sorted(int(labels["pid"]) for labels, _ in data["second"]["hivemem_rss_bytes"])
    assert after == sorted([parent, kid2])


def test_import_hivemem_does_not_import_integrations() -> None:
    """import hivemem, optimize() and the gunicorn hooks load no prometheus_client, distributed, gunicorn."""
    out = run_python(
        """
        import json, sys
        import hivemem
        hivemem.optimize()
        import hivemem.integrations
        import hivemem.integrations.gunicorn  # hooks only: gunicorn itself is not needed
        heavy = ("prometheus_client", "distributed", "dask", "gunicorn")
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
        """
    )
    assert json.loads(out) == []


def test_missing_prometheus_client_is_unavailable() -> None:
    """Without prometheus_client, install() raises Unavailable naming the extra to install."""
    out = run_python(
        """
        import sys
        sys.modules["prometheus_client"] = None
        import hivemem
        from hivemem.integrations import prometheus as hp
        try:
            hp.install()
        except hivemem.Unavailable as exc:
            print(exc)
        """
    )
    assert "pip install 'hivemem[prometheus]'" in out


def test_process_wide_governor_is_watched(registry: object) -> None:
    """install() follows the governor hivemem.govern() started: its level shows in the gauge."""
    reader = FakeReader(rss="100MB")
    gov = hivemem.govern(
        "1GB",
        limit="1GB",
        reader=reader,
        registry=hivemem.Registry(builtins=False, entry_points=False),
        psi=False,
        interval=0.01,
    )
    try:
        m = hp.install(registry, reader=FullReader(rss="1MB"), multiprocess=False)
        try:
            assert gov in m._governors
            reader.set("990MB")
            deadline = time.monotonic() + 10
            while scrape(registry)["hivemem_pressure_level"] < 3:
                assert time.monotonic() < deadline, gov.events
                time.sleep(0.02)
        finally:
            m.close()
    finally:
        gov.stop()
