"""The sanitization rules that work on characters, each rule's patterns beside it: line
endings, terminal escapes, control characters, Unicode forms, invisible characters,
emoji, drawing symbols, non-Latin scripts, over-long "words" and punctuation.

Each rule takes the call's :class:`~labkit.engine.sanitizing.RuleRun` and the text and
returns the text; labkit.engine.text runs them in the order of its ``RULES``.
"""
from __future__ import annotations

import functools
import json
import re
import unicodedata
from importlib import resources
from typing import Callable

import regex

from labkit.engine.sanitizing import MappedText, RuleRun
from labkit.engine.scripts import LANG_SCRIPTS, NON_LATIN_RUN, split_by_script


# -- line_endings ------------------------------------------------------------------------
_CRLF = re.compile(r"\r\n?|[\u2028\x85]")
_PAGEBREAK = re.compile(r"[\x0c\u2029]")


def line_endings(run: RuleRun, t: MappedText) -> MappedText:
    t = run.sub("line_endings", _CRLF, "\n", t)
    return run.sub("line_endings", _PAGEBREAK, "\n\n", t)


# -- ansi --------------------------------------------------------------------------------
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def ansi(run: RuleRun, t: MappedText) -> MappedText:
    return run.sub("ansi", _ANSI, "", t)


# -- control -----------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x84\x86-\x9f]")


def control(run: RuleRun, t: MappedText) -> MappedText:
    return run.sub("control", _CONTROL, " ", t)


# -- unicode -----------------------------------------------------------------------------
_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl",
                            "ﬅ": "st", "ﬆ": "st"})
_FULLWIDTH = re.compile(r"[\uff01-\uff5e]")
_SPACES = re.compile(r"[\t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
#: a character with its combining marks (a run of Hangul jamo composes as one)
_NFC_UNIT = regex.compile(r"[\u1100-\u11ff]+|[^\x00-\x7f]\p{M}*|[\x00-\x7f]\p{M}+|\p{M}+")


def _nfc(run: RuleRun, t: MappedText) -> MappedText:
    """NFC and ligatures, per character with its combining marks (so the map stays per
    character); where that differs from the whole text's NFC, the whole is aligned."""
    if t.s.isascii():
        return t
    whole = unicodedata.normalize("NFC", t.s).translate(_LIGATURES)
    if whole == t.s:
        return t
    run.count("unicode", 1)
    out, _ = t.sub(_NFC_UNIT, lambda m: unicodedata.normalize("NFC", m.group()).translate(_LIGATURES))
    return out if out.s == whole else t.rewritten(whole)


def unicode(run: RuleRun, t: MappedText) -> MappedText:
    t = _nfc(run, t)
    if not t.s.isascii():
        t = run.sub("unicode", _FULLWIDTH, lambda m: chr(ord(m.group()) - 0xFEE0), t)
    return run.sub("unicode", _SPACES, " ", t)


# -- zero_width --------------------------------------------------------------------------
# invisible format characters (Unicode Cf). Joiners never separate words: dropped.
# Separators mark a break (zero-width space, bidi marks, invisible operators): a space
# between two words, dropped inside one (see _invisible) or next to a space/punctuation.
_JOINERS = re.compile(r"[\u00ad\u034f\u0600-\u0605\u06dd\u070f\u0890\u0891\u08e2\u200c\u200d"
                      r"\u2060\ufe00-\ufe0f\ufeff\U000e0000-\U000e007f\u20e3\U000e0100-\U000e01ef]+")
_SEPARATORS = re.compile(r"[\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2061-\u2064"
                         r"\u2066-\u206f\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
                         r"\U0001bca0-\U0001bca3\U0001d173-\U0001d17a]+")
_WORD_START = re.compile(r"[^\W\d_]{1,40}")


@functools.lru_cache(maxsize=1)
def known_words() -> frozenset[str]:
    """English words (misaki's gold lexicon), to tell a separator inside a word from one
    between two. Loaded on first need (~0.1 s): most texts hold no such separator."""
    try:
        data = resources.files("misaki.data").joinpath("us_gold.json").read_text("utf-8")
        return frozenset(k.lower() for k in json.loads(data))
    except (ModuleNotFoundError, FileNotFoundError, ValueError):
        return frozenset()


def _is_word(w: str) -> bool:
    known = known_words()
    w = w.lower()
    return w in known or any(w.endswith(x) and w[:-len(x)] in known
                             for x in ("s", "es", "ed", "d", "ing", "ly", "er"))


def _invisible(m: re.Match) -> str:
    """A separator between two letters: dropped where the two halves make one known word
    ("in\u200bvisible"), a space otherwise ("hello\u200bworld", "hello\u200bWorld");
    next to a space, digit or punctuation it just goes."""
    s, a, b = m.string, m.start(), m.end()
    if a == 0 or b == len(s) or not s[a - 1].isalpha() or not s[b].isalpha():
        return ""
    if s[a - 1].islower() and s[b].isupper():
        return " "
    start = a
    while start > max(0, a - 40) and s[start - 1].isalpha():
        start -= 1
    right = _WORD_START.match(s, b)
    if right and _is_word(s[start:a] + right.group()):
        return ""
    return " "


def zero_width(run: RuleRun, t: MappedText) -> MappedText:
    t = run.sub("zero_width", _JOINERS, "", t)
    return run.sub("zero_width", _SEPARATORS, _invisible, t)


# -- emoji -------------------------------------------------------------------------------
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u231A\u231B\u2328"
                    "\u23CF\u23E9-\u23FA\u2B50\u2B55]+")


