"""Timing with warm-up and repeats: median and p90, never one run."""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable


@dataclass
class Timing:
    median: float
    p90: float
    min: float
    max: float
    n: int
    samples: list[float]

    @classmethod
    def of(cls, samples: list[float]) -> "Timing":
        if not samples:
            raise ValueError("no samples to summarize")
        s = sorted(samples)
        return cls(statistics.median(s), percentile(s, 90), s[0], s[-1], len(s), list(samples))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of ``values``."""
    s = sorted(values)
    if not s:
        raise ValueError("no values")
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def measure(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> tuple[Timing, Any]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.
    Returns the timing and the last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    samples = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t0)
    return Timing.of(samples), result
