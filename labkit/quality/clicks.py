"""Clicks a listener would hear, found in one signal without a reference.

A seam can only be judged on the streamed audio itself: chunked and unchunked speech
differ everywhere (each piece has its own prosody), so a distance to the unchunked audio
cannot see a click (FINDINGS: seam and mid-piece read 5-20 dB alike). A click is a short,
broadband transient that stands out from everything near it. Speech has transients of
its own -- glottal pulses (creaky voice makes them sharp and regular), plosive bursts --
so "sharp" is not enough; "isolated" is what tells a click:

* two views of the signal bring transients out: the signal high-passed at 9 kHz
  (4th-order Butterworth, zero phase: the voice's harmonics fall away, a click's flat
  spectrum stays) and its linear-prediction residual (order 24 on 20 ms Hann frames, hop
  10 ms: the vocal tract's formants are removed, so the noise of a fricative is white and
  a click stands above it);
* in each view, the peak of the magnitude within 0.25 ms of a point is compared with the
  largest peak 1-15 ms before it and 1-15 ms after it (the louder side): a pulse in a
  pulse train, or a burst followed by its aspiration, has a comparable neighbour; an
  added click has none. The ratio is in dB, against a floor 50 dB under the signal's peak
  (nothing in digital silence is a click);
* the score is the sum of the two views' ratios (dB): each view misses clicks the other
  finds (the high-pass view in a fricative, the residual view among glottal pulses).

:data:`THRESHOLD_DB` was set on clean Kokoro speech (the calibration and development
corpora, fp32 reference): the lowest score at which the detector flags at most one
transient per minute of it. What it then finds of injected clicks, and what it flags in
clean held-out speech, is measured by :func:`labkit.quality.ladder.validate_detector` and
reported in the journal (stage 00_ruler); the detector is not tuned on that. Measured
when it was set (2026-12-03, fp32 reference): 0.5 false per minute on the development
speech, 1.1 on held-out speech; 85-90 % of the ladder's clicks found (those it misses sit
in loud fricatives or among creaky glottal pulses as sharp as they are), 20-30 % of hard
splices. The 95 % the lab wants is not reached: a click as sharp as the speech around
it cannot be told from that speech without a reference. (A 5 kHz high-pass found 78-83 %
at the same false rate.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.linalg import solve_toeplitz
from scipy.ndimage import maximum_filter1d
from scipy.signal import butter, lfilter, sosfiltfilt
from scipy.stats import chi2

from labkit.quality.signal import as_audio

from labkit.kokoro import SAMPLE_RATE

HIGHPASS_HZ = 9_000.0
LPC_ORDER = 24
LPC_FRAME, LPC_HOP = 480, 240
PEAK_S, GAP_S, CONTEXT_S = 0.00025, 0.001, 0.015
FLOOR_DB = -50.0
#: flags at most one transient per minute of clean Kokoro speech (see the module's doc)
THRESHOLD_DB = 21.0
#: detections closer than this are one click
MERGE_S = 0.005

_HIGHPASS = butter(4, HIGHPASS_HZ, btype="highpass", fs=SAMPLE_RATE, output="sos")


@dataclass(frozen=True)
class Click:
    position: int      # sample
    score_db: float

    @property
    def seconds(self) -> float:
        return self.position / SAMPLE_RATE


def lpc_residual(x: np.ndarray) -> np.ndarray:
    """The linear-prediction residual of ``x``: each 20 ms Hann frame inverse-filtered
    by its own order-24 predictor (autocorrelation method), overlap-added."""
    x = np.asarray(x, np.float64)
    out = np.zeros_like(x)
    norm = np.zeros_like(x)
    window = np.hanning(LPC_FRAME)
    for s in range(0, max(1, x.size - LPC_FRAME + 1), LPC_HOP):
        seg = x[s:s + LPC_FRAME]
        if seg.size < LPC_FRAME:
            break
        sw = seg * window
        r = np.correlate(sw, sw, "full")[LPC_FRAME - 1:LPC_FRAME + LPC_ORDER]
        if r[0] <= 1e-12:
            e = seg
        else:
            r = r.copy()
            r[0] *= 1.0 + 1e-6  # white-noise correction: a well-conditioned system
            a = solve_toeplitz(r[:LPC_ORDER], -r[1:LPC_ORDER + 1])
            pre = x[max(0, s - LPC_ORDER):s]
            e = lfilter(np.concatenate([[1.0], a]), [1.0], np.concatenate([pre, seg]))[pre.size:]
        out[s:s + LPC_FRAME] += e * window
        norm[s:s + LPC_FRAME] += window
    return out / np.maximum(norm, 1e-9)


def _isolation(view: np.ndarray, floor: float, step: int) -> np.ndarray:
    """Per ``step`` samples: 20*log10(peak within PEAK_S / the louder side's largest peak
    GAP_S..CONTEXT_S away + floor)."""
    p = max(1, int(PEAK_S * SAMPLE_RATE))
    g = int(GAP_S * SAMPLE_RATE)
    c = int(CONTEXT_S * SAMPLE_RATE)
    env = maximum_filter1d(view, size=2 * p + 1)
    left = np.roll(maximum_filter1d(view, size=c, origin=(c - 1) // 2), g + 1)
    left[:g + 1] = 0.0
    right = np.roll(maximum_filter1d(view, size=c, origin=-(c // 2)), -(g + 1))
    right[-(g + 1):] = 0.0
    idx = np.arange(0, view.size, step)
    return 20.0 * np.log10((env[idx] + 1e-12) / (np.maximum(left, right)[idx] + floor))


def scores(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions, score in dB) every 0.25 ms of ``x`` (24 kHz): how far a transient there
    stands out from its neighbourhood (see the module's doc)."""
    x = as_audio(x, "audio")
    step = max(1, int(PEAK_S * SAMPLE_RATE))
    floor = 10.0 ** (FLOOR_DB / 20.0) * float(np.max(np.abs(x)))
    if floor == 0.0:
        idx = np.arange(0, x.size, step)
        return idx, np.full(idx.size, -np.inf)
    hp = _isolation(np.abs(sosfiltfilt(_HIGHPASS, x)) if x.size > 27 else np.abs(x), floor, step)
    lp = _isolation(np.abs(lpc_residual(x)), floor, step)
    return np.arange(0, x.size, step), hp + lp


