"""serve/: the endpoint, driven over real HTTP (the session's shared server), plus its
parts (encoders, request checks, best.json merging, voices, auth) on their own."""
from __future__ import annotations

import base64
import io
import json
import struct
import time

import av
import httpx
import numpy as np
import pytest

from labkit.config import ConfigError, LabConfig
from serve import encoders
from serve.errors import APIError
from serve.request import check_speech, parse_body

TEXT = "Hello there. This is a short test of the streaming endpoint."
LONG = " ".join(
    f"Sentence number {w} goes on for a while, so that the whole text needs many pieces "
    f"and several seconds to synthesize." for w in
    ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"))


def decoded_seconds(data: bytes, fmt: str) -> float:
    if fmt == "pcm":
        return len(data) / (2 * encoders.SAMPLE_RATE)
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(stream))
        return samples / stream.rate


def error_of(resp: httpx.Response) -> dict:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert {"message", "type", "param", "code"} <= set(body["error"]), body
    assert body["error"]["message"]
    return body["error"]


def metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- parts, no server ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", encoders.FORMATS)
def test_encoder_streams_decode_to_the_input_duration(fmt):
    sr = encoders.SAMPLE_RATE
    chunks = [0.3 * np.sin(np.arange(n) * 2 * np.pi * 220 / sr).astype(np.float32)
              for n in (sr // 2, sr + 123, 7000)]
    enc = encoders.make_encoder(fmt)
    out = b"".join(enc.encode(c) for c in chunks) + enc.finish()
    expected = sum(len(c) for c in chunks) / sr
    # mp3/aac add an encoder delay of one frame or so (~50 ms at 24 kHz)
    assert decoded_seconds(out, fmt) == pytest.approx(expected, abs=0.1)
    assert enc.content_type.startswith("audio/")


def test_streamed_wav_header_says_unknown_length():
    enc = encoders.make_encoder("wav")
    head = enc.encode(np.zeros(100, np.float32))[:44]
    assert head[:4] == b"RIFF" and head[8:12] == b"WAVE" and head[36:40] == b"data"
    assert struct.unpack("<I", head[4:8])[0] == 0xFFFFFFFF
    assert struct.unpack("<I", head[40:44])[0] == 0xFFFFFFFF
    channels, rate = struct.unpack("<HI", head[22:28])
    assert (channels, rate) == (1, 24000)


def test_unknown_format_is_named():
    with pytest.raises(ValueError, match="allowed are mp3"):
        encoders.make_encoder("ogg")


def test_request_checks(cfg):
    s = cfg.serve
    ok = check_speech({"input": "hi", "voice": "nova", "speed": 3.0}, s, "af_heart")
    assert (ok.model, ok.response_format, ok.stream_format) == ("kokoro", "mp3", "audio")
    assert ok.speed == 2.0 and ok.requested_speed == 3.0 and ok.speed_clamped
    assert check_speech({"input": "hi", "speed": 0.3}, s, "af_heart").speed == 0.5
    cases = [
        ({"input": ""}, 400, "input"), ({"input": "  \n"}, 400, "input"),
        ({}, 400, "input"), ({"input": 5}, 400, "input"),
        ({"input": "x" * (s.max_input_chars + 1)}, 413, "input"),
        ({"input": "hi", "speed": 4.5}, 400, "speed"), ({"input": "hi", "speed": "fast"}, 400, "speed"),
        ({"input": "hi", "speed": True}, 400, "speed"),
        ({"input": "hi", "response_format": "ogg"}, 400, "response_format"),
        ({"input": "hi", "stream_format": "chunks"}, 400, "stream_format"),
        ({"input": "hi", "model": "gpt-4"}, 400, "model"),
        ({"input": "hi", "voice": ""}, 400, "voice"),
    ]
    for body, status, param in cases:
        with pytest.raises(APIError) as err:
            check_speech(body, s, "af_heart")
        assert (err.value.status, err.value.param) == (status, param), body
    reject = s.__class__(speed_policy="reject")
    with pytest.raises(APIError, match="0.5 to 2.0"):
        check_speech({"input": "hi", "speed": 3.0}, reject, "af_heart")


def test_body_parsing_errors():
    with pytest.raises(APIError) as err:
        parse_body(b'{"input": ', "application/json")
    assert err.value.status == 400 and err.value.code == "invalid_json"
    with pytest.raises(APIError) as err:
        parse_body(b"[1, 2]", "application/json")
    assert err.value.status == 400
    with pytest.raises(APIError) as err:
        parse_body(b"input=hi", "application/x-www-form-urlencoded")
    assert err.value.status == 415
    assert parse_body(b'{"input": "hi"}', "application/json; charset=utf-8") == {"input": "hi"}


def test_best_json_is_merged_under_explicit_settings(tmp_path, caplog):
    from labkit.best_config import resolve

    best = LabConfig().with_overrides({"variant": "fp32-recon", "chunking.primer_max_words": 5,
                                       "session.intra_op_threads": 1})
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"config": best.to_dict(), "provenance": {"run_id": "run-x"},
                                "runner_up": {}}))
    explicit = LabConfig().with_overrides({"session.intra_op_threads": 2 + 1,
                                           "serve.port": 9999})
    served = resolve(explicit, str(path))
    assert served.source == "best.json"
    assert served.cfg.variant == "fp32-recon" and served.cfg.chunking.primer_max_words == 5
    assert served.cfg.session.intra_op_threads == 3  # explicit wins
    assert served.cfg.serve.port == 9999  # serve section always from the start-up config
    assert "source=best.json" in served.header and "run=run-x" in served.header

    with caplog.at_level("WARNING", logger="serve"):
        missing = resolve(LabConfig(), str(tmp_path / "nope.json"))
    assert missing.source == "defaults" and "not found" in caplog.text

    path.write_text(json.dumps({"config": {"no_such_setting": 1}}))
    with pytest.raises(ConfigError, match="no_such_setting"):
        resolve(LabConfig(), str(path))

    # a best.json whose model file (a stage's build) is gone: one clear sentence, and
    # the way out it names (best.json switched off) starts on the defaults
    gone = LabConfig().with_overrides({"variant": "qdq-x", "model_path": str(tmp_path / "qdq-x.onnx")})
    path.write_text(json.dumps({"config": gone.to_dict(), "provenance": {"run_id": "run-y"}}))
    with pytest.raises(ConfigError, match=r"run run-y.*no longer exists.*make journal"):
        resolve(LabConfig(), str(path))
    off = LabConfig().with_overrides(["serve.best_json="])
    ok = resolve(off)
    assert ok.source == "defaults" and ok.cfg.variant == "int8" and ok.cfg.model_path is None


