"""labkit.engine.text: each sanitization rule, the report, the cap."""
from __future__ import annotations

import pytest

from labkit.config import ConfigError, LabConfig, TextConfig
from labkit.engine.registries import check_config
from labkit.engine.scripts import script_runs
from labkit.engine.text import RULES, InputTooLong, sanitize
from serve.app import create_app


def test_nul_and_control_characters_separate_words():
    s = sanitize("Hello\x00world\x07!")
    assert s.text == "Hello world!"
    assert s.report["rules"]["control"] == 2


def test_paragraph_break_is_kept_and_ends_a_sentence():
    s = sanitize("Heading\r\n\r\nBody text")
    assert s.text == "Heading.\n\nBody text"
    assert s.paragraphs == ["Heading.", "Body text"]


def test_single_newlines_join_and_pdf_hyphenation_is_undone():
    s = sanitize("Optimi-\nzation of the\nwrapped line\fNext page")
    assert s.paragraphs == ["Optimization of the wrapped line.", "Next page"]


def test_invisible_and_odd_whitespace():
    s = sanitize("\ufeffone\u00a0two\tthree  in\u200bvisible\u2009end")
    assert s.text == "one two three invisible end"


@pytest.mark.parametrize("raw,clean", [
    ("hello\u200bworld", "hello world"),  # known-bad before: glued into "helloworld"
    ("hello\u200bWorld", "hello World"),
    ("read\u200e\u200ethis\u2063now", "read this now"),  # bidi marks, invisible separator
    ("in\u200bvisible some\u200bthing data\u200bbases", "invisible something databases"),
    ("co\u00adoperate e\u200dmail\u2060ok", "cooperate emailok"),  # joiners never separate
    ("end\u200b. next \u200bword", "end. next word"),  # next to punctuation or a space: gone
])
def test_invisible_separators_split_words_joiners_do_not(raw, clean):
    assert sanitize(raw).text == clean


@pytest.mark.parametrize("raw,clean", [
    ("Due 2026-11-27.", "Due November twenty-seventh, twenty twenty-six."),
    ("At 2026-01-02T09:05Z.", "At January second, twenty twenty-six at nine oh five UTC."),
    ("At 2026-01-02 18:30-05:30.", "At January second, twenty twenty-six at eighteen thirty "
                                   "UTC minus five thirty."),
    ("Not a date: 2026-02-30 or 2026-13-01.", "Not a date: 2026-02-30 or 2026-13-01."),
    ("Meet at 9:30 am or 14:05, not 7:00 p.m. Then 12:00.",
     "Meet at nine thirty AM or fourteen oh five, not seven PM. Then twelve o'clock."),
    ("A 3:2 ratio and 25:61.", "A 3:2 ratio and 25:61."),  # not times
    ("Install v2.3, v10 or 1.12.0.", "Install version two point three, version ten or one "
                                     "point twelve point zero."),
    ("Not versions: 10.0.0.1, 27.11.2026, 3.14.", "Not versions: 10.0.0.1, 27.11.2026, 3.14."),
    ("It serves 120 requests/s at 60 km/h.", "It serves 120 requests per second at 60 "
                                              "kilometers per hour."),
    ("Took 1 ms, then 250 ms on 2 GB and 5 GHz.",
     "Took 1 millisecond, then 250 milliseconds on 2 gigabytes and 5 gigahertz."),
    ("Keep and/or, he/she, 24/7 and 5 msg.", "Keep and/or, he/she, 24/7 and 5 msg."),
])
def test_dates_times_versions_units_read_as_a_person_would(raw, clean):
    assert sanitize(raw).text == clean


def test_long_digit_strings_are_capped_and_the_rest_reported():
    s = sanitize("Pi is " + "3" * 300 + " roughly.")
    spoken = s.text.split()
    assert sum(w.rstrip(",").isdigit() and len(w.rstrip(",")) == 1 for w in spoken) == 24
    assert "276 more digits" in s.text  # said, so the listener knows something was cut
    [rec] = s.report["removed"]
    assert rec["rule"] == "numbers" and "276 left out" in rec["why"]
    # known-bad before: 301 characters read as 300 words (90 s of audio)
    assert len(spoken) < 40


def test_ansi_escapes_removed():
    assert sanitize("\x1b[1;31mERROR\x1b[0m: disk full").text == "ERROR: disk full"


def test_markdown_link_becomes_its_text_not_a_phoneme_override():
    s = sanitize("Say [hi](/ʁ🙂xyz/) and ![a logo](x.png) [ref][1].\n\n[1]: https://x.org")
    assert s.text == "Say hi and a logo ref."
    assert "xyz" not in s.text


def test_markdown_structure_gives_sentences_and_pauses():
    md = "# Title\nSome *emphasis*, **bold**, `code_span`.\n- apples\n- pears\n\n> quoted\n\n---\n\nEnd"
    s = sanitize(md)
    assert s.paragraphs == ["Title.", "Some emphasis, bold, code span. apples. pears.",
                            "quoted.", "End"]


def test_markdown_fence_lines_are_read_as_sentences():
    s = sanitize("Run:\n```bash\npip install labkit\nlabkit phonemize\n```\nDone.")
    assert s.paragraphs == ["Run:", "pip install labkit. labkit phonemize.", "Done."]


def test_markdown_off_leaves_markup_to_later_rules():
    s = sanitize("**bold**", TextConfig(markdown=False))
    assert "bold" in s.text and "markdown" not in s.report["rules"]


