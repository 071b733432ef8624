"""The one timing instrument: candidates against a baseline, paired, interleaved, with intervals.

Usage::

    from labkit.measure.compare import compare

    cmp = compare({"default": lambda: sess_a.run(None, feeds),
                   "ort-format": lambda: sess_b.run(None, feeds)}, baseline="default")
    cmp.ratio("ort-format")          # 1.12: how many times better than the baseline
    cmp.ci95("ort-format")           # (1.05, 1.19): bootstrap 95 % interval of that ratio
    cmp.beats_baseline("ort-format") # True: the interval lies wholly above 1.0
    cmp.noise_band                   # the A/A control's interval, e.g. (0.98, 1.03)

    # what a stage records (labkit.lab.selection reads the candidates, labkit.lab.results
    # renders the comparisons)
    st.metrics["candidates"] = [
        {"name": "default", "overrides": {}, "measured": ["seconds"], "lsd_db": 0.0,
         "failed_checks": [], **cmp.baseline_fields()},
        {"name": "ort-format", "overrides": {"session.use_ort_format": True},
         "measured": ["seconds", "lsd_db"], "lsd_db": 0.02, "failed_checks": [],
         **cmp.selection_fields("ort-format")}]
    st.metrics.setdefault("comparisons", {})["warm, 120 tokens"] = cmp.to_dict()

What is measured: by default the wall time of each call (``clock`` around it). When a
call measures its own figure (time to first audio inside a stream, RTF), pass
``measure``: ``measure=lambda out: out["ttfa_s"]``, or ``measure=float`` when the
candidates return the number itself. ``lower_is_better=False`` for figures where more is
better (throughput).

How:

- every candidate is called ``warmup`` times (untimed), in order, before any timing;
- then rounds: each round calls every candidate once, in an order that changes each round
  (:func:`schedule`: the rows of a Williams Latin square, ABC BCA CAB CBA ACB BAC for
  three entries). Over a whole square every candidate runs in every position equally
  often -- a position effect (whatever runs first is slowed) falls on all alike -- and
  right after every other candidate equally often, so a carry-over effect (the previous
  call's cache pollution or heat) cancels too, which plain rotation does not do;
- an A/A control -- the baseline a second time, as its own entry ``"<baseline> (A/A)"`` --
  is always in the set; its interval is the noise band of this machine right now;
- per candidate, per round, a paired ratio to the baseline in that same round; the
  candidate's ``ratio`` is the median of those, and its 95 % interval is a seeded
  percentile bootstrap over rounds (``resamples`` resamples);
- convention: ``ratio > 1`` means the candidate is better than the baseline. For times
  (lower is better) it is baseline / candidate, i.e. a speed-up;
- ``rounds`` defaults to whole squares, at least 6; if the A/A interval is wider than
  ``noise_width`` (hi - lo), whole squares of rounds are added up to ``max_rounds``
  (default 3 x ``rounds``); ``extra_rounds`` records how many, and ``noisy`` stays
  True when the cap was reached and the band was still too wide.
- early stopping (``decide_at``, a sequential rule: :func:`decided`): at the end of each
  whole square past the default count, rounds stop once every candidate's interval lies
  wholly above or wholly below ``decide_at`` (1 + selection.min_gain) and the intervals
  above it are disjoint; ``stopped_early`` says so. :func:`stopping_round` replays the
  rule on a recorded comparison, so a full run's rounds show where it would have stopped
  and that the decisions there are the full run's (tests/test_compare.py);
- progress: a "rounds" task advances after each round, outside the clock (labkit.progress).

Cold starts (fresh processes) go through :func:`compare_cold` the same way: each command
prints one JSON object as its last stdout line (``python -m labkit.optimize.convert cold``
does), and the figure compared is one of its keys.
"""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from labkit import progress
from labkit.config import REPO_ROOT
from labkit.timing import Timing

#: the suffix naming the baseline's A/A control entry
CONTROL_SUFFIX = " (A/A)"


def control_name(baseline: str) -> str:
    return baseline + CONTROL_SUFFIX


@dataclass
class Entry:
    """One candidate's figures in a comparison."""

    name: str
    #: the measured values (seconds, or what ``measure`` returned), in round order
    samples: list[float]
    #: per-round paired ratio to the baseline (> 1: better than the baseline)
    round_ratios: list[float]
    ratio: float
    ci95: tuple[float, float]

    @property
    def timing(self) -> Timing:
        return Timing.of(self.samples)

    def to_dict(self) -> dict[str, Any]:
        t = self.timing
        return {"name": self.name, "median": t.median, "p90": t.p90, "min": t.min, "max": t.max,
                "ratio": self.ratio, "ci95": list(self.ci95), "n": t.n,
                "samples": list(self.samples), "round_ratios": list(self.round_ratios)}


