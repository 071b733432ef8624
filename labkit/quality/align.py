"""Putting two renderings of the same speech side by side before they are compared.

Two files of the same speech rarely start on the same sample: a player's delay, a codec's
priming, a trimmed silence. And a variant that predicts other durations (quantization moves
a phoneme by a frame) makes audio of another length. Comparing them sample for sample
reads a 20 ms delay as a 7-10 dB change and a 1 % time stretch as 5-19 dB (the ladder):
timing read as damage. So:

* :func:`lag` finds a constant delay within ``max_ms``: the waveforms' cross-correlation
  where the two are alike (|r| > 0.5 at its peak; a polarity flip counts), else that of
  their short-time envelopes (1 ms steps: renderings whose phase differs);
* :func:`trim_to_lag` cuts the leading samples of whichever starts later;
* :func:`dtw_path` aligns frame sequences of different lengths by dynamic time warping
  (steps: the next test frame, the same one again, or one skipped; within a band around
  the length-scaled diagonal; first and last frames matched), one test frame per
  reference frame.

The ruler aligns first and reports the timing it removed (``lag_ms``, the length
difference) as figures of their own.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.signal import fftconvolve

from labkit.quality.signal import QualityError

from labkit.kokoro import SAMPLE_RATE

#: envelope step for the coarse lag (samples): 1 ms
ENVELOPE_STEP = 24
#: a waveform correlation above this is trusted for the fine lag
MIN_CORRELATION = 0.5


def _envelope(x: np.ndarray) -> np.ndarray:
    n = x.size // ENVELOPE_STEP
    return np.sqrt((x[: n * ENVELOPE_STEP].reshape(n, ENVELOPE_STEP) ** 2).mean(axis=1))


def _correlation(ref: np.ndarray, test: np.ndarray, lag_: int) -> float:
    x, y = (ref, test[lag_:]) if lag_ >= 0 else (ref[-lag_:], test)
    n = min(x.size, y.size)
    if n == 0:
        return 0.0
    den = float(np.linalg.norm(x[:n]) * np.linalg.norm(y[:n]))
    return abs(float(np.dot(x[:n], y[:n]))) / den if den > 0 else 0.0


def lag(ref: np.ndarray, test: np.ndarray, max_ms: float = 200.0) -> int:
    """Samples by which ``test`` starts later than ``ref`` (negative: earlier)."""
    ref = np.asarray(ref, np.float64)
    test = np.asarray(test, np.float64)
    a, b = _envelope(ref), _envelope(test)
    if a.size == 0 or b.size == 0 or not a.any() or not b.any():
        return 0
    c = fftconvolve(b, a[::-1])
    mid = a.size - 1
    m = int(max_ms / 1000.0 * SAMPLE_RATE / ENVELOPE_STEP)
    lo, hi = max(0, mid - m), min(c.size, mid + m + 1)
    coarse = (int(np.argmax(c[lo:hi])) + lo - mid) * ENVELOPE_STEP
    # the waveforms, where they are alike (a rendering of the same samples), to the sample
    w = fftconvolve(test, ref[::-1])
    mid = ref.size - 1
    m = int(max_ms / 1000.0 * SAMPLE_RATE)
    lo, hi = max(0, mid - m), min(w.size, mid + m + 1)
    fine = int(np.argmax(np.abs(w[lo:hi]))) + lo - mid
    return fine if _correlation(ref, test, fine) > MIN_CORRELATION else coarse


def trim_to_lag(ref: np.ndarray, test: np.ndarray, lag_: int) -> tuple[np.ndarray, np.ndarray]:
    """``ref`` and ``test`` with the later one's leading ``|lag_|`` samples cut."""
    return (ref, test[lag_:]) if lag_ >= 0 else (ref[-lag_:], test)


def rms_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame distance of feature rows (dB): the RMS over the last axis."""
    return np.sqrt(np.mean((a - b) ** 2, axis=-1))


def dtw_path(ref_frames: np.ndarray, test_frames: np.ndarray, band: int,
             distance: Callable[[np.ndarray, np.ndarray], np.ndarray] = rms_distance
             ) -> tuple[np.ndarray, np.ndarray]:
    """(reference frame index, matched test frame index), one pair per reference frame,
    minimising the summed ``distance`` (see the module's doc); ``band`` frames either side
    of the diagonal at least (never narrower than the length difference + 4). Raises
    :class:`QualityError` when no path fits the band."""
    n, m = len(ref_frames), len(test_frames)
    if n == 0 or m == 0:
        raise QualityError("alignment: an empty signal has no frames")
    w = max(abs(n - m) + 4, int(band))
    centre = np.rint(np.arange(n) * (m - 1) / max(n - 1, 1)).astype(int)
    lo = np.clip(centre - w, 0, m - 1)
    hi = np.clip(centre + w + 1, 1, m)
    prev = None
    back = []
    for i in range(n):
        js = np.arange(lo[i], hi[i])
        d = distance(ref_frames[i][None, :], test_frames[js])
        if i == 0:
            cost = np.where(js == 0, d, np.inf)
            back.append(np.zeros(js.size, dtype=np.int8))
        else:
            options = np.full((3, js.size), np.inf)
            for step in (0, 1, 2):  # from (i-1, j - step)
                k = js - step - lo[i - 1]
                ok = (k >= 0) & (k < prev.size)
                options[step, ok] = prev[k[ok]]
            best = np.argmin(options, axis=0)
            cost = d + options[best, np.arange(js.size)]
            back.append(best.astype(np.int8))
        prev = cost
    j = m - 1
    if not (lo[-1] <= j < hi[-1]) or not np.isfinite(prev[j - lo[-1]]):
        raise QualityError("alignment: no path within the band (lengths too different)")
    matched = np.empty(n, dtype=int)
    for i in range(n - 1, -1, -1):
        matched[i] = j
        j -= int(back[i][j - lo[i]])
    return np.arange(n), matched