def test_an_explicit_setting_at_its_default_value_still_wins_over_best_json(tmp_path):
    """`-s chunking.schedule=ramp` (LabConfig's default) beside a best.json that picked
    `adaptive`: the user's setting is served, not silently dropped for being the default."""
    from labkit.best_config import explicit_settings, resolve

    best = LabConfig().with_overrides({"chunking.schedule": "adaptive", "session.intra_op_threads": 1})
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"config": best.to_dict(), "provenance": {"run_id": "run-x"}}))
    asked = LabConfig.load(None, ["chunking.schedule=ramp"])
    assert asked.given == {"chunking.schedule"} and asked == LabConfig()
    assert explicit_settings(asked) == {"chunking.schedule": "ramp"}
    served = resolve(asked, str(path))
    assert served.cfg.chunking.schedule == "ramp" and served.cfg.session.intra_op_threads == 1
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("chunking:\n  schedule: ramp\nvoice: af_heart\n")
    from_file = LabConfig.load(yaml_file)
    assert from_file.given == {"chunking.schedule", "voice"}
    assert resolve(from_file, str(path)).cfg.chunking.schedule == "ramp"
    assert resolve(LabConfig(), str(path)).cfg.chunking.schedule == "adaptive"


def test_voice_names(cfg):
    from labkit.engine import assets
    from labkit.engine.voices import VoiceBank
    from serve import voices

    bank = VoiceBank.load(assets.voices_path(cfg))
    aliases = cfg.serve.voice_aliases
    assert all(target in bank.voices for target in aliases.values()), "an alias points nowhere"
    assert voices.request_voicing("nova", aliases, bank).voice == "af_nova"
    assert voices.request_voicing("Alloy", aliases, bank).voice == "af_alloy"
    assert voices.request_voicing("af_bella(2)+af_sky(1)", aliases, bank).voice == "af_bella(2)+af_sky(1)"
    assert voices.request_voicing("nova(2)+af_sky", aliases, bank).voice == "af_nova(2)+af_sky"
    with pytest.raises(APIError) as err:
        voices.request_voicing("af_hart", aliases, bank)
    assert err.value.status == 400 and "af_heart" in err.value.message
    assert voices.request_voicing("bf_emma+af_sky", aliases, bank, default_lang="en-us").lang == "en-gb"


