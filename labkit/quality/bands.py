"""What a listener can hear change: the spectrum in auditory bands above the masked threshold.

The standard LSD (:mod:`labkit.quality.standard`) compares every FFT bin in dB down to
100 dB under the peak, so bins no one hears rule it: 50 dB SNR white noise, inaudible,
reads 3-9 dB, while a click or a 60 ms dropout, clearly audible, read about 1 dB (the
ladder, :mod:`labkit.quality.ladder`). Here the same question is asked the way a
perceptual model does (PEAQ, PESQ and the MPEG psychoacoustic models in miniature):

1. **Auditory bands.** The power spectrum (512-point Hann window, 21 ms, hop 120 samples,
   5 ms, at 24 kHz) is summed into bands one ERB wide (Glasberg & Moore's ERB-rate scale)
   from 80 Hz to 11.5 kHz, each at least two FFT bins: ~34 bands. Harmonic fine structure
   averages out inside a band, so two vocoder renderings with the same envelope agree.
2. **A listening level.** The reference's active speech (frames within 40 dB of its
   loudest) is set to :data:`LISTENING_LEVEL_DB` (65 dB SPL, a conversation at one metre)
   and the test is read on the same scale, so each band has a level in dB SPL.
3. **What can be heard at all.** A band below the threshold in quiet (Terhardt's
   approximation of ISO 226 at the band's centre) is inaudible, and so is one under the
   *masked threshold* of the reference's own frame: each band masks its neighbours with
   :data:`SLOPE_UP_DB` per ERB towards higher frequencies and :data:`SLOPE_DOWN_DB`
   towards lower ones, :data:`MASK_OFFSET_DB` below its own level. Both signals are
   floored at the higher of the two thresholds, so a change below it counts for nothing.
4. **The distance.** Per frame, the RMS over bands of the dB difference of the floored
   levels (as the standard LSD, on bands). :func:`masked_lsd` gives its mean over the
   frames where either signal is audible (``masked_lsd_db``: steady damage such as hiss or
   dullness) and its worst frame (``masked_lsd_peak_db``: a click, a dropout, a glitch).

The test's level is matched to the reference's first (:func:`level_db` reports the
difference as its own figure), so a change of loudness does not read as a change of
spectrum. The constants are the psychoacoustic literature's; the thresholds that bound
these figures are set by the ladder, not here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labkit.kokoro import SAMPLE_RATE

N_FFT = 512
HOP = 120
LOW_HZ, HIGH_HZ = 80.0, 11_500.0
#: the reference's active speech is heard at this level (dB SPL)
LISTENING_LEVEL_DB = 65.0
#: masking spreads this many dB per ERB towards higher bands, and towards lower ones
SLOPE_UP_DB, SLOPE_DOWN_DB = 12.0, 25.0
#: the masked threshold lies this far below the masker's own level
MASK_OFFSET_DB = 16.0
#: frames within this many dB of the loudest are the active speech whose level is set
ACTIVE_DB = 40.0


def erb_rate(f_hz):
    """Glasberg & Moore's ERB-rate (ERBs below ``f_hz``)."""
    return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(f_hz, np.float64))


def erb_rate_inv(e):
    return (10.0 ** (np.asarray(e, np.float64) / 21.4) - 1.0) / 0.00437


def threshold_in_quiet(f_hz):
    """Terhardt's approximation of the absolute threshold of hearing, dB SPL."""
    k = np.asarray(f_hz, np.float64) / 1000.0
    return 3.64 * k ** -0.8 - 6.5 * np.exp(-0.6 * (k - 3.3) ** 2) + 1e-3 * k ** 4


@dataclass(frozen=True)
class Bands:
    weights: np.ndarray   # (bands, bins) 0/1: which FFT bins each band sums
    centre_hz: np.ndarray
    centre_erb: np.ndarray
    quiet_db: np.ndarray  # threshold in quiet at each centre, dB SPL
    spread: np.ndarray    # (masker, target) attenuation in linear power


def _bands(n_fft: int = N_FFT) -> Bands:
    freqs = np.fft.rfftfreq(n_fft, 1.0 / SAMPLE_RATE)
    edges = [*erb_rate_inv(np.arange(erb_rate(LOW_HZ), erb_rate(HIGH_HZ), 1.0)), HIGH_HZ]
    rows, centres, start = [], [], edges[0]
    for e in edges[1:]:
        sel = (freqs >= start) & (freqs < e)
        if sel.sum() >= 2:  # a band narrower than two bins joins the next one
            rows.append(sel.astype(np.float64))
            centres.append(float(np.sqrt(start * e)))
            start = e
    centre = np.asarray(centres)
    cerb = erb_rate(centre)
    d = cerb[None, :] - cerb[:, None]  # [masker, target]: target above the masker when > 0
    atten_db = np.where(d >= 0, SLOPE_UP_DB * d, -SLOPE_DOWN_DB * d)
    return Bands(np.asarray(rows), centre, cerb, threshold_in_quiet(centre), 10.0 ** (-atten_db / 10.0))


