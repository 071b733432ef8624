"""labkit.engine.g2p, labkit.engine.phonemize and stage 01's measurements (its corpus
checks, labkit.measure.messy_corpus; its languages, labkit.measure.language_cases; its
cost, labkit.measure.g2p_cost): what the listener hears from messy text.

Every corpus case (labkit/data/messy_corpus.yaml) asserts the words heard in order, the
pauses where paragraphs were, the refusals with their message, and that no unknown or
out-of-vocabulary symbol reaches the model.
"""
from __future__ import annotations

import json
import logging

import pytest

from labkit.engine.g2p import G2P, get_g2p
from labkit.engine.languages import normalize_lang
from labkit.engine.phonemized import UNKNOWN, clean_phonemes, tokenize
from labkit.kokoro import VOCAB
from labkit.engine.phonemize import phonemize_json
from labkit.lab import s01_g2p_sanitization as s01
from labkit.measure import g2p_cost, language_cases, messy_corpus
from labkit.measure.messy_corpus import case_input, load_corpus, missing_in_order, run_case
from labkit.engine.text import InputTooLong, sanitize

CORPUS = load_corpus()
#: the 20,000-character case goes through chunking's halving (~20 s on 2 cores): checked
#: here through sanitize + one G2P call, and end to end in the stage notebook
SLOW = {"no_punctuation_20k"}


@pytest.mark.parametrize("case", [c for c in CORPUS if c["id"] not in SLOW],
                         ids=lambda c: c["id"])
def test_corpus_case(case, cfg, g2p_us):
    result = run_case(case, cfg, g2p_us)
    if case.get("known_failure"):  # expected to fail exactly so; told when that changes
        assert result["problems"] == case["known_problems"], (
            f"{case['id']}: the known failure changed (fixed: remove its known_failure; "
            f"a new problem: a regression)")
        pytest.xfail(case["known_failure"])
    assert result["ok"], f"{case['id']}: {result['problems']} (sanitized: {result.get('sanitized')!r})"
    if not case.get("refused"):
        assert result["oov_reaching_model"] == 0


def test_20k_characters_without_punctuation_all_words_heard(g2p_us):
    case = next(c for c in CORPUS if c["id"] == "no_punctuation_20k")
    text = case_input(case)
    assert len(text) >= 20_000
    heard = g2p_us(sanitize(text).text).words
    assert len(heard) == case["hear_count"]
    assert heard[:4] == ["alpha", "beta", "gamma", "delta"] and heard[-1] == "delta"


def test_without_sanitization_words_are_lost(g2p_us):
    # the baseline the stage fixes: espeak stops at NUL, so "world" is never heard
    raw = g2p_us("Hello\x00world")
    assert "world" not in raw.phonemes and "wˈɜɹld" not in raw.phonemes
    clean = g2p_us(sanitize("Hello\x00world").text)
    assert missing_in_order(["hello", "world"], clean.words) == []


def test_phoneme_override_is_blocked_even_without_sanitization(g2p_us):
    ph = g2p_us("Say [hi](/ʁxyz/) now")
    assert ph.overrides_blocked == 1
    assert "ʁxyz" not in ph.phonemes


def test_unknown_words_without_fallback_are_reported_not_spoken(cfg):
    g = get_g2p("en-us", fallback=False)
    ph = g("Kokoro zxqv speaks.")
    assert ph.unknown == ["Kokoro", "zxqv"]
    assert UNKNOWN not in ph.phonemes and ph.dropped == {UNKNOWN: 2}
    assert ph.words == ["speaks"]


def test_fallback_words_are_reported(g2p_us):
    ph = g2p_us("Kokoro speaks.")
    assert ph.fallbacks == ["Kokoro"] and ph.words == ["kokoro", "speaks"]


def test_cache_hit_is_marked_and_identical(g2p_us):
    first = g2p_us("A sentence for the cache test.")
    again = g2p_us("A sentence for the cache test.")
    assert again.cached
    assert again.phonemes == first.phonemes and again.words == first.words
    again.words.append("mutated")
    assert g2p_us("A sentence for the cache test.").words == first.words