def test_auth_cors_and_not_ready_without_loading_the_model():
    from fastapi.testclient import TestClient

    from serve import create_app

    cfg = LabConfig().with_overrides({"serve.api_key": "s3cret",
                                      "serve.cors_origin": "https://example.org"})
    client = TestClient(create_app(cfg, best_json=""))  # no `with`: start-up never runs
    assert client.get("/health").status_code == 503
    r = client.get("/v1/models")
    assert r.status_code == 401 and error_of(r)["code"] == "invalid_api_key"
    r = client.get("/v1/models", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = client.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and "tts-1" in {m["id"] for m in r.json()["data"]}
    r = client.post("/v1/audio/speech", json={"input": "hi"},
                    headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 503 and error_of(r)["code"] == "model_loading"
    r = client.options("/v1/audio/speech", headers={
        "Origin": "https://example.org", "Access-Control-Request-Method": "POST"})
    assert r.headers.get("access-control-allow-origin") == "https://example.org"
    assert client.get("/metrics").status_code == 200  # open, like /health
    assert error_of(client.get("/nope"))["code"] == "not_found"


# -- the real server -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(default_server):
    """The session's shared server (tests/conftest.py): a short queue timeout (429 at once),
    a personal lexicon (test_a_lexicon_edit_applies_to_the_next_request edits it), word
    timestamps from the provisioned model copy with the durations output."""
    return default_server


def speak(url: str, **body) -> httpx.Response:
    return httpx.post(url + "/v1/audio/speech", json={"model": "kokoro", **body}, timeout=300)


@pytest.fixture(scope="module")
def pcm_reference(server):
    r = speak(server.url, input=TEXT, voice="af_heart", response_format="pcm")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/pcm"
    return r.content


@pytest.mark.model
def test_health_models_voices(server):
    h = httpx.get(server.url + "/health")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    assert h.headers["x-kokoro-variant"] == "int8"
    assert "source=defaults" in h.headers["x-kokoro-config"]
    models = httpx.get(server.url + "/v1/models").json()
    assert {"kokoro", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"} <= {m["id"] for m in models["data"]}
    voices = httpx.get(server.url + "/v1/audio/voices").json()
    ids = {v["id"] for v in voices["voices"]}
    assert {"af_heart", "bm_george", "alloy", "nova"} <= ids
    assert voices["aliases"]["nova"] == "af_nova"


@pytest.mark.model
@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
def test_every_format_decodes_to_the_pcm_duration(server, pcm_reference, fmt):
    r = speak(server.url, input=TEXT, voice="af_heart", response_format=fmt)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == encoders.CONTENT_TYPES[fmt]
    assert r.headers["x-kokoro-variant"] == "int8" and r.headers["x-kokoro-voice"] == "af_heart"
    expected = decoded_seconds(pcm_reference, "pcm")
    assert expected > 1.0
    assert decoded_seconds(r.content, fmt) == pytest.approx(expected, abs=0.1)
    if fmt == "wav":
        assert struct.unpack("<I", r.content[40:44])[0] == 0xFFFFFFFF
        assert r.content[44:] == pcm_reference  # same synthesis (cached), same samples


STREAMED = "One. Two, three. Four five six seven. Eight nine. And ten, eleven, twelve, thirteen."


def timed_parts(url: str) -> tuple[list[tuple[float, int]], httpx.Headers]:
    """(seconds since the request, bytes) of each part of one streamed answer (no cache:
    every piece is synthesized)."""
    parts = []
    t0 = time.perf_counter()
    with httpx.stream("POST", url + "/v1/audio/speech", timeout=300, headers={"Cache-Control": "no-cache"},
                      json={"input": STREAMED, "voice": "am_michael", "response_format": "pcm",
                            "speed": 1.2}) as r:
        assert r.status_code == 200
        for data in r.iter_raw():
            parts.append((time.perf_counter() - t0, len(data)))
        return parts, r.headers


def assert_streamed(parts: list[tuple[float, int]]) -> None:
    """The first audio arrives long before the last: by the time the first part is in,
    at most a third of the answer's time has passed (relative: a busy machine slows both)."""
    first, last = parts[0][0], parts[-1][0]
    assert sum(n for _, n in parts) > 48_000  # > 1 s of audio
    assert first < last / 3, f"first audio at {first:.3f} s, the last at {last:.3f} s: not streamed"


@pytest.mark.model
def test_httpx_streaming_delivers_the_first_audio_long_before_the_last(server):
    parts, headers = timed_parts(server.url)
    assert headers["x-kokoro-speed"] == "1.2"
    assert_streamed(parts)


class BufferingProxy:
    """A test double of an endpoint that buffers: it forwards each request to ``upstream``,
    reads the whole answer, then sends it at once."""

    def __init__(self, upstream: str):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                r = httpx.post(upstream + self.path, content=body, timeout=300,
                               headers={k: v for k, v in self.headers.items()
                                        if k.lower() in ("content-type", "cache-control")})
                self.send_response(r.status_code)
                self.send_header("Content-Type", r.headers["content-type"])
                self.send_header("X-Kokoro-Speed", r.headers.get("x-kokoro-speed", ""))
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.model
def test_a_server_that_buffers_the_whole_answer_fails_the_streaming_check(server):
    with BufferingProxy(server.url) as proxy:
        parts, _ = timed_parts(proxy.url)
    # the old check passed it: more than 24,000 bytes in more than one read
    assert sum(n for _, n in parts) > 24_000 and len(parts) >= 2
    with pytest.raises(AssertionError, match="not streamed"):
        assert_streamed(parts)


@pytest.mark.model
def test_sse_stream(server, pcm_reference):
    r = speak(server.url, input=TEXT, voice="af_heart", response_format="pcm",
              stream_format="sse")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[len("data: "):]) for line in r.text.splitlines()
              if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["input_tokens"] > 0
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert deltas and all(e["type"] == "speech.audio.delta" for e in events[:-1])
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert audio == pcm_reference


WORDS_TEXT = "Hello there, Doctor Smith. It is 3:30, and the well-known cat sleeps."
WORDS_WRITTEN = ["Hello", "there", "Doctor", "Smith", "It", "is", "3:30", "and", "the",
                 "well-known", "cat", "sleeps"]


def sse_events(text: str) -> list[dict]:
    return [json.loads(line[len("data: "):]) for line in text.splitlines()
            if line.startswith("data: ")]


@pytest.mark.model
def test_sse_word_timestamps(server):
    """One speech.word per written word, in text order, before the audio delta that holds
    it, with increasing times inside the audio; the same again from the piece cache."""
    for _ in range(2):  # the second run reads its pieces from the cache
        r = speak(server.url, input=WORDS_TEXT, voice="af_heart", response_format="pcm",
                  stream_format="sse", timestamp_granularities=["word"])
        assert r.status_code == 200, r.text
        events = sse_events(r.text)
        words = [e for e in events if e["type"] == "speech.word"]
        assert [w["word"] for w in words] == WORDS_WRITTEN
        assert all(set(w) == {"type", "word", "start", "end", "input_start", "input_end"}
                   for w in words)
        assert all(WORDS_TEXT[w["input_start"]:w["input_end"]] == w["word"] for w in words)
        # before the delta that contains each word: audio sent so far never ends past a
        # word's start when that word is announced
        sent = 0.0
        for e in events:
            if e["type"] == "speech.audio.delta":
                sent += len(base64.b64decode(e["audio"])) / (2 * encoders.SAMPLE_RATE)
            elif e["type"] == "speech.word":
                assert e["start"] >= sent - 0.05, (e, sent)
        total = events[-1]["audio_seconds"]
        assert events[-1]["type"] == "speech.audio.done" and total == pytest.approx(sent, abs=0.01)
        for w in words:
            assert 0 <= w["start"] < w["end"] <= total + 1e-6, w
        for a, b in zip(words, words[1:]):
            assert a["end"] <= b["start"] + 1e-6, (a, b)
        assert words[-1]["end"] > 0.7 * total


@pytest.mark.model
def test_word_timestamps_through_the_openai_sdk(server):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input="One two three.", response_format="pcm",
            extra_body={"stream_format": "sse", "timestamp_granularities": ["word"]}) as resp:
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    assert [e["word"] for e in events if e["type"] == "speech.word"] == ["One", "two", "three"]
    assert events[-1]["type"] == "speech.audio.done"


OFFSETS_TEXT = "It was 40\u201360\u00b0C, it costs $3.50; ask Dr. Smith at https://example.com \U0001F389 today."


def openai_events(server, text: str, **extra) -> list[dict]:
    """The event stream of one request through OpenAI's own Python client."""
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="af_heart", input=text, response_format="pcm",
            extra_body={"stream_format": "sse", "timestamp_granularities": ["word"], **extra}) as resp:
        return [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]


