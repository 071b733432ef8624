"""The piece cache: the audio of synthesized pieces kept for repeats (a served phrase, the
primer of a repeated text).

The synthesizer consults it around the one call that makes a piece's audio
(labkit.engine.stream: a whole piece's run of the model; labkit.engine.prosody: part B
over a window of a sentence's frames), through :meth:`PieceCache.through`. A piece is keyed
by what determines its audio (:func:`piece_key`): the engine's kind (a bucketed split
graph is not bit-identical to the whole one), the model variant, the voice, the speed, the
phoneme tokens (which carry the text and the language) and, for a window, its context's
tokens and its frame range. Bounded by count and by bytes, least recently used first out.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np

#: what makes a piece's audio, and what the cache gives back: (audio, compute seconds,
#: per-token frame counts or None); seconds are 0.0 for audio read from the cache
Made = tuple[np.ndarray, float, "np.ndarray | None"]


def piece_key(engine: Any, voice: str, speed: float, tokens: Sequence[int],
              window: tuple | None = None) -> tuple:
    """The key of a piece's audio: the engine's kind and variant, the voice, the speed,
    the tokens and (a window of a context: ``tokens`` are the context's) the frame range
    followed by whatever else shaped the context's part A (labkit.engine.prosody: an
    opening prefix's style row, a phase carried from it)."""
    return (type(engine).__name__, getattr(engine, "variant", None), voice,
            round(float(speed), 4), tuple(tokens), window)


class PieceCache:
    """Pieces' audio (and durations) by :func:`piece_key`, least recently used out first;
    ``hits`` and ``misses`` count the lookups."""

    def __init__(self, max_items: int = 64, max_bytes: int = 64 << 20):
        self.max_items = max(0, int(max_items))
        self.max_bytes = max(0, int(max_bytes))
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        #: the model's per-token durations of a cached piece (its word timings), when it had them
        self._durations: dict[tuple, np.ndarray] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def durations(self, key: tuple) -> np.ndarray | None:
        """The durations stored with ``key``'s audio (None without them)."""
        with self._lock:
            return self._durations.get(key)

    def get(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            audio = self._items.get(key)
            if audio is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return audio

    def put(self, key: tuple, audio: np.ndarray, durations: np.ndarray | None = None) -> None:
        size = audio.nbytes
        if self.max_items == 0 or size > self.max_bytes:
            return
        audio = audio.copy()
        audio.setflags(write=False)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = audio
            self._bytes += size
            self._durations.pop(key, None)
            if durations is not None:
                self._durations[key] = np.array(durations, copy=True)
            while len(self._items) > self.max_items or self._bytes > self.max_bytes:
                gone, dropped = self._items.popitem(last=False)
                self._durations.pop(gone, None)
                self._bytes -= dropped.nbytes

    def through(self, key: tuple, make: Callable[[], Made], read: bool = True) -> Made:
        """The audio under ``key``, else ``make()``'s, stored. ``read`` False (a request
        that asked for no cache): made and stored, never read; counted as a miss."""
        audio = self.get(key) if read else None
        if audio is None:
            if not read:
                with self._lock:
                    self.misses += 1
            made = make()
            self.put(key, made[0], made[2])
            return made
        # a copy: the stream shapes its chunks in place
        return audio.copy(), 0.0, self.durations(key)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._durations.clear()
            self._bytes = 0
