"""Cutting sanitized text into pieces Kokoro can take (<= 510 tokens each).

(Minimal first version: paragraphs, then sentences, long sentences halved at word
boundaries. Stage 05 adds clause/budget/primer strategies and joining.)
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .config import ChunkingConfig
from .g2p import MAX_TOKENS, G2P


@dataclass
class Piece:
    text: str
    phonemes: str
    #: what ended it: "paragraph", "sentence", "clause" or "word" (mid-sentence cut)
    boundary: str = "sentence"

    @property
    def tokens(self) -> int:
        return len(self.phonemes)


_SENTENCE = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")


def split_sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(paragraph) if s.strip()]


def _fit(text: str, g2p: G2P, limit: int, boundary: str) -> list[Piece]:
    ph = g2p(text).phonemes
    if len(ph) <= limit:
        return [Piece(text, ph, boundary)] if ph else []
    words = text.split()
    if len(words) < 2:
        raise ValueError(f"one word phonemizes to {len(ph)} tokens (limit {limit}): {text[:60]!r}")
    mid = len(words) // 2
    return (_fit(" ".join(words[:mid]), g2p, limit, "word")
            + _fit(" ".join(words[mid:]), g2p, limit, boundary))


def split(text: str, g2p: G2P, cfg: ChunkingConfig | None = None) -> list[Piece]:
    cfg = cfg or ChunkingConfig()
    limit = min(cfg.max_tokens, MAX_TOKENS)
    pieces: list[Piece] = []
    for paragraph in [p for p in text.split("\n\n") if p.strip()]:
        sentences = split_sentences(paragraph)
        for i, sentence in enumerate(sentences):
            last = i == len(sentences) - 1
            pieces.extend(_fit(sentence, g2p, limit, "paragraph" if last else "sentence"))
    return pieces
