"""Progress of long work: what is running, how far it is, and about how long is left.

Usage::

    from labkit import progress

    for name in progress.steps(texts, "texts"):          # a step per item
        ...
    with progress.task("rounds", total=12) as t:        # or by hand
        ...
        t.advance("round 1")
    progress.say("stage 03: 4 candidates, ~6 min")       # a line that keeps the bars intact

Where it goes (chosen when a task opens):

- ``LABKIT_PROGRESS=<file>`` in the environment: JSON lines appended to that file. The
  batch runner (labkit.lab.batch) sets it for a notebook kernel, whose own output goes
  into the executed notebook, and draws the kernel's tasks under its stage's line
  (:func:`follow`);
- standard error is a terminal: tqdm bars, one per open task, nested;
- otherwise (CI logs, a notebook run by hand, pipes): one plain line per step, with the
  elapsed time and an estimate of what is left from the pace so far.

Steps and bars go to standard error; :func:`say`'s lines to standard output.

Never in a timed region: callers advance between timed calls (the timing instrument,
labkit.measure.compare, advances after each round's calls, outside the clock), tqdm's
monitor thread is off, and nothing draws between two updates.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TextIO, TypeVar

from tqdm import tqdm

ENV = "LABKIT_PROGRESS"
T = TypeVar("T")

tqdm.monitor_interval = 0  # no background thread waking up while something is timed


def fmt_seconds(s: float | None) -> str:
    """``42 s``, ``3.5 min``, ``1.2 h``."""
    if s is None:
        return "?"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


class _Sink:
    """Where task events go: open(id, what, total, depth), step(id, n, total, desc), close(id)."""

    def open(self, tid: str, what: str, total: int | None, depth: int) -> None: ...
    def step(self, tid: str, n: int, total: int | None, desc: str) -> None: ...
    def close(self, tid: str) -> None: ...
    def say(self, line: str) -> None: ...


class PlainSink(_Sink):
    """One line per step: ``[prefix] what n/total desc (elapsed, ~left)``."""

    def __init__(self, stream: TextIO | None = None, prefix: str = "",
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.prefix = prefix
        self.clock = clock
        self._tasks: dict[str, dict[str, Any]] = {}

    def _write(self, line: str, stream: TextIO | None = None) -> None:
        stream = stream or self.stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()

    def open(self, tid, what, total, depth):
        self._tasks[tid] = {"what": what, "t0": self.clock(), "depth": depth}

    def step(self, tid, n, total, desc):
        t = self._tasks.get(tid)
        if t is None:
            return
        elapsed = self.clock() - t["t0"]
        count = f"{n}/{total}" if total else f"{n}"
        tail = f"{fmt_seconds(elapsed)}"
        if total and 0 < n < total:
            tail += f", ~{fmt_seconds(elapsed / n * (total - n))} left"
        indent = "  " * t["depth"]
        self._write(f"{self.prefix}{indent}{t['what']} {count}"
                    + (f" {desc}" if desc else "") + f" ({tail})")

    def close(self, tid):
        self._tasks.pop(tid, None)

    def say(self, line):
        self._write(self.prefix + line, self.stream or sys.stdout)


class BarSink(_Sink):
    """tqdm bars on a terminal, one per open task, nested by depth."""

    def __init__(self, stream: TextIO | None = None, prefix: str = ""):
        self.stream = stream
        self.prefix = prefix
        self._bars: dict[str, tqdm] = {}

    def open(self, tid, what, total, depth):
        self._bars[tid] = tqdm(total=total, desc=self.prefix + what, position=depth,
                               leave=depth == 0,
                               file=self.stream or sys.stderr, dynamic_ncols=True, mininterval=0,
                               miniters=1, smoothing=0.3)

    def step(self, tid, n, total, desc):
        bar = self._bars.get(tid)
        if bar is None:
            return
        if total != bar.total:
            bar.total = total
        bar.set_postfix_str(desc, refresh=False)
        bar.update(n - bar.n)

    def close(self, tid):
        bar = self._bars.pop(tid, None)
        if bar is not None:
            bar.close()

    def say(self, line):
        tqdm.write(self.prefix + line, file=self.stream or sys.stdout)


class FileSink(_Sink):
    """JSON lines appended to a file another process follows (:func:`follow`)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def _emit(self, **event) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")

    def open(self, tid, what, total, depth):
        self._emit(ev="open", id=tid, what=what, total=total, depth=depth)

    def step(self, tid, n, total, desc):
        self._emit(ev="step", id=tid, n=n, total=total, desc=desc)

    def close(self, tid):
        self._emit(ev="close", id=tid)

    def say(self, line):
        self._emit(ev="say", line=line)


