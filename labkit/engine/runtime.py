"""The Engine: one ORT session plus the voice bank, phonemes in, audio out.

A graph edited by labkit.optimize.durations has a second output, ``durations`` int64
[n + 2] (frames per token, pads included), which :class:`Synthesis` carries when the
session has it (word timings).

Sessions come from :mod:`labkit.engine.graph_cache` (through the cache of optimized graphs
where the config asks for it); inputs from :func:`labkit.engine.sessions.kokoro_feeds`.
"""
from __future__ import annotations

import difflib
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from labkit.config import LabConfig, SessionConfig
from labkit.engine import assets, words
from labkit.engine.graph_cache import make_session, ort_cache_dir
from labkit.engine.phonemized import clean_phonemes, tokenize
from labkit.kokoro import MAX_TOKENS, SAMPLE_RATE, SPEED_RANGE
from labkit.engine.sessions import kokoro_feeds, style_row

#: the optional output with per-token frame counts (labkit.optimize.durations.OUTPUT)
DURATIONS = "durations"

# -- voices --------------------------------------------------------------------------
#: caps on a voice spec, checked before any other work (a spec is read in linear time)
MAX_SPEC_CHARS = 256
MAX_BLEND_TERMS = 8
MAX_WEIGHT_DIGITS = 6  # digits on each side of the decimal point
#: blends kept resolved, least recently used out first (one pack is 510 x 256 floats, ~510 kB)
BLEND_CACHE_ITEMS = 16
BLEND_CACHE_BYTES = 16 << 20

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_DIGITS = frozenset("0123456789")


class VoiceError(ValueError):
    """Unknown voice or malformed blend; the message names close matches."""


def _short(s: str, n: int = 40) -> str:
    return repr(s if len(s) <= n else s[:n] + "...")


def split_blend(spec: str) -> list[tuple[str, str | None]]:
    """The terms of a voice spec as written: ``"af_bella(2) + nova"`` ->
    [("af_bella", "2"), ("nova", None)]. Checks the shape only (names are letters,
    digits and ``_``; a weight is digits with at most one ``.``), in one pass over at
    most :data:`MAX_SPEC_CHARS` characters and :data:`MAX_BLEND_TERMS` terms."""
    if not isinstance(spec, str):
        raise VoiceError(f"a voice must be a string, got {type(spec).__name__}")
    if len(spec) > MAX_SPEC_CHARS:
        raise VoiceError(f"voice spec is {len(spec):,} characters; the limit is {MAX_SPEC_CHARS}")
    if spec.count("+") >= MAX_BLEND_TERMS:
        raise VoiceError(f"voice {_short(spec)}: a blend takes at most {MAX_BLEND_TERMS} voices")
    terms = []
    for part in spec.split("+"):
        term = part.strip()
        name_end = 0
        while name_end < len(term) and term[name_end] in _NAME_CHARS:
            name_end += 1
        name, rest = term[:name_end], term[name_end:].strip()
        weight = None
        if rest.startswith("(") and rest.endswith(")"):
            weight = rest[1:-1].strip()
            whole, dot, frac = weight.partition(".")
            if not (whole or frac) or not set(whole + frac) <= _DIGITS or "." in frac:
                weight = None
                rest = "?"
            elif len(whole) > MAX_WEIGHT_DIGITS or len(frac) > MAX_WEIGHT_DIGITS:
                raise VoiceError(f"voice {_short(spec)}: weight {_short(weight, 20)} has too many "
                                 f"digits (at most {MAX_WEIGHT_DIGITS} on each side of the point)")
            else:
                rest = ""
        if not name or not name[0].isalpha() or rest:
            raise VoiceError(f"voice {_short(spec)}: cannot read {_short(term)}; expected an id "
                             "like af_heart or a blend like af_bella(2)+af_sky(1)")
        terms.append((name, weight))
    return terms


