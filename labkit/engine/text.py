"""Text sanitization and normalization before G2P.

The user reads arbitrary selected text aloud: web pages, Markdown, code, terminal output,
PDFs. misaki loses or mangles much of it (a NUL makes espeak stop, NBSP glues words, a
Markdown link is taken as a phoneme override, emoji are read as run-together names ...).
:func:`sanitize` turns such text into plain sentences misaki reads well:

* every rule is one compiled regex applied in one pass (this runs on the first-audio path);
* every rule can be switched off by name (``TextConfig.disable``; see :data:`RULES`);
* nothing is removed silently: ``Sanitized.report`` counts each rule's changes and lists
  what was left out (emoji, skipped scripts, over-long "words", URL queries);
* paragraph breaks are kept as ``"\\n\\n"`` (chunking turns them into pauses); a paragraph
  that does not end a sentence gets a full stop so it is read as one;
* over ``TextConfig.max_chars`` characters, :class:`InputTooLong` is raised with both numbers;
* for a language other than English (``lang``), the rules that write English words
  (:data:`ENGLISH_RULES`: dates, times, versions, units, long numbers) are left to the
  language's own G2P, and the language's own script is kept (:data:`LANG_SCRIPTS`:
  Devanagari for hi, kana and Han for ja, Han for zh) where ``text.non_latin=skip``
  skips other scripts.
"""
from __future__ import annotations

import calendar
import difflib
import functools
import json
import re
import unicodedata
from array import array
from bisect import bisect_right
from dataclasses import dataclass, field
from importlib import resources
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

import regex
from num2words import num2words

from labkit.config import TEXT_RULES, TextConfig
from labkit.lexicon import symbols


#: rules that write English words: off for other languages (espeak reads the originals)
ENGLISH_RULES = ("dates", "times", "versions", "units", "numbers")
#: the scripts a language is written in, kept whatever ``text.non_latin`` says
LANG_SCRIPTS = {"hi": ("Devanagari",), "ja": ("Japanese", "Han"), "zh": ("Han",)}


class InputTooLong(ValueError):
    """The input is over the configured cap."""


@dataclass
class Sanitized:
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


class PronunciationError(ValueError):
    """Inline pronunciation (``[word](/phonemes/)``) with a symbol Kokoro cannot say."""


#: inline pronunciation, as misaki defines it: ``[word](/phonemes/)``, one word and its
#: phonemes without spaces (anything else is not markup: read as plain text)
INLINE = re.compile(r"\[([^\[\]\s()/]+)\]\(/([^/\s()\[\]]+)/\)")


def inline_overrides(text: str) -> list[dict]:
    """The well-formed inline pronunciations in ``text`` (word, phonemes, the word's span);
    :class:`PronunciationError` names the first symbol outside Kokoro's vocabulary."""
    out = []
    vocab = symbols()
    for m in INLINE.finditer(text):
        bad = [ch for ch in m.group(2) if ch not in vocab]
        if bad:
            ch = bad[0]
            raise PronunciationError(
                f"inline pronunciation {m.group()[:80]!r} at {m.start()}: phoneme symbol "
                f"{ch!r} (U+{ord(ch):04X}) is not in Kokoro's vocabulary")
        out.append({"word": m.group(1), "phonemes": m.group(2),
                    "input_start": m.start(1), "input_end": m.end(1)})
    return out


