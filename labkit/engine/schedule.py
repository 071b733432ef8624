"""Sizing the next piece of a stream so it is ready before the listener runs out of audio.

The fixed ramp (:func:`ramp_budget`) assumes a speed; the adaptive schedule measures it.
Three running figures decide how many phoneme tokens the next piece may hold:

* how fast the session is (:class:`SpeedModel`): compute seconds ~ ``factor x shape``
  (a fixed cost per run, a cost per token and a small quadratic term), the factor updated
  after every piece from its measured synthesis time. A slower observation moves the
  estimate faster than a quicker one (a stall is worse than a seam). The synthesizer keeps
  one model per session across streams, so the second stream starts informed;
* how much other processes slow it down now (``load``: labkit.engine.cpuload, sampled in
  the background), divided out of every observation and multiplied into every
  prediction, so the first piece of a stream is sized for the load before any of it has
  been timed (:func:`primer_floor`: the break-even length, ~10 tokens idle on 2 x86
  cores, ~40-60 with one core taken);
* how much audio the listener still has (:class:`PlaybackClock`): the audio handed out so
  far, played back to back from the first delivery and stalling when it runs dry (the rule
  of labkit.measure.playback's simulator, followed live), plus pieces synthesized but not
  yet handed out, each counted as it will play (trimmed, with its pause).

The budget (:func:`budget`) is the largest token count whose predicted compute x
``schedule_margin`` plus ``schedule_safety_s`` fits in that buffered audio, at most
``max_tokens``: small pieces while the buffer is thin, large ones (fewer seams) once it
allows; while it is thin, the largest piece that can be ready without the margin if that
still adds to the buffer, else (a stall is coming whatever the size) a piece big enough
that the run's fixed cost is at most a fifth of it, so the buffer recovers instead of
shrinking piece by piece. The chunker then cuts the piece at a sentence, else clause,
else word boundary under the budget.

Without a live stream (``chunking.split`` listing the pieces) :class:`PlannedSchedule`
runs the same rule on a simulated clock at the model's speed: the pieces a stream would
cut on a machine that runs as the model says.
"""
from __future__ import annotations

import copy
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from labkit.config import ChunkingConfig
from labkit.kokoro import MAX_TOKENS

SCHEDULES = ("adaptive", "ramp")
#: a stream opens on an idle machine when the slowdown other processes cause (sensed as it
#: opens, labkit.engine.cpuload.slowdown) is at most this: then the primer's token cap is
#: ``chunking.primer_max_tokens_idle``; above it the first piece's floor is at least
#: ``chunking.primer_min_tokens_loaded``. Idle the sensor reads 1.0-1.06 on 2 x86 cores; one
#: busy process there reads 1.6-2.3 over a 0.6 s window, 2.0-3.7 (p10-p90, beside a
#: synthesis) over the 2 s one (labkit.engine.cpuload.WINDOW_S); on the M1 Max's cores one
#: busy process costs ~1.1
LOADED_SLOWDOWN = 1.3