@dataclass
class Comparison:
    """What :func:`compare` measured; ``to_dict()`` is JSON-serializable."""

    baseline: str
    control: str
    criterion: str
    lower_is_better: bool
    entries: dict[str, Entry]
    #: the order of the calls in each round
    order: list[list[str]]
    warmup: int
    extra_rounds: int
    noise_width: float
    noisy: bool
    seed: int
    resamples: int
    #: what ``keep`` kept of each call's result, per candidate, in round order
    kept: dict[str, list[Any]] = field(default_factory=dict)
    #: the threshold of the sequential rule (``decide_at``), and whether it ended the rounds
    decide_at: float | None = None
    stopped_early: bool = False

    @property
    def rounds(self) -> int:
        return len(self.order)

    @property
    def noise_band(self) -> tuple[float, float]:
        """The A/A control's 95 % interval: ratios inside it are indistinguishable from noise."""
        return self.entries[self.control].ci95

    def ratio(self, name: str) -> float:
        return self._entry(name).ratio

    def ci95(self, name: str) -> tuple[float, float]:
        return self._entry(name).ci95

    def median(self, name: str) -> float:
        return self._entry(name).timing.median

    def beats_baseline(self, name: str) -> bool:
        """True when the candidate's 95 % interval lies wholly on the better side of 1.0."""
        return self._entry(name).ci95[0] > 1.0

    def selection_fields(self, name: str) -> dict[str, Any]:
        """The fields a stage's candidate carries for labkit.lab.selection."""
        e = self._entry(name)
        return {"criterion": self.criterion, "ratio": e.ratio, "ci95": list(e.ci95)}

    def baseline_fields(self) -> dict[str, Any]:
        """The fields the stage's baseline candidate carries: the flag, the criterion, and
        the A/A control's interval (the noise band)."""
        return {"baseline": True, "criterion": self.criterion, "ci95": list(self.noise_band)}

    def _entry(self, name: str) -> Entry:
        if name not in self.entries:
            raise KeyError(f"no candidate {name!r} in this comparison; it has {list(self.entries)}")
        return self.entries[name]

    def to_dict(self) -> dict[str, Any]:
        out = {"baseline": self.baseline, "control": self.control, "criterion": self.criterion,
               "lower_is_better": self.lower_is_better,
               "ratio_means": "times better than the baseline (> 1: better)",
               "rounds": self.rounds, "extra_rounds": self.extra_rounds, "warmup": self.warmup,
               "noise_band": list(self.noise_band), "noise_width": self.noise_width,
               "noisy": self.noisy, "seed": self.seed, "resamples": self.resamples,
               "decide_at": self.decide_at, "stopped_early": self.stopped_early,
               "order": [list(o) for o in self.order],
               "candidates": {n: e.to_dict() for n, e in self.entries.items()}}
        if self.kept:
            out["kept"] = {n: list(v) for n, v in self.kept.items()}
        return out


