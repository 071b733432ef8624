"""A client of our endpoint: stream speech to the speakers or a file (``labkit say --server``).

Audio is requested as raw PCM (24 kHz s16le mono, no header), so the first body byte is
the first audio sample: what the time to first audio (TTFA) measures. Playback starts
after a start-up buffer (``buffer_s`` seconds of audio, or the whole stream if it is
shorter); from then on a chunk that arrives after the audio before it has finished
playing is an underrun (a gap the listener hears), counted and summed.

Speakers: the ``sounddevice`` package (a dependency on macOS) through one output stream for
the whole answer, else the first of ``ffplay``, ``play`` (SoX), ``aplay`` on the PATH.
SIGINT/SIGTERM stop playback at once and close the request, which stops the synthesis.
"""
from __future__ import annotations

import base64
import contextlib
import json
import shutil
import signal
import subprocess
import threading
import time
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import httpx

from labkit import procs
from labkit.measure.playback import simulate_playback
from labkit.kokoro import SAMPLE_RATE

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


class Stopped(Exception):
    """SIGINT or SIGTERM asked playback to stop (``labkit say`` then exits 128 + signum)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def stop_on_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)):
    """Inside the block SIGINT/SIGTERM raise :class:`Stopped` (so the player is aborted and the
    request closed, which stops the server's synthesis); the old handlers come back after.
    Only the main thread can take signals: elsewhere this does nothing."""
    return procs.signals_raise(Stopped, signals)


class _Player:
    name = "none"
    _done = False

    def write(self, pcm: bytes) -> None: ...

    def close(self) -> None:
        """Play what was written to the end, then release the device."""

    def abort(self) -> None:
        """Stop now, dropping what is queued."""
        self.close()


class _SoundDevicePlayer(_Player):
    """One output stream for the whole answer: parts are written into it as they arrive,
    so consecutive parts play without a gap (the device never restarts between them)."""

    name = "sounddevice"

    def __init__(self):
        import sounddevice as sd  # third-party, with PortAudio: loaded only to play

        self._stream = sd.RawOutputStream(samplerate=SAMPLE_RATE, channels=1, dtype="int16",
                                          latency="high")
        self._stream.start()

    #: written in slices of 0.1 s: a write blocks while the device's buffer is full, and a
    #: signal is handled only between writes, so a stop never waits for a long piece
    SLICE_BYTES = BYTES_PER_SECOND // 10

    def write(self, pcm: bytes) -> None:
        view = memoryview(pcm)
        for start in range(0, len(view), self.SLICE_BYTES):
            self._stream.write(view[start:start + self.SLICE_BYTES])

    def close(self) -> None:
        if self._done:
            return
        try:
            self._stream.stop()  # PortAudio plays the pending buffers before it returns
        finally:
            self._done = True
            self._stream.close()

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._stream.abort()
        finally:
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
        self.name = argv[0]
        self._proc = procs.popen(argv, stdin=subprocess.PIPE)

    def write(self, pcm: bytes) -> None:
        self._proc.stdin.write(pcm)
        self._proc.stdin.flush()

    def close(self) -> None:
        if self._done:
            return
        self._proc.stdin.close()
        self._proc.wait()
        self._done = True

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._proc.kill()
        self._proc.wait()
        with contextlib.suppress(OSError):
            self._proc.stdin.close()


def _sounddevice_output() -> str | None:
    """The default output device's name when sounddevice can play here, else None."""
    try:
        import sounddevice as sd  # third-party, with PortAudio: loaded only to ask
    except (ImportError, OSError):  # not installed, or no PortAudio library
        return None
    try:
        return str(sd.query_devices(kind="output")["name"])
    except Exception:  # noqa: BLE001 - PortAudio's errors: no output device
        return None


def player_choice() -> dict:
    """What ``labkit say --server`` will play through: ``{"player": name or None, "detail"}``."""
    device = _sounddevice_output()
    if device is not None:
        return {"player": "sounddevice", "detail": f"one stream to {device}"}
    for name, argv in _PLAYER_COMMANDS:
        path = shutil.which(name)
        if path:
            return {"player": name, "detail": path}
    return {"player": None,
            "detail": "no sounddevice output, ffplay, play or aplay: `pip install sounddevice`"}


def open_player() -> _Player:
    if _sounddevice_output() is not None:
        return _SoundDevicePlayer()
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
                    api_key: str | None = None, timeout: float = 300.0,
                    client: httpx.Client | None = None, words: bool = False,
                    inline: bool | None = None) -> dict:
    """Speak ``text`` through the endpoint at ``url``: to the speakers, or into
    ``out_path`` (``.wav``; ``.pcm`` for raw s16le; ``.mp3``/``.opus``/``.aac``/``.flac``
    are requested in that format and written as received). Returns what happened:
    status, TTFA, total time, audio seconds, underruns and stall seconds with the
    start-up buffer, the model variant and config the server used. An error status raises
    :class:`ServerError` with the server's message (its body is never played); SIGINT or
    SIGTERM raises :class:`Stopped` after cutting the sound and closing the request.

    ``words``: ask for word timestamps (``stream_format: "sse"`` with
    ``timestamp_granularities: ["word"]``); the audio comes in the event stream's deltas
    and ``info["words"]`` holds ``[{"word", "start", "end", "input_start", "input_end"}]``
    (stream seconds; code-point offsets into ``text``) and ``{"skipped", ...}`` entries.
    ``inline``: send ``inline_phonemes`` (obey ``[word](/phonemes/)`` in ``text``); None:
    the server's setting."""
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

    events = SSEReader(play) if words else None
    extra = {"stream_format": "sse", "timestamp_granularities": ["word"]} if words else {}
    if inline is not None:
        extra["inline_phonemes"] = bool(inline)
    finished = False
    try:
        with stop_on_signals():
            res = stream_speech(url, text, voice, speed, fmt, api_key, timeout,
                                on_bytes=events.feed if events else play, client=client, **extra)
            if res.status != 200:
                raise ServerError(res.status, _error_message(res.body))
            if events is not None:
                events.close()
                res.body = b"".join(events.audio)
                res.arrivals = events.arrivals
            if out_path is None and pending:  # shorter than the start-up buffer
                player = open_player()
                for part in pending:
                    player.write(part)
            if player is not None:
                player.close()  # plays to the end (a signal now still cuts it)
            finished = True
    finally:
        if player is not None and not finished:
            player.abort()

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
        if secs:
            pb = simulate_playback([t for t, _ in secs], [d for _, d in secs], buffer_s)
            info.update(underruns=pb.underruns, stall_s=pb.underrun_s)
        else:
            info.update(underruns=0, stall_s=0.0)
    if events is not None:
        info["words"] = events.words
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


