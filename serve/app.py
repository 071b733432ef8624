"""The OpenAI-compatible streaming endpoint.

Routes: ``POST /v1/audio/speech`` (OpenAI's body, see serve.request), ``GET /v1/models``,
``GET /v1/audio/voices``, ``GET /health`` (503 until the model is loaded and warmed up),
``GET /metrics`` (Prometheus text).

This module only wires routes; serve.speech handles the requests (checked completely
before any synthesis, bad input a 4xx in OpenAI's error shape, never a 500, never a silent
truncation; see its docstring for the limits), serve.state holds the loaded model and the
slot, serve.listener runs it under uvicorn with connection limits. A client that
disconnects stops its synthesis at the next piece. Repeated pieces (phrases, primers)
come from a bounded cache (labkit.engine.piece_cache); a request with ``Cache-Control: no-cache`` is
synthesized afresh (the bench's cold runs). No docs, no ``/openapi.json``.

Every speech response carries ``X-Kokoro-Variant`` (model variant), ``X-Kokoro-Config``
(hash of the served LabConfig; where it came from: best.json or defaults),
``X-Kokoro-Voice`` (the Kokoro voice used) and ``X-Kokoro-Speed`` (with the requested
speed when it was clamped to Kokoro's 0.5-2.0).

With ``stream_format: "sse"`` and ``timestamp_granularities: ["word"]`` the event stream
carries ``{"type": "speech.word", "word", "start", "end", "input_start", "input_end"}``
(stream seconds; ``input_start``/``input_end`` are Unicode code-point offsets into the
request's ``input`` as sent, ``word`` is ``input[input_start:input_end]``: an expansion such
as "40–60°C" or a URL is one word spanning what was written; labkit.engine.words.InputWords)
before the ``speech.audio.delta`` that holds them, and ``{"type": "speech.skipped", "text",
"reason", "input_start", "input_end"}`` for what the clean-up left out (an emoji, a skipped
script) in its place; the model copy with the durations output is needed (``labkit assets
--provision``), else the request is a 400.
"""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from labkit.config import ConfigError, LabConfig
from labkit.engine.registries import check_config

from .errors import install_handlers
from .speech import SpeechService
from labkit.best_config import check_limits, resolve
from .state import ServerState


def create_app(cfg: LabConfig, best_json: str | None = None) -> FastAPI:
    """The FastAPI app serving ``best_json`` (None: ``cfg.serve.best_json``; "": none)
    under ``cfg``'s explicit settings. The model loads and warms up in the background
    once the app starts; ``/health`` says when it is ready."""
    served = resolve(cfg, best_json)
    served.cfg.validate()
    check_config(served.cfg)
    scfg = served.cfg.serve
    if scfg.speed_policy not in ("clamp", "reject"):
        raise ConfigError(f"serve.speed_policy={scfg.speed_policy!r}: allowed are clamp, reject")
    check_limits(scfg)
    state = ServerState(served)
    service = SpeechService(state)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.slot = asyncio.Semaphore(max(1, int(scfg.max_concurrent)))
        state.start_loading()
        yield

    app = FastAPI(title="Kokoro Lab TTS", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.kokoro = state
    install_handlers(app, on_error=state.metrics.error)
    if scfg.cors_origin:
        app.add_middleware(CORSMiddleware, allow_origins=[scfg.cors_origin],
                           allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type"],
                           expose_headers=["X-Kokoro-Variant", "X-Kokoro-Config",
                                           "X-Kokoro-Voice", "X-Kokoro-Speed", "X-Kokoro-Lang",
                                           "X-Kokoro-Instructions", "Retry-After"])
    v1 = [Depends(service.authorize)]
    app.get("/")(service.index)
    app.get("/health")(service.health)
    app.get("/metrics")(service.metrics)
    app.get("/v1/models", dependencies=v1)(service.models)
    app.get("/v1/models/{model_id}", dependencies=v1)(service.model)
    app.get("/v1/audio/voices", dependencies=v1)(service.voices)
    app.post("/v1/audio/speech", dependencies=v1)(service.speech)
    return app
