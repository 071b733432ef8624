"""Text sanitization before G2P: the driver, and its rules' registry.

The user reads arbitrary selected text aloud: web pages, Markdown, code, terminal output,
PDFs. misaki loses or mangles much of it (a NUL makes espeak stop, NBSP glues words, a
Markdown link is taken as a phoneme override, emoji are read as run-together names ...).
:func:`sanitize` turns such text into plain sentences misaki reads well, running the rules
of :data:`RULES` in order; each rule is written beside its patterns, in
labkit.engine.characters (characters, scripts, punctuation), labkit.engine.readers
(Markdown, URLs, e-mail addresses, code) and labkit.engine.verbalize (dates, times,
versions, units, long numbers, in English words):

* every rule is compiled regexes applied in one pass (this runs on the first-audio path);
* every rule can be switched off by name (``TextConfig.disable``; :data:`RULES` is the one
  list of the names, :func:`check_rule_names` checks them);
* nothing is removed silently: ``Sanitized.report`` counts each rule's changes and lists
  what was left out (emoji, skipped scripts, over-long "words", URL queries);
* paragraph breaks are kept as ``"\\n\\n"`` (chunking turns them into pauses); a paragraph
  that does not end a sentence gets a full stop so it is read as one;
* over ``TextConfig.max_chars`` characters, :class:`InputTooLong` is raised with both numbers;
* for a language other than English (``lang``), the rules that write English words
  (labkit.engine.verbalize.ENGLISH_RULES: dates, times, versions, units, long numbers) are
  left to the language's own G2P, and the language's own script is kept
  (labkit.engine.scripts.LANG_SCRIPTS: Devanagari for hi, kana and Han for ja, Han for zh)
  where ``text.non_latin=skip`` skips other scripts;
* inline pronunciation (``[word](/phonemes/)``, labkit.engine.inline) is taken out before
  the rules and put back around its word after them.
"""
from __future__ import annotations

import re
from array import array
from dataclasses import dataclass, field
from typing import Callable

from labkit.config import ConfigError, TextConfig
from labkit.engine import characters, readers, verbalize
from labkit.engine.inline import put_back, take_out
from labkit.engine.sanitizing import MappedText, RuleRun, terminated


class InputTooLong(ValueError):
    """The input is over the configured cap."""


@dataclass
class Sanitized:
    """What :func:`sanitize` made of a text: the clean text, the report, and where in the
    input each of its characters came from."""

    #: clean text; paragraphs are separated by a blank line ("\n\n")
    text: str
    report: dict = field(default_factory=dict)
    #: per character of ``text``: the span [start, end) of the input it came from (a
    #: rule's output maps to the characters it replaced; a word it kept, to that word)
    starts: array = field(default_factory=lambda: array("l"), repr=False)
    ends: array = field(default_factory=lambda: array("l"), repr=False)
    #: the length of the input (code points)
    chars_in: int = 0

    @property
    def paragraphs(self) -> list[str]:
        return [p for p in self.text.split("\n\n") if p.strip()]

    def source(self, start: int, end: int) -> tuple[int, int]:
        """The span of the input (code points, as sent) that ``text[start:end]`` came
        from: the smallest span holding every character's origin. An empty or unmapped
        range gives an empty span where it lies."""
        if not len(self.starts):  # made without a map: the text is the input
            return max(0, min(start, self.chars_in)), max(0, min(end, self.chars_in))
        start, end = max(0, start), min(end, len(self.starts))
        if end <= start:
            at = self.starts[start] if start < len(self.starts) else self.chars_in
            return at, at
        return min(self.starts[start:end]), max(self.ends[start:end])

    def reached(self) -> bytearray:
        """Per input character: 1 where a character of ``text`` (not a space) came from it,
        i.e. it reached the G2P (a word kept, or read as what a rule wrote); 0 for what
        was removed or was markup. A rule's output wider than 64 characters marks only
        its ends (bounded work)."""
        out = bytearray(self.chars_in)
        for k, ch in enumerate(self.text):
            if ch.isspace():
                continue
            a, b = self.starts[k], self.ends[k]
            if b - a <= 64:
                out[a:b] = b"\x01" * (b - a)
            else:
                out[a] = out[b - 1] = 1
        return out


# -- paragraphs (the last rule: what the G2P and chunking see) ---------------------------
_PARA_SPLIT = re.compile(r"\n[ \t]*\n\s*")
_HYPHEN_BREAK = re.compile(r"(?<=[a-z])-\n[ \t]*(?=[a-z])")
_WS = re.compile(r"\s+")
_SPACE_PUNCT = re.compile(r" +(?=[,.!?;:…)])|(?<=\() +")
_HAS_WORD = re.compile(r"[^\W_]")


