"""The phrase/primer cache: synthesized pieces kept for repeats.

It sits at the engine, under the pipeline: a piece is keyed by its phoneme tokens (which
carry the text and the language), the voice, the speed and the model variant. A repeated
short phrase, and the primer (first piece) of a repeated long text, come back at once,
while the pipeline stays exactly the one the lab measures. Bounded by count and by
bytes, least recently used first out.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

import numpy as np

from labkit.engine.runtime import Engine, Synthesis
from labkit.engine.split_runtime import SplitEngine


class PieceCache:
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


class PieceCaching:
    """An engine (labkit's Engine or SplitEngine, after this in the bases) with
    :class:`PieceCache` in front of ``run_tokens`` (which ``synthesize_phonemes`` calls).
    ``on_lookup(hit: bool)`` feeds the metrics."""

    def __init__(self, *args, cache: PieceCache | None = None,
                 on_lookup: Callable[[bool], None] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.cache = cache if cache is not None else PieceCache()
        self.on_lookup = on_lookup
        #: off during warm-up, so the warm-up runs really run
        self.use_cache = True
        self._no_reads = 0
        self._count_lock = threading.Lock()

    def skip_reads(self, on: bool) -> None:
        """While any request that asked for ``Cache-Control: no-cache`` runs, pieces are
        synthesized (and stored) rather than read from the cache. Counted, so
        overlapping requests only ever get fewer hits, never wrong audio."""
        with self._count_lock:
            self._no_reads += 1 if on else -1

    def run_tokens(self, tokens: list[int], voice: str, speed: float = 1.0,
                   run_options=None) -> Synthesis:
        if not self.use_cache:
            return super().run_tokens(tokens, voice, speed, run_options)
        # the engine's kind too: a bucketed split graph is not bit-identical to the whole one
        key = (type(self).__name__, self.variant, voice, round(float(speed), 4), tuple(tokens))
        audio = self.cache.get(key) if self._no_reads == 0 else None
        if self.on_lookup is not None:
            self.on_lookup(audio is not None)
        if audio is not None:  # a copy: the pipeline may shape its chunks in place
            return Synthesis(audio.copy(), len(tokens), 0.0, self.cache.durations(key))
        syn = super().run_tokens(tokens, voice, speed, run_options)
        self.cache.put(key, syn.audio, syn.durations)
        return syn


class CachingEngine(PieceCaching, Engine):
    """labkit's one-session Engine behind the piece cache."""


class CachingSplitEngine(PieceCaching, SplitEngine):
    """The split engine (part A, then part B; ``split.enabled``) behind the piece cache."""
