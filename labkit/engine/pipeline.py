"""Streaming synthesis, the entry point: text in, PCM chunks out, piece by piece, in text
order.

``StreamingSynthesizer.from_config(cfg)`` builds it (the one builder: one or two sessions,
the split engine where the config runs on it, an optional piece cache);
``.open_stream(text, voicing)`` / ``.stream(...)`` / ``.synthesize(...)`` run it. Reading
top-down, a stream:

1. takes a :class:`~labkit.engine.voices.Voicing` (voice, language and speed checked once,
   by labkit.engine.voices.voicing; serve checks it before the slot, others here);
2. sanitizes the text (labkit.engine.text) and cuts it lazily into pieces, primer first
   (labkit.engine.chunking, G2P through labkit.engine.g2p), sized by the adaptive schedule
   (``chunking.schedule: adaptive``, labkit.engine.schedule) from the sessions' measured
   speed and the audio buffered ahead of the listener, or by the chunker's fixed ramp;
3. synthesizes the pieces in background threads, at most ``pipeline.queue_depth`` ahead
   of the consumer, each through the piece cache when there is one
   (labkit.engine.stream, labkit.engine.piece_cache); with ``chunking.prosody: sentence``
   a piece is part B over its window of its sentence's part A (labkit.engine.prosody);
4. joins them in text order (labkit.engine.joining: trims, pauses, crossfades) and hands
   out :class:`~labkit.engine.chunks.Chunk` s with their words timed.

Over two sessions (``pipeline.sessions: 2``) the first piece goes to the lowest-latency
session and the rest round-robin or to whichever is free (``pipeline.routing``); a piece
that fails on one session is retried on the other. Cancellation (the ``cancel`` event,
closing the iterator, ``ChunkStream.cancel()`` or ``close()``) stops the stream at once,
aborting the runs in flight (``pipeline.terminate_on_cancel``).

The pinned interface (serve/ and the bench use it): ``StreamingSynthesizer(engine)``,
``.stream(...) -> Iterator[Chunk]``, ``.synthesize(...) -> np.ndarray``,
``.pieces(text, lang, voice)``, ``Chunk(piece, audio, synth_seconds, ready_at, is_last)``
with ``.index``, ``.text``, ``.phonemes``, ``.boundary``, ``.tokens`` from its piece and
``.duration`` from its audio.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import threading
from typing import Any, AsyncIterator, Callable, Iterator, Sequence

import numpy as np

from labkit.config import ChunkingConfig, ConfigError, LabConfig, PipelineConfig, SessionConfig
from labkit.engine import split_runtime
from labkit.engine.chunking import Piece, iter_pieces, validate
from labkit.engine.cpuload import shared_monitor, slowdown
from labkit.engine.g2p import G2P, get_g2p, lexicon_path
from labkit.engine.languages import normalize_lang
from labkit.engine.piece_cache import PieceCache
from labkit.engine.prosody import SentenceWindows
from labkit.engine.runtime import Engine
from labkit.engine.schedule import LOADED_SLOWDOWN, LiveSchedule, PlannedSchedule, SpeedModel
from labkit.engine.chunks import Chunk, StreamStats
from labkit.engine.stream import ChunkStream, Through, make_now
from labkit.engine.text import sanitize
from labkit.engine.voices import Voicing, voicing
from labkit.host.machine import session_threads


class StreamingSynthesizer:
    """Text -> chunks over one engine (or several: ``engines=[...]``), with the piece cache
    in front of every piece's audio when given one (``piece_cache``)."""

    def __init__(self, engine: Engine, engines: Sequence[Engine] | None = None,
                 pipeline: PipelineConfig | None = None, chunking_cfg: ChunkingConfig | None = None,
                 first_session: int | None = None, piece_cache: PieceCache | None = None):
        self.engine = engine
        self.engines = list(engines) if engines else [engine]
        self.cfg = engine.cfg
        self.pipeline_cfg = pipeline or self.cfg.pipeline
        self.chunking_cfg = chunking_cfg or self.cfg.chunking
        validate(self.chunking_cfg)
        check_prosody_layout(self.chunking_cfg, self.engines)
        fs = self.pipeline_cfg.first_session if first_session is None else first_session
        self.first_session = int(fs) if fs is not None else 0
        #: stats of the most recent stream (failures, retries, per-session load)
        self.last_stats: StreamStats | None = None
        #: per session: how fast it synthesizes now (labkit.engine.schedule), learnt from
        #: every piece of every stream and kept across streams
        self.speed_models = [SpeedModel() for _ in self.engines]
        #: the same for pieces vocoded from their sentence's part A (chunking.prosody:
        #: sentence): no padding, so a shorter first piece breaks even
        self.window_models = [SpeedModel.windowed() for _ in self.engines]
        #: the cores other processes keep busy (sampled in the background from now on, so
        #: the first stream's first piece is already sized for them)
        self.load_monitor = shared_monitor()
        self._threads = max(session_threads(e.cfg.session) for e in self.engines)
        if self.adaptive:
            self.load_monitor.start()
        #: repeated pieces' audio (labkit.engine.piece_cache), used while :meth:`caching` is on
        self.piece_cache = piece_cache
        self._caching = piece_cache is not None

    @classmethod
    def from_config(cls, cfg: LabConfig, engine: Engine | None = None,
                    piece_cache: PieceCache | None = None) -> "StreamingSynthesizer":
        """The one builder: one or two sessions as ``cfg.pipeline`` says (the second
        session's settings are ``cfg.session`` with ``pipeline.second_session`` applied;
        the split engine where ``cfg`` runs on it), the first piece on the faster, and
        ``piece_cache`` in front of every piece (None: none)."""
        engines = build_engines(cfg, engine)
        first = cfg.pipeline.first_session
        if first is None:
            first = fastest(engines) if len(engines) > 1 else 0
        return cls(engines[0], engines, first_session=first, piece_cache=piece_cache)

    def caching(self, on: bool) -> None:
        """Use the piece cache (on) or make every piece (off: a warm-up that must time
        real runs); streams opened from now on follow it."""
        self._caching = on and self.piece_cache is not None

    @property
    def has_word_timings(self) -> bool:
        """Whether every session's model outputs durations (each chunk's words timed)."""
        return all(getattr(e, "durations_index", None) is not None for e in self.engines)

    def voicing(self, voice: str | None = None, speed: float | None = None,
                lang: str | None = None) -> Voicing:
        """``voice``, ``speed`` and ``lang`` (defaults: the config's) checked once
        (labkit.engine.voices.voicing): what :meth:`open_stream` takes."""
        return voicing(getattr(self.engine, "voices", None), voice or self.cfg.voice,
                       self.cfg.speed if speed is None else speed, lang or self.cfg.lang)

    def open_stream(self, text: str, voice: str | Voicing | None = None,
                    speed: float | None = None, lang: str | None = None,
                    cancel: threading.Event | None = None, queue_depth: int | None = None,
                    inline: bool | None = None, read_cache: bool = True) -> ChunkStream:
        """Start synthesizing now; iterate the returned stream for chunks; close it (or
        use it as a context manager) to stop early. ``voice``: a
        :class:`~labkit.engine.voices.Voicing` checked already (``speed`` and ``lang`` are
        then not read), or a voice spec checked here with ``speed`` and ``lang`` (defaults:
        the config's). ``inline`` (default ``text.inline_phonemes``): obey inline
        pronunciation ``[word](/phonemes/)``; an unknown symbol in it raises
        :class:`labkit.engine.inline.PronunciationError`. Each chunk's words carry their span
        in ``text`` (``stream.sanitized`` maps the rest). ``read_cache`` False (a request
        with ``Cache-Control: no-cache``): every piece is made afresh (and stored)."""
        checked = voice if isinstance(voice, Voicing) else self.voicing(voice, speed, lang)
        voice, speed, lang = checked.voice, checked.speed, checked.lang
        inline = self.cfg.text.inline_phonemes if inline is None else inline
        g2p = self.g2p(lang, inline)
        sanitized = sanitize(text, self.cfg.text, lang, inline)
        clean = sanitized.text
        windows = self.windows_for(clean, g2p, voice, speed)
        live = (LiveSchedule(self.chunking_cfg, self.speed_models,
                             self.chunking_cfg.max_tokens, load=self.slowdown,
                             window_models=self.window_models if windows is not None else None)
                if self.adaptive else None)
        floor = self._floor(live, windows)  # senses the load the stream opens under
        pieces = self.iter_pieces(clean, lang, voice, sanitized=True,
                                  budget=live.budget if live is not None else None,
                                  primer_floor=floor, inline=inline,
                                  chunking_cfg=self.opening_chunking(live))
        stream = ChunkStream(self.engines, pieces,
                             voice=voice, speed=speed, chunking_cfg=self.chunking_cfg,
                             routing=self.pipeline_cfg.routing,
                             queue_depth=queue_depth or self.pipeline_cfg.queue_depth,
                             first_session=self.first_session, cancel=cancel, source_text=clean,
                             g2p=g2p, sanitized=sanitized, schedule=live,
                             windows=windows,
                             terminate_on_cancel=self.pipeline_cfg.terminate_on_cancel,
                             through=self._through(read_cache),
                             first_alone=self.pipeline_cfg.first_alone)
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

    # -- helpers: text -> pieces, sentence windows, load, the piece cache ------------------
    def sanitize(self, text: str, lang: str | None = None, inline: bool | None = None) -> str:
        return sanitize(text, self.cfg.text, lang, inline).text

    def iter_pieces(self, text: str, lang: str | None = None, voice: str | None = None,
                    sanitized: bool = False, budget=None, primer_floor: int = 0,
                    inline: bool | None = None,
                    chunking_cfg: ChunkingConfig | None = None) -> Iterator[Piece]:
        """The pieces of ``text``; ``inline`` (default ``text.inline_phonemes``): inline
        pronunciation obeyed (trusted text); ``chunking_cfg``: how this stream cuts it
        (default the synthesizer's: :meth:`opening_chunking`)."""
        lang = normalize_lang(lang or self.cfg.lang, voice or self.cfg.voice)
        inline = self.cfg.text.inline_phonemes if inline is None else inline
        clean = text if sanitized else self.sanitize(text, lang, inline)
        if budget is None and self.adaptive:
            # no live stream: the adaptive rule on a clock running at the measured speed
            models = self.window_models if self.chunking_cfg.prosody == "sentence" else self.speed_models
            planned = PlannedSchedule(self.chunking_cfg, models[0].copy(), self.chunking_cfg.max_tokens)
            budget, primer_floor = planned.budget, planned.primer_floor()
        return iter_pieces(clean, self.g2p(lang, inline), chunking_cfg or self.chunking_cfg,
                           budget, primer_floor)

    def pieces(self, text: str, lang: str | None = None, voice: str | None = None) -> list[Piece]:
        return list(self.iter_pieces(text, lang, voice))

    def g2p(self, lang: str, inline: bool = False) -> "G2P":
        """The shared G2P this synthesizer reads ``lang`` with (with the config's lexicon);
        ``inline``: the same, obeying inline pronunciation (trusted text)."""
        g2p = get_g2p(lang, lexicon=lexicon_path(self.cfg))
        return g2p.trusting() if inline else g2p

    def windows_for(self, clean: str, g2p: G2P, voice: str,
                    speed: float) -> SentenceWindows | None:
        """A stream's sentence contexts (``chunking.prosody: sentence``), else None."""
        cc = self.chunking_cfg
        if cc.prosody != "sentence":
            return None
        return SentenceWindows(self.engine, g2p, clean, voice, speed,
                               cc.window_context_frames, cc.crossfade_ms,
                               cc.opening_lookahead_words if cc.opening == "prefix" else None,
                               cc.opening_span_words)

    @staticmethod
    def _floor(live: LiveSchedule | None, windows: SentenceWindows | None) -> int | Callable[[int], int]:
        """The first piece's floor for a stream: none without the adaptive schedule; with a
        first piece made from an opening prefix that no later piece shares
        (``chunking.opening_span_words`` 0), a function of its sentence's tokens (the
        second piece runs that sentence's part A first); else the schedule's number."""
        if live is None:
            return 0
        floor = live.primer_floor()  # the load sensed as the stream opens, for the record
        if windows is not None and windows.opening_lookahead is not None and not windows.opening_span:
            return live.primer_floor
        return floor

    def opening_chunking(self, live: LiveSchedule | None) -> ChunkingConfig:
        """How a stream opening now cuts its text: the configured chunking, its primer held
        to ``chunking.primer_max_tokens_idle`` tokens when the slowdown sensed as the stream
        opened (``live.opening_load``) is at most :data:`LOADED_SLOWDOWN`."""
        cc = self.chunking_cfg
        if live is None or not cc.primer_max_tokens_idle or live.opening_load > LOADED_SLOWDOWN:
            return cc
        return dataclasses.replace(cc, primer_max_tokens=min(cc.primer_max_tokens, cc.primer_max_tokens_idle))

    def slowdown(self) -> float:
        """How much slower the sessions run now for other processes' load (1: idle)."""
        return slowdown(self.load_monitor.others_demand(self._threads), self._threads)

    @property
    def adaptive(self) -> bool:
        """Whether pieces are sized by the adaptive schedule (strategy primer)."""
        return self.chunking_cfg.strategy == "primer" and self.chunking_cfg.schedule == "adaptive"

    def _through(self, read_cache: bool) -> Through:
        """How a new stream makes a piece's audio: through the piece cache (reading it
        unless ``read_cache`` is False) while caching is on, else at once."""
        if not self._caching:
            return make_now
        return functools.partial(self.piece_cache.through, read=read_cache)


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
