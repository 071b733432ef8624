"""What a G2P returns and what is done with its phonemes before the model: the
:class:`Phonemized` result (phonemes, the words they came from and where, and the
report), :func:`clean_phonemes` (only symbols in Kokoro's vocabulary) and
:func:`tokenize` (symbols to token ids), and the helpers the readers share to place
words (:func:`even_spans`, :func:`alnum_words`) and join parts (:func:`joined`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from labkit.kokoro import VOCAB


#: misaki's marker for a word it could not read (never a sound: it is not in the vocabulary)
UNKNOWN = "❓"
#: a run of letters and digits (what is spoken of a word)
ALNUM = re.compile(r"[^\W_]+")


@dataclass
class Phonemized:
    """Phonemes for a text, the words they came from and where, and what was lost."""

    text: str
    phonemes: str
    lang: str
    #: words misaki did not know and espeak phonemized
    fallbacks: list[str] = field(default_factory=list)
    #: words neither could phonemize (would have been read as the unknown marker)
    unknown: list[str] = field(default_factory=list)
    #: symbols removed because Kokoro's vocabulary lacks them: symbol -> count
    dropped: dict[str, int] = field(default_factory=dict)
    engine: str = "misaki"
    cached: bool = False
    #: the words that produced phonemes, in order (what the listener hears)
    words: list[str] = field(default_factory=list)
    #: non-Latin runs read by espeak in their own language: {"text", "script", "lang"}
    routed: list[dict] = field(default_factory=list)
    #: inline pronunciations ``[word](/phonemes/)`` disarmed (untrusted text)
    overrides_blocked: int = 0
    #: words the personal lexicon (LabConfig.lexicon) gave their phonemes, in order
    overridden: list[str] = field(default_factory=list)
    #: each spoken word as written and its [start, end) in ``phonemes`` (= token indices,
    #: one token per symbol); in text order, one per entry of ``words``. Where the G2P does
    #: not say which phonemes belong to which word (espeak), the groups between spaces are
    #: matched to the words, or the symbols shared out evenly when the counts differ.
    spans: list[tuple[str, int, int]] = field(default_factory=list)
    #: each spoken word's [start, end) in ``text`` (one per entry of ``spans``): the
    #: characters it was read from (a symbol read into it, "$" of "$3.50", included)
    chars: list[tuple[int, int]] = field(default_factory=list)
    #: the lexicon entries that applied, in order: {"word", "section", "entry", "phonemes"}
    applied: list[dict] = field(default_factory=list)
    #: inline pronunciations obeyed (trusted text): {"word", "phonemes"}
    inline: list[dict] = field(default_factory=list)

    def report(self) -> dict:
        return {"engine": self.engine, "fallbacks": self.fallbacks, "unknown": self.unknown,
                "dropped": self.dropped, "cached": self.cached, "routed": self.routed,
                "overrides_blocked": self.overrides_blocked, "overridden": self.overridden,
                "lexicon_applied": self.applied, "inline": self.inline}


def clean_phonemes(phonemes: str) -> tuple[str, dict[str, int]]:
    """Keep only symbols in the vocabulary; count what was dropped. Whitespace runs
    become one space (Kokoro's word separator)."""
    out: list[str] = []
    dropped: dict[str, int] = {}
    for ch in phonemes:
        if ch.isspace():
            if out and out[-1] != " ":
                out.append(" ")
            if ch != " ":
                dropped[repr(ch)] = dropped.get(repr(ch), 0) + 1
            continue
        if ch in VOCAB:
            out.append(ch)
        else:
            dropped[ch] = dropped.get(ch, 0) + 1
    return "".join(out).strip(), dropped


def lost_symbols(dropped: dict[str, int]) -> dict[str, int]:
    """The symbols :func:`clean_phonemes` removed that were sounds the G2P asked for (every
    one a loss: Mandarin tone digits, the unknown marker, brackets), leaving out whitespace
    it only normalized (recorded under ``repr`` keys such as ``"'\\t'"``)."""
    return {k: v for k, v in dropped.items() if len(k) == 1}


def even_spans(words: list[str], phonemes: str) -> list[tuple[str, int, int]]:
    """Word spans when only the word list and the phoneme string are known: the
    space-separated phoneme groups, one per word when the counts agree; otherwise the
    symbols shared out evenly in word order."""
    if not words or not phonemes:
        return []
    groups = [(m.start(), m.end()) for m in re.finditer(r"\S+", phonemes)]
    if len(groups) == len(words):
        return [(w, a, b) for w, (a, b) in zip(words, groups)]
    n = len(phonemes)
    cuts = [round(k * n / len(words)) for k in range(len(words) + 1)]
    return [(w, cuts[k], cuts[k + 1]) for k, w in enumerate(words)]


def alnum_words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """The runs of letters and digits of ``text`` and where each is (espeak's words)."""
    found = list(ALNUM.finditer(text))
    return [m.group() for m in found], [m.span() for m in found]


def tokenize(phonemes: str) -> list[int]:
    """Token ids for phonemes already cleaned with :func:`clean_phonemes`.

    Raises on anything outside the vocabulary rather than dropping it."""
    try:
        return [VOCAB[ch] for ch in phonemes]
    except KeyError as exc:
        raise ValueError(f"phoneme {exc.args[0]!r} is not in Kokoro's vocabulary; "
                         "pass phonemes through clean_phonemes first") from None


#: punctuation that follows the word before it without a space (Kokoro's symbols)
_NO_SPACE_BEFORE = frozenset(".,!?;:…)”»")


def joined(text: str, parts: list[tuple[int, Phonemized]], lang: str, engine: str) -> Phonemized:
    """Parts of ``text`` (each at its offset) as one Phonemized, phonemes joined by a space."""
    out = Phonemized(text, "", lang, engine=engine)
    for at, p in parts:
        if p.phonemes:
            if out.phonemes and not p.phonemes[0] in _NO_SPACE_BEFORE:
                out.phonemes += " "
            offset = len(out.phonemes)
            out.phonemes += p.phonemes
            out.spans += [(w, a + offset, b + offset) for w, a, b in p.spans]
            out.chars += [(a + at, b + at) for a, b in p.chars]
        out.fallbacks += p.fallbacks
        out.unknown += p.unknown
        out.words += p.words if p.phonemes else []
        out.overrides_blocked += p.overrides_blocked
        out.overridden += p.overridden
        out.applied += p.applied
        out.inline += p.inline
        for k, v in p.dropped.items():
            out.dropped[k] = out.dropped.get(k, 0) + v
    return out


def copied(p: Phonemized, cached: bool) -> Phonemized:
    """A copy of ``p`` (its lists and dicts too) marked ``cached`` or not."""
    return Phonemized(p.text, p.phonemes, p.lang, list(p.fallbacks), list(p.unknown),
                      dict(p.dropped), p.engine, cached, list(p.words),
                      [dict(r) for r in p.routed], p.overrides_blocked, list(p.overridden),
                      list(p.spans), list(p.chars), [dict(a) for a in p.applied],
                      [dict(a) for a in p.inline])
