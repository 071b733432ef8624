"""Inline pronunciation, misaki's markup ``[word](/phonemes/)``: its pattern, the check
that each phoneme symbol is in Kokoro's vocabulary, and how the sanitizer
(labkit.engine.text) takes the markup out before its rules and puts it back around the
word after them, so the G2P (labkit.engine.g2p) obeys it.
"""
from __future__ import annotations

import re

from labkit.engine.sanitizing import MappedText, RuleRun
from labkit.lexicon import symbols


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


def take_out(run: RuleRun, t: MappedText) -> tuple[MappedText, list[dict]]:
    """Inline pronunciations taken out of the text (each is its word until
    :func:`put_back` puts the markup back around what became of it)."""
    found = inline_overrides(t.s)  # raises PronunciationError on an unknown symbol
    t = run.sub("inline", INLINE, lambda m: m.group(1), t)
    return t, found


def put_back(t: MappedText, found: list[dict]) -> tuple[MappedText, list[dict]]:
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
        t = (t[:i] + MappedText.literal("[", t.a[i]) + t[i:j]
             + MappedText.literal(f"](/{ov['phonemes']}/)", t.b[j - 1]) + t[j:])
        applied.append({**ov, "applied": True})
    return t, applied[::-1]
