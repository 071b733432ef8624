"""Children end with their parent: on SIGTERM (the handler unwinds), and when the parent is
killed outright (the child's own watcher, and PDEATHSIG on Linux)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from labkit import procs
from labkit.config import REPO_ROOT

#: a lab child: watches its parent, then sleeps
CHILD = "from labkit.procs import watch_parent; import time; watch_parent(); time.sleep(600)"


def gone(pid: int, within_s: float = 30.0) -> bool:
    """Whether ``pid`` is gone (or a zombie) within ``within_s`` (a deadline, not a timing)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def parent(body: str) -> subprocess.Popen:
    """A Python parent running ``body``; it prints its child's pid on its first line."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(body)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, text=True)


def child_pid(p: subprocess.Popen) -> int:
    return int(p.stdout.readline())


@pytest.mark.parametrize("how", ["main thread (PDEATHSIG and the watcher)",
                                 "watcher alone (no PDEATHSIG)"])
def test_a_child_ends_when_its_parent_is_killed(how):
    extra = "" if how.startswith("main") else ", preexec_fn=None"
    p = parent(f"""
        import sys, time
        from labkit import procs
        c = procs.popen([sys.executable, "-c", {CHILD!r}]{extra})
        print(c.pid, flush=True)
        time.sleep(600)
    """)
    pid = child_pid(p)
    time.sleep(1.0)  # the child has started its watcher
    assert not gone(pid, within_s=0.5)
    p.kill()  # SIGKILL: no handler, no atexit, nothing runs in the parent
    p.wait()
    assert gone(pid)


def test_sigterm_unwinds_and_stops_the_children():
    p = parent(f"""
        import sys, time
        from labkit import procs
        with procs.signals_raise():
            c = procs.popen([sys.executable, "-c", "import time; time.sleep(600)"],
                            preexec_fn=None)
            try:
                print(c.pid, flush=True)
                time.sleep(600)
            finally:
                print("unwound", flush=True)
    """)
    pid = child_pid(p)
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) == 128 + signal.SIGTERM
    assert p.stdout.read().strip() == "unwound"
    assert gone(pid)  # atexit's stop_all: this child has no watcher and no PDEATHSIG


def test_signals_raise_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exc:
        with procs.signals_raise():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
    assert exc.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before


def test_stop_ends_a_child_that_ignores_sigterm():
    c = procs.popen([sys.executable, "-c",
                     "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                     "print('ready', flush=True); time.sleep(600)"], stdout=subprocess.PIPE)
    assert c.stdout.readline().strip() == b"ready"
    assert c in procs.running()
    assert procs.stop(c, grace_s=0.5) == -signal.SIGKILL
    assert c not in procs.running()
    c.stdout.close()


def test_watch_parent_does_nothing_outside_the_lab(monkeypatch):
    monkeypatch.delenv(procs.PARENT_ENV, raising=False)
    assert procs.watch_parent() is False


def _crash():
    os.kill(os.getpid(), signal.SIGSEGV)  # what a native fault does to the process


def _hang():
    time.sleep(600)


def _raise():
    raise ValueError("bad option")


def test_isolated_returns_the_value_from_a_child():
    assert procs.isolated(os.getpid, timeout_s=60) != os.getpid()
    assert procs.isolated(sorted, [3, 1, 2], timeout_s=60) == [1, 2, 3]


@pytest.mark.parametrize("fn, words", [(_crash, "crashed (killed by SIGSEGV)"),
                                       (_hang, "timed out after 3 s (killed)"),
                                       (_raise, "ValueError: bad option")])
def test_isolated_names_a_crash_a_hang_and_an_error(fn, words):
    before = {c.pid for c in psutil.Process().children()}
    with pytest.raises(procs.IsolatedFailure) as exc:
        procs.isolated(fn, timeout_s=3)
    assert words in exc.value.reason
    left = [c for c in psutil.Process().children() if c.pid not in before
            and c.status() != psutil.STATUS_ZOMBIE
            and "resource_tracker" not in " ".join(c.cmdline())]  # multiprocessing's own
    assert left == []
