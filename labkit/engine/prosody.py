"""Sentence prosody: a piece vocoded from part A over the whole sentence it lies in.

Kokoro's part A (text encoder, duration and pitch predictors) decides the intonation of
everything it is given as one utterance; part B (the vocoder) turns its frames into
audio. Synthesizing the primer "At the edge" alone makes "edge" the end of an utterance
(falling pitch, lengthening) and starts "of the harbor," afresh: the seam is heard in the
prosody. With ``chunking.prosody: sentence`` a piece that is part of a sentence is made
instead from part A over the sentence(s) it lies in (``Piece.context``, cached per stream
so the pieces of one sentence share it), and part B runs only over the piece's own
frames plus ``window_context_frames`` on each side of a cut (:class:`Window`). The
intonation runs on across the cut; what is left at the seam is the vocoder's (its
instance norms see the window, not the sentence), hidden by the joiner's crossfade over
exactly aligned samples: each side keeps half the crossfade past the cut.

The cut frame of a piece boundary is found from the model's durations and the G2P's word
spans (:func:`cut_frame`); the same boundary in the same context always gives the same
frame, so the frames of a sentence are vocoded once each: no word lost or said twice.
Where that cannot be done (no durations output, a context over 510 tokens), the piece is synthesized on its own as before
(:meth:`SentenceWindows.synthesize` returns None).

Part B's harmonic source continues the whole run's phase into a window
(labkit.engine.split_runtime.SplitEngine.vocode), so the crossfade mixes two sources
in phase rather than two sinusoids at unrelated phases.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from labkit.engine.phonemized import clean_phonemes, tokenize
from labkit.engine.piece_cache import Made, piece_key
from labkit.engine.words import spans_for
from labkit.kokoro import MAX_TOKENS, SAMPLES_PER_FRAME, SAMPLE_RATE


def frame_starts(durations: np.ndarray) -> np.ndarray:
    """starts[k] = first frame of model input k (input 0 is the leading pad, token i is
    input i + 1); starts[-1] = all frames."""
    d = np.asarray(durations, dtype=np.int64).ravel()
    return np.concatenate([[0], np.cumsum(d)])


def cut_frame(offset: int, offsets: Sequence[int], spans: Sequence[tuple[str, int, int]],
              starts: np.ndarray) -> int | None:
    """The frame where the text from character ``offset`` on begins: the first frame of
    the first spoken word at or after it (the space before it stays with the piece
    before); None when no word follows."""
    k = next((k for k, at in enumerate(offsets) if at >= offset), None)
    if k is None:
        return None
    return int(starts[spans[k][1] + 1])


@dataclass(frozen=True)
class Window:
    """A piece in its context's frames: frames [start, end) are its own; part B runs over
    [lo, hi) and ``keep`` (samples of that audio) is what the piece plays, reaching half a
    crossfade past each cut (``seamless_start`` / ``seamless_end``) so the joiner
    overlaps the two sides sample for sample."""

    start: int
    end: int
    lo: int
    hi: int
    keep: tuple[int, int]
    seamless_start: bool
    seamless_end: bool


def window(start: int, end: int, frames: int, context_frames: int, half_fade: int,
           spf: int = SAMPLES_PER_FRAME) -> Window | None:
    """The :class:`Window` of frames [start, end) in a context of ``frames``; None when
    the range is empty. A cut (start > 0, end < frames) gets ``context_frames`` vocoded
    beyond it and keeps ``half_fade`` samples past it (at most the context)."""
    if not 0 <= start < end <= frames:
        return None
    half = min(half_fade, context_frames * spf)
    lo = max(0, start - context_frames) if start > 0 else 0
    hi = min(frames, end + context_frames) if end < frames else frames
    a = (start - lo) * spf - (half if start > 0 else 0)
    b = (end - lo) * spf + (half if end < frames else 0)
    return Window(start, end, lo, hi, (a, b), start > 0, end < frames)


@dataclass
class Windowed:
    """One piece vocoded from its context: the audio to play, the seconds it cost (part A
    included for the piece that ran it), its window (which edges continue a neighbour
    without a gap) and its words (word, start, end) in samples of ``audio``."""

    audio: np.ndarray
    seconds: float
    window: Window
    words: list[tuple[str, int, int]] = field(default_factory=list)
    #: each word's [start, end) in the stream's sanitized text
    chars: list[tuple[int, int]] = field(default_factory=list)

    @property
    def seamless_start(self) -> bool:
        return self.window.seamless_start

    @property
    def seamless_end(self) -> bool:
        return self.window.seamless_end


@dataclass
class _Context:
    prosody: Any
    #: the tokens part A ran on (the context's phonemes, cleaned once)
    tokens: list[int]
    offsets: list[int]
    spans: list[tuple[str, int, int]]
    #: each word's [start, end) in the context's text
    chars: list[tuple[int, int]]
    starts: np.ndarray
    charged: bool = False  # part A's seconds counted on a piece already


class SentenceWindows:
    """One stream's contexts: part A run once per context (the first piece that needs it
    pays for it), then each piece vocoded over its window. Thread-safe: the pieces of a
    sentence may be made on two sessions."""

    def __init__(self, engine: Any, g2p: Any, source_text: str, voice: str, speed: float,
                 context_frames: int, crossfade_ms: float):
        self.engine, self.g2p, self.source = engine, g2p, source_text
        self.voice, self.speed = voice, speed
        self.context_frames = int(context_frames)
        self.half_fade = int(SAMPLE_RATE * crossfade_ms / 1000) // 2
        self._lock = threading.Lock()
        self._contexts: dict[tuple[int, int], _Context | None] = {}
        self._building: dict[tuple[int, int], threading.Lock] = {}
        #: pieces vocoded from a context, and those made on their own instead (why)
        self.windowed = 0
        self.fallbacks: list[str] = []

    def synthesize(self, piece: Any, run_options: Any = None,
                   through: Callable[[tuple, Callable[[], Made]], Made] | None = None
                   ) -> Windowed | None:
        """``piece`` vocoded from its context, or None: synthesize it on its own (it is
        its whole context, or the context could not be made or placed). ``through``: the
        piece cache around part B's run (PieceCache.through), keyed by the context's
        tokens and the window's frames; None: part B runs."""
        if piece.whole or not piece.phonemes:
            return None
        c0, c1 = piece.context
        ctx = self._context((c0, c1), run_options)
        if ctx is None:
            return None
        frames = ctx.prosody.frames
        start = 0 if piece.start <= c0 else cut_frame(piece.start - c0, ctx.offsets, ctx.spans, ctx.starts)
        end = frames if piece.end >= c1 else cut_frame(piece.end - c0, ctx.offsets, ctx.spans, ctx.starts)
        win = None if start is None or end is None else window(
            start, end, frames, self.context_frames, self.half_fade, self.engine.samples_per_frame)
        if win is None:
            self._fallback(f"piece at {piece.start}: no frames of its own in its context")
            return None

        def vocode() -> Made:
            return (*self.engine.vocode(ctx.prosody, win.lo, win.hi, run_options), None)

        if through is None:
            audio, seconds, _ = vocode()
        else:
            key = piece_key(self.engine, self.voice, self.speed, ctx.tokens, (win.lo, win.hi))
            audio, seconds, _ = through(key, vocode)
        with self._lock:
            if not ctx.charged and seconds > 0:  # a cache hit (0 s) is not charged part A
                seconds += ctx.prosody.seconds
                ctx.charged = True
            self.windowed += 1
            self._forget_before(c0)
        a, b = win.keep
        spf = self.engine.samples_per_frame
        base = win.lo * spf + a
        mine = [k for k, at in enumerate(ctx.offsets) if piece.start - c0 <= at < piece.end - c0]
        words = [(w, int(ctx.starts[s + 1]) * spf - base, int(ctx.starts[e + 1]) * spf - base)
                 for w, s, e in (ctx.spans[k] for k in mine)]
        return Windowed(audio[a:b], seconds, win,
                        [(w, max(0, s), min(b - a, e)) for w, s, e in words],
                        [(c0 + ctx.chars[k][0], c0 + ctx.chars[k][1]) for k in mine])

    def _fallback(self, why: str) -> None:
        with self._lock:
            self.fallbacks.append(why)

    def _forget_before(self, c0: int) -> None:
        """Drop contexts that end before ``c0``: pieces come in text order (call with the lock)."""
        for key in [k for k in self._contexts if k[1] <= c0]:
            del self._contexts[key]

    def _context(self, key: tuple[int, int], run_options: Any) -> _Context | None:
        with self._lock:
            if key in self._contexts:
                return self._contexts[key]
            gate = self._building.setdefault(key, threading.Lock())
        with gate:  # one run of part A per context, whichever session asks first
            with self._lock:
                if key in self._contexts:
                    return self._contexts[key]
            ctx = self._build(key, run_options)
            with self._lock:
                self._contexts[key] = ctx
                self._building.pop(key, None)
            return ctx

    def _build(self, key: tuple[int, int], run_options: Any) -> _Context | None:
        text = self.source[key[0]:key[1]]
        phonemized = self.g2p(text)
        cleaned = clean_phonemes(phonemized.phonemes)[0]
        if not cleaned or len(cleaned) > MAX_TOKENS:
            self._fallback(f"context at {key[0]}: {len(cleaned)} tokens (1..{MAX_TOKENS} fit)")
            return None
        tokens = tokenize(cleaned)
        prosody = self.engine.prosody(tokens, self.voice, self.speed, run_options)
        if prosody.durations is None:
            self._fallback("the model has no durations output")
            return None
        spans, chars = spans_for(text, cleaned, phonemized)
        return _Context(prosody, tokens, [a for a, _ in chars], spans, chars,
                        frame_starts(prosody.durations))
