"""A competing CPU-bound process, for measuring streams "under load".

On the user's laptop the stream shares the cores with a browser, a build, a video call.
:func:`competing_load` starts ``processes`` separate Python processes that spin in a busy
loop (each one keeps one core busy) and stops them when the block ends, also when it ends
with an error; a stage runs the same stream with and without it.
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Iterator

from labkit import procs
from labkit.config import REPO_ROOT
from labkit.engine.cpuload import PERIOD_S, WINDOW_S

#: the default pause before and after the block: the load sensor's whole window and one
#: sample more, so the block's first reading sees the load whole, and what runs after it
#: none of it
SETTLE_S = WINDOW_S + PERIOD_S

#: what each competing process runs: a busy loop, nothing else (beside a thread that sleeps
#: until this process's parent exits, and then ends it: labkit.procs.watch_parent)
BUSY_LOOP = "from labkit.procs import watch_parent\nwatch_parent()\nwhile True:\n    pass\n"


@dataclass
class Load:
    processes: int
    pids: list[int] = field(default_factory=list)
    #: seconds the load ran
    seconds: float = 0.0


@contextlib.contextmanager
def competing_load(processes: int = 1, settle_s: float = SETTLE_S) -> Iterator[Load]:
    """Run the block with ``processes`` busy-looping processes beside it (0: none).
    ``settle_s``: a pause after starting them, so the block starts under load, as a
    listener's machine is already busy when they ask for speech (and a load sensor
    averaging over its last window, labkit.engine.cpuload, has seen it whole)."""
    if not isinstance(processes, int) or isinstance(processes, bool) or processes < 0:
        raise ValueError(f"competing processes: {processes!r}; expected an integer >= 0")
    started: list[subprocess.Popen] = []
    info = Load(processes)
    t0 = time.perf_counter()
    try:
        for _ in range(processes):
            started.append(procs.popen([sys.executable, "-c", BUSY_LOOP], cwd=REPO_ROOT,
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        info.pids = [p.pid for p in started]
        if started and settle_s > 0:
            time.sleep(settle_s)
        yield info
    finally:
        for p in started:
            procs.stop(p, grace_s=0)  # a busy loop has nothing to finish
        info.seconds = time.perf_counter() - t0
        if started and settle_s > 0:
            time.sleep(settle_s)  # and what runs next starts on a machine at rest