def bootstrap_median_ci(values: Sequence[float], resamples: int = 2000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median of ``values`` (seeded, so reproducible)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resamples, x.size))
    medians = np.median(x[idx], axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(medians, [tail, 100.0 - tail])
    return float(lo), float(hi)


def schedule(n: int) -> list[list[int]]:
    """The round orders of ``n`` entries (indices): a Williams Latin square, ``n`` rows for
    even ``n`` and ``2n`` (the rows and their mirror images) for odd ``n``. Each entry is
    in each position equally often and follows each other entry equally often."""
    if n < 1:
        raise ValueError(f"need at least one entry, got {n}")
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    rows = [[(x + r) % n for x in first] for r in range(n)]
    return rows + [row[::-1] for row in rows] if n % 2 else rows


def default_rounds(n: int) -> int:
    """The rounds :func:`compare` runs by default for ``n`` entries (the A/A control
    included): whole Williams squares, at least 6. Without a ``max_rounds`` it may add up
    to twice as many again on a noisy machine."""
    square = len(schedule(n))
    return square * -(-6 // square)


def summarize(samples: Mapping[str, Sequence[float]], baseline: str, lower_is_better: bool = True,
              resamples: int = 2000, seed: int = 0, rounds: int | None = None) -> dict[str, Entry]:
    """Each entry's paired ratios to the baseline over the first ``rounds`` rounds (all by
    default): the median and its bootstrap interval (see the module doc)."""
    base = np.asarray(samples[baseline][:rounds])
    out = {}
    for name, xs in samples.items():
        x = np.asarray(xs[:rounds])
        r = base / x if lower_is_better else x / base
        out[name] = Entry(name, list(xs[:rounds]), r.tolist(), float(np.median(r)),
                          bootstrap_median_ci(r, resamples, seed))
    return out


def decisions(entries: Mapping[str, Entry], baseline: str, threshold: float) -> dict[str, str]:
    """Each candidate's interval against ``threshold`` (1 + selection.min_gain): "above"
    (wholly: it clears the bar), "below" (wholly: it cannot), or "undecided"."""
    out = {}
    for name, e in entries.items():
        if name == baseline or name.endswith(CONTROL_SUFFIX):
            continue
        lo, hi = e.ci95
        out[name] = "above" if lo > threshold else "below" if hi < threshold else "undecided"
    return out


def decided(entries: Mapping[str, Entry], baseline: str, threshold: float) -> bool:
    """The sequential rule that ends rounds early: every candidate's interval lies wholly
    above or wholly below ``threshold``, and the intervals of those above it do not overlap
    one another (so which of them is best is settled too). :func:`compare` reads it only
    at the end of a whole Williams square and not before its default number of rounds
    (whole squares, at least 6), so a stop never unbalances the order, and never comes on
    fewer rounds than a run without the rule would have."""
    d = decisions(entries, baseline, threshold)
    if any(v == "undecided" for v in d.values()):
        return False
    above = sorted((entries[n].ci95 for n, v in d.items() if v == "above"), key=lambda ci: ci[0])
    return all(a[1] < b[0] for a, b in zip(above, above[1:]))


def stopping_round(comparison: Mapping[str, Any], threshold: float) -> int | None:
    """Replay the rule on a recorded comparison (``Comparison.to_dict()``): the round at
    which :func:`compare` with ``decide_at=threshold`` would have stopped, or None if it
    would have run every recorded round."""
    cands = comparison["candidates"]
    samples = {n: c["samples"] for n, c in cands.items()}
    square = len(schedule(len(samples)))
    first = max(default_rounds(len(samples)), square)
    for r in range(first, comparison["rounds"], square):
        entries = summarize(samples, comparison["baseline"], comparison["lower_is_better"],
                            comparison["resamples"], comparison["seed"], rounds=r)
        if decided(entries, comparison["baseline"], threshold):
            return r
    return None


def _value(name: str, v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"candidate {name!r}: measured value {v!r} is not a number") from None
    if not np.isfinite(f) or f <= 0:
        raise ValueError(f"candidate {name!r}: measured value {f!r} must be a positive finite "
                         "number (ratios are taken between them)")
    return f


def compare(candidates: Mapping[str, Callable[[], Any]], baseline: str, *, warmup: int = 1,
            rounds: int | None = None, max_rounds: int | None = None, noise_width: float = 0.10,
            lower_is_better: bool = True, measure: Callable[[Any], float] | None = None,
            keep: Callable[[Any], Any] | None = None, criterion: str | None = None,
            seed: int = 0, resamples: int = 2000,
            clock: Callable[[], float] = time.perf_counter,
            control: Callable[[], Any] | None = None,
            decide_at: float | None = None) -> Comparison:
    """Time ``candidates`` (name -> zero-argument callable) against ``baseline``; see the
    module doc. ``measure``: the figure from a call's result (default: the call's wall
    time by ``clock``); ``keep``: what of each result to keep in ``Comparison.kept``;
    ``criterion``: the figure's name in the record (default "seconds", or "value" with
    ``measure``); ``control``: what the A/A entry calls (default: the baseline's own
    callable) -- a second instance of the baseline (another session of the same settings)
    makes the noise band cover the difference between two instances too, which a
    comparison of separately built candidates needs. ``decide_at``: a threshold (1 +
    selection.min_gain) for the sequential rule (:func:`decided`): rounds end, at a whole
    square past the default count, once every candidate is decided against it, even
    while the A/A band is still wider than ``noise_width``."""
    if baseline not in candidates:
        raise ValueError(f"baseline {baseline!r} is not among the candidates {list(candidates)}")
    control_key = control_name(baseline)
    if control_key in candidates:
        raise ValueError(f"{control_key!r} is reserved for the A/A control; rename that candidate")
    fns: dict[str, Callable[[], Any]] = dict(candidates)
    fns[control_key] = control if control is not None else candidates[baseline]
    names = list(fns)
    square = schedule(len(names))
    if rounds is None:
        rounds = default_rounds(len(names))
    if max_rounds is None:
        max_rounds = 3 * rounds
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if rounds < 1 or max_rounds < rounds:
        raise ValueError(f"need 1 <= rounds <= max_rounds, got rounds={rounds}, max_rounds={max_rounds}")
    if noise_width <= 0:
        raise ValueError(f"noise_width must be > 0, got {noise_width}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    criterion = criterion or ("seconds" if measure is None else "value")

    def call(name: str) -> tuple[float, Any]:
        t0 = clock()
        out = fns[name]()
        elapsed = clock() - t0
        if measure is None:
            return _value(name, elapsed), out
        try:
            v = measure(out)
        except Exception as exc:  # noqa: BLE001 - named, with the candidate, and re-raised
            raise ValueError(f"candidate {name!r}: measure could not read a figure from its "
                             f"result {str(out)[:120]!r}: {type(exc).__name__}: {exc}") from exc
        return _value(name, v), out

    for name in names:
        for _ in range(warmup):
            fns[name]()

    samples: dict[str, list[float]] = {n: [] for n in names}
    kept: dict[str, list[Any]] = {n: [] for n in names} if keep else {}
    order: list[list[str]] = []

    def run_rounds(k: int, bar: progress.Task) -> None:
        for _ in range(k):
            this = [names[i] for i in square[len(order) % len(square)]]
            for name in this:
                v, out = call(name)
                samples[name].append(v)
                if keep:
                    kept[name].append(keep(out))
            order.append(this)
            bar.advance(f"{len(names) - 1} candidates + A/A")  # between rounds, off the clock

    def settled() -> bool:  # the sequential rule, at a whole square past the default count
        return (decide_at is not None and len(order) % len(square) == 0
                and len(order) >= default_rounds(len(names))
                and decided(summarize(samples, baseline, lower_is_better, resamples, seed),
                            baseline, decide_at))

    stopped = False
    with progress.task("rounds", total=rounds) as bar:
        while len(order) < rounds and not stopped:
            run_rounds(min(len(square) - len(order) % len(square), rounds - len(order)), bar)
            stopped = len(order) < rounds and settled()
        entries = summarize(samples, baseline, lower_is_better, resamples, seed)
        extra = 0
        while not stopped:
            lo, hi = entries[control_key].ci95
            if hi - lo <= noise_width or len(order) >= max_rounds:
                break
            if settled():
                stopped = True
                break
            k = min(len(square), max_rounds - len(order))
            bar.grow(k)  # the A/A band is still wide: whole squares more
            run_rounds(k, bar)
            extra += k
            entries = summarize(samples, baseline, lower_is_better, resamples, seed)
    lo, hi = entries[control_key].ci95
    return Comparison(baseline, control_key, criterion, lower_is_better, entries, order, warmup,
                      extra, noise_width, hi - lo > noise_width, seed, resamples, kept,
                      decide_at, stopped)


# -- cold starts: fresh processes ----------------------------------------------------------------
def run_json(cmd: Sequence[str], timeout: float = 300, cwd: str | Path = REPO_ROOT) -> dict[str, Any]:
    """Run ``cmd`` in a fresh process; its last stdout line is a JSON object, returned with
    ``process_wall_s`` (the process's wall time as seen from here) added."""
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, cwd=cwd)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd[:4]))} ... exited {proc.returncode}: "
                           f"{proc.stderr.strip()[-800:]}")
    lines = proc.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        out = None
    if not isinstance(out, dict):
        raise RuntimeError(f"{' '.join(map(str, cmd[:4]))} ... did not print a JSON object as its "
                           f"last line; stdout ended with {proc.stdout.strip()[-300:]!r}")
    out["process_wall_s"] = wall
    return out