def test_cache_is_keyed_by_language(g2p_us):
    gb = get_g2p("en-gb")
    assert g2p_us("tomato").phonemes != gb("tomato").phonemes


def test_whole_text_espeak_engine():
    g = G2P("en-us", engine="espeak")
    ph = g("Hello world, this is espeak.")
    assert ph.engine == "espeak" and g.engine_note
    assert ph.words == ["hello", "world", "this", "is", "espeak"]
    assert all(ch in VOCAB for ch in ph.phonemes)
    with pytest.raises(ValueError, match="allowed are misaki, espeak"):
        G2P("en-us", engine="festival")


def test_non_latin_routed_to_its_language(g2p_us):
    """Cyrillic to espeak's Russian; Han to misaki's Mandarin, with its tones (espeak's
    Mandarin tone digits are outside Kokoro's vocabulary)."""
    ph = g2p_us("Москва and 北京.")
    assert [(r["script"], r["lang"], r["engine"]) for r in ph.routed] == [
        ("Cyrillic", "ru", "espeak"), ("Han", "zh", "misaki-zh")]
    assert missing_in_order(["москва", "and", "北京"], ph.words) == []
    assert ph.dropped == {} and "↓" in ph.phonemes and "→" in ph.phonemes  # běi jīng
    assert all(ch in VOCAB for ch in ph.phonemes)
    # every spoken word points at its characters in the text
    assert [ph.text[a:b] for a, b in ph.chars] == ["Москва", "and", "北京"]


def test_phonemizer_mismatch_warning_is_silenced(caplog):
    get_g2p("en-us")
    with caplog.at_level(logging.WARNING, logger="phonemizer"):
        logging.getLogger("phonemizer").warning("words count mismatch on 100%% of the lines (1/1)")
        logging.getLogger("phonemizer").warning("something else")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["something else"]


def test_clean_and_tokenize():
    ph, dropped = clean_phonemes("hɛ❓lO\tw[")
    assert ph == "hɛlO w" and dropped == {UNKNOWN: 1, "'\\t'": 1, "[": 1}
    assert len(tokenize(ph)) == len(ph)
    with pytest.raises(ValueError, match="not in Kokoro's vocabulary"):
        tokenize("[")


def test_normalize_lang():
    assert normalize_lang("en") == "en-us"
    assert normalize_lang(None, "bf_emma") == "en-gb"
    assert normalize_lang(None, "af_heart") == "en-us"
    # every voice's own language by default; an explicit language wins
    assert [normalize_lang(None, v) for v in ("ef_dora", "ff_siwis", "hf_alpha", "if_sara",
                                              "pf_dora", "jf_alpha", "zf_xiaobei")] == \
        ["es", "fr-fr", "hi", "it", "pt-br", "ja", "zh"]
    assert normalize_lang(None, "ff_siwis(2)+af_sky(1)") == "fr-fr"
    assert normalize_lang("fr", "af_heart") == "fr-fr"
    assert normalize_lang("en-gb", "ff_siwis") == "en-gb"
    with pytest.raises(ValueError, match="use one of en-us, en-gb"):
        normalize_lang("xx")


def test_french_voice_reads_french(cfg):
    """ff_siwis: French G2P by default (espeak-ng fr-fr), not English; reported as used."""
    from labkit.lexicon import LANGS

    fr = phonemize_json("Bonjour, je m'appelle Siwis.", cfg.with_overrides({"voice": "ff_siwis"}))
    assert fr["lang"] == "fr-fr" and fr["engine"] == "espeak"
    phonemes = " ".join(p["phonemes"] for p in fr["pieces"])
    assert "bɔ̃ʒ" in phonemes and "ʁ" in phonemes  # French nasal vowel and uvular r
    en = phonemize_json("Bonjour, je m'appelle Siwis.", cfg.with_overrides({"voice": "af_heart"}))
    assert en["lang"] == "en-us" and "bɔ̃ʒ" not in " ".join(p["phonemes"] for p in en["pieces"])
    # English-only rewrites stay off for other languages: espeak reads 3:30 in French
    assert "three" not in phonemize_json("Il est 3:30.", cfg.with_overrides(
        {"voice": "ff_siwis"}))["text"]
    assert set(LANGS) >= {"es", "fr-fr", "hi", "it", "pt-br", "ja", "zh"}


