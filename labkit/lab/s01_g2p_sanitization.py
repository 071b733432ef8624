"""Stage 01: G2P sanitization: text in, clean phonemes out, nothing lost, at little cost.

The experiment, in the order :func:`run` does it (the measurements are in labkit.measure):

* the corpus checks (labkit.measure.messy_corpus) -- every case of
  ``labkit/data/messy_corpus.yaml`` through the synthesis path stopped before the model:
  words not heard, pauses, symbols lost before the model, dates and numbers read as
  written; and what G2P on the raw input would have lost instead;
* the languages (labkit.measure.language_cases) -- every language Kokoro's voices speak,
  each case checked against what the language's own G2P alone makes of it, plus the
  Mandarin tones;
* the cost (labkit.measure.g2p_cost) -- the pipeline's text path against misaki alone on
  the raw text, on the lab's one instrument, and a repeated sentence from the G2P cache;
* a few corpus cases synthesized for listening (:func:`listen_cases`).

:func:`run` returns a :class:`SanitizationResult`; :func:`targets` and :func:`headline`
judge its figures (:meth:`SanitizationResult.figures`), :func:`record` writes them. The
notebook's tables, figure and "try it" box are labkit.lab.sanitization_report.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf

from labkit import files
from labkit.config import LabConfig
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.engine.runtime import Engine
from labkit.kokoro import SAMPLE_RATE
from labkit.measure import texts
from labkit.measure.g2p_cost import cache_hit_seconds, g2p_cost, text_label
from labkit.measure.language_cases import run_languages
from labkit.measure.messy_corpus import case_input, load_corpus, raw_vs_sanitized, run_corpus, totals

NAME = "01_g2p_sanitization"
#: each language has at least this many cases (numbers and punctuation among them)
MIN_LANGUAGE_CASES = 8
#: the text path (sanitize + per-piece G2P) may cost at most this many times misaki alone
#: on the raw text -- judged on the high end of the interval
MAX_COST_RATIO = 1.3
#: a repeated sentence must come from the G2P cache faster than this
MAX_CACHE_HIT_S = 1e-3


def stage_config(cfg: LabConfig, language: str = "en-us", fallback: bool = True,
                 rules_off: list[str] = ()) -> LabConfig:
    """``cfg`` with the stage's language, misaki's espeak fallback and rules switched off."""
    return cfg.with_overrides({"lang": language, "text.g2p_fallback": fallback,
                               "text.disable": list(rules_off)})


def select_cases(cases: list[dict], ids: list[str] | None) -> list[dict]:
    """The corpus cases named by ``ids`` (all when None); an unknown id is an error."""
    if ids is None:
        return cases
    known = {c["id"] for c in cases}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ValueError(f"no corpus case {unknown}; the corpus has {sorted(known)}")
    return [c for c in cases if c["id"] in set(ids)]


def listen_cases(synth: StreamingSynthesizer, cases: list[dict], n: int, out_dir: Path
                 ) -> dict[str, dict[str, Any]]:
    """The first ``n`` ordinary cases synthesized through the streaming path, saved as wav."""
    picked = [c for c in cases if not c.get("refused") and "repeat" not in c][:max(0, n)]
    out = {}
    for case in picked:
        text = case_input(case)
        audio = synth.synthesize(text)
        with files.atomic_path(out_dir / f"listen_{case['id']}.wav") as tmp:
            sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        out[case["id"]] = {"text": text, "audio": audio}
    return out


@dataclass
class SanitizationResult:
    """What :func:`run` measured, and what the notebook plays and tries (not recorded)."""

    #: the corpus checks (labkit.measure.messy_corpus.run_corpus): totals, and "results"
    summary: dict[str, Any]
    #: every language (labkit.measure.language_cases.run_languages)
    languages: dict[str, Any]
    #: per corpus case, G2P on the raw input against the sanitized one
    #: (labkit.measure.messy_corpus.raw_vs_sanitized)
    raw_vs_sanitized: list[dict[str, Any]]
    #: their column sums
    saved: dict[str, int]
    #: the text path's cost (labkit.measure.g2p_cost.g2p_cost): "rows", "comparisons"
    #: (and "skipped" where misaki is unavailable)
    cost: dict[str, Any]
    #: a repeated sentence served from the G2P cache: median seconds
    cache_hit_s: float
    #: the corpus cases synthesized for listening: id -> {"text", "audio"}
    listen: dict[str, dict[str, Any]]
    #: the synthesizer and the stage's configuration (the "try it" box uses them)
    synth: StreamingSynthesizer
    cfg: LabConfig

    def figures(self) -> dict[str, Any]:
        """The measured figures, as :func:`targets` and :func:`headline` judge them."""
        return {"summary": self.summary, "languages": self.languages, "saved": self.saved,
                "cost": self.cost, "cache_hit_s": self.cache_hit_s}


def run(cfg: LabConfig, st, *, corpus: str | None = None, cases: list[str] | None = None,
        language: str = "en-us", fallback: bool = True, rules_off: list[str] = (),
        timing_texts: list[str] = ("messy-sentence", "messy-paragraph", "messy-article"),
        rounds: int | None = None, espeak_baseline: bool = True, cache_repeats: int = 50,
        listen: int = 3, languages: list[str] | None = None) -> SanitizationResult:
    cfg = stage_config(cfg, language, fallback, rules_off)
    chosen = select_cases(load_corpus(corpus), cases)
    summary = run_corpus(cfg, chosen)
    files.write_json(st.path("corpus_results.json"), summary, indent=2, ensure_ascii=False)
    # every language, from the configuration before the stage's own language and rules
    langs = run_languages(cfg.with_overrides({"lang": None, "text.disable": []}), languages)
    files.write_json(st.path("languages_results.json"), langs, indent=2, ensure_ascii=False)
    saved = raw_vs_sanitized(cfg, chosen)
    engine = Engine(cfg)
    synth = StreamingSynthesizer(engine)
    cost = g2p_cost(synth, {text_label(t): texts.named(t) for t in timing_texts}, rounds,
                    espeak_baseline)
    cache_s = cache_hit_seconds(cfg, texts.named(timing_texts[0]), max(1, cache_repeats))
    heard = listen_cases(synth, chosen, listen, st.dir)
    return SanitizationResult(summary, langs, saved, totals(saved), cost, cache_s, heard, synth,
                              cfg)


def targets(result: dict[str, Any]) -> dict[str, bool]:
    """Each target, judged on the measured figures (:meth:`SanitizationResult.figures`;
    the cost on its interval's high end)."""
    s, rows = result["summary"], result["cost"]["rows"]
    out = {"corpus_all_pass": s["passed"] == s["cases"],
           "no_words_lost": s["words_lost"] == 0,
           "no_oov_reaching_model": s["oov_reaching_model"] == 0,
           "no_symbols_lost_before_the_model": s["oov_before_cleaning"] == 0}
    out.update({f"cost_within_{MAX_COST_RATIO}x_misaki ({r['text']})":
                r["labkit_over_misaki_ci95"][1] < MAX_COST_RATIO for r in rows})
    if not rows:
        out[f"cost_within_{MAX_COST_RATIO}x_misaki"] = False  # not measured: not met
    out["cache_hit_under_1ms"] = result["cache_hit_s"] < MAX_CACHE_HIT_S
    if "languages" in result:
        per = result["languages"]["languages"]
        out["every_language_read"] = bool(per) and all(r["unavailable"] is None for r in per.values())
        out[f"every_language_{MIN_LANGUAGE_CASES}_cases_pass"] = bool(per) and all(
            r["passed"] == r["cases"] >= MIN_LANGUAGE_CASES for r in per.values())
    return out


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The figures that say what the run found (:meth:`SanitizationResult.figures`), each
    target met or not."""
    s, cost = result["summary"], result["cost"]
    out: dict[str, Any] = {
        "corpus cases passed": f"{s['passed']}/{s['cases']}",
        "words lost": s["words_lost"],
        "OOV symbols reaching the model": s["oov_reaching_model"],
        "symbols the G2P produced that cleaning removed (lost)": s["oov_before_cleaning"],
        "words of the input lost without sanitization": result["saved"].get("raw_missing", 0),
    }
    if cost.get("skipped"):
        out["sanitize+G2P / misaki"] = f"skipped: {cost['skipped']}"
    for r in cost["rows"]:
        t = r["text"]
        out[f"{t} sanitize + per-piece G2P / misaki alone (x)"] = {
            "value": round(r["labkit_over_misaki"], 3),
            "ci95": [round(x, 3) for x in r["labkit_over_misaki_ci95"]]}
        out[f"{t} noise band (A/A)"] = [round(x, 3) for x in r["noise_band"]]
        out[f"{t} words / pieces / texts phonemized"] = f"{r['words']} / {r['pieces']} / {r['g2p_calls']}"
        out[f"{t} sanitize + per-piece G2P ms"] = round(r["labkit_s"] * 1e3, 2)
        out[f"{t} misaki alone ms"] = round(r["misaki_s"] * 1e3, 2)
        out[f"{t} sanitize + G2P until the first piece ms"] = round(r["first_piece_s"] * 1e3, 2)
        if "espeak_s" in r:
            out[f"{t} espeak (kokoro-onnx) ms"] = round(r["espeak_s"] * 1e3, 2)
    out["cache hit ms"] = round(result["cache_hit_s"] * 1e3, 4)
    for lang, r in result.get("languages", {}).get("languages", {}).items():
        out[f"language {lang} ({r['voice']})"] = (
            f"{r['passed']}/{r['cases']} cases match its G2P alone ({r.get('engine')})"
            + (f"; tones {r['tones_passed']}/{r['tone_cases']}" if "tone_cases" in r else "")
            if r["unavailable"] is None else f"not read here: {r['unavailable']}")
    for name, ok in targets(result).items():
        out[f"target {name}"] = "met" if ok else "NOT met"
    return out


def record(st, result: SanitizationResult) -> None:
    """The figures into the stage's record (its metrics and notes)."""
    s, cost = result.summary, result.cost
    st.metrics["corpus"] = {k: v for k, v in s.items() if k != "results"}
    st.metrics["languages"] = {k: v for k, v in result.languages.items() if k != "results"}
    for lang, r in result.languages["languages"].items():
        if r["unavailable"]:
            st.note(f"language {lang} not read here: {r['unavailable']}")
    st.metrics["raw_vs_sanitized"] = result.raw_vs_sanitized
    st.metrics["raw_vs_sanitized_totals"] = result.saved
    st.metrics["timings"] = cost["rows"]
    st.metrics["comparisons"] = {title: cmp.to_dict() for title, cmp in cost["comparisons"].items()}
    st.metrics["cache_hit_s"] = result.cache_hit_s
    st.metrics["targets_met"] = targets(result.figures())
    st.metrics["headline"] = headline(result.figures())
    if cost.get("skipped"):
        st.note(f"G2P cost not measured: {cost['skipped']}")
    if any(r["noisy"] for r in cost["rows"]):
        st.note("the A/A control's interval stayed wider than the instrument's noise width "
                "after the extra rounds: the machine was noisy")
