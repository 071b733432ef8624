"""kokoro-onnx's own ``create`` (all audio at once) and ``create_stream`` (balanced batches
near 510 phonemes), built with ``Kokoro.from_session`` on a session of our own factory, so
both sides of a comparison use the same model and session settings."""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any

import numpy as np
from kokoro_onnx import Kokoro

from labkit.config import LabConfig
from labkit.engine import assets
from labkit.engine.graph_cache import make_session
from labkit.engine.languages import normalize_lang
from labkit.measure.streaming import CpuMeter, Run
from labkit.timing import measure


def load_time(cfg: LabConfig, repeats: int = 3) -> dict[str, Any]:
    """In-process session creation for the config's model (the OS file cache is warm)."""
    model = assets.model_path(cfg)
    timing, _ = measure(lambda: make_session(model, cfg.session), repeats=repeats, warmup=1)
    return timing.to_dict()


class KokoroBaseline:
    """kokoro-onnx's own ``create`` / ``create_stream`` on our model file and session settings."""

    def __init__(self, cfg, variant: str | None = None, session=None):
        model = assets.model_path(cfg, variant or cfg.variant)
        sess = session or make_session(model, cfg.session)
        self.kokoro = Kokoro.from_session(sess, str(assets.voices_path(cfg)))
        self.cfg = cfg

    def _lang(self, voice: str | None) -> str:
        return normalize_lang(self.cfg.lang, voice or self.cfg.voice)

    def warm_up(self) -> None:
        self.kokoro.create("Hello world.", self.cfg.voice, speed=self.cfg.speed,
                           lang=self._lang(self.cfg.voice))

    def run_create(self, text_: str, voice: str | None = None, keep_audio: bool = False) -> Run:
        with CpuMeter() as cpu:
            t0 = time.perf_counter()
            audio, sr = self.kokoro.create(text_, voice or self.cfg.voice, speed=self.cfg.speed,
                                           lang=self._lang(voice))
            t = time.perf_counter() - t0
        dur = len(audio) / sr
        return Run("create", [t], [dur], t, dur, cpu.utilization,
                   audio=np.asarray(audio, np.float32) if keep_audio else None)

    def run_create_stream(self, text_: str, voice: str | None = None, keep_audio: bool = False) -> Run:
        arrivals, durations, parts = [], [], []

        async def consume():
            t0 = time.perf_counter()
            async for audio, sr in self.kokoro.create_stream(
                    text_, voice or self.cfg.voice, speed=self.cfg.speed, lang=self._lang(voice)):
                arrivals.append(time.perf_counter() - t0)
                durations.append(len(audio) / sr)
                if keep_audio:
                    parts.append(np.asarray(audio, np.float32))

        with CpuMeter() as cpu:
            run_coroutine(consume())
        return Run("create_stream", arrivals, durations, arrivals[-1], sum(durations), cpu.utilization,
                   audio=np.concatenate(parts) if parts else None)


def run_coroutine(coro):
    """``asyncio.run`` that also works where a loop is already running (Jupyter): the
    coroutine then runs to completion on its own loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
