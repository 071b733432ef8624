"""Script detection: which writing system a character belongs to, and the espeak
language that reads it.

The sanitizer (labkit.engine.characters, ``text.non_latin=skip``) leaves out scripts
other than Latin and the language's own (:data:`LANG_SCRIPTS`); the G2P
(labkit.engine.g2p) routes each non-Latin run (:func:`script_runs`) to espeak.
"""
from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right


#: the scripts a language is written in, kept whatever ``text.non_latin`` says
LANG_SCRIPTS = {"hi": ("Devanagari",), "ja": ("Japanese", "Han"), "zh": ("Han",)}

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
        for seg, script, lang in split_by_script(m.group()):
            out.append((seg, script, lang))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], None, None))
    return out


def split_by_script(run: str) -> list[tuple[str, str, str | None]]:
    """A run of non-Latin letters cut where the script changes, as (segment, script,
    espeak language); characters that are not letters or marks stay with their run."""
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
