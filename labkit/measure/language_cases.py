"""Every language Kokoro's voices speak (``labkit/data/languages.yaml``: at least eight
cases each, numbers and punctuation among them), read by that language's voice through
the text path (:func:`labkit.engine.phonemize.phonemize_json`), each case checked against
what the language's own G2P alone makes of the same text (:func:`reference_phonemes`:
misaki for English, Japanese and Chinese; espeak-ng for the others), plus the Mandarin
tones. A language that cannot be read here is recorded with the reason (what is missing,
how to add it). Stage 01 (labkit.lab.s01_g2p_sanitization) runs them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from labkit.config import DATA_DIR, LabConfig
from labkit.engine.g2p import espeak_reader, get_g2p, misaki_reader
from labkit.engine.languages import ESPEAK_LANGS, MISAKI_LANGS, normalize_lang, unavailable
from labkit.engine.phonemize import phonemize_json
from labkit.engine.phonemized import clean_phonemes
from labkit.measure.messy_corpus import phoneme_words, tone_marks

LANGUAGES_PATH = DATA_DIR / "languages.yaml"


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