@dataclass
class SpeedModel:
    """Compute seconds of a piece ~ factor x (overhead_s + per_token_s x tokens +
    per_token2_s x tokens^2), one session.

    The shape (a fixed cost per run, a cost per token, and a small quadratic term: the
    int8 graph on 2 x86 cores took 0.44 s for 11 tokens, 1.0 s for 51, 2.8 s for 140 and
    5.2 s for 244 of the paragraph, so one linear shape fitted to short pieces predicted
    the longest 18 % fast) is a prior; ``factor`` is learnt from every piece
    (measured / predicted by the shape). Load from other processes slows short and long
    pieces alike, so one factor follows it without confusing the fixed cost with the per-
    token cost; a faster machine (the M1 Max) learns a factor below 1."""

    overhead_s: float = 0.25
    per_token_s: float = 0.016
    per_token2_s: float = 1.5e-5
    factor: float = 1.0
    #: audio seconds per token (for the planned schedule's simulated clock)
    audio_per_token_s: float = 0.06
    #: weight of a new observation when it is slower / faster than the estimate
    up: float = 0.7
    down: float = 0.25
    pieces: int = 0

    def shape(self, tokens: int) -> float:
        n = max(0, tokens)
        return self.overhead_s + self.per_token_s * n + self.per_token2_s * n * n

    def predict(self, tokens: int, load: float = 1.0) -> float:
        """Predicted compute seconds of a piece while other processes slow the session
        down ``load`` times (labkit.engine.cpuload.slowdown)."""
        return self.factor * load * self.shape(tokens)

    def tokens_within(self, seconds: float, load: float = 1.0) -> float:
        """The most tokens predicted to compute within ``seconds`` (may be < 0)."""
        rest = seconds / max(self.factor * load, 1e-6) - self.overhead_s
        if rest <= 0 or self.per_token2_s <= 0:
            return rest / max(self.per_token_s, 1e-9)
        p, q = self.per_token_s, self.per_token2_s
        return (math.sqrt(p * p + 4 * q * rest) - p) / (2 * q)

    def update(self, tokens: int, seconds: float, audio_s: float | None = None,
               load: float = 1.0) -> None:
        """One finished piece: its tokens, its measured compute seconds, its audio, and
        the slowdown the load sensed around it predicted (divided out, so the factor
        is the session's own speed and the next stream's first piece is sized for the
        load then)."""
        if tokens <= 0 or not seconds > 0:
            return  # nothing said, or a cache hit: no compute to learn from
        obs = seconds / (self.shape(tokens) * max(load, 1e-6))
        if load > 1.05:
            # the sensed slowdown is noisy (2.0-3.7 p10-p90 around a true 2): an asymmetric
            # average of a noisy ratio drifts upward, so under load both ways weigh alike
            w = (self.up + self.down) / 2
        else:
            w = self.up if obs > self.factor else self.down
        self.factor += w * (obs - self.factor)
        self.learn_audio(tokens, audio_s)
        self.pieces += 1

    def learn_audio(self, tokens: int, audio_s: float | None) -> None:
        """Audio a piece of ``tokens`` played for: as the listener hears it (trimmed,
        joined, with its pause), not as the model returned it (its edges of silence
        would make every piece look longer and the first one too short)."""
        if tokens > 0 and audio_s is not None and audio_s > 0:
            self.audio_per_token_s += 0.3 * (audio_s / tokens - self.audio_per_token_s)

    def copy(self) -> "SpeedModel":
        return copy.copy(self)

    @classmethod
    def windowed(cls) -> "SpeedModel":
        """The prior for a piece vocoded from its sentence's part A (chunking.prosody:
        sentence, labkit.engine.prosody): part B over the piece's frames and its context
        frames, with no utterance of silence padded at each end. Measured on the split
        int8 graph on 2 x86 cores: part B 0.05 s + 0.011 s per frame (the 16 context
        frames of a window inside a sentence: ~0.18 s), part A 0.03 s + 0.0015 s per
        token once per sentence, ~2.45 frames per token; halved to the same factor-1
        scale as the whole-run prior (the same machine learns a factor of ~2 on both).
        A whole-run shape would charge a window the 0.25 s of padding it does not have,
        and hold the first piece of a sentence-prosody stream at ~25 tokens where ~11
        break even (:func:`primer_floor`)."""
        return cls(overhead_s=WINDOW_OVERHEAD_S, per_token_s=WINDOW_PER_TOKEN_S, per_token2_s=0.0)


#: the windowed prior's fixed cost and cost per token (:meth:`SpeedModel.windowed`)
WINDOW_OVERHEAD_S = 0.1
WINDOW_PER_TOKEN_S = 0.014


def ramp_budget(history: list[int], growth: float, min_tokens: int, limit: int) -> int:
    """Token budget of the next piece so it is ready before the queued audio runs out.

    Tokens stand in for both audio duration and compute (compute ~ RTF x duration). With
    ``growth`` = the assumed 1/RTF safety factor, the next piece may hold
    ``growth x (all tokens so far) - (tokens of the pieces after the first)``: the audio
    queued when the first piece starts playing pays for everything synthesized after it.
    ``growth <= 0`` disables the ramp (budget = limit)."""
    if growth <= 0 or not history:
        return limit
    budget = growth * sum(history) - sum(history[1:])
    return int(max(min_tokens, min(limit, budget)))


