"""Real clients against the real server (one for the session, with an API key set): the
official openai SDK, a Node fetch script shaped like a Raycast extension, and
labkit.measure.client (``labkit say --server``)."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import wave
from pathlib import Path
from types import SimpleNamespace

import av
import httpx
import pytest

from labkit.measure.client import ServerError, say_from_server, speech_url

KEY = "test-key-123"
TEXT = "Good morning. Here is the news, read aloud by a small model."
NODE_SCRIPT = Path(__file__).parent / "clients" / "raycast_fetch.mjs"


def seconds_of(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as c:
        s = c.streams.audio[0]
        return sum(f.samples for f in c.decode(s)) / s.rate


# -- no server -------------------------------------------------------------------------------
def test_speech_url_forms():
    full = "http://127.0.0.1:8880/v1/audio/speech"
    assert speech_url("http://127.0.0.1:8880") == full
    assert speech_url("http://127.0.0.1:8880/v1/") == full
    assert speech_url(full) == full


#: a late stream: (seconds after the request, seconds of audio) per part
LATE = [(0.2, 0.5), (0.4, 0.5), (2.0, 0.5), (2.1, 0.5), (3.5, 0.5)]


def late_client(monkeypatch, parts=LATE) -> httpx.Client:
    """An HTTP client whose server sends raw PCM parts at the times of ``parts`` on a fake
    clock (labkit.measure.client reads that clock): the wire and the reads are httpx's own."""
    from labkit.measure import client as client_mod

    clock = {"now": 50.0}
    monkeypatch.setattr(client_mod, "time", SimpleNamespace(perf_counter=lambda: clock["now"]))

    def handler(request: httpx.Request) -> httpx.Response:
        t0 = clock["now"]

        def body():
            for at, seconds in parts:
                clock["now"] = t0 + at
                yield b"\x01\x00" * int(seconds * 24_000)
        return httpx.Response(200, headers={"content-type": "audio/pcm", "x-kokoro-variant": "int8"},
                              content=body())
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_say_counts_the_underruns_of_a_stream_that_arrives_late(monkeypatch, tmp_path):
    """0.3 s start-up buffer: playback starts at 0.2 s; the third part is 0.8 s late, the
    fifth 0.5 s late: two underruns, 1.3 s of silence."""
    info = say_from_server("http://x", TEXT, out_path=tmp_path / "late.wav",
                           client=late_client(monkeypatch), buffer_s=0.3)
    assert info["ttfa_s"] == pytest.approx(0.2) and info["total_s"] == pytest.approx(3.5)
    assert info["audio_s"] == pytest.approx(2.5)
    assert info["underruns"] == 2 and info["stall_s"] == pytest.approx(1.3)
    # a 1.5 s buffer waits for the first three parts (2.0 s): the last part is 0.5 s early
    info = say_from_server("http://x", TEXT, out_path=tmp_path / "buffered.wav",
                           client=late_client(monkeypatch), buffer_s=1.5)
    assert info["underruns"] == 0 and info["stall_s"] == 0.0


def test_the_http_runner_counts_the_same_underruns(monkeypatch):
    from labkit.measure.httpbench import run_http

    run = run_http("http://x", TEXT, "af_heart", 1.0, "en-us", cache=False,
                   client=late_client(monkeypatch))
    assert run.arrivals == pytest.approx([a for a, _ in LATE])
    assert run.summary(0.3)["underruns"] == 2 and run.summary(0.3)["underrun_s"] == pytest.approx(1.3)
    steady = run_http("http://x", TEXT, "af_heart", 1.0, "en-us", cache=False,
                      client=late_client(monkeypatch, [(0.2 + 0.5 * k, 0.5) for k in range(5)]))
    assert steady.summary(0.3)["underruns"] == 0


# -- the real server -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(served):
    return served(f"serve.api_key={KEY}")


