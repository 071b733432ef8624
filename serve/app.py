"""The OpenAI-compatible streaming endpoint.

Routes: ``POST /v1/audio/speech`` (OpenAI's body, see serve.request), ``GET /v1/models``,
``GET /v1/audio/voices``, ``GET /health`` (503 until the model is loaded and warmed up),
``GET /metrics`` (Prometheus text).

A speech request is checked completely before any synthesis (bad input is a 4xx in
OpenAI's error shape, never a 500, never a silent truncation), then waits at most
``serve.queue_timeout_s`` for the synthesis slot (``serve.max_concurrent``, 1 by
default: one voice at a time) or gets 429 with ``Retry-After``. The response starts when
the first piece (the pipeline's primer) is synthesized and encoded, so the status line
can still say 400 when the text turns out to hold nothing speakable; after that, audio
leaves piece by piece. A client that disconnects stops its synthesis at the next piece.
Repeated pieces (phrases, primers) come from a bounded cache (serve.cache); a request
with ``Cache-Control: no-cache`` is synthesized afresh (the bench's cold runs).

Every speech response carries ``X-Kokoro-Variant`` (model variant), ``X-Kokoro-Config``
(hash of the served LabConfig; where it came from: best.json or defaults),
``X-Kokoro-Voice`` (the Kokoro voice used) and ``X-Kokoro-Speed`` (with the requested
speed when it was clamped to Kokoro's 0.5-2.0).
"""
from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import threading
import time
from contextlib import asynccontextmanager

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse

from labkit.config import ConfigError, LabConfig
from labkit.engine.g2p import normalize_lang
from labkit.engine.runtime import VoiceError

from . import voices as voicemod
from .cache import CachingEngine, PieceCache
from .encoders import FORMATS, make_encoder
from .errors import APIError, error_body, install_handlers
from .job import SpeechJob
from .metrics import Metrics
from .request import MODELS, check_speech, parse_body
from labkit.served import Served, resolve
from labkit.engine import pipeline
from labkit.engine.text import InputTooLong

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

    @property
    def headers(self) -> dict[str, str]:
        variant = self.engine.variant if self.engine is not None else self.cfg.variant
        return {"X-Kokoro-Variant": str(variant), "X-Kokoro-Config": self.served.header}


def build_synthesizer(cfg: LabConfig, cache: PieceCache, on_lookup=None):
    """The pipeline over caching engines: one session, or two when ``cfg.pipeline``
    says so (as labkit.engine.pipeline.StreamingSynthesizer.from_config builds them), all in
    front of the one piece cache (off until the caller turns it on, so warm-ups and
    the choice of the faster session time real runs)."""
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