def parse_blend(spec: str) -> list[tuple[str, float]]:
    """``af_bella(2)+af_sky(1)`` -> [("af_bella", 2/3), ("af_sky", 1/3)] (weights normalised).
    A plain id is a blend of one. Every weight is finite and more than 0."""
    terms = []
    for name, text in split_blend(spec):
        if not (name[:2].isalpha() and name[:2].islower() and name[2:3] == "_" and len(name) > 3
                and name.islower()):
            raise VoiceError(f"voice {_short(spec)}: cannot read {_short(name)}; Kokoro ids look "
                             "like af_heart (language, gender, _, name)")
        weight = 1.0 if text is None else float(text)
        if not math.isfinite(weight) or weight <= 0:
            raise VoiceError(f"voice {_short(spec)}: weight {text} of {name}: blend weights must "
                             "be more than 0")
        terms.append((name, weight))
    total = math.fsum(w for _, w in terms)
    if not math.isfinite(total) or total <= 0:
        raise VoiceError(f"voice {_short(spec)}: blend weights must add up to more than 0")
    return [(name, w / total) for name, w in terms]


def blend_key(terms: list[tuple[str, float]]) -> tuple:
    """One key for every spelling of the same blend (``a(2)+b(1)`` == ``a(4)+b(2)``)."""
    merged: dict[str, float] = {}
    for name, w in terms:
        merged[name] = merged.get(name, 0.0) + w
    return tuple(sorted((name, round(w, 6)) for name, w in merged.items()))


class VoiceBank:
    """The 54 voice packs, and blends of them resolved to one (510, 1, 256) pack.

    Resolved blends are kept in an LRU bounded by count and bytes, keyed by the blend
    (not its spelling); :meth:`check` validates a spec without resolving or keeping it."""

    def __init__(self, voices: dict[str, np.ndarray], max_blends: int = BLEND_CACHE_ITEMS,
                 max_blend_bytes: int = BLEND_CACHE_BYTES):
        self.voices = voices
        self.max_blends = max(0, int(max_blends))
        self.max_blend_bytes = max(0, int(max_blend_bytes))
        self._blends: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._blend_bytes = 0
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path) -> "VoiceBank":
        return cls(assets.load_voices(assets.require(Path(path), "voices file")))

    @property
    def ids(self) -> list[str]:
        return sorted(self.voices)

    def close_matches(self, name: str, n: int = 3) -> list[str]:
        return difflib.get_close_matches(name[:MAX_SPEC_CHARS], self.ids, n=n, cutoff=0.5)

    def check(self, spec: str) -> list[tuple[str, float]]:
        """The blend's normalised terms; raises VoiceError for a malformed spec or an
        unknown voice (close matches named). Keeps nothing."""
        if spec in self.voices:
            return [(spec, 1.0)]
        terms = parse_blend(spec)
        for name, _ in terms:
            if name not in self.voices:
                close = self.close_matches(name)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise VoiceError(f"unknown voice {name!r}{hint}")
        return terms

    def pack(self, spec: str) -> np.ndarray:
        if spec in self.voices:
            return self.voices[spec]
        terms = self.check(spec)
        key = blend_key(terms)
        with self._lock:
            hit = self._blends.get(key)
            if hit is not None:
                self._blends.move_to_end(key)
                return hit
        pack = sum(w * self.voices[name] for name, w in terms).astype(np.float32)
        pack.setflags(write=False)
        with self._lock:
            if key not in self._blends and self.max_blends and pack.nbytes <= self.max_blend_bytes:
                self._blends[key] = pack
                self._blend_bytes += pack.nbytes
                while (len(self._blends) > self.max_blends
                       or self._blend_bytes > self.max_blend_bytes):
                    _, old = self._blends.popitem(last=False)
                    self._blend_bytes -= old.nbytes
        return pack

    @property
    def blend_cache(self) -> dict[str, int]:
        return {"items": len(self._blends), "bytes": self._blend_bytes}


# -- synthesis -------------------------------------------------------------------------
@dataclass
class Synthesis:
    audio: np.ndarray  # float32 mono, 24 kHz
    tokens: int
    seconds: float  # compute time
    #: frames per token [pad, tokens..., pad] when the model outputs them, else None
    durations: np.ndarray | None = None

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    @property
    def rtf(self) -> float:
        return self.seconds / max(self.duration, 1e-9)


