"""What one app holds: the served config, the engine once loaded (in a background
thread, then warmed up), the synthesis slot, the metrics and the piece cache."""
from __future__ import annotations

import asyncio
import logging
import threading
import time

import numpy as np

from labkit.config import LabConfig
from labkit.engine import g2p, pipeline, split_runtime
from labkit.engine import text as textmod

from .piece_cache import CachingEngine, CachingSplitEngine, PieceCache
from .encoders import FORMATS, make_encoder
from .errors import APIError
from .metrics import Metrics
from labkit.best_config import Served

log = logging.getLogger("serve")

WARMUP_TEXT = "Hello there. The server is warming up, one sentence at a time."


class ServerState:
    """What the app holds: the served config, the engine once loaded, the slot."""

    def __init__(self, served: Served):
        self.served = served
        self.cfg = served.cfg
        self.metrics = Metrics()
        self.cache = PieceCache(self.cfg.serve.primer_cache_items,
                                int(self.cfg.serve.primer_cache_mb * (1 << 20)))
        self.engine: CachingEngine | None = None
        self.synth = None
        self.status = "loading"
        self.error: str | None = None
        self.load_seconds: float | None = None
        self.warmup_seconds: float | None = None
        self.busy = 0
        self.slot: asyncio.Semaphore | None = None
        self._loader: threading.Thread | None = None

    # -- start-up ------------------------------------------------------------------------
    def start_loading(self) -> None:
        self._loader = threading.Thread(target=self._load, name="kokoro-load", daemon=True)
        self._loader.start()

    def _load(self) -> None:
        try:
            t0 = time.perf_counter()
            synth = build_synthesizer(self.cfg, self.cache, self._on_lookup)
            engine = synth.engine
            self.load_seconds = time.perf_counter() - t0
            t1 = time.perf_counter()
            textmod.preload()
            for e in synth.engines:
                e.warm_up()
            for chunk in synth.stream(WARMUP_TEXT, self.cfg.voice, self.cfg.speed,
                                      self.cfg.lang):
                pass
            for fmt in FORMATS:  # first use of each codec costs a little too
                enc = make_encoder(fmt)
                enc.encode(np.zeros(2400, np.float32))
                enc.finish()
            for e in synth.engines:
                e.use_cache = True
            self.warmup_seconds = time.perf_counter() - t1
            self.engine, self.synth = engine, synth
            self.status = "ok"
            self.metrics.ready.set(1)
            log.info("ready: variant %s, config %s, loaded in %.2f s, warmed up in %.2f s",
                     engine.variant, self.served.header, self.load_seconds, self.warmup_seconds)
        except Exception as exc:  # noqa: BLE001 - reported by /health and every request
            self.status = "failed"
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("start-up failed")

    def _on_lookup(self, hit: bool) -> None:
        (self.metrics.cache_hits if hit else self.metrics.cache_misses).inc()

    def wait_ready(self, timeout: float | None = None) -> bool:
        if self._loader is not None:
            self._loader.join(timeout)
        return self.status == "ok"

    # -- requests ------------------------------------------------------------------------
    def require_ready(self) -> None:
        if self.status == "ok":
            return
        if self.status == "failed":
            raise APIError(503, f"the model failed to load: {self.error}", type="server_error",
                           code="model_unavailable", kind="model_unavailable")
        raise APIError(503, "the model is still loading and warming up; retry shortly",
                       type="server_error", code="model_loading", kind="model_loading",
                       headers={"Retry-After": "2"})

    def degraded(self) -> list[str]:
        """What runs below par now: G2P on espeak instead of misaki, for instance."""
        out = []
        for g in g2p.loaded():
            if g.engine != "misaki":
                out.append(f"g2p {g.lang}: {g.engine_note or g.engine}")
        return out

    @property
    def headers(self) -> dict[str, str]:
        variant = self.engine.variant if self.engine is not None else self.cfg.variant
        return {"X-Kokoro-Variant": str(variant), "X-Kokoro-Config": self.served.header}


def build_synthesizer(cfg: LabConfig, cache: PieceCache, on_lookup=None):
    """The pipeline over caching engines: one session, or two when ``cfg.pipeline``
    says so (as labkit.engine.pipeline.StreamingSynthesizer.from_config builds them), all in
    front of the one piece cache (off until the caller turns it on, so warm-ups and
    the choice of the faster session time real runs)."""
    pipeline.check_split_layout(cfg)
    if split_runtime.uses_split(cfg):  # part A then part B (stage 04's split), each its own session
        first = CachingSplitEngine.from_config(cfg, cache=cache, on_lookup=on_lookup)
    else:
        first = CachingEngine(cfg, cache=cache, on_lookup=on_lookup)
    engines = [first]
    if cfg.pipeline.sessions == 2:
        engines.append(CachingEngine(cfg, variant=cfg.pipeline.second_variant or cfg.variant,
                                     session=pipeline.second_session_config(cfg),
                                     voices=first.voices, cache=cache, on_lookup=on_lookup))
    elif cfg.pipeline.sessions != 1:
        raise ValueError(f"pipeline.sessions={cfg.pipeline.sessions}: allowed are 1 or 2")
    for e in engines:  # the caller turns the cache on after its warm-up
        e.use_cache = False
    first_session = getattr(cfg.pipeline, "first_session", None)
    if first_session is None:
        first_session = pipeline.fastest(engines) if len(engines) > 1 else 0
    return pipeline.StreamingSynthesizer(first, engines, first_session=first_session)
