"""Reading and checking a ``POST /v1/audio/speech`` body (OpenAI's shape).

Fields: ``model`` (tts-1, tts-1-hd, gpt-4o-mini-tts, kokoro; default kokoro), ``input``
(required, at most ``serve.max_input_chars``), ``voice`` (Kokoro id, blend, or OpenAI
name; default the configured voice), ``response_format`` (mp3 default, opus, aac, flac,
wav, pcm), ``speed`` (0.25-4.0, see below), ``stream_format`` (audio default, or sse),
``instructions`` (accepted, not applied: Kokoro has no style prompt; the response says so
in ``X-Kokoro-Instructions: ignored``), ``timestamp_granularities`` (``["word"]`` with
``stream_format: "sse"``: ``speech.word`` events before the audio that holds them; the
only granularity is ``word``; each event carries ``input_start``/``input_end``, Unicode
code-point offsets into ``input`` as sent). Extensions: ``lang`` (or ``lang_code``): en-us,
en-gb, es, fr-fr, hi, it, pt-br, ja, zh (default: the voice's own, else the config's);
``inline_phonemes`` (boolean, default ``text.inline_phonemes``, off): obey inline
pronunciation ``[word](/phonemes/)`` in ``input`` (for trusted text; a symbol outside
Kokoro's vocabulary is a 400 naming it).

Speed: OpenAI accepts 0.25-4.0, Kokoro 0.5-2.0. Outside 0.25-4.0 is a 400 (as OpenAI
does). Inside it but outside 0.5-2.0, ``serve.speed_policy`` decides: ``clamp``
(default) synthesizes at the nearest Kokoro speed and says so in ``X-Kokoro-Speed``;
``reject`` answers 400.
"""
from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request

from labkit.config import ServeConfig
from labkit.kokoro import SPEED_RANGE

from .encoders import FORMATS
from .errors import APIError

MODELS = ("kokoro", "tts-1", "tts-1-hd", "gpt-4o-mini-tts")
STREAM_FORMATS = ("audio", "sse")
GRANULARITIES = ("word",)
OPENAI_SPEED_RANGE = (0.25, 4.0)
_KNOWN = {"model", "input", "voice", "response_format", "speed", "stream_format",
          "instructions", "lang", "lang_code", "timestamp_granularities", "inline_phonemes"}


@dataclass
class SpeechRequest:
    model: str
    input: str
    voice: str
    response_format: str
    speed: float
    #: what the client asked for, when it was clamped
    requested_speed: float
    stream_format: str
    lang: str | None
    ignored: list[str]
    #: the timestamp granularities asked for (``("word",)`` or empty)
    granularities: tuple[str, ...] = ()
    #: whether the request carried non-empty ``instructions`` (accepted, not applied)
    instructions: bool = False
    #: inline pronunciation obeyed: the request's ``inline_phonemes``, None: the config's
    inline: bool | None = None

    @property
    def words(self) -> bool:
        return "word" in self.granularities

    @property
    def speed_clamped(self) -> bool:
        return self.speed != self.requested_speed


def _bad(message: str, param: str | None, code: str = "invalid_value", status: int = 400):
    return APIError(status, message, param=param, code=code)


#: JSON nesting deeper than this is refused (OpenAI's body is 2 levels deep)
MAX_JSON_DEPTH = 16
#: integers with more digits than this are refused (Python's own limit is 4,300 digits)
MAX_JSON_INT_DIGITS = 64


class ClientGone(Exception):
    """The client closed the connection before its request body arrived."""


class _Refused(ValueError):
    pass


