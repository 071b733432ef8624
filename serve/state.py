"""What one app holds: the served config, the synthesizer once built (in a background
thread, then warmed up), the synthesis slot, the metrics and the piece cache."""
from __future__ import annotations

import asyncio
import logging
import threading
import time

import numpy as np

from labkit.best_config import Served
from labkit.engine import g2p
from labkit.engine.piece_cache import PieceCache
from labkit.engine.pipeline import StreamingSynthesizer
from labkit.engine.runtime import Engine
from labkit.engine.text import preload

from .encoders import FORMATS, make_encoder
from .errors import APIError
from .metrics import Metrics

log = logging.getLogger("serve")

WARMUP_TEXT = "Hello there. The server is warming up, one sentence at a time."


class ServerState:
    """What the app holds: the served config, the engine once loaded, the slot."""

    def __init__(self, served: Served):
        self.served = served
        self.cfg = served.cfg
        self.cache = PieceCache(self.cfg.serve.primer_cache_items,
                                int(self.cfg.serve.primer_cache_mb * (1 << 20)))
        self.metrics = Metrics(self.cache)
        self.engine: Engine | None = None
        self.synth: StreamingSynthesizer | None = None
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
            synth = StreamingSynthesizer.from_config(self.cfg, piece_cache=self.cache)
            synth.caching(False)  # the warm-up runs really run (and keep nothing)
            engine = synth.engine
            self.load_seconds = time.perf_counter() - t0
            t1 = time.perf_counter()
            preload()
            for e in synth.engines:
                e.warm_up()
            for chunk in synth.stream(WARMUP_TEXT, self.cfg.voice, self.cfg.speed,
                                      self.cfg.lang):
                pass
            for fmt in FORMATS:  # first use of each codec costs a little too
                enc = make_encoder(fmt)
                enc.encode(np.zeros(2400, np.float32))
                enc.finish()
            synth.caching(True)
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