@pytest.mark.model
def test_word_offsets_slice_the_input_as_sent(server):
    """input_start/input_end (code points into the input as sent) slice out each
    expansion whole: the range, the price, the abbreviation, the URL; the emoji the
    sanitizer dropped is a skipped span; no character is covered twice."""
    events = openai_events(server, OFFSETS_TEXT)
    words = [e for e in events if e["type"] == "speech.word"]
    spans = [(e["input_start"], e["input_end"]) for e in events
             if e["type"] in ("speech.word", "speech.skipped")]
    sliced = [OFFSETS_TEXT[a:b] for a, b in spans]
    for written in ("40\u201360\u00b0C", "$3.50", "Dr.", "Smith", "https://example.com"):
        assert written in sliced, (written, sliced)
    assert [w["word"] for w in words] == [OFFSETS_TEXT[a:b] for a, b in
                                          ((w["input_start"], w["input_end"]) for w in words)]
    skipped = [e for e in events if e["type"] == "speech.skipped"]
    assert [(e["text"], e["reason"]) for e in skipped] == [("\U0001F389", "emoji dropped (text.emoji=drop)")]
    assert all(a < b for a, b in spans) and all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))
    # in code points: the emoji (one code point, two UTF-16 units) is one character
    emoji = skipped[0]
    assert emoji["input_end"] - emoji["input_start"] == 1
    assert words[-1]["word"] == "today" and OFFSETS_TEXT.index("today") == words[-1]["input_start"]