def _int(s: str) -> int:
    if len(s.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise _Refused(f"an integer of {len(s):,} digits (at most {MAX_JSON_INT_DIGITS})")
    return int(s)


def _constant(name: str):
    raise _Refused(f"{name} is not a number JSON allows")


def _check_tree(data) -> None:
    """Depth within :data:`MAX_JSON_DEPTH`; every string (and key) valid Unicode (a lone
    surrogate such as ``"\\ud800"`` is legal JSON but no text)."""
    stack = [(data, 1, None)]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise APIError(400, f"{where or 'a string'} holds a lone surrogate "
                                    f"(\\u{ord(value[exc.start]):04x} at {exc.start}): not text",
                               param=where, code="invalid_value") from None
            continue
        if isinstance(value, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise _bad(f"the body nests deeper than {MAX_JSON_DEPTH} levels", None,
                           code="invalid_json")
            items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
            for key, item in items:
                if key is not None:
                    stack.append((key, depth, "a key"))
                stack.append((item, depth + 1, where or key))


def parse_body(raw: bytes, content_type: str | None) -> dict:
    """JSON object from the body, or a 4xx saying what was wrong with it (never a 500:
    deep nesting, huge integers, NaN and lone surrogates are all the client's error)."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise APIError(415, f"Content-Type {_clip(content_type or '(none)')!r} is not "
                            "supported; send the request as application/json",
                       code="unsupported_media_type")
    try:
        data = json.loads(raw or b"", parse_int=_int, parse_constant=_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad(f"the body is not valid JSON: {exc}", None, code="invalid_json") from None
    except _Refused as exc:
        raise _bad(f"the body is refused: {exc}", None, code="invalid_json") from None
    except RecursionError:
        raise _bad(f"the body nests deeper than {MAX_JSON_DEPTH} levels", None,
                   code="invalid_json") from None
    if not isinstance(data, dict):
        raise _bad(f"the body must be a JSON object, got {type(data).__name__}", None,
                   code="invalid_json")
    _check_tree(data)
    return data


def _clip(s: str, n: int = 80) -> str:
    return s if len(s) <= n else s[:n] + "..."


async def read_body(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """The body, read only while it stays within ``max_bytes`` (413, checked against
    Content-Length before reading) and arrives within ``timeout_s`` (408). A client that
    goes away meanwhile raises :class:`ClientGone`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise _bad(f"Content-Length {_clip(declared)!r} is not a number", None,
                       code="invalid_request")
        if int(declared) > max_bytes:
            raise _too_large(int(declared), max_bytes)
    parts, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for part in request.stream():
                size += len(part)
                if size > max_bytes:
                    raise _too_large(size, max_bytes)
                parts.append(part)
    except ClientDisconnect:
        raise ClientGone() from None
    except TimeoutError:
        raise APIError(408, f"the request body did not arrive within {timeout_s:g} s",
                       code="request_timeout", kind="body_timeout") from None
    return b"".join(parts)


def _too_large(size: int, limit: int) -> APIError:
    return APIError(413, f"the body is over {limit:,} bytes ({size:,} so far); an input of "
                         "the longest allowed length fits well within it",
                    code="body_too_large")


def _string(data: dict, name: str, default: str | None) -> str | None:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string, got {type(value).__name__}", name,
                   code="invalid_type")
    return value


def check_speech(data: dict, serve: ServeConfig, default_voice: str) -> SpeechRequest:
    model = _string(data, "model", "kokoro")
    if model not in MODELS:
        raise _bad(f"model {model!r} is not served here; use one of {', '.join(MODELS)} "
                   "(all of them are Kokoro-82M)", "model", code="model_not_found")

    if "input" not in data:
        raise _bad("input is required: the text to speak", "input", code="missing_required")
    text = _string(data, "input", None)
    if not text or not text.strip():
        raise _bad("input is empty (or only whitespace): nothing to speak", "input",
                   code="empty_input")
    if len(text) > serve.max_input_chars:
        raise _bad(f"input is {len(text):,} characters; the limit is {serve.max_input_chars:,} "
                   "(split the text, or raise serve.max_input_chars)", "input",
                   code="input_too_long", status=413)

    voice = data.get("voice", default_voice)
    if isinstance(voice, dict):  # newer OpenAI SDKs may send {"id": "..."}
        voice = voice.get("id")
    if not isinstance(voice, str) or not voice.strip():
        raise _bad("voice must be a non-empty string: a Kokoro id (af_heart), a blend "
                   "(af_bella(2)+af_sky(1)) or an OpenAI name (alloy, nova, ...)", "voice",
                   code="invalid_type")

    fmt = _string(data, "response_format", "mp3")
    if fmt not in FORMATS:
        raise _bad(f"response_format {fmt!r}: allowed are {', '.join(FORMATS)}",
                   "response_format")

    stream_format = _string(data, "stream_format", "audio")
    if stream_format not in STREAM_FORMATS:
        raise _bad(f"stream_format {stream_format!r}: allowed are {', '.join(STREAM_FORMATS)}",
                   "stream_format")

    speed = data.get("speed", 1.0)
    if speed is None:
        speed = 1.0
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not math.isfinite(speed):
        raise _bad(f"speed must be a number, got {speed!r}", "speed", code="invalid_type")
    lo, hi = OPENAI_SPEED_RANGE
    klo, khi = SPEED_RANGE
    if not lo <= speed <= hi:
        raise _bad(f"speed {speed} is out of range: allowed are {lo} to {hi} "
                   f"(Kokoro itself speaks {klo} to {khi})", "speed")
    used = float(min(max(speed, klo), khi))
    if used != speed and serve.speed_policy == "reject":
        raise _bad(f"speed {speed}: Kokoro speaks {klo} to {khi} (this server rejects "
                   "speeds outside that; serve.speed_policy=clamp would clamp them)", "speed")

    instructions = _string(data, "instructions", None)  # accepted, not applied
    lang = _string(data, "lang", None) or _string(data, "lang_code", None)
    granularities = _granularities(data.get("timestamp_granularities"), stream_format)
    inline = data.get("inline_phonemes")
    if inline is not None and not isinstance(inline, bool):
        raise _bad(f"inline_phonemes must be true or false, got {_clip(repr(inline))}",
                   "inline_phonemes", code="invalid_type")
    ignored = sorted(set(data) - _KNOWN) + (["instructions"] if instructions else [])
    return SpeechRequest(model, text, voice.strip(), fmt, used, float(speed), stream_format,
                         lang, ignored, granularities, bool(instructions and instructions.strip()),
                         inline)


def _granularities(value, stream_format: str) -> tuple[str, ...]:
    """``timestamp_granularities``: a list of known granularities (only ``word``), and
    only with ``stream_format: "sse"`` (the audio stream has nowhere to carry them)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad("timestamp_granularities must be a list of strings, e.g. [\"word\"]",
                   "timestamp_granularities", code="invalid_type")
    unknown = [v for v in value if v not in GRANULARITIES]
    if unknown:
        raise _bad(f"timestamp_granularities {_clip(repr(unknown))}: allowed are "
                   f"{', '.join(GRANULARITIES)}", "timestamp_granularities")
    if value and stream_format != "sse":
        raise _bad("timestamp_granularities needs stream_format \"sse\" (word events travel "
                   "in the event stream, between the audio deltas)", "timestamp_granularities")
    return tuple(dict.fromkeys(value))
