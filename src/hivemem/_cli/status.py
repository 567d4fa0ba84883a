"""``hivemem status [PID]``: a process's memory, limit, pressure and largest mappings, from /proc.

Everything here is read from the kernel: ``/proc/PID/status``,
``smaps_rollup``, ``smaps``, ``limits``, ``cgroup`` and the PSI files. Where
psutil is the only source (not Linux) the mapping list is left out and the
output says so.
"""

from __future__ import annotations

import os
import sys

from hivemem._errors import InvalidArgument, NotAvailable
from hivemem._measure.procfs import kb_fields, read_text, rollup_figures
from hivemem._sizes import format_size

__all__ = ["NoSuchProcess", "NotAvailable", "collect", "render"]

# The memory rlimits listed for every process: /proc/PID/limits label -> name.
_RLIMITS = (
    ("Max address space", "RLIMIT_AS"),
    ("Max resident set", "RLIMIT_RSS"),
    ("Max data size", "RLIMIT_DATA"),
)


class NoSuchProcess(InvalidArgument):
    """The PID does not name a running process (or cannot be read): a :class:`hivemem.InvalidArgument`."""


def _mappings(pid: int, top: int) -> list[dict[str, object]]:
    """The *top* mappings by RSS, summed per name (``[heap]``, a file, ``[anon]``)."""
    text = read_text(f"/proc/{pid}/smaps")
    if text is None:
        return []
    totals: dict[str, list[int]] = {}
    name = "[anon]"
    for line in text.splitlines():
        head = line.split(None, 5)
        if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            name = head[5].strip() if len(head) == 6 and head[5].strip() else "[anon]"
            totals.setdefault(name, [0, 0, 0])[2] += 1
        elif line.startswith("Rss:"):
            totals[name][0] += int(line.split()[1]) * 1024
        elif line.startswith("Swap:"):
            totals[name][1] += int(line.split()[1]) * 1024
    rows = sorted(totals.items(), key=lambda kv: -kv[1][0])[:top]
    return [{"name": n, "rss": r, "swap": s, "regions": k} for n, (r, s, k) in rows]


def _rlimits(pid: int) -> dict[str, dict[str, int | None]]:
    """The memory rlimits of *pid* from ``/proc/PID/limits``: soft and hard bytes, ``None`` = unlimited."""
    text = read_text(f"/proc/{pid}/limits") or ""
    out: dict[str, dict[str, int | None]] = {}
    for line in text.splitlines():
        for label, key in _RLIMITS:
            if line.startswith(label):
                fields = line[len(label) :].split()
                if len(fields) >= 2:
                    soft, hard = (int(v) if v.isdigit() else None for v in fields[:2])
                    out[key] = {"soft": soft, "hard": hard}
    return {key: out[key] for _, key in _RLIMITS if key in out}


def _psi(path: str) -> dict[str, float] | None:
    text = read_text(path)
    if not text:
        return None
    out: dict[str, float] = {}
    for line in text.splitlines():
        kind, *fields = line.split()
        for field in fields:
            key, _, value = field.partition("=")
            if key == "avg10":
                out[kind] = float(value)
    return out


def _limit(pid: int) -> dict[str, object]:
    from hivemem._measure.limits import cgroup_dirs, memory_limit

    same = pid == os.getpid() or read_text(f"/proc/{pid}/cgroup") == read_text("/proc/self/cgroup")
    out: dict[str, object] = {}
    if same:
        limit = memory_limit()
        out.update(limit.to_dict())
        if pid != os.getpid():
            out["note"] = "same cgroup as this hivemem process; its own rlimits are listed below"
        group = cgroup_dirs().get("v2")
        if group:
            out["cgroup_psi"] = _psi(os.path.join(group, "memory.pressure"))
    else:
        out["bytes"] = None
        out["source"] = "unknown: the process is in another cgroup than hivemem"
        out["cgroup"] = (read_text(f"/proc/{pid}/cgroup") or "").strip()
    rl = _rlimits(pid)
    if rl:
        out["rlimits"] = rl
    return out


def _pressure(rss: int | None, limit: object) -> dict[str, object]:
    if not isinstance(limit, int) or not limit or rss is None:
        return {"share": None, "level": None}
    share = rss / limit
    level = "normal"
    try:
        from hivemem._governor.thresholds import DEFAULT_FRACTIONS
    except ImportError:  # pragma: no cover - before the governor's thresholds existed
        return {"share": share, "level": None}
    for pressure, (enter, _release) in sorted(DEFAULT_FRACTIONS.items()):
        if share >= enter:
            level = pressure.name
    return {
        "share": share,
        "level": level,
        "thresholds": "the governor's defaults, as fractions of the limit",
    }


def _python_facts() -> dict[str, object]:
    import gc

    facts: dict[str, object] = {
        "allocated_blocks": sys.getallocatedblocks(),
        "gc_tracked_objects": len(gc.get_objects()),
        "gc_counts": list(gc.get_count()),
        "modules": len(sys.modules),
    }
    return facts


