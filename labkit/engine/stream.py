"""The stream's threads: one :class:`ChunkStream` per text, its pieces synthesized by one
worker thread per session, handed out as labkit.engine.chunks.Chunk s in text order.

Workers claim the pieces the lazy chunker yields (the first to the lowest-latency session,
the rest round-robin or to whichever session is free: ``pipeline.routing``), keeping at
most ``queue_depth`` pieces synthesized or in flight ahead of the consumer (with
``pipeline.first_alone``, none until the first chunk is handed out). Each piece's
phonemes are cleaned once, when it is pulled (:class:`_Task`: its tokens, and the cleaned
phonemes its word timings align to); its audio is made by one call (:meth:`ChunkStream._make`:
part B over its window of the sentence, labkit.engine.prosody, else the model on its tokens),
through the piece cache when the synthesizer has one (labkit.engine.piece_cache). A piece
that fails on one session is retried on another (counted in :class:`StreamStats`); one that
fails on every session ends the stream with :class:`PipelineError`; what the stream did
is its ``stats`` (labkit.engine.chunks.StreamStats).

The consumer (``next``) joins the pieces in text order (labkit.engine.joining), places
their words in stream time (labkit.engine.words) and reports them to the adaptive
schedule (labkit.engine.schedule). ``cancel()`` or ``close()`` stops at once: no new piece
starts and, with ``terminate_on_cancel``, the runs in flight are aborted through their
``RunOptions.terminate``; ``close()`` returns when every worker has ended.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import onnxruntime as ort

from labkit.config import ChunkingConfig, ConfigError
from labkit.engine.chunking import Piece
from labkit.engine.chunks import Chunk, StreamStats
from labkit.engine.phonemized import clean_phonemes, tokenize
from labkit.engine.joining import Joiner, joined_boundary, pause_seconds, playable_seconds
from labkit.engine.piece_cache import Made, piece_key
from labkit.engine.prosody import SentenceWindows, Windowed
from labkit.engine.schedule import LiveSchedule
from labkit.engine.text import Sanitized
from labkit.engine.words import piece_samples, place, spans_for
from labkit.kokoro import SAMPLE_RATE

ROUTINGS = ("first-fast", "round-robin")

#: how a stream makes a piece's audio: through the piece cache (PieceCache.through with
#: the stream's read setting) or at once (:func:`make_now`)
Through = Callable[[tuple, Callable[[], Made]], Made]


def make_now(key: tuple, make: Callable[[], Made]) -> Made:
    """No piece cache: every piece is made."""
    return make()


class PipelineError(RuntimeError):
    """A piece could not be synthesized on any session."""


@dataclass
class _Task:
    """A piece to synthesize, with its phonemes cleaned once (what the model reads: the
    tokens, and the cleaned phonemes the word timings are aligned to)."""

    index: int
    piece: Piece
    cleaned: str = ""
    tokens: list[int] = field(default_factory=list)
    attempts: int = 0
    excluded: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, index: int, piece: Piece) -> "_Task":
        cleaned = clean_phonemes(piece.phonemes)[0] if piece.phonemes else ""
        return cls(index, piece, cleaned, tokenize(cleaned) if cleaned else [])


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
    windowed: Windowed | None = None

    @property
    def seamless(self) -> tuple[bool, bool]:
        w = self.windowed
        return (w.seamless_start, w.seamless_end) if w is not None else (False, False)


class ChunkStream:
    """One stream: an iterator of :class:`Chunk` in text order, fed by worker threads."""

    def __init__(self, engines: Sequence[Any], pieces: Iterator[Piece], *,
                 voice: str, speed: float, chunking_cfg: ChunkingConfig,
                 routing: str = "first-fast", queue_depth: int = 4, first_session: int = 0,
                 cancel: threading.Event | None = None, max_attempts: int | None = None,
                 source_text: str = "", g2p: Any = None,
                 sanitized: Sanitized | None = None,
                 windows: SentenceWindows | None = None,
                 schedule: LiveSchedule | None = None, terminate_on_cancel: bool = True,
                 through: Through = make_now, first_alone: bool = False):
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
        self.joiner = Joiner(chunking_cfg)
        #: chunking.prosody "sentence": pieces vocoded from their sentence's part A
        self.windows = windows
        #: the adaptive budget this stream feeds (None: the chunker's own schedule)
        self.schedule = schedule
        self.terminate_on_cancel = terminate_on_cancel
        #: the piece cache as this stream uses it (PieceCache.through), or make_now
        self.through = through
        #: nothing after the first piece (its chunking, its G2P, its synthesis on any
        #: session) starts until the first chunk has been handed out: before the first
        #: audio nothing is buffered, so everything else can wait, and on a machine whose
        #: cores are taken it would only slow the first piece down (pipeline.first_alone)
        self.first_alone = first_alone
        #: words of this text misaki did not know (read by espeak), and words nothing could
        #: read: the G2P's counts over this stream, set when it closes (exact while one
        #: stream at a time reads the language)
        self.fallback_words = 0
        self.unknown_words = 0
        self._g2p_before = dict(g2p.counts) if g2p is not None and hasattr(g2p, "counts") else None
        self._running: dict[int, ort.RunOptions] = {}  # lane -> the run in flight
        self._pulling = False
        self._ended = False  # the last chunk was handed out
        self._first_out = False  # the first chunk was handed out
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
        self._pulled.append(_Task.of(self._n_pulled, piece))
        self._n_pulled += 1
        return True

    def _claim(self, lane: int) -> _Task | None:
        for k, task in enumerate(self._retry):
            if lane not in task.excluded:
                return self._retry.pop(k)
        if self.first_alone and self._n_pulled >= 1 and not self._first_out and not self._pulled:
            return None  # the first piece is being made or handed out: the rest waits
        if not self._pulled and not self._pull():
            return None
        if self._cancelled() or not self._pulled:
            return None
        task = self._pulled[0]
        if self.first_alone and task.index > 0 and not self._first_out:
            # pulled by a session that came while the first piece was still being cut (the
            # check above saw no piece pulled yet): it waits all the same
            return None
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
                run_options = ort.RunOptions()
                self._running[lane] = run_options
            started = time.perf_counter() - self.t0
            audio, seconds, error, durations, windowed = None, 0.0, None, None, None
            try:
                audio, seconds, durations, windowed = self._make(task, engine, run_options)
            except Exception as exc:  # noqa: BLE001 - retried on another session, counted
                error = exc
            done = time.perf_counter() - self.t0
            with self._cv:
                self._running.pop(lane, None)
                self._in_flight -= 1
                if error is not None and run_options.terminate:
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
                        result.playable_s = playable_seconds(
                            audio, task.piece.boundary, self.joiner.cfg, *result.seamless)
                        self.schedule.synthesized(
                            lane, task.piece.tokens, seconds, result.playable_s,
                            windowed=windowed is not None,
                            part_a_s=windowed.part_a_s if windowed is not None else 0.0)
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

    def _make(self, task: _Task, engine: Any, run_options: ort.RunOptions
              ) -> tuple[np.ndarray, float, np.ndarray | None, Windowed | None]:
        """A piece's audio, seconds, durations and window: vocoded from its sentence's part
        A (chunking.prosody: sentence), else the model run on its tokens; both through the
        piece cache. A piece of punctuation only has no audio, only its pause."""
        if not task.piece.phonemes:
            return np.zeros(0, np.float32), 0.0, None, None
        if self.windows is not None:
            windowed = self.windows.synthesize(task.piece, run_options, self.through)
            if windowed is not None:
                return windowed.audio, windowed.seconds, None, windowed

        def run() -> Made:
            syn = engine.run_tokens(task.tokens, self.voice, self.speed, run_options=run_options)
            return syn.audio, syn.seconds, getattr(syn, "durations", None)

        key = piece_key(engine, self.voice, self.speed, task.tokens)
        audio, seconds, durations = self.through(key, run)
        return audio, seconds, durations, None

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
        words = (place(result.windowed.words, base, *self.joiner.last_trim,
                       where=self._where(result.windowed.chars))
                 if result.windowed is not None else self._words(result.task, result.durations, base))
        pause = 0.0 if is_last else pause_seconds(
            joined_boundary(piece.boundary, seamless[1]), self.joiner.cfg)
        chunk = Chunk(dataclasses.replace(piece, index=result.task.index), audio, result.seconds,
                      time.perf_counter() - self.t0, is_last, result.session, result.started_at,
                      result.done_at, result.task.attempts, pause, words)
        if not self._first_out:
            with self._cv:
                self._first_out = True
                self._cv.notify_all()
        if is_last:
            self.close()
        return chunk

    def _words(self, task: _Task, durations: np.ndarray | None, base: int) -> list:
        """The piece's words in stream time (labkit.engine.words), [] without durations."""
        piece = task.piece
        if durations is None or not task.tokens:
            return []
        phonemized = self.g2p(piece.text) if self.g2p is not None else None
        spans, chars = spans_for(piece.text, task.cleaned, phonemized)
        samples = piece_samples(spans, durations, len(task.cleaned))
        where = self._where([(piece.start + a, piece.start + b) for a, b in chars])
        return place(samples, base, *self.joiner.last_trim, where=where)

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
        if self._g2p_before is not None:
            self.fallback_words = self.g2p.counts["fallback_words"] - self._g2p_before["fallback_words"]
            self.unknown_words = self.g2p.counts["unknown_words"] - self._g2p_before["unknown_words"]
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