@pytest.mark.model
def test_inline_pronunciation_is_an_opt_in(server):
    """Off (the default): [Kokoro](/kˈOkəɹO/) is read as the word Kokoro. On: its phonemes
    are spoken, the word's offsets point at "Kokoro" inside the brackets; never the brackets
    or the slashes; malformed markup is plain text."""
    marked, plain = "Hello [Kokoro](/kˈOkəɹO/).", "Hello Kokoro."
    off = speak(server.url, input=marked, voice="af_heart", response_format="pcm")
    as_word = speak(server.url, input=plain, voice="af_heart", response_format="pcm")
    on = speak(server.url, input=marked, voice="af_heart", response_format="pcm", inline_phonemes=True)
    assert off.status_code == on.status_code == as_word.status_code == 200
    assert off.content == as_word.content  # off: read as the word
    assert on.content != off.content      # on: the phonemes given
    events = openai_events(server, marked, inline_phonemes=True)
    words = [e for e in events if e["type"] == "speech.word"]
    assert [w["word"] for w in words] == ["Hello", "Kokoro"]
    assert words[1]["input_start"] == marked.index("Kokoro") and not [
        e for e in events if e["type"] == "speech.skipped"]
    for broken in ("Hello [Kokoro](/kˈOkə", "Hello [Kokoro](kˈOkəɹO) now.", "Hello [Kokoro](/kˈOk əɹO/) now."):
        events = openai_events(server, broken, inline_phonemes=True)  # plain text, never a 500
        assert "Kokoro" in [e["word"] for e in events if e["type"] == "speech.word"], events
        assert events[-1]["type"] == "speech.audio.done"
    r = speak(server.url, input="Hello [Kokoro](/kˈOk☃/).", inline_phonemes=True)
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_phonemes"
    assert "'☃' (U+2603)" in error_of(r)["message"]
    off = speak(server.url, input="Hello [Kokoro](/kˈOk☃/).", response_format="pcm")
    assert off.status_code == 200  # off, the markup is not read: nothing to refuse


