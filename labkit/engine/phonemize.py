"""Text -> what Kokoro will be fed, as JSON: ``labkit phonemize [TEXT | -]``.

The same path as synthesis (sanitize -> chunking -> G2P), stopped before the model:
the sanitized text, the phonemes per piece, what the listener will hear, and a report of
everything changed, fallen back or dropped. Input it refuses (over the cap, nothing to
read) raises :class:`labkit.engine.text.InputTooLong` / :class:`ValueError` with a clear message.

The stage-01 corpus (``labkit/data/messy_corpus.yaml``) is checked through the same
function: :func:`run_case` says which expected words were not heard, in order, whether
the pauses fall where the paragraphs were, which symbols the G2P produced that Kokoro
cannot say (counted *before* cleaning removed them: every one is a loss), and whether
dates, times, money, ordinals, versions and units were read as a person reads them
(``read_as``: the phonemes of the expected reading must appear in the phonemes made).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from labkit.engine import chunking
from labkit.config import DATA_DIR, LabConfig
from labkit.engine.g2p import UNKNOWN, VOCAB, G2P, get_g2p, lexicon_path, lost_symbols, normalize_lang
from labkit.engine.text import InputTooLong, sanitize
from labkit.timing import measure

CORPUS_PATH = DATA_DIR / "messy_corpus.yaml"
_ALNUM = re.compile(r"[^\W_]+")


def phonemize_json(text: str, cfg: LabConfig, g2p: G2P | None = None) -> dict[str, Any]:
    """Sanitized text, phonemes per piece and the report, as a JSON-ready dict."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    lang = normalize_lang(cfg.lang, cfg.voice)  # the voice's language unless cfg.lang says
    clean = sanitize(text, cfg.text, lang)  # raises InputTooLong over text.max_chars
    if not clean.text:
        why = "the input is empty" if not text.strip() else \
            "no words left to read after sanitization (only punctuation, symbols or skipped text)"
        raise ValueError(f"nothing to read: {why}; removed: "
                         f"{[r['text'] for r in clean.report.get('removed', [])][:10]}")
    g2p = g2p or get_g2p(lang, cfg.text.g2p_fallback, lexicon_path(cfg))
    pieces = chunking.split(clean.text, g2p, cfg.chunking)
    out_pieces = []
    fallbacks: list[str] = []
    unknown: list[str] = []
    dropped: dict[str, int] = {}
    routed: list[dict] = []
    blocked = 0
    overridden: list[str] = []
    for piece in pieces:
        ph = g2p(piece.text)  # a cache hit: chunking just phonemized it
        fallbacks += ph.fallbacks
        unknown += ph.unknown
        routed += ph.routed
        blocked += ph.overrides_blocked
        overridden += ph.overridden
        for k, v in ph.dropped.items():
            dropped[k] = dropped.get(k, 0) + v
        out_pieces.append({"text": piece.text, "phonemes": piece.phonemes,
                           "tokens": piece.tokens, "boundary": piece.boundary,
                           "words": ph.words})
    oov = sum(1 for p in pieces for ch in p.phonemes if ch not in VOCAB)
    lost = lost_symbols(dropped)
    return {
        "text": clean.text,
        "lang": lang,
        "engine": g2p.engine,
        "lexicon": {"path": getattr(g2p, "lexicon_path", None), "overridden": overridden},
        "pieces": out_pieces,
        "report": {
            "sanitize": clean.report,
            "g2p": {"fallbacks": fallbacks, "unknown": unknown, "dropped": dropped,
                    "routed": routed, "overrides_blocked": blocked,
                    # what the G2P produced that Kokoro cannot say, before cleaning removed it
                    "lost_symbols": lost, "oov_before_cleaning": sum(lost.values()),
                    "oov_reaching_model": oov, "engine_note": g2p.engine_note},
        },
    }


# -- the corpus -------------------------------------------------------------------------
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
    n = len(want)
    return n > 0 and any(have[i:i + n] == want for i in range(len(have) - n + 1))


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