@pytest.mark.parametrize("voice,text,lang", [
    ("ef_dora", "Hola, ¿cómo estás?", "es"), ("if_sara", "Buongiorno a tutti.", "it"),
    ("pf_dora", "Obrigado, até logo.", "pt-br"), ("hf_alpha", "नमस्ते दुनिया", "hi"),
])
def test_espeak_languages_phonemize_in_their_language(cfg, voice, text, lang):
    out = phonemize_json(text, cfg.with_overrides({"voice": voice}))
    assert out["lang"] == lang and out["pieces"] and all(p["phonemes"] for p in out["pieces"])
    assert out["report"]["g2p"]["unknown"] == [] and out["report"]["g2p"]["lost_symbols"] == {}


def test_japanese_and_chinese_read_by_misaki():
    """j and z voices: misaki's own G2P (Cutlet for ja, ZHG2P for zh), nothing downloaded."""
    from labkit.engine import languages

    assert languages.unavailable("ja") is None and languages.unavailable("zh") is None
    ja = get_g2p("ja")("東京は晴れです。")
    zh = get_g2p("zh")("北京是首都。")
    assert ja.engine == "misaki-ja" and ja.words[:1] == ["東京"] and "toːkʲoː" in ja.phonemes
    assert zh.engine == "misaki-zh" and zh.words == ["北京", "是", "首都"]
    assert [zh.text[a:b] for a, b in zh.chars] == zh.words
    assert [ch for ch in zh.phonemes if ch in "→↗↓↘"] == list("↓→↘↓→")  # běi jīng shì shǒu dū
    assert languages.unavailable("fr-fr") is None and languages.unavailable("en-us") is None


def test_a_missing_dependency_names_the_module_and_the_packages(monkeypatch):
    from labkit.engine import languages, phoneme_readers

    def missing(lang):
        raise ModuleNotFoundError("No module named 'jieba'", name="jieba")

    monkeypatch.setattr(languages, "_UNAVAILABLE", {})
    monkeypatch.setattr(phoneme_readers, "_OTHER", {})
    monkeypatch.setattr(phoneme_readers, "MisakiReader", missing)
    why = languages.unavailable("zh")
    assert "'jieba'" in why and "pip install jieba pypinyin cn2an ordered-set" in why
    with pytest.raises(languages.LanguageUnavailable, match="jieba"):
        G2P("zh")

    def broken(lang):
        raise RuntimeError("Failed initializing MeCab")

    monkeypatch.setattr(phoneme_readers, "MisakiReader", broken)
    why = languages.unavailable("ja")
    assert "MeCab" in why and "unidic-lite" in why and "pip install fugashi unidic-lite" in why


def test_phonemize_json_shape(cfg, g2p_us):
    out = phonemize_json("# Title\n\nHello\x00world 🎉.", cfg, g2p_us)
    json.dumps(out)
    assert out["text"] == "Title.\n\nHello world."
    assert [p["boundary"] for p in out["pieces"]] == ["paragraph", "paragraph"]
    assert [p["words"] for p in out["pieces"]] == [["title"], ["hello", "world"]]
    assert out["report"]["sanitize"]["removed"][0]["rule"] == "emoji"
    assert out["report"]["g2p"]["oov_reaching_model"] == 0


def test_phonemize_json_refusals(cfg, g2p_us):
    with pytest.raises(ValueError, match="nothing to read: the input is empty"):
        phonemize_json("  \n ", cfg, g2p_us)
    with pytest.raises(ValueError, match="no words left to read"):
        phonemize_json("--- !!!", cfg, g2p_us)
    small = cfg.with_overrides({"text.max_chars": 10})
    with pytest.raises(InputTooLong, match="the limit is 10"):
        phonemize_json("x" * 11, small, g2p_us)