def budget(models: Sequence[SpeedModel], ahead_s: float, cfg: ChunkingConfig, limit: int,
           load: float = 1.0) -> int:
    """Tokens the next piece may hold with ``ahead_s`` of audio left to the listener: the
    largest count whose predicted compute (on the slowest session, slowed ``load`` times
    by other processes) x margin + safety fits, at most ``limit``. While the buffer is
    thin (under ``schedule_min_tokens`` fit with the margin):

    * ``schedule_min_tokens`` when that many fit without the margin;
    * else the most tokens that fit without it, when that piece is at least the break-even
      length (:func:`break_even`: it still adds to the buffer): right after a short
      primer (10 tokens, ~0.6 s of audio) the second piece is a clause of ~15 tokens,
      not a 40-token piece that leaves a gap;
    * else no piece can be ready in time and a small one would shrink the buffer further
      (a short run on a loaded machine shrank pieces to 9-15 tokens and stalled more
      often than the ramp): a piece whose fixed cost is at most a fifth of its compute,
      so the one stall buys a buffer that lasts."""
    usable = (ahead_s - cfg.schedule_safety_s) / cfg.schedule_margin
    n = min(m.tokens_within(usable, load) for m in models)
    floor = min(cfg.schedule_min_tokens, limit)
    if n >= floor:
        return int(min(limit, n))
    raw = min(m.tokens_within(ahead_s - cfg.schedule_safety_s, load) for m in models)
    if raw >= floor:
        return floor
    if raw >= break_even(models, load, limit):
        return int(raw)
    slow = max(models, key=lambda m: m.predict(100))
    return int(max(floor, min(limit, 4 * slow.overhead_s / max(slow.per_token_s, 1e-6))))


def break_even(models: Sequence[SpeedModel], load: float = 1.0, limit: int = MAX_TOKENS,
               margin: float = 1.0, extra_s: float = 0.0) -> int:
    """The fewest tokens whose predicted compute x ``margin`` is no longer than their own
    audio, on every session (below it a piece costs more time than it plays, so the
    buffer shrinks); ``limit`` when no length gets there (slower than real time).
    ``extra_s``: a fixed cost the piece must also cover (at factor 1, scaled like the
    shape), e.g. the part A the next piece runs first."""
    need = 0
    for m in models:
        # smallest n with f x (shape(n) + extra) <= audio(n): f q n^2 + (f p - a) n + f (o + e) <= 0
        f = m.factor * load * margin
        a, b = f * m.per_token2_s, f * m.per_token_s - m.audio_per_token_s
        c = f * (m.overhead_s + extra_s)
        if b >= 0 or b * b < 4 * a * c:
            return limit
        n = c / -b if a <= 0 else (-b - math.sqrt(b * b - 4 * a * c)) / (2 * a)
        need = max(need, math.ceil(n))
    return int(min(limit, need))


def part_a_s(tokens: int) -> float:
    """Part A's seconds over ``tokens`` at factor 1 (measured on 2 x86 cores: 0.03 s +
    0.0015 s per token, halved like :meth:`SpeedModel.windowed`): the cost a sentence's
    first window pays before its own part B."""
    return PART_A_OVERHEAD_S + PART_A_PER_TOKEN_S * max(0, tokens)


#: part A's fixed cost and cost per token at factor 1 (:func:`part_a_s`)
PART_A_OVERHEAD_S = 0.015
PART_A_PER_TOKEN_S = 0.00075


def part_a_due_s(models: Sequence[SpeedModel], tokens: int, load: float = 1.0) -> float:
    """Predicted seconds of a part A over ``tokens`` that the next piece runs before its
    own part B, on the slowest of ``models`` slowed ``load`` times; 0 for none. A
    sentence's first window pays its whole sentence's part A, which the budget did not
    count: beside one busy process on 2 AMD EPYC cores (AVX2) the 61-token first piece of
    the paragraph's second sentence, budgeted to fit the 2.3 s buffered, took 2.6 s and
    left a 0.28 s gap. Netting it out, the lean floor-16 opening streamed the paragraph
    there with a gap in 2 of 6 streams (0.18 and 0.02 s of silence), against 4 of 6 (0.09
    to 0.82 s, 1.88 s in all) without, in interleaved rounds (/tmp scripts over
    labkit.measure.streaming.run_stream, 2026-12-05; stage 05's listener rows say it for
    the machine at hand)."""
    if tokens <= 0 or not models:
        return 0.0
    return max(m.factor for m in models) * load * part_a_s(tokens)