def detect(x: np.ndarray, threshold_db: float = THRESHOLD_DB) -> list[Click]:
    """The clicks in ``x``: places whose score is above ``threshold_db``, those within
    :data:`MERGE_S` of each other counted once (at the highest score)."""
    idx, s = scores(x)
    out: list[Click] = []
    merge = MERGE_S * SAMPLE_RATE
    for i in np.flatnonzero(s > threshold_db):
        pos, sc = int(idx[i]), float(s[i])
        if out and pos - out[-1].position <= merge:
            if sc > out[-1].score_db:
                out[-1] = Click(out[-1].position, sc)
            continue
        out.append(Click(pos, sc))
    return out


def score_near(x: np.ndarray, positions: Sequence[int], within_s: float = 0.002,
               precomputed: tuple[np.ndarray, np.ndarray] | None = None) -> list[float]:
    """The highest score within ``within_s`` of each position (a seam's click score)."""
    idx, s = precomputed or scores(x)
    w = within_s * SAMPLE_RATE
    out = []
    for p in positions:
        sel = np.abs(idx - int(p)) <= w
        out.append(float(s[sel].max()) if sel.any() else float("-inf"))
    return out


def rate_per_minute(count: int, seconds: float) -> dict[str, float]:
    """Clicks per minute and its exact (Garwood) 95 % Poisson interval."""
    minutes = max(seconds, 1e-9) / 60.0
    lo = 0.0 if count == 0 else chi2.ppf(0.025, 2 * count) / 2.0
    hi = chi2.ppf(0.975, 2 * count + 2) / 2.0
    return {"count": int(count), "minutes": minutes, "per_minute": count / minutes,
            "ci95": [lo / minutes, hi / minutes]}


def no_more_than(test: dict[str, float], ref: dict[str, float]) -> bool:
    """Whether ``test``'s click rate is no higher than ``ref``'s beyond chance: the two
    counts, conditioned on their sum, follow a binomial with the minutes' share; the rate
    is higher only when that one-sided exact test rejects at 5 %."""
    n = int(test["count"] + ref["count"])
    if n == 0:
        return True
    share = test["minutes"] / (test["minutes"] + ref["minutes"])
    k = int(test["count"])
    tail = sum(math.comb(n, i) * share ** i * (1 - share) ** (n - i) for i in range(k, n + 1))
    return tail >= 0.05
