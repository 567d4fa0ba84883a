"""REPL inspection: ``status()``, ``top()``, ``sizeof()``, ``why()``, ``growth()``.

Each returns a frozen result with a readable repr, ``_repr_html_`` for
notebooks, ``__rich_repr__`` and ``to_json()``. None of them holds or
prints the contents of user objects: types, sizes, counts, attribute and
variable names (code), code locations. pympler and objgraph are imported
inside the functions that use them.
"""

from __future__ import annotations

import _thread
import gc
import os
import sys
import weakref
from collections.abc import Sized
from typing import cast

from hivemem._profile.render import Result, html_table, text_table
from hivemem._sizes import format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    import functools
    from collections.abc import Iterator, Mapping, Sequence
    from types import FrameType

    from hivemem._measure.limits import MemoryLimit
    from hivemem._measure.usage import MemoryUsage
    from hivemem._profile.advice import Advice

__all__ = ["Growth", "SizeOf", "Status", "TypeStats", "Why", "growth", "sizeof", "status", "top", "why"]


def _type_name(t: type) -> str:
    module = getattr(t, "__module__", "builtins")
    return t.__qualname__ if module == "builtins" else f"{module}.{t.__qualname__}"


def type_table(sizes: bool = True) -> dict[type, list[int]]:
    """Live objects by type: ``{type: [count, shallow bytes]}``, from one heap walk shared by callers.

    Counts what the garbage collector tracks plus the untracked objects they
    refer to directly (strings, bytes, numbers), each once; sizes are
    ``sys.getsizeof``. One walk runs at a time in the process: a caller that
    arrives while one is running, or that waited for the lock while one
    started and ran, takes its result instead of starting a second
    (``status()``, ``top()`` and ``growth()`` from several threads cost one
    walk, not one each). Cost and memory: docs/profiler.md.
    The returned dict may be shared with other callers: do not change it.
    """
    me = _thread.get_ident()
    walk = _current
    if walk is not None and walk.leader != me and (walk.sizes or not sizes):
        while not walk.done.wait(0.1):
            if not _walk_lock.locked():  # its thread was interrupted before it could say so
                break
        if walk.table is not None:
            return walk.table
    if walk is not None and walk.leader == me and _walk_lock.locked():
        return _walk_heap(sizes)  # re-entered from inside our own walk (a signal handler, a gc callback)
    # Callers that arrive together may all find no walk running yet and queue on the lock: the
    # first leads, and each one after it takes that walk's result if it started after its arrival.
    seen = _started
    # One line on purpose: a with block over several lines has a line event between its body and
    # __exit__, where an interrupt would leave the lock held (see hivemem._engine.engine).
    with _walk_lock: return _lead_walk(sizes, me, seen)  # noqa: E701  # fmt: skip


class _Walk:
    __slots__ = ("done", "leader", "sizes", "table")

    def __init__(self, sizes: bool, leader: int) -> None:
        import threading

        self.sizes, self.leader = sizes, leader
        self.table: dict[type, list[int]] | None = None
        self.done = threading.Event()


_walk_lock = _thread.allocate_lock()
_current: _Walk | None = None
_started = 0
"""How many walks have started (changed only under ``_walk_lock``)."""
_last: tuple[int, bool, weakref.WeakKeyDictionary[type, list[int]]] | None = None
"""The last finished walk: its number, whether it has sizes, and its table. The table holds its types
weakly: a class the program drops is not kept alive by the last status() or top()."""


def _lead_walk(sizes: bool, me: int, seen: int) -> dict[type, list[int]]:
    global _current, _started, _last
    last = _last
    if last is not None and last[0] > seen and (last[1] or not sizes):
        return dict(last[2])  # it started after this caller arrived: as fresh as a walk of its own
    _started += 1
    number = _started
    walk = _current = _Walk(sizes, me)
    try:
        walk.table = table = _walk_heap(sizes)
        _last = (number, sizes, weakref.WeakKeyDictionary(table))
    finally:
        _current = None
        walk.done.set()
    return table


_BATCH = 4096


