"""Streaming synthesis: text in, PCM chunks out, piece by piece, in text order.

``StreamingSynthesizer(engine).stream(text, voice, speed, lang, cancel)`` yields
:class:`Chunk` s (joined audio, the piece's text and phonemes, timings). Behind it:

* :mod:`labkit.engine.chunking` cuts the sanitized text lazily (primer first), so synthesis of
  the first piece starts after only the first few words have been phonemized;
* a look-ahead scheduler runs synthesis in background threads, one per session, and keeps
  at most ``pipeline.queue_depth`` pieces synthesized or in flight ahead of the consumer
  (bounded memory), so the next piece is usually ready before the current one finishes;
* :mod:`labkit.engine.joining` trims each piece, adds the pause its punctuation calls for, and
  crossfades mid-sentence joins - in text order, in the consumer's thread.

Over two sessions (``pipeline.sessions: 2``; e.g. CoreML ALL + CPU on the Mac, or two CPU
sessions with split thread budgets), the first piece goes to the lowest-latency session
and the rest round-robin or to whichever session is free (``pipeline.routing``). Output
order is always text order. A piece that fails on one session is retried on the other
(the failure is counted in the stream's stats, never dropped); a piece that fails on
every session ends the stream with :class:`PipelineError`.

How big each piece after the primer is: ``chunking.schedule: adaptive`` sizes it, when a
worker is about to start it, from the sessions' measured speed and the audio buffered
ahead of the listener (:mod:`labkit.engine.schedule`; this stream reports every finished
piece and every chunk handed out to its :class:`~labkit.engine.schedule.LiveSchedule`);
``ramp`` uses the chunker's fixed ramp. The chunker runs outside the stream's lock, so
handing out a finished chunk never waits for the next piece's G2P.

Cancellation (the ``cancel`` event, closing the iterator, ``ChunkStream.cancel()`` or
``close()``) stops the stream at once: no new piece is started and, with
``pipeline.terminate_on_cancel`` (the default), the pieces being synthesized are aborted
through ONNX Runtime's ``RunOptions.terminate`` (an engine whose ``synthesize_phonemes``
takes no ``run_options`` finishes its piece). ``close()`` returns only when every worker
thread has ended - no running work is left, and the session is free.

The pinned interface (serve/ and the bench use it): ``StreamingSynthesizer(engine)``,
``.stream(...) -> Iterator[Chunk]``, ``.synthesize(...) -> np.ndarray``,
``.pieces(text, lang, voice)``, ``Chunk(piece, audio, synth_seconds, ready_at, is_last)``
with ``.index``, ``.text``, ``.phonemes``, ``.boundary``, ``.tokens`` from its piece and
``.duration`` from its audio.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import inspect
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator, Sequence

import numpy as np
import onnxruntime as ort

from labkit.engine import chunking
from labkit.engine import cpuload
from labkit.engine import joining
from labkit.engine import prosody as prosodymod
from labkit.engine import schedule as schedmod
from labkit.engine import split_runtime
from labkit.engine import text as textmod
from labkit.engine import words as wordsmod
from labkit.config import ChunkingConfig, ConfigError, LabConfig, PipelineConfig, SessionConfig
from labkit.engine.g2p import G2P, clean_phonemes, get_g2p, lexicon_path, normalize_lang
from labkit.engine.runtime import Engine
from labkit.engine.voices import Voicing, voicing
from labkit.kokoro import SAMPLE_RATE
from labkit.host.machine import session_threads

ROUTINGS = ("first-fast", "round-robin")


class PipelineError(RuntimeError):
    """A piece could not be synthesized on any session."""


@dataclass
class Chunk:
    """One piece of the stream, synthesized: the chunker's :class:`~labkit.engine.chunking.Piece`
    (its text, phonemes, boundary, index) plus the audio and how and when it was made."""

    piece: chunking.Piece
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


@dataclass
class _Task:
    index: int
    piece: chunking.Piece
    attempts: int = 0
    excluded: set[int] = field(default_factory=set)


@dataclass
class _Result:
    task: _Task
    audio: np.ndarray | None
    seconds: float
    session: int
    started_at: float
    done_at: float
    error: BaseException | None = None
    durations: np.ndarray | None = None
    #: how long it will play once joined (joining.playable_seconds), as the schedule counts it
    playable_s: float = 0.0
    #: the piece as a window of its sentence's frames (chunking.prosody: sentence), or None
    windowed: prosodymod.Windowed | None = None

    @property
    def seamless(self) -> tuple[bool, bool]:
        w = self.windowed
        return (w.seamless_start, w.seamless_end) if w is not None else (False, False)


class ChunkStream:
    """One stream: an iterator of :class:`Chunk` in text order, fed by worker threads."""

    def __init__(self, engines: Sequence[Any], pieces: Iterator[chunking.Piece], *,
                 voice: str, speed: float, chunking_cfg: ChunkingConfig,
                 routing: str = "first-fast", queue_depth: int = 4, first_session: int = 0,
                 cancel: threading.Event | None = None, max_attempts: int | None = None,
                 source_text: str = "", g2p: Any = None,
                 sanitized: textmod.Sanitized | None = None,
                 windows: prosodymod.SentenceWindows | None = None,
                 schedule: schedmod.LiveSchedule | None = None, terminate_on_cancel: bool = True):
        if routing not in ROUTINGS:
            raise ConfigError(f"pipeline.routing={routing!r}: allowed are {', '.join(ROUTINGS)}")
        if queue_depth < 1:
            raise ConfigError(f"pipeline.queue_depth={queue_depth}: must be >= 1")
        if not engines:
            raise ConfigError("no sessions to synthesize on")
        self.engines = list(engines)
        self.voice, self.speed = voice, speed
        self.routing, self.queue_depth = routing, queue_depth
        self.first = first_session % len(self.engines)
        self.cancel_event = cancel
        self.max_attempts = max_attempts or max(2, len(self.engines))
        self.source_text = source_text
        #: the G2P the pieces came from (its cached spans give the words' phonemes)
        self.g2p = g2p
        #: the sanitized text with its map back to the input (the words' input offsets)
        self.sanitized = sanitized
        self.joiner = joining.Joiner(chunking_cfg)
        #: chunking.prosody "sentence": pieces vocoded from their sentence's part A
        self.windows = windows
        #: the adaptive budget this stream feeds (None: the chunker's own schedule)
        self.schedule = schedule
        self.terminate_on_cancel = terminate_on_cancel
        self._takes_run_options = [_accepts(e.synthesize_phonemes, "run_options")
                                   for e in self.engines]
        self._running: dict[int, ort.RunOptions] = {}  # lane -> the run in flight
        self._pulling = False
        self._ended = False  # the last chunk was handed out
        self.stats = StreamStats(per_session={i: {"pieces": 0, "busy_s": 0.0, "failures": 0}
                                              for i in range(len(self.engines))})
        self._source = pieces
        self._cv = threading.Condition()
        self._pulled: collections.deque[_Task] = collections.deque()  # pulled, not claimed
        self._retry: list[_Task] = []
        self._results: dict[int, _Result] = {}
        self._n_pulled = 0
        self._exhausted = False
        self._in_flight = 0
        self._emit = 0  # index of the next chunk for the consumer
        self._stop = False
        self._error: BaseException | None = None
        self._done = False
        self.t0 = time.perf_counter()
        self._threads = [threading.Thread(target=self._work, args=(i,), daemon=True,
                                          name=f"kokoro-session-{i}")
                         for i in range(len(self.engines))]
        for t in self._threads:
            t.start()

    # -- source (call with the lock held) ------------------------------------------------
    def _pull(self) -> bool:
        """One more piece from the lazy chunker; False when there are no more. Called
        with the lock held; the chunker (G2P, the schedule's budget) runs without it, one
        caller at a time."""
        while self._pulling:
            self._cv.wait(0.05)
        if self._exhausted:
            return False
        if self._pulled:
            return True  # another caller pulled one meanwhile
        self._pulling = True
        self._cv.release()
        error: BaseException | None = None
        piece = None
        try:
            piece = next(self._source)
        except StopIteration:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            error = exc
        finally:
            self._cv.acquire()
            self._pulling = False
            self._cv.notify_all()
        if piece is None:
            self._exhausted = True
            self._error = self._error or error
            return False
        self._pulled.append(_Task(self._n_pulled, piece))
        self._n_pulled += 1
        return True

    def _claim(self, lane: int) -> _Task | None:
        for k, task in enumerate(self._retry):
            if lane not in task.excluded:
                return self._retry.pop(k)
        if not self._pulled and not self._pull():
            return None
        if self._cancelled() or not self._pulled:
            return None
        task = self._pulled[0]
        if task.index >= self._emit + self.queue_depth:
            return None  # the queue ahead of the consumer is full
        if task.index == 0 and lane != self.first:
            return None  # the first piece goes to the lowest-latency session
        if (self.routing == "round-robin" and task.index > 0
                and lane != (self.first + task.index) % len(self.engines)):
            return None
        return self._pulled.popleft()

    def _all_claimed(self) -> bool:
        return self._exhausted and not self._pulled and not self._retry

    # -- workers -----------------------------------------------------------------------
    def _cancelled(self) -> bool:
        return self._stop or (self.cancel_event is not None and self.cancel_event.is_set())

    def _work(self, lane: int) -> None:
        engine = self.engines[lane]
        while True:
            with self._cv:
                task = None
                while task is None:
                    if self._cancelled() or self._error is not None:
                        if self._cancelled():
                            self._abort_runs_locked()
                        return
                    task = self._claim(lane)
                    if task is None:
                        if self._all_claimed() and self._in_flight == 0:
                            return
                        self._cv.wait(0.05)
                self._in_flight += 1
                ahead = self._in_flight + len(self._results)
                self.stats.max_ahead = max(self.stats.max_ahead, ahead)
                run_options = None
                if self._takes_run_options[lane]:
                    run_options = ort.RunOptions()
                    self._running[lane] = run_options
            started = time.perf_counter() - self.t0
            audio, seconds, error, durations, windowed = None, 0.0, None, None, None
            try:
                if task.piece.phonemes and self.windows is not None:
                    windowed = self.windows.synthesize(task.piece, run_options)
                if windowed is not None:
                    audio, seconds = windowed.audio, windowed.seconds
                elif task.piece.phonemes:
                    if run_options is not None:
                        syn = engine.synthesize_phonemes(task.piece.phonemes, self.voice, self.speed,
                                                         run_options=run_options)
                    else:
                        syn = engine.synthesize_phonemes(task.piece.phonemes, self.voice, self.speed)
                    audio, seconds = syn.audio, syn.seconds
                    durations = getattr(syn, "durations", None)
                else:  # punctuation only: nothing to say, only its pause
                    audio = np.zeros(0, np.float32)
            except Exception as exc:  # noqa: BLE001 - retried on another session, counted
                error = exc
            done = time.perf_counter() - self.t0
            with self._cv:
                self._running.pop(lane, None)
                self._in_flight -= 1
                if error is not None and run_options is not None and run_options.terminate:
                    # aborted by a cancel: not a failure, nothing to retry
                    self.stats.aborted += 1
                    self._cv.notify_all()
                    return
                task.attempts += 1
                per = self.stats.per_session[lane]
                per["busy_s"] += done - started
                if error is None:
                    per["pieces"] += 1
                    result = _Result(task, audio, seconds, lane, started, done,
                                     durations=durations, windowed=windowed)
                    if self.schedule is not None:
                        result.playable_s = joining.playable_seconds(
                            audio, task.piece.boundary, self.joiner.cfg, *result.seamless)
                        self.schedule.synthesized(lane, task.piece.tokens, seconds, result.playable_s)
                    self._results[task.index] = result
                else:
                    per["failures"] += 1
                    self.stats.failures.append((task.index, lane, f"{type(error).__name__}: {error}"))
                    if task.attempts < self.max_attempts:
                        self.stats.retries += 1
                        task.excluded.add(lane)
                        if len(task.excluded) >= len(self.engines):
                            task.excluded = set()  # every session tried: try them again
                        self._retry.append(task)
                    else:
                        self._results[task.index] = _Result(task, None, 0.0, lane, started, done, error)
                self._cv.notify_all()

    # -- consumer ----------------------------------------------------------------------
    def __iter__(self) -> "ChunkStream":
        return self

    def __next__(self) -> Chunk:
        with self._cv:
            while True:
                if self._done:
                    raise StopIteration
                if self._error is not None:
                    error = self._error
                    self._close_locked()
                    raise PipelineError(f"chunking failed: {type(error).__name__}: {error}") from error
                if self._cancelled():
                    self.stats.cancelled = True
                    self._close_locked()
                    raise StopIteration
                if self._emit in self._results:
                    result = self._results.pop(self._emit)
                    break
                if self._all_claimed() and self._emit >= self._n_pulled and self._in_flight == 0:
                    self._close_locked()
                    raise StopIteration
                self._cv.wait(0.05)
            if result.error is not None:
                self._close_locked()
                raise PipelineError(
                    f"piece {result.task.index} failed on every session "
                    f"({result.task.attempts} attempts): {self.stats.failures[-1][2]}"
                ) from result.error
            # is it the last one? (nothing speakable after it in the text, or else look one
            # piece ahead in the chunker)
            piece = result.task.piece
            counted_s = result.playable_s  # what the schedule counted it as
            if self.schedule is not None:
                self.schedule.delivered(counted_s, counted_s)
            if self.source_text and self.source_text[piece.start:piece.end] == piece.text:
                is_last = not self.source_text[piece.end:].strip()
            else:
                is_last = self._n_pulled <= self._emit + 1 and not self._pull() and self._exhausted
            if self._error is not None:
                is_last = False  # the chunker failed after this piece: the next call raises
            self._emit += 1
            self.stats.pieces += 1
            self._ended = is_last
            self._cv.notify_all()
        base = self.joiner.emitted
        seamless = result.seamless
        audio = self.joiner.push(result.audio, piece.boundary, is_last, *seamless)
        if self.schedule is not None:
            self.schedule.playback.adjust(len(audio) / SAMPLE_RATE - counted_s)
            if result.seconds > 0:  # synthesized here (not a cache hit): what it plays for
                self.schedule.played(result.session, piece.tokens, len(audio) / SAMPLE_RATE)
        words = (wordsmod.place(result.windowed.words, base, *self.joiner.last_trim,
                                where=self._where(result.windowed.chars))
                 if result.windowed is not None else self._words(piece, result.durations, base))
        pause = 0.0 if is_last else joining.pause_seconds(
            joining.joined_boundary(piece.boundary, seamless[1]), self.joiner.cfg)
        chunk = Chunk(dataclasses.replace(piece, index=result.task.index), audio, result.seconds,
                      time.perf_counter() - self.t0, is_last, result.session, result.started_at,
                      result.done_at, result.task.attempts, pause, words)
        if is_last:
            self.close()
        return chunk

    def _words(self, piece: chunking.Piece, durations: np.ndarray | None, base: int) -> list:
        """The piece's words in stream time (labkit.engine.words), [] without durations."""
        if durations is None or not piece.phonemes:
            return []
        cleaned = clean_phonemes(piece.phonemes)[0]  # what the engine tokenized
        phonemized = self.g2p(piece.text) if self.g2p is not None else None
        spans, chars = wordsmod.spans_for(piece.text, cleaned, phonemized)
        samples = wordsmod.piece_samples(spans, durations, len(cleaned))
        where = self._where([(piece.start + a, piece.start + b) for a, b in chars])
        return wordsmod.place(samples, base, *self.joiner.last_trim, where=where)

    def _where(self, chars: list[tuple[int, int]]) -> list[tuple[int, int]] | None:
        """Spans of the sanitized text as spans of the input (None without the map)."""
        if self.sanitized is None:
            return None
        return [self.sanitized.source(a, b) for a, b in chars]

    # -- stopping ------------------------------------------------------------------------
    def _abort_runs_locked(self) -> None:
        if self.terminate_on_cancel:
            for run_options in self._running.values():
                run_options.terminate = True

    def _close_locked(self) -> None:
        self._stop = True
        self._done = True
        self._abort_runs_locked()
        self._cv.notify_all()

    def cancel(self) -> None:
        """Stop now from any thread, without waiting: no new piece starts and the pieces in
        flight are aborted (``terminate_on_cancel``); ``close()`` then joins quickly."""
        with self._cv:
            if not self._done:
                self.stats.cancelled = True
            self._close_locked()

    def close(self) -> None:
        """Stop starting pieces and wait until every worker has ended."""
        with self._cv:
            if (not self._done and not self._ended
                    and self._emit < self._n_pulled + (0 if self._exhausted else 1)):
                self.stats.cancelled = True
            self._close_locked()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()
        self.stats.wall_s = time.perf_counter() - self.t0
        if self.schedule is not None:
            self.stats.budgets = list(self.schedule.decisions)
            self.stats.opening_load = round(self.schedule.opening_load, 3)
            self.stats.primer_floor = self.schedule.floor

    @property
    def running(self) -> bool:
        """True while any worker thread is alive."""
        return any(t.is_alive() for t in self._threads)

    def __enter__(self) -> "ChunkStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # an abandoned stream stops its workers
        try:
            with self._cv:
                self._close_locked()
        except Exception:  # noqa: BLE001
            pass


class StreamingSynthesizer:
    """Text -> chunks over one engine (or several: ``engines=[...]``)."""

    def __init__(self, engine: Engine, engines: Sequence[Engine] | None = None,
                 pipeline: PipelineConfig | None = None, chunking_cfg: ChunkingConfig | None = None,
                 first_session: int | None = None):
        self.engine = engine
        self.engines = list(engines) if engines else [engine]
        self.cfg = engine.cfg
        self.pipeline_cfg = pipeline or self.cfg.pipeline
        self.chunking_cfg = chunking_cfg or self.cfg.chunking
        chunking.validate(self.chunking_cfg)
        check_prosody_layout(self.chunking_cfg, self.engines)
        fs = self.pipeline_cfg.first_session if first_session is None else first_session
        self.first_session = int(fs) if fs is not None else 0
        #: stats of the most recent stream (failures, retries, per-session load)
        self.last_stats: StreamStats | None = None
        #: per session: how fast it synthesizes now (labkit.engine.schedule), learnt from
        #: every piece of every stream and kept across streams
        self.speed_models = [schedmod.SpeedModel() for _ in self.engines]
        #: the cores other processes keep busy (sampled in the background from now on, so
        #: the first stream's first piece is already sized for them)
        self.load_monitor = cpuload.shared_monitor()
        self._threads = max(session_threads(e.cfg.session) for e in self.engines)
        if self.adaptive:
            self.load_monitor.start()

    @classmethod
    def from_config(cls, cfg: LabConfig, engine: Engine | None = None) -> "StreamingSynthesizer":
        """One or two sessions as ``cfg.pipeline`` says (the second session's settings
        are ``cfg.session`` with ``pipeline.second_session`` applied)."""
        engines = build_engines(cfg, engine)
        first = cfg.pipeline.first_session
        if first is None:
            first = fastest(engines) if len(engines) > 1 else 0
        return cls(engines[0], engines, first_session=first)

    # -- text -> pieces -------------------------------------------------------------------
    def sanitize(self, text: str, lang: str | None = None, inline: bool | None = None) -> str:
        return textmod.sanitize(text, self.cfg.text, lang, inline).text

    def iter_pieces(self, text: str, lang: str | None = None, voice: str | None = None,
                    sanitized: bool = False, budget=None, primer_floor: int = 0,
                    inline: bool | None = None) -> Iterator[chunking.Piece]:
        """The pieces of ``text``; ``inline`` (default ``text.inline_phonemes``): inline
        pronunciation obeyed (trusted text)."""
        lang = normalize_lang(lang or self.cfg.lang, voice or self.cfg.voice)
        inline = self.cfg.text.inline_phonemes if inline is None else inline
        clean = text if sanitized else self.sanitize(text, lang, inline)
        if budget is None and self.adaptive:
            # no live stream: the adaptive rule on a clock running at the measured speed
            planned = schedmod.PlannedSchedule(self.chunking_cfg, self.speed_models[0].copy(),
                                               self.chunking_cfg.max_tokens)
            budget, primer_floor = planned.budget, planned.primer_floor()
        return chunking.iter_pieces(clean, self.g2p(lang, inline), self.chunking_cfg, budget,
                                    primer_floor)

    def windows_for(self, clean: str, g2p: G2P, voice: str,
                    speed: float) -> prosodymod.SentenceWindows | None:
        """A stream's sentence contexts (``chunking.prosody: sentence``), else None."""
        cc = self.chunking_cfg
        if cc.prosody != "sentence":
            return None
        return prosodymod.SentenceWindows(self.engine, g2p, clean, voice, speed,
                                          cc.window_context_frames, cc.crossfade_ms)

    def slowdown(self) -> float:
        """How much slower the sessions run now for other processes' load (1: idle)."""
        return cpuload.slowdown(self.load_monitor.others_demand(self._threads), self._threads)

    @property
    def adaptive(self) -> bool:
        """Whether pieces are sized by the adaptive schedule (strategy primer)."""
        return self.chunking_cfg.strategy == "primer" and self.chunking_cfg.schedule == "adaptive"

    def g2p(self, lang: str, inline: bool = False) -> "G2P":
        """The shared G2P this synthesizer reads ``lang`` with (with the config's lexicon);
        ``inline``: the same, obeying inline pronunciation (trusted text)."""
        g2p = get_g2p(lang, lexicon=lexicon_path(self.cfg))
        return g2p.trusting() if inline else g2p

    def pieces(self, text: str, lang: str | None = None, voice: str | None = None) -> list[chunking.Piece]:
        return list(self.iter_pieces(text, lang, voice))

    def voicing(self, voice: str | None = None, speed: float | None = None,
                lang: str | None = None) -> Voicing:
        """``voice``, ``speed`` and ``lang`` (defaults: the config's) checked once
        (labkit.engine.voices.voicing): what :meth:`open_stream` takes."""
        return voicing(getattr(self.engine, "voices", None), voice or self.cfg.voice,
                       self.cfg.speed if speed is None else speed, lang or self.cfg.lang)

    # -- streaming -----------------------------------------------------------------------
    def open_stream(self, text: str, voice: str | Voicing | None = None,
                    speed: float | None = None, lang: str | None = None,
                    cancel: threading.Event | None = None, queue_depth: int | None = None,
                    inline: bool | None = None) -> ChunkStream:
        """Start synthesizing now; iterate the returned stream for chunks; close it (or
        use it as a context manager) to stop early. ``voice``: a
        :class:`~labkit.engine.voices.Voicing` checked already (``speed`` and ``lang`` are
        then not read), or a voice spec checked here with ``speed`` and ``lang`` (defaults:
        the config's). ``inline`` (default ``text.inline_phonemes``): obey inline
        pronunciation ``[word](/phonemes/)``; an unknown symbol in it raises
        :class:`labkit.engine.text.PronunciationError`. Each chunk's words carry their span
        in ``text`` (``stream.sanitized`` maps the rest)."""
        if not isinstance(voice, Voicing):
            voice = self.voicing(voice, speed, lang)
        voice, speed, lang = voice.voice, voice.speed, voice.lang
        inline = self.cfg.text.inline_phonemes if inline is None else inline
        g2p = self.g2p(lang, inline)  # an unavailable language (ja, zh without their G2P) fails here
        sanitized = textmod.sanitize(text, self.cfg.text, lang, inline)
        clean = sanitized.text
        live = (schedmod.LiveSchedule(self.chunking_cfg, self.speed_models,
                                      self.chunking_cfg.max_tokens, load=self.slowdown)
                if self.adaptive else None)
        pieces = self.iter_pieces(clean, lang, voice, sanitized=True,
                                  budget=live.budget if live is not None else None,
                                  primer_floor=live.primer_floor() if live is not None else 0,
                                  inline=inline)
        stream = ChunkStream(self.engines, pieces,
                             voice=voice, speed=speed, chunking_cfg=self.chunking_cfg,
                             routing=self.pipeline_cfg.routing,
                             queue_depth=queue_depth or self.pipeline_cfg.queue_depth,
                             first_session=self.first_session, cancel=cancel, source_text=clean,
                             g2p=g2p, sanitized=sanitized, schedule=live, windows=self.windows_for(clean, g2p, voice, speed),
                             terminate_on_cancel=self.pipeline_cfg.terminate_on_cancel)
        self.last_stats = stream.stats
        return stream

    def stream(self, text: str, voice: str | None = None, speed: float | None = None,
               lang: str | None = None, cancel: threading.Event | None = None) -> Iterator[Chunk]:
        s = self.open_stream(text, voice, speed, lang, cancel)
        try:
            yield from s
        finally:
            s.close()

    async def astream(self, text: str, voice: str | None = None, speed: float | None = None,
                      lang: str | None = None, cancel: threading.Event | None = None) -> AsyncIterator[Chunk]:
        """The same chunks as an async generator (waits run in a thread, not the loop)."""
        s = self.open_stream(text, voice, speed, lang, cancel)
        done = object()
        try:
            while True:
                chunk = await asyncio.to_thread(next, s, done)
                if chunk is done:
                    break
                yield chunk
        finally:
            await asyncio.to_thread(s.close)

    def synthesize(self, text: str, voice: str | None = None, speed: float | None = None,
                   lang: str | None = None) -> np.ndarray:
        chunks = [c.audio for c in self.stream(text, voice, speed, lang)]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


# -- sessions -----------------------------------------------------------------------------
def second_session_config(cfg: LabConfig) -> SessionConfig:
    """``cfg.session`` with ``pipeline.second_session`` applied (unknown keys rejected)."""
    base = dataclasses.asdict(cfg.session)
    unknown = sorted(set(cfg.pipeline.second_session) - set(base))
    if unknown:
        raise ConfigError(f"pipeline.second_session: unknown setting(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(base))}")
    base.update(cfg.pipeline.second_session)
    s = SessionConfig(**base)
    s.validate()
    return s


def check_prosody_layout(chunking_cfg: ChunkingConfig, engines: Sequence[Any]) -> None:
    """``chunking.prosody: sentence`` vocodes windows of part A's output: one session, an
    engine that runs the parts apart (labkit.engine.split_runtime.SplitEngine)."""
    if chunking_cfg.prosody != "sentence":
        return
    if len(engines) != 1:
        raise ConfigError(f"chunking.prosody=sentence with {len(engines)} pipeline sessions: a "
                          "sentence's windows come from one session; set pipeline.sessions: 1")
    if not all(hasattr(engines[0], k) for k in ("prosody", "vocode")):
        raise ConfigError("chunking.prosody=sentence needs the split engine (part A, then part "
                          f"B over a window of frames); {type(engines[0]).__name__} runs the "
                          "whole graph (build it with labkit.engine.split_runtime.engine_for)")


def check_split_layout(cfg: LabConfig) -> None:
    """The split engine is one pipeline session (its two parts run one after the other);
    a second pipeline session beside it is not built."""
    if split_runtime.uses_split(cfg) and cfg.pipeline.sessions != 1:
        what = "split.enabled" if cfg.split.enabled else "chunking.prosody=sentence"
        raise ConfigError(f"{what} with pipeline.sessions={cfg.pipeline.sessions}: the split "
                          "engine (part A then part B) runs as the one pipeline session; set "
                          "pipeline.sessions: 1")


def build_engines(cfg: LabConfig, engine: Engine | None = None) -> list[Engine]:
    """The engines ``cfg.pipeline`` asks for: 1, or 2 sharing one voice bank."""
    if cfg.pipeline.sessions not in (1, 2):
        raise ConfigError(f"pipeline.sessions={cfg.pipeline.sessions}: allowed are 1 or 2")
    check_split_layout(cfg)
    first = engine or split_runtime.engine_for(cfg)
    if cfg.pipeline.sessions == 1:
        return [first]
    second = Engine(cfg, variant=cfg.pipeline.second_variant or cfg.variant,
                    session=second_session_config(cfg), voices=first.voices)
    return [first, second]


def fastest(engines: Sequence[Engine], phonemes: str = "həlˈO wˈɜɹld.", repeats: int = 2) -> int:
    """Index of the engine with the lowest latency on a short phrase (each warmed first)."""
    best, best_t = 0, float("inf")
    for i, e in enumerate(engines):
        e.synthesize_phonemes(phonemes)
        t = min(e.synthesize_phonemes(phonemes).seconds for _ in range(repeats))
        if t < best_t:
            best, best_t = i, t
    return best


def _accepts(fn, name: str) -> bool:
    """Whether ``fn`` takes a keyword argument ``name`` (engines in tests may not)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
