"""The cost at the seams: what chunking does to the audio where pieces are joined.

What decides is what a listener would hear: clicks (labkit.quality.clicks, a detector
validated on the calibration ladder). The chunked stream's clicks per minute are held
against the unchunked synthesis of the same text (speech has click-like transients of its
own: plosives, creaky voice) -- no higher beyond chance -- and no seam may hold a click
(:func:`click_report`, :func:`verdict`). Beside it, reported only: the log-spectral
distance to the unchunked audio in a window around each seam against mid-piece points
(the control), which moves everywhere because chunking changes prosody everywhere and
cannot hear a click (FINDINGS), and the join discontinuity at each seam.
"""
from __future__ import annotations

import dataclasses
import statistics
from dataclasses import asdict
from typing import Any, Callable, Sequence

import numpy as np

from labkit import quality
from labkit.quality import clicks as clickmod
from labkit.engine import joining
from labkit.kokoro import SAMPLE_RATE
from labkit.engine.pipeline import StreamingSynthesizer


def _frames(x: np.ndarray, n_fft: int = 512, hop: int = 240) -> np.ndarray:
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    m = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(m)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * np.hanning(n_fft), axis=1))
    return np.log(spec + 1e-5)


def align(ref: np.ndarray, segment: np.ndarray, guess: int, search_s: float = 2.0, hop: int = 240) -> int:
    """Sample offset in ``ref`` where ``segment`` matches best (log-spectrum distance over
    frames), searched within ``search_s`` of ``guess``."""
    seg = _frames(segment, hop=hop)
    rf = _frames(ref, hop=hop)
    g = guess // hop
    lo = max(0, g - int(search_s * SAMPLE_RATE / hop))
    hi = min(len(rf) - len(seg), g + int(search_s * SAMPLE_RATE / hop))
    if hi < lo:
        return max(0, min(guess, len(ref) - len(segment)))
    best = min(range(lo, hi + 1), key=lambda k: float(np.mean((rf[k:k + len(seg)] - seg) ** 2)))
    return best * hop