def _walk_heap(sizes: bool) -> dict[type, list[int]]:
    """The walk itself; its only allocation that grows with the heap is ``gc.get_objects()``'s list.

    Untracked referents are deduplicated by identity only when they could
    be seen twice: an object whose reference count shows a single owner
    (the tracked container being looked at) cannot turn up under another
    one, so only shared objects (interned strings, small ints, values held
    in two places) go into the ``seen`` set. The single-owner count is
    measured on a probe with the same loop, so it holds on every CPython.
    """
    from collections import Counter
    from itertools import filterfalse, islice

    getsizeof, getrefcount = sys.getsizeof, sys.getrefcount
    is_tracked, get_referents = gc.is_tracked, gc.get_referents
    objs = gc.get_objects()
    counts: dict[type, int] = Counter(map(type, objs))
    size_of: dict[type, int] = {}
    if sizes:
        for obj in objs:
            t = type(obj)
            size_of[t] = size_of.get(t, 0) + getsizeof(obj, 0)
    # Calibrate: an untracked object held only by one list, seen through the loop below.
    one_owner = -1
    probe = [object()]
    for ref in filterfalse(is_tracked, get_referents(probe)):
        one_owner = getrefcount(ref)
    del probe
    seen: set[int] = set()
    loose: dict[type, int] = {}
    loose_size: dict[type, int] = {}
    rest = iter(objs)
    while True:
        batch = list(islice(rest, _BATCH))
        if not batch:
            break
        refs = get_referents(*batch)
        del batch
        for ref in filterfalse(is_tracked, refs):
            if getrefcount(ref) != one_owner:
                key = id(ref)
                if key in seen:
                    continue
                seen.add(key)
            t = type(ref)
            loose[t] = loose.get(t, 0) + 1
            if sizes:
                loose_size[t] = loose_size.get(t, 0) + getsizeof(ref, 0)
        del refs
    del objs, rest, seen
    table = {t: [c, size_of.get(t, 0)] for t, c in counts.items()}
    for t, c in loose.items():
        row = table.setdefault(t, [0, 0])
        row[0] += c
        row[1] += loose_size.get(t, 0)
    return table


def _after_fork_walk() -> None:
    global _current, _walk_lock
    _walk_lock = _thread.allocate_lock()  # another thread may have held it: none runs in the child
    _current = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_walk)


# --------------------------------------------------------------------------- top()


