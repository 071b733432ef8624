"""Streaming synthesis: text in, PCM chunks out, piece by piece.

(Minimal first version: sequential, one session. Stage 05 adds primer chunking, joins
and cancellation semantics; stage 06 the look-ahead scheduler over two sessions.)
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from . import chunking, text as textmod
from .g2p import get_g2p, normalize_lang
from .runtime import SAMPLE_RATE, Engine


@dataclass
class Chunk:
    index: int
    text: str
    phonemes: str
    audio: np.ndarray
    synth_seconds: float
    #: seconds since the stream started when this chunk was ready
    ready_at: float
    is_last: bool

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


class StreamingSynthesizer:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.cfg = engine.cfg

    def pieces(self, text: str, lang: str | None = None, voice: str | None = None):
        lang = normalize_lang(lang or self.cfg.lang, voice or self.cfg.voice)
        clean = textmod.sanitize(text, self.cfg.text)
        return chunking.split(clean.text, get_g2p(lang), self.cfg.chunking)

    def stream(self, text: str, voice: str | None = None, speed: float | None = None,
               lang: str | None = None, cancel: threading.Event | None = None) -> Iterator[Chunk]:
        t0 = time.perf_counter()
        voice = voice or self.cfg.voice
        pieces = self.pieces(text, lang, voice)
        for i, piece in enumerate(pieces):
            if cancel is not None and cancel.is_set():
                return
            syn = self.engine.synthesize_phonemes(piece.phonemes, voice, speed)
            yield Chunk(i, piece.text, piece.phonemes, syn.audio, syn.seconds,
                        time.perf_counter() - t0, i == len(pieces) - 1)

    def synthesize(self, text: str, voice: str | None = None, speed: float | None = None,
                   lang: str | None = None) -> np.ndarray:
        chunks = [c.audio for c in self.stream(text, voice, speed, lang)]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
