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

The opening (``chunking.opening: prefix``): the stream's first piece, when its sentence
goes on past it, is not made to wait for part A over the whole sentence (a 50-word
opening sentence's part A and G2P cost more than the first piece's own vocoding). It is
vocoded from part A over a *prefix*: the piece and ``opening_lookahead_words`` words after
it (so its last word is not voiced as the end of an utterance), with the style row the
voice gives the whole sentence's length (estimated from the prefix's tokens per
character: the voice pack's rows differ by length). The rest of the sentence then comes
from part A over the whole sentence as before, cut where the first piece ended; its
harmonic source is shifted to continue the first piece's phase at that cut
(:meth:`SentenceWindows._build`), so the two sides of the crossfade are in phase. Both
kinds of context say so in the piece cache's key (``_Context.shaped``): a window of a
prefix, or of a sentence whose phase was shifted, is never served for a plain one.
"""
from __future__ import annotations

import dataclasses
import re
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
    #: of ``seconds``, part A's over the context (the first piece made from it pays it)
    part_a_s: float = 0.0

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
    #: what shaped part A's output beyond its tokens, for the piece cache's key: () for a
    #: plain context, ("style", n) for an opening prefix voiced with the style row of n
    #: tokens, ("carried", at, lookahead) for a sentence whose harmonic source continues
    #: the opening piece's phase from character ``at`` of it
    shaped: tuple = ()


class SentenceWindows:
    """One stream's contexts: part A run once per context (the first piece that needs it
    pays for it), then each piece vocoded over its window. Thread-safe: the pieces of a
    sentence may be made on two sessions."""

    def __init__(self, engine: Any, g2p: Any, source_text: str, voice: str, speed: float,
                 context_frames: int, crossfade_ms: float, opening_lookahead: int | None = None,
                 opening_span: int = 0):
        """``opening_lookahead``: words of the sentence after the stream's first piece that
        part A runs over with it (the opening prefix); None: the first piece from part A
        over its whole sentence. ``opening_span``: words after the first piece that the
        pieces after it may also take from the prefix (part A over the piece, the span and
        the lookahead), each still followed there by ``opening_lookahead`` words: the
        second piece then does not wait for part A over a long sentence either."""
        self.engine, self.g2p, self.source = engine, g2p, source_text
        self.voice, self.speed = voice, speed
        self.context_frames = int(context_frames)
        self.half_fade = int(SAMPLE_RATE * crossfade_ms / 1000) // 2
        if opening_lookahead is not None and int(opening_lookahead) < 1:
            raise ValueError(f"opening lookahead of {opening_lookahead} words: must be >= 1")
        self.opening_lookahead = None if opening_lookahead is None else int(opening_lookahead)
        if int(opening_span) < 0:
            raise ValueError(f"opening span of {opening_span} words: must be >= 0")
        self.opening_span = int(opening_span)
        #: the opening prefix while later pieces may come from it: (sentence start, prefix
        #: end, its context, the last character a piece made from it may end at)
        self._prefix: tuple[int, int, _Context, int] | None = None
        self._lock = threading.Lock()
        self._contexts: dict[tuple[int, int], _Context | None] = {}
        self._building: dict[tuple[int, int], threading.Lock] = {}
        #: sentence start -> (where the opening piece ended in the text, the harmonic
        #: source's phase there): the sentence's own context continues it
        self._carry: dict[int, tuple[int, np.ndarray | None]] = {}
        #: pieces vocoded from a context, and those made on their own instead (why)
        self.windowed = 0
        self.fallbacks: list[str] = []
        #: the opening prefix's span in the text when the first piece was made from one
        self.opening: tuple[int, int] | None = None
        #: pieces after the first made from the opening prefix (``opening_span``)
        self.from_prefix = 0

    def synthesize(self, piece: Any, run_options: Any = None,
                   through: Callable[[tuple, Callable[[], Made]], Made] | None = None
                   ) -> Windowed | None:
        """``piece`` vocoded from its context, or None: synthesize it on its own (it is
        its whole context, or the context could not be made or placed). The stream's
        first piece comes from the opening prefix when there is one (:meth:`_opening`).
        ``through``: the piece cache around part B's run (PieceCache.through), keyed by
        the context's tokens, what else shaped it and the window's frames; None: part B runs."""
        if piece.whole or not piece.phonemes:
            return None
        c0, c1 = piece.context
        if self.opening_lookahead is not None and piece.index == 0 and piece.start == c0:
            made = self._opening(piece, run_options, through)
            if made is not None:
                return made
        made = self._from_prefix(piece, run_options, through)
        if made is not None:
            return made
        ctx = self._context((c0, c1), run_options)
        if ctx is None:
            return None
        return self._window(piece, ctx, c0, c1, run_options, through)

    def _window(self, piece: Any, ctx: _Context, c0: int, c1: int, run_options: Any,
                through: Callable[[tuple, Callable[[], Made]], Made] | None) -> Windowed | None:
        """``piece`` vocoded from ``ctx``, part A's output over the text [c0, c1)."""
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
            key = piece_key(self.engine, self.voice, self.speed, ctx.tokens,
                            (win.lo, win.hi, *ctx.shaped))
            audio, seconds, _ = through(key, vocode)
        part_a = 0.0
        with self._lock:
            if not ctx.charged and seconds > 0:  # a cache hit (0 s) is not charged part A
                part_a = ctx.prosody.seconds
                seconds += part_a
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
                        [(c0 + ctx.chars[k][0], c0 + ctx.chars[k][1]) for k in mine], part_a)

    def _opening(self, piece: Any, run_options: Any,
                 through: Callable[[tuple, Callable[[], Made]], Made] | None) -> Windowed | None:
        """The stream's first piece from part A over its opening prefix (the piece and
        ``opening_lookahead`` words after it), voiced with the style row of the whole
        sentence's estimated length; None when the sentence ends within the lookahead
        (its own part A costs no more) or the prefix cannot be made."""
        c0, c1 = piece.context
        lookahead, span = self.opening_lookahead, self.opening_span
        end = prefix_end(self.source, piece.end, c1, lookahead + span) if span else None
        until = piece.end if end is None else prefix_end(self.source, piece.end, c1, span)
        if end is None:
            end = prefix_end(self.source, piece.end, c1, lookahead)
        if end is None:
            return None
        ctx = self._build((c0, end), run_options, whole=(c0, c1))
        if ctx is None:
            return None
        before = self._carry_to(c0, ctx, piece.end)
        made = self._window(piece, ctx, c0, end, run_options, through)
        if made is None:
            self._uncarry(c0, before)
            return None
        with self._lock:
            self.opening = (c0, end)
            if until > piece.end:
                self._prefix = (c0, end, ctx, until)
        return made

    def _from_prefix(self, piece: Any, run_options: Any,
                     through: Callable[[tuple, Callable[[], Made]], Made] | None) -> Windowed | None:
        """A piece after the first, of the same sentence, ending within the opening span:
        vocoded from the prefix's part A (no part A over the whole sentence yet), its
        end carried on to the sentence's own context; None otherwise."""
        with self._lock:
            p = self._prefix
            if p is None or piece.context[0] != p[0] or piece.end > p[3] or piece.context in self._contexts:
                return None
        c0, end, ctx, _ = p
        before = self._carry_to(c0, ctx, piece.end)
        made = self._window(piece, ctx, c0, end, run_options, through)
        if made is None:
            self._uncarry(c0, before)
        else:
            with self._lock:
                self.from_prefix += 1
        return made

    def _carry_to(self, c0: int, ctx: _Context, at: int) -> tuple[int, np.ndarray | None] | None:
        """The sentence at ``c0`` will go on from character ``at`` of ``ctx`` (a prefix): its
        own context continues the harmonic source's phase there (:meth:`_build`). Set before
        the piece is vocoded, so a context built meanwhile sees it; returns what it replaced."""
        p = ctx.prosody
        phase = None
        frame = cut_frame(at - c0, ctx.offsets, ctx.spans, ctx.starts)
        if p.phase is not None and frame:
            steps = p.phase.shape[p.phase_axis] // p.frames
            phase = np.take(p.phase, [frame * steps - 1], axis=p.phase_axis)
        with self._lock:
            before = self._carry.get(c0)
            self._carry[c0] = (at, phase)
        return before

    def _uncarry(self, c0: int, before: tuple[int, np.ndarray | None] | None) -> None:
        """A prefix-made piece that could not be placed: the sentence goes on from where it
        went on before it."""
        with self._lock:
            if before is None:
                self._carry.pop(c0, None)
            else:
                self._carry[c0] = before

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

    def _build(self, key: tuple[int, int], run_options: Any,
               whole: tuple[int, int] | None = None) -> _Context | None:
        """Part A over the text ``key`` spans. ``whole``: the span of the sentence(s) it
        is a prefix of, whose length picks the style row. A sentence whose opening piece
        came from a prefix has its harmonic source shifted to continue that piece's phase
        where the piece ended."""
        text = self.source[key[0]:key[1]]
        phonemized = self.g2p(text)
        cleaned = clean_phonemes(phonemized.phonemes)[0]
        if not cleaned or len(cleaned) > MAX_TOKENS:
            self._fallback(f"context at {key[0]}: {len(cleaned)} tokens (1..{MAX_TOKENS} fit)")
            return None
        tokens = tokenize(cleaned)
        style = None if whole is None else style_length(len(cleaned), key, whole)
        prosody = self.engine.prosody(tokens, self.voice, self.speed, run_options,
                                      **({} if style is None else {"style_tokens": style}))
        if prosody.durations is None:
            self._fallback("the model has no durations output")
            return None
        spans, chars = spans_for(text, cleaned, phonemized)
        ctx = _Context(prosody, tokens, [a for a, _ in chars], spans, chars,
                       frame_starts(prosody.durations), shaped=() if style is None else ("style", style))
        with self._lock:
            carry = self._carry.get(key[0]) if whole is None else None
        if carry is not None and carry[1] is not None and prosody.phase is not None:
            at = cut_frame(carry[0] - key[0], ctx.offsets, ctx.spans, ctx.starts)
            if at:
                steps = prosody.phase.shape[prosody.phase_axis] // prosody.frames
                here = np.take(prosody.phase, [at * steps - 1], axis=prosody.phase_axis)
                ctx.prosody = dataclasses.replace(prosody, phase=prosody.phase + (carry[1] - here))
                ctx.shaped = ("carried", carry[0] - key[0], self.opening_lookahead, self.opening_span)
        return ctx


def prefix_end(text: str, at: int, end: int, lookahead: int) -> int | None:
    """Where the opening prefix ends: ``lookahead`` words of ``text`` after character
    ``at`` (at most ``end``, the sentence's end); None when the sentence ends within them
    (the prefix would be the whole sentence)."""
    if lookahead < 1:
        raise ValueError(f"opening lookahead of {lookahead} words: must be >= 1 (a prefix "
                         "that ends with the piece voices its last word as an utterance's end)")
    following = list(re.finditer(r"\S+", text[at:end]))
    if len(following) <= lookahead:
        return None
    return at + following[lookahead - 1].end()


def style_length(tokens: int, span: tuple[int, int], whole: tuple[int, int]) -> int:
    """The token count whose style row voices a prefix of ``tokens`` tokens over
    characters ``span`` as the sentence(s) ``whole`` will be: the prefix's tokens per
    character over the whole span, within the voice pack's 1..510."""
    chars = max(1, span[1] - span[0])
    return int(min(MAX_TOKENS, max(1, round(tokens * (whole[1] - whole[0]) / chars))))