class _Text:
    """The text being sanitized, each character with the span [start, end) of the input
    it came from. A replacement's characters map to what they replaced; where a word of
    the replacement is also a word of the replaced text ("**bold**" -> "bold", a URL's
    host name), that word maps to itself."""

    __slots__ = ("s", "a", "b")

    def __init__(self, s: str, a: array, b: array):
        self.s, self.a, self.b = s, a, b

    @classmethod
    def of(cls, s: str) -> "_Text":
        return cls(s, array("l", range(len(s))), array("l", range(1, len(s) + 1)))

    @classmethod
    def literal(cls, s: str, at: int) -> "_Text":
        """``s`` inserted at input position ``at`` (covers no input)."""
        return cls(s, array("l", [at]) * len(s), array("l", [at]) * len(s))

    def __len__(self) -> int:
        return len(self.s)

    def __getitem__(self, k: slice) -> "_Text":
        return _Text(self.s[k], self.a[k], self.b[k])

    def __add__(self, other: "_Text") -> "_Text":
        return _Text(self.s + other.s, self.a + other.a, self.b + other.b)

    def end(self) -> int:
        return self.b[-1] if self.s else 0

    def span(self, i: int, j: int) -> tuple[int, int]:
        if j > i:
            return min(self.a[i:j]), max(self.b[i:j])
        at = self.a[i] if i < len(self.s) else (self.b[-1] if self.s else 0)
        return at, at

    def _mapped(self, r: str, i: int, j: int) -> tuple[array, array]:
        lo, hi = self.span(i, j)
        a, b = array("l", [lo]) * len(r), array("l", [hi]) * len(r)
        if j > i:
            old, cursor = self.s[i:j], 0
            for w in _RUN_OF_NON_SPACE.finditer(r):
                k = old.find(w.group(), cursor)
                if k >= 0:
                    n = len(w.group())
                    a[w.start():w.end()] = self.a[i + k:i + k + n]
                    b[w.start():w.end()] = self.b[i + k:i + k + n]
                    cursor = k + n
        return a, b

    def sub(self, pattern, repl, here=None) -> tuple["_Text", int]:
        """``pattern.subn(repl, text)`` with the map carried; ``here(span)`` is told the
        input span of each match before its replacement is made."""
        s = self.s
        out_s: list[str] = []
        out_a, out_b = array("l"), array("l")
        pos = n = 0
        changed = False
        fixed = repl if isinstance(repl, str) and "\\" not in repl else None
        for m in pattern.finditer(s):
            i, j = m.span()
            if here is not None:
                here(self.span(i, j))
            r = fixed if fixed is not None else repl(m) if callable(repl) else m.expand(repl)
            n += 1
            if r == s[i:j]:
                continue
            changed = True
            out_s.append(s[pos:i])
            out_a.extend(self.a[pos:i])
            out_b.extend(self.b[pos:i])
            ra, rb = self._mapped(r, i, j)
            out_s.append(r)
            out_a.extend(ra)
            out_b.extend(rb)
            pos = j
        if here is not None:
            here(None)
        if not changed:
            return self, n
        out_s.append(s[pos:])
        out_a.extend(self.a[pos:])
        out_b.extend(self.b[pos:])
        return _Text("".join(out_s), out_a, out_b), n

    def split(self, pattern: re.Pattern) -> list["_Text"]:
        out, pos = [], 0
        for m in pattern.finditer(self.s):
            out.append(self[pos:m.start()])
            pos = m.end()
        out.append(self[pos:])
        return out

    def strip(self) -> "_Text":
        i = len(self.s) - len(self.s.lstrip())
        j = len(self.s.rstrip())
        return self[i:max(i, j)]

    @staticmethod
    def join(sep: str, parts: list["_Text"]) -> "_Text":
        if not parts:
            return _Text.of("")
        out = parts[0]
        for p in parts[1:]:
            out = out + _Text.literal(sep, out.end()) + p
        return out

    def rewritten(self, new: str) -> "_Text":
        """The text replaced by ``new`` as a whole (difflib's alignment carries the map)."""
        out = _Text("", array("l"), array("l"))
        sm = difflib.SequenceMatcher(None, self.s, new, autojunk=False)
        for op, i1, i2, j1, j2 in sm.get_opcodes():
            if op == "equal":
                out = out + self[i1:i2]
            elif j2 > j1:
                lo, hi = self.span(i1, i2)
                out = out + _Text(new[j1:j2], array("l", [lo]) * (j2 - j1),
                                  array("l", [hi]) * (j2 - j1))
        return out


_RUN_OF_NON_SPACE = re.compile(r"\S+")


#: rule names in the order they run (``TextConfig.disable`` takes these)
RULES = TEXT_RULES

_MAX_RECORDS = 100  # items listed in report["removed"]; the count is always complete

# -- non-Latin scripts: (first, last, script, espeak language) -------------------------
_SCRIPT_RANGES = sorted([
    (0x0370, 0x03FF, "Greek", "el"), (0x1F00, 0x1FFF, "Greek", "el"),
    (0x0400, 0x052F, "Cyrillic", "ru"), (0x0530, 0x058F, "Armenian", "hy"),
    (0x0590, 0x05FF, "Hebrew", "he"), (0x0600, 0x06FF, "Arabic", "ar"),
    (0x0700, 0x074F, "Syriac", None), (0x0750, 0x077F, "Arabic", "ar"),
    (0x0780, 0x07BF, "Thaana", None), (0x08A0, 0x08FF, "Arabic", "ar"),
    (0x0900, 0x097F, "Devanagari", "hi"), (0x0980, 0x09FF, "Bengali", "bn"),
    (0x0A00, 0x0A7F, "Gurmukhi", "pa"), (0x0A80, 0x0AFF, "Gujarati", "gu"),
    (0x0B00, 0x0B7F, "Oriya", "or"), (0x0B80, 0x0BFF, "Tamil", "ta"),
    (0x0C00, 0x0C7F, "Telugu", "te"), (0x0C80, 0x0CFF, "Kannada", "kn"),
    (0x0D00, 0x0D7F, "Malayalam", "ml"), (0x0D80, 0x0DFF, "Sinhala", "si"),
    (0x0E00, 0x0E7F, "Thai", None), (0x0E80, 0x0EFF, "Lao", None),
    (0x0F00, 0x0FFF, "Tibetan", None), (0x1000, 0x109F, "Myanmar", "my"),
    (0x10A0, 0x10FF, "Georgian", "ka"), (0x1100, 0x11FF, "Hangul", "ko"),
    (0x1200, 0x139F, "Ethiopic", "am"), (0x13A0, 0x13FF, "Cherokee", None),
    (0x1780, 0x17FF, "Khmer", None), (0x1800, 0x18AF, "Mongolian", None),
    (0x3040, 0x30FF, "Japanese", "ja"), (0x3130, 0x318F, "Hangul", "ko"),
    (0x31F0, 0x31FF, "Japanese", "ja"), (0x3400, 0x4DBF, "Han", "cmn"),
    (0x4E00, 0x9FFF, "Han", "cmn"), (0xA000, 0xA4CF, "Yi", None),
    (0xAC00, 0xD7AF, "Hangul", "ko"), (0xF900, 0xFAFF, "Han", "cmn"),
    (0xFB1D, 0xFB4F, "Hebrew", "he"), (0xFB50, 0xFDFF, "Arabic", "ar"),
    (0xFE70, 0xFEFF, "Arabic", "ar"), (0xFF66, 0xFF9F, "Japanese", "ja"),
])
_SCRIPT_STARTS = [r[0] for r in _SCRIPT_RANGES]
_NL_CLASS = "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b, _, _ in _SCRIPT_RANGES)
# a run of non-Latin letters, with spaces and CJK punctuation inside it
NON_LATIN_RUN = re.compile(
    f"[{_NL_CLASS}]+(?:[\\s\u3000-\u303f\uff01\uff0c\uff1a\uff1b\uff1f]*[{_NL_CLASS}]+)*")


