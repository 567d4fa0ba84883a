"""Widget cleanup: destroy hidden, disposable GUI widgets under memory pressure.

An application of release hooks (``hivemem.on_pressure``)::

    import hivemem.widgets
    hivemem.widgets.track(settings_dialog, disposable=True, on_dispose=forget_dialog)

Under pressure (the ``hooks`` strategy, or :func:`dispose_hidden` called by
the application), every tracked widget that is disposable and not currently
shown is destroyed. Duck-typed, no GUI toolkit is imported:

* shown or not: ``isVisible()`` (Qt) or ``winfo_ismapped()`` (tkinter); a
  widget offering neither is never destroyed (hivemem cannot tell);
* destroyed with ``deleteLater()`` (Qt: deleted by its event loop) or
  ``destroy()`` (tkinter).

tkinter widgets may only be touched from the thread that created the Tcl
interpreter, so a widget without ``deleteLater()`` is left alone, with the
reason in the result, when the pass runs in another thread (a background
governor); call :func:`dispose_hidden` from the GUI thread, for example in
an ``after()`` callback, to handle those. Qt's ``deleteLater()`` is safe from
any thread.

Widgets are held through weak references where the type allows (tkinter
and Qt widgets do); a widget that cannot be weakly referenced is held
strongly until it is disposed or :func:`untrack`-ed. After a widget is
destroyed the application must not use it again: pass ``on_dispose`` to
drop your own reference and rebuild the widget when it is next needed.
"""

from __future__ import annotations

import _thread
import os
import weakref

from hivemem._errors import InvalidArgument
from hivemem._levels import Pressure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["dispose_hidden", "track", "tracked", "untrack"]

_lock = _thread.allocate_lock()
_records: dict[int, _Record] = {}
_hooked = False


class _Record:
    __slots__ = ("disposable", "level", "on_dispose", "ref", "strong", "thread")

    def __init__(
        self, widget: object, disposable: bool, level: Pressure, on_dispose: Callable[[object], object] | None
    ) -> None:
        self.disposable = disposable
        self.level = level
        self.on_dispose = on_dispose
        self.thread = _thread.get_ident()
        self.strong: object = None
        self.ref: weakref.ref[object] | None = None
        try:
            self.ref = weakref.ref(widget)
        except TypeError:
            self.strong = widget

    def widget(self) -> object:
        return self.strong if self.ref is None else self.ref()


def _after_fork_child() -> None:
    global _lock
    _lock = _thread.allocate_lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)


def _name(widget: object) -> str:
    path = str(widget) if hasattr(widget, "winfo_ismapped") else ""
    if not path:
        object_name = getattr(widget, "objectName", None)
        try:
            path = str(object_name()) if callable(object_name) else ""
        except Exception:
            path = ""
    return f"{type(widget).__name__}({path or hex(id(widget))})"


def track(
    widget: object,
    disposable: bool = True,
    *,
    level: object = "moderate",
    on_dispose: Callable[[object], object] | None = None,
) -> object:
    """Track *widget*; if *disposable*, destroy it under pressure >= *level* while it is not shown.

    Returns the widget. *on_dispose(widget)* is called right after it is
    destroyed. Tracking again updates the settings. Raises
    :class:`hivemem.InvalidArgument` for a widget with neither
    ``destroy()`` nor ``deleteLater()``, or a bad level.
    """
    global _hooked
    if not (callable(getattr(widget, "deleteLater", None)) or callable(getattr(widget, "destroy", None))):
        raise InvalidArgument(
            f"cannot track {widget!r}: expected a widget with destroy() (tkinter) or deleteLater() (Qt)"
        )
    if not isinstance(disposable, bool):
        raise InvalidArgument(f"disposable={disposable!r}: expected True or False")
    if on_dispose is not None and not callable(on_dispose):
        raise InvalidArgument(f"on_dispose={on_dispose!r} is not callable")
    record = _Record(widget, disposable, Pressure.parse(level), on_dispose)
    with _lock:
        _records[id(widget)] = record
        hook = not _hooked
        _hooked = True
    if hook:
        from hivemem._reclaim.hooks import on_pressure

        on_pressure("normal", _pressure_hook)
    return widget


def untrack(widget: object) -> bool:
    """Stop tracking *widget*; returns whether it was tracked."""
    with _lock:
        record = _records.get(id(widget))
        if record is None or record.widget() is not widget:
            return False
        del _records[id(widget)]
        return True


def tracked() -> list[object]:
    """The tracked widgets that are still alive."""
    with _lock:
        records = list(_records.values())
    return [w for w in (r.widget() for r in records) if w is not None]


def _shown(widget: object) -> bool | None:
    for method in ("isVisible", "winfo_ismapped"):
        fn = getattr(widget, method, None)
        if callable(fn):
            return bool(fn())
    return None


def dispose_hidden(level: object = "critical") -> dict[str, object]:
    """Destroy every disposable tracked widget that is hidden, for pressure *level*.

    Returns ``{"disposed": [names], "shown": n, "kept": {name: reason},
    "errors": [text]}``. A widget whose check or destruction raises is
    untracked and reported in ``errors``; nothing is raised.
    """
    current = Pressure.parse(level)
    me = _thread.get_ident()
    with _lock:
        items = list(_records.items())
    disposed: list[str] = []
    kept: dict[str, str] = {}
    errors: list[str] = []
    shown = 0
    for key, record in items:
        widget = record.widget()
        if widget is None:
            _forget(key, record)
            continue
        if not record.disposable or record.level > current:
            continue
        name = _name(widget)
        delete_later = getattr(widget, "deleteLater", None)
        if not callable(delete_later) and record.thread != me:
            kept[name] = (
                "tkinter-style widget: only its own thread may destroy it (call dispose_hidden() there)"
            )
            continue
        try:
            visible = _shown(widget)
            if visible is None:
                kept[name] = "cannot tell whether it is shown (no isVisible() or winfo_ismapped())"
                continue
            if visible:
                shown += 1
                continue
            if callable(delete_later):
                delete_later()
            else:
                widget.destroy()  # type: ignore[attr-defined]
        except Exception as exc:  # a dead or broken widget must not break the pass
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            _forget(key, record)
            continue
        _forget(key, record)
        disposed.append(name)
        if record.on_dispose is not None:
            try:
                record.on_dispose(widget)
            except Exception as exc:
                errors.append(f"{name}: on_dispose raised {type(exc).__name__}: {exc}")
    return {"disposed": disposed, "shown": shown, "kept": kept, "errors": errors}


def _forget(key: int, record: _Record) -> None:
    with _lock:
        if _records.get(key) is record:
            del _records[key]


def _pressure_hook(level: Pressure) -> None:
    result = dispose_hidden(level)
    if result["errors"]:
        import logging

        logging.getLogger("hivemem").warning("hivemem.widgets: %s", "; ".join(result["errors"]))  # type: ignore[arg-type]