# -- checks that can fail -------------------------------------------------------------------
def test_symbols_removed_before_the_model_are_counted_as_lost(cfg, g2p_us, monkeypatch):
    from labkit.engine.phonemized import lost_symbols

    assert lost_symbols({"'\\t'": 3, "5": 2, UNKNOWN: 1}) == {"5": 2, UNKNOWN: 1}
    # without misaki's zh G2P, Han goes to espeak's Mandarin: its tone digits are lost
    from labkit.engine import g2p as g2pmod

    monkeypatch.setattr(g2pmod, "unavailable", lambda lang: "not here" if lang == "zh" else None)
    monkeypatch.setattr(g2pmod, "_G2P_BY_LANG", {})
    cjk = cfg.with_overrides({"text.non_latin": "espeak"})
    out = phonemize_json("The word 北京 means Beijing.", cjk)
    g = out["report"]["g2p"]
    assert g["oov_reaching_model"] == 0            # true by construction: cleaning removed them
    assert g["oov_before_cleaning"] >= 2 and set(g["lost_symbols"]) <= set("12345")
    case = next(c for c in CORPUS if c["id"] == "cjk_espeak")
    result = run_case(case, cfg)
    assert not result["ok"] and any("were removed" in p for p in result["problems"])
    assert any("tones" in p for p in result["problems"])  # the Mandarin tone check fails too


def test_read_as_written_fails_on_a_wrong_reading(cfg, g2p_us):
    phoneme_words, read_as_written = messy_corpus.phoneme_words, messy_corpus.read_as_written
    ph = g2p_us("Meet me at 10:30.").phonemes
    assert read_as_written({"10:30": ["ten thirty"]}, ph, g2p_us) == []
    assert read_as_written({"10:30": ["half past ten"]}, ph, g2p_us) == ["'10:30' not read as 'half past ten'"]
    assert phoneme_words("tˈɛn:θˈɜɹTi, dᵻɡɹˈiz.") == ["tɛn", "θɜɹTi", "dəɡɹiz"]
    case = {"id": "bad", "input": "The train leaves at 10:30.", "read_as": {"10:30": "eleven"}}
    result = run_case(case, cfg, g2p_us)
    assert not result["ok"] and result["problems"] == ["'10:30' not read as 'eleven'"]
    with pytest.raises(ValueError, match="no expected reading"):
        read_as_written({"10:30": []}, ph, g2p_us)



def test_read_as_written_lets_word_breaks_fall_anywhere_but_not_the_sounds(g2p_us):
    """"twenty-four" is one phoneme word and "twenty four" two, "PM" one and "p m" two:
    the same sounds match; other sounds, or sounds cut inside a word, do not."""
    ph = g2p_us("It was January fifteenth, twenty twenty-four, at three oh five PM.").phonemes
    ok = {"2024-01-15": ["January fifteenth twenty twenty four"], "3:05 pm": ["three oh five p m"]}
    assert messy_corpus.read_as_written(ok, ph, g2p_us) == []
    wrong = {"2024": ["twenty twenty five"], "3:05": ["three oh six"], "fif": ["fif"]}
    assert messy_corpus.read_as_written(wrong, ph, g2p_us) == [
        "'2024' not read as 'twenty twenty five'", "'3:05' not read as 'three oh six'",
        "'fif' not read as 'fif'"]

def test_words_lost_without_sanitization_count_only_the_inputs_words(cfg, monkeypatch):
    """The sanitizer reads a URL as "... dot com slash ..."; the raw G2P never had those
    words to lose, so they are not counted against it."""
    class Words:
        def __init__(self, text):
            self.words = [w.lower() for w in messy_corpus._ALNUM.findall(text)]
            self.fallbacks, self.dropped, self.unknown = [], {}, []

    monkeypatch.setattr(messy_corpus, "get_g2p", lambda *a, **k: Words)
    case = {"id": "url", "input": "Docs at example.com/guide today.",
            "hear": ["docs", "at", "example", "dot", "com", "slash", "guide", "today"]}
    row = messy_corpus.raw_vs_sanitized(cfg, [case])[0]
    assert row["raw_missing"] == 0 and row["missing"] == 0  # "dot", "slash" are not the input's
    case["input"] = "Docs example.com/guide today."  # the raw text really lacks "at" now
    assert messy_corpus.raw_vs_sanitized(cfg, [case])[0]["raw_missing"] == 0
    case["hear"].append("tomorrow")  # a word of neither: not the input's, not counted
    assert messy_corpus.raw_vs_sanitized(cfg, [case])[0]["raw_missing"] == 0
    case["input"] += " See you tomorrow"
    case["hear"] = ["docs", "today", "tomorrow"]
    monkeypatch.setattr(messy_corpus, "get_g2p", lambda *a, **k: lambda t: Words(t.replace("tomorrow", "")))
    assert messy_corpus.raw_vs_sanitized(cfg, [case])[0]["raw_missing"] == 1  # a real loss counts


