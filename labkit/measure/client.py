"""A client of our endpoint: stream speech to the speakers or a file (``labkit say --server``).

Audio is requested as raw PCM (24 kHz s16le mono, no header), so the first body byte is
the first audio sample: what the time to first audio (TTFA) measures. Playback starts
after a start-up buffer (``buffer_s`` seconds of audio, or the whole stream if it is
shorter); from then on a chunk that arrives after the audio before it has finished
playing is an underrun (a gap the listener hears), counted and summed.

Speakers: the ``sounddevice`` package when installed (recommended on the Mac), else the
first of ``ffplay``, ``play`` (SoX), ``aplay`` on the PATH.
"""
from __future__ import annotations

import shutil
import subprocess
import time
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import httpx

SAMPLE_RATE = 24_000
BYTES_PER_SECOND = SAMPLE_RATE * 2
DEFAULT_BUFFER_S = 0.3


class ServerError(RuntimeError):
    """The endpoint answered with an error (its OpenAI-shaped message included)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def speech_url(url: str) -> str:
    """``http://host:port`` or ``.../v1`` or the full speech URL -> the full speech URL."""
    url = url.rstrip("/")
    if url.endswith("/v1/audio/speech"):
        return url
    if url.endswith("/v1"):
        return url + "/audio/speech"
    return url + "/v1/audio/speech"


@dataclass
class Arrival:
    #: seconds since the request was sent
    t: float
    nbytes: int


@dataclass
class StreamResult:
    status: int
    headers: dict[str, str]
    body: bytes
    arrivals: list[Arrival] = field(default_factory=list)
    #: request sent -> response headers
    headers_s: float | None = None
    #: request sent -> first body byte (for pcm: the first audio sample)
    ttfa_s: float | None = None
    total_s: float | None = None


def stream_speech(url: str, text: str, voice: str | None = None, speed: float | None = None,
                  response_format: str = "pcm", api_key: str | None = None,
                  timeout: float = 300.0, on_bytes: Callable[[bytes, float], None] | None = None,
                  client: httpx.Client | None = None, headers: dict[str, str] | None = None,
                  **extra) -> StreamResult:
    """POST the text and read the streamed answer, recording when each part arrived.
    ``on_bytes(data, t)`` sees every part as it comes. Error statuses are returned, not
    raised (``body`` holds the JSON error)."""
    body = {"model": "kokoro", "input": text, "response_format": response_format,
            **{k: v for k, v in extra.items() if v is not None}}
    if voice:
        body["voice"] = voice
    if speed is not None:
        body["speed"] = speed
    headers = dict(headers or {})
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    own = client is None
    client = client or httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0))
    try:
        t0 = time.perf_counter()
        with client.stream("POST", speech_url(url), json=body, headers=headers) as resp:
            result = StreamResult(resp.status_code, dict(resp.headers), b"",
                                  headers_s=time.perf_counter() - t0)
            parts = []
            for data in resp.iter_raw():
                if not data:
                    continue
                t = time.perf_counter() - t0
                if result.ttfa_s is None:
                    result.ttfa_s = t
                result.arrivals.append(Arrival(t, len(data)))
                parts.append(data)
                if on_bytes is not None and resp.status_code == 200:
                    on_bytes(data, t)
            result.body = b"".join(parts)
            result.total_s = time.perf_counter() - t0
        return result
    finally:
        if own:
            client.close()


def simulate_playback(arrivals: list[tuple[float, float]], buffer_s: float = DEFAULT_BUFFER_S,
                      gap_tolerance_s: float = 0.0) -> dict:
    """A player fed ``(arrival time, audio seconds)`` parts: it starts once ``buffer_s``
    of audio is in (or everything arrived), then plays in real time, stalling when it
    runs dry. Returns start time, underruns (stalls longer than ``gap_tolerance_s``),
    total stall seconds and when playback ended."""
    if not arrivals:
        return {"start_s": None, "underruns": 0, "stall_s": 0.0, "end_s": None}
    total = sum(d for _, d in arrivals)
    need = min(buffer_s, total)
    have, start = 0.0, arrivals[-1][0]
    for t, d in arrivals:
        have += d
        if have >= need - 1e-9:
            start = t
            break
    clock = start  # wall time at which the queued audio runs out
    underruns, stall = 0, 0.0
    for t, d in arrivals:
        if t > clock:  # arrived after the audio before it finished playing
            gap = t - clock
            if gap > gap_tolerance_s:
                underruns += 1
            stall += gap
            clock = t
        clock += d
    return {"start_s": start, "underruns": underruns, "stall_s": stall, "end_s": clock}


# -- speakers ---------------------------------------------------------------------------
class _Player:
    def write(self, pcm: bytes) -> None: ...
    def close(self) -> None: ...


class _SoundDevicePlayer(_Player):
    def __init__(self):
        import sounddevice as sd

        self._stream = sd.RawOutputStream(samplerate=SAMPLE_RATE, channels=1, dtype="int16")
        self._stream.start()

    def write(self, pcm: bytes) -> None:
        self._stream.write(pcm)

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()


