"""What the text path costs before the first audio, timed by the lab's one instrument
(labkit.measure.compare: interleaved rounds, paired ratios, bootstrap intervals, an A/A
control): the pipeline's own path (sanitize, then chunking's per-piece G2P, as
``StreamingSynthesizer.pieces`` does it, the G2P cache emptied before each call) against
misaki alone on the raw text (:func:`g2p_cost`, :func:`cost_ratio`), and a repeated
sentence served from the G2P cache (:func:`cache_hit_seconds`). Stage 01
(labkit.lab.s01_g2p_sanitization) runs them.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from labkit import progress
from labkit.config import LabConfig
from labkit.engine.g2p import G2P, get_g2p, lexicon_path
from labkit.engine.languages import normalize_lang
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.engine.text import sanitize
from labkit.measure import texts
from labkit.measure.compare import Comparison, bootstrap_median_ci, compare
from labkit.timing import measure

#: the comparison's entries
MISAKI = "misaki (raw text)"
LABKIT = "labkit (sanitize + per-piece G2P)"
SANITIZE = "sanitize only"
FIRST = "labkit until the first piece"
ESPEAK = "espeak (kokoro-onnx tokenizer)"


def text_path(synth: StreamingSynthesizer, g2p: G2P, first_only: bool = False):
    """The pipeline's text path for one text, its G2P cache emptied first (a text read for
    the first time): sanitize, then chunking's per-piece G2P, as a stream starts it; with
    ``first_only`` only until the first piece is ready (the text path's share of TTFA)."""
    def run(text: str) -> list:
        g2p.cache_clear()
        pieces = synth.iter_pieces(text)
        return [next(pieces)] if first_only else list(pieces)
    return run


def cost_ratio(cmp: Comparison, name: str = LABKIT) -> dict[str, Any]:
    """How many times the candidate's time the baseline's is, inverted: candidate /
    baseline (for labkit: labkit / misaki), the median of the per-round paired ratios with
    its bootstrap 95 % interval (the instrument's seed and resamples)."""
    inv = 1.0 / np.asarray(cmp.entries[name].round_ratios, dtype=float)
    lo, hi = bootstrap_median_ci(inv, cmp.resamples, cmp.seed)
    return {"value": float(np.median(inv)), "ci95": [lo, hi]}


def g2p_cost(synth: StreamingSynthesizer, texts_: dict[str, str], rounds: int | None = None,
             espeak_baseline: bool = True) -> dict[str, Any]:
    """Per text: the pipeline's text path, sanitization alone and (optionally) kokoro-onnx's
    espeak tokenizer against misaki alone on the raw text, interleaved and paired."""
    cfg = synth.cfg
    lang = normalize_lang(cfg.lang, cfg.voice)
    g2p = get_g2p(lang)  # the instance StreamingSynthesizer.iter_pieces uses
    if g2p._misaki is None:
        return {"skipped": f"misaki unavailable: {g2p.engine_note}", "rows": [], "comparisons": {}}
    tokenizer = None
    if espeak_baseline:
        from kokoro_onnx.tokenizer import Tokenizer  # third party, heavy: only when asked

        tokenizer = Tokenizer()
    path = text_path(synth, g2p)
    first = text_path(synth, g2p, first_only=True)
    rows, comparisons = [], {}
    for name in progress.steps(list(texts_), "texts"):
        text = texts_[name]
        cands = {MISAKI: lambda t=text: g2p._misaki(t), LABKIT: lambda t=text: path(t),
                 FIRST: lambda t=text: first(t), SANITIZE: lambda t=text: sanitize(t, cfg.text)}
        if tokenizer is not None:
            cands[ESPEAK] = lambda t=text: tokenizer.phonemize(t, lang)
        cmp = compare(cands, MISAKI, rounds=rounds, criterion="seconds")
        cost = cost_ratio(cmp)
        pieces = path(text)
        row = {"text": name, "words": texts.word_count(text), "chars": len(text),
               "pieces": len(pieces), "g2p_calls": len(g2p._cache),  # distinct texts phonemized
               "misaki_s": cmp.median(MISAKI), "labkit_s": cmp.median(LABKIT),
               "first_piece_s": cmp.median(FIRST), "sanitize_s": cmp.median(SANITIZE),
               "labkit_over_misaki": cost["value"],
               "labkit_over_misaki_ci95": cost["ci95"], "noise_band": list(cmp.noise_band),
               "rounds": cmp.rounds, "noisy": cmp.noisy}
        if tokenizer is not None:
            row["espeak_s"] = cmp.median(ESPEAK)
        rows.append(row)
        comparisons[f"sanitize + per-piece G2P vs misaki alone ({name})"] = cmp
    return {"rows": rows, "comparisons": comparisons}


def text_label(name_or_text: str, width: int = 24) -> str:
    """A timed text's label: its name, or the text itself cut to ``width`` characters."""
    return name_or_text if len(name_or_text) <= width else name_or_text[:width - 1] + "…"


def cache_hit_seconds(cfg: LabConfig, text: str, repeats: int = 50) -> float:
    """Median time of a repeated sentence served from the G2P cache."""
    g2p = get_g2p(normalize_lang(cfg.lang, cfg.voice), cfg.text.g2p_fallback, lexicon_path(cfg))
    g2p(text)
    t, result = measure(lambda: g2p(text), repeats=repeats, warmup=1)
    if not result.cached:
        raise RuntimeError("the repeated sentence was not served from the cache")
    return t.median
