"""Stage 01: G2P sanitization: text in, clean phonemes out, nothing lost, at little cost.

* the corpus checks (:func:`run_corpus`, :func:`run_case`) -- every case of
  ``labkit/data/messy_corpus.yaml`` through :func:`labkit.engine.phonemize.phonemize_json`
  (the synthesis path stopped before the model): which expected words were not heard, in
  order; whether the pauses fall where the paragraphs were; which symbols the G2P produced
  that Kokoro cannot say (counted *before* cleaning removed them: every one is a loss);
  whether dates, times, money, ordinals, versions and units were read as a person reads
  them (``read_as``: the phonemes of the expected reading must appear in the phonemes made);
* the languages (:func:`run_languages`, ``labkit/data/languages.yaml``) -- every language
  Kokoro's voices speak, at least eight cases each with numbers and punctuation, read by
  that language's voice through the same path, each checked against what the language's
  own G2P alone (misaki for English, Japanese and Chinese; espeak-ng for the others)
  makes of the same text, plus the Mandarin tones; a language that cannot be read here
  is recorded with the reason (what is missing, how to add it);
* :func:`raw_vs_sanitized` -- what sanitization saves: words of the input lost, fallbacks,
  unknown words and tokenization drops with G2P on the raw input versus the sanitized one;
* :func:`g2p_cost` -- what the text path costs, timed by the one instrument
  (labkit.measure.compare: interleaved rounds, paired ratios, bootstrap intervals, an A/A
  control): the pipeline's own path (sanitize, then chunking's per-piece G2P, as
  ``StreamingSynthesizer.pieces`` does it, the G2P cache emptied before each call) against
  misaki alone on the raw text; the target is judged on the interval of labkit / misaki;
* :func:`cache_hit_seconds` -- a repeated sentence served from the G2P cache;
* :func:`run` / :func:`record` -- what the notebook calls.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import yaml

from labkit import files, progress
from labkit.config import DATA_DIR, LabConfig
from labkit.engine.g2p import G2P, espeak_reader, get_g2p, lexicon_path, misaki_reader
from labkit.engine.languages import ESPEAK_LANGS, MISAKI_LANGS, normalize_lang, unavailable
from labkit.engine.phonemized import UNKNOWN, clean_phonemes
from labkit.kokoro import SAMPLE_RATE
from labkit.engine.phonemize import phonemize_json
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.engine.runtime import Engine
from labkit.engine.text import InputTooLong, sanitize
from labkit.measure import texts
from labkit.measure.compare import Comparison, bootstrap_median_ci, compare
from labkit.tables import interval, markdown
from labkit.timing import measure

NAME = "01_g2p_sanitization"
CORPUS_PATH = DATA_DIR / "messy_corpus.yaml"
LANGUAGES_PATH = DATA_DIR / "languages.yaml"
#: each language has at least this many cases (numbers and punctuation among them)
MIN_LANGUAGE_CASES = 8
#: the text path (sanitize + per-piece G2P) may cost at most this many times misaki alone
#: on the raw text -- judged on the high end of the interval
MAX_COST_RATIO = 1.3
#: a repeated sentence must come from the G2P cache faster than this
MAX_CACHE_HIT_S = 1e-3
#: the comparison's entries
MISAKI = "misaki (raw text)"
LABKIT = "labkit (sanitize + per-piece G2P)"
SANITIZE = "sanitize only"
FIRST = "labkit until the first piece"
ESPEAK = "espeak (kokoro-onnx tokenizer)"
_ALNUM = re.compile(r"[^\W_]+")


def load_corpus(path: str | Path | None = None) -> list[dict]:
    data = yaml.safe_load(Path(path or CORPUS_PATH).read_text(encoding="utf-8"))
    cases = data["cases"] if isinstance(data, dict) else data
    for case in cases:
        if "input" not in case and "repeat" not in case:
            raise ValueError(f"corpus case {case.get('id')!r}: needs 'input' or 'repeat'")
    return cases


def case_input(case: dict) -> str:
    if "repeat" in case:
        return case["repeat"]["text"] * int(case["repeat"]["times"])
    return case["input"]


_STRESS_AND_REDUCTION = str.maketrans({"ˈ": None, "ˌ": None, "ᵊ": None, "ᵻ": "ə"})
_PHONEME_WORD_SEP = re.compile(r"[\s\-—–:;,.!?…\"'“”()]+")


def phoneme_words(phonemes: str) -> list[str]:
    """Phoneme words without stress marks or punctuation (reduced vowels folded into ə),
    so that the same words read in two contexts compare equal."""
    return [w for w in _PHONEME_WORD_SEP.split(phonemes.translate(_STRESS_AND_REDUCTION)) if w]


def _contains(have: list[str], want: list[str]) -> bool:
    """Whether consecutive words of ``have`` spell ``want``'s phonemes, where the words
    break being free ("twenty-four" is one phoneme word, "twenty four" two; "PM" one,
    "p m" two): the same sounds from a word's start to a word's end."""
    target = "".join(want)
    for i in range(len(have)):
        run = ""
        for word in have[i:]:
            run += word
            if run == target:
                return True
            if not target.startswith(run):
                break
    return False


def read_as_written(read_as: dict[str, Any], phonemes: str, g2p: G2P) -> list[str]:
    """Problems for each written form (``{"2024-01-15": ["January fifteenth twenty twenty
    four", ...]}``) none of whose readings, phonemized by the same G2P, appears among
    ``phonemes``' phoneme words. Empty when everything was read as written."""
    have = phoneme_words(phonemes)
    problems = []
    for written, readings in read_as.items():
        readings = [readings] if isinstance(readings, str) else list(readings)
        if not readings:
            raise ValueError(f"read_as {written!r}: no expected reading given")
        if not any(_contains(have, phoneme_words(g2p(r).phonemes)) for r in readings):
            problems.append(f"{written!r} not read as {readings[0]!r}")
    return problems


#: misaki's Mandarin tone marks: first, second, third, fourth (the neutral tone has none)
TONE_MARKS = "→↗↓↘"


def tone_marks(phonemes: str) -> str:
    """The Mandarin tone marks in ``phonemes``, in order (one per toned syllable)."""
    return "".join(ch for ch in phonemes if ch in TONE_MARKS)


def input_words(text: str) -> set[str]:
    """The words the input itself contains (normalized), not those a rule may insert."""
    return {_norm(w) for w in _ALNUM.findall(text)}


def _norm(word: str) -> str:
    word = str(word).lower()
    return "".join(_ALNUM.findall(word)) or word.strip()


def missing_in_order(expected: list[str], heard: list[str]) -> list[str]:
    """Expected words not found in ``heard`` in order. A word may span several heard
    words ("e-mail" heard as "e", "mail")."""
    heard = [_norm(w) for w in heard if _norm(w)]
    missing, i = [], 0
    for word in expected:
        target = _norm(word)
        found = False
        for j in range(i, len(heard)):
            joined, k = "", j
            while k < len(heard) and len(joined) < len(target):
                joined += heard[k]
                k += 1
            if joined == target:
                i, found = k, True
                break
        if not found:
            missing.append(word)
    return missing


def run_case(case: dict, cfg: LabConfig, g2p: G2P | None = None) -> dict[str, Any]:
    """Run one corpus case through :func:`phonemize_json`; say what went wrong."""
    if case.get("config"):
        cfg = cfg.with_overrides(case["config"])
        g2p = None
    text = case_input(case)
    result: dict[str, Any] = {"id": case["id"], "input": text[:200], "chars": len(text)}
    try:
        out = phonemize_json(text, cfg, g2p)
    except (InputTooLong, ValueError) as exc:
        result.update(refused=f"{type(exc).__name__}: {exc}", ok=False, problems=[])
        expect = case.get("refused")
        if expect:
            result["ok"] = expect.lower() in result["refused"].lower()
            if not result["ok"]:
                result["problems"].append(f"refused, but without {expect!r}: {result['refused']}")
        else:
            result["problems"].append(f"refused unexpectedly: {result['refused']}")
        return result
    heard = [w for p in out["pieces"] for w in p["words"]]
    problems = []
    if case.get("refused"):
        problems.append(f"expected a refusal mentioning {case['refused']!r}")
    missing = missing_in_order(case.get("hear", []), heard)
    if missing:
        problems.append(f"not heard (in order): {missing}")
    for word in case.get("absent", []):
        if _norm(word) in {_norm(w) for w in heard}:
            problems.append(f"heard {word!r}, which must not be read")
    if "hear_count" in case and len(heard) != case["hear_count"]:
        problems.append(f"heard {len(heard)} words, expected {case['hear_count']}")
    pause_words = [_norm(p["words"][-1]) for p in out["pieces"][:-1]
                   if p["boundary"] == "paragraph" and p["words"]]
    missing_pauses = missing_in_order(case.get("pauses_after", []), pause_words)
    if missing_pauses:
        problems.append(f"no paragraph pause after {missing_pauses} (pauses after {pause_words})")
    if "pauses" in case and len(pause_words) != case["pauses"]:
        problems.append(f"{len(pause_words)} paragraph pauses, expected {case['pauses']}")
    rules_removed = {r["rule"] for r in out["report"]["sanitize"]["removed"]}
    for rule in case.get("told", []):
        if rule not in rules_removed:
            problems.append(f"the report does not say that {rule!r} removed something")
    g = out["report"]["g2p"]
    unknown_marks = sum(p["phonemes"].count(UNKNOWN) for p in out["pieces"])
    if g["oov_reaching_model"] or unknown_marks:
        problems.append(f"{g['oov_reaching_model']} out-of-vocabulary symbols reach the model")
    if g["oov_before_cleaning"]:
        problems.append(f"{g['oov_before_cleaning']} symbols the G2P produced were removed "
                        f"(not in Kokoro's vocabulary): {g['lost_symbols']}")
    if case.get("read_as"):
        g2p_ = g2p or get_g2p(out["lang"], cfg.text.g2p_fallback, lexicon_path(cfg))
        problems += read_as_written(case["read_as"], " ".join(p["phonemes"] for p in out["pieces"]), g2p_)
    if case.get("tones") is not None:
        got = tone_marks(" ".join(p["phonemes"] for p in out["pieces"]))
        if got != case["tones"]:
            problems.append(f"Mandarin tones {got!r}, expected {case['tones']!r}")
    result.update(
        ok=not problems, problems=problems, sanitized=out["text"][:400],
        phonemes=" | ".join(p["phonemes"] for p in out["pieces"])[:400],
        pieces=len(out["pieces"]), heard=len(heard), missing=missing,
        pauses=len(pause_words), fallbacks=len(g["fallbacks"]), unknown=len(g["unknown"]),
        dropped_at_tokenization=sum(g["dropped"].values()), dropped=g["dropped"],
        removed=out["report"]["sanitize"]["removed_total"],
        oov_reaching_model=g["oov_reaching_model"] + unknown_marks,
        oov_before_cleaning=g["oov_before_cleaning"], lost_symbols=g["lost_symbols"],
        rules=out["report"]["sanitize"]["rules"],
    )
    return result


def run_corpus(cfg: LabConfig, cases: list[dict] | None = None) -> dict[str, Any]:
    """Every case, plus totals: words lost, OOV symbols reaching the model."""
    cases = load_corpus() if cases is None else cases
    results = [run_case(c, cfg) for c in cases]
    return {
        "cases": len(results),
        "passed": sum(r["ok"] for r in results),
        "words_lost": sum(len(r.get("missing", [])) for r in results),
        "oov_reaching_model": sum(r.get("oov_reaching_model", 0) for r in results),
        "oov_before_cleaning": sum(r.get("oov_before_cleaning", 0) for r in results),
        "fallbacks": sum(r.get("fallbacks", 0) for r in results),
        "unknown": sum(r.get("unknown", 0) for r in results),
        "dropped_at_tokenization": sum(r.get("dropped_at_tokenization", 0) for r in results),
        "removed_by_sanitizer": sum(r.get("removed", 0) for r in results),
        "results": results,
    }




# -- every language ---------------------------------------------------------------------------
def load_languages(path: str | Path | None = None) -> dict[str, dict]:
    """language -> {"voice", "cases"} from ``labkit/data/languages.yaml``."""
    data = yaml.safe_load(Path(path or LANGUAGES_PATH).read_text(encoding="utf-8"))["languages"]
    for lang, spec in data.items():
        normalize_lang(lang)  # a language the pipeline knows
        if not spec.get("voice") or not spec.get("cases"):
            raise ValueError(f"languages.yaml {lang}: needs a voice and cases")
    return data


def reference_phonemes(lang: str, text: str) -> str:
    """What the language's own G2P alone makes of ``text`` (no sanitization, no pieces, no
    lexicon), cleaned to Kokoro's vocabulary: misaki for en / ja / zh, espeak-ng else."""
    lang = normalize_lang(lang)
    if lang in ESPEAK_LANGS:
        raw = espeak_reader(lang)(text)
    elif lang in MISAKI_LANGS:
        raw = misaki_reader(lang)(text)
    else:
        raw = get_g2p(lang)._misaki(text)[0]
    return clean_phonemes(raw)[0]


def run_language_case(lang: str, voice: str, case: dict, cfg: LabConfig) -> dict[str, Any]:
    """One case: the pipeline's phonemes (``phonemize_json`` with the language's voice)
    against :func:`reference_phonemes` on the same text, and the Mandarin tones."""
    text = case["input"]
    result: dict[str, Any] = {"id": case["id"], "lang": lang, "voice": voice, "input": text}
    try:
        out = phonemize_json(text, cfg.with_overrides({"voice": voice, "lang": lang}))
        reference = reference_phonemes(lang, text)
    except ValueError as exc:  # LanguageUnavailable, a refusal: recorded, never raised
        result.update(ok=False, problems=[f"{type(exc).__name__}: {exc}"])
        return result
    ours = " ".join(p["phonemes"] for p in out["pieces"])
    problems = []
    mine, theirs = phoneme_words(ours), phoneme_words(reference)
    if mine != theirs:
        k = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
        problems.append(f"phonemes differ from the G2P alone from word {k}: "
                        f"{' '.join(mine[k:k + 4])!r} vs {' '.join(theirs[k:k + 4])!r}")
    g = out["report"]["g2p"]
    if g["oov_before_cleaning"]:
        problems.append(f"{g['oov_before_cleaning']} symbols lost before the model: {g['lost_symbols']}")
    if not ours.strip():
        problems.append("no phonemes")
    if case.get("tones") is not None and tone_marks(ours) != case["tones"]:
        problems.append(f"Mandarin tones {tone_marks(ours)!r}, expected {case['tones']!r}")
    result.update(ok=not problems, problems=problems, engine=out["engine"], phonemes=ours[:300],
                  reference=reference[:300], sanitized=out["text"][:200],
                  tones=tone_marks(ours) if case.get("tones") is not None else None)
    return result


def run_languages(cfg: LabConfig, languages: list[str] | None = None,
                  path: str | Path | None = None) -> dict[str, Any]:
    """Every language's cases (or those named), with pass counts per language; a language
    that cannot be read here is recorded with the reason, its cases not run."""
    spec = load_languages(path)
    chosen = list(spec) if languages is None else [normalize_lang(x) for x in languages]
    unknown = [x for x in chosen if x not in spec]
    if unknown:
        raise ValueError(f"no cases for {unknown}; languages.yaml has {list(spec)}")
    per: dict[str, dict] = {}
    results: list[dict] = []
    for lang in chosen:
        voice, cases = spec[lang]["voice"], spec[lang]["cases"]
        why = unavailable(lang)
        row = {"voice": voice, "cases": len(cases), "passed": 0, "unavailable": why}
        if why is None:
            rs = [run_language_case(lang, voice, c, cfg) for c in cases]
            results += rs
            row["passed"] = sum(r["ok"] for r in rs)
            row["engine"] = next((r["engine"] for r in rs if "engine" in r), None)
            toned = [r for r in rs if r.get("tones") is not None]
            if toned:
                row["tone_cases"] = len(toned)
                row["tones_passed"] = sum(not any("tones" in p for p in r["problems"]) for r in toned)
        per[lang] = row
    return {"languages": per, "cases": sum(r["cases"] for r in per.values()),
            "passed": sum(r["passed"] for r in per.values()), "results": results}


# -- what sanitization saves ----------------------------------------------------------------
def raw_vs_sanitized(cfg: LabConfig, cases: list[dict]) -> list[dict[str, Any]]:
    """Fallbacks, unknown words and tokenization drops per case, G2P on the raw input
    versus on the sanitized input (what sanitization saves)."""
    g2p = get_g2p(normalize_lang(cfg.lang, cfg.voice), cfg.text.g2p_fallback, lexicon_path(cfg))
    rows = []
    for case in cases:
        text = case_input(case)
        if case.get("refused") or case.get("config") or len(text) > 5000:
            continue
        raw = g2p(text)
        clean = g2p(sanitize(text, cfg.text).text)
        # only words of the input count as lost: "dot", "slash", "at" that the sanitizer
        # inserts for a URL were never there for the raw G2P to lose
        own = input_words(text)
        expected = [w for w in case.get("hear", []) if _norm(w) in own]
        rows.append({
            "id": case["id"],
            "raw_missing": len(missing_in_order(expected, raw.words)),
            "missing": len(missing_in_order(expected, clean.words)),
            "raw_fallbacks": len(raw.fallbacks), "fallbacks": len(clean.fallbacks),
            "raw_dropped": sum(raw.dropped.values()), "dropped": sum(clean.dropped.values()),
            "raw_unknown": len(raw.unknown), "unknown": len(clean.unknown),
        })
    return rows


def totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Column sums of :func:`raw_vs_sanitized`'s rows."""
    keys = [k for k in (rows[0] if rows else {}) if k != "id"]
    return {k: sum(r[k] for r in rows) for k in keys}


# -- what it costs --------------------------------------------------------------------------
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


# -- the stage ------------------------------------------------------------------------------
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


def run(cfg: LabConfig, st, *, corpus: str | None = None, cases: list[str] | None = None,
        language: str = "en-us", fallback: bool = True, rules_off: list[str] = (),
        timing_texts: list[str] = ("messy-sentence", "messy-paragraph", "messy-article"),
        rounds: int | None = None, espeak_baseline: bool = True, cache_repeats: int = 50,
        listen: int = 3, languages: list[str] | None = None) -> dict[str, Any]:
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
    return {"summary": summary, "languages": langs, "raw_vs_sanitized": saved, "saved": totals(saved),
            "cost": cost, "cache_hit_s": cache_s, "_listen": heard, "_synth": synth,
            "_cfg": cfg}


def targets(result: dict[str, Any]) -> dict[str, bool]:
    """Each target, judged on what was measured (the cost on its interval's high end)."""
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


def record(st, result: dict[str, Any]) -> None:
    s, cost = result["summary"], result["cost"]
    st.metrics["corpus"] = {k: v for k, v in s.items() if k != "results"}
    if "languages" in result:
        st.metrics["languages"] = {k: v for k, v in result["languages"].items() if k != "results"}
        for lang, r in result["languages"]["languages"].items():
            if r["unavailable"]:
                st.note(f"language {lang} not read here: {r['unavailable']}")
    st.metrics["raw_vs_sanitized"] = result["raw_vs_sanitized"]
    st.metrics["raw_vs_sanitized_totals"] = result["saved"]
    st.metrics["timings"] = cost["rows"]
    st.metrics["comparisons"] = {title: cmp.to_dict() for title, cmp in cost["comparisons"].items()}
    st.metrics["cache_hit_s"] = result["cache_hit_s"]
    st.metrics["targets_met"] = targets(result)
    st.metrics["headline"] = headline(result)
    if cost.get("skipped"):
        st.note(f"G2P cost not measured: {cost['skipped']}")
    if any(r["noisy"] for r in cost["rows"]):
        st.note("the A/A control's interval stayed wider than the instrument's noise width "
                "after the extra rounds: the machine was noisy")


# -- display helpers ------------------------------------------------------------------------
def corpus_table(result: dict[str, Any]) -> str:
    rows = [dict(r, input=repr(r["input"])[:70], sanitized=r.get("sanitized", r.get("refused", ""))[:90],
                 rules=", ".join(r.get("rules", {})), problems="; ".join(r["problems"]))
            for r in result["summary"]["results"]]
    return markdown(rows, ["id", "ok", "input", "sanitized", "rules", "fallbacks",
                           "dropped_at_tokenization", "problems"])


def languages_table(result: dict[str, Any]) -> str:
    """Per language: its voice, the G2P that read it, cases matching the G2P alone, tones."""
    rows = [{"language": lang, "voice": r["voice"], "engine": r.get("engine") or "-",
             "passed": f"{r['passed']}/{r['cases']}",
             "tones": f"{r['tones_passed']}/{r['tone_cases']}" if "tone_cases" in r else "",
             "unavailable": r["unavailable"] or ""}
            for lang, r in result["languages"]["languages"].items()]
    return markdown(rows, ["language", "voice", "engine", "passed", "tones", "unavailable"])


def language_cases_table(result: dict[str, Any]) -> str:
    rows = [dict(r, problems="; ".join(r["problems"])) for r in result["languages"]["results"]]
    return markdown(rows, ["id", "ok", "input", "phonemes", "problems"])


def saved_table(result: dict[str, Any]) -> str:
    return markdown(result["raw_vs_sanitized"])


def cost_table(result: dict[str, Any]) -> str:
    rows = [dict(r, ci95=interval(r['labkit_over_misaki_ci95']),
                 noise=interval(r['noise_band']))
            for r in result["cost"]["rows"]]
    cols = ["text", "words", "pieces", "g2p_calls", "misaki_s", "labkit_s", "first_piece_s",
            "sanitize_s", "espeak_s",
            "labkit_over_misaki", "ci95", "noise", "rounds"]
    return markdown(rows, cols, headers=["text", "words", "pieces", "texts phonemized", "misaki alone s",
                                         "sanitize + per-piece G2P s", "until the first piece s",
                                         "sanitize s",
                                         "espeak (kokoro-onnx) s", "labkit / misaki",
                                         "95 % interval", "A/A band", "rounds"])


def plot_cost(result: dict[str, Any], plt):
    rows = result["cost"]["rows"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.5))
    labels = [f"{r['text']} ({r['words']} w)" for r in rows]
    keys = [k for k in ("misaki_s", "labkit_s", "first_piece_s", "sanitize_s", "espeak_s") if rows and k in rows[0]]
    width = 0.8 / max(1, len(keys))
    for i, k in enumerate(keys):
        ax[0].bar([j + i * width for j in range(len(rows))], [r[k] * 1e3 for r in rows], width, label=k)
    ax[0].set_xticks([j + 0.4 - width / 2 for j in range(len(rows))], labels)
    ax[0].set_ylabel("median ms")
    ax[0].set_yscale("log")
    ax[0].legend()
    ax[1].barh(labels, [r["labkit_over_misaki"] for r in rows],
               xerr=[[r["labkit_over_misaki"] - r["labkit_over_misaki_ci95"][0] for r in rows],
                     [r["labkit_over_misaki_ci95"][1] - r["labkit_over_misaki"] for r in rows]])
    ax[1].axvline(1.0, color="grey", lw=0.8)
    ax[1].axvline(MAX_COST_RATIO, color="tab:red", lw=0.8, ls="--")
    ax[1].set_xlabel("labkit / misaki (95 % interval); red: the target")
    fig.tight_layout()
    return fig


def try_text(text: str, cfg: LabConfig, synth: StreamingSynthesizer) -> dict[str, Any]:
    """The "try it" box: the sanitized text, the report and the phonemes per piece as
    text, and the audio; a refusal comes back as ``{"refused": message}``."""
    try:
        out = phonemize_json(text, cfg)
    except ValueError as exc:  # InputTooLong is a ValueError too
        return {"refused": str(exc)}
    lines = [out["text"], json.dumps(out["report"], ensure_ascii=False, indent=1)[:2000]]
    lines += [f"{p['boundary']} | {p['phonemes']}" for p in out["pieces"]]
    return {"text": "\n".join(lines), "audio": synth.synthesize(text)}


def try_view(text: str, cfg: LabConfig, synth: StreamingSynthesizer) -> list[Any]:
    """The "try it" box's action (labkit.lab.page.try_it): :func:`try_text` as what the box
    shows -- the text, then a player; a refusal as its message."""
    from IPython.display import Audio  # notebook-only third-party dependency

    r = try_text(text, cfg, synth)
    if "refused" in r:
        return [f"refused: {r['refused']}"]
    return [r["text"], Audio(r["audio"], rate=SAMPLE_RATE)]