def script_of(ch: str) -> tuple[str, str | None]:
    """(script name, espeak language or None) of a non-Latin character."""
    cp = ord(ch)
    i = bisect_right(_SCRIPT_STARTS, cp) - 1
    if i >= 0 and _SCRIPT_RANGES[i][0] <= cp <= _SCRIPT_RANGES[i][1]:
        return _SCRIPT_RANGES[i][2], _SCRIPT_RANGES[i][3]
    return "Latin", None


def script_runs(text: str) -> list[tuple[str, str | None, str | None]]:
    """Cut text into (segment, script, espeak language) pieces; Latin pieces have
    script None. Used by G2P to route non-Latin runs to espeak."""
    out: list[tuple[str, str | None, str | None]] = []
    pos = 0
    for m in NON_LATIN_RUN.finditer(text):
        if m.start() > pos:
            out.append((text[pos:m.start()], None, None))
        for seg, script, lang in _split_by_script(m.group()):
            out.append((seg, script, lang))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], None, None))
    return out


def _split_by_script(run: str) -> list[tuple[str, str, str | None]]:
    pieces: list[tuple[str, str, str | None]] = []
    start, current = 0, None
    for i, ch in enumerate(run):
        if not ch.isalpha() and unicodedata.category(ch)[0] != "M":
            continue
        sl = script_of(ch)
        if current is None:
            current = sl
        elif sl != current:
            pieces.append((run[start:i].strip(), *current))
            start, current = i, sl
    pieces.append((run[start:].strip(), *(current or ("Latin", None))))
    return [p for p in pieces if p[0]]


# -- the rules -------------------------------------------------------------------------
class _Run:
    """One sanitize() call: counts per rule, records of what was left out."""

    def __init__(self, cfg: TextConfig):
        self.cfg = cfg
        self.counts: dict[str, int] = {}
        self.removed: list[dict] = []
        self.removed_total = 0
        #: the input span of the match being replaced (what a removal points at)
        self.here: tuple[int, int] | None = None

    def count(self, rule: str, n: int) -> None:
        if n:
            self.counts[rule] = self.counts.get(rule, 0) + n

    def remove(self, rule: str, text: str, span: tuple[int, int] | None = None, **extra) -> None:
        self.removed_total += 1
        span = span or self.here
        if len(self.removed) < _MAX_RECORDS:
            where = {"input_start": span[0], "input_end": span[1]} if span else {}
            self.removed.append({"rule": rule, "text": text[:80], **where, **extra})

    def _at(self, span: tuple[int, int] | None) -> None:
        self.here = span

    def sub(self, rule: str, pattern: re.Pattern, repl, text: _Text) -> _Text:
        out, n = text.sub(pattern, repl, self._at)
        self.count(rule, n)
        return out


_CRLF = re.compile(r"\r\n?|[\u2028\x85]")
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_PAGEBREAK = re.compile(r"[\x0c\u2029]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x84\x86-\x9f]")
_SPACES = re.compile(r"[\t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl",
                            "ﬅ": "st", "ﬆ": "st"})
_FULLWIDTH = re.compile(r"[\uff01-\uff5e]")
# invisible format characters (Unicode Cf). Joiners never separate words: dropped.
# Separators mark a break (zero-width space, bidi marks, invisible operators): a space
# between two words, dropped inside one (see _invisible) or next to a space/punctuation.
_JOINERS = re.compile(r"[\u00ad\u034f\u0600-\u0605\u06dd\u070f\u0890\u0891\u08e2\u200c\u200d"
                      r"\u2060\ufe00-\ufe0f\ufeff\U000e0000-\U000e007f\u20e3\U000e0100-\U000e01ef]+")
_SEPARATORS = re.compile(r"[\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2061-\u2064"
                         r"\u2066-\u206f\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
                         r"\U0001bca0-\U0001bca3\U0001d173-\U0001d17a]+")
_WORD_START = re.compile(r"[^\W\d_]{1,40}")