# -- stage 01: the cost on the one instrument, and targets that can fail ---------------------
def _synthetic_cost(labkit_s: float, misaki_s: float = 1.0):
    from labkit.measure.compare import compare

    return compare({g2p_cost.MISAKI: lambda: misaki_s, g2p_cost.LABKIT: lambda: labkit_s}, g2p_cost.MISAKI,
                   measure=float, rounds=6)


def test_cost_ratio_is_labkit_over_misaki_with_its_interval():
    cost = g2p_cost.cost_ratio(_synthetic_cost(2.0))
    assert cost["value"] == pytest.approx(2.0) and cost["ci95"] == pytest.approx([2.0, 2.0])
    assert g2p_cost.cost_ratio(_synthetic_cost(0.5))["value"] == pytest.approx(0.5)


def _result(cost_ci95, passed=3, cases=3, words_lost=0, oov=0, lost=0, cache_s=1e-6):
    return {"summary": {"passed": passed, "cases": cases, "words_lost": words_lost,
                        "oov_reaching_model": oov, "oov_before_cleaning": lost},
            "cost": {"rows": [{"text": "t", "labkit_over_misaki_ci95": cost_ci95}]},
            "cache_hit_s": cache_s}


def test_text_path_bypasses_the_cache_and_makes_the_pipelines_pieces(cfg, g2p_us):
    class Synth:  # StreamingSynthesizer.iter_pieces' contract, counting the G2P's misses
        misses = 0

        def iter_pieces(self, text):
            for part in text.split(". "):
                ph = g2p_us(part)
                Synth.misses += not ph.cached
                yield ph

    run = g2p_cost.text_path(Synth(), g2p_us)
    assert len(run("A sentence timed twice. And its second part.")) == 2
    assert len(run("A sentence timed twice. And its second part.")) == 2
    assert Synth.misses == 4  # the second call was not served from the cache
    first = g2p_cost.text_path(Synth(), g2p_us, first_only=True)
    assert len(first("A sentence timed twice. And its second part.")) == 1
    assert Synth.misses == 5  # only the first piece was phonemized


def test_select_cases_names_an_unknown_id():
    assert [c["id"] for c in s01.select_cases(CORPUS, ["email", "url"])] == ["url", "email"]  # corpus order
    with pytest.raises(ValueError, match="no corpus case"):
        s01.select_cases(CORPUS, ["nope"])


def test_messy_benchmark_texts():
    from labkit.measure import texts

    article = texts.named("messy-article")
    assert 1400 <= texts.word_count(article) <= 1700
    paragraphs = article.split("\n\n")
    assert len(set(paragraphs)) == len(paragraphs)  # a repeat would be a free cache hit
    assert texts.named("messy-sentence").endswith(".") and "](" in texts.named("messy-article")


def test_g2p_cost_times_the_pipelines_text_path_on_the_instrument(engine):
    from labkit.engine.pipeline import StreamingSynthesizer

    text = "Hello there. This is a short test, with two sentences."
    cost = g2p_cost.g2p_cost(StreamingSynthesizer(engine), {"short": text}, rounds=1, espeak_baseline=False)
    (row,) = cost["rows"]
    assert row["pieces"] >= 1 and row["g2p_calls"] >= row["pieces"]
    lo, hi = row["labkit_over_misaki_ci95"]
    assert lo <= row["labkit_over_misaki"] <= hi
    (cmp,) = cost["comparisons"].values()
    assert set(cmp.entries) == {g2p_cost.MISAKI, g2p_cost.LABKIT, g2p_cost.FIRST, g2p_cost.SANITIZE, g2p_cost.MISAKI + " (A/A)"}
    assert row["first_piece_s"] > 0
    result = {"summary": {"passed": 1, "cases": 1, "words_lost": 0, "oov_reaching_model": 0,
                          "oov_before_cleaning": 0}, "saved": {"raw_missing": 2},
              "cost": cost, "cache_hit_s": 1e-6}
    head = s01.headline(result)
    figure = head["short sanitize + per-piece G2P / misaki alone (x)"]
    assert set(figure) == {"value", "ci95"} and len(figure["ci95"]) == 2
    assert head["words of the input lost without sanitization"] == 2


