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
* over ``TextConfig.max_chars`` characters, :class:`InputTooLong` is raised with both numbers.
"""
from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

from labkit.config import TEXT_RULES, TextConfig


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
_ZERO_WIDTH = re.compile(r"[\u00ad\u034f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                         r"\u2066-\u206f\ufe00-\ufe0f\ufeff\U000e0000-\U000e007f\u20e3]")

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
_EMAIL = re.compile(r"\b(?:mailto:)?([\w.+-]+)@([\w-]+(?:\.[\w-]+)+)\b")

# code
_FILE_LINE = re.compile(r"(?<![\w/])((?:[\w.~-]*/)*[\w-]+\.[A-Za-z][A-Za-z0-9]{0,5}):(\d+)(?::(\d+))?\b")
_PATH = re.compile(r"(?<![\w/])(?:~|\.{1,2})?/?(?:[\w.-]+/){2,}[\w.-]*[A-Za-z][\w.-]*/?"
                   r"|(?<![\w/])(?:~|\.{1,2})?/[\w.-]*[A-Za-z][\w.-]*/[\w./-]*")
_DOTTED = re.compile(r"\b[A-Za-z_]\w*(?:\.[a-z_]\w*)+\b")
_UNDERSCORE = re.compile(r"_+")
_CAMEL = re.compile(r"\b[A-Za-z]*[a-z][A-Z][A-Za-z]*\b")
_CAMEL_SPLIT = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z]{2})(?=[A-Z][a-z]{2,})")
_CALL_PARENS = re.compile(r"(?<=\w)\(\)")

# emoji and symbols
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u231A\u231B\u2328"
                    "\u23CF\u23E9-\u23FA\u2B50\u2B55]+")
_SYMBOLS = re.compile("[\u2500-\u259F\u2800-\u28FF\ue000-\uf8ff\ufffc\ufffd]+")

# numbers, long words
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
        if parts.query or parts.fragment:
            run.remove("urls", (parts.query and "?" + parts.query) + (parts.fragment and "#" + parts.fragment),
                       why="URL query/fragment left out")
        return " slash ".join(spoken) + tail
    return read


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


def _non_latin(run: _Run) -> Callable[[re.Match], str]:
    def repl(m: re.Match) -> str:
        for seg, script, lang in _split_by_script(m.group()):
            run.remove("non_latin", seg, script=script,
                       why="non-Latin script skipped (text.non_latin=skip)")
        return " "
    return repl


def _digits(m: re.Match) -> str:
    return " ".join(m.group())


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


def sanitize(text: str, cfg: TextConfig | None = None) -> Sanitized:
    """Clean ``text`` for G2P. Raises :class:`InputTooLong` over ``cfg.max_chars``."""
    cfg = cfg or TextConfig()
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if len(text) > cfg.max_chars:
        raise InputTooLong(f"input is {len(text):,} characters; the limit is {cfg.max_chars:,} "
                           "(text.max_chars): send it in parts")
    cfg.validate()
    off = set(cfg.disable)
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
        t = run.sub("zero_width", _ZERO_WIDTH, "", t)
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
        t = run.sub("non_latin", NON_LATIN_RUN, _non_latin(run), t)
    if on("numbers"):
        t = run.sub("numbers", re.compile(r"\d{%d,}" % (cfg.max_number_digits + 1)), _digits, t)
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
