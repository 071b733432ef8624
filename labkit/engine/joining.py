"""Joining synthesized pieces into one stream without clicks, odd pauses or gaps.

Each piece comes out of Kokoro with its own lead-in and tail of near-silence whose length
has nothing to do with the text around it. The joiner:

1. trims that silence (frames quieter than ``trim_top_db`` below the piece's peak), keeping
   ``trim_keep_ms`` so consonant onsets and releases survive;
2. after a piece that ended at punctuation, adds a pause sized by it (paragraph >
   sentence > clause), with a short fade so the cut edge does not click;
3. where pieces meet mid-sentence (a cut between words), overlaps the last
   ``crossfade_ms`` of one with the start of the next using an equal-power crossfade
   (cos/sin curves, so the summed power stays constant across the overlap).

For streaming, the joiner holds back only the crossfade tail of a piece that ended
mid-sentence (10 ms by default) until the next piece arrives.

:func:`continuity` measures joins over each seam's whole window (the crossfade overlap;
for a pause, from the fade-out before the silence to the fade-in after it): the largest
sample-to-sample jump in it relative to the jumps of the audio on either side. A click is
a jump far above its neighbourhood, wherever in the window it falls.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from labkit.config import ChunkingConfig
from labkit.kokoro import SAMPLE_RATE

_FADE_MS = 3.0


def pause_seconds(boundary: str, cfg: ChunkingConfig) -> float:
    """The silence after a piece that ended with ``boundary`` (0 for mid-sentence cuts)."""
    return {"paragraph": cfg.paragraph_pause_ms, "sentence": cfg.sentence_pause_ms,
            "clause": cfg.clause_pause_ms}.get(boundary, 0.0) / 1000.0


def trim_bounds(audio: np.ndarray, top_db: float = 40.0, keep_ms: float = 15.0,
                frame_ms: float = 5.0, sample_rate: int = SAMPLE_RATE) -> tuple[int, int]:
    """(start, end) of the audible part: frames whose RMS is within ``top_db`` of the
    loudest frame, widened by ``keep_ms`` on both sides."""
    n = len(audio)
    frame = max(1, int(sample_rate * frame_ms / 1000))
    if n < frame:
        return 0, n
    m = n // frame
    rms = np.sqrt(np.mean(np.square(audio[:m * frame].reshape(m, frame), dtype=np.float64), axis=1))
    peak = rms.max()
    if peak <= 0:
        return 0, 0
    loud = np.nonzero(rms >= peak * 10 ** (-top_db / 20))[0]
    keep = int(sample_rate * keep_ms / 1000)
    start = max(0, loud[0] * frame - keep)
    end = min(n, (loud[-1] + 1) * frame + keep)
    return int(start), int(end)


def kept_bounds(audio: np.ndarray, cfg: ChunkingConfig, seamless_start: bool = False,
                seamless_end: bool = False) -> tuple[int, int]:
    """(start, end) of what the joiner keeps of a piece: its audible part when edges are
    trimmed, except at an edge that continues a neighbour without a gap (a window of a
    sentence's frames, labkit.engine.prosody): that edge stays as it is."""
    n = len(audio)
    start, end = (trim_bounds(audio, cfg.trim_top_db, cfg.trim_keep_ms)
                  if n and cfg.trim_silence else (0, n))
    return (0 if seamless_start else start), (n if seamless_end else end)


def joined_boundary(boundary: str, seamless_end: bool) -> str:
    """How the joiner treats the end of a piece: a seamless end (a window cut inside a
    sentence) crossfades into the next piece like a cut between words, with no pause:
    the model's own pause for any punctuation is in the frames."""
    return "word" if seamless_end else boundary


def playable_seconds(audio: np.ndarray, boundary: str, cfg: ChunkingConfig,
                     seamless_start: bool = False, seamless_end: bool = False) -> float:
    """How long a synthesized piece will play once joined: its audible part (when edges
    are trimmed) plus the pause after it. The model's raw output has silence at both
    ends; counting it as audio ahead of the listener overstated the buffer by ~0.1-0.3 s
    a piece, enough to start a piece that then arrived late."""
    start, end = kept_bounds(audio, cfg, seamless_start, seamless_end)
    return (end - start) / SAMPLE_RATE + pause_seconds(joined_boundary(boundary, seamless_end), cfg)


def trim(audio: np.ndarray, top_db: float = 40.0, keep_ms: float = 15.0) -> np.ndarray:
    start, end = trim_bounds(audio, top_db, keep_ms)
    return audio[start:end]


def _ramp(n: int) -> np.ndarray:
    """Quarter-sine 0 -> 1 over n samples (the equal-power fade-in curve)."""
    return np.sin(0.5 * np.pi * (np.arange(n, dtype=np.float32) + 0.5) / n).astype(np.float32)


def fade(audio: np.ndarray, fade_in: bool, ms: float = _FADE_MS) -> np.ndarray:
    n = min(len(audio), int(SAMPLE_RATE * ms / 1000))
    if n == 0:
        return audio
    out = audio.copy()
    if fade_in:
        out[:n] *= _ramp(n)
    else:
        out[-n:] *= _ramp(n)[::-1]
    return out


def crossfade(tail: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Equal-power crossfade of two equal-length segments (cos^2 + sin^2 = 1)."""
    n = len(tail)
    if n == 0:
        return tail
    up = _ramp(n)
    down = np.sqrt(np.clip(1.0 - up * up, 0.0, 1.0)).astype(np.float32)
    return tail * down + head * up


@dataclass
class Seam:
    #: sample position in the joined stream where the second piece starts
    position: int
    #: "crossfade" (mid-sentence) or "pause" (after punctuation; pause_s of silence)
    kind: str
    pause_s: float = 0.0
    #: index of the piece after the seam
    piece: int = 0


@dataclass
class Joiner:
    """Streaming joiner: push each piece's audio in text order, get what can play now."""

    cfg: ChunkingConfig = field(default_factory=ChunkingConfig)
    seams: list[Seam] = field(default_factory=list)
    emitted: int = 0
    _held: np.ndarray | None = None
    _count: int = 0
    #: (start, end) of the last pushed piece's raw audio that was kept after the trim
    last_trim: tuple[int, int] = (0, 0)

    def push(self, audio: np.ndarray, boundary: str, is_last: bool, seamless_start: bool = False,
             seamless_end: bool = False) -> np.ndarray:
        """Audio for this piece (and the held crossfade tail of the previous one).
        ``seamless_start`` / ``seamless_end``: that edge continues the neighbouring piece
        sample for sample (:func:`kept_bounds`, :func:`joined_boundary`)."""
        cfg = self.cfg
        boundary = joined_boundary(boundary, seamless_end)
        a = np.asarray(audio, dtype=np.float32)
        start, end = kept_bounds(a, cfg, seamless_start, seamless_end)
        a = a[start:end]
        self.last_trim = (start, end)
        parts: list[np.ndarray] = []
        if self._held is not None:
            held = self._held
            self._held = None
            n = min(len(held), len(a))
            # where the next piece is shorter than the overlap, what is left of the tail fades out
            parts.append(crossfade(held[:n], a[:n]))
            if n < len(held):
                parts.append(fade(held[n:], fade_in=False))
            a = a[n:]
        elif self._count:
            a = fade(a, fade_in=True)
        self._count += 1
        if is_last:
            parts.append(fade(a, fade_in=False))
        elif boundary in ("word", "split-word") and cfg.crossfade_ms > 0:
            n = min(len(a), int(SAMPLE_RATE * cfg.crossfade_ms / 1000))
            parts.append(a[:len(a) - n])
            self._held = a[len(a) - n:].copy()
            position = self.emitted + sum(len(p) for p in parts)
            self.seams.append(Seam(position, "crossfade", 0.0, self._count))
        else:
            pause = pause_seconds(boundary, cfg)
            parts.append(fade(a, fade_in=False))
            parts.append(np.zeros(int(round(pause * SAMPLE_RATE)), np.float32))
            position = self.emitted + sum(len(p) for p in parts)
            self.seams.append(Seam(position, "pause", pause, self._count))
        out = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        self.emitted += len(out)
        return out

    def flush(self) -> np.ndarray:
        """What is still held (only after a stream ended early)."""
        held, self._held = self._held, None
        if held is None:
            return np.zeros(0, np.float32)
        out = fade(held, fade_in=False)
        self.emitted += len(out)
        return out


def join(pieces: list[tuple[np.ndarray, str]], cfg: ChunkingConfig | None = None) -> tuple[np.ndarray, list[Seam]]:
    """Join (audio, boundary) pairs at once: the joined audio and its seams."""
    joiner = Joiner(cfg or ChunkingConfig())
    out = [joiner.push(a, b, i == len(pieces) - 1) for i, (a, b) in enumerate(pieces)]
    out.append(joiner.flush())
    return np.concatenate(out) if out else np.zeros(0, np.float32), joiner.seams


# -- measures ------------------------------------------------------------------------------
@dataclass
class SeamCheck:
    position: int
    #: the largest |x[n] - x[n-1]| in the seam's window
    jump: float
    #: 99th percentile of |x[n] - x[n-1]| of the audio either side of the window
    local: float
    #: jump / max(local, floor): above ~2 is a click you can hear
    ratio: float
    #: [start, end) of the window measured
    window: tuple[int, int] = (0, 0)


def seam_window(seam: Seam | int, crossfade_ms: float = 10.0) -> tuple[int, int]:
    """[start, end) of the samples a join touched: a crossfade's overlap (it starts at
    the seam), or a pause from its fade-out to the next piece's fade-in. A bare position
    is a window of one sample."""
    if not isinstance(seam, Seam):
        return int(seam), int(seam)
    fade_n = int(SAMPLE_RATE * _FADE_MS / 1000)
    if seam.kind == "crossfade":
        return seam.position, seam.position + int(SAMPLE_RATE * crossfade_ms / 1000)
    pause = int(round(seam.pause_s * SAMPLE_RATE))
    return seam.position - pause - fade_n, seam.position + fade_n


def continuity(audio: np.ndarray, seams: list, window_ms: float = 20.0,
               floor: float = 1e-3, crossfade_ms: float = 10.0) -> list[SeamCheck]:
    """The discontinuity at each seam (a :class:`Seam`, or a bare sample position): the
    largest sample-to-sample jump inside its window (:func:`seam_window`) relative to the
    audio's own movement in ``window_ms`` on either side of it. A click is a jump far above
    its neighbourhood. ``floor`` keeps a neighbourhood of silence from dividing by ~0."""
    x = np.asarray(audio, dtype=np.float64)
    d = np.abs(np.diff(x))  # d[k] = |x[k + 1] - x[k]|
    w = int(SAMPLE_RATE * window_ms / 1000)
    out = []
    for seam in seams:
        lo, hi = seam_window(seam, crossfade_ms)
        p = seam.position if isinstance(seam, Seam) else int(seam)
        if p <= 0 or p >= len(x):
            continue
        lo, hi = max(1, lo), min(len(x) - 1, hi)
        jumps = d[max(0, lo - 4):min(len(d), hi + 3)]  # the window and the samples at its edges
        jump = float(jumps.max()) if len(jumps) else 0.0
        around = np.concatenate([d[max(0, lo - 4 - w):max(0, lo - 4)], d[hi + 3:hi + 3 + w]])
        local = float(np.percentile(around, 99)) if len(around) else 0.0
        out.append(SeamCheck(int(p), jump, local, jump / max(local, floor), (int(lo), int(hi))))
    return out


def silence_runs(audio: np.ndarray, top_db: float = 40.0, min_ms: float = 30.0,
                 frame_ms: float = 5.0) -> list[tuple[float, float]]:
    """(start_s, length_s) of the silent stretches inside the audio (pause lengths)."""
    frame = int(SAMPLE_RATE * frame_ms / 1000)
    m = len(audio) // frame
    if m == 0:
        return []
    rms = np.sqrt(np.mean(np.square(np.asarray(audio[:m * frame], np.float64).reshape(m, frame)), axis=1))
    quiet = rms < rms.max() * 10 ** (-top_db / 20)
    runs, start = [], None
    for k, q in enumerate(quiet):
        if q and start is None:
            start = k
        elif not q and start is not None:
            if start > 0 and (k - start) * frame_ms >= min_ms:
                runs.append((start * frame_ms / 1000, (k - start) * frame_ms / 1000))
            start = None
    return runs
