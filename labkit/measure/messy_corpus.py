"""Whether messy text is read as written: the corpus of real-world messy text
(``labkit/data/messy_corpus.yaml``), each case through
:func:`labkit.engine.phonemize.phonemize_json` (the synthesis path stopped before the
model), and what the G2P makes of the same text without sanitization.

Per case (:func:`run_case`): which expected words were not heard, in order; whether the
pauses fall where the paragraphs were; which symbols the G2P produced that Kokoro cannot
say (counted *before* cleaning removed them: every one is a loss); whether dates, times,
money, ordinals, versions and units were read as a person reads them (``read_as``: the
phonemes of the expected reading must appear in the phonemes made). :func:`run_corpus`
totals them; :func:`raw_vs_sanitized` counts words of the input lost, fallbacks, unknown
words and tokenization drops with G2P on the raw input versus the sanitized one. Stage 01
(labkit.lab.s01_g2p_sanitization) runs them.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from labkit.config import DATA_DIR, LabConfig
from labkit.engine.g2p import G2P, get_g2p, lexicon_path
from labkit.engine.languages import normalize_lang
from labkit.engine.phonemize import phonemize_json
from labkit.engine.phonemized import UNKNOWN
from labkit.engine.text import InputTooLong, sanitize

CORPUS_PATH = DATA_DIR / "messy_corpus.yaml"
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