@pytest.mark.model
def test_a_lexicon_edit_applies_to_the_next_request(server):
    """The server reads its lexicon file again when it changes: no restart."""
    import os

    def audio():
        r = speak(server.url, input="Zorblax waved.", voice="af_heart", response_format="pcm")
        assert r.status_code == 200, r.text
        return r.content

    before = audio()
    original = server.lexicon.read_text(encoding="utf-8")
    try:
        server.lexicon.write_text("en:\n  zorblax: kˈOkəɹO\n", encoding="utf-8")
        st = server.lexicon.stat()
        os.utime(server.lexicon, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
        assert audio() != before
    finally:
        server.lexicon.write_text(original, encoding="utf-8")
        st = server.lexicon.stat()
        os.utime(server.lexicon, ns=(st.st_atime_ns, st.st_mtime_ns + 20_000_000))
    assert audio() == before


@pytest.mark.model
def test_labkit_say_server_writes_words(server, tmp_path):
    import soundfile as sf

    from labkit import cli

    out, words_path = tmp_path / "out.wav", tmp_path / "words.json"
    assert cli.main(["say", WORDS_TEXT, "--server", server.url, "--voice", "af_heart",
                     "-o", str(out), "--words", str(words_path)]) == 0
    words = json.loads(words_path.read_text(encoding="utf-8"))
    audio, sr = sf.read(str(out))
    assert [w["word"] for w in words] == WORDS_WRITTEN
    assert all(0 <= w["start"] < w["end"] <= len(audio) / sr + 1e-6 for w in words)


@pytest.mark.model
@pytest.mark.parametrize("extra", [
    {"timestamp_granularities": ["segment"], "stream_format": "sse"},
    {"timestamp_granularities": "word", "stream_format": "sse"},
    {"timestamp_granularities": ["word"]},  # audio stream: nowhere to put them
])
def test_bad_timestamp_granularities_are_400(server, extra):
    r = speak(server.url, input="hi", response_format="pcm", **extra)
    assert r.status_code == 400
    assert error_of(r)["param"] == "timestamp_granularities"


@pytest.mark.model
def test_openai_parity_model_aliases_and_instructions(server, pcm_reference):
    models = {m["id"]: m for m in httpx.get(server.url + "/v1/models").json()["data"]}
    for alias in ("tts-1", "tts-1-hd", "gpt-4o-mini-tts"):
        assert models[alias]["alias_of"] == "kokoro"
        assert httpx.get(f"{server.url}/v1/models/{alias}").json()["id"] == alias
        r = speak(server.url, model=alias, input=TEXT, voice="af_heart", response_format="pcm")
        assert r.status_code == 200 and r.content == pcm_reference
        assert "x-kokoro-instructions" not in r.headers  # nothing asked, nothing to report
    r = speak(server.url, model="gpt-4o-mini-tts", input=TEXT, voice="af_heart",
              response_format="pcm", instructions="Speak like a pirate.")
    assert r.status_code == 200 and r.content == pcm_reference  # accepted, not applied
    assert r.headers["x-kokoro-instructions"] == "ignored"
    r = speak(server.url, input="hi", instructions=5)
    assert r.status_code == 400 and error_of(r)["param"] == "instructions"


@pytest.mark.model
def test_voices_read_their_own_language(server):
    voices = {v["id"]: v for v in httpx.get(server.url + "/v1/audio/voices").json()["voices"]}
    assert voices["ff_siwis"]["lang"] == "fr-fr" and voices["ff_siwis"]["available"] is True
    assert voices["af_heart"]["lang"] == "en-us" and voices["bm_george"]["lang"] == "en-gb"
    assert voices["jf_alpha"]["lang"] == "ja" and voices["zf_xiaobei"]["lang"] == "zh"
    for vid in ("jf_alpha", "zf_xiaobei"):  # misaki's ja / zh G2P, from PyPI
        assert voices[vid]["available"] is True and "unavailable_reason" not in voices[vid]
    r = speak(server.url, input="Bonjour, comment allez-vous ?", voice="ff_siwis",
              response_format="pcm")
    assert r.status_code == 200 and r.headers["x-kokoro-lang"] == "fr-fr"
    french = np.frombuffer(r.content, np.int16)
    assert len(french) > 0.5 * encoders.SAMPLE_RATE and np.abs(french).max() > 1000
    r = speak(server.url, input="Bonjour.", voice="ff_siwis", lang="en-us", response_format="pcm")
    assert r.status_code == 200 and r.headers["x-kokoro-lang"] == "en-us"  # explicit wins
    for voice, text, lang in (("jf_alpha", "こんにちは、世界。", "ja"), ("zf_xiaobei", "你好，世界。", "zh")):
        r = speak(server.url, input=text, voice=voice, response_format="pcm")
        assert r.status_code == 200 and r.headers["x-kokoro-lang"] == lang, r.text
        pcm = np.frombuffer(r.content, np.int16)
        assert len(pcm) > 0.5 * encoders.SAMPLE_RATE and np.abs(pcm).max() > 1000


def test_an_unavailable_language_is_a_400_naming_what_is_missing(monkeypatch):
    """Where misaki's ja / zh G2P cannot be built, the request is refused up front with
    the reason (the module missing and the packages to add), in OpenAI's shape."""
    from labkit.engine import voices as engine_voices
    from serve import voices as voicemod

    why = "misaki's zh G2P needs the Python module 'jieba' (PyPI package jieba), which is " \
          "not installed; add `pip install jieba pypinyin cn2an ordered-set`"
    monkeypatch.setattr(engine_voices, "unavailable", lambda lang: why if lang == "zh" else None)
    pack = np.zeros((510, 1, 256), np.float32)
    bank = engine_voices.VoiceBank({v: pack for v in ("zf_xiaobei", "af_heart", "jf_alpha")})
    with pytest.raises(APIError) as err:
        voicemod.request_voicing("zf_xiaobei", {}, bank)
    assert err.value.status == 400 and err.value.code == "language_unavailable"
    assert err.value.param == "voice" and "jieba" in err.value.message
    with pytest.raises(APIError) as err:
        voicemod.request_voicing("af_heart", {}, bank, lang="zh")
    assert err.value.param == "lang"
    assert voicemod.request_voicing("jf_alpha", {}, bank).lang == "ja"


@pytest.mark.model
def test_voices_blends_aliases_and_clamped_speed(server):
    r = speak(server.url, input="Blend.", voice="af_bella(2)+af_sky(1)", response_format="pcm")
    assert r.status_code == 200 and r.headers["x-kokoro-voice"] == "af_bella(2)+af_sky(1)"
    r = speak(server.url, input="Alias.", voice="onyx", response_format="pcm")
    assert r.status_code == 200 and r.headers["x-kokoro-voice"] == "am_onyx"
    r = speak(server.url, input="British.", voice="bm_george", response_format="pcm")
    assert r.headers["x-kokoro-lang"] == "en-gb"
    r = speak(server.url, input="Fast.", voice="af_heart", response_format="pcm", speed=3.5)
    assert r.status_code == 200
    assert r.headers["x-kokoro-speed"].startswith("2; requested=3.5; clamped")


@pytest.mark.model
@pytest.mark.parametrize("body,status,param", [
    ({"input": ""}, 400, "input"),
    ({"input": " \t\n "}, 400, "input"),
    ({"input": "a" * 4097}, 413, "input"),
    ({"input": "hi", "voice": "af_hart"}, 400, "voice"),
    ({"input": "hi", "voice": "af_bella(2)+nobody"}, 400, "voice"),
    ({"input": "hi", "response_format": "ogg"}, 400, "response_format"),
    ({"input": "hi", "speed": 0.1}, 400, "speed"),
    ({"input": "hi", "speed": 9}, 400, "speed"),
    ({"input": "hi", "model": "whisper-1"}, 400, "model"),
    ({"input": "hi", "lang": "xx-yy"}, 400, "lang"),
    ({"input": "Say [hi](/hˈI$/).", "inline_phonemes": True}, 400, "input"),  # unknown symbol
    ({"input": "hi", "inline_phonemes": "yes"}, 400, "inline_phonemes"),
    ({"input": "\u0000\u0001\u0002"}, 400, "input"),  # nothing speakable after clean-up
])
def test_bad_input_gets_openai_shaped_4xx(server, body, status, param):
    r = speak(server.url, **body)
    assert r.status_code == status, r.text
    err = error_of(r)
    assert err["param"] == param
    if body.get("voice") == "af_hart":
        assert "af_heart" in err["message"]  # close matches named


@pytest.mark.model
def test_malformed_requests(server):
    url = server.url + "/v1/audio/speech"
    r = httpx.post(url, content=b'{"input": "hi"', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_json"
    r = httpx.post(url, content=b"hi", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and error_of(r)["code"] == "unsupported_media_type"
    r = httpx.get(url)
    assert r.status_code == 405 and error_of(r)
    assert httpx.get(server.url + "/health").status_code == 200


@pytest.mark.model
def test_repeats_come_from_the_cache(server):
    text = "Cache me if you can."
    hits = metric(server.url, "kokoro_cache_hits_total")
    first = speak(server.url, input=text, voice="af_heart", response_format="pcm")
    again = speak(server.url, input=text, voice="af_heart", response_format="pcm")
    assert first.content == again.content
    assert metric(server.url, "kokoro_cache_hits_total") > hits
    hits, misses = metric(server.url, "kokoro_cache_hits_total"), metric(server.url, "kokoro_cache_misses_total")
    fresh = httpx.post(server.url + "/v1/audio/speech", timeout=300,
                       json={"input": text, "voice": "af_heart", "response_format": "pcm"},
                       headers={"Cache-Control": "no-cache"})
    assert fresh.status_code == 200
    # synthesized again (no piece read from the cache), to the same samples
    assert metric(server.url, "kokoro_cache_hits_total") == hits
    assert metric(server.url, "kokoro_cache_misses_total") > misses
    assert fresh.content == first.content


def _wait_idle(url: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        h = httpx.get(url + "/health").json()
        if h["busy"] == 0:
            return h
        time.sleep(0.1)
    raise AssertionError("the server stayed busy")


@pytest.mark.model
def test_busy_gets_429_and_disconnect_stops_the_synthesis(server):
    _wait_idle(server.url)
    cancelled = metric(server.url, "kokoro_cancelled_total")
    aborted = metric(server.url, "kokoro_pieces_aborted_total")
    with httpx.Client(timeout=300) as client:
        with client.stream("POST", server.url + "/v1/audio/speech",
                           json={"input": LONG, "voice": "af_sky", "response_format": "mp3"}) as r:
            assert r.status_code == 200
            raw = r.iter_raw()  # kept: a dropped iterator closes the connection at once
            next(raw)  # the first piece is out; the rest is being synthesized
            busy = httpx.post(server.url + "/v1/audio/speech", timeout=60,
                              json={"input": "Me too.", "response_format": "pcm"})
            assert busy.status_code == 429
            assert int(busy.headers["retry-after"]) >= 1
            assert error_of(busy)["code"] == "rate_limit_exceeded"
        # leaving the block closes the connection mid-stream
    health = _wait_idle(server.url)
    assert health["status"] == "ok"
    assert metric(server.url, "kokoro_cancelled_total") == cancelled + 1
    # the piece in flight was aborted (RunOptions.terminate), not synthesized to its end
    assert metric(server.url, "kokoro_pieces_aborted_total") == aborted + 1
    after = speak(server.url, input="Still here.", voice="af_heart", response_format="pcm")
    assert after.status_code == 200 and len(after.content) > 0
    assert metric(server.url, 'kokoro_client_disconnects_total{stage="stream"}') >= 1
    # a client event, not an error
    assert metric(server.url, 'kokoro_errors_total{kind="client_disconnect"}') == 0


@pytest.mark.model
def test_metrics_exposition(server):
    text = httpx.get(server.url + "/metrics").text
    for name in ("kokoro_requests_total", "kokoro_ttfa_seconds_bucket", "kokoro_rtf_bucket",
                 "kokoro_cache_hits_total", "kokoro_errors_total", "kokoro_pieces_aborted_total",
                 "kokoro_ready 1.0"):
        assert name in text, name
    assert metric(server.url, "kokoro_ttfa_seconds_count") >= 1


# -- limits, degradation, retries: parts, no model ---------------------------------------------
def test_json_limits_are_400_not_500():
    for raw, needle in [(b'{"a": ' + b"[" * 20 + b"]" * 20 + b"}", "nests deeper"),
                        (b"[" * 100_000, "nests deeper"),
                        (b'{"speed": ' + b"1" * 4400 + b"}", "4,400 digits"),
                        (b'{"speed": Infinity}', "Infinity"),
                        (b'{"input": "\\ud83d"}', "lone surrogate")]:
        with pytest.raises(APIError) as err:
            parse_body(raw, "application/json")
        assert err.value.status == 400 and needle in err.value.message, raw[:40]
    ok = parse_body(b'{"input": "\\ud83d\\ude00", "voice": {"id": "af_sky"}}', "application/json")
    assert ok["input"] == "\U0001F600"  # a proper surrogate pair is text


def test_serve_limits_must_be_positive():
    from labkit.best_config import check_limits

    check_limits(LabConfig().serve)
    for key, value in [("max_body_bytes", 0), ("header_timeout_s", 0), ("body_timeout_s", -1),
                       ("max_connections", True)]:
        bad = LabConfig().with_overrides({f"serve.{key}": value}).serve
        with pytest.raises(ConfigError, match=f"serve.{key}"):
            check_limits(bad)


def test_degraded_g2p_shows_in_health_state_and_metrics(monkeypatch):
    from types import SimpleNamespace

    from serve import metrics as metricsmod
    from serve import state as statemod
    from labkit.best_config import resolve

    good = SimpleNamespace(lang="en-us", engine="misaki", engine_note="",
                           counts={"fallback_words": 2, "unknown_words": 0})
    bad = SimpleNamespace(lang="en-gb", engine="espeak", engine_note="misaki unavailable (X)",
                          counts={"fallback_words": 0, "unknown_words": 1})
    monkeypatch.setattr(statemod.g2p, "loaded", lambda: [good])
    state = statemod.ServerState(resolve(LabConfig(), ""))
    assert state.degraded() == []
    monkeypatch.setattr(statemod.g2p, "loaded", lambda: [good, bad])
    assert state.degraded() == ["g2p en-gb: misaki unavailable (X)"]
    monkeypatch.setattr(metricsmod.g2p, "loaded", lambda: [good, bad])
    text = state.metrics.render().decode()
    assert 'kokoro_g2p_degraded{lang="en-gb"} 1.0' in text
    assert 'kokoro_g2p_degraded{lang="en-us"} 0.0' in text
    assert 'kokoro_g2p_fallback_words_total{lang="en-us"} 2.0' in text


def test_pipeline_retries_are_counted_and_logged(caplog):
    import asyncio
    from types import SimpleNamespace

    from labkit.engine.chunks import StreamStats
    from serve.speech import SpeechService
    from labkit.best_config import resolve
    from serve.state import ServerState

    state = ServerState(resolve(LabConfig(), ""))
    service = SpeechService(state)

    async def run(job):
        state.slot = asyncio.Semaphore(0)
        state.busy = 1
        service._release(job)
        return state.slot.locked()

    quiet = SimpleNamespace(cancelled=False, stats=StreamStats(), fallback_words=0,
                            unknown_words=0, voicing=SimpleNamespace(lang="en-us"))
    assert asyncio.run(run(quiet)) is False  # the slot came back
    assert state.metrics.pipeline_retries._value.get() == 0
    stats = StreamStats(retries=1, failures=[(3, 0, "RuntimeError: boom")])
    job = SimpleNamespace(cancelled=False, stats=stats, fallback_words=2, unknown_words=0,
                          voicing=SimpleNamespace(lang="en-us"))
    with caplog.at_level("INFO", logger="serve"):
        asyncio.run(run(job))
    assert state.metrics.pipeline_retries._value.get() == 1
    assert state.metrics.pipeline_failures._value.get() == 1
    assert any("RuntimeError: boom" in r.message for r in caplog.records)
    assert any("2 word(s) read by the espeak fallback" in r.message for r in caplog.records)
