"""Chunking: every word in exactly one piece, in order; the 510 limit; the primer."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from labkit.measure import texts
from labkit.engine import chunking, sentences
from labkit.engine.chunking import ChunkingError, coverage, split
from labkit.engine.schedule import ramp_budget
from labkit.config import ChunkingConfig
from labkit.kokoro import MAX_TOKENS
from labkit.engine.text import sanitize

STRATEGIES = chunking.STRATEGIES


def fake_g2p(text: str):
    """One token per letter/punctuation, spaces kept: fast and predictable."""
    return SimpleNamespace(phonemes=" ".join(text.split()))


def hostile_texts() -> dict[str, str]:
    rng = random.Random(7)
    vocab = ["the", "a", "harbor", "and", "which", "supercalifragilistic", "Dr.", "e.g.",
             "x", "—", "...", "?!", "'quoted'", "(aside)", "3.14", "U.S.", "ok,", "end."]
    return {
        "no punctuation": " ".join(rng.choice(["word", "another", "and", "then", "river"])
                                   for _ in range(900)),
        "random soup": " ".join(rng.choice(vocab) for _ in range(1200)),
        "one giant word": "z" * 1400,
        "giant word inside": "Start here. " + "ab" * 700 + " and the end.",
        "punctuation only": "... !!! ,,, ;;; ??",
        "paragraphs": "One.\n\nTwo two.\n\n\n\nThree three three, four.\n\nFive",
        "abbreviations": "Dr. Smith met Mr. J. Jones at 5 p.m. on St. Mark's Sq. today. Then left.",
        "long sentence commas": ", ".join(["a short clause here"] * 200) + ".",
    }


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", list(hostile_texts()))
def test_every_word_once_in_order_on_hostile_inputs(strategy, name):
    text = sanitize(hostile_texts()[name]).text
    cfg = ChunkingConfig(strategy=strategy, max_tokens=120, min_tokens=10)
    pieces = split(text, fake_g2p, cfg)
    cov = coverage(text, pieces)
    assert cov.ok, cov.problem
    assert cov.words_out == len(text.split())
    assert all(p.tokens <= MAX_TOKENS for p in pieces)
    limit = MAX_TOKENS if strategy == "none" else cfg.max_tokens
    assert all(p.tokens <= limit for p in pieces), [p.tokens for p in pieces]
    assert [p.index for p in pieces] == list(range(len(pieces)))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_article_coverage_and_limit_with_real_g2p(strategy, g2p_us):
    text = sanitize(texts.article()).text
    pieces = split(text, g2p_us, ChunkingConfig(strategy=strategy))
    cov = coverage(text, pieces)
    assert cov.ok, cov.problem
    assert cov.words_in > 1400
    assert max(p.tokens for p in pieces) <= MAX_TOKENS


def test_overlong_number_is_cut_not_dropped(g2p_us):
    text = "Call " + "1234567890" * 6 + " now."
    pieces = split(text, g2p_us, ChunkingConfig(strategy="sentence"))
    assert coverage(text, pieces).ok
    assert any(p.boundary == "split-word" for p in pieces)
    assert all(0 < p.tokens <= MAX_TOKENS for p in pieces)


def test_paragraph_break_always_ends_a_piece():
    text = "First paragraph has words.\n\nSecond one too.\n\nThird"
    for strategy in STRATEGIES:
        pieces = split(text, fake_g2p, ChunkingConfig(strategy=strategy, min_tokens=200))
        assert all("\n\n" not in p.text for p in pieces)
        assert [p.boundary for p in pieces if p.text.endswith(("words.", "too."))] == ["paragraph"] * 2


def test_never_cuts_inside_a_word():
    text = " ".join(["extraordinarily"] * 100)
    pieces = split(text, fake_g2p, ChunkingConfig(strategy="budget", max_tokens=50, min_tokens=0))
    assert all(set(p.text.split()) == {"extraordinarily"} for p in pieces)
    assert sum(len(p.words) for p in pieces) == 100


def test_abbreviations_and_initials_do_not_end_sentences():
    words = sentences.words_of("Dr. Smith met J. Jones, e.g. at home. Then left.")
    marks = {w.text: w.mark for w in words}
    assert marks["Dr."] == "" and marks["J."] == "" and marks["e.g."] == ""
    assert marks["Jones,"] == "clause" and marks["home."] == "sentence"


def test_question_followed_by_lowercase_is_a_clause():
    words = sentences.words_of('"Where is it?" asked Tom.')
    assert words[2].mark == "clause"


# -- the primer ----------------------------------------------------------------------------
def test_primer_one_word(g2p_us):
    pieces = split("Hello", g2p_us)
    assert [p.text for p in pieces] == ["Hello"]
    assert pieces[0].boundary == "paragraph"


def test_primer_short_sentence_is_one_piece(g2p_us):
    pieces = split("The kettle is on.", g2p_us)
    assert [p.text for p in pieces] == ["The kettle is on."]


def test_primer_cuts_at_punctuation(g2p_us):
    text = "At the edge of the harbor, the old ferry still leaves at seven every morning."
    pieces = split(text, g2p_us)
    assert pieces[0].text == "At the edge of the harbor,"
    assert pieces[0].boundary == "clause"
    assert coverage(text, pieces).ok


def test_primer_without_punctuation_cuts_before_a_soft_word(g2p_us):
    text = ("people who live near the river walk with their dogs along the bank and talk "
            "about the weather for hours without ever getting bored of it")
    cfg = ChunkingConfig(primer_max_words=8)
    pieces = split(text, g2p_us, cfg)
    first = pieces[0].words
    assert cfg.primer_min_words <= len(first) <= cfg.primer_max_words
    nxt = pieces[1].words[0]
    assert nxt in sentences.SOFT_BREAK_BEFORE
    assert pieces[0].boundary == "word"
    assert coverage(text, pieces).ok


def test_primer_respects_its_token_cap(g2p_us):
    text = "Incomprehensibilities notwithstanding, internationalization works, mostly."
    cfg = ChunkingConfig(primer_max_tokens=20)
    pieces = split(text, g2p_us, cfg)
    assert pieces[0].tokens <= 20 or len(pieces[0].words) == 1
    assert coverage(text, pieces).ok


def test_ramp_grows_from_the_primer():
    assert ramp_budget([30], 2.0, 10, 250) == 60
    assert ramp_budget([30, 60], 2.0, 10, 250) == 120
    assert ramp_budget([30, 60, 120], 2.0, 10, 250) == 240
    assert ramp_budget([30, 60, 120, 240], 2.0, 10, 250) == 250
    assert ramp_budget([30], 0, 10, 250) == 250


def test_ramped_pieces_stay_within_their_budget(g2p_us):
    text = sanitize(texts.paragraph()).text
    cfg = ChunkingConfig(schedule="ramp")
    pieces = split(text, g2p_us, cfg)
    history = [pieces[0].tokens]
    for p in pieces[1:]:
        assert p.tokens <= ramp_budget(history, cfg.growth, cfg.min_tokens, cfg.max_tokens)
        history.append(p.tokens)


def test_bad_settings_are_named():
    with pytest.raises(ChunkingError, match="strategy"):
        split("Hi.", fake_g2p, ChunkingConfig(strategy="paragraphs"))
    with pytest.raises(ChunkingError, match="max_tokens"):
        split("Hi.", fake_g2p, ChunkingConfig(max_tokens=600))


def test_coverage_catches_a_dropped_word():
    text = "one two three. four five."
    pieces = split(text, fake_g2p, ChunkingConfig(strategy="sentence", min_tokens=0))
    assert coverage(text, pieces).ok
    assert not coverage(text, pieces[:-1]).ok
    assert not chunking.words_present(text, [p.text for p in pieces[:-1]])


# -- the adaptive schedule's budget, as the chunker takes it ---------------------------------
def test_a_budget_callback_sizes_every_piece_after_the_primer(g2p_us):
    text = sanitize(texts.paragraph()).text
    calls = []

    def budget(history, part_a_tokens):
        calls.append(list(history))
        return 60

    pieces = split(text, g2p_us, ChunkingConfig(), budget=budget)
    assert coverage(text, pieces).ok
    assert all(p.tokens <= 60 for p in pieces[1:])
    assert len(calls) == len(pieces) - 1  # one decision per piece after the primer
    assert calls[0] == [pieces[0].tokens] and calls[-1] == [p.tokens for p in pieces[:-1]]
    # cut at punctuation where the budget allows: most pieces end a clause or sentence
    assert sum(p.boundary in ("clause", "sentence", "paragraph") for p in pieces) >= len(pieces) - 2


def test_the_budget_hears_the_part_a_a_piece_opening_a_sentence_runs_first(g2p_us):
    """Under sentence prosody a piece that opens a sentence runs that sentence's part A
    before its own part B: the budget is told its tokens; a piece inside a sentence, the
    first sentence (the primer's) and piece prosody pay none."""
    text = sanitize(texts.paragraph()).text
    for prosody in ("sentence", "piece"):
        calls = []

        def budget(history, part_a_tokens):
            calls.append(part_a_tokens)
            return 40

        pieces = split(text, g2p_us, ChunkingConfig(prosody=prosody), budget=budget)
        assert len(calls) == len(pieces) - 1  # one call per piece after the primer
        if prosody == "piece":
            assert set(calls) == {0}
            continue
        words = sentences.words_of(text)
        for piece, due in zip(pieces[1:], calls):
            first, end = next(s for s in sentences.sentences_of(words) if words[s[0]].start <= piece.start < words[s[1] - 1].end)
            opens = words[first].start == piece.start
            assert due == (len(g2p_us(text[words[first].start:words[end - 1].end]).phonemes) if opens else 0)
        assert sum(1 for d in calls if d) == len(sentences.sentences_of(words)) - 1


@pytest.mark.parametrize("span", [0, 4])
def test_the_pieces_after_an_opening_prefix_are_charged_their_sentence_s_part_a(g2p_us, span):
    """A primer made from an opening prefix ran part A over the prefix only: the first
    piece after it that goes past the prefix's span runs its sentence's whole part A first,
    and the budget is told so (pieces within the span come from the prefix: each is told,
    as it may go past it); once paid, none of that sentence's later pieces is."""
    text = sanitize(texts.named("opening-30")).text
    cfg = ChunkingConfig(prosody="sentence", opening="prefix", primer_max_words=3,
                         primer_min_words=1, opening_lookahead_words=2, opening_span_words=span)
    calls = []

    def budget(history, part_a_tokens):
        calls.append(part_a_tokens)
        return 6 if len(calls) <= 2 else 40  # small pieces first: some within the span

    pieces = split(text, g2p_us, cfg, budget=budget)
    words = sentences.words_of(text)
    first, end = sentences.sentences_of(words)[0]
    whole = len(g2p_us(text[words[first].start:words[end - 1].end]).phonemes)
    primer_end = next(k for k in range(len(words)) if words[k].end == pieces[0].end) + 1
    until = words[primer_end + span - 1].end
    paid = False
    for piece, due in zip(pieces[1:], calls):
        if piece.start >= words[end - 1].end:
            break  # the next sentence: its own rule (the test above)
        assert due == (0 if paid else whole)
        paid = paid or piece.end > until
    assert paid and calls[0] == whole
    if span:  # the small pieces stayed within the span, so a later one paid
        assert pieces[1].end <= until and calls[1] == whole
    # the opening "sentence" primer ran the whole sentence's part A: nothing is due after it
    calls.clear()
    split(text, g2p_us, ChunkingConfig(**{**cfg.__dict__, "opening": "sentence"}), budget=budget)
    assert calls[0] == 0


def test_a_thin_budget_never_cuts_inside_a_word_that_fits(g2p_us):
    text = "Supercalifragilisticexpialidocious internationalization notwithstanding, yes."
    pieces = split(text, g2p_us, ChunkingConfig(primer_max_words=1), budget=lambda h, a: 1)
    assert coverage(text, pieces).ok
    assert all(p.boundary != "split-word" for p in pieces)


def test_small_budgets_give_more_pieces_than_large_ones(g2p_us):
    text = sanitize(texts.paragraph()).text
    thin = split(text, g2p_us, ChunkingConfig(), budget=lambda h, a: 40)
    wide = split(text, g2p_us, ChunkingConfig(), budget=lambda h, a: 250)
    assert len(thin) > len(wide)
    assert coverage(text, thin).ok and coverage(text, wide).ok


# -- the primer's floor (the adaptive schedule's, for the load sensed) ------------------------
def test_a_primer_floor_lengthens_the_first_piece_to_a_natural_cut(g2p_us):
    text = sanitize(texts.paragraph()).text
    cfg = ChunkingConfig(primer_max_words=5)
    plain = split(text, g2p_us, cfg)
    assert plain[0].tokens < 15
    floored = split(text, g2p_us, cfg, budget=lambda h, a: 60, primer_floor=40)
    first = floored[0]
    assert first.tokens >= 40 and first.tokens <= 1.25 * 40 + 12
    assert first.text.startswith(plain[0].text)
    assert coverage(text, floored).ok
    # a floor the configured primer already meets changes nothing
    same = split(text, g2p_us, cfg, budget=lambda h, a: 60, primer_floor=plain[0].tokens)
    assert same[0].text == plain[0].text


def test_a_primer_floor_may_depend_on_the_first_sentences_length(g2p_us):
    """A prefix-made first piece leaves its sentence's part A to the second piece, so its
    floor is a function of the sentence's tokens (estimated from its characters, without a
    G2P call over it); it is asked only when the primer does not hold the whole sentence."""
    text = sanitize(texts.opening(30)).text
    cfg = ChunkingConfig(primer_max_words=3, primer_min_words=1)
    asked = []

    def floor(sentence_tokens: int) -> int:
        asked.append(sentence_tokens)
        return 40

    pieces = split(text, g2p_us, cfg, budget=lambda h, a: 60, primer_floor=floor)
    whole = len(g2p_us(text.split(". ")[0] + ".").phonemes)
    assert len(asked) == 1 and 0.75 * whole <= asked[0] <= 1.25 * whole
    assert pieces[0].tokens >= 40 and coverage(text, pieces).ok
    asked.clear()
    short = split("The tea's on. It follows.", g2p_us, cfg, budget=lambda h, a: 60, primer_floor=floor)
    assert asked == [] and short[0].text == "The tea's on."  # the primer is the whole sentence


def test_a_primer_floor_past_the_first_sentence_takes_the_sentence(g2p_us):
    text = "The kettle is on. Tea follows shortly after that, then biscuits for everyone here."
    pieces = split(text, g2p_us, ChunkingConfig(), budget=lambda h, a: 60, primer_floor=200)
    assert pieces[0].text == "The kettle is on."
    assert coverage(text, pieces).ok