def seam_lsd(reference: np.ndarray, chunked: np.ndarray, seams: Sequence[int],
             window_s: float = 0.25, lsd: Callable | None = None) -> list[dict[str, Any]]:
    """Log-spectral distance (dB) of the chunked audio against the unchunked one in a
    window around each seam, and around the midpoint between seams as the control: what
    chunking changes everywhere (each piece has its own style row and prosody) vs what
    the join adds. The chunked window is located in the reference by spectral alignment
    (durations differ: pauses are re-sized, pieces are re-timed)."""
    lsd = lsd or quality.lsd_db
    w = int(window_s * SAMPLE_RATE)
    ref = np.asarray(reference, np.float32)
    out = []
    points = [int(p) for p in seams if w <= p <= len(chunked) - w]
    bounds = [0, *points, len(chunked)]
    for k, p in enumerate(points):
        row = {"position_s": p / SAMPLE_RATE}
        for label, centre in (("seam", p), ("control", (bounds[k] + p) // 2)):
            if centre - w < 0 or centre + w > len(chunked):
                row[f"{label}_lsd_db"] = None
                continue
            seg = chunked[centre - w:centre + w]
            guess = int(centre * len(ref) / max(len(chunked), 1)) - w
            at = align(ref, seg, guess)
            ref_seg = ref[at:at + len(seg)]
            if len(ref_seg) < len(seg):
                row[f"{label}_lsd_db"] = None
                continue
            row[f"{label}_lsd_db"] = float(lsd(ref_seg, seg, allow_length_mismatch=False))
        out.append(row)
    return out



def unchunked(engine, chunking_cfg, text_: str, voice: str | None = None) -> np.ndarray:
    """The reference the seams are measured against: ``text_`` in as few pieces as the
    510-token limit allows (``strategy: none``)."""
    ref_synth = StreamingSynthesizer(engine, chunking_cfg=dataclasses.replace(chunking_cfg, strategy="none"))
    return ref_synth.synthesize(text_, voice)


def seam_excess(rows: Sequence[dict[str, Any]]) -> float | None:
    """What a seam adds, in dB: the median over seams of (LSD at the seam - LSD at its own
    control, mid-way through the piece before it), paired seam by seam as every other
    comparison in the lab. The unpaired difference of the two medians moved with where
    the seams fell rather than with what they cost: stage 05's adaptive cut (the default's
    seams plus one more near the start, itself +1.7 dB over its control, below the
    default's own crossfade at +6.4) read 3.25 dB against the default's 1.24 that way,
    1.7 against -0.15 paired."""
    diffs = [r["seam_lsd_db"] - r["control_lsd_db"] for r in rows
             if r.get("seam_lsd_db") is not None and r.get("control_lsd_db") is not None]
    return statistics.median(diffs) if diffs else None


def natural_discontinuity(audio: np.ndarray, crossfade_ms: float = 10.0, points: int = 200,
                          edge_s: float = 0.5) -> dict[str, float]:
    """The scale for :func:`labkit.engine.joining.continuity`'s ratio: the same measure at
    ``points`` evenly spaced places of audio that has no joins (the unchunked reference),
    as its 50th, 90th and 99th percentiles. A join in quiet audio reads far below these, one
    inside loud speech (a window of a sentence's frames) near them; a click far above."""
    edge = int(edge_s * SAMPLE_RATE)
    if len(audio) <= 2 * edge:
        return {}
    at = np.linspace(edge, len(audio) - edge, points).astype(int)
    ratios = [c.ratio for c in joining.continuity(audio, [joining.Seam(int(p), "crossfade") for p in at],
                                                  crossfade_ms=crossfade_ms)]
    return {f"p{q}": round(float(np.percentile(ratios, q)), 3) for q in (50, 90, 99)}


def click_report(chunked: np.ndarray, reference: np.ndarray, seam_positions: Sequence[int]
                 ) -> dict[str, Any]:
    """Clicks (labkit.quality.clicks) in the chunked audio and in the unchunked reference:
    each one's rate per minute with its Poisson interval, the score at every seam (within
    2 ms) and the worst, the seams that hold a click, and whether the chunked rate is no
    higher than the reference's beyond chance (:func:`labkit.quality.clicks.no_more_than`)."""
    found = clickmod.detect(chunked)
    found_ref = clickmod.detect(reference)
    rate = clickmod.rate_per_minute(len(found), len(chunked) / SAMPLE_RATE)
    rate_ref = clickmod.rate_per_minute(len(found_ref), len(reference) / SAMPLE_RATE)
    at_seams = clickmod.score_near(chunked, seam_positions) if len(seam_positions) else []
    return {"threshold_db": clickmod.THRESHOLD_DB,
            "chunked": rate, "unchunked": rate_ref,
            "positions_s": [round(c.seconds, 3) for c in found],
            "seam_scores_db": [round(x, 2) for x in at_seams],
            "worst_seam_db": round(max(at_seams), 2) if at_seams else None,
            "clicks_at_seams": sum(1 for x in at_seams if x > clickmod.THRESHOLD_DB),
            "no_more_than_unchunked": clickmod.no_more_than(rate, rate_ref)}


def verdict(clicks_: dict[str, Any]) -> tuple[bool, list[str]]:
    """(passed, why not) of a seam report's clicks: no seam holds a click, and the chunked
    audio clicks no more often than the unchunked."""
    why = []
    if clicks_["clicks_at_seams"]:
        why.append(f"{clicks_['clicks_at_seams']} seam(s) hold a click (worst "
                   f"{clicks_['worst_seam_db']} dB > {clicks_['threshold_db']} dB)")
    if not clicks_["no_more_than_unchunked"]:
        why.append(f"{clicks_['chunked']['per_minute']:.1f} clicks per minute against "
                   f"{clicks_['unchunked']['per_minute']:.1f} unchunked")
    return not why, why


def seam_report(engine, chunking_cfg, text_: str, voice: str | None = None,
                reference: np.ndarray | None = None) -> dict[str, Any]:
    """The cost at the seams of ``chunking_cfg`` on ``text_``: log-spectral distance to
    the unchunked audio around each seam vs around mid-piece points (the control), the
    discontinuity at each join, and pause lengths (ours vs the model's own).
    ``reference``: the unchunked audio when already made (:func:`unchunked`, same text,
    voice and joining settings), shared by the variants of one comparison."""
    if reference is None:
        reference = unchunked(engine, chunking_cfg, text_, voice)
    stream = StreamingSynthesizer(engine, chunking_cfg=chunking_cfg).open_stream(text_, voice)
    with stream:
        chunks = list(stream)
    chunked = np.concatenate([c.audio for c in chunks])
    seams = stream.joiner.seams
    positions = [s.position for s in seams]
    lsd_rows = seam_lsd(reference, chunked, positions)
    for row, seam in zip(lsd_rows, [s for s in seams if int(0.25 * SAMPLE_RATE) <= s.position
                                    <= len(chunked) - int(0.25 * SAMPLE_RATE)]):
        row["kind"] = seam.kind
    checks = joining.continuity(chunked, seams, crossfade_ms=chunking_cfg.crossfade_ms)
    natural = joining.silence_runs(reference)
    seam_vals = [r["seam_lsd_db"] for r in lsd_rows if r.get("seam_lsd_db") is not None]
    ctrl_vals = [r["control_lsd_db"] for r in lsd_rows if r.get("control_lsd_db") is not None]
    clicks_ = click_report(chunked, reference, positions)
    passed, why = verdict(clicks_)
    return {
        "seams": len(seams),
        "clicks": clicks_,
        "quality_passed": passed,
        "quality_reasons": why,
        "seam_lsd_db_median": statistics.median(seam_vals) if seam_vals else None,
        "control_lsd_db_median": statistics.median(ctrl_vals) if ctrl_vals else None,
        "seam_excess_db": seam_excess(lsd_rows),
        # the unpaired difference of medians the stage reported before (for comparison)
        "seam_excess_unpaired_db": (statistics.median(seam_vals) - statistics.median(ctrl_vals))
        if seam_vals and ctrl_vals else None,
        "max_discontinuity_ratio": max((c.ratio for c in checks), default=0.0),
        "natural_discontinuity": natural_discontinuity(reference, chunking_cfg.crossfade_ms),
        "rows": lsd_rows,
        "continuity": [asdict(c) for c in checks],
        "inserted_pauses_s": {k: [s.pause_s for s in seams if s.kind == "pause" and
                                  chunks[s.piece - 1].boundary == k]
                              for k in ("clause", "sentence", "paragraph")},
        "natural_pauses_s": [round(length, 3) for _, length in natural],
        "reference_s": len(reference) / SAMPLE_RATE,
        "chunked_s": len(chunked) / SAMPLE_RATE,
        "_reference": reference,
        "_chunked": chunked,
    }