def test_fallback_and_unknown_words_are_counted_once_per_fresh_text():
    from labkit.engine.g2p import loaded

    g = get_g2p("en-us", fallback=False)
    assert g in loaded()
    before = dict(g.counts)
    text = "Zxqvbnm speaks, counted."
    ph = g(text)
    g(text)  # a cache hit is not counted again
    assert g.counts["texts"] == before["texts"] + 1
    assert g.counts["unknown_words"] == before["unknown_words"] + len(ph.unknown) > before["unknown_words"]
    assert g.counts["fallback_words"] == before["fallback_words"]
    us = get_g2p("en-us")
    before = dict(us.counts)
    ph = us("Kokoro counts its fallback words.")
    assert ph.fallbacks and us.counts["fallback_words"] == before["fallback_words"] + len(ph.fallbacks)


def test_a_misaki_failure_falls_back_to_espeak_and_counts_every_word(monkeypatch):
    """num2words raises OverflowError on numbers beyond 10**300 inside misaki (unsanitized
    text reaches it in stage 01's raw comparison): the text is read by espeak, not lost."""
    g = get_g2p("en-us")

    def broken(text):
        raise OverflowError("abs(123...) must be less than 10**300")

    monkeypatch.setattr(g, "_misaki", broken)
    g.cache_clear()
    before = g.counts["fallback_words"]
    ph = g("Read this sentence anyway.")
    assert ph.engine == "espeak" and ph.phonemes
    assert ph.fallbacks == ["Read", "this", "sentence", "anyway"]
    assert g.counts["fallback_words"] == before + 4
    g.cache_clear()


# -- inline pronunciation ---------------------------------------------------------------------
INLINE_TEXT = "Hello [Kokoro](/kˈOkəɹO/), again."


@pytest.mark.parametrize("voice,lang", [("af_heart", "en-us"), ("ff_siwis", "fr-fr"),
                                        ("jf_alpha", "ja"), ("zf_xiaobei", "zh")])
def test_inline_pronunciation_only_when_opted_in(cfg, voice, lang):
    """Every language: on, the word's phonemes are the ones given and the report names it;
    off (the default), the markup is read as its word."""
    on = phonemize_json(INLINE_TEXT, cfg.with_overrides({"voice": voice, "text.inline_phonemes": True}))
    off = phonemize_json(INLINE_TEXT, cfg.with_overrides({"voice": voice}))
    ps_on = " ".join(p["phonemes"] for p in on["pieces"])
    ps_off = " ".join(p["phonemes"] for p in off["pieces"])
    assert on["lang"] == lang and "kˈOkəɹO" in ps_on and "kˈOkəɹO" not in ps_off
    assert on["report"]["g2p"]["inline"] == [{"word": "Kokoro", "phonemes": "kˈOkəɹO"}]
    assert off["report"]["g2p"]["inline"] == [] and off["text"] == "Hello Kokoro, again."
    assert on["report"]["sanitize"]["inline"][0]["applied"] is True


@pytest.mark.parametrize("text", ["Hello [Kokoro](/kˈOkə now.", "Hello [Kokoro](kˈOkəɹO) now.",
                                  "Hello [Kokoro](/kˈOk əɹO/) now.", "Hello [Kokoro](//) now.",
                                  "Hello [two words](/tˈu/) now."])
