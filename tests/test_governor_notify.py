"""Kernel wake sources (cgroup v1 thresholds, cgroup v2 memory.events), the monitor that polls them,
GIL-holding reads, and what gov.sources / gov.status() say."""

from __future__ import annotations

import json
import os
import socket
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import hivemem
from hivemem import MemoryGovernor, Registry
from hivemem._errors import Unavailable
from hivemem._governor.monitor import Monitor
from hivemem._governor.notify import POLLERR, POLLPRI, limited_v2_group, open_events, open_thresholds
from hivemem.testing import FakeReader

from .conftest import linux_only, run_python, wait_until

MiB = 2**20


# ----------------------------------------------------------------------------- cgroup v1 thresholds


def test_thresholds_without_a_group_say_why() -> None:
    """No v1 memory group: Unavailable naming the reason, nothing left open."""
    with pytest.raises(Unavailable, match="no cgroup v1 memory controller"):
        open_thresholds(None, [MiB], 0)


def test_thresholds_on_a_directory_that_is_not_a_group_say_why(tmp_path: Path) -> None:
    """A directory without memory.usage_in_bytes: Unavailable naming the file."""
    with pytest.raises(Unavailable, match=r"memory\.usage_in_bytes"):
        open_thresholds(str(tmp_path), [MiB], 0)


def test_thresholds_that_the_kernel_refuses_close_their_descriptors(tmp_path: Path) -> None:
    """A fake group whose event_control is a plain file refuses nothing but a missing one fails cleanly."""
    (tmp_path / "memory.usage_in_bytes").write_text("1000\n")
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(Unavailable, match=r"cgroup\.event_control"):
        open_thresholds(str(tmp_path), [MiB], 0)
    assert len(os.listdir("/proc/self/fd")) == before


def _run_in_own_group(code: str) -> str:
    """Run *code* in a fresh interpreter moved into its own (unlimited) child memory group, so that
    nothing else moves the group's usage; skip where no such group can be made."""
    from .survival_workloads import NoGroup, memory_group

    if _own_v1_group() is None:
        pytest.skip("no writable cgroup v1 memory group here")
    try:
        with memory_group(2**40, tag="notify") as procs:
            prefix = f"import os\nopen({procs!r}, 'w').write(str(os.getpid()))\n"
            return run_python(prefix + textwrap.dedent(code))
    except NoGroup as exc:
        pytest.skip(str(exc))


def _own_v1_group() -> str | None:
    from hivemem._measure.limits import cgroup_dirs

    group = cgroup_dirs().get("v1")
    if group is None or not os.access(os.path.join(group, "cgroup.event_control"), os.W_OK):
        return None
    return group


@linux_only
def test_real_thresholds_fire_on_the_crossing() -> None:
    """In a child process: an eventfd armed 32 MiB above its RSS is signalled once it allocates past it."""
    out = _run_in_own_group(
        """
        import json, os, select
        import hivemem
        from hivemem._measure.limits import cgroup_dirs
        from hivemem._governor.notify import open_thresholds
        rss = hivemem.rss()
        src = open_thresholds(cgroup_dirs()["v1"], [rss + 32 * 2**20], rss)
        p = select.poll(); p.register(src.fd, src.mask)
        early = p.poll(0)
        blocks, fired_at = [], None
        for i in range(256):
            blocks.append(bytearray(b"x") * 2**20)
            if fired_at is None and p.poll(0):
                fired_at = (hivemem.rss() - rss) >> 20
                src.drain(select.POLLIN)
        print(json.dumps({"early": bool(early), "fired_at_mib": fired_at, "shift": src.shift,
                          "after_drain": bool(p.poll(0))}))
        src.close()
        """
    )
    got = json.loads(out.strip().splitlines()[-1])
    assert got["early"] is False and got["after_drain"] is False
    # usage counts page charges in per-CPU batches: the event comes within a few MiB of the mark
    assert got["fired_at_mib"] is not None and 28 <= got["fired_at_mib"] <= 40, got