_PLAYER_COMMANDS = (
    ("ffplay", ["ffplay", "-nodisp", "-autoexit", "-loglevel", "error", "-f", "s16le",
                "-ar", str(SAMPLE_RATE), "-ch_layout", "mono", "-i", "-"]),
    ("play", ["play", "-q", "-t", "raw", "-r", str(SAMPLE_RATE), "-e", "signed", "-b", "16",
              "-c", "1", "-"]),
    ("aplay", ["aplay", "-q", "-f", "S16_LE", "-r", str(SAMPLE_RATE), "-c", "1"]),
)


class _PipePlayer(_Player):
    def __init__(self, argv: list[str]):
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE)

    def write(self, pcm: bytes) -> None:
        self._proc.stdin.write(pcm)
        self._proc.stdin.flush()

    def close(self) -> None:
        self._proc.stdin.close()
        self._proc.wait()


def open_player() -> _Player:
    try:
        return _SoundDevicePlayer()
    except ImportError:
        pass
    for name, argv in _PLAYER_COMMANDS:
        if shutil.which(name):
            return _PipePlayer(argv)
    raise RuntimeError("no way to play audio here: `pip install sounddevice`, or install "
                       "ffmpeg (ffplay) or sox (play); or pass an output file instead")


# -- labkit say --server ------------------------------------------------------------------
def _chunks(data: bytes, odd: bytearray) -> Iterator[bytes]:
    """Whole 16-bit samples only (a part can end mid-sample)."""
    buf = bytes(odd) + data
    cut = len(buf) - len(buf) % 2
    odd[:] = buf[cut:]
    if cut:
        yield buf[:cut]


def say_from_server(url: str, text: str, voice: str | None = None, speed: float | None = None,
                    out_path: str | Path | None = None, buffer_s: float = DEFAULT_BUFFER_S,
                    api_key: str | None = None, timeout: float = 300.0) -> dict:
    """Speak ``text`` through the endpoint at ``url``: to the speakers, or into
    ``out_path`` (``.wav``; ``.pcm`` for raw s16le; ``.mp3``/``.opus``/``.aac``/``.flac``
    are requested in that format and written as received). Returns what happened:
    status, TTFA, total time, audio seconds, underruns and stall seconds with the
    start-up buffer, the model variant and config the server used."""
    suffix = Path(out_path).suffix.lower().lstrip(".") if out_path else ""
    encoded = suffix in ("mp3", "opus", "aac", "flac")
    fmt = suffix if encoded else "pcm"
    player: _Player | None = None
    pending: list[bytes] = []
    odd = bytearray()
    buffered = [0.0]

    def play(data: bytes, t: float) -> None:
        nonlocal player
        if out_path is not None:
            return
        for pcm in _chunks(data, odd):
            if player is None:
                pending.append(pcm)
                buffered[0] += len(pcm) / BYTES_PER_SECOND
                if buffered[0] >= buffer_s:
                    player = open_player()
                    for part in pending:
                        player.write(part)
                    pending.clear()
            else:
                player.write(pcm)

    try:
        res = stream_speech(url, text, voice, speed, fmt, api_key, timeout, on_bytes=play)
        if res.status != 200:
            raise ServerError(res.status, _error_message(res.body))
        if out_path is None and pending:  # shorter than the start-up buffer
            player = open_player()
            for part in pending:
                player.write(part)
    finally:
        if player is not None:
            player.close()

    audio_bytes = sum(a.nbytes for a in res.arrivals)
    info = {
        "url": speech_url(url), "status": res.status, "format": fmt,
        "variant": res.headers.get("x-kokoro-variant"),
        "config": res.headers.get("x-kokoro-config"),
        "voice": res.headers.get("x-kokoro-voice"), "speed": res.headers.get("x-kokoro-speed"),
        "ttfa_s": res.ttfa_s, "total_s": res.total_s, "buffer_s": buffer_s,
    }
    if not encoded:
        secs = [(a.t, a.nbytes / BYTES_PER_SECOND) for a in res.arrivals]
        info["audio_s"] = audio_bytes / BYTES_PER_SECOND
        sim = simulate_playback(secs, buffer_s)
        info.update(underruns=sim["underruns"], stall_s=sim["stall_s"])
    if out_path is not None:
        out = Path(out_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        if suffix == "wav" or not suffix:
            with wave.open(str(out), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(SAMPLE_RATE)
                w.writeframes(res.body[: len(res.body) - len(res.body) % 2])
        else:
            out.write_bytes(res.body)
        info["out_path"] = str(out)
    return info


def _error_message(body: bytes) -> str:
    import json

    try:
        return json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return body[:300].decode("utf-8", "replace")


def to_dict(result: StreamResult) -> dict:
    d = asdict(result)
    d.pop("body")
    return d
