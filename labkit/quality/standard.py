"""The field's standard figures: how far a variant's audio is from the reference's.

These are reported beside the ruler (:mod:`labkit.quality.ruler`), which decides; the
ladder (:mod:`labkit.quality.ladder`) shows why none of them may decide alone: the
standard LSD reads inaudible noise as worse than clicks and a dropped syllable, PESQ-WB
is blind above 8 kHz and reads a change of durations as damage. The standard LSD stays
the figure of *numerical* drift (a graph rewrite, a split, a session option: where the
audio should be the same to the last bit, any distance is a finding).

Kokoro's vocoder builds its harmonic source from a running phase, so two variants that
sound the same drift apart in phase within a few hundred milliseconds: waveform SNR is
about 0 dB for every variant and says nothing (a 1e-7 perturbation already drops it to
~29 dB). What survives is the *magnitude* spectrum, hence the primary figure:

* :func:`lsd_db` -- the standard log-spectral distance. STFT magnitudes A (reference)
  and B (test), 1024-point periodic Hann window, hop 256; each magnitude is floored at
  ``f = 1e-5 * max(A, B)`` (100 dB below the louder signal's peak) so that silent bins
  cannot dominate; per frame t the distance is the RMS over the K frequency bins of the
  dB difference, and the figure is the mean over the T frames::

      D[t, k] = 20*log10(max(A[t, k], f)) - 20*log10(max(B[t, k], f))
      LSD     = (1/T) * sum_t sqrt( (1/K) * sum_k D[t, k]**2 )      [dB]

  0 dB is identical; a uniform gain g gives exactly |20*log10 g|. (The mean of |D|
  over all bins, which this module reported before, is never larger and on Kokoro's
  output is 1.4-1.6x smaller.)
* :func:`aligned_lsd_db` -- the same per-frame distance after dynamic time warping.

Each figure is per utterance; over a corpus :func:`summary` gives the worst utterance
and the mean, and a bound applies to the worst (:func:`within_bound`).

Other quantities measured with this distance but not a variant-vs-reference LSD carry
their own names where they are recorded (``seam_excess_db``: seam minus control in
stage 05; ``drift_vs_default_db``: a session configuration vs the default session in
stage 02; ``change_vs_first_db``: a session layout vs the first one in stage 06).

Beside it: :func:`spectral_convergence` (relative Frobenius error of the magnitudes),
:func:`pesq_wb` (ITU-T P.862.2 wideband, at 16 kHz), :func:`stoi` (intelligibility),
:func:`check_audio` (NaN, silence, clipping) and :func:`compare`, which gathers all of
them plus the duration agreement, and a no-reference MOS estimate when given one
(labkit.measure.dnsmos.score: Microsoft's DNSMOS models, bundled in ``speechmos``).

Durations: Kokoro predicts each phoneme's duration, so a variant may make audio a few
frames longer or shorter than the reference. ``compare`` reports that agreement and,
when the lengths differ, truncates both to the shorter one before the spectral figures
(``allow_length_mismatch=True``); the record says so (``truncated``).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from labkit.quality import align
from labkit.quality.signal import QualityError, as_audio, resample
from labkit.kokoro import SAMPLE_RATE

N_FFT = 1024
HOP = 256
FLOOR = 1e-5
#: a signal whose peak is below this is silence
SILENCE_PEAK = 1e-4
#: |x| at or above this counts as a clipped sample
CLIP_LEVEL = 0.999
#: more than this fraction of clipped samples is reported as clipping
CLIP_FRACTION = 1e-3

#: the quality figure in one sentence, for records and the journal
LSD_DEFINITION = (
    "standard log-spectral distance (labkit.quality.lsd_db): per STFT frame (1024-point Hann "
    "window, hop 256, 24 kHz) the RMS over frequency of the dB difference of the magnitudes, "
    "each floored 100 dB below the louder peak, then the mean over frames; a bound applies to "
    "the worst utterance, with the mean over utterances reported beside it")


def _pair(ref: Any, test: Any, allow_length_mismatch: bool) -> tuple[np.ndarray, np.ndarray]:
    a = as_audio(ref, "reference")
    b = as_audio(test, "test")
    if a.size != b.size:
        if not allow_length_mismatch:
            raise QualityError(
                f"length mismatch: reference {a.size} samples, test {b.size} samples "
                f"({(b.size - a.size) / SAMPLE_RATE:+.3f} s at 24 kHz); pass "
                "allow_length_mismatch=True to compare the common prefix")
        n = min(a.size, b.size)
        a, b = a[:n], b[:n]
    return a, b


def magnitude(x: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """|STFT| with a periodic Hann window of ``n_fft`` points, hop ``hop``; signals
    shorter than one window are zero-padded to one frame. Shape (frames, n_fft//2+1)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    n_frames = 1 + (x.size - n_fft) // hop
    rest = x.size - (n_frames - 1) * hop - n_fft
    if rest > 0:  # keep the tail: one more zero-padded frame
        x = np.pad(x, (0, hop - rest))
        n_frames += 1
    window = np.hanning(n_fft + 1)[:-1]
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop][:n_frames]
    return np.abs(np.fft.rfft(frames * window, axis=-1))