class SSEReader:
    """Reads the endpoint's event stream as it arrives: ``speech.audio.delta`` audio goes
    to ``on_audio(data, t)`` (and into :attr:`audio`, :attr:`arrivals`),
    ``speech.word`` events (and ``speech.skipped`` ones, as ``{"skipped": reason, ...}``)
    into :attr:`words`; an ``error`` event raises
    :class:`ServerError` (the status line said 200 before the synthesis failed)."""

    def __init__(self, on_audio: Callable[[bytes, float], None] | None = None):
        self.on_audio = on_audio
        self.audio: list[bytes] = []
        self.arrivals: list[Arrival] = []
        self.words: list[dict] = []
        self.done: dict | None = None
        self._buf = b""

    def feed(self, data: bytes, t: float) -> None:
        self._buf += data
        while b"\n\n" in self._buf:
            block, self._buf = self._buf.split(b"\n\n", 1)
            self._event(block, t)

    def close(self) -> None:
        if self._buf.strip():
            self._event(self._buf, time.perf_counter())
        self._buf = b""

    def _event(self, block: bytes, t: float) -> None:
        payload = b"".join(line[5:].strip() for line in block.splitlines()
                           if line.startswith(b"data:"))
        if not payload:
            return
        event = json.loads(payload)
        kind = event.get("type")
        if kind == "speech.audio.delta":
            audio = base64.b64decode(event["audio"])
            self.audio.append(audio)
            self.arrivals.append(Arrival(t, len(audio)))
            if self.on_audio is not None:
                self.on_audio(audio, t)
        elif kind == "speech.word":
            self.words.append({k: event[k] for k in ("word", "start", "end", "input_start",
                                                     "input_end") if k in event})
        elif kind == "speech.skipped":
            self.words.append({"skipped": event.get("reason", ""), "text": event.get("text", ""),
                               "input_start": event.get("input_start"),
                               "input_end": event.get("input_end")})
        elif kind == "speech.audio.done":
            self.done = event
        elif kind == "error":
            raise ServerError(200, event.get("error", {}).get("message", str(event)))


def _error_message(body: bytes) -> str:
    try:
        return json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return body[:300].decode("utf-8", "replace")


def to_dict(result: StreamResult) -> dict:
    d = asdict(result)
    d.pop("body")
    return d