def primer_floor(models: Sequence[SpeedModel], cfg: ChunkingConfig, limit: int,
                 load: float = 1.0, then_part_a: int = 0) -> int:
    """The fewest tokens the first piece must hold so that a second piece as long is
    predicted ready (with the margin) before the first has played out: the break-even
    length with the margin, below which the run's fixed cost outlasts a piece's own
    audio, so the buffer can only shrink and the listener hears a gap whatever the
    schedule does next. Idle on 2 x86 cores it is ~10 tokens (three short words: the
    primer stays as configured); with one core taken by another process ~40-50. At most
    ``primer_max_tokens``: the first audio is not held back past what a primer may hold
    (beside one busy process on 2 x86 cores, where the cap is the floor: 24 tokens put
    the first audio at 1.4-1.6x a phrase's, 18 at 1.1-1.4x, both streaming the paragraph
    without a gap, where 14 came at 0.8-1.1x with 2 gaps and the primer as configured, 10
    tokens, at ~0.75x with 2-3, all with the session's idle threads spinning, before
    ``session.allow_spinning``; stage 05's opening sweep and listener rows say it for the
    machine at hand). ``then_part_a``: the tokens of the part A the second
    piece runs first (the rest of a sentence whose first piece came from an opening
    prefix, labkit.engine.prosody), which the first piece must also outlast. When ``load``
    is above :data:`LOADED_SLOWDOWN`, at least ``primer_min_tokens_loaded``: the break-even
    holds the first piece, not the small ones after it."""
    extra = part_a_s(then_part_a) if then_part_a > 0 else 0.0
    n = break_even(models, load, limit, cfg.schedule_margin, extra)
    if load > LOADED_SLOWDOWN:
        n = max(n, min(cfg.primer_min_tokens_loaded, limit))
    return min(n, cfg.primer_max_tokens)


class PlaybackClock:
    """Where the listener is: chunks play back to back from the first delivery; when the
    next one is not there, playback stalls until it arrives."""

    def __init__(self) -> None:
        self.cursor: float | None = None  # when the audio delivered so far runs out

    def deliver(self, duration_s: float, now: float) -> None:
        start = now if self.cursor is None else max(self.cursor, now)
        self.cursor = start + max(0.0, duration_s)

    def adjust(self, delta_s: float) -> None:
        """The chunk delivered last turned out ``delta_s`` longer (joins, pauses)."""
        if self.cursor is not None:
            self.cursor += delta_s

    def ahead(self, now: float) -> float:
        return 0.0 if self.cursor is None else max(0.0, self.cursor - now)


