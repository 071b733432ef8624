"""The personal lexicon (labkit.lexicon): checked on load, read before misaki, reported."""
from __future__ import annotations

import os

import pytest

from labkit.config import ConfigError
from labkit.engine.g2p import G2P
from labkit.engine.phonemize import phonemize_json
from labkit.lexicon import LexiconError, load_lexicon, parse_lexicon

ZORB = "kˈOkəɹO"  # a made-up word given a pronunciation nothing would guess


def test_unknown_symbols_name_the_entry_and_the_symbol(tmp_path):
    with pytest.raises(LexiconError, match=r"entry 'blip'.*'\$'.*vocabulary"):
        parse_lexicon({"zorblax": ZORB, "blip": "bl$p"})
    with pytest.raises(LexiconError, match="entry 'two words'"):
        parse_lexicon({"two words": "tu"})
    with pytest.raises(LexiconError, match="non-empty string"):
        parse_lexicon({"x": 5})
    with pytest.raises(LexiconError, match="mapping"):
        parse_lexicon(["a", "b"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("blip: bl$p\n", encoding="utf-8")
    with pytest.raises(LexiconError, match="'blip'"):
        load_lexicon(bad)


def test_config_validation_checks_the_lexicon(cfg, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("zorblax: zˈɔɹ%\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"lexicon:.*'zorblax'.*'%'"):
        cfg.with_overrides({"lexicon": str(bad)}).validate()
    with pytest.raises(ConfigError, match="cannot read"):
        cfg.with_overrides({"lexicon": str(tmp_path / "missing.yaml")}).validate()


def test_case_handling():
    lex = parse_lexicon({"zorblax": "zɔɹ", "Nice": "nˈis"})
    assert lex.lookup("zorblax") == lex.lookup("Zorblax") == lex.lookup("ZORBLAX") == "zɔɹ"
    assert lex.lookup("Nice") == "nˈis" and lex.lookup("nice") is None


def test_lexicon_overrides_a_made_up_word_and_is_reported(cfg, tmp_path):
    path = tmp_path / "lexicon.yaml"
    path.write_text(f"zorblax: {ZORB}\n", encoding="utf-8")
    c = cfg.with_overrides({"lexicon": str(path), "voice": "af_heart"}).validate()
    out = phonemize_json("I met Zorblax today. Zorblax waved.", c)
    phonemes = " ".join(p["phonemes"] for p in out["pieces"])
    assert phonemes.count(ZORB) == 2
    entry = {"word": "Zorblax", "section": "en", "entry": "zorblax", "phonemes": ZORB}
    assert out["lexicon"] == {"path": str(path), "overridden": ["Zorblax", "Zorblax"],
                              "applied": [entry, entry]}
    assert ["met", "zorblax"] == out["pieces"][0]["words"][1:3]
    # without the lexicon, misaki guesses something else
    plain = phonemize_json("I met Zorblax today.", cfg.with_overrides({"voice": "af_heart"}))
    assert ZORB not in plain["pieces"][0]["phonemes"] and plain["lexicon"]["overridden"] == []


def test_an_edited_lexicon_is_read_again(tmp_path):
    path = tmp_path / "lexicon.yaml"
    path.write_text(f"zorblax: {ZORB}\n", encoding="utf-8")
    g2p = G2P("en-us", lexicon=str(path))
    assert ZORB in g2p("Zorblax.").phonemes
    path.write_text("zorblax: zˈɔɹblæks\n", encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    again = g2p("Zorblax.")
    assert "zˈɔɹblæks" in again.phonemes and not again.cached


@pytest.mark.model
def test_the_pipeline_reads_with_the_configured_lexicon(cfg, tmp_path):
    from labkit.engine.pipeline import StreamingSynthesizer
    from labkit.engine.runtime import Engine

    path = tmp_path / "lexicon.yaml"
    path.write_text(f"zorblax: {ZORB}\n", encoding="utf-8")
    c = cfg.with_overrides({"lexicon": str(path), "voice": "af_heart"}).validate()
    synth = StreamingSynthesizer(Engine(c))
    pieces = synth.pieces("Hello Zorblax.")
    assert ZORB in pieces[0].phonemes
    assert synth.g2p("en-us").lexicon_path == str(path)


def test_sections_per_language_and_the_flat_form():
    lex = parse_lexicon({"en": {"zorblax": "zɔɹ"}, "en-gb": {"zorblax": "zɑː"},
                         "fr": {"Siwis": "siwˈis"}, "ja": {"東京": "toːkʲoː"}})
    assert lex.lookup("Zorblax", "en-us") == "zɔɹ" and lex.lookup("zorblax", "en-gb") == "zɑː"
    assert lex.lookup("Siwis", "fr-fr") == "siwˈis" and lex.lookup("Siwis", "en-us") is None
    assert lex.entry("東京", "ja").section == "ja" and lex.words("ja") == ["東京"]
    flat = parse_lexicon({"zorblax": "zɔɹ"})  # the older form: English
    assert flat.lookup("zorblax", "en-gb") == "zɔɹ" and flat.lookup("zorblax", "fr-fr") is None
    with pytest.raises(LexiconError, match="section 'xx' is not a language"):
        parse_lexicon({"xx": {"a": "ə"}})
    with pytest.raises(LexiconError, match="entry 'zorblax' is a word at the top level"):
        parse_lexicon({"fr": {"a": "a"}, "zorblax": "zɔɹ"})
    with pytest.raises(LexiconError, match=r"fr: entry 'blip'.*'\$'"):
        parse_lexicon({"fr": {"blip": "bl$p"}})


@pytest.mark.parametrize("voice,text,word,ps", [
    ("ff_siwis", "Bonjour Zorblax, ça va ?", "Zorblax", "zɔʁblaks"),
    ("ef_dora", "Hola Zorblax.", "Zorblax", "θoɾβlaks"),
    ("jf_alpha", "東京タワーです。", "東京", "tˈOkiO"),
    ("zf_xiaobei", "北京是首都。", "北京", "bˈAʤɪŋ"),
])
def test_the_lexicon_applies_in_every_language(cfg, tmp_path, voice, text, word, ps):
    """A section per language: its entries are read before that language's G2P (in
    Japanese and Chinese wherever the characters occur), reported as applied."""
    lang = {"f": "fr", "e": "es", "j": "ja", "z": "zh"}[voice[0]]
    path = tmp_path / "lexicon.yaml"
    path.write_text(f"en:\n  zorblax: {ZORB}\n{lang}:\n  {word}: {ps}\n", encoding="utf-8")
    out = phonemize_json(text, cfg.with_overrides({"lexicon": str(path), "voice": voice}))
    phonemes = " ".join(p["phonemes"] for p in out["pieces"])
    assert ps in phonemes and ZORB not in phonemes
    assert out["lexicon"]["applied"] == [{"word": word, "section": lang, "entry": word,
                                          "phonemes": ps}]
    assert word in [w for p in out["pieces"] for w in p["words"]]