def create_app(cfg: LabConfig, best_json: str | None = None) -> FastAPI:
    """The FastAPI app serving ``best_json`` (None: ``cfg.serve.best_json``; "": none)
    under ``cfg``'s explicit settings. The model loads and warms up in the background
    once the app starts; ``/health`` says when it is ready."""
    served = resolve(cfg, best_json)
    served.cfg.validate()
    if served.cfg.serve.speed_policy not in ("clamp", "reject"):
        raise ConfigError(f"serve.speed_policy={served.cfg.serve.speed_policy!r}: allowed are "
                          "clamp, reject")
    state = ServerState(served)
    scfg = served.cfg.serve

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.slot = asyncio.Semaphore(max(1, int(scfg.max_concurrent)))
        state.start_loading()
        yield

    app = FastAPI(title="Kokoro Lab TTS", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.kokoro = state
    install_handlers(app, on_error=state.metrics.error)
    if scfg.cors_origin:
        app.add_middleware(CORSMiddleware, allow_origins=[scfg.cors_origin],
                           allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type"],
                           expose_headers=["X-Kokoro-Variant", "X-Kokoro-Config",
                                           "X-Kokoro-Voice", "X-Kokoro-Speed", "Retry-After"])

    async def authorized(request: Request) -> None:
        if not scfg.api_key:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                 scfg.api_key.encode()):
            raise APIError(401, "missing or incorrect API key: send Authorization: Bearer <key>",
                           code="invalid_api_key", kind="unauthorized")

    v1 = [Depends(authorized)]

    @app.get("/")
    async def index():
        return {"name": "Kokoro Lab TTS", "speech": "POST /v1/audio/speech",
                "models": "/v1/models", "voices": "/v1/audio/voices", "health": "/health",
                "metrics": "/metrics"}

    @app.get("/health")
    async def health():
        body = {"status": state.status, "variant": state.headers["X-Kokoro-Variant"],
                "config": state.served.header, "source": state.served.source,
                "busy": state.busy}
        if state.status == "ok":
            body.update(load_s=state.load_seconds, warmup_s=state.warmup_seconds,
                        cache={"items": len(state.cache), "bytes": state.cache.nbytes,
                               "hits": state.cache.hits, "misses": state.cache.misses})
            return JSONResponse(body, headers=state.headers)
        if state.error:
            body["error"] = state.error
        return JSONResponse(body, status_code=503, headers=state.headers)

    @app.get("/metrics")
    async def metrics():
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    @app.get("/v1/models", dependencies=v1)
    async def models():
        return {"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "kokoro-lab"} for m in MODELS]}

    @app.get("/v1/models/{model_id}", dependencies=v1)
    async def model(model_id: str):
        if model_id not in MODELS:
            raise APIError(404, f"model {model_id!r} is not served here; models: "
                                f"{', '.join(MODELS)}", param="model", code="model_not_found")
        return {"id": model_id, "object": "model", "created": 0, "owned_by": "kokoro-lab"}

    @app.get("/v1/audio/voices", dependencies=v1)
    async def list_voices():
        state.require_ready()
        return voicemod.describe(state.engine.voices, scfg.voice_aliases)

    @app.post("/v1/audio/speech", dependencies=v1)
    async def speech(request: Request):
        t0 = time.perf_counter()
        fmt, sfmt = "unknown", "unknown"
        try:
            state.require_ready()
            data = parse_body(await request.body(), request.headers.get("content-type"))
            req = check_speech(data, scfg, state.cfg.voice)
            fmt, sfmt = req.response_format, req.stream_format
            voice = voicemod.resolve(req.voice, scfg.voice_aliases, state.engine.voices)
            try:
                lang = normalize_lang(req.lang or voicemod.lang_for(voice, state.cfg.lang))
            except ValueError as exc:
                raise APIError(400, str(exc), param="lang", code="invalid_value") from None
            return await _start(request, req, voice, lang, t0)
        except APIError as exc:
            state.metrics.requests.labels(format=fmt, stream_format=sfmt,
                                          status=str(exc.status)).inc()
            raise

    async def _start(request: Request, req, voice: str, lang: str, t0: float):
        try:
            await asyncio.wait_for(state.slot.acquire(), timeout=scfg.queue_timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            raise APIError(429, f"busy: another synthesis is running and the slot did not free "
                                f"within {scfg.queue_timeout_s:g} s; retry after "
                                f"{scfg.retry_after_s} s", type="rate_limit_error",
                           code="rate_limit_exceeded", kind="busy",
                           headers={"Retry-After": str(scfg.retry_after_s)}) from None
        loop = asyncio.get_running_loop()
        state.busy += 1
        state.metrics.busy.inc()

        def finished(job: SpeechJob) -> None:  # worker thread: hand the slot back
            def release():
                state.busy -= 1
                state.metrics.busy.dec()
                state.slot.release()
                if job.cancelled:
                    state.metrics.cancelled.inc()
            try:
                loop.call_soon_threadsafe(release)
            except RuntimeError:
                pass

        def finished_no_cache(job: SpeechJob) -> None:
            for e in state.synth.engines:
                e.skip_reads(False)
            finished(job)

        try:
            encoder = make_encoder(req.response_format)
        except BaseException:
            finished(_NoJob())
            raise
        no_cache = "no-cache" in request.headers.get("cache-control", "").lower()
        if no_cache:
            for e in state.synth.engines:
                e.skip_reads(True)
        job = SpeechJob(state.synth, req.input, voice, req.speed, lang, encoder, loop,
                        finished_no_cache if no_cache else finished)
        job.start()
        try:
            first = await job.queue.get()
        except BaseException:
            job.cancel.set()
            raise
        if first[0] == "error":
            raise _input_error(first[1])
        if first[0] == "end":
            raise APIError(400, f"input has nothing to speak after clean-up "
                                f"({req.input[:60]!r}): no phonemes", param="input",
                           code="empty_input")
        headers = {**state.headers, "X-Kokoro-Voice": voice, "X-Kokoro-Lang": lang,
                   "X-Kokoro-Speed": (f"{req.speed:g}" if not req.speed_clamped else
                                      f"{req.speed:g}; requested={req.requested_speed:g}; "
                                      f"clamped to Kokoro's 0.5-2.0"),
                   "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        if req.stream_format == "sse":
            body, media = _sse_body(job, first, req, t0), "text/event-stream"
        else:
            body, media = _audio_body(job, first, req, t0), encoder.content_type
        return StreamingResponse(body, media_type=media, headers=headers)

    def _record(job: SpeechJob, req, status: str) -> None:
        state.metrics.requests.labels(format=req.response_format,
                                      stream_format=req.stream_format, status=status).inc()
        if job.audio_seconds > 0:
            state.metrics.audio_seconds.inc(job.audio_seconds)
        if job.rtf is not None and job.synth_seconds > 0:
            state.metrics.rtf.observe(job.rtf)

    async def _items(job: SpeechJob, first, req, t0: float):
        """The job's items, the first one already fetched; records TTFA, the outcome,
        and cancels the synthesis when the response is abandoned."""
        item, done, sent = first, False, False
        try:
            while True:
                kind, payload, _chunk = item
                if kind == "audio" and payload and not sent:
                    sent = True
                    state.metrics.ttfa.observe(time.perf_counter() - t0)
                if kind == "error":
                    done = True
                    log.error("synthesis failed mid-stream: %r", payload)
                    state.metrics.error("synthesis_failed")
                    _record(job, req, "failed")
                yield kind, payload
                if kind in ("end", "error"):
                    if kind == "end":
                        done = True
                        _record(job, req, "200")
                    return
                item = await job.queue.get()
        finally:
            if not done:
                job.cancel.set()
                state.metrics.error("client_disconnect")
                _record(job, req, "disconnected")

    async def _audio_body(job, first, req, t0):
        async for kind, payload in _items(job, first, req, t0):
            if kind == "error":
                # the status line has gone out: end the transfer incomplete, not silently short
                raise RuntimeError(f"synthesis failed mid-stream: {payload!r}")
            if payload:
                yield payload

    async def _sse_body(job, first, req, t0):
        async for kind, payload in _items(job, first, req, t0):
            if kind == "error":
                err = error_body(f"synthesis failed mid-stream: {payload}", type="server_error",
                                 code="synthesis_failed")
                yield _sse({"type": "error", **err})
                return
            if payload:
                yield _sse({"type": "speech.audio.delta",
                            "audio": base64.b64encode(payload).decode("ascii")})
            if kind == "end":
                yield _sse({"type": "speech.audio.done",
                            "usage": {"input_tokens": job.tokens, "output_tokens": 0,
                                      "total_tokens": job.tokens},
                            "audio_seconds": round(job.audio_seconds, 3)})

    return app


def _sse(event: dict) -> bytes:
    return f"data: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


class _NoJob:
    cancelled = False


def _input_error(exc: BaseException) -> APIError:
    """An error before the first audio: the input's fault (4xx) or ours (500)."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, InputTooLong):
        return APIError(413, str(exc), param="input", code="input_too_long")
    if isinstance(exc, VoiceError):
        return APIError(400, str(exc), param="voice", code="voice_not_found")
    if isinstance(exc, ValueError):
        return APIError(400, f"cannot speak this input: {exc}", param="input",
                        code="unspeakable_input")
    log.error("synthesis failed before the first audio: %r", exc)
    return APIError(500, f"synthesis failed: {type(exc).__name__}: {exc}", type="server_error",
                    code="synthesis_failed", kind="synthesis_failed")


def serve(cfg: LabConfig) -> None:
    """Run the endpoint with uvicorn on ``cfg.serve.host:port`` (127.0.0.1:8880)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(cfg)
    log.info("listening on http://%s:%d", cfg.serve.host, cfg.serve.port)
    uvicorn.run(app, host=cfg.serve.host, port=cfg.serve.port, log_level="info",
                timeout_graceful_shutdown=3)