class LiveSchedule:
    """The adaptive budget of one stream: its playback clock, the audio synthesized but
    not yet handed out, and the sessions' speed models (shared with the synthesizer, so
    what this stream learns seeds the next). ``budget(history)`` is what the chunker
    calls before cutting each piece after the primer."""

    def __init__(self, cfg: ChunkingConfig, models: Sequence[SpeedModel], limit: int,
                 clock: Callable[[], float] = time.perf_counter,
                 load: Callable[[], float] = lambda: 1.0,
                 window_models: Sequence[SpeedModel] | None = None):
        """``models``: each session's speed on a piece run whole; ``window_models``: on a
        piece vocoded from its sentence's part A (:meth:`SpeedModel.windowed`), given
        when the stream makes such pieces: its pieces are then sized by them (a piece
        inside a sentence is a window; a whole sentence packed into one piece runs whole,
        which the margin covers)."""
        self.cfg = cfg
        self.models = list(models)
        self.window_models = list(window_models) if window_models else None
        #: the models the budget and the first piece's floor read
        self.sizing = self.window_models or self.models
        self.limit = limit
        self.now = clock
        #: the slowdown other processes cause now (labkit.engine.cpuload), read at every
        #: decision and every finished piece
        self.load = load
        self.playback = PlaybackClock()
        self.undelivered_s = 0.0
        self._lock = threading.Lock()
        #: (tokens budgeted, seconds buffered ahead) per decision, for the record
        self.decisions: list[tuple[int, float]] = []
        #: the slowdown sensed when the stream opened, and the first piece's floor
        self.opening_load = 1.0
        self.floor = 0

    def ahead(self) -> float:
        with self._lock:
            return self.playback.ahead(self.now()) + self.undelivered_s

    def primer_floor(self, then_part_a: int = 0) -> int:
        """The first piece's fewest tokens for the load sensed now (:func:`primer_floor`;
        ``then_part_a``: the part A the second piece runs first)."""
        self.opening_load = self.load()
        self.floor = primer_floor(self.sizing, self.cfg, self.limit, self.opening_load, then_part_a)
        return self.floor

    def budget(self, history: Sequence[int] = (), part_a_tokens: int = 0) -> int:
        """The next piece's tokens; ``part_a_tokens``: the part A it runs first (its
        sentence's, when it opens one under sentence prosody), whose predicted seconds
        come off the audio buffered ahead (:func:`part_a_due_s`)."""
        ahead, load = self.ahead(), self.load()
        due = part_a_due_s(self.window_models or (), part_a_tokens, load)
        n = budget(self.sizing, max(0.0, ahead - due), self.cfg, self.limit, load)
        with self._lock:
            self.decisions.append((n, round(ahead, 3)))
        return n

    # what the stream reports ------------------------------------------------------------
    def synthesized(self, session: int, tokens: int, seconds: float, audio_s: float,
                    windowed: bool = False, part_a_s: float = 0.0) -> None:
        """A piece made: ``windowed`` when vocoded from its sentence's part A (it teaches
        the window model its part B's seconds, ``seconds`` less the ``part_a_s`` it paid
        for its sentence: part A is a cost per sentence, not per window; a piece run
        whole teaches the whole-run model)."""
        models = self.window_models if windowed and self.window_models else self.models
        learnt = seconds - part_a_s if windowed and self.window_models else seconds
        with self._lock:
            if 0 <= session < len(models):
                models[session].update(tokens, learnt, None, self.load())
            self.undelivered_s += audio_s

    def played(self, session: int, tokens: int, played_s: float) -> None:
        """A chunk handed out plays ``played_s`` after trimming and joining: the audio per
        token the first piece of the next stream is sized with."""
        with self._lock:
            for models in (self.models, self.window_models or ()):
                if 0 <= session < len(models):
                    models[session].learn_audio(tokens, played_s)

    def delivered(self, raw_s: float, played_s: float) -> None:
        """A chunk handed out: ``raw_s`` as synthesized, ``played_s`` after the joins."""
        with self._lock:
            self.undelivered_s = max(0.0, self.undelivered_s - raw_s)
            self.playback.deliver(played_s, self.now())


class PlannedSchedule:
    """The adaptive rule on a simulated clock (one session at the model's speed, a listener
    who starts at the first piece): deterministic pieces for listings and tests."""

    def __init__(self, cfg: ChunkingConfig, model: SpeedModel | None, limit: int):
        self.cfg = cfg
        self.model = model or SpeedModel()
        self.limit = limit

    def budget(self, history: Sequence[int], part_a_tokens: int = 0) -> int:
        t, clock = 0.0, PlaybackClock()
        for tokens in history:
            t += self.model.predict(tokens)
            clock.deliver(tokens * self.model.audio_per_token_s, t)
        due = part_a_due_s([self.model], part_a_tokens)
        return budget([self.model], max(0.0, clock.ahead(t) - due), self.cfg, self.limit)

    def primer_floor(self) -> int:
        return primer_floor([self.model], self.cfg, self.limit)


def validate(cfg: ChunkingConfig) -> str | None:
    """What is wrong with the schedule settings, or None."""
    if cfg.schedule not in SCHEDULES:
        return f"chunking.schedule={cfg.schedule!r}: allowed are {', '.join(SCHEDULES)}"
    if not cfg.schedule_margin >= 1.0:
        return f"chunking.schedule_margin={cfg.schedule_margin}: must be >= 1"
    if not cfg.schedule_safety_s >= 0:
        return f"chunking.schedule_safety_s={cfg.schedule_safety_s}: must be >= 0"
    if not 1 <= cfg.schedule_min_tokens:
        return f"chunking.schedule_min_tokens={cfg.schedule_min_tokens}: must be >= 1"
    return None
