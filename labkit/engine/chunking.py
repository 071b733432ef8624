"""Cutting sanitized text into pieces Kokoro can take (<= 510 tokens each).

Kokoro is not a streaming model: audio comes sooner only if the text is cut into pieces
that are synthesized in order while earlier ones play. Where we cut decides three things:

* time to first audio: the first piece should be short (the *primer*: a few words that
  end at a natural break), because nothing plays until it is synthesized;
* no gaps: each later piece must be ready before the audio already queued runs out.
  ``schedule: adaptive`` (the default) sizes each piece from the measured synthesis speed
  and the audio buffered ahead of the listener (:mod:`labkit.engine.schedule`);
  ``schedule: ramp`` assumes compute ~ RTF x duration and lets piece k+1 hold about
  ``growth`` times the audio queued so far (:func:`labkit.engine.schedule.ramp_budget`);
* prosody: Kokoro was trained on whole utterances, so cuts at sentence ends are best,
  then at clause punctuation, then between words; never inside a word.

Strategies (``ChunkingConfig.strategy``):

``primer``   a short first piece, then whole sentences packed up to a budget set by the
             schedule (adaptive or ramp), at most ``max_tokens`` (the shipped default);
``sentence`` one piece per sentence (short ones merged up to ``min_tokens``);
``clause``   one piece per clause (split at , ; : and dashes too);
``budget``   whole sentences packed greedily up to ``max_tokens``;
``none``     as few pieces as possible (sentences packed up to the 510-token limit): the
             unchunked reference.

Invariants (tests prove them on long and hostile inputs): every word of the input is in
exactly one piece, in order (pieces are spans of the text, cut only at whitespace); a
paragraph break ("\\n\\n") always ends a piece; no piece is over 510 tokens. The one
exception to "never inside a word" is a single "word" that alone phonemizes to more than
510 tokens (e.g. a 60-digit number): it is cut between characters and the pieces say so
(``boundary == "split-word"``) instead of dropping the tail.

Pieces are produced lazily (:func:`iter_pieces`): the streaming pipeline phonemizes the
primer and starts synthesizing before the rest of the text has been looked at. The words
and where sentences and clauses end are labkit.engine.sentences'; this module plans the
pieces over them and checks the result (:func:`coverage`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

from labkit.config import ChunkingConfig
from labkit.engine import schedule
from labkit.engine.g2p import G2P
from labkit.engine.sentences import SOFT_BREAK_BEFORE, clauses_of, sentences_of, words_of
from labkit.kokoro import MAX_TOKENS

STRATEGIES = ("primer", "sentence", "clause", "budget", "none")
#: where a piece's prosody comes from (ChunkingConfig.prosody; labkit.engine.prosody)
PROSODIES = ("piece", "sentence")
#: what part A runs over for the stream's first piece (ChunkingConfig.opening)
OPENINGS = ("prefix", "sentence")
#: what ended a piece, from the longest pause to none
BOUNDARIES = ("paragraph", "sentence", "clause", "word", "split-word")


class ChunkingError(ValueError):
    """A chunking setting is out of range; the message names it and what is allowed."""


@dataclass
class Piece:
    text: str
    phonemes: str
    #: what ended it: "paragraph", "sentence", "clause", "word" (a cut between words with
    #: no punctuation) or "split-word" (inside an over-long word)
    boundary: str = "sentence"
    #: character span in the sanitized text: text == source[start:end]
    start: int = 0
    end: int = 0
    index: int = 0
    #: character span of the whole sentence(s) the piece lies in (``prosody: sentence``
    #: vocodes the piece from part A over that span); None inside an over-long word
    context: tuple[int, int] | None = None

    @property
    def whole(self) -> bool:
        """Whether the piece is its context: whole sentences (nothing to window)."""
        return self.context is None or self.context == (self.start, self.end)

    @property
    def tokens(self) -> int:
        return len(self.phonemes)

    @property
    def words(self) -> list[str]:
        return self.text.split()


# -- the splitter ---------------------------------------------------------------------------
class _Splitter:
    def __init__(self, text: str, g2p: G2P | Callable, cfg: ChunkingConfig,
                 budget: Callable[[list[int], int], int] | None = None,
                 primer_floor: int | Callable[[int], int] = 0):
        self.text = text
        self.g2p = g2p
        self.cfg = cfg
        self.words = words_of(text)
        #: word index -> (first word, end word) of its sentence
        self.sentence_of: list[tuple[int, int]] = [
            s for s in sentences_of(self.words) for _ in range(s[1] - s[0])]
        self.limit = MAX_TOKENS if cfg.strategy == "none" else min(cfg.max_tokens, MAX_TOKENS)
        self.budget = budget or self.default_budget()
        #: the fewest tokens the primer may hold: a number, or a function of the first
        #: sentence's tokens (a prefix-made first piece leaves that sentence's part A to the
        #: next piece, which the first must outlast)
        self.primer_floor = primer_floor
        #: the character the first sentence's pieces may end at while they come from the
        #: primer's opening prefix (``opening: prefix``); None once its own part A has run
        self.prefix_until: int | None = None

    def default_budget(self) -> Callable[[list[int], int], int]:
        """The budget of the piece after ``history`` (token counts so far) without a live
        stream: the fixed ramp, or the adaptive rule on a simulated clock."""
        cfg = self.cfg
        if cfg.schedule == "ramp":
            return lambda history, part_a_tokens=0: schedule.ramp_budget(history, cfg.growth, cfg.min_tokens, self.limit)
        return schedule.PlannedSchedule(cfg, None, self.limit).budget

    def part_a_due(self, i: int) -> int:
        """Tokens of the part A a piece starting at word ``i`` runs first, under sentence
        prosody (labkit.engine.prosody): its whole sentence's when it opens one, or when it
        goes on from a primer made from an opening prefix (until a piece past the prefix's
        span has paid it: :meth:`opened`); else 0."""
        first, end = self.sentence_of[i]
        if self.cfg.prosody != "sentence" or (i != first and self.prefix_until is None):
            return 0
        return len(self.phonemes(first, end))

    def opened(self, end: int, j: int) -> None:
        """The primer ends at word ``end`` of the first sentence, which ends at word ``j``:
        was its part A over an opening prefix (more than the lookahead follows it), and how
        far may the pieces after it take from that prefix (the span, when words cover it)?"""
        cfg, left = self.cfg, j - end
        if cfg.prosody != "sentence" or cfg.opening != "prefix" or left <= cfg.opening_lookahead_words:
            return
        span = cfg.opening_span_words if left > cfg.opening_lookahead_words + cfg.opening_span_words else 0
        self.prefix_until = self.words[end + span - 1].end

    # phonemes of a word range (cached by the G2P's LRU)
    def span(self, i: int, j: int) -> str:
        return self.text[self.words[i].start:self.words[j - 1].end]

    def phonemes(self, i: int, j: int) -> str:
        return self.g2p(self.span(i, j)).phonemes

    def piece(self, i: int, j: int, phonemes: str | None = None) -> Piece:
        last = self.words[j - 1]
        boundary = ("paragraph" if last.paragraph_end else last.mark or "word")
        ph = self.phonemes(i, j) if phonemes is None else phonemes
        first, end = self.sentence_of[i][0], self.sentence_of[j - 1][1]
        return Piece(self.span(i, j), ph, boundary, self.words[i].start, last.end,
                     context=(self.words[first].start, self.words[end - 1].end))

    # fitting a word range under a budget -------------------------------------------------
    def fit(self, i: int, j: int, budget: int) -> list[Piece]:
        """words[i:j] as pieces of <= budget tokens: whole if it fits, else at clause
        marks (packed), else between words (balanced), else inside one over-long word."""
        ph = self.phonemes(i, j)
        if len(ph) <= budget:
            return [self.piece(i, j, ph)]
        if j - i == 1:
            return self.split_word(i, budget)
        clauses = clauses_of(self.words, i, j)
        if len(clauses) > 1:
            return self.pack(clauses, budget)
        # no punctuation: n balanced parts cut between words, soft breaks preferred
        parts = max(2, math.ceil(len(ph) / budget))
        cuts = self.balanced_cuts(i, j, parts)
        out: list[Piece] = []
        for a, b in zip([i, *cuts], [*cuts, j]):
            out.extend(self.fit(a, b, budget))
        return out

    def balanced_cuts(self, i: int, j: int, parts: int) -> list[int]:
        n_chars = self.words[j - 1].end - self.words[i].start
        cuts = []
        for p in range(1, parts):
            target = self.words[i].start + n_chars * p / parts
            best = min(range(i + 1, j), key=lambda k: abs(self.words[k].start - target)
                       - (0.5 * n_chars / parts / 4 if self.words[k].text.lower() in SOFT_BREAK_BEFORE
                          else 0))
            if (not cuts or best > cuts[-1]) and best < j:
                cuts.append(best)
        return cuts

    def pack(self, ranges: list[tuple[int, int]], budget: int) -> list[Piece]:
        """Consecutive word ranges packed greedily under budget (each fitted first)."""
        out: list[Piece] = []
        cur: tuple[int, int] | None = None
        cur_ph = ""
        for a, b in ranges:
            if cur is not None:
                merged = self.phonemes(cur[0], b)
                if len(merged) <= budget:
                    cur, cur_ph = (cur[0], b), merged
                    continue
                out.append(self.piece(*cur, cur_ph))
                cur = None
            ph = self.phonemes(a, b)
            if len(ph) <= budget:
                cur, cur_ph = (a, b), ph
            else:
                out.extend(self.fit(a, b, budget))
        if cur is not None:
            out.append(self.piece(*cur, cur_ph))
        return out

    def split_word(self, i: int, budget: int) -> list[Piece]:
        """One word over the budget: cut between characters so nothing is dropped."""
        w = self.words[i]
        out: list[Piece] = []
        pos = w.start
        while pos < w.end:
            lo, hi = pos + 1, w.end
            while lo < hi:  # the longest run from pos that fits
                mid = (lo + hi + 1) // 2
                if len(self.g2p(self.text[pos:mid]).phonemes) <= budget:
                    lo = mid
                else:
                    hi = mid - 1
            end = lo
            ph = self.g2p(self.text[pos:end]).phonemes
            if len(ph) > MAX_TOKENS:  # one character over the limit: cannot happen with Kokoro's G2P
                raise ChunkingError(f"{self.text[pos:end]!r} phonemizes to {len(ph)} tokens")
            boundary = "split-word" if end < w.end else ("paragraph" if w.paragraph_end
                                                         else w.mark or "word")
            out.append(Piece(self.text[pos:end], ph, boundary, pos, end))
            pos = end
        return out

    # the primer ------------------------------------------------------------------------------
    def primer_end(self, i: int, j: int) -> int:
        """Where the primer ends in the first sentence words[i:j]: the longest prefix of at
        most primer_max_words ending at punctuation, else before a soft word, else the
        word limit; then shortened until it fits primer_max_tokens."""
        cfg = self.cfg
        n_max = cfg.primer_max_words
        if j - i <= n_max:
            end = j
        else:
            lo = i + max(1, min(cfg.primer_min_words, n_max))
            candidates = range(lo, i + n_max + 1)
            punct = [k for k in candidates if self.words[k - 1].mark]
            soft = [k for k in candidates if self.words[k].text.lower() in SOFT_BREAK_BEFORE]
            end = (punct or soft or [i + n_max])[-1]
        while end - i > 1 and len(self.phonemes(i, end)) > cfg.primer_max_tokens:
            end -= 1
        if end < j and self.primer_floor:
            floor = self.floor_for(i, j, end)
            if len(self.phonemes(i, end)) < floor:
                end = self.primer_extended(i, j, end, floor)
        return end

    def floor_for(self, i: int, j: int, end: int) -> int:
        """The primer's floor in the first sentence words[i:j], the primer so far ending
        at ``end``: the sentence's tokens estimated from its characters at the primer's
        tokens per character (no G2P call over a long sentence before the first piece)."""
        f = self.primer_floor
        if callable(f):
            per_char = len(self.phonemes(i, end)) / max(1, len(self.span(i, end)))
            f = f(round(per_char * len(self.span(i, j))))
        return min(max(0, int(f)), self.limit)

    def primer_extended(self, i: int, j: int, end: int, floor: int) -> int:
        """The primer grown to hold at least ``floor`` tokens (a loaded machine
        cannot follow a shorter one without a gap): the first word end in the sentence
        that reaches the floor, moved on to punctuation (else before a soft word) when
        one comes within a quarter more tokens; the whole sentence when it is shorter
        (then the schedule sizes what follows). Token counts are estimated from the
        characters at the natural primer's tokens per character, so the search costs no
        G2P call; the one for the piece itself checks the estimate."""
        per_char = len(self.phonemes(i, end)) / max(1, len(self.span(i, end)))

        def est(k: int) -> float:
            return per_char * len(self.span(i, k))

        k = next((kk for kk in range(end + 1, j + 1) if est(kk) >= floor), j)
        reach = 1.25 * est(k)
        near = [kk for kk in range(k, min(j, k + 4) + 1) if est(kk) <= reach]
        punct = [kk for kk in near if self.words[kk - 1].mark]
        soft = [kk for kk in near if kk < j and self.words[kk].text.lower() in SOFT_BREAK_BEFORE]
        k = (punct or soft or [k])[0]
        while k < j and len(self.phonemes(i, k)) < floor:  # the estimate fell short
            k += 1
        while k - i > 1 and len(self.phonemes(i, k)) > self.limit:
            k -= 1
        return k

    # strategies --------------------------------------------------------------------------------
    def iter(self) -> Iterator[Piece]:
        cfg = self.cfg
        sentences = sentences_of(self.words)
        if not sentences:
            return
        strategy = cfg.strategy
        if strategy == "clause":
            ranges = [c for s in sentences for c in clauses_of(self.words, *s)]
            yield from self.merge_small(ranges)
            return
        if strategy == "sentence":
            yield from self.merge_small(sentences)
            return
        if strategy in ("budget", "none"):
            for para in self.paragraphs(sentences):
                yield from self.pack(para, self.limit)
            return
        # primer, then pieces sized by the schedule (the ramp or the adaptive budget)
        i, j = sentences[0]
        end = self.primer_end(i, j)
        primer = self.fit(i, end, MAX_TOKENS)
        self.opened(end, j)
        yield from primer
        history = [p.tokens for p in primer]
        rest = ([(end, j)] if end < j else []) + sentences[1:]
        for para in self.paragraphs(rest):
            while para:
                budget = max(1, min(self.limit, int(self.budget(history, self.part_a_due(para[0][0])))))
                # the budget changes with each piece, so take one piece (or the parts of one
                # over-long word) and recompute it
                candidates = self.pack_prefix(para, budget)
                while candidates[0].boundary == "split-word" and budget < self.limit:
                    # a small budget must not cut inside a word that fits whole
                    budget = min(self.limit, 2 * budget)
                    candidates = self.pack_prefix(para, budget)
                taken = [candidates[0]]
                while taken[-1].boundary == "split-word":
                    taken.append(candidates[len(taken)])
                if self.prefix_until is not None and taken[-1].end > self.prefix_until:
                    self.prefix_until = None  # past the prefix: this piece runs the sentence's part A
                for p in taken:
                    history.append(p.tokens)
                    yield p
                para = self.remaining(taken[-1].end, para)

    def pack_prefix(self, ranges: list[tuple[int, int]], budget: int) -> list[Piece]:
        """The next piece(s) from the front of ranges: whole ranges packed under the
        budget, or the first range fitted under it."""
        a, b = ranges[0]
        ph = self.phonemes(a, b)
        if len(ph) > budget:
            return self.fit(a, b, budget)
        for k in range(1, len(ranges)):
            merged = self.phonemes(a, ranges[k][1])
            if len(merged) > budget:
                break
            ph, b = merged, ranges[k][1]
        return [self.piece(a, b, ph)]

    def remaining(self, consumed: int, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The ranges after character ``consumed`` (a piece may have cut a range)."""
        first_end = consumed
        out = []
        for a, b in ranges:
            if self.words[b - 1].end <= first_end:
                continue
            if self.words[a].start < first_end:
                a = next(k for k in range(a, b) if self.words[k].start >= first_end)
            out.append((a, b))
        return out

    def paragraphs(self, ranges: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
        out: list[list[tuple[int, int]]] = [[]]
        for a, b in ranges:
            out[-1].append((a, b))
            if self.words[b - 1].paragraph_end:
                out.append([])
        return [p for p in out if p]

    def merge_small(self, ranges: list[tuple[int, int]]) -> Iterator[Piece]:
        """One piece per range, but a range under min_tokens joins the next one (same
        paragraph) while the result stays under the limit."""
        for para in self.paragraphs(ranges):
            k = 0
            while k < len(para):
                a, b = para[k]
                ph = self.phonemes(a, b)
                while len(ph) < self.cfg.min_tokens and k + 1 < len(para):
                    merged = self.phonemes(a, para[k + 1][1])
                    if len(merged) > self.limit:
                        break
                    k += 1
                    b, ph = para[k][1], merged
                yield from (self.fit(a, b, self.limit) if len(ph) > self.limit
                            else [self.piece(a, b, ph)])
                k += 1


def validate(cfg: ChunkingConfig) -> None:
    if cfg.strategy not in STRATEGIES:
        raise ChunkingError(f"chunking.strategy={cfg.strategy!r}: allowed are {', '.join(STRATEGIES)}")
    if not 1 <= cfg.max_tokens <= MAX_TOKENS:
        raise ChunkingError(f"chunking.max_tokens={cfg.max_tokens}: must be 1..{MAX_TOKENS} "
                            "(Kokoro's position table)")
    if not 0 <= cfg.min_tokens <= cfg.max_tokens:
        raise ChunkingError(f"chunking.min_tokens={cfg.min_tokens}: must be 0..max_tokens "
                            f"({cfg.max_tokens})")
    if cfg.primer_max_words < 1 or cfg.primer_max_tokens < 1:
        raise ChunkingError("chunking.primer_max_words and primer_max_tokens must be >= 1")
    _whole(cfg, "primer_max_tokens_idle", 0, "0: primer_max_tokens whatever the load")
    _whole(cfg, "primer_min_tokens_loaded", 0, "0: the speed model's break-even alone")
    if cfg.crossfade_ms < 0:
        raise ChunkingError(f"chunking.crossfade_ms={cfg.crossfade_ms}: must be >= 0")
    if cfg.prosody not in PROSODIES:
        raise ChunkingError(f"chunking.prosody={cfg.prosody!r}: allowed are {', '.join(PROSODIES)}")
    if cfg.window_context_frames < 0:
        raise ChunkingError(f"chunking.window_context_frames={cfg.window_context_frames}: must be >= 0")
    if cfg.opening not in OPENINGS:
        raise ChunkingError(f"chunking.opening={cfg.opening!r}: allowed are {', '.join(OPENINGS)}")
    _whole(cfg, "opening_lookahead_words", 1, "words after the first piece that its part A runs over")
    _whole(cfg, "opening_span_words", 0, "words after the first piece that later pieces may take from its prefix")
    problem = schedule.validate(cfg)
    if problem:
        raise ChunkingError(problem)


def _whole(cfg: ChunkingConfig, name: str, least: int, meaning: str) -> None:
    """Raise ChunkingError unless ``chunking.<name>`` is a whole number >= ``least``."""
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ChunkingError(f"chunking.{name}={value!r}: must be a whole number >= {least} ({meaning})")


def iter_pieces(text: str, g2p: G2P | Callable, cfg: ChunkingConfig | None = None,
                budget: Callable[[list[int], int], int] | None = None,
                primer_floor: int | Callable[[int], int] = 0) -> Iterator[Piece]:
    """Pieces of sanitized text, lazily, numbered in text order. ``budget(history,
    part_a_tokens)``: the token budget of the next piece after the primer given the token
    counts so far and the part A it runs first (:meth:`_Splitter.part_a_due`), e.g. a
    live stream's :class:`labkit.engine.schedule.LiveSchedule`; default: the
    configured schedule without a clock (strategy "primer" only). ``primer_floor``: the
    fewest tokens the primer may hold (the adaptive schedule's, for the load now), or a
    function of the first sentence's tokens giving it."""
    cfg = cfg or ChunkingConfig()
    validate(cfg)
    splitter = _Splitter(text, g2p, cfg, budget, primer_floor)
    for index, piece in enumerate(splitter.iter()):
        piece.index = index
        yield piece


def split(text: str, g2p: G2P | Callable, cfg: ChunkingConfig | None = None,
          budget: Callable[[list[int], int], int] | None = None,
          primer_floor: int | Callable[[int], int] = 0) -> list[Piece]:
    """All pieces of sanitized text (see the module docstring for the strategies)."""
    return list(iter_pieces(text, g2p, cfg, budget, primer_floor))


# -- checks -----------------------------------------------------------------------------------
@dataclass
class Coverage:
    ok: bool
    words_in: int
    words_out: int
    #: the first difference found, for the error message
    problem: str = ""
    pieces_over_limit: list[int] = field(default_factory=list)


def coverage(text: str, pieces: list[Piece]) -> Coverage:
    """Every word of ``text`` in exactly one piece, in order; no piece over 510 tokens.

    Checks both the spans (contiguous, in order, cut only at whitespace except marked
    split words) and the words themselves."""
    words = text.split()
    over = [p.index for p in pieces if p.tokens > MAX_TOKENS]
    rebuilt: list[str] = []
    glue = False
    pos = 0
    for p in pieces:
        if text[p.start:p.end] != p.text:
            return Coverage(False, len(words), len(rebuilt), f"piece {p.index} span does not match its text", over)
        gap = text[pos:p.start]
        if gap.strip():
            return Coverage(False, len(words), len(rebuilt), f"text skipped before piece {p.index}: {gap[:40]!r}", over)
        if glue and gap:
            return Coverage(False, len(words), len(rebuilt), f"piece {p.index} does not continue a split word", over)
        ws = p.text.split()
        if glue and rebuilt and ws:
            rebuilt[-1] += ws.pop(0)
        rebuilt.extend(ws)
        glue = p.boundary == "split-word"
        pos = p.end
    if text[pos:].strip():
        return Coverage(False, len(words), len(rebuilt), f"text after the last piece: {text[pos:pos + 40]!r}", over)
    if rebuilt != words:
        first = next((k for k, (a, b) in enumerate(zip(words, rebuilt)) if a != b), min(len(words), len(rebuilt)))
        return Coverage(False, len(words), len(rebuilt), f"word {first} differs", over)
    return Coverage(not over, len(words), len(rebuilt), "" if not over else "pieces over the limit", over)


def words_present(text: str, chunk_texts: list[str]) -> bool:
    """The words of ``text`` are exactly the words of the chunks, in order (split words
    rejoined)."""
    return "".join(text.split()) == "".join("".join(t.split()) for t in chunk_texts)