BANDS = _bands()


def band_power(x: np.ndarray, hop: int = HOP) -> np.ndarray:
    """(frames, bands) power of ``x``: 512-point Hann frames every ``hop`` samples (120:
    5 ms), centred (half a window of zeros at each end), summed into the auditory bands."""
    x = np.asarray(x, np.float64)
    pad = N_FFT // 2
    x = np.pad(x, (pad, pad + max(0, N_FFT - x.size)))
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::hop]
    window = np.hanning(N_FFT + 1)[:-1]
    return (np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2) @ BANDS.weights.T


def active_power(p_frames: np.ndarray) -> float:
    """Mean total power of the frames within :data:`ACTIVE_DB` of the loudest (0.0 for
    silence)."""
    tot = np.asarray(p_frames, np.float64)
    top = float(tot.max()) if tot.size else 0.0
    if top <= 0.0:
        return 0.0
    return float(tot[tot >= top * 10.0 ** (-ACTIVE_DB / 10.0)].mean())


def level_db(ref: np.ndarray, test: np.ndarray) -> float:
    """How much louder ``test``'s active speech is than ``ref``'s (dB; negative: quieter),
    on 20 ms frames within :data:`ACTIVE_DB` of each one's loudest."""
    def active(x):
        x = np.asarray(x, np.float64)
        n = max(1, x.size // 480)
        e = (np.pad(x, (0, n * 480 - x.size)) if x.size < n * 480 else x[: n * 480]).reshape(n, 480)
        return active_power((e ** 2).mean(axis=1))
    a, b = active(ref), active(test)
    if a <= 0.0 or b <= 0.0:
        return 0.0 if a == b else float("inf") if b > a else float("-inf")
    return float(10.0 * np.log10(b / a))


def masked_threshold(levels_db: np.ndarray) -> np.ndarray:
    """(frames, bands) masked threshold, dB SPL, of a frame's band levels: the power sum
    of every band's spread masking, :data:`MASK_OFFSET_DB` below it."""
    lin = 10.0 ** (np.asarray(levels_db) / 10.0)
    return 10.0 * np.log10(np.maximum(lin @ BANDS.spread, 1e-30)) - MASK_OFFSET_DB


@dataclass
class MaskedDistance:
    """Per frame of the reference: the distance (dB) and whether either signal was
    audible there; the two figures over them."""

    per_frame: np.ndarray
    audible: np.ndarray

    @property
    def mean_db(self) -> float:
        return float(self.per_frame[self.audible].mean()) if self.audible.any() else 0.0

    @property
    def peak_db(self) -> float:
        return float(self.per_frame.max()) if self.per_frame.size else 0.0


def masked_lsd(ref: np.ndarray, test: np.ndarray, path: tuple[np.ndarray, np.ndarray] | None = None,
               hop: int = HOP) -> MaskedDistance:
    """The distance in auditory bands above the masked threshold (see the module's doc)
    of ``test`` to ``ref``, both 24 kHz and already aligned and level-matched; ``path``
    pairs reference frames with test frames (:func:`labkit.quality.align.dtw_path`) where
    their lengths differ (frames every ``hop`` samples, as the path's), else frame t is
    compared with frame t. Warped, each reference frame is read against the closest of the
    matched test frame and its two neighbours (a warp is only as exact as its grid)."""
    pr, pt = band_power(ref, hop), band_power(test, hop)
    if path is None:
        n = min(len(pr), len(pt))
        pr, pt = pr[:n], pt[:n]
    else:
        pr, pt = pr[path[0]], pt[path[1]]
    p0 = active_power(pr.sum(axis=1))
    if p0 <= 0.0:  # a silent reference: every audible frame of the test is a change
        p0 = active_power(pt.sum(axis=1)) or 1.0
    to_spl = LISTENING_LEVEL_DB - 10.0 * np.log10(p0)
    r = 10.0 * np.log10(pr + 1e-30) + to_spl
    t = 10.0 * np.log10(pt + 1e-30) + to_spl
    floor = np.maximum(masked_threshold(r), BANDS.quiet_db[None, :])
    rf = np.maximum(r, floor)
    d = np.sqrt(np.mean((np.maximum(t, floor) - rf) ** 2, axis=1))
    audible = ((r > floor) | (t > floor)).any(axis=1)
    if path is not None:  # warped: the path's own resolution is a frame either way
        tt = 10.0 * np.log10(band_power(test, hop) + 1e-30) + to_spl
        for step in (-1, 1):
            j = np.clip(path[1] + step, 0, len(tt) - 1)
            d = np.minimum(d, np.sqrt(np.mean((np.maximum(tt[j], floor) - rf) ** 2, axis=1)))
    return MaskedDistance(d, audible)


