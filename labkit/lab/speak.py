"""``labkit say --words``: speech and each spoken word's start and end, from the model.

The configured model is swapped for its copy with the ``durations`` output
(labkit.optimize.durations.ensure: built once into ``<artifacts>/cache/durations``,
checked to give bit-identical audio); the pipeline then puts every word in stream time
(labkit.engine.words). Words come out in text order, one entry per spoken word.
"""
from __future__ import annotations

import numpy as np

from labkit import progress
from labkit.config import LabConfig
from labkit.engine import assets, split_runtime
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.engine.runtime import Engine
from labkit.kokoro import SAMPLE_RATE
from labkit.engine.words import InputWords, timed_cache_dir
from labkit.optimize import durations
from labkit.optimize import split as splitting


def timed_config(cfg: LabConfig) -> LabConfig:
    """``cfg`` with its model replaced by the one that outputs per-token durations."""
    path = durations.ensure(assets.model_path(cfg), timed_cache_dir(cfg))
    return cfg.with_overrides({"model_path": str(path)})


def say(cfg: LabConfig, text: str, engine: Engine | None = None) -> tuple[np.ndarray, list[dict]]:
    """(audio, words) for ``text`` with ``cfg``'s voice and speed: ``{"word", "start",
    "end", "input_start", "input_end"}`` per stretch of ``text`` spoken (seconds; code-point
    offsets into ``text``; labkit.engine.words.InputWords), and ``{"skipped": why, "text",
    "input_start", "input_end"}`` where the clean-up left something out. ``engine`` must
    be one whose model has the durations output (default: built here, the split engine
    where ``cfg`` runs on it)."""
    if engine is None:
        timed = timed_config(cfg)
        splitting.ensure_for(timed)
        engine = split_runtime.engine_for(timed)
    if engine.durations_index is None:
        raise ValueError(f"model {engine.model_path} has no 'durations' output: word timings "
                         "need labkit.optimize.durations.ensure(model)")
    with StreamingSynthesizer(engine).open_stream(text, voice=cfg.voice, speed=cfg.speed) as stream:
        chunks = collect(stream, text)
    entries = InputWords(text, stream.sanitized)
    words = [e for c in chunks for e in entries.feed(c.words)] + entries.finish()
    audio = np.concatenate([c.audio for c in chunks]) if chunks else np.zeros(0, np.float32)
    return audio, words


#: texts longer than this many words report their progress piece by piece
LONG_WORDS = 40


def collect(stream, text: str) -> list:
    """The chunks of a stream of ``text``; for a long text, progress as they arrive (words
    synthesized out of the text's words, audio so far)."""
    words = len(text.split())
    if words <= LONG_WORDS:
        return list(stream)
    chunks, audio_s = [], 0.0
    with progress.task("words", total=words) as bar:
        for c in stream:
            chunks.append(c)
            audio_s += len(c.audio) / SAMPLE_RATE
            bar.advance(f"{audio_s:.0f} s of audio", by=min(len(c.piece.text.split()),
                                                            words - bar.n))
    return chunks