# Markdown
_MD_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n(.*?)(?:^[ \t]*\1[ \t]*$|\Z)", re.M | re.S)
_MD_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
_MD_SETEXT = re.compile(r"^(.+)\n[ \t]*(?:=+|-+)[ \t]*$", re.M)
_MD_RULE = re.compile(r"^[ \t]*([-*_=])(?:[ \t]*\1){2,}[ \t]*$", re.M)
_MD_QUOTE = re.compile(r"^[ \t]*(?:>[ \t]?)+", re.M)
_MD_BULLET = re.compile(r"^[ \t]*(?:[-*+•‣◦▪]|\d{1,3}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?(.*)$", re.M)
_MD_TABLE_SEP = re.compile(r"^[ \t]*\|?(?:[ \t]*:?-{3,}:?[ \t]*\|)+[ \t]*(?::?-{3,}:?)?[ \t]*$", re.M)
_MD_TABLE_ROW = re.compile(r"^[ \t]*\|(.*)\|[ \t]*$", re.M)
_MD_REFDEF = re.compile(r"^[ \t]{0,3}\[[^\]\n]+\]:[ \t]*\S+.*$", re.M)
_MD_IMAGE = re.compile(r"!\[([^\]\n]*)\]\((?:[^()\s]|\([^()]*\))*(?:\s+\"[^\"]*\")?\)")
_MD_LINK = re.compile(r"\[([^\]\n]+)\](?:\((?:[^()\s]|\([^()]*\))*(?:\s+\"[^\"]*\")?\)|\[[^\]\n]*\])")
# what is left of "[word](/...": inline pronunciation not well-formed (unclosed, spaces in
# it): its word is read, the rest is left out (and reported), never read as "slash ..."
_MD_BROKEN_INLINE = re.compile(r"\[([^\[\]\n]+)\]\((?:/[^()\n]*?/\)|/[^\s()]*\)?)")
_MD_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^<>\s]+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+)>")
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>\n]*)?/?>")
_HTML_ENTITY = re.compile(r"&(amp|lt|gt|quot|apos|nbsp|#\d+|#x[0-9a-fA-F]+);")
_MD_STRONG = re.compile(r"(\*\*|__|~~)(?=\S)(.+?)(?<=\S)\1")
_MD_EM = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=\S)\*(?![\w*])"
                    r"|(?<![\w_])_(?=[^\s_])([^_\n]+?)(?<=\S)_(?![\w_])")
_MD_CODE = re.compile(r"(`+)([^`\n]+?)\1")

# URLs, e-mail addresses
_URL = re.compile(r"\b(?:(?:https?|ftp)://|www\.)[^\s<>\"'`]+", re.I)
# quantifiers are bounded (a local part, a label, a path segment are short), so that no
# pattern backtracks quadratically over a long run of word characters
_EMAIL = re.compile(r"\b(?:mailto:)?([\w+-][\w.+-]{0,63})@([\w-]{1,63}(?:\.[\w-]{1,63}){1,8})\b")

# code
_FILE_LINE = re.compile(r"(?<![\w/])((?:[\w.~-]{0,64}/){0,16}[\w-]{1,64}\.[A-Za-z][A-Za-z0-9]{0,5})"
                        r":(\d+)(?::(\d+))?\b")
_PATH = re.compile(r"(?<![\w/])(?:~|\.{1,2})?/?(?:[\w.-]{1,64}/){2,32}[\w.-]{0,64}?[A-Za-z][\w.-]{0,64}/?"
                   r"|(?<![\w/])(?:~|\.{1,2})?/[\w.-]{0,64}?[A-Za-z][\w.-]{0,64}/[\w./-]*")
_DOTTED = re.compile(r"\b[A-Za-z_]\w*(?:\.[a-z_]\w*)+\b")
_UNDERSCORE = re.compile(r"_+")
_CAMEL = re.compile(r"\b[A-Za-z]*[a-z][A-Z][A-Za-z]*\b")
_CAMEL_SPLIT = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z]{2})(?=[A-Z][a-z]{2,})")
_CALL_PARENS = re.compile(r"(?<=\w)\(\)")

# emoji and symbols
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u231A\u231B\u2328"
                    "\u23CF\u23E9-\u23FA\u2B50\u2B55]+")
_SYMBOLS = re.compile("[\u2500-\u259F\u2800-\u28FF\ue000-\uf8ff\ufffc\ufffd]+")

# dates, times, versions, units
_ISO_DATE = re.compile(r"(?<![\w.:/-])(\d{4})-(\d{2})-(\d{2})"
                       r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?"
                       r"(?![\w:/-]|\.\d)")
_TIME = re.compile(r"(?<![\w.:/])([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?"
                   r"(?:\s?([AaPp])\.?[Mm]\b\.?)?(?![\w:/]|\.\d)")
_VERSION = re.compile(r"(?<![\w.])[vV](\d{1,4}(?:\.\d{1,4}){0,3})(?![\w]|\.\d)")
_DOTTED_VERSION = re.compile(r"(?<![\w.])(\d{1,3}\.\d{1,3}\.\d{1,3})(?![\w]|\.\d)")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_PER_UNITS = {"s": "second", "sec": "second", "secs": "second", "second": "second",
              "ms": "millisecond", "min": "minute", "minute": "minute", "h": "hour",
              "hr": "hour", "hour": "hour", "d": "day", "day": "day", "wk": "week",
              "week": "week", "mo": "month", "month": "month", "yr": "year", "year": "year"}
_UNITS = {"ms": "milliseconds", "µs": "microseconds", "us": "microseconds",
          "ns": "nanoseconds", "kB": "kilobytes", "KB": "kilobytes", "MB": "megabytes",
          "GB": "gigabytes", "TB": "terabytes", "KiB": "kibibytes", "MiB": "mebibytes",
          "GiB": "gibibytes", "Hz": "hertz", "kHz": "kilohertz", "MHz": "megahertz",
          "GHz": "gigahertz", "km": "kilometers", "kg": "kilograms", "mg": "milligrams",
          "cm": "centimeters", "mm": "millimeters", "kW": "kilowatts", "kWh": "kilowatt hours",
          "Mbps": "megabits per second", "Gbps": "gigabits per second",
          "fps": "frames per second", "req": "requests", "reqs": "requests"}
