from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import hivemem
import hivemem.widgets as widgets
from hivemem._reclaim import hooks as _hooks

from .conftest import run_python


class FakeQtWidget:
    """Duck-typed like a Qt widget: isVisible() and deleteLater()."""

    def __init__(self, visible: bool) -> None:
        self.visible = visible
        self.deleted = 0

    def isVisible(self) -> bool:
        return self.visible

    def deleteLater(self) -> None:
        self.deleted += 1


class Opaque:
    """Destroyable, but with no way to tell whether it is shown."""

    def destroy(self) -> None:
        raise AssertionError("must not be destroyed")


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    yield
    for w in widgets.tracked():
        widgets.untrack(w)


def test_hidden_disposable_widgets_are_deleted_shown_ones_kept() -> None:
    """Under pressure, hidden disposable widgets get deleteLater(); shown or non-disposable ones stay."""
    hidden, shown, keep = FakeQtWidget(False), FakeQtWidget(True), FakeQtWidget(False)
    seen: list[object] = []
    widgets.track(hidden, on_dispose=seen.append)
    widgets.track(shown)
    widgets.track(keep, disposable=False)
    result = widgets.dispose_hidden("high")
    assert (hidden.deleted, shown.deleted, keep.deleted) == (1, 0, 0)
    assert seen == [hidden] and result["shown"] == 1 and len(result["disposed"]) == 1  # type: ignore[arg-type]
    assert hidden not in widgets.tracked() and shown in widgets.tracked()


def test_runs_as_a_release_hook_at_its_level() -> None:
    """track() installs a release hook; a widget tracked for CRITICAL is left alone at HIGH."""
    w = FakeQtWidget(False)
    widgets.track(w, level="critical")
    assert any(name.endswith("_pressure_hook") for name, _ in _hooks.hooks())
    _hooks.run_hooks("high")
    assert w.deleted == 0
    report = hivemem.optimize(strategies=["hooks"], aggressiveness="aggressive")
    assert w.deleted == 1 and report.steps[0].error is None


def test_unknown_visibility_is_never_destroyed() -> None:
    """A widget offering neither isVisible() nor winfo_ismapped() is kept, with the reason."""
    w = Opaque()
    widgets.track(w)
    result = widgets.dispose_hidden("critical")
    assert "cannot tell" in next(iter(result["kept"].values()))  # type: ignore[attr-defined]


def test_tracking_is_weak() -> None:
    """Tracking a widget does not keep it alive."""
    w = FakeQtWidget(False)
    widgets.track(w)
    del w
    gc.collect()
    assert widgets.tracked() == []


def test_qt_style_widgets_can_be_deleted_from_another_thread() -> None:
    """deleteLater() is thread-safe in Qt, so a pass in another thread deletes a hidden Qt-like widget."""
    w = FakeQtWidget(False)
    widgets.track(w)
    t = threading.Thread(target=widgets.dispose_hidden, args=("critical",))
    t.start()
    t.join()
    assert w.deleted == 1


@pytest.mark.parametrize(
    ("widget", "kwargs"),
    [(object(), {}), (FakeQtWidget(False), {"disposable": "yes"}), (FakeQtWidget(False), {"level": "max"})],
)
def test_bad_input(widget: object, kwargs: dict[str, object]) -> None:
    """A non-widget, a non-bool disposable or an unknown level raises InvalidArgument."""
    with pytest.raises(hivemem.InvalidArgument):
        widgets.track(widget, **kwargs)  # type: ignore[arg-type]


def _socket(number: int) -> Path:
    return Path(f"/tmp/.X11-unix/X{number}")


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (make test runs scripts/ensure-xvfb.sh to install it)")
    number = next(
        n for n in range(99, 200) if not os.path.exists(f"/tmp/.X{n}-lock") and not _socket(n).exists()
    )
    proc = subprocess.Popen(
        [exe, f":{number}", "-screen", "0", "640x480x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not _socket(number).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not _socket(number).exists():
        proc.kill()
        proc.wait()
        pytest.skip(f"Xvfb could not start display :{number} within 10 s")
    yield f":{number}"
    proc.terminate()
    proc.wait()


def _tk_or_skip() -> None:
    try:
        import tkinter  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"tkinter is not available in this Python: {exc}")


def test_real_tkinter_widgets_on_a_virtual_display(display: str) -> None:
    """With a real Tk on Xvfb: the withdrawn disposable Toplevel is destroyed, the shown one and the
    non-disposable one survive; from another thread tk widgets are left alone with the reason."""
    _tk_or_skip()
    out = run_python(
        """
        import json, threading, tkinter, hivemem, hivemem.widgets as widgets
        root = tkinter.Tk()
        shown, hidden, keep = tkinter.Toplevel(root), tkinter.Toplevel(root), tkinter.Toplevel(root)
        tkinter.Label(hidden, text="big dialog").pack()
        hidden.withdraw(); keep.withdraw()
        root.update()
        disposed = []
        for w in (shown, hidden):
            widgets.track(w, on_dispose=disposed.append)
        widgets.track(keep, disposable=False)
        other = {}
        t = threading.Thread(target=lambda: other.update(widgets.dispose_hidden("critical")))
        t.start(); t.join()
        report = hivemem.optimize(strategies=["hooks"])
        root.update()
        print(json.dumps({
            "mapped": shown.winfo_ismapped(),
            "exists": [shown.winfo_exists(), hidden.winfo_exists(), keep.winfo_exists()],
            "disposed": [str(w) for w in disposed],
            "hidden": str(hidden),
            "other_kept": list(other["kept"].values()),
            "error": report.steps[0].error,
        }))
        root.destroy()
        """,
        env={"DISPLAY": display},
    )
    res = json.loads(out)
    assert res["mapped"] == 1
    assert res["exists"] == [1, 0, 1]
    assert res["disposed"] == [res["hidden"]] and res["error"] is None
    assert any("only its own thread" in reason for reason in res["other_kept"])
