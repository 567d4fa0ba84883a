"""PSI: parsing pressure files and triggers, finding the files (faked cgroup trees), arming triggers."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import hivemem
from hivemem._measure import psi as _psi
from hivemem._measure.psi import format_trigger, open_trigger, parse_pressure, parse_trigger, pressure_files

from .conftest import linux_only
from .fakecgroup import V1_MOUNT, V2_MOUNT, tree

SAMPLE = (
    "some avg10=1.53 avg60=0.87 avg300=0.22 total=12345678\n"
    "full avg10=0.00 avg60=0.10 avg300=0.05 total=4567\n"
)


def test_parse_pressure_reads_both_lines() -> None:
    """Averages are floats (percent), total is int microseconds, for 'some' and 'full'."""
    got = parse_pressure(SAMPLE)
    assert got["some"] == {"avg10": 1.53, "avg60": 0.87, "avg300": 0.22, "total": 12345678}
    assert got["full"]["total"] == 4567 and isinstance(got["full"]["total"], int)


@given(
    st.dictionaries(
        st.sampled_from(["some", "full"]),
        st.tuples(
            st.floats(0, 100, allow_nan=False).map(lambda x: round(x, 2)),
            st.floats(0, 100, allow_nan=False).map(lambda x: round(x, 2)),
            st.floats(0, 100, allow_nan=False).map(lambda x: round(x, 2)),
            st.integers(0, 2**63),
        ),
        min_size=1,
    )
)
def test_parse_pressure_round_trips(lines: dict[str, tuple[float, float, float, int]]) -> None:
    """Property: what the kernel's format writes, parse_pressure reads back exactly."""
    text = "".join(
        f"{k} avg10={a:.2f} avg60={b:.2f} avg300={c:.2f} total={t}\n" for k, (a, b, c, t) in lines.items()
    )
    got = parse_pressure(text)
    for k, (a, b, c, t) in lines.items():
        assert got[k] == {"avg10": a, "avg60": b, "avg300": c, "total": t}


@pytest.mark.parametrize("bad", ["some avg10=x total=1", "some avg10 total=1", "full total=1.5"])
def test_parse_pressure_names_a_malformed_field(bad: str) -> None:
    """A malformed field raises InvalidArgument quoting it."""
    with pytest.raises(hivemem.InvalidArgument, match="malformed PSI field"):
        parse_pressure(bad)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("some 150000 1000000", ("some", 150000, 1000000)),
        ("full 1 500000", ("full", 1, 500000)),
        (("some", 10_000_000, 10_000_000), ("some", 10_000_000, 10_000_000)),
        ("  some   70000   2000000 ", ("some", 70000, 2000000)),
    ],
)
def test_parse_trigger_accepts_kernel_forms(spec: object, expected: tuple[str, int, int]) -> None:
    """'some|full <stall µs> <window µs>' as a string or tuple, within the kernel's bounds."""
    assert parse_trigger(spec) == expected


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("some 150000 499999", "window must be"),
        ("some 150000 10000001", "window must be"),
        ("some 0 1000000", "stall must be"),
        ("some 1000001 1000000", "stall must be"),
        ("avg 1 1000000", "some\\|full"),
        ("some 1.5 1000000", "whole microseconds"),
        ("some 1000000", "some\\|full"),
        (42, "expected 'some"),
    ],
)
def test_parse_trigger_rejects_what_the_kernel_would(spec: object, match: str) -> None:
    """Out-of-range windows and stalls are InvalidArgument up front, not EINVAL later."""
    with pytest.raises(hivemem.InvalidArgument, match=match):
        parse_trigger(spec)


def test_format_trigger_is_nul_terminated() -> None:
    """The written trigger is ASCII with a trailing NUL, as in the kernel's documentation."""
    assert format_trigger("some", 150000, 1000000) == b"some 150000 1000000\0"


