"""What a stream hands out: :class:`Chunk` (one piece, synthesized and joined, with its
words timed) and :class:`StreamStats` (what the stream did: failures, retries, load per
session, the adaptive schedule's decisions)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labkit.engine.chunking import Piece
from labkit.kokoro import SAMPLE_RATE


@dataclass
class Chunk:
    """One piece of the stream, synthesized: the chunker's :class:`~labkit.engine.chunking.Piece`
    (its text, phonemes, boundary, index) plus the audio and how and when it was made."""

    piece: Piece
    audio: np.ndarray
    synth_seconds: float
    #: seconds since the stream started when this chunk was handed to the caller
    ready_at: float
    is_last: bool
    #: which session synthesized it (index into the synthesizer's engines)
    session: int = 0
    #: seconds since the stream started: synthesis began / finished
    started_at: float = 0.0
    done_at: float = 0.0
    #: 1, or more when a session failed on it and another retried it
    attempts: int = 1
    #: silence the joiner appended after the piece
    pause_s: float = 0.0
    #: the piece's spoken words with start/end in stream seconds (after trims, pauses and
    #: crossfades); empty when the model has no ``durations`` output (labkit.engine.words)
    words: list = field(default_factory=list)

    @property
    def index(self) -> int:
        return self.piece.index

    @property
    def text(self) -> str:
        return self.piece.text

    @property
    def phonemes(self) -> str:
        return self.piece.phonemes

    @property
    def boundary(self) -> str:
        """What ended the piece ("paragraph", "sentence", "clause", "word", "split-word")."""
        return self.piece.boundary

    @property
    def tokens(self) -> int:
        return self.piece.tokens

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass
class StreamStats:
    pieces: int = 0
    #: (piece index, session, "Type: message") of every failed attempt
    failures: list[tuple[int, int, str]] = field(default_factory=list)
    retries: int = 0
    cancelled: bool = False
    #: the most pieces ever synthesized-or-in-flight ahead of the consumer
    max_ahead: int = 0
    #: pieces and busy seconds per session
    per_session: dict[int, dict[str, float]] = field(default_factory=dict)
    wall_s: float = 0.0
    #: pieces aborted mid-run by a cancel (RunOptions.terminate)
    aborted: int = 0
    #: the adaptive schedule's decisions: (budget tokens, seconds buffered ahead)
    budgets: list[tuple[int, float]] = field(default_factory=list)
    #: adaptive: the slowdown sensed from other processes' load when the stream opened,
    #: and the fewest tokens the first piece was given for it
    opening_load: float = 1.0
    primer_floor: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