def compare_cold(commands: Mapping[str, Sequence[str]], baseline: str, *,
                 key: str = "first_audio_s", warmup: int = 1, rounds: int | None = None,
                 max_rounds: int | None = None, noise_width: float = 0.10, timeout: float = 300,
                 cwd: str | Path = REPO_ROOT, seed: int = 0, resamples: int = 2000,
                 runner: Callable[[Sequence[str]], dict[str, Any]] | None = None) -> Comparison:
    """Cold starts: each call runs a command in a fresh process (interleaved
    like :func:`compare`); the figure is ``key`` of the JSON it prints (lower is better);
    every process's whole JSON is kept in ``Comparison.kept``. ``warmup`` processes per
    command run first, untimed (they fill the OS file cache and any graph cache)."""
    run = runner or (lambda cmd: run_json(cmd, timeout=timeout, cwd=cwd))

    def figure(out: dict[str, Any]) -> float:
        if key not in out:
            raise ValueError(f"the cold-start JSON has no {key!r}; it has {sorted(out)}")
        return out[key]

    fns = {name: (lambda cmd=list(cmd): run(cmd)) for name, cmd in commands.items()}
    return compare(fns, baseline, warmup=warmup, rounds=rounds, max_rounds=max_rounds,
                   noise_width=noise_width, measure=figure, keep=lambda out: out, criterion=key,
                   seed=seed, resamples=resamples)
