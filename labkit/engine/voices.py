"""Voices: the voice bank (the 54 packs and blends of them), how a voice spec is read, and
the one check of how a text is voiced (voice, language, speed) before any synthesis.

A voice spec is a Kokoro id (``af_heart``) or a weighted blend (``af_bella(2)+af_sky(1)``),
read in one pass within the caps below (:func:`split_blend`, :func:`parse_blend`);
:class:`VoiceBank` resolves a blend to one (510, 1, 256) pack and keeps recent ones.
:func:`voicing` checks a request's voice, language and speed once and returns them as a
:class:`Voicing`, which the synthesizer then takes as it is (serve maps the errors it
raises, :class:`VoiceError` and :class:`LanguageError`, to its 400s).
"""
from __future__ import annotations

import difflib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labkit.engine import assets
from labkit.engine.languages import VOICE_LANGS, normalize_lang, unavailable
from labkit.kokoro import SPEED_RANGE

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


# -- how a text is voiced: checked once --------------------------------------------------
class LanguageError(ValueError):
    """A language this engine does not know, or cannot read here (``unavailable``: the
    reason names what is missing)."""

    def __init__(self, message: str, lang: str | None = None, unavailable: bool = False):
        super().__init__(message)
        self.lang = lang
        self.unavailable = unavailable


@dataclass(frozen=True)
class Voicing:
    """How a text is voiced, checked: a voice the bank holds (id or blend, as written), the
    language it is read in (normalized, readable here) and the speed (within Kokoro's)."""

    voice: str
    lang: str
    speed: float


def voicing(bank: VoiceBank | None, voice: str, speed: float, lang: str | None = None,
            default_lang: str | None = None) -> Voicing:
    """Check ``voice``, the language and ``speed`` once, in that order, and return them as
    one :class:`Voicing`. The language is ``lang`` when given, else the voice's own (its
    first letter, labkit.engine.languages.VOICE_LANGS), else ``default_lang``, else en-us.
    Raises :class:`VoiceError` (malformed or unknown voice; nothing resolved or kept),
    :class:`LanguageError` (unknown language, or one without its G2P here) and
    ValueError (speed out of range). ``bank`` None: the voice is not checked."""
    if bank is not None:
        bank.check(voice)  # an unknown voice fails here (close matches named)
    first = voice.split("+")[0].strip()[:1].lower()
    chosen = lang or (None if first in VOICE_LANGS else default_lang)
    try:
        read_as = normalize_lang(chosen, voice)
    except ValueError as exc:
        raise LanguageError(str(exc)) from None
    why = unavailable(read_as)
    if why:
        raise LanguageError(f"language {read_as} (voice {voice[:64]!r}) cannot be read here: {why}",
                            read_as, unavailable=True)
    speed = float(speed)
    lo, hi = SPEED_RANGE
    if not lo <= speed <= hi:
        raise ValueError(f"speed {speed}: Kokoro supports {lo} to {hi}")
    return Voicing(voice, read_as, speed)