# -- measurements for the stage notebook -------------------------------------------------
_ARTICLE = [
    "## Why latency matters\n\nWhen you select a paragraph on a web page and press a key, "
    "you expect to hear it at once. A delay of 300 ms feels instant; 2 seconds feels broken. "
    "This article walks through the **three** places where time goes: text preparation, "
    "the neural network, and playback.",
    "Text preparation looks cheap, but real text is messy. Web pages carry non-breaking "
    "spaces, zero-width joiners and [links](https://example.com/docs/intro) in the middle "
    "of sentences; PDFs hyphenate words across lines; terminals print colour codes.",
    "- Normalize Unicode first.\n- Remove control characters.\n- Keep paragraph breaks, "
    "because a listener needs the pause.\n- Read numbers like 1,250 or 3.5% the way a "
    "person would.",
    "The model itself, Kokoro with 82 million parameters, turns phonemes into audio. It "
    "accepts at most 510 tokens at a time, so long text is cut into pieces. The first piece "
    "should be short: the sooner it is ready, the sooner you hear something, and the rest "
    "is synthesized while the first one plays.",
    "In code, the call looks like `engine.synthesize_phonemes(ph, voice, speed)`; the file "
    "labkit/runtime.py:120 holds it. Measured on a laptop, a 20-word sentence takes about "
    "0.4 seconds, while a full page takes several seconds, which is why streaming matters.",
    "Finally, playback. Audio at 24 kHz arrives in chunks; each chunk is cross-faded with "
    "the next so that you do not hear clicks. If the next chunk is late, you hear a gap, "
    "and gaps are worse than a slightly later start.",
]


def sample_article(words: int = 1500) -> str:
    """A realistic messy article (Markdown, links, code, numbers) of about ``words`` words."""
    out, count, i = [], 0, 0
    while count < words:
        para = _ARTICLE[i % len(_ARTICLE)]
        out.append(para if i < len(_ARTICLE) else para.replace("##", "###", 1))
        count += len(para.split())
        i += 1
    return "\n\n".join(out)


def input_sizes(article_words: int = 1500) -> dict[str, str]:
    """The three sizes the stage times: a sentence, a paragraph, an article."""
    return {"sentence": _ARTICLE[3].split(". ")[0] + ".",
            "paragraph": _ARTICLE[3] + " " + _ARTICLE[5],
            "article": sample_article(article_words)}


def g2p_timings(cfg: LabConfig, texts: dict[str, str], repeats: int = 5,
                espeak_baseline: bool = True) -> list[dict[str, Any]]:
    """Per input: misaki alone on the raw text, labkit (sanitize + G2P, cache bypassed) and
    kokoro-onnx's espeak-only tokenizer, median seconds, measured side by side."""
    lang = normalize_lang(cfg.lang, cfg.voice)
    g2p = get_g2p(lang, cfg.text.g2p_fallback, lexicon_path(cfg))
    tokenizer = None
    if espeak_baseline:
        from kokoro_onnx.tokenizer import Tokenizer

        tokenizer = Tokenizer()
    rows = []
    for name, text in texts.items():
        row: dict[str, Any] = {"input": name, "words": len(text.split()), "chars": len(text)}
        if g2p._misaki is not None:
            t, _ = measure(lambda: g2p._misaki(text), repeats=repeats, warmup=1)
            row["misaki_raw_s"] = t.median
        t, _ = measure(lambda: g2p._phonemize(sanitize(text, cfg.text).text),
                       repeats=repeats, warmup=1)
        row["labkit_s"] = t.median
        t, _ = measure(lambda: sanitize(text, cfg.text), repeats=repeats, warmup=1)
        row["sanitize_s"] = t.median
        if tokenizer is not None:
            t, _ = measure(lambda: tokenizer.phonemize(text, lang), repeats=repeats, warmup=1)
            row["espeak_kokoro_onnx_s"] = t.median
        if "misaki_raw_s" in row:
            row["labkit_over_misaki"] = row["labkit_s"] / row["misaki_raw_s"]
        rows.append(row)
    return rows


def cache_hit_seconds(cfg: LabConfig, text: str, repeats: int = 50) -> float:
    """Median time of a repeated sentence served from the G2P cache."""
    g2p = get_g2p(normalize_lang(cfg.lang, cfg.voice), cfg.text.g2p_fallback, lexicon_path(cfg))
    g2p(text)
    t, result = measure(lambda: g2p(text), repeats=repeats, warmup=1)
    if not result.cached:
        raise RuntimeError("the repeated sentence was not served from the cache")
    return t.median


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


def markdown_table(rows: list[dict], columns: list[str] | None = None, digits: int = 4) -> str:
    """Rows of dicts as a Markdown table (pandas is not a dependency)."""
    if not rows:
        return "(no rows)"
    columns = columns or list(rows[0])

    def cell(v: Any) -> str:
        if isinstance(v, float):
            v = f"{v:.{digits}g}"
        return str(v).replace("|", "\\|").replace("\n", "⏎")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