class TypeStats(Result):
    """The biggest object types (by shallow size or count) and, when tracing, allocation sites.

    ``rows``   ``(type name, count, shallow bytes)``
    ``sites``  ``(file:line, bytes, blocks)`` from tracemalloc, empty when not tracing
    ``total_objects``, ``total_size``  over every type
    """

    __slots__ = ("by", "rows", "sites", "sites_note", "total_objects", "total_size")
    __module__ = "hivemem"

    rows: tuple[tuple[str, int, int], ...]
    sites: tuple[tuple[str, int, int], ...]
    sites_note: str
    by: str
    total_objects: int
    total_size: int

    def __init__(
        self,
        rows: Sequence[tuple[str, int, int]],
        *,
        by: str,
        total_objects: int,
        total_size: int,
        sites: Sequence[tuple[str, int, int]] = (),
        sites_note: str = "",
    ) -> None:
        self._set(
            rows=tuple(rows),
            by=by,
            total_objects=total_objects,
            total_size=total_size,
            sites=tuple(sites),
            sites_note=sites_note,
        )

    def _table(self) -> list[tuple[str, str, str]]:
        return [(name, f"{count:,}", format_size(size)) for name, count, size in self.rows]

    def _site_table(self) -> list[tuple[str, str, str]]:
        return [(where, format_size(size), f"{count:,}") for where, size, count in self.sites]

    def __repr__(self) -> str:
        lines = [
            f"TypeStats by {self.by}: {self.total_objects:,} objects, {format_size(self.total_size)} shallow",
            *text_table(("type", "objects", "size"), self._table()),
        ]
        if self.sites:
            lines.append("  allocation sites (tracemalloc):")
            lines += text_table(("where", "size", "blocks"), self._site_table(), indent="    ")
        elif self.sites_note:
            lines.append(f"  allocation sites: {self.sites_note}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        out = html_table(("type", "objects", "size"), self._table(), caption=f"biggest types by {self.by}")
        if self.sites:
            out += html_table(("where", "size", "blocks"), self._site_table(), caption="allocation sites")
        return out

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        yield "by", self.by
        yield "types", [f"{n}: {c} objects, {s}" for n, c, s in self._table()]
        if self.sites:
            yield "sites", [f"{w}: {s}" for w, s, _ in self._site_table()]

    def to_dict(self) -> dict[str, object]:
        return {
            "by": self.by,
            "total_objects": self.total_objects,
            "total_size": self.total_size,
            "rows": [{"type": n, "count": c, "size": s} for n, c, s in self.rows],
            "sites": [{"where": w, "size": s, "count": c} for w, s, c in self.sites],
            "sites_note": self.sites_note,
        }


def _tracemalloc_sites(n: int) -> tuple[list[tuple[str, int, int]], str]:
    import _tracemalloc

    if not _tracemalloc.is_tracing():
        return [], "tracemalloc is not tracing (hivemem.Profiler(trace=True) or tracemalloc.start())"
    import tracemalloc

    from hivemem._profile.render import short_path

    stats = tracemalloc.take_snapshot().statistics("lineno")
    rows = []
    for s in stats[:n]:
        frame = s.traceback[0]
        rows.append((f"{short_path(frame.filename)}:{frame.lineno}", s.size, s.count))
    return rows, ""


def top(n: int = 10, *, by: str = "size") -> TypeStats:
    """The *n* biggest object types by shallow ``size`` (default) or ``count``; sites when tracing."""
    from hivemem._errors import InvalidArgument
    from hivemem._validate import count, show

    if not isinstance(by, str) or by not in ("size", "count"):
        raise InvalidArgument(f"by={show(by)}: expected 'size' or 'count'")
    count("n", n)
    table = type_table()
    key = 1 if by == "size" else 0
    ranked = sorted(table.items(), key=lambda kv: (-kv[1][key], _type_name(kv[0])))
    rows = [(_type_name(t), c, s) for t, (c, s) in ranked[:n]]
    sites, note = _tracemalloc_sites(n)
    return TypeStats(
        rows,
        by=by,
        total_objects=sum(c for c, _ in table.values()),
        total_size=sum(s for _, s in table.values()),
        sites=sites,
        sites_note=note,
    )


# --------------------------------------------------------------------------- sizeof()


class SizeOf(Result):
    """The deep size of one object.

    ``size``   pympler's ``asizeof``: every object reachable from it, each
               once, sizes rounded up to 8-byte alignment (shared
               singletons such as ``None``, small ints and interned names
               are included when referenced)
    ``flat``   ``sys.getsizeof`` of the object alone
    ``type``   its type's name
    ``cache``  for a ``functools.lru_cache`` wrapper (or a method of one):
               the bytes its cache holds (keys, results, table), the same
               figure ``status()``'s advice cites; included in ``size``.
               ``None`` for other objects
    ``note``   what the figure includes beyond what pympler can see, or
               leaves out; empty when nothing needs saying
    """

    __slots__ = ("cache", "flat", "note", "size", "type")
    __module__ = "hivemem"

    type: str
    size: int
    flat: int
    cache: int | None
    note: str

    def __init__(self, type: str, size: int, flat: int, *, cache: int | None = None, note: str = "") -> None:
        self._set(type=type, size=size, flat=flat, cache=cache, note=note)

    def __int__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        deep = f"deep {format_size(self.size)} ({self.size:,} B)"
        extra = f"; {self.note}" if self.note else ""
        return f"SizeOf({self.type}: {deep}, flat {format_size(self.flat)}{extra})"

    def _repr_html_(self) -> str:
        return html_table(
            ("type", "deep size", "flat size"),
            [(self.type, format_size(self.size), format_size(self.flat))],
            caption=self.note,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "type": self.type,
            "size": self.size,
            "flat": self.flat,
            "cache": self.cache,
            "note": self.note,
        }


def sizeof(obj: object) -> SizeOf:
    """Deep size of *obj* in bytes (pympler ``asizeof``), with its flat size and type.

    For a ``functools.lru_cache`` wrapper (or a method of one) the deep size
    includes what its cache holds, which pympler alone does not see:
    ``cache`` has that part, the figure ``status()`` cites.
    """
    from hivemem._profile.advice import deep_size, lru_cache_contents

    target = obj
    func = getattr(obj, "__func__", None)
    if lru_cache_contents(obj) is None and func is not None and lru_cache_contents(func) is not None:
        target = func  # a bound method of a cached method: its cache is the function's
    held = lru_cache_contents(target)
    if held is None:
        size = deep_size(obj)
        return SizeOf(_type_name(type(obj)), size, sys.getsizeof(obj))
    cache = deep_size(*held) if held else 0
    size = deep_size(obj, *held)
    info = cast("functools._lru_cache_wrapper[object]", target).cache_info()  # held is not None: a wrapper
    shared = " (shared by every instance)" if target is not obj else ""
    note = f"includes its lru_cache's {info.currsize:,} entries{shared}: {format_size(cache)}"
    return SizeOf(_type_name(type(obj)), size, sys.getsizeof(obj), cache=cache, note=note)


# --------------------------------------------------------------------------- why()


class Why(Result):
    """The chain of references from a root (module global, frame, thread) to an object.

    ``found``    whether a chain was found within ``max_depth``
    ``root``     what kind of root: ``"module"``, ``"frame"`` or ``None``
    ``chain``    ``(description, how the next object is referenced)`` per link, root first;
                 descriptions are type names, sizes, module and function names,
                 never values
    ``dot``      the chain as Graphviz source
    ``image``    path of the rendered image, or ``None``; ``image_note`` says why not
    """

    __slots__ = ("chain", "dot", "found", "image", "image_note", "root", "target")
    __module__ = "hivemem"

    found: bool
    root: str | None
    chain: tuple[tuple[str, str], ...]
    target: str
    dot: str
    image: str | None
    image_note: str

    def __init__(
        self,
        *,
        found: bool,
        root: str | None,
        chain: Sequence[tuple[str, str]],
        target: str,
        image: str | None = None,
        image_note: str = "",
    ) -> None:
        self._set(
            found=found,
            root=root,
            chain=tuple(chain),
            target=target,
            dot=_dot(chain),
            image=image,
            image_note=image_note,
        )

    def path(self) -> str:
        """The chain on one line: ``module app.state -> .registry -> dict[...] -> list[3] -> bytes``."""
        out = []
        for desc, edge in self.chain:
            out.append(desc)
            if edge:
                out.append(f"--{edge}-->")
        return " ".join(out)

    def __repr__(self) -> str:
        if not self.found:
            head = f"Why {self.target}: no chain from a module global, frame or thread found"
        else:
            links = len(self.chain) - 1
            head = f"Why {self.target} is alive: held from a {self.root} through {links} reference(s)"
        lines = [head]
        for i, (desc, edge) in enumerate(self.chain):
            lines.append(f"  {'  ' * min(i, 12)}{desc}")
            if edge:
                lines.append(f"  {'  ' * min(i, 12)}  via {edge}")
        if self.image:
            lines.append(f"  graph: {self.image}")
        elif self.image_note:
            lines.append(f"  graph: {self.image_note}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from html import escape

        items = "".join(
            f"<li>{escape(desc)}" + (f" <i>via {escape(edge)}</i>" if edge else "") + "</li>"
            for desc, edge in self.chain
        )
        note = escape(self.image or self.image_note)
        head = escape(repr(self).splitlines()[0])
        return f"<div class='hivemem-why'><p>{head}</p><ol>{items}</ol><p>{note}</p></div>"

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        yield "found", self.found
        yield "root", self.root
        yield "chain", self.path()

    def to_dict(self) -> dict[str, object]:
        return {
            "found": self.found,
            "root": self.root,
            "target": self.target,
            "chain": [{"object": d, "edge": e} for d, e in self.chain],
            "dot": self.dot,
            "image": self.image,
            "image_note": self.image_note,
        }


def _dot(chain: Sequence[tuple[str, str]]) -> str:
    def q(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ["digraph why {", "  rankdir=LR; node [shape=box, fontname=Helvetica, fontsize=10];"]
    for i, (desc, _edge) in enumerate(chain):
        lines.append(f"  n{i} [label={q(desc)}];")
    for i, (_desc, edge) in enumerate(chain[:-1]):
        lines.append(f"  n{i} -> n{i + 1} [label={q(edge)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _describe(obj: object) -> str:
    import types

    if isinstance(obj, types.ModuleType):
        return f"module {obj.__name__}"
    if isinstance(obj, types.FrameType):
        code = obj.f_code
        return f"frame of {code.co_name}() at {_short(code.co_filename)}:{obj.f_lineno}"
    name = _type_name(type(obj))
    try:
        size = sys.getsizeof(obj)
    except TypeError:
        return name
    try:
        length = len(obj) if isinstance(obj, Sized) else None
    except Exception:
        length = None
    if length is None:
        return f"{name} ({format_size(size)})"
    return f"{name} of {length} ({format_size(size)})"


def _short(filename: str) -> str:
    from hivemem._profile.render import short_path

    return short_path(filename)


def _edge(parent: object, child: object) -> str:
    """How *parent* refers to *child*, naming only code (attribute, global, variable names) and indexes."""
    import types

    if isinstance(parent, types.ModuleType):
        return "__dict__" if child is getattr(parent, "__dict__", None) else "(module reference)"
    if isinstance(parent, types.FrameType):
        try:
            names = [k for k, v in parent.f_locals.items() if v is child]
        except Exception:
            names = []
        if parent.f_globals is child:
            return "globals"
        return f"local variable {names[0]!r}" if names else "(frame reference)"
    if isinstance(parent, dict):
        for k, v in parent.items():
            if v is child:
                if _namespace(parent) and isinstance(k, str):
                    return f".{k}"  # a module global or attribute name: code, not data
                return f"[a {type(k).__name__} key]"
            if k is child:
                return "(a key)"
        return "(dict reference)"
    if isinstance(parent, (list, tuple)):
        for i, v in enumerate(parent):
            if v is child:
                return f"[{i}]"
    if isinstance(parent, (set, frozenset)):
        return "(member)"
    if getattr(parent, "__dict__", None) is child:
        return "__dict__"
    for slot in getattr(type(parent), "__slots__", ()) or ():
        if isinstance(slot, str) and getattr(parent, slot, None) is child:
            return f".{slot}"
    return "(reference)"


def _namespace(d: dict[object, object]) -> bool:
    """Is *d* a namespace (a module's globals, a class's or an instance's ``__dict__``)?"""
    import types

    for ref in gc.get_referrers(d):
        if isinstance(ref, (types.ModuleType, type)) or getattr(ref, "__dict__", None) is d:
            return True
        if isinstance(ref, types.FrameType) and ref.f_globals is d:
            return True
    return False


def why(
    obj: object,
    *,
    max_depth: int = 20,
    graph: bool | str = False,
) -> Why:
    """Why is *obj* alive? The shortest chain of references from a root, found with objgraph.

    Roots are tried in order: module globals (a proper module), then the
    frames of running code in any thread (a local variable). ``graph=True``
    (or a file name ending in ``.svg``/``.png``) renders the chain with
    Graphviz ``dot`` when it is installed; when it is not, ``image`` is
    ``None`` and ``image_note`` says so (``dot`` holds the source anyway).
    """
    import objgraph

    from hivemem._validate import count

    count("max_depth", max_depth, maximum=10_000)
    me = sys._getframe()
    # Running frames do not show their locals to the garbage collector
    # (CPython 3.11+), so frame roots are found from the other side: which
    # objects do the locals of running code hold directly?
    held: dict[int, tuple[object, str]] = {}
    for frame in sys._current_frames().values():
        f: FrameType | None = frame
        while f is not None:
            if f is not me and f.f_code.co_filename != objgraph.__file__:
                try:
                    local_items = list(f.f_locals.items())
                except Exception:
                    local_items = []
                for name, value in local_items:
                    held.setdefault(id(value), (f, name))
                del local_items
            f = f.f_back
        del f
    del frame
    ignore = (id(me), id(held))
    chain = objgraph.find_backref_chain(
        obj, objgraph.is_proper_module, max_depth=max_depth, extra_ignore=ignore
    )
    root: str | None = "module"
    first_edge = ""
    if len(chain) == 1:
        chain = objgraph.find_backref_chain(
            obj, lambda o: id(o) in held, max_depth=max_depth, extra_ignore=ignore
        )
        root = None
        if id(chain[0]) in held:
            frame_root, name = held[id(chain[0])]
            chain.insert(0, frame_root)
            first_edge = f"local variable {name!r}"
            root = "frame"
    held.clear()
    found = len(chain) > 1
    links = []
    for i, node in enumerate(chain):
        edge = _edge(node, chain[i + 1]) if i + 1 < len(chain) else ""
        if i == 0 and first_edge:
            edge = first_edge
        links.append((_describe(node), edge))
    del chain
    target = _type_name(type(obj))
    image, note = None, ""
    if graph:
        image, note = _render_graph(links, graph)
    return Why(found=found, root=root, chain=links, target=target, image=image, image_note=note)


def _render_graph(links: Sequence[tuple[str, str]], graph: bool | str) -> tuple[str | None, str]:
    import shutil
    import subprocess

    dot = shutil.which("dot")
    if dot is None:
        return (
            None,
            "Graphviz 'dot' is not installed, so no image was drawn; Why.dot holds the Graphviz source",
        )
    if isinstance(graph, str):
        path = graph
    else:
        import tempfile

        fd, path = tempfile.mkstemp(prefix="hivemem-why-", suffix=".svg")
        os.close(fd)
    fmt = "png" if path.endswith(".png") else "svg"
    try:
        subprocess.run([dot, f"-T{fmt}", "-o", path], input=_dot(links).encode(), check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"Graphviz 'dot' failed: {exc}"
    return path, ""


# --------------------------------------------------------------------------- growth()


class Growth(Result):
    """Object types whose count grew since the previous ``growth()`` call.

    ``rows``  ``(type name, count now, increase)``, biggest increase first
    ``first`` True on the first call: the baseline was empty, so every type "grew"
    """

    __slots__ = ("first", "rows")
    __module__ = "hivemem"

    rows: tuple[tuple[str, int, int], ...]
    first: bool

    def __init__(self, rows: Sequence[tuple[str, int, int]], *, first: bool) -> None:
        self._set(rows=tuple(rows), first=first)

    def __bool__(self) -> bool:
        return bool(self.rows)

    def _table(self) -> list[tuple[str, str, str]]:
        return [(name, f"{count:,}", f"{delta:+,}") for name, count, delta in self.rows]

    def __repr__(self) -> str:
        if not self.rows:
            return "Growth: no type grew since the last call"
        head = "Growth (first call: counts since start)" if self.first else "Growth since the last call"
        return "\n".join([head, *text_table(("type", "objects", "grew"), self._table())])

    def _repr_html_(self) -> str:
        return html_table(("type", "objects", "grew"), self._table(), caption="types that grew")

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        yield "first", self.first
        yield "grew", [f"{n} {d}" for n, _, d in self._table()]

    def to_dict(self) -> dict[str, object]:
        return {"first": self.first, "rows": [{"type": n, "count": c, "delta": d} for n, c, d in self.rows]}


_growth_lock = _thread.allocate_lock()
_last_counts: dict[str, int] | None = None


def _after_fork_child() -> None:
    global _growth_lock
    _growth_lock = _thread.allocate_lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)


def _growth_locked() -> tuple[list[tuple[str, int, int]], bool]:
    global _last_counts
    gc.collect()
    counts: dict[str, int] = {}
    for t, (c, _s) in type_table(sizes=False).items():
        name = _type_name(t)
        counts[name] = counts.get(name, 0) + c
    first = _last_counts is None
    before = _last_counts or {}
    rows = [(n, c, c - before.get(n, 0)) for n, c in counts.items() if c > before.get(n, 0)]
    _last_counts = counts
    return rows, first


def growth(limit: int = 10) -> Growth:
    """Which object types grew since the last call (objgraph's ``growth`` with untracked objects counted)."""
    from hivemem._validate import count

    count("limit", limit)
    # One line on purpose (see type_table): no interrupt can leave the lock held.
    with _growth_lock: rows, first = _growth_locked()  # noqa: E701  # fmt: skip
    rows.sort(key=lambda r: (-r[2], r[0]))
    return Growth(rows[:limit], first=first)


# --------------------------------------------------------------------------- status()


class Status(Result):
    """One screen of memory: usage, limit, pressure, fragmentation, governor, biggest types, advice."""

    __slots__ = ("advice", "fragmentation", "governor", "limit", "pressure", "types", "usage")
    __module__ = "hivemem"

    usage: MemoryUsage
    limit: MemoryLimit | None
    pressure: str | None
    governor: dict[str, object]
    fragmentation: dict[str, object]
    types: TypeStats | None
    advice: tuple[Advice, ...]

    def __init__(
        self,
        *,
        usage: MemoryUsage,
        limit: MemoryLimit | None,
        pressure: str | None,
        governor: dict[str, object],
        fragmentation: dict[str, object],
        types: TypeStats | None,
        advice: Sequence[Advice] = (),
    ) -> None:
        self._set(
            usage=usage,
            limit=limit,
            pressure=pressure,
            governor=dict(governor),
            fragmentation=dict(fragmentation),
            types=types,
            advice=tuple(advice),
        )

    def _rows(self) -> list[tuple[str, str]]:
        u = self.usage
        rows = [("rss", format_size(u.rss))]
        for name in ("uss", "pss", "swap", "peak"):
            value = getattr(u, name)
            if value is not None:
                rows.append((name, format_size(value)))
        if self.limit is not None:
            share = f" ({100 * u.rss / self.limit.bytes:.1f}% used)" if u.rss and self.limit.bytes else ""
            rows.append(("limit", f"{format_size(self.limit.bytes)} from {self.limit.source}{share}"))
        else:
            rows.append(("limit", "unknown"))
        rows.append(("pressure", self.pressure or "n/a (no governor running: hivemem.govern() starts one)"))
        frag = self.fragmentation
        if "pymalloc_free" in frag:
            free, arenas = _figure(frag, "pymalloc_free") or 0, _figure(frag, "pymalloc_arenas") or 0
            pct = 100 * free / arenas if arenas else 0.0
            rows.append(
                (
                    "pymalloc",
                    f"{format_size(free)} free of {format_size(arenas)} "
                    f"in {frag['pymalloc_arena_count']} arenas ({pct:.1f}% free)",
                )
            )
        if "malloc_free" in frag:
            rows.append(("malloc", f"{format_size(_figure(frag, 'malloc_free'))} free inside glibc malloc"))
        if "note" in frag:
            rows.append(("fragmentation", str(frag["note"])))
        gov = self.governor
        if gov.get("running") is not None:
            rows.append(
                (
                    "governor",
                    f"{'running' if gov['running'] else 'stopped'}, "
                    f"budget {format_size(_figure(gov, 'budget'))}, "
                    f"{gov.get('events', 0)} events"
                    + (f", woken by {', '.join(_kinds(gov.get('sources')))}" if gov.get("sources") else "")
                    + (f", last: {gov['last']}" if gov.get("last") else ""),
                )
            )
        else:
            rows.append(("governor", "none"))
        return rows

    def __repr__(self) -> str:
        lines = ["hivemem status", *text_table(("", ""), self._rows())[1:]]
        if self.types is not None:
            lines.append("  biggest types:")
            lines += text_table(("type", "objects", "size"), self.types._table()[:8], indent="    ")
        for a in self.advice:
            lines.append(f"  advice: {a.text}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        out = html_table(("", ""), self._rows(), caption="hivemem status")
        if self.types is not None:
            out += self.types._repr_html_()
        if self.advice:
            out += "".join(a._repr_html_() for a in self.advice)
        return f"<div class='hivemem-status'>{out}</div>"

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        yield from self._rows()
        if self.advice:
            yield "advice", [a.text for a in self.advice]

    def to_dict(self) -> dict[str, object]:
        return {
            "usage": self.usage.to_dict(),
            "limit": self.limit.to_dict() if self.limit is not None else None,
            "pressure": self.pressure,
            "governor": dict(self.governor),
            "fragmentation": dict(self.fragmentation),
            "types": self.types.to_dict() if self.types is not None else None,
            "advice": [a.to_dict() for a in self.advice],
        }


def _kinds(sources: object) -> list[str]:
    return [str(s.get("kind")) for s in sources if isinstance(s, dict)] if isinstance(sources, list) else []


def _governor_state() -> tuple[str | None, dict[str, object]]:
    """The running governor's level and state, read defensively (it may not exist or be mid-change)."""
    from hivemem._governor.active import governed

    gov = governed()
    if gov is None:
        return None, {}
    state: dict[str, object] = {}
    level = None
    try:
        level = str(getattr(gov.level, "name", gov.level))
    except Exception:
        pass
    for name in ("running", "budget", "sources"):
        try:
            state[name] = getattr(gov, name)
        except Exception:
            pass
    try:
        events = gov.events
        state["events"] = len(events)
        if events:
            state["last"] = str(getattr(events[-1], "message", "") or getattr(events[-1], "kind", ""))
    except Exception:
        pass
    return level, state


def _figure(figures: Mapping[str, object], key: str) -> int | None:
    """A byte figure ``status()`` put in *figures*, or ``None`` (shown as n/a) when it is not there."""
    value = figures.get(key)
    return value if isinstance(value, int) else None


def status(*, types: int = 8, advice: bool = True, min_advice: int | str | None = None) -> Status:
    """One screen: usage, limit and source, pressure level, fragmentation, governor, biggest types, advice.

    *types* is how many types to list (0 skips the object walk, which costs
    about a microsecond per live object). Advice is given only where a
    measured figure crosses *min_advice* (default 16 MiB).
    """
    from hivemem._errors import InvalidArgument
    from hivemem._measure.native import malloc_info, pymalloc_stats
    from hivemem._measure.usage import usage as read_usage
    from hivemem._validate import count, show, size

    count("types", types, minimum=0)
    if not isinstance(advice, bool):
        raise InvalidArgument(f"advice={show(advice)}: expected True or False")
    threshold = size("min_advice", min_advice, allow_none=True)
    u = read_usage()
    try:
        from hivemem._measure.limits import memory_limit

        limit: MemoryLimit | None = memory_limit()
    except Exception:
        limit = None
    level, gov = _governor_state()
    # What these figures mean and why RSS keeps them: docs/design.md#fragmentation.
    frag: dict[str, object] = {}
    stats = pymalloc_stats()
    if stats is not None:
        frag["pymalloc_free"] = stats["free"]
        frag["pymalloc_arenas"] = stats["arenas"]
        frag["pymalloc_arena_count"] = stats["arena_count"]
        frag["pymalloc_free_share"] = stats["free"] / stats["arenas"] if stats["arenas"] else 0.0
    info = malloc_info()
    if info is not None:
        frag["malloc_free"] = info["free"]
    if stats is None and info is None:
        frag["note"] = "no allocator statistics here (pymalloc off and no glibc mallinfo2)"
    type_stats = top(types) if types else None
    tips: list[Advice] = []
    if advice:
        from hivemem._profile.advice import MIN_SIZE, advise

        tips = advise(min_size=MIN_SIZE if threshold is None else threshold, pymalloc=stats, malloc=info)
    return Status(
        usage=u,
        limit=limit,
        pressure=level,
        governor=gov,
        fragmentation=frag,
        types=type_stats,
        advice=tips,
    )
