"""Text -> what Kokoro will be fed, as JSON: ``labkit phonemize [TEXT | -]``.

The same path as synthesis (sanitize -> chunking -> G2P), stopped before the model:
the sanitized text, the phonemes per piece, what the listener will hear, and a report of
everything changed, fallen back or dropped, and of the pronunciations given: the lexicon
entries that applied (``lexicon.applied``) and, with ``text.inline_phonemes``, the inline
ones obeyed (``report.g2p.inline``). Input it refuses (over the cap, nothing to
read) raises :class:`labkit.engine.text.InputTooLong` / :class:`ValueError` with a clear message.

Stage 01 (labkit.lab.s01_g2p_sanitization) checks its corpus of messy text through this
same function.
"""
from __future__ import annotations

from typing import Any

from labkit.config import LabConfig
from labkit.engine import chunking
from labkit.engine.g2p import G2P, get_g2p, lexicon_path
from labkit.engine.languages import normalize_lang
from labkit.engine.phonemized import lost_symbols
from labkit.kokoro import VOCAB
from labkit.engine.text import sanitize


def phonemize_json(text: str, cfg: LabConfig, g2p: G2P | None = None) -> dict[str, Any]:
    """Sanitized text, phonemes per piece and the report, as a JSON-ready dict."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    lang = normalize_lang(cfg.lang, cfg.voice)  # the voice's language unless cfg.lang says
    clean = sanitize(text, cfg.text, lang)  # raises InputTooLong over text.max_chars
    if not clean.text:
        why = "the input is empty" if not text.strip() else \
            "no words left to read after sanitization (only punctuation, symbols or skipped text)"
        raise ValueError(f"nothing to read: {why}; removed: "
                         f"{[r['text'] for r in clean.report.get('removed', [])][:10]}")
    g2p = g2p or get_g2p(lang, cfg.text.g2p_fallback, lexicon_path(cfg))
    if cfg.text.inline_phonemes:
        g2p = g2p.trusting()  # the markup sanitize kept is the user's: obeyed
    pieces = chunking.split(clean.text, g2p, cfg.chunking)
    out_pieces = []
    fallbacks: list[str] = []
    unknown: list[str] = []
    dropped: dict[str, int] = {}
    routed: list[dict] = []
    blocked = 0
    overridden: list[str] = []
    applied: list[dict] = []
    inline: list[dict] = []
    for piece in pieces:
        ph = g2p(piece.text)  # a cache hit: chunking just phonemized it
        fallbacks += ph.fallbacks
        unknown += ph.unknown
        routed += ph.routed
        blocked += ph.overrides_blocked
        overridden += ph.overridden
        applied += ph.applied
        inline += ph.inline
        for k, v in ph.dropped.items():
            dropped[k] = dropped.get(k, 0) + v
        out_pieces.append({"text": piece.text, "phonemes": piece.phonemes,
                           "tokens": piece.tokens, "boundary": piece.boundary,
                           "words": ph.words})
    oov = sum(1 for p in pieces for ch in p.phonemes if ch not in VOCAB)
    lost = lost_symbols(dropped)
    return {
        "text": clean.text,
        "lang": lang,
        "engine": g2p.engine,
        # the lexicon entries that applied: each word, the section and entry it matched,
        # the phonemes it gave (labkit phonemize shows which entries a text used)
        "lexicon": {"path": getattr(g2p, "lexicon_path", None), "overridden": overridden,
                    "applied": applied},
        "pieces": out_pieces,
        "report": {
            "sanitize": clean.report,
            "g2p": {"fallbacks": fallbacks, "unknown": unknown, "dropped": dropped,
                    "routed": routed, "overrides_blocked": blocked, "inline": inline,
                    # what the G2P produced that Kokoro cannot say, before cleaning removed it
                    "lost_symbols": lost, "oov_before_cleaning": sum(lost.values()),
                    "oov_reaching_model": oov, "engine_note": g2p.engine_note},
        },
    }
