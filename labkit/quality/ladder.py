"""The calibration ladder: changes of known audibility, and what they teach the ruler.

A quality figure may bound a choice only after it has heard the ladder
(``labkit/data/ladder.yaml``): delays, gains, white noise at graded SNR, clicks, dropouts,
low-pass filters and a time stretch, each marked inaudible, borderline or audible. Applied
to reference utterances (:func:`apply`), every figure is read on every rung
(:func:`readings`). Then:

* :func:`calibrate` (on development utterances only) asks each figure which audible rungs
  it separates -- its lowest reading on the rung above its highest reading on any inaudible
  rung -- and sets its bound at the geometric mean of the two (half the audible reading where
  no inaudible rung moved the figure); a figure that separates
  none cannot bound anything. The ruler is calibrated when every audible rung is separated
  by at least one bounded figure;
* :func:`validate` (on held-out utterances the calibration never saw) applies the ruler's
  verdict: every inaudible rung must pass and every audible one fail, on every utterance;
* :func:`separation` tells, for any figure (the standard LSD, PESQ-WB, STOI, DNSMOS, word
  error rate), whether it orders the ladder: the journal's table of who can hear what;
* :func:`validate_detector` measures the click detector (:mod:`labkit.quality.clicks`):
  clicks found among injected ones, and transients flagged per minute of clean speech.

Perturbations are deterministic for a given ``seed``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import yaml
from scipy.signal import butter, resample_poly, sosfiltfilt

from labkit.config import DATA_DIR
from labkit.quality import clicks as clickmod
from labkit.quality import ruler
from labkit.kokoro import SAMPLE_RATE

LADDER_FILE = DATA_DIR / "ladder.yaml"
VERDICTS = ("inaudible", "borderline", "audible")
#: the ladder's clicks: single-sample impulses at this fraction of the utterance's peak
CLICK_AMPLITUDE = 0.5
#: "active speech" for placing clicks: 20 ms frames within this many dB of the loudest
ACTIVE_DB = 30.0
#: figures where a higher reading is better (read negated when ordering the ladder)
HIGHER_IS_BETTER = {"pesq_wb", "stoi", "dnsmos_ovrl"}


@dataclass(frozen=True)
class Rung:
    label: str
    kind: str
    verdict: str
    arg: float | None = None


def load(path=LADDER_FILE) -> list[Rung]:
    data = yaml.safe_load(open(path, encoding="utf-8"))
    rungs = [Rung(r["label"], r["kind"], r["verdict"], r.get("arg")) for r in data["rungs"]]
    for r in rungs:
        if r.verdict not in VERDICTS:
            raise ValueError(f"{path}: rung {r.label!r} has verdict {r.verdict!r}; one of {VERDICTS}")
        if r.kind not in KINDS:
            raise ValueError(f"{path}: rung {r.label!r} has kind {r.kind!r}; one of {sorted(KINDS)}")
    return rungs



# -- the perturbations ----------------------------------------------------------------------
def _frames_power(x: np.ndarray, frame: int = 480) -> np.ndarray:
    n = max(1, x.size // frame)
    return (x[: n * frame].reshape(n, frame) ** 2).mean(axis=1) if x.size >= frame else np.array([np.mean(x ** 2)])


def active_rms(x: np.ndarray) -> float:
    """RMS over the 20 ms frames within 40 dB of the loudest (the SNR's signal level)."""
    e = _frames_power(x)
    return float(np.sqrt(e[e >= e.max() * 1e-4].mean())) if e.max() > 0 else 0.0


def speech_positions(x: np.ndarray, k: int, rng: np.random.Generator, frame: int = 480) -> np.ndarray:
    """``k`` sample positions drawn uniformly from the frames within :data:`ACTIVE_DB` of
    the loudest (sorted; fewer when there are fewer frames)."""
    e = _frames_power(x, frame)
    active = np.flatnonzero(e >= e.max() * 10.0 ** (-ACTIVE_DB / 10.0))
    chosen = np.sort(rng.choice(active, size=min(k, active.size), replace=False))
    return chosen * frame + rng.integers(0, frame, size=chosen.size)


def _clicks(x, n, rng):
    y = x.copy()
    amp = CLICK_AMPLITUDE * float(np.max(np.abs(x)))
    for i, p in enumerate(speech_positions(x, int(n), rng)):
        y[p] += amp if i % 2 == 0 else -amp
    return y


def _dropout(x, ms, rng):
    y = x.copy()
    n = int(round(ms * SAMPLE_RATE / 1000.0))
    w = 2400  # the loudest 100 ms: mid-word
    m = max(1, x.size // w)
    centre = int(np.argmax(_frames_power(x, w)[:m])) * w + w // 2
    start = max(0, min(centre - n // 2, x.size - n))
    y[start:start + n] = 0.0
    return y


def _pause(x, ms, rng):
    n = int(round(ms * SAMPLE_RATE / 1000.0))
    w = 480
    e = _frames_power(x, w)
    inner = slice(max(1, e.size // 10), max(2, e.size - e.size // 10))
    at = (int(np.argmin(e[inner])) + inner.start) * w + w // 2
    return np.concatenate([x[:at], np.zeros(n), x[at:]])


KINDS: dict[str, Callable[[np.ndarray, Any, np.random.Generator], np.ndarray]] = {
    "identity": lambda x, a, rng: x.copy(),
    "polarity": lambda x, a, rng: -x,
    "delay": lambda x, a, rng: np.concatenate([np.zeros(int(a)), x])[: x.size],
    "gain": lambda x, a, rng: x * 10.0 ** (float(a) / 20.0),
    "noise": lambda x, a, rng: x + rng.standard_normal(x.size) * active_rms(x) * 10.0 ** (-float(a) / 20.0),
    "clicks": _clicks,
    "dropout": _dropout,
    "pause": _pause,
    "lowpass": lambda x, a, rng: sosfiltfilt(butter(8, float(a), fs=SAMPLE_RATE, output="sos"), x),
    "stretch": lambda x, a, rng: resample_poly(x, int(round(100 + float(a))), 100),
}


RUNGS = load()


def apply(rung: Rung, audio: np.ndarray, seed: int = 0) -> np.ndarray:
    """``audio`` (24 kHz) changed as ``rung`` says."""
    return KINDS[rung.kind](np.asarray(audio, np.float64), rung.arg, np.random.default_rng(seed))


def seed_of(utterance: str, rung: Rung) -> int:
    """A seed that depends on the utterance and rung only (not on Python's hash salt)."""
    return sum(ord(c) * (i + 1) for i, c in enumerate(f"{utterance}|{rung.label}")) % (2 ** 31)


# -- readings, calibration, validation ------------------------------------------------------
def readings(references: Mapping[str, np.ndarray], rungs: Sequence[Rung] = RUNGS,
             measure: Callable[[np.ndarray, np.ndarray, str], dict[str, Any]] | None = None
             ) -> list[dict[str, Any]]:
    """One row per (rung, utterance): the rung, its verdict, the utterance and every
    figure ``measure(ref, test, utterance_id)`` returns (default: the ruler's figures
    without the standard ones)."""
    measure = measure or (lambda r, t, uid: ruler.measure(r, t, standard_figures=False).to_dict())
    return [{"rung": rung.label, "verdict": rung.verdict, "utterance": uid,
             **measure(np.asarray(references[uid], np.float64), test, uid)}
            for rung, uid, test in copies(references, rungs)]


def copies(references: Mapping[str, np.ndarray], rungs: Sequence[Rung] = RUNGS
           ) -> Iterator[tuple[Rung, str, np.ndarray]]:
    """(rung, utterance id, the utterance through the rung) for every rung and utterance,
    made one at a time; the same copies :func:`readings` measures (the rung's seed is the
    utterance's, :func:`seed_of`)."""
    for rung in rungs:
        for uid, ref in references.items():
            yield rung, uid, apply(rung, ref, seed_of(uid, rung))


def _values(rows: Iterable[dict], figure: str, verdict: str | None = None, rung: str | None = None
            ) -> list[float]:
    out = []
    for r in rows:
        v = r.get(figure)
        if v is None or (verdict and r["verdict"] != verdict) or (rung and r["rung"] != rung):
            continue
        v = abs(v) if ruler.BOUNDED.get(figure) == "abs" else v
        out.append(-v if figure in HIGHER_IS_BETTER else float(v))
    return out


def separation(rows: Sequence[dict], figure: str) -> dict[str, Any]:
    """How ``figure`` reads the ladder: its worst reading of an inaudible rung, and per
    audible rung its mildest reading and whether that is worse (separated). Readings of
    figures where higher is better are negated."""
    inaudible = _values(rows, figure, "inaudible")
    worst_inaudible = max(inaudible) if inaudible else None
    audible = {}
    for rung in dict.fromkeys(r["rung"] for r in rows if r["verdict"] == "audible"):
        vals = _values(rows, figure, rung=rung)
        mildest = min(vals) if vals else None
        audible[rung] = {"mildest": mildest,
                         "separated": (mildest is not None and worst_inaudible is not None
                                       and mildest > worst_inaudible)}
    return {"figure": figure, "worst_inaudible": worst_inaudible, "audible": audible,
            "separates": sorted(k for k, v in audible.items() if v["separated"]),
            "misses": sorted(k for k, v in audible.items() if not v["separated"])}


def calibrate(rows: Sequence[dict], figures: Iterable[str] = ruler.BOUNDED) -> dict[str, Any]:
    """Bounds from development readings (see the module's doc): per figure its
    separation, and its bound (None when it separates no audible rung); ``calibrated``
    when every audible rung is separated by some figure with a bound."""
    out: dict[str, Any] = {"figures": {}, "unseparated": []}
    separated: set[str] = set()
    for name in figures:
        s = separation(rows, name)
        lows = [v["mildest"] for k, v in s["audible"].items() if v["separated"]]
        hi = s["worst_inaudible"]
        if lows and hi is not None:
            low = min(lows)
            # the geometric mean of the two (half the audible reading where no inaudible
            # rung moved the figure at all)
            s["bound"] = math.sqrt(hi * low) if hi > 0 else low / 2.0
        else:
            s["bound"] = None
        if s["bound"] is not None:
            separated.update(s["separates"])
        out["figures"][name] = s
    audible = {r["rung"] for r in rows if r["verdict"] == "audible"}
    out["unseparated"] = sorted(audible - separated)
    out["calibrated"] = not out["unseparated"]
    out["bounds"] = {k: v["bound"] for k, v in out["figures"].items()}
    return out


def bounds_hold(rows: Sequence[dict], bounds: Mapping[str, float]) -> dict[str, Any]:
    """Whether the given bounds still split ``rows`` as the ladder says: every inaudible
    reading within every bound, every audible rung beyond some bound on every utterance."""
    problems = []
    for r in rows:
        v = ruler.verdict(r, bounds)
        if r["verdict"] == "inaudible" and not v.passed:
            problems.append(f"{r['rung']} on {r['utterance']} fails: {'; '.join(v.reasons)}")
        if r["verdict"] == "audible" and v.passed:
            problems.append(f"{r['rung']} on {r['utterance']} passes")
    return {"hold": not problems, "problems": problems}


def validate(rows: Sequence[dict], bounds: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The ruler's verdict on every row: per rung how many utterances passed, against what
    the ladder expects; ``ok`` when every inaudible rung passed and every audible one
    failed on every utterance (borderline rungs are reported, not held)."""
    per: dict[str, dict[str, Any]] = {}
    for r in rows:
        v = ruler.verdict(r, bounds)
        p = per.setdefault(r["rung"], {"verdict": r["verdict"], "passed": 0, "n": 0, "reasons": []})
        p["n"] += 1
        p["passed"] += int(v.passed)
        if v.reasons and r["verdict"] != "audible":
            p["reasons"].append(f"{r['utterance']}: {'; '.join(v.reasons)}")
    for p in per.values():
        p["as_expected"] = (p["passed"] == p["n"] if p["verdict"] == "inaudible"
                            else p["passed"] == 0 if p["verdict"] == "audible" else None)
    wrong = sorted(k for k, p in per.items() if p["as_expected"] is False)
    return {"rungs": per, "ok": not wrong, "wrong": wrong}


# -- the click detector ----------------------------------------------------------------------
def validate_detector(clean: Mapping[str, np.ndarray], per_utterance: int = 4, seed: int = 0,
                      threshold_db: float = clickmod.THRESHOLD_DB, tolerance_s: float = 0.002
                      ) -> dict[str, Any]:
    """The click detector on clean speech and on the same speech with clicks injected:
    ``false_per_minute`` (transients flagged in the clean audio, with its Poisson
    interval), and ``found`` -- the share of injected clicks (the ladder's: single-sample
    impulses at half the peak, ``per_utterance`` at random places in active speech, one at
    a time) found within ``tolerance_s``; also ``splices_found``: the share of hard splices
    (1-3 ms of speech cut out, no crossfade) found, reported only (a splice at a zero
    crossing of a quiet stretch can be inaudible)."""
    rng = np.random.default_rng(seed)
    seconds, flagged = 0.0, 0
    found = splice_found = total = 0
    for x in clean.values():
        x = np.asarray(x, np.float64)
        seconds += x.size / SAMPLE_RATE
        flagged += len(clickmod.detect(x, threshold_db))
        peak = float(np.max(np.abs(x)))
        for p in speech_positions(x, per_utterance, rng):
            y = x.copy()
            y[p] += CLICK_AMPLITUDE * peak * rng.choice([-1.0, 1.0])
            found += int(clickmod.score_near(y, [p], tolerance_s)[0] > threshold_db)
            cut = int(rng.integers(24, 73))
            z = np.concatenate([x[:p], x[p + cut:]])
            splice_found += int(clickmod.score_near(z, [p], tolerance_s)[0] > threshold_db)
            total += 1
    rate = clickmod.rate_per_minute(flagged, seconds)
    return {"threshold_db": threshold_db, "minutes_clean": seconds / 60.0,
            "false_per_minute": rate["per_minute"], "false_per_minute_ci95": rate["ci95"],
            "found": found / total if total else None, "splices_found": splice_found / total if total else None,
            "injected": total}