def paragraphs(run: RuleRun, t: MappedText) -> MappedText:
    """Paragraphs apart by one blank line, spaces collapsed, a word hyphenated across a
    line break joined; a paragraph without words left out (reported), one that does not
    end a sentence given a full stop."""
    t = run.sub("paragraphs", _HYPHEN_BREAK, "", t)
    kept = []
    for para in t.split(_PARA_SPLIT):
        para = para.sub(_WS, " ")[0].sub(_SPACE_PUNCT, "")[0].strip()
        if not para:
            continue
        if not _HAS_WORD.search(para.s):
            run.remove("paragraphs", para.s, span=para.span(0, len(para)),
                       why="no words to read (punctuation or symbols only)")
            continue
        kept.append(para)
    done = [terminated(p) for p in kept[:-1]] + kept[-1:]
    run.count("paragraphs", sum(a.s != b.s for a, b in zip(done, kept)))
    return MappedText.join("\n\n", done)


def _paragraph_breaks(t: MappedText) -> MappedText:
    """With ``paragraphs`` off: only spaces collapsed and empty paragraphs dropped."""
    return MappedText.join("\n\n", [p for p in (p.sub(_WS, " ")[0].strip()
                                                for p in t.split(_PARA_SPLIT)) if len(p)])


#: the rules in the order they run, by name: the one list of their names
#: (``TextConfig.disable`` takes these). Each takes the call's RuleRun and the text.
_RULES: dict[str, Callable[[RuleRun, MappedText], MappedText]] = {
    "line_endings": characters.line_endings,
    "ansi": characters.ansi,
    "control": characters.control,
    "unicode": characters.unicode,
    "zero_width": characters.zero_width,
    "markdown": readers.markdown,
    "urls": readers.urls,
    "emails": readers.emails,
    "code": readers.code,
    "emoji": characters.emoji,
    "symbols": characters.symbols,
    "non_latin": characters.non_latin,
    "dates": verbalize.dates,
    "times": verbalize.times,
    "versions": verbalize.versions,
    "units": verbalize.units,
    "numbers": verbalize.numbers,
    "long_words": characters.long_words,
    "punctuation": characters.punctuation,
    "paragraphs": paragraphs,
}
#: rule names in the order they run (``TextConfig.disable`` takes these)
RULES = tuple(_RULES)


def check_rule_names(cfg: TextConfig) -> None:
    """:class:`ConfigError` for a name in ``text.disable`` that is not a rule."""
    unknown = [r for r in cfg.disable if r not in RULES]
    if unknown:
        raise ConfigError(f"text.disable: unknown rule(s) {', '.join(map(repr, unknown))}; "
                          f"rules are {', '.join(RULES)}")


def preload() -> None:
    """Load what a rule would otherwise load on first need (a server calls it while it
    warms up, so no request pays for it)."""
    characters.known_words()


def sanitize(text: str, cfg: TextConfig | None = None, lang: str | None = None,
             inline: bool | None = None) -> Sanitized:
    """Clean ``text`` for G2P in ``lang`` (None: English). Raises :class:`InputTooLong`
    over ``cfg.max_chars``. With ``inline`` (default ``cfg.inline_phonemes``), inline
    pronunciations ``[word](/phonemes/)`` are kept as markup for the G2P (checked:
    :class:`~labkit.engine.inline.PronunciationError` names a symbol Kokoro cannot say);
    without it they are read as their word, like any Markdown link."""
    cfg = cfg or TextConfig()
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if len(text) > cfg.max_chars:
        raise InputTooLong(f"input is {len(text):,} characters; the limit is {cfg.max_chars:,} "
                           "(text.max_chars): send it in parts")
    cfg.validate()
    check_rule_names(cfg)
    inline = cfg.inline_phonemes if inline is None else inline
    off = set(cfg.disable)
    if lang is not None and not lang.lower().startswith("en"):
        off.update(verbalize.ENGLISH_RULES)
    run = RuleRun(cfg, lang)
    t = MappedText.of(text)
    found: list[dict] = []
    if inline:
        t, found = take_out(run, t)
    for name, rule in _RULES.items():
        if name not in off:
            t = rule(run, t)
    if "paragraphs" in off:
        t = _paragraph_breaks(t)
    inline_report: list[dict] = []
    if found:
        t, inline_report = put_back(t, found)
    report = {
        "chars_in": len(text),
        "chars_out": len(t),
        "paragraphs": t.s.count("\n\n") + 1 if t.s else 0,
        "rules": run.counts,
        "removed": run.removed,
        "removed_total": run.removed_total,
    }
    if inline:
        report["inline"] = inline_report
    return Sanitized(t.s, report, t.a, t.b, len(text))
