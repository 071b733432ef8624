"""Child processes that end with the process that started them, however it ends.

The lab starts servers (``python -m serve``), competing load processes and notebook
kernels. Each must be gone when its parent is, whether the parent returned, raised, was
stopped with Ctrl-C or SIGTERM, or was killed outright. Three layers, each covering what
the one before cannot:

- :func:`signals_raise` (around every ``labkit`` command): SIGTERM and SIGHUP raise
  ``SystemExit`` like Ctrl-C raises ``KeyboardInterrupt``, so every ``with`` block and
  ``finally`` clause that stops a child runs (a Python process killed by the default
  SIGTERM action runs none of them);
- :func:`popen`: ``subprocess.Popen`` that registers the child (ended at interpreter exit
  if still running), tells it its parent's pid (``LABKIT_PARENT_PID``) and, on Linux, asks
  the kernel to send it SIGTERM when the parent dies (``PR_SET_PDEATHSIG``);
- :func:`watch_parent` (called first thing in a child that is a lab process: the server,
  a load process): a thread that blocks until the parent exits -- a pidfd on Linux, a
  kqueue on macOS, so it wakes for nothing else and costs no CPU while measurements run
  -- and then ends the process (SIGTERM to itself, so a server shuts down cleanly, then
  ``os._exit`` if that has not ended it). This covers a parent killed with SIGKILL, and
  grandchildren: a server started inside a notebook kernel ends when the kernel does
  (ipykernel ends a kernel whose parent, the batch runner, went away).

Notebook kernels are jupyter_client's: they run in their own session (Ctrl-C at the
terminal reaches only ``labkit journal``), jupyter_client shuts them down when the batch
unwinds, and ipykernel's own parent poller ends one whose parent died.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import multiprocessing
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterator, Sequence

PARENT_ENV = "LABKIT_PARENT_PID"
#: seconds a child given SIGTERM has to end before it is killed
GRACE_S = 10.0

_children: list[subprocess.Popen] = []
_lock = threading.Lock()
_PR_SET_PDEATHSIG = 1


def _libc_prctl():
    """libc's prctl, looked up once here: the child must not load anything between fork
    and exec (the dynamic loader's lock may be held by another thread of the parent)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _libc_prctl()


def _die_with_parent() -> None:  # runs in the child between fork and exec (Linux)
    with contextlib.suppress(Exception):
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def popen(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen(argv, **kwargs)`` for a child that must not outlive this process
    (see the module doc). ``env`` is extended with ``LABKIT_PARENT_PID``."""
    env = dict(kwargs.pop("env", None) or os.environ)
    env[PARENT_ENV] = str(os.getpid())
    # PDEATHSIG fires when the thread that forked exits: only the main thread lives as long
    # as the process (from another thread, the child relies on watch_parent)
    if _prctl is not None and threading.current_thread() is threading.main_thread() \
            and "preexec_fn" not in kwargs:
        kwargs["preexec_fn"] = _die_with_parent
    proc = subprocess.Popen(list(argv), env=env, **kwargs)
    with _lock:
        _children[:] = [p for p in _children if p.poll() is None] + [proc]
    return proc


def stop(proc: subprocess.Popen, grace_s: float = GRACE_S) -> int | None:
    """SIGTERM, then SIGKILL after ``grace_s``; returns the exit status (None if unknown)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
    with _lock:
        if proc in _children:
            _children.remove(proc)
    return proc.returncode


def running() -> list[subprocess.Popen]:
    """The children started through :func:`popen` that are still running."""
    with _lock:
        return [p for p in _children if p.poll() is None]


@atexit.register
def stop_all() -> None:
    """End every child started through :func:`popen` that is still running."""
    for proc in running():
        stop(proc, grace_s=3.0)


@contextlib.contextmanager
def signals_raise(make: Callable[[int], BaseException] = lambda signum: SystemExit(128 + signum),
                  signums: Sequence[int] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Inside the block each of ``signums`` raises ``make(signum)`` in the main thread
    (default: ``SystemExit(128 + signum)``, so SIGTERM unwinds like Ctrl-C and every
    ``with``/``finally`` that stops a child runs); the old handlers come back after. A
    second signal while unwinding takes the default action. Only the main thread can
    take signals: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        signal.signal(signum, signal.SIG_DFL)
        raise make(signum)

    old = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, previous in old.items():
            signal.signal(s, previous)


def _wait_for_exit(pid: int) -> None:
    """Block until process ``pid`` (not a child of ours) exits; no polling where the OS
    can tell us (pidfd on Linux, kqueue on BSD/macOS)."""
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return  # already gone
        try:
            select.select([fd], [], [])
        finally:
            os.close(fd)
        return
    if hasattr(select, "kqueue"):
        kq = select.kqueue()
        try:
            ev = select.kevent(pid, filter=select.KQ_FILTER_PROC, flags=select.KQ_EV_ADD,
                               fflags=select.KQ_NOTE_EXIT)
            kq.control([ev], 1, None)
        except OSError:
            return
        finally:
            kq.close()
        return
    while os.getppid() == pid:  # elsewhere: look once a second
        time.sleep(1.0)


def _end_self(grace_s: float) -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_s)
    os._exit(1)


def watch_parent(grace_s: float = GRACE_S, parent: int | None = None) -> bool:
    """End this process when its parent ends (see the module doc). Only where
    ``LABKIT_PARENT_PID`` (or ``parent``) names the parent (the child was started by
    :func:`popen` or :func:`isolated`); returns whether a watcher was started."""
    want = os.environ.pop(PARENT_ENV, None)  # not passed on: it names our parent, not theirs
    if parent is None:
        if not want or not want.isdigit():
            return False
        parent = int(want)
    if os.getppid() != parent:  # it is already gone (we were re-parented)
        threading.Thread(target=_end_self, args=(grace_s,), daemon=True).start()
        return True

    def watch() -> None:
        _wait_for_exit(parent)
        _end_self(grace_s)

    threading.Thread(target=watch, name="labkit-parent-watch", daemon=True).start()
    return True


# -- work that may crash or hang natively, in a child with a timeout ------------------------
class IsolatedFailure(RuntimeError):
    """The isolated call crashed its process, ran past its timeout, or raised; ``reason``
    says which, in words for a record (``failed: <reason>``)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def exit_words(code: int | None) -> str:
    """A child's exit status in words for a record: ``exit status 1``, ``killed by SIGKILL``."""
    if code is None:
        return "no exit status"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


def _isolated_child(conn, parent: int, fn, args, kwargs) -> None:
    watch_parent(parent=parent)
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - sent to the parent, in words
        conn.send((False, f"{type(exc).__name__}: {exc}"))
    else:
        conn.send((True, value))
    conn.close()


def isolated(fn: Callable[..., Any], *args: Any, timeout_s: float, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a fresh child process (spawned: nothing of this process's
    native state, such as ONNX Runtime's threads, is inherited) that ends within
    ``timeout_s``; its return value comes back pickled. Raises :class:`IsolatedFailure`
    when the child crashes (a native fault kills only it), hangs past the timeout (it is
    killed), or raises. ``fn`` must be importable (a module-level function). The child
    ends with this process however this process ends (:func:`watch_parent`)."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_isolated_child, args=(send, os.getpid(), fn, args, kwargs),
                       daemon=True, name=f"labkit-isolated-{getattr(fn, '__name__', 'call')}")
    t0 = time.monotonic()
    proc.start()
    send.close()
    try:
        if not receive.poll(timeout_s):
            proc.kill()
            raise IsolatedFailure(f"timed out after {timeout_s:g} s (killed)")
        try:
            ok, value = receive.recv()
        except EOFError:  # it died without answering
            proc.join(10)
            raise IsolatedFailure(f"crashed ({exit_words(proc.exitcode)}) after "
                                  f"{time.monotonic() - t0:.0f} s") from None
        if not ok:
            raise IsolatedFailure(value)
        return value
    finally:
        if proc.is_alive():
            proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        receive.close()
