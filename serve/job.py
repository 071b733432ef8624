"""One speech synthesis in a worker thread, handing encoded bytes to the event loop.

The thread runs ``StreamingSynthesizer.open_stream(text, voicing, cancel=...)`` (text
clean-up, G2P and synthesis all happen here, off the event loop) and the
response's encoder, and puts ``("audio", bytes, chunk)``, then ``("end", tail)`` or
``("error", exc)`` on an asyncio queue. Synthesis is not held back by a slow client: it
runs at full speed, so the synthesis slot frees as early as it can. When the client goes
away the response calls :meth:`SpeechJob.stop`: the pipeline aborts the piece it is
synthesizing (``pipeline.terminate_on_cancel``), the thread ends without encoding the rest
and the synthesis slot is free again well under a second later.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Callable

from labkit.engine.pipeline import StreamingSynthesizer
from labkit.engine.chunks import StreamStats
from labkit.engine.voices import Voicing

from .encoders import Encoder

log = logging.getLogger("serve")


class SpeechJob:
    def __init__(self, synth: StreamingSynthesizer, text: str, voicing: Voicing,
                 encoder: Encoder, loop: asyncio.AbstractEventLoop,
                 on_finished: Callable[["SpeechJob"], None] | None = None,
                 inline: bool | None = None, read_cache: bool = True):
        self.synth = synth
        #: inline pronunciation obeyed (None: the config's text.inline_phonemes)
        self.inline = inline
        #: False: every piece synthesized afresh (``Cache-Control: no-cache``)
        self.read_cache = read_cache
        self.text = text
        #: the voice, language and speed, checked once (labkit.engine.voices.voicing)
        self.voicing = voicing
        self.encoder = encoder
        self.loop = loop
        self.on_finished = on_finished
        self.cancel = threading.Event()
        self._stream = None
        self._stream_lock = threading.Lock()
        #: the sanitized text and its map back to the input (set when the stream opens)
        self.sanitized = None
        self.queue: asyncio.Queue = asyncio.Queue()
        # what it did (read after it finished)
        self.pieces = 0
        self.tokens = 0
        self.audio_seconds = 0.0
        self.synth_seconds = 0.0
        self.completed = False
        self.cancelled = False
        self.error: BaseException | None = None
        #: the pipeline's stats of this stream (retries, failed attempts)
        self.stats: StreamStats | None = None
        #: words of this request's text misaki did not know (read by espeak), or that
        #: nothing could read (the stream's counts: exact while one request runs at a time)
        self.fallback_words = 0
        self.unknown_words = 0
        self._thread = threading.Thread(target=self._run, name="kokoro-speech", daemon=True)

    def start(self) -> "SpeechJob":
        self._thread.start()
        return self

    def stop(self) -> None:
        """The client went away: stop now, aborting the piece in flight (any thread)."""
        self.cancel.set()
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            stream.cancel()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def rtf(self) -> float | None:
        return self.synth_seconds / self.audio_seconds if self.audio_seconds > 0 else None

    def _emit(self, *item) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone (server shutting down)
            self.cancel.set()

    def _run(self) -> None:
        t0 = time.perf_counter()
        stream = None
        try:
            stream = self.synth.open_stream(self.text, self.voicing, cancel=self.cancel,
                                            inline=self.inline, read_cache=self.read_cache)
            self.stats = stream.stats
            self.sanitized = stream.sanitized
            with self._stream_lock:
                self._stream = stream
            if self.cancel.is_set():  # stopped while the stream was being opened
                stream.cancel()
            try:
                for chunk in stream:
                    if self.cancel.is_set():
                        break
                    data = self.encoder.encode(chunk.audio)
                    self.pieces += 1
                    self.tokens += len(chunk.phonemes)
                    self.audio_seconds += chunk.duration
                    self.synth_seconds += chunk.synth_seconds
                    self._emit("audio", data, chunk)
            finally:
                stream.close()
            if self.cancel.is_set():
                self.cancelled = True
                self.encoder.close()
            else:
                tail = self.encoder.finish()
                self.completed = True
                self._emit("end", tail, None)
        except BaseException as exc:  # noqa: BLE001 - handed to the response, which decides
            self.error = exc
            self.encoder.close()
            self._emit("error", exc, None)
        finally:
            self.wall_seconds = time.perf_counter() - t0
            if stream is not None:
                self.fallback_words = stream.fallback_words
                self.unknown_words = stream.unknown_words
            if self.on_finished is not None:
                try:
                    self.on_finished(self)
                except Exception:  # noqa: BLE001
                    log.exception("speech job clean-up failed")
