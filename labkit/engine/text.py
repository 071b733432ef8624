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
import functools
import json
import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass, field
from importlib import resources
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

from num2words import num2words

from labkit.config import TEXT_RULES, TextConfig


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

    @property
    def paragraphs(self) -> list[str]:
        return [p for p in self.text.split("\n\n") if p.strip()]


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

    def count(self, rule: str, n: int) -> None:
        if n:
            self.counts[rule] = self.counts.get(rule, 0) + n

    def remove(self, rule: str, text: str, **extra) -> None:
        self.removed_total += 1
        if len(self.removed) < _MAX_RECORDS:
            self.removed.append({"rule": rule, "text": text[:80], **extra})

    def sub(self, rule: str, pattern: re.Pattern, repl, text: str) -> str:
        out, n = pattern.subn(repl, text)
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
                            "<": " ", ">": " "})
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


def _paragraphs(run: _Run, t: str) -> str:
    t = run.sub("paragraphs", _HYPHEN_BREAK, "", t)
    paragraphs = []
    for para in _PARA_SPLIT.split(t):
        para = _SPACE_PUNCT.sub("", _WS.sub(" ", para)).strip()
        if not para:
            continue
        if not _HAS_WORD.search(para):
            run.remove("paragraphs", para, why="no words to read (punctuation or symbols only)")
            continue
        paragraphs.append(para)
    done = [_terminate(p) for p in paragraphs[:-1]] + paragraphs[-1:]
    run.count("paragraphs", sum(a != b for a, b in zip(done, paragraphs)))
    return "\n\n".join(done)


def sanitize(text: str, cfg: TextConfig | None = None, lang: str | None = None) -> Sanitized:
    """Clean ``text`` for G2P in ``lang`` (None: English). Raises :class:`InputTooLong`
    over ``cfg.max_chars``."""
    cfg = cfg or TextConfig()
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if len(text) > cfg.max_chars:
        raise InputTooLong(f"input is {len(text):,} characters; the limit is {cfg.max_chars:,} "
                           "(text.max_chars): send it in parts")
    cfg.validate()
    off = set(cfg.disable)
    if lang is not None and not lang.lower().startswith("en"):
        off.update(ENGLISH_RULES)
    run = _Run(cfg)
    on = lambda rule: rule not in off  # noqa: E731
    t = text
    if on("line_endings"):
        t = run.sub("line_endings", _CRLF, "\n", t)
        t = run.sub("line_endings", _PAGEBREAK, "\n\n", t)
    if on("ansi"):
        t = run.sub("ansi", _ANSI, "", t)
    if on("control"):
        t = run.sub("control", _CONTROL, " ", t)
    if on("unicode"):
        if not t.isascii():
            nfc = unicodedata.normalize("NFC", t).translate(_LIGATURES)
            run.count("unicode", nfc != t)
            t = run.sub("unicode", _FULLWIDTH, lambda m: chr(ord(m.group()) - 0xFEE0), nfc)
            t = run.sub("unicode", _SPACES, " ", t)
        else:
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
        translated = t.translate(_PUNCT_MAP)
        run.count("punctuation", translated != t)
        t = translated.replace("#", " ").replace("_", " ")
    if on("paragraphs"):
        t = _paragraphs(run, t)
    else:
        t = "\n\n".join(p for p in (_WS.sub(" ", p).strip() for p in _PARA_SPLIT.split(t)) if p)
    report = {
        "chars_in": len(text),
        "chars_out": len(t),
        "paragraphs": t.count("\n\n") + 1 if t else 0,
        "rules": run.counts,
        "removed": run.removed,
        "removed_total": run.removed_total,
    }
    return Sanitized(t, report)
