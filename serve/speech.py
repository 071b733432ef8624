"""Request handling of the endpoint; serve.app only wires routes to these methods.

A speech request is checked completely before any synthesis, in bounded time on the
event loop: the body is read only within ``serve.max_body_bytes`` (413) and
``serve.body_timeout_s`` (408), JSON is parsed within depth and number limits, the voice
spec is read in one pass within its caps; every refusal is a 4xx in OpenAI's error shape,
never a 500. Text clean-up, G2P and synthesis run in the job's thread (serve.job), so
``/health`` answers while the slowest request runs. It then waits at most
``serve.queue_timeout_s`` for the synthesis slot (``serve.max_concurrent``) or gets 429
with ``Retry-After``. The response starts when the first piece is synthesized and
encoded, so the status line can still say 400 when the text holds nothing speakable.

A client that goes away, before its body arrived or while the audio streams, is a client
event: one log line and ``kokoro_client_disconnects_total{stage}``, never an error.
"""
from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import time

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from labkit.engine.g2p import loaded as loaded_g2ps
from labkit.engine.inline import PronunciationError, inline_overrides
from labkit.engine.text import InputTooLong
from labkit.engine.voices import VoiceError, Voicing
from labkit.engine.words import InputWords

from .voices import describe, request_voicing
from .encoders import make_encoder
from .errors import APIError, error_body
from .job import SpeechJob
from .request import MODELS, ClientGone, check_speech, parse_body, read_body
from .state import ServerState

log = logging.getLogger("serve")

#: echoed request values (the voice spec) are cut to this many characters in headers
MAX_ECHO_CHARS = 128


