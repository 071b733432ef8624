"""The quality of a model variant against the reference's output on a corpus: per
utterance the standard figures (labkit.quality.compare: LSD, PESQ, STOI, DNSMOS), the
ruler's masked LSD where the lengths agree, and, where the model outputs per-token
durations, every word checked in the audio (labkit.measure.coverage); summarized over the
corpus (:func:`summarize`). A variant whose output has NaN, silence or clipping, or a word
not heard, fails.
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Sequence

import numpy as np

from labkit import quality
from labkit.engine import words as wordsmod
from labkit.engine.g2p import get_g2p
from labkit.engine.runtime import DURATIONS
from labkit.kokoro import SAMPLE_RATE
from labkit.measure import coverage, dnsmos
from labkit.quality import ruler


def reference_audio(session, prepared: Sequence, voices) -> dict[str, np.ndarray]:
    return {p.utt.id: np.asarray(session.run(None, p.feeds(voices))[0]).ravel() for p in prepared}


def utterance_words(p, frames: np.ndarray) -> list[dict[str, Any]]:
    """[{"word", "start", "end"}] of a prepared utterance from the model's per-token frames."""
    phonemized = get_g2p(p.utt.lang)(p.utt.text)
    spans, _ = wordsmod.spans_for(p.utt.text, p.phonemes, phonemized)
    return [{"word": w, "start": a / SAMPLE_RATE, "end": b / SAMPLE_RATE}
            for w, a, b in wordsmod.piece_samples(spans, frames, len(p.tokens))]


def evaluate(session, prepared: Sequence, voices, ref_audio: dict[str, np.ndarray],
             with_dnsmos: bool = True) -> dict[str, Any]:
    """Quality of one variant on a corpus: per utterance and summarized. Where the model
    outputs per-token durations (labkit.optimize.durations), every word is also checked
    in the audio (labkit.measure.coverage): a word not heard fails the utterance."""
    per: dict[str, Any] = {}
    audio: dict[str, np.ndarray] = {}
    names = [o.name for o in session.get_outputs()]
    timed = DURATIONS in names
    for p in prepared:
        try:
            outs = session.run(None, p.feeds(voices))
            out = np.asarray(outs[0]).ravel()
        except Exception as exc:  # noqa: BLE001 - a variant that cannot run is a failed variant
            per[p.utt.id] = {"ok": False, "problems": [f"run failed: {type(exc).__name__}: {exc}"]}
            continue
        audio[p.utt.id] = out
        # a length change is the durations' figure (ruler_quality), not a failure
        rec = quality.compare(ref_audio[p.utt.id], out, mos=dnsmos.score if with_dnsmos else None)
        if rec["ok"] and out.size == ref_audio[p.utt.id].size:  # other lengths: ruler_quality
            fig = ruler.measure(ref_audio[p.utt.id], out, standard_figures=False)
            rec["masked_lsd_db"], rec["masked_lsd_peak_db"] = fig.masked_lsd_db, fig.masked_lsd_peak_db
        rec["n_tokens"] = p.n_tokens
        rec["words_checked_in_audio"] = timed
        if timed:
            cov = coverage.check(out, SAMPLE_RATE, utterance_words(p, outs[names.index(DURATIONS)]))
            if not cov.ok:
                rec["ok"] = False
                rec["problems"].append(f"words not heard: {[w.word for w in cov.failed][:10]}"
                                       if cov.words else f"words not heard: {cov.problem}")
        per[p.utt.id] = rec
    return {"per_utterance": per, "summary": summarize(per), "_audio": audio}


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.fmean(vals) if vals else None


def _worst(recs: list[dict], key: str) -> float | None:
    """The largest ``key`` over utterances; None unless every utterance has it."""
    return (max(r[key] for r in recs) if recs and all(r.get(key) is not None for r in recs)
            else None)


def summarize(per: dict[str, dict]) -> dict[str, Any]:
    """Over utterances: ``lsd_db`` is the worst utterance's standard LSD (None when any
    utterance could not be measured), ``lsd_db_mean`` the mean beside it; the other
    figures are means."""
    recs = list(per.values())
    lsd = (quality.summary({k: r.get("lsd_db") for k, r in per.items()}) if per
           else {"worst": None, "worst_id": None, "mean": None})
    problems = {k: r["problems"] for k, r in per.items() if r.get("problems")}
    return {
        "ok": all(r.get("ok") for r in recs) and bool(recs),
        "problems": problems,
        # the standard LSD of the worst utterance (bounds apply to it), the mean beside it
        "lsd_db": lsd["worst"],
        "lsd_db_worst_id": lsd["worst_id"],
        "lsd_db_mean": lsd["mean"],
        # time-aligned where a length changed (labkit.quality.aligned_lsd_db): the spectral
        # part of the distance without the timing shift
        "lsd_db_aligned": _mean(r.get("lsd_db_aligned") for r in recs),
        # the ruler's distance where the whole outputs have the same length (sensitivity)
        "masked_lsd_db": _worst(recs, "masked_lsd_db"),
        # and its worst 5 ms frame (a click, a glitch), worst utterance
        "masked_lsd_peak_db": _worst(recs, "masked_lsd_peak_db"),
        "spectral_convergence": _mean(r.get("spectral_convergence") for r in recs),
        "pesq_wb": _mean(r.get("pesq_wb") for r in recs),
        "stoi": _mean(r.get("stoi") for r in recs),
        "dnsmos_ovrl": _mean((r.get("dnsmos") or {}).get("ovrl") for r in recs),
        "dnsmos_ovrl_ref": _mean((r.get("dnsmos_ref") or {}).get("ovrl") for r in recs),
        "length_changes": sum(1 for r in recs if r.get("duration", {}).get("diff_s")),
        "truncated": sum(1 for r in recs if r.get("truncated")),
        "n": len(recs),
        # every utterance's words were checked in its audio (the model gave durations)
        "words_checked_in_audio": bool(recs) and all(r.get("words_checked_in_audio") for r in recs),
    }