@linux_only
def test_thresholds_are_re_aimed_when_the_group_drifts_from_our_rss() -> None:
    """In a child: 64 MiB of shmem charged to the group (not to RSS) moves usage away from RSS;
    rearm() re-aims the marks on the same descriptor number, and a crossing still wakes it."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    out = _run_in_own_group(
        """
        import json, os, select, tempfile
        import hivemem
        from hivemem._measure.limits import cgroup_dirs
        from hivemem._governor.notify import open_thresholds
        rss = hivemem.rss()
        src = open_thresholds(cgroup_dirs()["v1"], [rss + 48 * 2**20], rss)
        fd0, shift0 = src.fd, src.shift
        with tempfile.NamedTemporaryFile(dir="/dev/shm") as f:
            for _ in range(64):
                f.write(b"y" * 2**20)
            f.flush()
            same = src.rearm(hivemem.rss(), 512 * 2**20)
            moved = src.rearm(hivemem.rss(), 16 * 2**20)
            p = select.poll(); p.register(src.fd, src.mask)
            blocks = [bytearray(b"x") * (80 * 2**20)]
            fired = bool(p.poll(100))
        print(json.dumps({"same": same, "moved": moved, "fd_kept": src.fd == fd0,
                          "shifted_mib": (src.shift - shift0) >> 20, "fired": fired, "rearmed": src.rearmed}))
        src.close()
        """
    )
    got = json.loads(out.strip().splitlines()[-1])
    assert got["same"] is False and got["moved"] is True and got["fd_kept"] is True
    assert 56 <= got["shifted_mib"] <= 72 and got["fired"] is True and got["rearmed"] == 1


# ----------------------------------------------------------------------------- cgroup v2 memory.events


def _v2_tree(root: Path, limits: dict[str, str]) -> str:
    """A fake v2 hierarchy a/b/c where each group has memory.events and the given memory.max."""
    path = root
    for name in ("a", "b", "c"):
        path = path / name
        path.mkdir()
        (path / "memory.events").write_text("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
        (path / "memory.max").write_text(limits.get(name, "max") + "\n")
        (path / "memory.high").write_text("max\n")
    return str(path)


def test_memory_events_watch_the_nearest_limited_group(tmp_path: Path) -> None:
    """The nearest group at or above ours with memory.max set is the one whose events matter."""
    leaf = _v2_tree(tmp_path, {"a": "1000000", "b": "500000"})
    assert limited_v2_group(leaf) == str(tmp_path / "a" / "b")
    src = open_events(leaf)
    try:
        assert src.path == str(tmp_path / "a" / "b" / "memory.events") and src.mask == POLLPRI
        assert src.to_dict()["kind"] == "cgroup v2 memory.events"
    finally:
        src.close()
    assert src.fd == -1


def test_memory_events_without_a_limit_say_why(tmp_path: Path) -> None:
    """No group sets memory.max or memory.high: Unavailable, naming where it looked."""
    leaf = _v2_tree(tmp_path, {})
    with pytest.raises(Unavailable, match=r"sets memory\.max or memory\.high"):
        open_events(leaf)
    with pytest.raises(Unavailable, match="no cgroup v2 group"):
        open_events(None)


def test_memory_events_drain_rereads_and_a_gone_file_stops_the_source(tmp_path: Path) -> None:
    """drain() re-reads the file (re-arming it); once the descriptor fails, the source is dropped."""
    leaf = _v2_tree(tmp_path, {"c": "1000"})
    src = open_events(leaf)
    assert src.drain(POLLPRI | POLLERR) is True  # kernfs reports a change as POLLERR|POLLPRI
    os.close(src.fd)
    assert src.drain(POLLPRI) is False
    src.fd = -1


# ----------------------------------------------------------------------------- the monitor


class OOBSource:
    """A wake source on a socketpair: out-of-band data raises POLLPRI, as a kernel event does."""

    name, mask = "memory.events", POLLPRI

    def __init__(self) -> None:
        self.a, self.b = socket.socketpair()
        self.fd = os.dup(self.b.fileno())
        self.dead = False

    def drain(self, revents: int) -> bool:
        try:
            self.b.recv(1, socket.MSG_OOB)
        except OSError:
            pass
        return not self.dead

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def to_dict(self) -> dict[str, object]:
        return {"kind": "test"}


@linux_only
def test_the_monitor_waits_what_the_tick_returns_and_wakes_on_a_source() -> None:
    """A tick returning 0.01 s is ticked again ~10 ms later; an event ticks at once with its source name;
    a source whose drain says it is gone is dropped (no busy loop)."""
    seen: list[tuple[str, float]] = []
    src = OOBSource()

    def tick(source: str) -> float:
        seen.append((source, time.monotonic()))
        return 0.01 if len(seen) < 5 else 30.0

    mon = Monitor(tick, 0.05, [src], lambda: None)  # type: ignore[list-item]
    mon.start()
    try:
        assert wait_until(lambda: len(seen) >= 5)
        gaps = [seen[i + 1][1] - seen[i][1] for i in range(3)]
        assert all(0.008 <= g < 0.5 for g in gaps), gaps
        n = len(seen)
        src.a.send(b"!", socket.MSG_OOB)
        assert wait_until(lambda: len(seen) > n)
        assert seen[n][0] == "memory.events"
        src.dead = True
        src.a.send(b"!", socket.MSG_OOB)
        time.sleep(0.2)
        assert len(seen) <= n + 2  # dropped, not polled in a loop
    finally:
        assert mon.stop(1.0)
        src.a.close()
        src.b.close()
    assert mon.wakeups["memory.events"] >= 1 and src.fd == -1


# ----------------------------------------------------------------------------- GIL-holding reads


@linux_only
def test_gil_holding_reads_match_the_ordinary_ones() -> None:
    """statm_rss equals hivemem.rss() (within one allocation's pages); malloc_in_use is bytes or None."""
    from hivemem._measure.holdgil import malloc_in_use, statm_rss
    from hivemem._measure.native import malloc_info

    fd = os.open("/proc/self/statm", os.O_RDONLY)
    try:
        assert abs(statm_rss(fd) - hivemem.rss()) < 4 * MiB
    finally:
        os.close(fd)
    info = malloc_info()
    got = malloc_in_use()
    if info is None:
        assert got is None
    else:
        assert isinstance(got, int) and abs(got - info["in_use"]) < 4 * MiB


@linux_only
def test_a_step_records_what_it_released_to_malloc() -> None:
    """In a child: a strategy dropping 40 x 200 KiB bytes shows malloc_released >= 7 MiB on its step
    in a governor pass; an optimize() call leaves both credit figures out."""
    out = run_python(
        """
        import json, hivemem
        keep = [bytes(200 * 1024) for _ in range(40)]
        class Drop:
            name, priority, aggressiveness = "drop", 1, hivemem.CHEAP
            def apply(self, ctx):
                keep.clear()
        reg = hivemem.Registry(builtins=False, entry_points=False)
        reg.register(Drop())
        plain = hivemem.MemoryGovernor(registry=reg).optimize().step("drop")  # no credit reads there
        keep.extend(bytes(200 * 1024) for _ in range(40))
        from hivemem._engine.engine import run_pass
        from hivemem._measure.usage import ProcReader
        # a pass as the governor runs it: it carries a level
        report = run_pass(reg, ProcReader(), target=None, aggressiveness=hivemem.CHEAP, level="moderate")
        step = report.step("drop")
        credit = [step.malloc_released, step.blocks_released, plain.malloc_released, plain.blocks_released]
        print(json.dumps(credit))
        """
    )
    malloc, blocks, plain_malloc, plain_blocks = json.loads(out.strip().splitlines()[-1])
    assert plain_malloc is None and plain_blocks is None  # optimize() does not pay for mallinfo2
    from hivemem._measure.native import malloc_info

    if malloc_info() is None:
        assert malloc is None
    else:
        assert malloc >= 7 * MiB
    assert isinstance(blocks, int)


# ----------------------------------------------------------------------------- sources and status


def test_sources_and_status_say_what_wakes_the_governor(reader: FakeReader, registry: Registry) -> None:
    """A fake reader gets no kernel notifications (they watch this process): pacing only, and why."""
    gov = MemoryGovernor(reader=reader, registry=registry, limit="1000MB", psi=False, interval=86400.0)
    with gov:
        kinds = [s["kind"] for s in gov.sources]
        assert kinds == ["pacing"]
        assert "the reader does not read this process" in gov.notify_note
        start = gov.events[0]
        assert start.data["sources"] == gov.sources and "polling only" in start.message
        st = gov.status()
        json.dumps(st)
        assert st["running"] is True and st["level"] == "normal" and st["limit"] == 1000 * MiB
        assert st["headroom"] == 1000 * MiB * 3 // 100


def test_notify_true_fails_loudly_where_it_cannot_work(reader: FakeReader, registry: Registry) -> None:
    """notify=True with a reader that is not this process: Unavailable at start(), nothing running."""
    gov = MemoryGovernor(reader=reader, registry=registry, limit="1000MB", psi=False, notify=True)
    with pytest.raises(Unavailable, match="notify=True"):
        gov.start()
    assert not gov.running


@linux_only
def test_the_default_governor_names_its_sources() -> None:
    """In a child with the real reader: sources lists the armed kernel sources (or pacing with a note),
    and hivemem.status() shows them."""
    out = run_python(
        """
        import json, hivemem
        gov = hivemem.govern()
        st = hivemem.status(types=0, advice=False)
        print(json.dumps({"sources": [s["kind"] for s in gov.sources], "note": gov.notify_note,
                          "status": st.governor.get("sources")}))
        gov.stop()
        """
    )
    got = json.loads(out.strip().splitlines()[-1])
    assert got["sources"][-1] == "pacing"
    if len(got["sources"]) == 1:
        assert got["note"]
    assert [s["kind"] for s in got["status"]] == got["sources"]


@linux_only
def test_a_real_threshold_crossing_ticks_the_governor_with_source_cgroup() -> None:
    """In a child in its own unlimited group: allocating past MODERATE wakes the monitor through the
    eventfd (source 'cgroup') long before its 10 s poll."""
    if _own_v1_group() is None:
        pytest.skip("no writable cgroup v1 memory group here")
    from .survival_workloads import NoGroup, memory_group

    try:
        ctx = memory_group(2**40, tag="notify")
        procs = ctx.__enter__()
    except NoGroup as exc:
        pytest.skip(str(exc))
    try:
        out = run_python(
            f"""
            import json, os, time
            open({procs!r}, "w").write(str(os.getpid()))
            import hivemem
            base = hivemem.rss()
            reg = hivemem.Registry(builtins=False, entry_points=False)
            starts = []
            class Probe:
                name, priority, aggressiveness = "probe", 1, hivemem.CHEAP
                def apply(self, ctx):
                    starts.append(ctx.level)
            reg.register(Probe())
            gov = hivemem.MemoryGovernor(registry=reg, limit=base + 1024 * 2**20, psi=False, notify=True,
                                         interval=10.0, thresholds={{"moderate": base + 64 * 2**20}}).start()
            time.sleep(0.5)  # the monitor sits in a long paced wait: only the eventfd can wake it
            t0 = time.monotonic()
            block = bytearray(b"x") * (96 * 2**20)  # crosses MODERATE in one allocation
            while not starts and time.monotonic() - t0 < 5:
                time.sleep(0.001)
            woke = [e.data.get("source") for e in gov.events if e.kind == "act"]
            print(json.dumps({{"starts": starts, "woke": woke, "seconds": time.monotonic() - t0,
                              "sources": [s["kind"] for s in gov.sources]}}))
            gov.stop()
            """
        )
    finally:
        ctx.__exit__(None, None, None)
    got = json.loads(out.strip().splitlines()[-1])
    assert got["sources"][0] == "cgroup v1 memory thresholds"
    assert got["starts"] and got["woke"][0] == "cgroup" and got["seconds"] < 5


@linux_only
def test_threads_and_fork_restore_the_switch_interval() -> None:
    """In a child: a running, alert governor lowers the switch interval; a forked child gets it back."""
    out = run_python(
        """
        import json, os, sys
        import hivemem
        from hivemem.testing import FakeReader
        reader = FakeReader("600MB")
        gov = hivemem.MemoryGovernor(reader=reader, limit="1000MB", psi=False, interval=86400.0,
                                     registry=hivemem.Registry(builtins=False, entry_points=False)).start()
        before = sys.getswitchinterval()
        gov.tick()
        reader.grow("50MB")
        import time; time.sleep(0.05)
        gov.tick()
        lowered = sys.getswitchinterval()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(w, str(sys.getswitchinterval()).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        child = float(os.read(r, 64))
        gov.stop()
        print(json.dumps([before, lowered, child, sys.getswitchinterval()]))
        """
    )
    before, lowered, child, after = json.loads(out.strip().splitlines()[-1])
    assert lowered == pytest.approx(0.0002) and before == pytest.approx(0.005)
    assert child == pytest.approx(before) and after == pytest.approx(before)


def test_ticks_from_many_threads_never_overlap_and_never_raise(
    reader: FakeReader, registry: Registry
) -> None:
    """8 threads ticking a governor whose reader grows: every tick returns a level, passes never overlap."""
    inside = {"now": 0, "max": 0}
    lock = threading.Lock()

    class Probe:
        name, priority, aggressiveness = "probe", 1, hivemem.CHEAP

        def apply(self, ctx: object) -> None:
            with lock:
                inside["now"] += 1
                inside["max"] = max(inside["max"], inside["now"])
            time.sleep(0.001)
            reader.free("30MB")
            with lock:
                inside["now"] -= 1

    registry.register(Probe())
    gov = MemoryGovernor(reader=reader, registry=registry, limit="1000MB", psi=False, cpu_budget=1.0)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(200):
                reader.grow("2MB")
                assert gov.tick() in hivemem.Pressure.members()
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and inside["max"] == 1 and gov.passes >= 1
    assert sys.getswitchinterval() == pytest.approx(0.005)