def test_url_read_as_domain_and_path_with_its_query_and_section():
    s = sanitize("See https://docs.python.org/3/library/re.html?highlight=sub#re.sub now.")
    assert s.text == ("See docs dot python dot org slash 3 slash library slash re html, "
                      "query highlight equals sub, section re sub, now.")
    assert s.report["removed"] == []


def test_url_query_reads_a_few_short_parameters_and_reports_the_rest():
    s = sanitize("Open https://ex.com/s?q=kokoro&lang=en&a=1&b=2&token=9f86d081884c7d659a2f ok")
    assert s.text == "Open ex dot com slash s, query q equals kokoro, lang equals en, a equals 1, ok"
    left_out = {r["text"]: r["why"] for r in s.report["removed"]}
    assert set(left_out) == {"b=2", "token=9f86d081884c7d659a2f"}  # nothing silently dropped
    assert "first 3" in left_out["b=2"]


def test_email_read_out():
    assert sanitize("Mail jane.doe@example.org.").text == "Mail jane dot doe at example dot org."


def test_code_identifiers_and_file_line_references():
    s = sanitize("In src/labkit/text.py:42 call parse_markdown() or getElementById on os.path.")
    assert s.text == ("In src slash labkit slash text dot py, line 42 call parse markdown or "
                      "get Element By Id on os dot path.")


def test_abbreviations_and_names_are_not_split():
    s = sanitize("e.g. the U.S. and McDonald and IDs.")
    assert s.text == "e.g. the U.S. and McDonald and IDs."


def test_emoji_dropped_with_record_or_named():
    s = sanitize("I love 🎉 parties 👍🏽")
    assert s.text == "I love parties"
    assert [r["rule"] for r in s.report["removed"]] == ["emoji", "emoji"]
    named = sanitize("I love 🎉 parties", TextConfig(emoji="name"))
    assert named.text == "I love party popper parties"


def test_non_latin_skipped_with_record_or_kept_for_espeak():
    s = sanitize("The word 北京 means Beijing; שלום too.")
    assert s.text == "The word means Beijing; too."
    assert {r.get("script") for r in s.report["removed"]} == {"Han", "Hebrew"}
    kept = sanitize("The word 北京 means Beijing.", TextConfig(non_latin="espeak"))
    assert "北京" in kept.text


def test_script_runs_split_mixed_scripts():
    runs = script_runs("a Москва 北京 b")
    assert [(seg, script) for seg, script, _ in runs if script] == [("Москва", "Cyrillic"),
                                                                    ("北京", "Han")]


def test_huge_numbers_read_digit_by_digit():
    assert sanitize("ID 12345678901234567890.").text == "ID " + " ".join("12345678901234567890") + "."
    assert sanitize("Pay 1,000,000 or 123456.").text == "Pay 1,000,000 or 123456."


def test_over_long_tokens_left_out_and_recorded():
    sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    s = sanitize(f"Commit {sha} fixed it.")
    assert s.text == "Commit fixed it."
    assert s.report["removed"][0]["rule"] == "long_words"
    word = "Pneumonoultramicroscopicsilicovolcanoconiosis"
    assert sanitize(word).text == word


def test_punctuation_outside_the_vocabulary_is_mapped():
    s = sanitize("Array a[0] and {key: value}, wait!!! “ok”… x | y -- z")
    assert not set("[]{}|") & set(s.text)
    assert "wait!" in s.text and "!!" not in s.text


def test_ligatures_and_fullwidth():
    assert sanitize("ﬁnal ＡＢＣ").text == "final ABC"


@pytest.mark.parametrize("text", ["", "   \n\t ", "--- ... !!!", "🎉🎉"])
def test_nothing_to_read_gives_empty_text_with_reasons(text):
    s = sanitize(text)
    assert s.text == "" and s.paragraphs == []


def test_input_cap_error_names_both_numbers():
    with pytest.raises(InputTooLong, match=r"12 characters; the limit is 10"):
        sanitize("x" * 12, TextConfig(max_chars=10))


def test_rules_can_be_disabled_by_name_and_bad_names_rejected():
    s = sanitize("I love 🎉", TextConfig(disable=["emoji"]))
    assert "🎉" in s.text
    with pytest.raises(ConfigError, match="unknown rule"):
        sanitize("x", TextConfig(disable=["nope"]))
    with pytest.raises(ConfigError, match="allowed are drop, name"):
        sanitize("x", TextConfig(emoji="read"))
    assert "markdown" in RULES


def test_a_config_with_an_unknown_rule_fails_where_it_is_loaded():
    cfg = LabConfig().with_overrides({"text.disable": ["emoji", "nope"]})
    with pytest.raises(ConfigError, match=r"text.disable: unknown rule\(s\) 'nope'; rules are "
                       + ", ".join(RULES)):
        check_config(cfg.validate())
    assert check_config(LabConfig().with_overrides({"text.disable": list(RULES)})).text.disable
    with pytest.raises(ConfigError, match=r"text.disable: unknown rule\(s\) 'nope'"):
        create_app(cfg, "")  # the endpoint refuses it before it starts


def test_report_counts_and_sizes():
    s = sanitize("a\x00b\n\n\nc")
    assert s.report["chars_in"] == 7 and s.report["chars_out"] == len(s.text)
    assert s.report["paragraphs"] == 2