def collect(pid: int, *, top: int = 5) -> dict[str, object]:
    """Everything ``hivemem status`` shows, as a JSON-safe dict (sizes in bytes)."""
    from hivemem import _validate

    _validate.count("--top", top, minimum=0)
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc"):
        return _collect_psutil(pid)
    status = read_text(f"/proc/{pid}/status")
    if status is None:
        raise NoSuchProcess(f"no process with pid {pid} (or /proc/{pid} is not readable)")
    fields = kb_fields(status)
    name = next((ln.split(":", 1)[1].strip() for ln in status.splitlines() if ln.startswith("Name:")), "?")
    threads = next(
        (ln.split(":", 1)[1].strip() for ln in status.splitlines() if ln.startswith("Threads:")), "?"
    )
    cmdline = (read_text(f"/proc/{pid}/cmdline") or "").replace("\0", " ").strip()
    rollup_text = read_text(f"/proc/{pid}/smaps_rollup")
    rollup = rollup_figures(rollup_text) if rollup_text else {}
    usage: dict[str, object] = {
        "rss": fields.get("VmRSS"),
        "uss": rollup.get("uss", 0) if rollup else None,
        "pss": rollup.get("pss"),
        "swap": fields.get("VmSwap"),
        "peak": fields.get("VmHWM"),
        "vms": fields.get("VmSize"),
        "rss_anon": fields.get("RssAnon"),
        "rss_file": fields.get("RssFile"),
        "rss_shmem": fields.get("RssShmem"),
    }
    limit = _limit(pid)
    info: dict[str, object] = {
        "pid": pid,
        "name": name,
        "cmdline": cmdline,
        "threads": int(threads) if threads.isdigit() else None,
        "usage": usage,
        "limit": limit,
        "pressure": _pressure(fields.get("VmRSS"), limit.get("bytes")),
        "system_psi": _psi("/proc/pressure/memory"),
        "mappings": _mappings(pid, top),
        "source": "/proc",
    }
    if pid == os.getpid():
        info["python"] = _python_facts()
    return info


def _collect_psutil(pid: int) -> dict[str, object]:  # pragma: no cover - not Linux
    try:
        import psutil
    except ImportError:
        raise NotAvailable(f"no /proc on {sys.platform} and psutil is not installed") from None
    try:
        proc = psutil.Process(pid)
        mem = proc.memory_info()
        name = proc.name()
    except psutil.Error as exc:
        raise NoSuchProcess(f"pid {pid}: {exc}") from None
    usage: dict[str, object] = {"rss": mem.rss, "vms": mem.vms}
    limit: dict[str, object] = {"bytes": None, "source": "unknown"}
    if pid == os.getpid():
        from hivemem._measure.limits import memory_limit

        limit = memory_limit().to_dict()
    return {
        "pid": pid,
        "name": name,
        "usage": usage,
        "limit": limit,
        "pressure": _pressure(mem.rss, limit.get("bytes")),
        "mappings": [],
        "source": f"psutil (no /proc on {sys.platform}: mappings are not listed)",
    }


def _soft_hard(value: object) -> str:
    def one(v: object) -> str:
        if v is None:
            return "unlimited"
        return format_size(v) if isinstance(v, (int, float)) else str(v)

    if isinstance(value, dict):
        return f"soft={one(value.get('soft'))} hard={one(value.get('hard'))}"
    return one(value)


def render(info: dict[str, object]) -> str:
    """The terminal table ``hivemem status`` prints."""
    usage = info["usage"]
    limit = info["limit"]
    pressure = info["pressure"]
    assert isinstance(usage, dict) and isinstance(limit, dict) and isinstance(pressure, dict)
    lines = [f"process {info['pid']} ({info.get('name')}): {info.get('cmdline') or ''}".rstrip()]
    lines.append(
        "  usage   "
        + "  ".join(f"{k}={format_size(usage.get(k))}" for k in ("rss", "uss", "pss", "swap", "peak"))
    )
    split = [k for k in ("rss_anon", "rss_file", "rss_shmem") if usage.get(k) is not None]
    if split:
        lines.append("          " + "  ".join(f"{k[4:]}={format_size(usage[k])}" for k in split))
    if limit.get("bytes"):
        lines.append(f"  limit   {format_size(limit['bytes'])} from {limit.get('source')}")
    else:
        lines.append(f"  limit   {limit.get('source')}")
    if limit.get("note"):
        lines.append(f"          ({limit['note']})")
    rl = limit.get("rlimits")
    if isinstance(rl, dict) and rl:
        lines.append("  rlimits " + "  ".join(f"{k} {_soft_hard(v)}" for k, v in rl.items()))
    share = pressure.get("share")
    if isinstance(share, float):
        level = pressure.get("level")
        lines.append(
            f"  pressure {share:.1%} of the limit"
            + (f": {level} (governor default thresholds)" if level else "")
        )
    for label, key in (("system PSI", "system_psi"),):
        psi = info.get(key)
        if isinstance(psi, dict) and psi:
            lines.append(f"  {label}  " + "  ".join(f"{k} avg10={v:.2f}%" for k, v in psi.items()))
    cg = limit.get("cgroup_psi")
    if isinstance(cg, dict) and cg:
        lines.append("  cgroup PSI  " + "  ".join(f"{k} avg10={v:.2f}%" for k, v in cg.items()))
    maps = info.get("mappings")
    if isinstance(maps, list) and maps:
        lines.append("  largest mappings (RSS, summed per name):")
        for m in maps:
            lines.append(
                f"    {format_size(m['rss']):>10}  {m['name']}"
                + (f"  (swap {format_size(m['swap'])})" if m.get("swap") else "")
                + (f"  [{m['regions']} regions]" if m.get("regions", 1) > 1 else "")
            )
    py = info.get("python")
    if isinstance(py, dict):
        lines.append(
            f"  python  {py['allocated_blocks']:,} allocated blocks, {py['gc_tracked_objects']:,} "
            f"gc-tracked objects, {py['modules']} modules"
        )
    return "\n".join(lines)
