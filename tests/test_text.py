"""labkit.engine.text: each sanitization rule, the report, the cap."""
from __future__ import annotations

import pytest

from labkit.config import ConfigError, TextConfig
from labkit.engine.text import RULES, InputTooLong, sanitize, script_runs


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


def test_url_read_as_domain_and_path_query_recorded():
    s = sanitize("See https://docs.python.org/3/library/re.html?highlight=sub#re.sub now.")
    assert s.text == "See docs dot python dot org slash 3 slash library slash re html now."
    assert any("highlight" in r["text"] for r in s.report["removed"])


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


def test_report_counts_and_sizes():
    s = sanitize("a\x00b\n\n\nc")
    assert s.report["chars_in"] == 7 and s.report["chars_out"] == len(s.text)
    assert s.report["paragraphs"] == 2
