"""Streaming audio encoders: float32 PCM chunks in, bytes ready to send out.

One encoder per response stream. ``encode(chunk)`` returns the bytes the container has
produced so far (possibly none, when a codec is still filling a frame), ``finish()``
flushes the codec and the container. Compressed formats go through PyAV (its wheels
bundle FFmpeg) writing into an in-memory sink, with ``flush_packets`` so every packet
leaves at once; ``wav`` and ``pcm`` are written directly.

Formats (OpenAI's names):

========  =========================  ==============
format    container / codec          content type
========  =========================  ==============
mp3       MPEG layer III (LAME)      audio/mpeg
opus      Ogg / Opus                 audio/ogg
aac       ADTS / AAC-LC              audio/aac
flac      native FLAC                audio/flac
wav       RIFF, PCM s16le, sizes     audio/wav
          0xFFFFFFFF ("unknown
          length": streamed)
pcm       raw s16le, 24 kHz, mono    audio/pcm
========  =========================  ==============

Everything is mono at Kokoro's 24 kHz (all these codecs take 24 kHz as it is).
"""
from __future__ import annotations

import struct

import numpy as np

from labkit.kokoro import SAMPLE_RATE

#: response_format -> content type
CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
FORMATS = tuple(CONTENT_TYPES)

#: response_format -> (PyAV container format, codec, extra muxer options)
_AV_FORMATS = {
    "mp3": ("mp3", "libmp3lame", {}),
    # Ogg pages hold 1 s by default: ask for 20 ms pages so audio leaves as it is encoded
    "opus": ("ogg", "libopus", {"page_duration": "20000"}),
    "aac": ("adts", "aac", {}),
    "flac": ("flac", "flac", {}),
}
#: the 32-bit sizes a streamed WAV header carries when the length is not known yet
UNKNOWN_SIZE = 0xFFFFFFFF


def to_s16(audio: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> int16, clipped (Kokoro's peaks can pass 1.0)."""
    a = np.asarray(audio, dtype=np.float32).ravel()
    return (np.clip(a, -1.0, 1.0) * 32767.0).astype("<i2")


def wav_header(sample_rate: int = SAMPLE_RATE, channels: int = 1, bits: int = 16,
               data_bytes: int = UNKNOWN_SIZE) -> bytes:
    """A 44-byte RIFF/WAVE header. With the default ``data_bytes`` both size fields say
    "unknown length" (0xFFFFFFFF), which players and FFmpeg read as "until the end"."""
    riff = UNKNOWN_SIZE if data_bytes == UNKNOWN_SIZE else min(36 + data_bytes, UNKNOWN_SIZE)
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate,
                                    sample_rate * block, block, bits)
            + b"data" + struct.pack("<I", data_bytes))


class Encoder:
    """Base: ``encode(float32 chunk) -> bytes``, ``finish() -> bytes``."""

    format: str = ""

    def __init__(self, sample_rate: int = SAMPLE_RATE):
        self.sample_rate = sample_rate
        self.samples_in = 0
        self.bytes_out = 0

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    def encode(self, audio: np.ndarray) -> bytes:
        data = self._encode(audio)
        self.samples_in += len(audio)
        self.bytes_out += len(data)
        return data

    def finish(self) -> bytes:
        data = self._finish()
        self.bytes_out += len(data)
        return data

    def close(self) -> None:  # release resources early (a cancelled stream)
        pass

    def _encode(self, audio: np.ndarray) -> bytes:
        raise NotImplementedError

    def _finish(self) -> bytes:
        return b""


class PcmEncoder(Encoder):
    format = "pcm"

    def _encode(self, audio):
        return to_s16(audio).tobytes()


class WavEncoder(PcmEncoder):
    """PCM with a streamed header in front of the first bytes."""

    format = "wav"

    def __init__(self, sample_rate: int = SAMPLE_RATE):
        super().__init__(sample_rate)
        self._header = wav_header(sample_rate)

    def _encode(self, audio):
        data = super()._encode(audio)
        if self._header:
            data, self._header = self._header + data, b""
        return data

    def _finish(self):
        header, self._header = self._header, b""  # an empty stream is still a valid file
        return header


class _Sink:
    """The write-only file PyAV muxes into; ``take()`` empties it."""

    def __init__(self):
        self._parts: list[bytes] = []

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class AvEncoder(Encoder):
    """mp3 / opus / aac / flac through PyAV. PyAV converts our s16 frames to the
    codec's sample format and frame size itself."""

    def __init__(self, fmt: str, sample_rate: int = SAMPLE_RATE):
        import av

        super().__init__(sample_rate)
        self.format = fmt
        container, codec, options = _AV_FORMATS[fmt]
        self._av = av
        self._sink = _Sink()
        self._container = av.open(self._sink, mode="w", format=container,
                                  options={"flush_packets": "1", **options})
        self._stream = self._container.add_stream(codec, rate=sample_rate, layout="mono")
        self._closed = False

    def _mux(self, frame) -> None:
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def _encode(self, audio):
        pcm = to_s16(audio)
        if len(pcm):
            frame = self._av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
            frame.sample_rate = self.sample_rate
            frame.pts = self.samples_in
            frame.time_base = _fraction(1, self.sample_rate)
            self._mux(frame)
        return self._sink.take()

    def _finish(self):
        if self._closed:
            return b""
        self._mux(None)
        self._container.close()
        self._closed = True
        return self._sink.take()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - a half-written stream we are dropping anyway
                pass


def _fraction(num: int, den: int):
    from fractions import Fraction

    return Fraction(num, den)


def make_encoder(fmt: str, sample_rate: int = SAMPLE_RATE) -> Encoder:
    """A fresh encoder for one response stream."""
    if fmt == "pcm":
        return PcmEncoder(sample_rate)
    if fmt == "wav":
        return WavEncoder(sample_rate)
    if fmt in _AV_FORMATS:
        return AvEncoder(fmt, sample_rate)
    raise ValueError(f"response_format {fmt!r}: allowed are {', '.join(FORMATS)}")
