"""The Engine: one ORT session plus the voice bank (labkit.engine.voices), phonemes in, audio
out.

A graph edited by labkit.optimize.durations has a second output, ``durations`` int64
[n + 2] (frames per token, pads included), which :class:`Synthesis` carries when the
session has it (word timings).

Sessions come from :mod:`labkit.engine.graph_cache` (through the cache of optimized graphs
where the config asks for it); inputs from :func:`labkit.engine.sessions.kokoro_feeds`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from labkit.config import LabConfig, SessionConfig
from labkit.engine import assets, words
from labkit.engine.graph_cache import make_session, ort_cache_dir
from labkit.engine.phonemized import clean_phonemes, tokenize
from labkit.kokoro import MAX_TOKENS, SAMPLE_RATE, SPEED_RANGE
from labkit.engine.sessions import kokoro_feeds, style_row
from labkit.engine.voices import VoiceBank

#: the optional output with per-token frame counts (labkit.optimize.durations.OUTPUT)
DURATIONS = "durations"

# -- synthesis -------------------------------------------------------------------------
@dataclass
class Synthesis:
    audio: np.ndarray  # float32 mono, 24 kHz
    tokens: int
    seconds: float  # compute time
    #: frames per token [pad, tokens..., pad] when the model outputs them, else None
    durations: np.ndarray | None = None

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    @property
    def rtf(self) -> float:
        return self.seconds / max(self.duration, 1e-9)


def check_call(tokens: list[int], speed: float) -> None:
    """What one Kokoro call accepts: 1..MAX_TOKENS phoneme tokens, a speed in SPEED_RANGE."""
    if not tokens:
        raise ValueError("nothing to synthesize: no phoneme tokens")
    if len(tokens) > MAX_TOKENS:
        raise ValueError(f"{len(tokens)} tokens: Kokoro takes at most {MAX_TOKENS} per call; "
                         "chunk the text first (labkit.engine.chunking)")
    lo, hi = SPEED_RANGE
    if not lo <= float(speed) <= hi:
        raise ValueError(f"speed {speed}: Kokoro supports {lo} to {hi}")


def timed_model(cfg: LabConfig, variant: str | None = None) -> Path:
    """The model file of ``variant``: its copy with the durations output when built
    (labkit.optimize.durations.ensure, `labkit assets --provision`: the same audio, bit
    for bit, plus word timings), else the model itself."""
    model = assets.model_path(cfg, variant or cfg.variant)
    timed = words.timed_model_path(model, words.timed_cache_dir(cfg)) if model.exists() else None
    return timed if timed is not None and timed.exists() else model


class Engine:
    """One ORT session plus the voice bank: phonemes in, audio out. Thread-safe."""

    def __init__(self, cfg: LabConfig, variant: str | None = None,
                 session: SessionConfig | None = None, voices: VoiceBank | None = None):
        variant = variant or cfg.variant
        model = timed_model(cfg, variant)
        t0 = time.perf_counter()
        sess = make_session(model, session or cfg.session, cache_dir=ort_cache_dir(cfg))
        self._setup(cfg, variant, model, sess, time.perf_counter() - t0, voices)

    @classmethod
    def from_session(cls, cfg: LabConfig, session: ort.InferenceSession, model_path: str | Path,
                     load_seconds: float = 0.0, voices: VoiceBank | None = None,
                     variant: str | None = None) -> "Engine":
        """An Engine around a session made elsewhere (e.g. with verbose logging)."""
        eng = cls.__new__(cls)
        eng._setup(cfg, variant or str(model_path), Path(model_path), session, load_seconds, voices)
        return eng

    def _setup(self, cfg, variant, model_path, session, load_seconds, voices) -> None:
        self.cfg = cfg
        self.variant = variant
        self.model_path = Path(model_path)
        self.session = session
        self.load_seconds = load_seconds
        self.voices = voices or VoiceBank.load(assets.voices_path(cfg))
        self._lock = threading.Lock()
        self._input_names = {i.name for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        #: index of the ``durations`` output (labkit.optimize.durations), None without it
        self.durations_index = outputs.index(DURATIONS) if DURATIONS in outputs else None

    def style(self, voice: str, n_tokens: int) -> np.ndarray:
        return style_row(self.voices.pack(voice), n_tokens)

    def run_tokens(self, tokens: list[int], voice: str, speed: float = 1.0,
                   run_options: ort.RunOptions | None = None) -> Synthesis:
        """``run_options``: ORT's per-run options; setting its ``terminate`` from another
        thread aborts this run (it raises), which is how a stream is cancelled mid-piece."""
        check_call(tokens, speed)
        feeds = kokoro_feeds(tokens, self.style(voice, len(tokens)), speed, names=self._input_names)
        t0 = time.perf_counter()
        with self._lock:
            out = self.session.run(None, feeds, run_options)
        seconds = time.perf_counter() - t0
        audio = np.asarray(out[0], dtype=np.float32).ravel()
        durations = (None if self.durations_index is None
                     else np.asarray(out[self.durations_index], dtype=np.int64).ravel())
        return Synthesis(audio, len(tokens), seconds, durations)

    def synthesize_phonemes(self, phonemes: str, voice: str | None = None,
                            speed: float | None = None,
                            run_options: ort.RunOptions | None = None) -> Synthesis:
        cleaned, _ = clean_phonemes(phonemes)
        return self.run_tokens(tokenize(cleaned), voice or self.cfg.voice,
                               self.cfg.speed if speed is None else speed, run_options)

    def warm_up(self, phonemes: str = "həlˈO wˈɜɹld.", repeats: int = 2) -> float:
        """The first runs of a new session are much slower than later ones; pay it now."""
        t0 = time.perf_counter()
        for _ in range(repeats):
            self.synthesize_phonemes(phonemes)
        return time.perf_counter() - t0
