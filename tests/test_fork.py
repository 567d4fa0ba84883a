"""prepare_fork() and after_fork_child(): the gc.freeze pre-fork recipe, in subprocesses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .conftest import SRC, linux_only, run_python

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")


def test_prepare_fork_disables_gc_and_freezes() -> None:
    """prepare_fork() turns automatic GC off and freezes every tracked object; repeat calls add new ones."""
    out = run_python(
        """
        import gc, json
        import hivemem
        first = hivemem.prepare_fork()
        off = gc.isenabled()
        junk = [[] for _ in range(1000)]  # lists are always GC-tracked
        second = hivemem.prepare_fork()
        print(json.dumps([first, off, second, gc.get_freeze_count()]))
        """
    )
    first, enabled, second, count = json.loads(out)
    assert enabled is False
    assert first > 1000
    assert second >= first + 1000
    assert count == second


@pytest.mark.parametrize("how", ["explicit", "register_at_fork"])
def test_child_reenables_gc_parent_stays_frozen(how: str) -> None:
    """In a forked child GC is back on with the parent's objects still frozen; the parent keeps GC off."""
    out = run_python(
        f"""
        import gc, json, os
        import hivemem
        frozen = hivemem.prepare_fork()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            if {how!r} == "explicit":
                hivemem.after_fork_child()
            os.write(w, json.dumps([gc.isenabled(), gc.get_freeze_count()]).encode())
            os._exit(0)
        os.close(w)
        child = json.loads(os.read(r, 1000))
        os.waitpid(pid, 0)
        print(json.dumps([frozen, child, gc.isenabled()]))
        """
    )
    frozen, (child_enabled, child_frozen), parent_enabled = json.loads(out)
    assert child_enabled is True
    assert child_frozen == frozen
    assert parent_enabled is False


def test_program_that_disabled_gc_keeps_it_off_in_children() -> None:
    """If GC was off before the first prepare_fork(), after_fork_child() leaves it off."""
    out = run_python(
        """
        import gc, json, os
        import hivemem
        gc.disable()
        hivemem.prepare_fork()
        pid = os.fork()
        if pid == 0:
            os._exit(0 if not hivemem.after_fork_child() else 3)
        _, status = os.waitpid(pid, 0)
        print(json.dumps(os.waitstatus_to_exitcode(status)))
        """
    )
    assert json.loads(out) == 0


def test_after_fork_child_without_prepare_changes_nothing() -> None:
    """after_fork_child() alone does not touch the GC state the program chose."""
    out = run_python(
        """
        import gc, json
        import hivemem
        gc.disable()
        frozen = gc.get_freeze_count()  # not 0 at start-up on every CPython (3.12.1: 375)
        print(json.dumps([hivemem.after_fork_child(), gc.isenabled(), gc.get_freeze_count() - frozen]))
        """
    )
    assert json.loads(out) == [False, False, 0]


@linux_only
def test_children_keep_pages_shared() -> None:
    """A worker's full collection copies far fewer parent pages after prepare_fork() (USS at most half).

    Real memory, in a subprocess: 300k GC-tracked dicts in the parent; a child
    runs gc.collect() and reports its USS (private pages). Without the recipe
    the collection writes to every tracked object's header and copies most
    pages (observed 58.5 MiB); with it the frozen objects are never visited
    (2.4 MiB). The assertion allows a ratio of 0.5 to absorb allocator noise.
    """
    code = """
        import gc, json, os
        import hivemem
        PREPARE = {prepare}
        if PREPARE:
            gc.disable()  # early: no collection punches holes in the shared data
        data = [{{"k": i, "v": [str(i)]}} for i in range(300_000)]  # tracked containers
        if PREPARE:
            hivemem.prepare_fork()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            gc.collect()  # a worker's full collection, as a request would trigger
            os.write(w, str(hivemem.usage().uss).encode())
            os._exit(0)
        os.close(w)
        uss = int(os.read(r, 100))
        os.waitpid(pid, 0)
        print(json.dumps(uss))
        """
    plain = json.loads(run_python(code.format(prepare=False)))
    frozen = json.loads(run_python(code.format(prepare=True)))
    assert frozen < plain * 0.5, (plain, frozen)


GUNICORN_APP = """
import gc, json, os
DATA = [{"k": i, "v": [i]} for i in range(100_000)]  # the preloaded, shared structure

def app(environ, start_response):
    body = json.dumps({"pid": os.getpid(), "gc": gc.isenabled(), "frozen": gc.get_freeze_count()})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]
"""

GUNICORN_CONF = """
import hivemem
from hivemem.integrations.gunicorn import child_exit, post_fork, post_worker_init, pre_fork

hivemem.prepare_fork()  # early: the master stops collecting before the app is preloaded
preload_app = True
workers = 2
bind = "unix:{sock}"
"""


def _get_over_unix_socket(path: str) -> dict[str, object]:
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(10)
            self.sock.connect(path)

    conn = Conn("localhost")
    try:
        conn.request("GET", "/")
        return json.loads(conn.getresponse().read())  # type: ignore[no-any-return]
    finally:
        conn.close()


@linux_only
def test_gunicorn_hooks_for_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a real gunicorn (unix socket, 2 workers) the hooks freeze the preloaded app and USR2 works.

    Each worker answers with GC on and the parent's 100k objects frozen; a
    SIGUSR2 to one worker leaves that worker's report in the runtime directory;
    process_tree(master) lists the master and both workers.
    """
    pytest.importorskip("gunicorn")
    import signal
    import subprocess
    import sys
    import time

    import hivemem
    from hivemem._governor.signals import read_status

    sock = tmp_path / "g.sock"
    (tmp_path / "app.py").write_text(GUNICORN_APP)
    (tmp_path / "gunicorn.conf.py").write_text(GUNICORN_CONF.format(sock=sock))
    run_dir = tmp_path / "run"
    monkeypatch.setenv("HIVEMEM_RUNTIME_DIR", str(run_dir))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, str(tmp_path)]))
    master = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(tmp_path / "gunicorn.conf.py"), "app:app"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        answers: dict[int, dict[str, object]] = {}
        deadline = time.monotonic() + 60
        while len(answers) < 2 and time.monotonic() < deadline:
            try:
                answer = _get_over_unix_socket(str(sock))
                answers[answer["pid"]] = answer  # type: ignore[index]
            except OSError:
                time.sleep(0.1)
        assert answers  # the kernel picks which worker accepts; one or both answered
        for answer in answers.values():
            assert answer["gc"] is True
            assert answer["frozen"] > 100_000  # type: ignore[operator]
        workers = [p.pid for p in hivemem.process_tree(master.pid).children]
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while read_status(workers[0]) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        status = read_status(workers[0])
        assert status is not None and status["trigger"] == "signal", status
        assert read_status(master.pid) is None
    finally:
        master.terminate()
        out, _ = master.communicate(timeout=30)
    assert b"hivemem" not in out.lower() or b"failed" not in out.lower(), out.decode()
