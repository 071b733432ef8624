"""How many cores other processes keep busy right now, and what that costs a session.

A stream's first piece is sized before any piece of it has been timed, so the schedule
(labkit.engine.schedule) needs another way to know that a browser, a build or a video
call is sharing the cores: :class:`LoadMonitor` samples the machine's busy CPU time and
this process's own CPU time in a background thread (a few reads of ``/proc/stat`` or the
Mac's ``host_statistics`` per second, through psutil) and reports the difference over
the last 2 s, in cores (and, while a synthesis competes with them, what they would
take alone: :meth:`LoadMonitor.others_demand`). :func:`slowdown` turns it into the factor a session of
``threads`` intra-op threads is expected to run slower by (2 threads on 2 cores with one
core taken: about 2x, measured 1.9-2.1x on this project's x86 box; on the M1 Max's 10
cores one busy process costs nothing).
"""
from __future__ import annotations

import collections
import os
import threading
import time
from typing import Callable

import psutil

#: seconds between samples, and the window a reading averages over. A synthesis keeps
#: a varying share of its threads runnable (part A, part B, the Python between pieces), so
#: over 0.6 s the demand read for one busy process beside it swung from 0.8 to 2 cores and
#: the slowdown the schedule sized pieces by from 1.7 to 8 (p10-p90 1.7-6 in one stream on
#: 2 AMD EPYC cores). Over 2 s it read 2.0-3.7 (p10-p90), and the lean floor-16 opening
#: streamed the paragraph beside one busy process without a gap in 5 of 5 streams, against
#: a gap in 3 of 5 at 0.6 s (interleaved rounds, /tmp script over
#: labkit.measure.streaming.run_stream, 2026-12-05; stage 05's listener rows say it for the
#: machine at hand). A load that starts is fully seen after 2 s.
PERIOD_S = 0.2
WINDOW_S = 2.0
#: the most a reading may slow a session down by (a saturated machine)
MAX_SLOWDOWN = 8.0


def read_cpu() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process) so far."""
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    busy = sum(t) - idle - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    p = psutil.Process().cpu_times()
    return busy, p.user + p.system


class LoadMonitor:
    """Cores kept busy by other processes over the last ``window_s``, sampled every
    ``period_s`` in a daemon thread started on first use. ``read`` and ``clock`` are for
    tests (a faked machine)."""

    def __init__(self, period_s: float = PERIOD_S, window_s: float = WINDOW_S,
                 read: Callable[[], tuple[float, float]] = read_cpu,
                 clock: Callable[[], float] = time.monotonic, background: bool = True):
        self.period_s, self.window_s = period_s, window_s
        self.read, self.clock = read, clock
        self.background = background
        self._samples: collections.deque[tuple[float, float, float]] = collections.deque(
            maxlen=max(4, int(4 * window_s / period_s)))
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        busy, own = self.read()
        with self._lock:
            self._samples.append((self.clock(), busy, own))

    def _loop(self) -> None:
        while True:
            self.sample()
            time.sleep(self.period_s)

    def start(self) -> None:
        with self._lock:
            if self._thread is not None or not self.background:
                return
            self._thread = threading.Thread(target=self._loop, daemon=True, name="cpu-load")
        self._thread.start()

    def busy(self) -> tuple[float, float] | None:
        """(cores other processes kept busy, cores this process kept busy) over the last
        window, or None before two samples lie far enough apart (the first call starts
        the sampler)."""
        self.start()
        if not self.background:
            self.sample()
        with self._lock:
            samples = list(self._samples)
        if len(samples) < 2:
            return None
        t1, busy1, own1 = samples[-1]
        older = [s for s in samples[:-1] if t1 - s[0] >= self.window_s - 1e-9]
        t0, busy0, own0 = older[-1] if older else samples[0]
        if t1 - t0 < self.period_s / 2:
            return None
        own = max(0.0, (own1 - own0) / (t1 - t0))
        return max(0.0, (busy1 - busy0) / (t1 - t0) - own), own

    def others_busy(self) -> float | None:
        """Cores other processes kept busy over the last window (>= 0), or None."""
        b = self.busy()
        return None if b is None else b[0]

    def others_demand(self, threads: int, cores: int | None = None) -> float | None:
        """Cores other processes would keep busy if they had the machine: what they got,
        or, while this process's ``threads`` compete with them on a full machine, what
        they got scaled by the share each runnable thread gets (a busy process beside a
        2-thread synthesis on 2 cores gets ~0.67 of a core and wants 1)."""
        b = self.busy()
        if b is None:
            return None
        others, own = b
        cores = cores or os.cpu_count() or 1
        if own < 0.25 or others + own < 0.9 * cores:
            return others  # idle here, or room to spare: what they got is what they want
        return min(float(cores), others * threads / own)


def slowdown(others: float | None, threads: int, cores: int | None = None) -> float:
    """How much slower a session of ``threads`` intra-op threads runs while other processes
    keep ``others`` cores busy: 1 while the cores left cover its threads, else threads /
    cores left (capped at :data:`MAX_SLOWDOWN`). None (not measured yet): 1."""
    if not others:
        return 1.0
    cores = cores or os.cpu_count() or 1
    free = max(cores - others, threads / MAX_SLOWDOWN, 1e-3)
    return max(1.0, min(MAX_SLOWDOWN, threads / free))


_shared: LoadMonitor | None = None
_shared_lock = threading.Lock()


def shared_monitor() -> LoadMonitor:
    """The process's one monitor (one sampler thread however many synthesizers)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = LoadMonitor()
        return _shared