def test_malformed_markup_is_read_as_plain_text(cfg, text):
    out = phonemize_json(text, cfg.with_overrides({"text.inline_phonemes": True}))
    heard = [w for p in out["pieces"] for w in p["words"]]
    assert "kokoro" in heard or "two" in heard
    assert not {"slash", "bracket", "parenthesis"} & set(heard)
    ps = " ".join(p["phonemes"] for p in out["pieces"])
    assert "slˈæʃ" not in ps and "bɹˈækət" not in ps and out["report"]["g2p"]["inline"] == []


def test_an_unknown_phoneme_symbol_is_named(cfg):
    from labkit.engine.inline import PronunciationError

    on = cfg.with_overrides({"text.inline_phonemes": True})
    with pytest.raises(PronunciationError, match=r"'☃' \(U\+2603\).*not in Kokoro's vocabulary"):
        phonemize_json("Hello [Kokoro](/kˈOk☃/).", on)
    assert phonemize_json("Hello [Kokoro](/kˈOk☃/).", cfg)["text"] == "Hello Kokoro."  # off: its word


# -- every language (stage 01's per-language cases) ------------------------------------------
LANGUAGES = language_cases.load_languages()


def test_every_language_has_its_cases():
    from labkit.lexicon import LANGS

    assert set(LANGUAGES) == set(LANGS)
    for lang, spec in LANGUAGES.items():
        inputs = [c["input"] for c in spec["cases"]]
        assert len(inputs) >= s01.MIN_LANGUAGE_CASES, lang
        assert any(ch.isdigit() for t in inputs for ch in t), f"{lang}: no numbers"
        assert sum(any(p in t for p in ",;:!?、，！？") for t in inputs) >= 3, f"{lang}: little punctuation"
        assert normalize_lang(None, spec["voice"]) == lang


@pytest.mark.parametrize("lang", list(LANGUAGES))
def test_each_language_reads_as_its_own_g2p_alone(cfg, lang):
    """The pipeline's text path (sanitize, pieces, G2P) in each language gives the same
    phoneme words as the language's G2P alone on the same text; Mandarin keeps its tones."""
    out = language_cases.run_languages(cfg, [lang])
    row = out["languages"][lang]
    assert row["unavailable"] is None
    bad = [(r["id"], r["problems"]) for r in out["results"] if not r["ok"]]
    assert bad == [] and row["passed"] == row["cases"] >= s01.MIN_LANGUAGE_CASES
    if lang == "zh":
        assert row["tones_passed"] == row["tone_cases"] >= 5


def test_the_language_checks_can_fail(cfg, monkeypatch):
    case = {"id": "x", "input": "你好，世界。", "tones": "→→→→"}
    r = language_cases.run_language_case("zh", "zf_xiaobei", case, cfg)
    assert not r["ok"] and r["problems"] == ["Mandarin tones '↓↓↘↘', expected '→→→→'"]
    monkeypatch.setattr(language_cases, "reference_phonemes", lambda lang, text: "həlˈO wˈɜɹld")
    r = language_cases.run_language_case("zh", "zf_xiaobei", {"id": "y", "input": "你好，世界。"}, cfg)
    assert not r["ok"] and "differ from the G2P alone from word 0" in r["problems"][0]
    monkeypatch.setattr(language_cases, "unavailable", lambda lang: "misaki's ja G2P needs 'fugashi'"
                        if lang == "ja" else None)
    out = language_cases.run_languages(cfg, ["ja"])
    assert out["languages"]["ja"] == {"voice": "jf_alpha", "cases": 8, "passed": 0,
                                      "unavailable": "misaki's ja G2P needs 'fugashi'"}
    head = s01.headline({**_result([1.0, 1.2]), "cost": {"rows": []}, "languages": out, "saved": {}})
    assert head["language ja (jf_alpha)"] == "not read here: misaki's ja G2P needs 'fugashi'"
    assert s01.targets({**_result([1.0, 1.2]), "languages": out})["every_language_read"] is False


def test_labkit_phonemize_shows_misaki_ja_and_zh(capsys):
    from labkit.cli import main

    for voice, text, engine in (("jf_alpha", "東京です。", "misaki-ja"), ("zf_xiaobei", "北京。", "misaki-zh")):
        assert main(["phonemize", "-s", f"voice={voice}", text]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["engine"] == engine and out["pieces"][0]["phonemes"]
