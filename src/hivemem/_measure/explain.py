"""Where the resident memory is: RSS split into parts that add up, from the kernel and the allocators.

``/proc/self/smaps`` says how much of each mapping is resident. The kernel
cannot tell pymalloc's arenas from malloc's large blocks (both are anonymous
mappings, and adjacent ones merge), so those are split with the allocators'
own figures: ``sys._debugmallocstats()`` for pymalloc, glibc ``mallinfo2()``
for malloc. docs/optimize.md ("Where the memory is") explains each part and
what was measured to build this model.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sized

from hivemem._measure import procfs
from hivemem._measure.native import is_thread_arena
from hivemem._sizes import format_size as _fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from hivemem._engine.report import StepResult
    from hivemem._levels import Aggressiveness

__all__ = ["SUMMED", "explain", "registrations", "rss_parts"]

_PAGE = procfs.PAGE


def _mappings() -> list[tuple[int, int, str, str, int, int]] | None:
    """``(start, end, perms, name, rss, swap)`` per mapping of ``/proc/self/smaps``, or ``None``."""
    return procfs.smaps_mappings()


def _classify(maps: list[tuple[int, int, str, str, int, int]]) -> dict[str, int]:
    """Resident bytes per kind of mapping, plus sizes and swap where the split needs them."""
    out = dict.fromkeys(
        ("files", "heap", "heap_size", "stack", "thread_stacks", "anon", "anon_size", "kernel", "swap"), 0
    )
    for i, (start, end, perms, name, rss, swapped) in enumerate(maps):
        if name == "[heap]":
            kind = "heap"
        elif name == "[stack]":
            kind = "stack"
        elif name in ("[vdso]", "[vvar]", "[vsyscall]", "[vvar_vclock]"):
            kind = "kernel"
        elif name and not name.startswith("[anon"):
            kind = "files"  # code, shared libraries, mapped files, memfds
        elif perms.startswith("---"):
            kind = "guard"  # PROT_NONE: reserved, never resident
        else:
            prev = maps[i - 1] if i else None
            nxt = maps[i + 1] if i + 1 < len(maps) else None
            if (
                prev is not None
                and prev[1] == start
                and prev[2].startswith("---")
                and not prev[3]
                and prev[1] - prev[0] <= 16 * _PAGE
            ):
                kind = "thread_stacks"  # a guard page right below: pthread's stack layout
            elif is_thread_arena([(m[0], m[1], m[2], m[3]) for m in (maps[i], nxt) if m is not None], 0):
                kind = "heap"  # glibc's per-thread malloc arenas
            else:
                kind = "anon"
        if kind == "guard":
            continue
        out[kind] += rss
        if kind in ("heap", "anon"):
            out[kind + "_size"] += end - start
            out["swap"] += swapped
    out["total"] = sum(out[k] for k in ("files", "heap", "stack", "thread_stacks", "anon", "kernel"))
    return out


#: The parts that add up to ``total``, in the order the explanation lists them.
SUMMED = (
    "pymalloc_live",
    "pymalloc_free",
    "pymalloc_overhead",
    "malloc_in_use",
    "malloc_free_resident",
    "malloc_mmapped",
    "malloc_heap",
    "files",
    "stacks",
    "other_anon",
    "not_resident",
)


def rss_parts() -> dict[str, int] | None:
    """Resident memory now, in parts that add up to ``total`` (bytes); ``None`` without ``/proc``.

    ``total`` is the sum of ``Rss`` over ``/proc/self/smaps``. The parts in
    :data:`SUMMED` add up to it exactly; each is measured:

    ``pymalloc_live``, ``pymalloc_free``, ``pymalloc_overhead``
        pymalloc's arenas (``sys._debugmallocstats()``): live small objects,
        free space (freed blocks and empty pools), pool headers and rounding.
        Arena alignment is left out: pymalloc never touches it.
    ``malloc_in_use``, ``malloc_free_resident``
        glibc's heaps (``[heap]`` and the 64 MiB-aligned thread arenas):
        bytes in use (``mallinfo2`` ``uordblks``) and the rest of their
        resident pages, which is free memory ``malloc_trim`` can return.
    ``malloc_mmapped``
        malloc's large blocks, each its own mapping (``mallinfo2`` ``hblkhd``).
    ``malloc_heap``
        the heaps' resident pages, where ``mallinfo2`` is unavailable.
    ``files``
        file-backed mappings: the interpreter, shared libraries, mapped files.
    ``stacks``
        the main thread's stack and the threads' stacks.
    ``other_anon``
        address space of the other anonymous mappings: globals of the
        interpreter and libraries (``.bss``), native allocations outside malloc.
    ``not_resident`` (zero or negative)
        address space counted above that the kernel has not made resident:
        pages never written (pymalloc's newest arena, zeroed blocks) or swapped out.

    Beside the sum: ``malloc_free`` (all of malloc's free bytes, resident or
    not), ``pymalloc_untouched`` (arena alignment) and ``swap``.
    """
    if not os.path.exists("/proc/self/smaps"):
        return None
    from hivemem._measure.native import malloc_info, pymalloc_stats

    # The allocators first, then the kernel: nothing big is allocated in between.
    try:
        py = pymalloc_stats()
    except Exception:
        py = None
    try:
        libc = malloc_info()
    except Exception:
        libc = None
    maps = _mappings()
    if not maps:
        return None
    k = _classify(maps)
    parts: dict[str, int] = {"total": k["total"], "swap": k["swap"]}
    # Anonymous mappings: their resident bytes are their size minus what is not resident.
    anon_size, anon_missing = k["anon_size"], k["anon_size"] - k["anon"]
    if py is not None:
        untouched = py.get("alignment", 0)
        parts["pymalloc_live"] = py["allocated"]
        parts["pymalloc_free"] = py["free"]
        parts["pymalloc_overhead"] = max(py["overhead"] - untouched, 0)
        parts["pymalloc_untouched"] = untouched
        anon_size -= py["arenas"]
        anon_missing -= untouched
    if libc is not None:
        in_heap = libc["in_use"] - libc["mmapped"]
        parts["malloc_in_use"] = in_heap
        parts["malloc_free_resident"] = max(k["heap"] - in_heap, 0)
        parts["malloc_free"] = libc["free"]
        parts["malloc_mmapped"] = libc["mmapped"]
        anon_size -= libc["mmapped"]
        anon_missing += max(in_heap - k["heap"], 0)  # in-use heap pages not resident (swapped)
    else:
        parts["malloc_heap"] = k["heap"]
    parts["files"] = k["files"] + k["kernel"]
    parts["stacks"] = k["stack"] + k["thread_stacks"]
    if anon_size < 0:  # a mapping classified elsewhere holds allocator memory: keep the sum honest
        anon_missing -= anon_size
        anon_size = 0
    parts["other_anon"] = anon_size
    parts["not_resident"] = -anon_missing
    return parts


#: What each part is, in words (docs/optimize.md, "Where the memory is", has the measurements).
_WORDS = {
    "pymalloc_free": (
        "free space inside pymalloc's arenas (fragmentation: an arena goes back to the OS only "
        "when every object in it is freed)"
    ),
    "pymalloc_live": "live small Python objects (pymalloc)",
    "pymalloc_overhead": "pymalloc's pool headers and size-class rounding",
    "malloc_in_use": "in use in malloc's heap (objects over 512 bytes, C extensions, native libraries)",
    "malloc_free_resident": "free in malloc's heap but still resident (trim returns whole free pages)",
    "malloc_mmapped": "malloc's large blocks, each in its own mapping (returned to the OS when freed)",
    "malloc_heap": "malloc's heap (no allocator statistics on this libc to split it)",
    "files": "code and mapped files: the interpreter, shared libraries, extension modules",
    "stacks": "thread stacks",
    "other_anon": (
        "other anonymous memory: interpreter and library globals, native allocations outside malloc"
    ),
    "not_resident": (
        "of the address space above that is not resident (pages never written: pymalloc's newest "
        "arena, zeroed blocks; or swapped out)"
    ),
}


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}" + ("" if n == 1 else "s")


def registrations() -> dict[str, object]:
    """What the program registered for hivemem's strategies, counted now (no heap walk).

    Modules that were never imported are not imported here: nothing of theirs
    can be registered.
    """
    out: dict[str, object] = {}
    containers = sys.modules.get("hivemem._reclaim.containers")
    if containers is not None:
        held = containers.compact_registry.entries()
        out["compactable"] = len(held)
        out["compactable_items"] = sum(_len(obj) for obj, _ in held)
        out["dedup_containers"] = len(containers.dedup_registry.entries())
    caches = sys.modules.get("hivemem._reclaim.caches")
    if caches is not None:
        held = caches.cache_registry.entries()
        out["caches"] = len(held)
        out["cache_entries"] = sum(caches._size(obj) or 0 for obj, _ in held)
        out["lru_allowlist"] = caches.lru_cache_allowlist()
    unload = sys.modules.get("hivemem._reclaim.unload")
    if unload is not None:
        out["unload_allowlist"] = unload.unload_allowlist()
    hooks = sys.modules.get("hivemem._reclaim.hooks")
    if hooks is not None:
        out["hooks"] = len(hooks.hooks())
    for key, name in (
        ("compressed_stores", "hivemem._stores.compressed"),
        ("spill_stores", "hivemem._stores.spill"),
    ):
        module = sys.modules.get(name)
        if module is not None:
            out[key] = len(module.live_stores())
    return out


def _len(obj: object) -> int:
    if not isinstance(obj, Sized):
        return 0
    try:
        return len(obj)
    except Exception:
        return 0


def _int(reg: dict[str, object], key: str) -> int:
    """A count from :func:`registrations` (0 when absent)."""
    value = reg.get(key, 0)
    return int(value) if isinstance(value, (int, float, str)) else 0


def _step(steps: Sequence[StepResult], name: str) -> StepResult | None:
    found = None
    for step in steps:
        if step.name == name:
            found = step
    return found


def _help(
    parts: dict[str, int] | None,
    target: int,
    ceiling: Aggressiveness | None,
    steps: Sequence[StepResult],
    reg: dict[str, object],
) -> list[str]:
    """What would help, each sentence from a figure measured now or a registration counted now."""
    from hivemem._levels import Aggressiveness

    tips: list[str] = []
    below_top = ceiling is not None and ceiling < Aggressiveness.AGGRESSIVE
    stop = f"this pass stopped at its ceiling, {ceiling.name}" if ceiling is not None else ""
    n_compact = _int(reg, "compactable")
    py_free = parts.get("pymalloc_free", 0) if parts else 0
    compact = _step(steps, "compact")
    if n_compact and below_top:
        tips.append(
            f"{_count(n_compact, 'container')} registered with hivemem.compactable "
            f"({_count(_int(reg, 'compactable_items'), 'item')}) wait for an aggressive pass while "
            f"{_fs(py_free)} is free inside pymalloc's arenas: raise aggressiveness to 'aggressive' ({stop})"
        )
    elif not n_compact and py_free >= 16 * 2**20:
        tips.append(
            f"{_fs(py_free)} is free inside pymalloc's arenas and nothing is registered with "
            "hivemem.compactable: register the list, dict, set or deque that keeps your data so "
            "compact can pack the survivors into fewer arenas"
            + (" (it runs at aggressiveness='aggressive')" if below_top else "")
        )
    elif compact is not None and compact.ran and py_free >= 16 * 2**20:
        tips.append(
            f"after compact, {_fs(py_free)} is still free inside pymalloc's arenas: the objects "
            "pinning them live outside the registered containers; register the containers that hold them"
        )
    elif compact is not None and compact.skipped and n_compact and not below_top:
        tips.append(f"compact was skipped: {compact.skipped}")
    n_caches = _int(reg, "caches")
    if not n_caches:
        tips.append(
            "nothing is registered with hivemem.register_cache (a cache registered there is "
            "cleared by the caches step, at moderate)"
        )
    elif below_top and ceiling is not None and ceiling < Aggressiveness.MODERATE:
        tips.append(
            f"{_count(n_caches, 'cache')} registered with hivemem.register_cache "
            f"({_count(_int(reg, 'cache_entries'), 'entry')}) "
            "are cleared from moderate up: raise aggressiveness"
        )
    if reg.get("lru_allowlist") and below_top:
        tips.append("allowlisted lru_caches are cleared only at aggressive: raise aggressiveness")
    if reg.get("unload_allowlist") and below_top:
        tips.append("modules allowed with hivemem.allow_unload are unloaded only at aggressive")
    if parts:
        resident_free = parts.get("malloc_free_resident", 0)
        trim = _step(steps, "trim")
        if resident_free >= 16 * 2**20 and trim is not None and trim.ran:
            tips.append(
                f"{_fs(resident_free)} is free in malloc's heap and still resident after trim: the "
                "pages also hold live blocks (small survivors scattered over the heap); rebuilding "
                "the containers that keep them (compactable) frees whole pages"
            )
        floor = sum(
            parts.get(k, 0)
            for k in ("pymalloc_live", "malloc_in_use", "malloc_mmapped", "files", "stacks", "other_anon")
        )
        if floor > target:
            tips.append(
                f"live data, code and stacks alone take {_fs(floor)}, above the target "
                f"{_fs(target)}: only dropping data (a cache, a CompressedStore or SpillStore for "
                "big values) gets below it"
            )
    return tips


def explain(
    rss_now: int | None,
    target: int | None,
    *,
    ceiling: Aggressiveness | None = None,
    steps: Sequence[StepResult] = (),
) -> tuple[str, dict[str, int]]:
    """Why RSS is above *target*: where the resident memory is, and what would help.

    Returns ``(text, breakdown)``; *breakdown* is :func:`rss_parts` (bytes;
    the :data:`SUMMED` parts add up to ``breakdown["total"]``). *ceiling*
    and *steps* (the pass's) let the advice name the level that would help.
    """
    try:
        parts = rss_parts()
    except Exception:
        parts = None
    head = ""
    if target is not None and rss_now is not None:
        head = f"RSS {_fs(rss_now)} is {_fs(rss_now - target)} over the target {_fs(target)}. "
    breakdown = dict(parts or {})
    if parts is None:
        body = "No /proc/self/smaps on this platform to say where the resident memory is."
    else:
        items = [(k, parts[k]) for k in SUMMED if parts.get(k)]
        positive = sorted((kv for kv in items if kv[1] > 0), key=lambda kv: -kv[1])
        listed = [f"{_fs(v)} {_WORDS[k]}" for k, v in positive]
        listed += [f"{_fs(v, signed=True)} {_WORDS[k]}" for k, v in items if v < 0]
        body = (
            f"Where the {_fs(parts['total'])} resident now is (/proc/self/smaps, split with the "
            "allocators' own figures): " + "; ".join(listed) + "."
        )
        if parts.get("malloc_free", 0) > parts.get("malloc_free_resident", 0):
            body += (
                f" malloc holds {_fs(parts['malloc_free'])} free in all; the part not listed above "
                "is already back with the OS."
            )
        if parts.get("swap"):
            body += f" {_fs(parts['swap'])} of the heap is in swap."
    tips: list[str] = []
    if target is not None:
        try:
            tips = _help(parts, target, ceiling, steps, registrations())
        except Exception:  # advice is best effort; the figures above stand on their own
            tips = []
    if tips:
        body += " What would help: " + "; ".join(tips) + "."
    return head + body, breakdown