@pytest.mark.model
def test_openai_sdk_streams_every_way(server):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY)
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=TEXT) as resp:
        assert resp.headers["content-type"] == "audio/mpeg"
        assert resp.headers["x-kokoro-voice"] == "af_alloy"
        parts = list(resp.iter_bytes())
    mp3 = b"".join(parts)
    assert seconds_of(mp3) > 2.0

    with client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="alloy", input=TEXT, response_format="pcm",
            instructions="Speak cheerfully.") as resp:
        pcm = resp.read()
    assert abs(len(pcm) / 48000 - seconds_of(mp3)) < 0.1

    with client.audio.speech.with_streaming_response.create(
            model="kokoro", voice="alloy", input=TEXT, response_format="pcm",
            extra_body={"stream_format": "sse"}) as resp:
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done"

    with pytest.raises(openai.BadRequestError, match="af_heart"):
        client.audio.speech.create(model="tts-1", voice="af_hart", input="hi")
    with pytest.raises(openai.APIStatusError) as err:
        client.audio.speech.create(model="tts-1", voice="alloy", input="x" * 5000)
    assert err.value.status_code == 413
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.audio.speech.create(model="tts-1", voice="alloy", input="hi")


@pytest.mark.model
def test_node_fetch_like_raycast(server, tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Raycast-shaped fetch client needs Node 18+")
    out = tmp_path / "speech.mp3"
    body = json.dumps({"model": "tts-1", "input": TEXT + " And one more sentence for good measure.",
                       "voice": "nova", "response_format": "mp3"})
    proc = subprocess.run([node, str(NODE_SCRIPT), server.url + "/v1/audio/speech", body, str(out)],
                          capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin:/usr/local/bin", "KOKORO_API_KEY": KEY})
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["status"] == 200 and info["content_type"] == "audio/mpeg"
    assert info["variant"] == "int8" and info["voice"] == "af_nova"
    assert info["bytes"] == out.stat().st_size > 0
    times = [c["t_ms"] for c in info["chunks"]]
    assert len(times) >= 2 and times == sorted(times)
    assert info["first_byte_ms"] <= info["total_ms"]
    assert seconds_of(out.read_bytes()) > 3.0

    proc = subprocess.run([node, str(NODE_SCRIPT), server.url + "/v1/audio/speech",
                           json.dumps({"input": ""}), ""], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin:/usr/local/bin",
                                           "KOKORO_API_KEY": KEY})
    info = json.loads(proc.stdout)
    assert info["status"] == 400 and json.loads(info["error"])["error"]["param"] == "input"


@pytest.mark.model
def test_say_from_server_to_files(server, tmp_path):
    wav_path = tmp_path / "say.wav"
    info = say_from_server(server.url, TEXT, voice="bf_emma", speed=1.1, out_path=wav_path,
                           api_key=KEY)
    json.dumps(info)  # what `labkit say --server` prints
    assert info["status"] == 200 and info["voice"] == "bf_emma"
    assert info["ttfa_s"] <= info["total_s"]
    with wave.open(str(wav_path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        assert w.getnframes() / 24000 == pytest.approx(info["audio_s"], abs=1e-3)

    mp3 = tmp_path / "say.mp3"
    info = say_from_server(server.url, TEXT, out_path=mp3, api_key=KEY)
    assert info["format"] == "mp3" and seconds_of(mp3.read_bytes()) > 2.0

    with pytest.raises(ServerError, match="401"):
        say_from_server(server.url, TEXT, out_path=tmp_path / "x.wav", api_key="nope")


def test_bench_texts_fit_the_endpoint():
    from labkit.lab.s08_endpoint import TEXT_NAMES
    from labkit.measure.texts import capped

    texts = capped(TEXT_NAMES, 4096)
    assert tuple(texts) == TEXT_NAMES
    assert all(0 < len(t) <= 4096 for t in texts.values())
    assert len(texts["phrase"]) < len(texts["sentence"]) < len(texts["paragraph"]) < len(texts["article"])
