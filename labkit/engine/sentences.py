"""The words of sanitized text and where its sentences and clauses end: what chunking
(labkit.engine.chunking) cuts at. A word is a whitespace-delimited span with the
punctuation that ends it read as a sentence end, a clause end or nothing (an
abbreviation's full stop, "Dr." or "e.g.", does not end a sentence); a paragraph break
ends a sentence too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_CLOSERS = "\"'”’»)]}"
_SENTENCE_END = re.compile(r"[.!?…]+[" + re.escape(_CLOSERS) + r"]*$")
_CLAUSE_END = re.compile(r"[,;:—–]+[" + re.escape(_CLOSERS) + r"]*$")
_DASH_WORD = re.compile(r"^[—–-]+$")
#: abbreviations whose full stop does not end a sentence
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e cf fig no vol ca approx dept est inc ltd co "
    "jan feb mar apr jun jul aug sep sept oct nov dec mt ft".split())
#: words before which a cut between words sounds least abrupt (primer without punctuation)
SOFT_BREAK_BEFORE = frozenset(
    "and but or nor so yet because although though while whereas when whenever where "
    "which who whom whose that if unless until since as after before than then to of in "
    "on at by for from with without into onto over under about through during".split())


@dataclass
class Word:
    """A whitespace-delimited word: its span in the text and what ends it."""

    start: int
    end: int
    text: str
    #: "sentence", "clause" or "" (no punctuation) after this word
    mark: str = ""
    paragraph_end: bool = False


def words_of(text: str) -> list[Word]:
    """Whitespace-delimited words with their spans and what punctuation ends them."""
    words: list[Word] = []
    para_breaks = [m.start() for m in re.finditer(r"\n[^\S\n]*\n", text)]
    matches = list(re.finditer(r"\S+", text))
    bi = 0
    for i, m in enumerate(matches):
        w = Word(m.start(), m.end(), m.group())
        nxt = matches[i + 1] if i + 1 < len(matches) else None
        while bi < len(para_breaks) and para_breaks[bi] < w.end:
            bi += 1
        w.paragraph_end = nxt is None or (bi < len(para_breaks) and para_breaks[bi] < nxt.start())
        w.mark = _mark(w.text, nxt.group() if nxt else None)
        words.append(w)
    return words


def _mark(word: str, next_word: str | None) -> str:
    if _SENTENCE_END.search(word):
        core = word.rstrip(_CLOSERS)
        if core.endswith(".") and not core.endswith(".."):
            stem = core[:-1].lower().lstrip("(\"'“‘")
            if stem in ABBREVIATIONS or re.fullmatch(r"[a-z]", stem):
                return ""  # "Dr." / "J." / "e.g.": not a sentence end
            if next_word is not None and next_word[:1].islower():
                return ""  # "... e.g. something", "approx. five"
        if next_word is not None and next_word[:1].islower():
            return "clause"  # '"Where?" asked Tom': the sentence goes on
        return "sentence"
    if _CLAUSE_END.search(word) or (next_word is not None and _DASH_WORD.match(next_word)):
        return "clause"
    return ""


def sentences_of(words: list[Word]) -> list[tuple[int, int]]:
    """Word index ranges [i, j) of sentences; a paragraph end also ends a sentence."""
    out, start = [], 0
    for i, w in enumerate(words):
        if w.mark == "sentence" or w.paragraph_end:
            out.append((start, i + 1))
            start = i + 1
    if start < len(words):
        out.append((start, len(words)))
    return out


def clauses_of(words: list[Word], i: int, j: int) -> list[tuple[int, int]]:
    """Word ranges of the clauses of words[i:j]."""
    out, start = [], i
    for k in range(i, j):
        if words[k].mark in ("clause", "sentence") or k == j - 1:
            out.append((start, k + 1))
            start = k + 1
    return out