def default_sink() -> _Sink:
    path = os.environ.get(ENV)
    if path:
        return FileSink(path)
    return BarSink() if sys.stderr.isatty() else PlainSink()


_sink: _Sink | None = None
_open: list["Task"] = []
_lock = threading.RLock()
_ids = itertools.count(1)


def sink() -> _Sink:
    """The sink tasks report to (the default one for this process unless :func:`use` set one)."""
    global _sink
    with _lock:
        if _sink is None:
            _sink = default_sink()
        return _sink


@contextlib.contextmanager
def use(s: _Sink) -> Iterator[_Sink]:
    """Report to ``s`` within the block (the batch runner, tests)."""
    global _sink
    with _lock:
        before, _sink = _sink, s
    try:
        yield s
    finally:
        with _lock:
            _sink = before


class Task:
    """One piece of long work with ``total`` steps (None: unknown)."""

    def __init__(self, what: str, total: int | None = None):
        self.what = what
        self.total = total
        self.n = 0
        self.id = f"{os.getpid()}-{next(_ids)}"
        self._sink: _Sink | None = None

    def __enter__(self) -> "Task":
        with _lock:
            self._sink = sink()
            depth = len(_open)
            _open.append(self)
        self._sink.open(self.id, self.what, self.total, depth)
        return self

    def advance(self, desc: str = "", by: int = 1) -> None:
        """``by`` more steps done; ``desc`` says which (or what comes next)."""
        self.n += by
        self._sink.step(self.id, self.n, self.total, desc)

    def grow(self, extra: int) -> None:
        """The work turned out ``extra`` steps longer (e.g. rounds added on a noisy machine)."""
        if self.total is not None:
            self.total += extra

    def __exit__(self, *exc) -> None:
        with _lock:
            if self in _open:
                _open.remove(self)
        self._sink.close(self.id)


def task(what: str, total: int | None = None) -> Task:
    return Task(what, total)


def steps(items: Iterable[T], what: str, total: int | None = None,
          label: Callable[[T], str] = str) -> Iterator[T]:
    """Yield ``items``, one step each; a step is reported when its item is done, named
    by ``label(item)``."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Task(what, total) as t:
        for item in items:
            yield item
            t.advance(label(item))


def say(line: str) -> None:
    """A line of its own (what is about to run, an estimate), drawn so bars stay intact."""
    sink().say(line)


def follow(path: str | os.PathLike, target: _Sink, stop: threading.Event,
           interval_s: float = 0.5, depth_offset: int = 0) -> None:
    """Replay the events another process appends to ``path`` into ``target`` until
    ``stop`` is set (then drain what is left); tasks left open are closed. Run it in a
    thread; it reads the file every ``interval_s``."""
    path = Path(path)
    pos, buf, opened = 0, "", set()

    def drain() -> None:
        nonlocal pos, buf
        try:
            with open(path, encoding="utf-8") as f:
                f.seek(pos)
                chunk = f.read()
                pos = f.tell()
        except FileNotFoundError:
            return
        buf += chunk
        *lines, buf = buf.split("\n")
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            kind = ev.get("ev")
            if kind == "open":
                opened.add(ev["id"])
                target.open(ev["id"], ev["what"], ev.get("total"), ev.get("depth", 0) + depth_offset)
            elif kind == "step":
                target.step(ev["id"], ev["n"], ev.get("total"), ev.get("desc", ""))
            elif kind == "close":
                opened.discard(ev["id"])
                target.close(ev["id"])
            elif kind == "say":
                target.say("  " * depth_offset + ev["line"])

    while not stop.wait(interval_s):
        drain()
    drain()
    for tid in list(opened):
        target.close(tid)