# -- figures --------------------------------------------------------------------------
def log_spectra(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """20*log10 of two magnitude arrays, each floored at 1e-5 x the louder peak; None
    when both are all zeros (identical silence)."""
    peak = max(float(np.max(A)), float(np.max(B)))
    if peak == 0.0:
        return None
    f = FLOOR * peak
    return 20.0 * np.log10(np.maximum(A, f)), 20.0 * np.log10(np.maximum(B, f))


def frame_distance(LA: np.ndarray, LB: np.ndarray) -> np.ndarray:
    """Per-frame distance of log spectra (dB): the RMS over the last axis (frequency)."""
    return np.sqrt(np.mean((LA - LB) ** 2, axis=-1))


def lsd_from_magnitudes(A: np.ndarray, B: np.ndarray) -> float:
    """The standard LSD (see the module docstring) of two (frames, bins) magnitude arrays."""
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    if A.shape != B.shape or A.ndim != 2 or A.size == 0:
        raise QualityError(f"magnitudes: expected two equal non-empty (frames, bins) arrays, "
                           f"got {A.shape} and {B.shape}")
    logs = log_spectra(A, B)
    if logs is None:
        return 0.0  # both silent: identical
    return float(np.mean(frame_distance(*logs)))


def lsd_db(ref: np.ndarray, test: np.ndarray, allow_length_mismatch: bool = False) -> float:
    """Standard log-spectral distance in dB: per frame the RMS over frequency of the dB
    difference of the STFT magnitudes (floored at 1e-5 x peak), then the mean over frames."""
    a, b = _pair(ref, test, allow_length_mismatch)
    return lsd_from_magnitudes(magnitude(a), magnitude(b))


def aligned_lsd_db(ref: np.ndarray, test: np.ndarray, band_s: float = 0.5) -> float:
    """Log-spectral distance after aligning the test's frames to the reference's in time.

    When a variant's durations differ from the reference's (its duration predictor rounds
    a phoneme one frame the other way), :func:`lsd_db` over the common prefix compares
    ever more distant sounds after the first difference and reports a timing shift as a
    spectral one. Here each reference frame is matched to a test frame by dynamic time
    warping on the per-frame distance of :func:`lsd_db` (RMS over frequency of the dB
    difference; steps: the next test frame, the same one, or one skipped, within
    ``band_s`` of the length-scaled diagonal; first and last frames matched), and the
    figure is the mean of the matched frames' distances, each reference frame counted
    once. Equal to :func:`lsd_db` for a pure gain; ~0 dB for the reference with a
    stretch of it repeated. A figure beside ``lsd_db``, never instead of the duration check.
    """
    a, b = as_audio(ref, "reference"), as_audio(test, "test")
    logs = log_spectra(magnitude(a), magnitude(b))
    if logs is None:
        return 0.0
    LA, LB = logs
    i, j = align.dtw_path(LA, LB, int(band_s * SAMPLE_RATE / HOP), frame_distance)
    return float(np.mean(frame_distance(LA[i], LB[j])))


# -- over a corpus ----------------------------------------------------------------------
def summary(per_utterance: dict[str, float | None] | Sequence[float | None]) -> dict[str, Any]:
    """{"worst", "worst_id", "mean", "n", "missing"} of per-utterance figures (higher is
    worse). ``per_utterance`` is {utterance id: figure} or a sequence; None entries (an
    utterance that could not be measured) are counted in ``missing``, and with any missing
    the worst is None: an unmeasured utterance cannot be shown to be within a bound."""
    items = (list(per_utterance.items()) if isinstance(per_utterance, dict)
             else list(enumerate(per_utterance)))
    if not items:
        raise QualityError("summary: no utterances")
    vals = [(k, float(v)) for k, v in items if v is not None]
    bad = [k for k, v in vals if not math.isfinite(v)]
    if bad:
        raise QualityError(f"summary: non-finite figure for {bad}")
    missing = [k for k, v in items if v is None]
    worst = max(vals, key=lambda kv: kv[1]) if vals else (None, None)
    return {"worst": None if missing else worst[1], "worst_id": None if missing else worst[0],
            "mean": float(np.mean([v for _, v in vals])) if vals else None,
            "n": len(items), "missing": missing}


def within_bound(per_utterance: dict[str, float | None] | Sequence[float | None],
                 bound: float) -> tuple[bool, str]:
    """(passed, reason): the worst utterance's figure is at most ``bound``; the mean is
    reported beside it and never decides."""
    s = summary(per_utterance)
    mean = "n/a" if s["mean"] is None else f"{s['mean']:.3f}"
    if s["worst"] is None:
        return False, f"not measured on {s['missing']} (mean of the rest {mean} dB)"
    if s["worst"] > bound:
        return False, (f"worst utterance {s['worst_id']}: {s['worst']:.3f} dB > bound {bound:g} dB "
                       f"(mean {mean} dB)")
    return True, f"worst {s['worst']:.3f} dB ({s['worst_id']}) <= {bound:g} dB (mean {mean} dB)"


def spectral_convergence(ref: np.ndarray, test: np.ndarray,
                         allow_length_mismatch: bool = False) -> float:
    """||B - A||_F / ||A||_F on STFT magnitudes (0 is identical; 1 is as far as silence)."""
    a, b = _pair(ref, test, allow_length_mismatch)
    A, B = magnitude(a), magnitude(b)
    norm = float(np.linalg.norm(A))
    if norm == 0.0:
        raise QualityError("spectral convergence: the reference is all zeros")
    return float(np.linalg.norm(B - A) / norm)


def pesq_wb(ref: np.ndarray, test: np.ndarray, sr: int = SAMPLE_RATE,
            allow_length_mismatch: bool = True) -> float:
    """Wideband PESQ (MOS-LQO, 1.0-4.64) after resampling to 16 kHz (scipy resample_poly).
    Raises QualityError when PESQ finds no speech (silence)."""
    from pesq import pesq
    from pesq import PesqError

    a, b = _pair(ref, test, allow_length_mismatch)
    a16, b16 = resample(a, sr, 16_000), resample(b, sr, 16_000)
    try:
        return float(pesq(16_000, a16, b16, "wb"))
    except PesqError as exc:
        raise QualityError(f"PESQ failed: {type(exc).__name__}: {exc}") from exc


def stoi(ref: np.ndarray, test: np.ndarray, sr: int = SAMPLE_RATE,
         allow_length_mismatch: bool = True) -> float:
    """Short-time objective intelligibility (0-1), pystoi (resamples to 10 kHz itself)."""
    from pystoi import stoi as _stoi

    a, b = _pair(ref, test, allow_length_mismatch)
    return float(_stoi(a, b, sr, extended=False))


def check_audio(audio: Any, sr: int = SAMPLE_RATE) -> list[str]:
    """Problems that disqualify a variant's output: empty, NaN/inf, silence, clipping.
    An empty list means none was found."""
    a = np.asarray(audio, dtype=np.float64).ravel()
    if a.size == 0:
        return ["empty: no samples"]
    problems = []
    bad = ~np.isfinite(a)
    if bad.any():
        problems.append(f"nan: {int(bad.sum())} NaN/inf samples of {a.size} "
                        f"(first at {np.argmax(bad) / sr:.3f} s)")
        a = a[~bad]
        if a.size == 0:
            return problems
    peak = float(np.max(np.abs(a)))
    if peak < SILENCE_PEAK:
        problems.append(f"silence: peak {peak:.2e} < {SILENCE_PEAK:g}")
    clipped = float(np.mean(np.abs(a) >= CLIP_LEVEL))
    if clipped > CLIP_FRACTION:
        problems.append(f"clipping: {clipped:.2%} of samples at |x| >= {CLIP_LEVEL}")
    return problems


def duration_agreement(ref: np.ndarray, test: np.ndarray, sr: int = SAMPLE_RATE) -> dict:
    n_ref, n_test = int(np.size(ref)), int(np.size(test))
    return {
        "ref_s": n_ref / sr,
        "test_s": n_test / sr,
        "diff_s": (n_test - n_ref) / sr,
        "ratio": n_test / n_ref if n_ref else float("nan"),
        # Kokoro's frames are 600 samples (hop of the 24 kHz iSTFT x upsampling)
        "diff_frames": (n_test - n_ref) / 600.0,
    }


def compare(ref: np.ndarray, test: np.ndarray, sr: int = SAMPLE_RATE,
            mos: Callable[[np.ndarray, int], dict | None] | None = None,
            with_pesq: bool = True) -> dict[str, Any]:
    """Every figure for one (reference, test) pair; ``mos(audio, sr)`` adds a no-reference
    MOS estimate of both (labkit.measure.dnsmos.score). Never raises on bad test audio: a
    test with problems gets ``ok: False``, its problems listed and the figures None."""
    ref = np.asarray(ref, dtype=np.float32).ravel()
    test = np.asarray(test, dtype=np.float32).ravel()
    problems = check_audio(test, sr)
    ref_problems = check_audio(ref, sr)
    out: dict[str, Any] = {
        "ok": not problems,
        "problems": problems,
        "ref_problems": ref_problems,
        "duration": duration_agreement(ref, test, sr),
        "truncated": ref.size != test.size,
        "lsd_db": None, "lsd_db_aligned": None, "spectral_convergence": None, "pesq_wb": None, "stoi": None,
        "dnsmos": None, "dnsmos_ref": None,
    }
    if problems or ref_problems:
        return out
    out["lsd_db"] = lsd_db(ref, test, allow_length_mismatch=True)
    # where the lengths differ, the common-prefix figure mixes timing with spectrum
    out["lsd_db_aligned"] = aligned_lsd_db(ref, test) if ref.size != test.size else out["lsd_db"]
    out["spectral_convergence"] = spectral_convergence(ref, test, allow_length_mismatch=True)
    if with_pesq:
        try:
            out["pesq_wb"] = pesq_wb(ref, test, sr)
        except QualityError as exc:
            out["pesq_error"] = str(exc)
    out["stoi"] = stoi(ref, test, sr)
    if mos is not None:
        out["dnsmos"] = mos(test, sr)
        out["dnsmos_ref"] = mos(ref, sr)
    return out