def check_call(tokens: list[int], speed: float) -> None:
    """What one Kokoro call accepts: 1..MAX_TOKENS phoneme tokens, a speed in SPEED_RANGE."""
    if not tokens:
        raise ValueError("nothing to synthesize: no phoneme tokens")
    if len(tokens) > MAX_TOKENS:
        raise ValueError(f"{len(tokens)} tokens: Kokoro takes at most {MAX_TOKENS} per call; "
                         "chunk the text first (labkit.engine.chunking)")
    lo, hi = SPEED_RANGE
    if not lo <= float(speed) <= hi:
        raise ValueError(f"speed {speed}: Kokoro supports {lo} to {hi}")


def timed_model(cfg: LabConfig, variant: str | None = None) -> Path:
    """The model file of ``variant``: its copy with the durations output when built
    (labkit.optimize.durations.ensure, `labkit assets --provision`: the same audio, bit
    for bit, plus word timings), else the model itself."""
    model = assets.model_path(cfg, variant or cfg.variant)
    timed = words.timed_model_path(model, words.timed_cache_dir(cfg)) if model.exists() else None
    return timed if timed is not None and timed.exists() else model


class Engine:
    """One ORT session plus the voice bank: phonemes in, audio out. Thread-safe."""

    def __init__(self, cfg: LabConfig, variant: str | None = None,
                 session: SessionConfig | None = None, voices: VoiceBank | None = None):
        variant = variant or cfg.variant
        model = timed_model(cfg, variant)
        t0 = time.perf_counter()
        sess = make_session(model, session or cfg.session, cache_dir=ort_cache_dir(cfg))
        self._setup(cfg, variant, model, sess, time.perf_counter() - t0, voices)

    @classmethod
    def from_session(cls, cfg: LabConfig, session: ort.InferenceSession, model_path: str | Path,
                     load_seconds: float = 0.0, voices: VoiceBank | None = None,
                     variant: str | None = None) -> "Engine":
        """An Engine around a session made elsewhere (e.g. with verbose logging)."""
        eng = cls.__new__(cls)
        eng._setup(cfg, variant or str(model_path), Path(model_path), session, load_seconds, voices)
        return eng

    def _setup(self, cfg, variant, model_path, session, load_seconds, voices) -> None:
        self.cfg = cfg
        self.variant = variant
        self.model_path = Path(model_path)
        self.session = session
        self.load_seconds = load_seconds
        self.voices = voices or VoiceBank.load(assets.voices_path(cfg))
        self._lock = threading.Lock()
        self._input_names = {i.name for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        #: index of the ``durations`` output (labkit.optimize.durations), None without it
        self.durations_index = outputs.index(DURATIONS) if DURATIONS in outputs else None

    def style(self, voice: str, n_tokens: int) -> np.ndarray:
        return style_row(self.voices.pack(voice), n_tokens)

    def run_tokens(self, tokens: list[int], voice: str, speed: float = 1.0,
                   run_options: ort.RunOptions | None = None) -> Synthesis:
        """``run_options``: ORT's per-run options; setting its ``terminate`` from another
        thread aborts this run (it raises), which is how a stream is cancelled mid-piece."""
        check_call(tokens, speed)
        feeds = kokoro_feeds(tokens, self.style(voice, len(tokens)), speed, names=self._input_names)
        t0 = time.perf_counter()
        with self._lock:
            out = self.session.run(None, feeds, run_options)
        seconds = time.perf_counter() - t0
        audio = np.asarray(out[0], dtype=np.float32).ravel()
        durations = (None if self.durations_index is None
                     else np.asarray(out[self.durations_index], dtype=np.int64).ravel())
        return Synthesis(audio, len(tokens), seconds, durations)

    def synthesize_phonemes(self, phonemes: str, voice: str | None = None,
                            speed: float | None = None,
                            run_options: ort.RunOptions | None = None) -> Synthesis:
        cleaned, _ = clean_phonemes(phonemes)
        return self.run_tokens(tokenize(cleaned), voice or self.cfg.voice,
                               self.cfg.speed if speed is None else speed, run_options)

    def warm_up(self, phonemes: str = "həlˈO wˈɜɹld.", repeats: int = 2) -> float:
        """The first runs of a new session are much slower than later ones; pay it now."""
        t0 = time.perf_counter()
        for _ in range(repeats):
            self.synthesize_phonemes(phonemes)
        return time.perf_counter() - t0