def test_pressure_files_prefers_the_nested_v2_group(tmp_path: Path) -> None:
    """The process's own (nested) cgroup v2 memory.pressure comes first, then /proc/pressure/memory."""
    root = tree(
        tmp_path,
        {
            "/proc/self/cgroup": "0::/system.slice/app.service/worker\n",
            "/proc/self/mountinfo": V2_MOUNT,
            "/sys/fs/cgroup/system.slice/app.service/worker/memory.pressure": SAMPLE,
            "/sys/fs/cgroup/system.slice/memory.pressure": SAMPLE,
            "/proc/pressure/memory": SAMPLE,
        },
    )
    assert pressure_files(root) == [
        f"{root}/sys/fs/cgroup/system.slice/app.service/worker/memory.pressure",
        f"{root}/proc/pressure/memory",
    ]


def test_pressure_files_v1_only_has_the_system_file(tmp_path: Path) -> None:
    """cgroup v1 has no memory.pressure (it has memory.pressure_level, a different API): system-wide only."""
    root = tree(
        tmp_path,
        {
            "/proc/self/cgroup": "4:memory:/process_api/abc\n",
            "/proc/self/mountinfo": V1_MOUNT,
            "/sys/fs/cgroup/memory/process_api/abc/memory.pressure_level": "",
            "/proc/pressure/memory": SAMPLE,
        },
    )
    assert pressure_files(root) == [f"{root}/proc/pressure/memory"]


def test_pressure_files_without_psi_is_empty(tmp_path: Path) -> None:
    """No PSI (kernel < 4.20 or psi=0 on the command line): nothing to watch."""
    root = tree(tmp_path, {"/proc/self/cgroup": "0::/\n", "/proc/self/mountinfo": V2_MOUNT})
    assert pressure_files(root) == []


def test_open_trigger_retries_with_the_unprivileged_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """EINVAL for a 1 s window: retried as a 2 s multiple with the stall scaled; the note says why."""
    written: list[bytes] = []

    def arm(path: str, payload: bytes) -> int:
        written.append(payload)
        if len(written) == 1:
            raise OSError(errno.EINVAL, "Invalid argument")
        return 99

    monkeypatch.setattr(_psi, "_arm", arm)
    trig = open_trigger("/x/memory.pressure", "some 150000 1000000")
    assert written == [b"some 150000 1000000\0", b"some 300000 2000000\0"]
    assert (trig.fd, trig.stall, trig.window) == (99, 300000, 2000000)
    assert "multiple of 2 s" in trig.note
    trig.fd = -1  # not a real descriptor


def test_open_trigger_says_why_it_cannot(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both forms refused: Unavailable naming the file, both triggers and the kernel requirement."""

    def arm(path: str, payload: bytes) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(_psi, "_arm", arm)
    with pytest.raises(hivemem.Unavailable, match=r"some 150000 1000000.*some 300000 2000000.*Linux >= 5.2"):
        open_trigger("/x/memory.pressure", "some 150000 1000000")


def test_governor_psi_true_fails_loudly_without_psi(
    monkeypatch: pytest.MonkeyPatch, reader: object, registry: hivemem.Registry
) -> None:
    """psi=True demands a trigger: start() raises Unavailable; psi='auto' polls and notes why."""
    monkeypatch.setattr(_psi, "pressure_files", lambda root="": [])
    strict = hivemem.MemoryGovernor(reader=reader, registry=registry, limit="1GB", psi=True)
    with pytest.raises(hivemem.Unavailable, match="psi=True"):
        strict.start()
    assert not strict.running
    auto = hivemem.MemoryGovernor(reader=reader, registry=registry, limit="1GB", psi="auto").start()
    try:
        assert auto.running and auto.psi_note.startswith("polling only")
    finally:
        auto.stop()


@linux_only
def test_real_psi_trigger_arms_or_says_why() -> None:
    """On this machine: a trigger on the first pressure file arms (maybe widened) or raises Unavailable."""
    files = pressure_files()
    if not files:
        pytest.skip("no PSI pressure file on this kernel")
    try:
        trig = open_trigger(files[0])
    except hivemem.Unavailable as exc:
        assert "PSI" in str(exc)
        return
    try:
        assert trig.fd >= 0
        assert trig.window in (1_000_000, 2_000_000)
        assert os.fstat(trig.fd) is not None
    finally:
        trig.close()
    assert trig.fd == -1