class SpeechService:
    def __init__(self, state: ServerState):
        self.state = state
        self.scfg = state.cfg.serve

    # -- plain routes ----------------------------------------------------------------------
    async def authorize(self, request: Request) -> None:
        key = self.scfg.api_key
        if not key:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                 key.encode()):
            raise APIError(401, "missing or incorrect API key: send Authorization: Bearer <key>",
                           code="invalid_api_key", kind="unauthorized")

    async def index(self) -> dict:
        return {"name": "Kokoro Lab TTS", "speech": "POST /v1/audio/speech",
                "models": "/v1/models", "voices": "/v1/audio/voices", "health": "/health",
                "metrics": "/metrics"}

    async def health(self) -> JSONResponse:
        state = self.state
        body = {"status": state.status, "variant": state.headers["X-Kokoro-Variant"],
                "config": state.served.header, "source": state.served.source,
                "busy": state.busy,
                "g2p": {g.lang: g.engine for g in loaded_g2ps()},
                "degraded": state.degraded()}
        if state.status == "ok":
            body.update(engine=type(state.engine).__name__,  # the split one for sentence prosody
                        load_s=state.load_seconds, warmup_s=state.warmup_seconds,
                        cache={"items": len(state.cache), "bytes": state.cache.nbytes,
                               "hits": state.cache.hits, "misses": state.cache.misses},
                        blends=state.engine.voices.blend_cache)
            return JSONResponse(body, headers=state.headers)
        if state.error:
            body["error"] = state.error
        return JSONResponse(body, status_code=503, headers=state.headers)

    async def metrics(self) -> Response:
        m = self.state.metrics
        return Response(m.render(), media_type=m.content_type)

    async def models(self) -> dict:
        return {"object": "list", "data": [_model(m) for m in MODELS]}

    async def model(self, model_id: str) -> dict:
        if model_id not in MODELS:
            raise APIError(404, f"model {model_id[:64]!r} is not served here; models: "
                                f"{', '.join(MODELS)}", param="model", code="model_not_found")
        return _model(model_id)

    async def voices(self) -> dict:
        self.state.require_ready()
        return describe(self.state.engine.voices, self.scfg.voice_aliases)

    # -- speech ----------------------------------------------------------------------------
    async def speech(self, request: Request):
        state, scfg = self.state, self.scfg
        t0 = time.perf_counter()
        fmt, sfmt = "unknown", "unknown"
        try:
            state.require_ready()
            raw = await read_body(request, scfg.max_body_bytes, scfg.body_timeout_s)
            data = parse_body(raw, request.headers.get("content-type"))
            req = check_speech(data, scfg, state.cfg.voice)
            fmt, sfmt = req.response_format, req.stream_format
            if req.words and not state.synth.has_word_timings:
                raise APIError(400, "word timestamps need the model copy with a durations "
                                    "output, which this server has not got: run `labkit assets "
                                    "--provision` and restart it", param="timestamp_granularities",
                               code="unsupported_value")
            if req.inline is None:
                req.inline = state.cfg.text.inline_phonemes
            if req.inline:
                try:
                    inline_overrides(req.input)
                except PronunciationError as exc:
                    raise _input_error(exc) from None
            voicing = request_voicing(req.voice, scfg.voice_aliases, state.engine.voices,
                                      req.speed, req.lang, state.cfg.lang)
            return await self._start(request, req, voicing, t0)
        except ClientGone:
            state.metrics.client_disconnects.labels(stage="body").inc()
            log.info("client %s went away before its request body arrived", _peer(request))
            return Response(status_code=499)  # nobody reads it; keeps the ASGI cycle whole
        except APIError as exc:
            state.metrics.requests.labels(format=fmt, stream_format=sfmt,
                                          status=str(exc.status)).inc()
            raise

    async def _start(self, request: Request, req, voicing: Voicing, t0: float):
        state, scfg = self.state, self.scfg
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

        def finished(job) -> None:  # worker thread: hand the slot back
            try:
                loop.call_soon_threadsafe(self._release, job)
            except RuntimeError:
                pass

        try:
            encoder = make_encoder(req.response_format)
        except BaseException:
            finished(_NoJob())
            raise
        no_cache = "no-cache" in request.headers.get("cache-control", "").lower()
        job = SpeechJob(state.synth, req.input, voicing, encoder, loop, finished,
                        inline=req.inline, read_cache=not no_cache)
        job.start()
        try:
            first = await job.queue.get()
        except BaseException:
            job.stop()
            raise
        if first[0] == "error":
            raise _input_error(first[1])
        if first[0] == "end":
            raise APIError(400, f"input has nothing to speak after clean-up "
                                f"({req.input[:60]!r}): no phonemes", param="input",
                           code="empty_input")
        headers = {**state.headers, "X-Kokoro-Voice": _echo(voicing.voice),
                   "X-Kokoro-Lang": voicing.lang,
                   "X-Kokoro-Speed": (f"{req.speed:g}" if not req.speed_clamped else
                                      f"{req.speed:g}; requested={req.requested_speed:g}; "
                                      f"clamped to Kokoro's 0.5-2.0"),
                   "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        if req.instructions:  # Kokoro has no style prompt: accepted, said to be not applied
            headers["X-Kokoro-Instructions"] = "ignored"
        if req.stream_format == "sse":
            body, media = self._sse_body(job, first, req, t0, request), "text/event-stream"
        else:
            body, media = self._audio_body(job, first, req, t0, request), encoder.content_type
        return StreamingResponse(body, media_type=media, headers=headers)

    def _release(self, job) -> None:
        """On the loop, once a job's thread ended: the slot back, and what it did counted."""
        state = self.state
        state.busy -= 1
        state.metrics.busy.dec()
        state.slot.release()
        if job.cancelled:
            state.metrics.cancelled.inc()
        stats = getattr(job, "stats", None)
        if stats is not None and stats.aborted:
            state.metrics.aborted.inc(stats.aborted)
        if stats is not None and (stats.retries or stats.failures):
            state.metrics.pipeline_retries.inc(stats.retries)
            state.metrics.pipeline_failures.inc(len(stats.failures))
            log.warning("pipeline: %d failed attempt(s), %d retried: %s", len(stats.failures),
                        stats.retries, "; ".join(f[2] for f in stats.failures[:3]))
        if getattr(job, "fallback_words", 0) or getattr(job, "unknown_words", 0):
            log.info("g2p: %d word(s) read by the espeak fallback, %d unreadable (%s)",
                     job.fallback_words, job.unknown_words, job.voicing.lang)

    def _record(self, job: SpeechJob, req, status: str) -> None:
        m = self.state.metrics
        m.requests.labels(format=req.response_format, stream_format=req.stream_format,
                          status=status).inc()
        if job.audio_seconds > 0:
            m.audio_seconds.inc(job.audio_seconds)
        if job.rtf is not None and job.synth_seconds > 0:
            m.rtf.observe(job.rtf)

    async def _items(self, job: SpeechJob, first, req, t0: float, request: Request):
        """The job's items, the first one already fetched; records TTFA, the outcome,
        and cancels the synthesis when the response is abandoned."""
        m = self.state.metrics
        item, done, sent = first, False, False
        try:
            while True:
                kind, payload, _chunk = item
                if kind == "audio" and payload and not sent:
                    sent = True
                    m.ttfa.observe(time.perf_counter() - t0)
                if kind == "error":
                    done = True
                    log.error("synthesis failed mid-stream: %r", payload)
                    m.error("synthesis_failed")
                    self._record(job, req, "failed")
                yield kind, payload, _chunk
                if kind in ("end", "error"):
                    if kind == "end":
                        done = True
                        self._record(job, req, "200")
                    return
                item = await job.queue.get()
        finally:
            if not done:
                job.stop()
                m.client_disconnects.labels(stage="stream").inc()
                self._record(job, req, "disconnected")
                log.info("client %s went away mid-stream after %d piece(s); synthesis stopped",
                         _peer(request), job.pieces)

    async def _audio_body(self, job, first, req, t0, request):
        async for kind, payload, _chunk in self._items(job, first, req, t0, request):
            if kind == "error":
                # the status line has gone out: end the transfer incomplete, not silently short
                raise RuntimeError(f"synthesis failed mid-stream: {payload!r}")
            if payload:
                yield payload

    async def _sse_body(self, job, first, req, t0, request):
        words = InputWords(req.input, job.sanitized) if req.words else None
        async for kind, payload, chunk in self._items(job, first, req, t0, request):
            if kind == "error":
                err = error_body(f"synthesis failed mid-stream: {payload}", type="server_error",
                                 code="synthesis_failed")
                yield _sse({"type": "error", **err})
                return
            if words is not None and chunk is not None:
                for entry in words.feed(chunk.words):
                    yield _sse(_word_event(entry))
            if payload:
                yield _sse({"type": "speech.audio.delta",
                            "audio": base64.b64encode(payload).decode("ascii")})
            if kind == "end":
                if words is not None:
                    for entry in words.finish():
                        yield _sse(_word_event(entry))
                yield _sse({"type": "speech.audio.done",
                            "usage": {"input_tokens": job.tokens, "output_tokens": 0,
                                      "total_tokens": job.tokens},
                            "audio_seconds": round(job.audio_seconds, 3)})


def _word_event(entry: dict) -> dict:
    """An :class:`~labkit.engine.words.InputWords` entry as its event: ``speech.word`` (the
    word as written, stream seconds, its span of the input) or ``speech.skipped`` (what
    the clean-up left out, and why)."""
    if "skipped" in entry:
        return {"type": "speech.skipped", "text": entry["text"], "reason": entry["skipped"],
                "input_start": entry["input_start"], "input_end": entry["input_end"]}
    return {"type": "speech.word", "word": entry["word"], "start": round(entry["start"], 3),
            "end": round(entry["end"], 3), "input_start": entry["input_start"],
            "input_end": entry["input_end"]}


def _model(model_id: str) -> dict:
    """A /v1/models entry; OpenAI's names are aliases of the one model (Kokoro-82M)."""
    entry = {"id": model_id, "object": "model", "created": 0, "owned_by": "kokoro-lab"}
    if model_id != "kokoro":
        entry["alias_of"] = "kokoro"
    return entry


def _echo(value: str) -> str:
    """A request value fit to echo in a header: printable ASCII, at most MAX_ECHO_CHARS."""
    clean = "".join(ch if " " <= ch <= "~" else "?" for ch in value[:MAX_ECHO_CHARS])
    return clean + ("..." if len(value) > MAX_ECHO_CHARS else "")


def _peer(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else "?"


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
    if isinstance(exc, PronunciationError):
        return APIError(400, str(exc), param="input", code="invalid_phonemes")
    if isinstance(exc, ValueError):
        return APIError(400, f"cannot speak this input: {exc}", param="input",
                        code="unspeakable_input")
    log.error("synthesis failed before the first audio: %r", exc)
    return APIError(500, f"synthesis failed: {type(exc).__name__}: {exc}", type="server_error",
                    code="synthesis_failed", kind="synthesis_failed")