def _emoji_name(ch: str) -> str | None:
    cp = ord(ch)
    if 0x1F3FB <= cp <= 0x1F3FF:  # skin tones
        return None
    if 0x1F1E6 <= cp <= 0x1F1FF:  # regional indicators (flags)
        return "flag"
    try:
        return unicodedata.name(ch).lower()
    except ValueError:
        return None


def _emoji(run: RuleRun) -> Callable[[re.Match], str]:
    def repl(m: re.Match) -> str:
        if run.cfg.emoji == "name":
            names: list[str] = []
            for ch in m.group():
                n = _emoji_name(ch)
                if n and (not names or names[-1] != n):
                    names.append(n)
            return " " + ", ".join(names) + " " if names else " "
        run.remove("emoji", m.group(), why="emoji dropped (text.emoji=drop)")
        return " "
    return repl


def emoji(run: RuleRun, t: MappedText) -> MappedText:
    return run.sub("emoji", _EMOJI, _emoji(run), t)


# -- symbols -----------------------------------------------------------------------------
_SYMBOLS = re.compile("[\u2500-\u259F\u2800-\u28FF\ue000-\uf8ff\ufffc\ufffd]+")


def symbols(run: RuleRun, t: MappedText) -> MappedText:
    return run.sub("symbols", _SYMBOLS, lambda m: run.remove("symbols", m.group(),
                   why="drawing/private-use symbols dropped") or " ", t)


# -- non_latin ---------------------------------------------------------------------------
def _non_latin(run: RuleRun, keep: tuple[str, ...] = ()) -> Callable[[re.Match], str]:
    def repl(m: re.Match) -> str:
        if keep and all(script in keep for _, script, _ in split_by_script(m.group())):
            return m.group()
        kept = []
        for seg, script, lang in split_by_script(m.group()):
            if script in keep:
                kept.append(seg)
                continue
            run.remove("non_latin", seg, script=script,
                       why="non-Latin script skipped (text.non_latin=skip)")
        return " " + " ".join(kept) + " " if kept else " "
    return repl


def non_latin(run: RuleRun, t: MappedText) -> MappedText:
    """With ``text.non_latin=skip``: scripts other than Latin and the language's own
    (:data:`labkit.engine.scripts.LANG_SCRIPTS`) left out, and reported."""
    if run.cfg.non_latin != "skip":
        return t
    keep = LANG_SCRIPTS.get((run.lang or "").lower(), ())
    return run.sub("non_latin", NON_LATIN_RUN, _non_latin(run, keep), t)


# -- long_words --------------------------------------------------------------------------
def _long_word(run: RuleRun) -> Callable[[re.Match], str]:
    def repl(m: re.Match) -> str:
        run.remove("long_words", m.group(), why=f"{len(m.group())} characters without a space "
                   f"(over text.max_word_chars={run.cfg.max_word_chars})")
        return " "
    return repl


def long_words(run: RuleRun, t: MappedText) -> MappedText:
    return run.sub("long_words", re.compile(r"[^\s]{%d,}" % (run.cfg.max_word_chars + 1)),
                   _long_word(run), t)


# -- punctuation -------------------------------------------------------------------------
_COMPARISON = re.compile(r"(?<=\s)([<>]=?)(?=\s)")
_HASH_NUMBER = re.compile(r"#(?=\d)")
_PUNCT_RUN = re.compile(r"([!?,;:])\1+|\.{3,}|-{2,}|\(\s*\)")
_PUNCT_MAP = str.maketrans({"‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "`": "'",
                            "„": "“", "[": " (", "]": ") ", "{": " (", "}": ") ",
                            "|": ", ", "\\": " ", "^": " ", "~": " ", "*": " ", "–": "—",
                            "‐": "-", "‑": "-", "‒": "-", "−": "-", "﹘": "—", "―": "—",
                            "<": " ", ">": " ", "。": ". ", "、": ", "})
_PUNCT_KEYS = re.compile("[" + re.escape("".join(chr(c) for c in _PUNCT_MAP)) + "]")
_HASH_UNDERSCORE = re.compile(r"[#_]")
# CJK text has no space after its punctuation (。！ became ". " and "!" above): one is put
# there, so chunking sees the sentence and clause ends misaki's ja / zh G2P reads alike
_CJK_AFTER_PUNCT = re.compile(r"(?<=[.!?,;:])(?=[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff])")


def _punct_run(m: re.Match) -> str:
    s = m.group()
    if s.startswith("."):
        return "…"
    if s.startswith("-"):
        return " — "
    if s.startswith("("):
        return ""
    return s[0]


def punctuation(run: RuleRun, t: MappedText) -> MappedText:
    t = run.sub("punctuation", _COMPARISON, lambda m: {"<": " less than ", ">": " greater than ",
                "<=": " at most ", ">=": " at least "}[m.group(1)], t)
    t = run.sub("punctuation", _HASH_NUMBER, "number ", t)
    t = run.sub("punctuation", _PUNCT_RUN, _punct_run, t)
    t, n = t.sub(_PUNCT_KEYS, lambda m: m.group().translate(_PUNCT_MAP))
    run.count("punctuation", n > 0)
    t = t.sub(_HASH_UNDERSCORE, " ")[0]
    return run.sub("punctuation", _CJK_AFTER_PUNCT, " ", t)