_PER = re.compile(r"(?<![\w/])([A-Za-zµ]+|\d+(?:\.\d+)?)\s?/\s?(" + "|".join(
    sorted(_PER_UNITS, key=len, reverse=True)) + r")(?![\w/])")
_UNIT = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s?(" + "|".join(
    sorted(map(re.escape, _UNITS), key=len, reverse=True)) + r")(?![\w/])")

# numbers, long words
#: digits read out of a longer run than text.max_number_digits; the rest is reported
LONG_NUMBER_SPOKEN = 24
_PUNCT_RUN = re.compile(r"([!?,;:])\1+|\.{3,}|-{2,}|\(\s*\)")
_PUNCT_MAP = str.maketrans({"‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "`": "'",
                            "„": "“", "[": " (", "]": ") ", "{": " (", "}": ") ",
                            "|": ", ", "\\": " ", "^": " ", "~": " ", "*": " ", "–": "—",
                            "‐": "-", "‑": "-", "‒": "-", "−": "-", "﹘": "—", "―": "—",
                            "<": " ", ">": " ", "。": ". ", "、": ", "})
# CJK text has no space after its punctuation (。！ became ". " and "!" above): one is put
# there, so chunking sees the sentence and clause ends misaki's ja / zh G2P reads alike
_CJK_AFTER_PUNCT = re.compile(r"(?<=[.!?,;:])(?=[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff])")
_HASH_NUMBER = re.compile(r"#(?=\d)")
_COMPARISON = re.compile(r"(?<=\s)([<>]=?)(?=\s)")

_PARA_SPLIT = re.compile(r"\n[ \t]*\n\s*")
_HYPHEN_BREAK = re.compile(r"(?<=[a-z])-\n[ \t]*(?=[a-z])")
_WS = re.compile(r"\s+")
_SPACE_PUNCT = re.compile(r" +(?=[,.!?;:…)])|(?<=\() +")
_HAS_WORD = re.compile(r"[^\W_]")
_TERMINAL = set(".!?…:;")
_CLOSERS = set("\"')”’»")


def _terminate(s: str) -> str:
    """A line read as a sentence of its own ends with a full stop."""
    s = s.rstrip()
    core = s.rstrip("".join(_CLOSERS))
    if not s or (core and core[-1] in _TERMINAL):
        return s
    return s + "."


def _md_fence(m: re.Match) -> str:
    lines = [_terminate(line.strip()) for line in m.group(2).splitlines() if line.strip()]
    return "\n\n" + "\n".join(lines) + "\n\n"


def _md_heading(m: re.Match) -> str:
    return "\n\n" + _terminate(m.group(1).strip()) + "\n\n"


def _md_table_row(m: re.Match) -> str:
    cells = [c.strip() for c in m.group(1).split("|") if c.strip()]
    return _terminate(", ".join(cells)) if cells else ""


def _html_entity(m: re.Match) -> str:
    name = m.group(1)
    fixed = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'", "nbsp": " "}
    if name in fixed:
        return fixed[name]
    try:
        return chr(int(name[2:], 16) if name[1] in "xX" else int(name[1:]))
    except (ValueError, OverflowError):
        return " "


def _dotted(s: str) -> str:
    return " dot ".join(p for p in s.split(".") if p)


@functools.lru_cache(maxsize=1)
def _known_words() -> frozenset[str]:
    """English words (misaki's gold lexicon), to tell a separator inside a word from one
    between two. Loaded on first need (~0.1 s): most texts hold no such separator."""
    try:
        data = resources.files("misaki.data").joinpath("us_gold.json").read_text("utf-8")
        return frozenset(k.lower() for k in json.loads(data))
    except (ModuleNotFoundError, FileNotFoundError, ValueError):
        return frozenset()


def preload() -> None:
    """Load what a rule would otherwise load on first need (a server calls it while it
    warms up, so no request pays for it)."""
    _known_words()


def _is_word(w: str) -> bool:
    known = _known_words()
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


def _num(n: int) -> str:
    return num2words(n)


def _iso_date(m: re.Match) -> str:
    year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(max(year, 1), month)[1]):
        return m.group()
    out = f"{_MONTHS[month - 1]} {num2words(day, to='ordinal')}, {num2words(year, to='year')}"
    if m.group(4) is not None:
        h, mi = int(m.group(4)), int(m.group(5))
        if h > 23 or mi > 59:
            return m.group()
        out += " at " + _clock(h, mi, int(m.group(6)) if m.group(6) else None, None)
        zone = m.group(7)
        if zone == "Z":
            out += " UTC"
        elif zone:
            minutes = int(zone[-2:])
            out += (f" UTC {'plus' if zone[0] == '+' else 'minus'} {_num(int(zone[1:3]))}"
                    + (f" {_num(minutes)}" if minutes else ""))
    return out


def _clock(h: int, mi: int, sec: int | None, ampm: str | None) -> str:
    if mi == 0:
        words = f"{_num(h)} " + ("o'clock" if ampm or h <= 12 else "hundred")
    elif mi < 10:
        words = f"{_num(h)} oh {_num(mi)}"
    else:
        words = f"{_num(h)} {_num(mi)}"
    if sec:
        words += f" and {_num(sec)} second{'s' if sec != 1 else ''}"
    if ampm:
        words = words.replace(" o'clock", "") + f" {ampm.upper()}M"
    return words


def _time(m: re.Match) -> str:
    said = _clock(int(m.group(1)), int(m.group(2)), int(m.group(3)) if m.group(3) else None,
                  m.group(4))
    after = m.string[m.end():m.end() + 2]
    if m.group().endswith(".") and (not after.strip() or after[1:2].isupper()):
        said += "."  # "p.m." ended the sentence too
    return said


def _point(version: str) -> str:
    return " point ".join(_num(int(p)) for p in version.split("."))


def _per(m: re.Match) -> str:
    what, unit = m.group(1), _PER_UNITS[m.group(2)]
    what = _UNITS.get(what, what)
    return f"{what} per {unit}"


def _unit(m: re.Match) -> str:
    number, unit = m.group(1), _UNITS[m.group(2)]
    if number == "1" and unit.endswith("s") and " " not in unit:
        unit = unit[:-1]
    return f"{number} {unit}"


def _long_number(run: _Run) -> Callable[[re.Match], str]:
    def repl(m: re.Match) -> str:
        digits = m.group()
        head, rest = digits[:LONG_NUMBER_SPOKEN], len(digits) - LONG_NUMBER_SPOKEN
        if rest <= 0:
            return " ".join(digits)
        run.remove("numbers", digits, why=f"{len(digits)} digits: the first "
                   f"{LONG_NUMBER_SPOKEN} read one by one, the other {rest} left out")
        return " ".join(head) + f", and {rest} more digits,"
    return repl


def _sanitize_markdown(run: _Run, t: str) -> str:
    t = run.sub("markdown", _MD_FENCE, _md_fence, t)
    t = run.sub("markdown", _HTML_ENTITY, _html_entity, t)
    t = run.sub("markdown", _MD_HEADING, _md_heading, t)
    t = run.sub("markdown", _MD_TABLE_SEP, "", t)
    t = run.sub("markdown", _MD_TABLE_ROW, _md_table_row, t)
    t = run.sub("markdown", _MD_SETEXT, _md_heading, t)
    t = run.sub("markdown", _MD_RULE, "\n\n", t)
    t = run.sub("markdown", _MD_QUOTE, "", t)
    t = run.sub("markdown", _MD_BULLET, lambda m: _terminate(m.group(1)), t)
    t = run.sub("markdown", _MD_REFDEF, "", t)
    t = run.sub("markdown", _MD_IMAGE, lambda m: m.group(1), t)
    t = run.sub("markdown", _MD_LINK, lambda m: m.group(1), t)
    t = run.sub("markdown", _MD_BROKEN_INLINE, lambda m: run.remove(
        "markdown", m.group()[len(m.group(1)) + 2:], why="inline pronunciation not well-formed: "
        "its word is read") or m.group(1), t)
    t = run.sub("markdown", _MD_AUTOLINK, lambda m: m.group(1), t)
    t = run.sub("markdown", _HTML_TAG, " ", t)
    t = run.sub("markdown", _MD_STRONG, lambda m: m.group(2), t)
    t = run.sub("markdown", _MD_EM, lambda m: m.group(1) or m.group(2), t)
    t = run.sub("markdown", _MD_CODE, lambda m: m.group(2), t)
    return t


def _url_reader(run: _Run) -> Callable[[re.Match], str]:
    def read(m: re.Match) -> str:
        url = m.group()
        tail = ""
        while url and url[-1] in ".,;:!?)'\"":
            if url[-1] == ")" and url.count("(") >= url.count(")"):
                break
            tail = url[-1] + tail
            url = url[:-1]
        parts = urlsplit(url if "://" in url else "http://" + url)
        host = (parts.hostname or "").removeprefix("www.")
        spoken = [_dotted(host)] if host else []
        for seg in parts.path.split("/"):
            words = " ".join(w for w in re.split(r"[-_.+%=~]+", seg) if w)
            if not words:
                continue
            if len(words) > 24 or (re.search(r"\d", words) and re.search(r"[a-z]", words, re.I)
                                   and len(words) > 12):
                run.remove("urls", seg, why="identifier in a URL path left out")
                continue
            spoken.append(words)
        said = " slash ".join(spoken)
        query = _spoken_query(run, parts.query) if parts.query else ""
        if query:
            said += ", query " + query + ","
        if parts.fragment:
            words = " ".join(w for w in re.split(r"[-_.+%=~/]+", parts.fragment) if w)
            if words and len(words) <= 24 and not re.search(r"\d", words):
                said += ", section " + words + ","
            else:
                run.remove("urls", "#" + parts.fragment, why="URL fragment left out")
        return said + tail
    return read


#: URL query parameters read aloud at most; the rest (and unreadable ones) are reported
MAX_QUERY_PARAMS = 3


def _spoken_query(run: _Run, query: str) -> str:
    said = []
    for k, (key, value) in enumerate(parse_qsl(query, keep_blank_values=True)):
        words = [" ".join(w for w in re.split(r"[-_.+%=~]+", x) if w) for x in (key, value)]
        readable = all(len(w) <= 24 and not (re.search(r"\d", w) and re.search(r"[a-z]", w, re.I)
                                              and len(w) > 12) for w in words)
        if k >= MAX_QUERY_PARAMS or not readable or not words[0]:
            run.remove("urls", f"{key}={value}", why="URL query parameter left out"
                       + (f" (only the first {MAX_QUERY_PARAMS} are read)" if readable else ""))
            continue
        said.append(words[0] + (f" equals {words[1]}" if words[1] else ""))
    return ", ".join(said)




def _email(m: re.Match) -> str:
    return _dotted(m.group(1)) + " at " + _dotted(m.group(2))


def _file_line(m: re.Match) -> str:
    out = f"{m.group(1).replace('/', ' slash ')}, line {m.group(2)}"
    return out + (f", column {m.group(3)}" if m.group(3) else "")


def _path(m: re.Match) -> str:
    s = m.group()
    lead = "slash " if s.startswith("/") else ""
    if s.startswith("~"):
        lead = "home slash "
    segs = [p for p in s.strip("~").split("/") if p and p not in (".", "..")]
    return lead + " slash ".join(segs)


def _underscore(m: re.Match) -> str:
    s, a, b = m.string, m.start(), m.end()
    inner = a > 0 and b < len(s) and s[a - 1].isalnum() and s[b].isalnum()
    return " " if inner else ""


def _camel(m: re.Match) -> str:
    w = m.group()
    first = re.match(r"[A-Z]?[a-z]*", w).group()
    if w[0].islower() or len(first) >= 3:
        return _CAMEL_SPLIT.sub(" ", w)
    return w


def _sanitize_code(run: _Run, t: str) -> str:
    t = run.sub("code", _FILE_LINE, _file_line, t)
    t = run.sub("code", _PATH, _path, t)
    t = run.sub("code", _CALL_PARENS, "", t)
    t = run.sub("code", _DOTTED, lambda m: _dotted(m.group())
                if any(len(p) > 1 for p in m.group().split(".")) else m.group(), t)
    t = run.sub("code", _UNDERSCORE, _underscore, t)
    t = run.sub("code", _CAMEL, _camel, t)
    return t


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


def _emoji(run: _Run) -> Callable[[re.Match], str]:
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


def _non_latin(run: _Run, keep: tuple[str, ...] = ()) -> Callable[[re.Match], str]:
    def repl(m: re.Match) -> str:
        if keep and all(script in keep for _, script, _ in _split_by_script(m.group())):
            return m.group()
        kept = []
        for seg, script, lang in _split_by_script(m.group()):
            if script in keep:
                kept.append(seg)
                continue
            run.remove("non_latin", seg, script=script,
                       why="non-Latin script skipped (text.non_latin=skip)")
        return " " + " ".join(kept) + " " if kept else " "
    return repl


def _long_word(run: _Run) -> Callable[[re.Match], str]:
    def repl(m: re.Match) -> str:
        run.remove("long_words", m.group(), why=f"{len(m.group())} characters without a space "
                   f"(over text.max_word_chars={run.cfg.max_word_chars})")
        return " "
    return repl


def _punct_run(m: re.Match) -> str:
    s = m.group()
    if s.startswith("."):
        return "…"
    if s.startswith("-"):
        return " — "
    if s.startswith("("):
        return ""
    return s[0]


def _terminated(t: _Text) -> _Text:
    done = _terminate(t.s)
    return t + _Text.literal(done[len(t.s):], t.end()) if done != t.s else t


def _paragraphs(run: _Run, t: _Text) -> _Text:
    t = run.sub("paragraphs", _HYPHEN_BREAK, "", t)
    paragraphs = []
    for para in t.split(_PARA_SPLIT):
        para = para.sub(_WS, " ")[0].sub(_SPACE_PUNCT, "")[0].strip()
        if not para:
            continue
        if not _HAS_WORD.search(para.s):
            run.remove("paragraphs", para.s, span=para.span(0, len(para)),
                       why="no words to read (punctuation or symbols only)")
            continue
        paragraphs.append(para)
    done = [_terminated(p) for p in paragraphs[:-1]] + paragraphs[-1:]
    run.count("paragraphs", sum(a.s != b.s for a, b in zip(done, paragraphs)))
    return _Text.join("\n\n", done)


def _unicode(run: _Run, t: _Text) -> _Text:
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


#: a character with its combining marks (a run of Hangul jamo composes as one)
_NFC_UNIT = regex.compile(r"[\u1100-\u11ff]+|[^\x00-\x7f]\p{M}*|[\x00-\x7f]\p{M}+|\p{M}+")
_PUNCT_KEYS = re.compile("[" + re.escape("".join(chr(c) for c in _PUNCT_MAP)) + "]")
_HASH_UNDERSCORE = re.compile(r"[#_]")


def _inline_in(run: _Run, t: _Text) -> tuple[_Text, list[dict]]:
    """Inline pronunciations taken out of the text (each is its word until
    :func:`_inline_out` puts the markup back around what became of it)."""
    found = inline_overrides(t.s)  # raises PronunciationError on an unknown symbol
    t = run.sub("inline", INLINE, lambda m: m.group(1), t)
    return t, found


def _inline_out(t: _Text, found: list[dict]) -> tuple[_Text, list[dict]]:
    """The markup put back around each inline word, where the word came through the rules
    whole (a rule that cut it apart leaves it read as text; the report says so)."""
    applied = []
    for ov in reversed(found):  # from the end: earlier positions stay valid
        ws, we = ov["input_start"], ov["input_end"]
        at = [k for k in range(len(t)) if ws <= t.a[k] and t.b[k] <= we and t.a[k] < t.b[k]]
        ok = bool(at) and at[-1] - at[0] + 1 == len(at) and not any(
            t.s[k].isspace() or t.s[k] in "[]()/" for k in at)
        if not ok:
            applied.append({**ov, "applied": False,
                            "why": "the text rules changed the word; it is read as text"})
            continue
        i, j = at[0], at[-1] + 1
        t = (t[:i] + _Text.literal("[", t.a[i]) + t[i:j]
             + _Text.literal(f"](/{ov['phonemes']}/)", t.b[j - 1]) + t[j:])
        applied.append({**ov, "applied": True})
    return t, applied[::-1]


def sanitize(text: str, cfg: TextConfig | None = None, lang: str | None = None,
             inline: bool | None = None) -> Sanitized:
    """Clean ``text`` for G2P in ``lang`` (None: English). Raises :class:`InputTooLong`
    over ``cfg.max_chars``. With ``inline`` (default ``cfg.inline_phonemes``), inline
    pronunciations ``[word](/phonemes/)`` are kept as markup for the G2P (checked:
    :class:`PronunciationError` names a symbol Kokoro cannot say); without it they are read
    as their word, like any Markdown link."""
    cfg = cfg or TextConfig()
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if len(text) > cfg.max_chars:
        raise InputTooLong(f"input is {len(text):,} characters; the limit is {cfg.max_chars:,} "
                           "(text.max_chars): send it in parts")
    cfg.validate()
    inline = cfg.inline_phonemes if inline is None else inline
    off = set(cfg.disable)
    if lang is not None and not lang.lower().startswith("en"):
        off.update(ENGLISH_RULES)
    run = _Run(cfg)
    on = lambda rule: rule not in off  # noqa: E731
    t = _Text.of(text)
    found: list[dict] = []
    if inline:
        t, found = _inline_in(run, t)
    if on("line_endings"):
        t = run.sub("line_endings", _CRLF, "\n", t)
        t = run.sub("line_endings", _PAGEBREAK, "\n\n", t)
    if on("ansi"):
        t = run.sub("ansi", _ANSI, "", t)
    if on("control"):
        t = run.sub("control", _CONTROL, " ", t)
    if on("unicode"):
        t = _unicode(run, t)
        if not t.s.isascii():
            t = run.sub("unicode", _FULLWIDTH, lambda m: chr(ord(m.group()) - 0xFEE0), t)
        t = run.sub("unicode", _SPACES, " ", t)
    if on("zero_width"):
        t = run.sub("zero_width", _JOINERS, "", t)
        t = run.sub("zero_width", _SEPARATORS, _invisible, t)
    if cfg.markdown and on("markdown"):
        t = _sanitize_markdown(run, t)
    if cfg.urls and on("urls"):
        t = run.sub("urls", _URL, _url_reader(run), t)
    if cfg.urls and on("emails"):
        t = run.sub("emails", _EMAIL, _email, t)
    if cfg.code and on("code"):
        t = _sanitize_code(run, t)
    if on("emoji"):
        t = run.sub("emoji", _EMOJI, _emoji(run), t)
    if on("symbols"):
        t = run.sub("symbols", _SYMBOLS, lambda m: run.remove("symbols", m.group(),
                    why="drawing/private-use symbols dropped") or " ", t)
    if cfg.non_latin == "skip" and on("non_latin"):
        t = run.sub("non_latin", NON_LATIN_RUN,
                    _non_latin(run, LANG_SCRIPTS.get((lang or "").lower(), ())), t)
    if on("dates"):
        t = run.sub("dates", _ISO_DATE, _iso_date, t)
    if on("times"):
        t = run.sub("times", _TIME, _time, t)
    if on("versions"):
        t = run.sub("versions", _VERSION, lambda m: "version " + _point(m.group(1)), t)
        t = run.sub("versions", _DOTTED_VERSION, lambda m: _point(m.group(1)), t)
    if on("units"):
        t = run.sub("units", _PER, _per, t)
        t = run.sub("units", _UNIT, _unit, t)
    if on("numbers"):
        t = run.sub("numbers", re.compile(r"\d{%d,}" % (cfg.max_number_digits + 1)),
                    _long_number(run), t)
    if on("long_words"):
        t = run.sub("long_words", re.compile(r"[^\s]{%d,}" % (cfg.max_word_chars + 1)),
                    _long_word(run), t)
    if on("punctuation"):
        t = run.sub("punctuation", _COMPARISON, lambda m: {"<": " less than ", ">": " greater than ",
                    "<=": " at most ", ">=": " at least "}[m.group(1)], t)
        t = run.sub("punctuation", _HASH_NUMBER, "number ", t)
        t = run.sub("punctuation", _PUNCT_RUN, _punct_run, t)
        t, n = t.sub(_PUNCT_KEYS, lambda m: m.group().translate(_PUNCT_MAP))
        run.count("punctuation", n > 0)
        t = t.sub(_HASH_UNDERSCORE, " ")[0]
        t = run.sub("punctuation", _CJK_AFTER_PUNCT, " ", t)
    if on("paragraphs"):
        t = _paragraphs(run, t)
    else:
        t = _Text.join("\n\n", [p for p in (p.sub(_WS, " ")[0].strip()
                                             for p in t.split(_PARA_SPLIT)) if len(p)])
    inline_report: list[dict] = []
    if found:
        t, inline_report = _inline_out(t, found)
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
