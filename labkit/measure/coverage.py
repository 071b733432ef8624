"""Words checked in the audio: does every word's span hold speech?

``labkit say TEXT -o out.wav --words out.json`` writes each spoken word's start and end
(from the model's own durations, labkit.engine.words); :func:`check` then asks the audio,
not the text, whether each word is there:

* the file's **silence floor** is a low percentile (``FLOOR_PERCENTILE``) of its frame
  levels (RMS of ``FRAME_MS`` frames, in dBFS, never below ``MIN_DB``): what the quiet
  parts of this file sound like;
* a word's **level** is a high percentile (``WORD_PERCENTILE``) of the levels of the
  frames wholly inside its span (a word is a few loud frames among closures and
  releases; a neighbour's sound at the edges does not count);
* a word passes when its level is at least ``margin_db`` above the floor. A word whose
  span is empty, outside the audio, or silent fails, and the failure names it.

Audio with no samples fails every word; a words list with no words fails as a whole.

:func:`heard` asks an independent listener as well (labkit.quality.recognizer: forced
alignment of the words to the audio), which does not read the model's durations: each
word's span *as the recognizer places it* (widened by :data:`TOLERANCE_S` each side) must
overlap its given span and hold speech by the same level test. A text the recognizer
cannot align at all fails every word; a word its dictionary lacks is not checked (said).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from labkit.quality import recognizer

FRAME_MS = 10.0
FLOOR_PERCENTILE = 5.0
WORD_PERCENTILE = 90.0
MARGIN_DB = 15.0
#: levels are clamped here (dBFS): digital silence reads as this, not -inf
MIN_DB = -120.0


class WordsFileError(ValueError):
    """A words file that is not ``[{"word": str, "start": s, "end": s}, ...]``."""


@dataclass
class WordCheck:
    index: int
    word: str
    start: float
    end: float
    level_db: float | None
    passed: bool
    reason: str = ""


@dataclass
class Coverage:
    ok: bool
    floor_db: float | None
    margin_db: float
    words: list[WordCheck] = field(default_factory=list)
    problem: str = ""

    @property
    def failed(self) -> list[WordCheck]:
        return [w for w in self.words if not w.passed]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if self.problem:
            return f"FAILED: {self.problem}"
        if self.ok:
            return (f"ok: all {len(self.words)} words hold speech (>= {self.margin_db:g} dB above "
                    f"the silence floor {self.floor_db:.1f} dBFS)")
        names = ", ".join(f"{w.word!r} ({w.start:.2f}-{w.end:.2f} s: {w.reason})" for w in self.failed)
        return f"FAILED: {len(self.failed)} of {len(self.words)} words not heard: {names}"


def parse_words(data: Any, where: str = "words") -> list[dict[str, Any]]:
    """Validate ``[{"word", "start", "end"}]`` (seconds, start <= end); clear errors.
    Entries ``{"skipped": why, ...}`` (text that was not spoken) are left out."""
    if not isinstance(data, list):
        raise WordsFileError(f"{where}: expected a JSON list of {{word, start, end}}, got {type(data).__name__}")
    out = []
    for i, item in enumerate(data):
        if isinstance(item, dict) and "skipped" in item:
            continue  # what the clean-up left out (labkit say --words): not in the audio
        if not isinstance(item, dict) or not {"word", "start", "end"} <= set(item):
            raise WordsFileError(f"{where}[{i}]: expected an object with word, start and end, got {item!r}")
        start, end = item["start"], item["end"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                   for v in (start, end)):
            raise WordsFileError(f"{where}[{i}] ({item['word']!r}): start and end must be numbers of seconds")
        if start < 0 or end < start:
            raise WordsFileError(f"{where}[{i}] ({item['word']!r}): need 0 <= start <= end, "
                                 f"got {start}..{end}")
        out.append({"word": str(item["word"]), "start": float(start), "end": float(end)})
    return out


def frame_levels(audio: np.ndarray, sr: int, frame_ms: float = FRAME_MS) -> np.ndarray:
    """RMS level of each ``frame_ms`` frame in dBFS, clamped at ``MIN_DB``."""
    x = np.asarray(audio, dtype=np.float64).ravel()
    n = max(1, int(sr * frame_ms / 1000))
    m = x.size // n
    if m == 0:
        return np.zeros(0)
    rms = np.sqrt(np.mean(np.square(x[:m * n].reshape(m, n)), axis=1))
    return np.maximum(20.0 * np.log10(np.maximum(rms, 1e-12)), MIN_DB)


def check(audio: np.ndarray, sr: int, words: Sequence[dict[str, Any]],
          margin_db: float = MARGIN_DB) -> Coverage:
    """Every word's span against the file's silence floor (see the module docstring)."""
    words = parse_words(list(words))
    x = np.asarray(audio, dtype=np.float64).ravel()
    if not words:
        return Coverage(False, None, margin_db, [], "the words list is empty: nothing to check")
    if x.size and not np.all(np.isfinite(x)):
        return Coverage(False, None, margin_db, [], "the audio has NaN/inf samples")
    levels = frame_levels(x, sr)
    floor = float(np.percentile(levels, FLOOR_PERCENTILE)) if levels.size else None
    frame = x.size / max(levels.size, 1) if levels.size else 1.0
    checks = []
    for i, w in enumerate(words):
        # frames wholly inside the span (a neighbour's sound must not lend a word its
        # level); a span shorter than that gets the frame at its midpoint
        a, b = int(math.ceil(w["start"] * sr / frame)), int(w["end"] * sr / frame)
        if b <= a:
            a = int((w["start"] + w["end"]) / 2 * sr / frame)
            b = a + 1
        level, reason = None, ""
        if w["end"] <= w["start"]:
            reason = "empty span"
        elif not levels.size or a >= levels.size:
            reason = f"outside the audio ({x.size / sr:.2f} s)"
        else:
            span = levels[a:b]
            level = float(np.percentile(span, WORD_PERCENTILE))
            if level < floor + margin_db:
                reason = (f"level {level:.1f} dBFS < floor {floor:.1f} + {margin_db:g} dB"
                          if level > MIN_DB else "silent")
        checks.append(WordCheck(i, w["word"], w["start"], w["end"], level, not reason, reason))
    return Coverage(all(c.passed for c in checks), floor, margin_db, checks)


#: a word of the model's unchunked take less than this far above the file's silence floor
#: (twice the check's own margin) is one the model itself barely voices (:func:`unvoiced`)
VOICED_DB = 2 * MARGIN_DB


def unvoiced(cov: Coverage, voiced_db: float = VOICED_DB) -> dict[int, str]:
    """index -> word: the words ``cov``'s audio barely voices (level under the floor +
    ``voiced_db``). Checked on the model's unchunked take of a text, they are the words a
    stream of it cannot be blamed for losing: a word within twice the check's margin of
    the floor in the model's own take passes or fails it with where the stream's cuts
    fall. Kokoro reduces short function words: in the paragraph's "other days it throws"
    the unchunked int8 take voices "it" 26.4 dB above its floor (34 dB under the median
    word; the next lowest, "at", 36.1 dB above the floor), and a stream cut around it 15 dB,
    so the check failed one stream in two beside a busy process; the 1514-word article has
    11 such words ("a", "at", "it", "to"), the 50- and 30-word openings one each
    (2026-12-05, /tmp scripts over labkit.measure.streaming.run_stream)."""
    return {w.index: w.word for w in cov.words  # no audio (no floor): none voiced
            if cov.floor_db is None or w.level_db is None or w.level_db < cov.floor_db + voiced_db}


def lost(cov: Coverage, excused: dict[int, str]) -> tuple[list[WordCheck], list[WordCheck]]:
    """``cov``'s failed words split into (lost, excused): a failure is excused where
    ``excused`` holds the same word at the same index (:func:`unvoiced` of the
    unchunked take of the same text, whose words come in the same order)."""
    out: tuple[list[WordCheck], list[WordCheck]] = ([], [])
    for w in cov.failed:
        out[excused.get(w.index) == w.word].append(w)
    return out


#: the recognizer's span, widened by this much each side (its frames are 10 ms, short
#: function words are fuzzy at both ends), must overlap the given one
TOLERANCE_S = 0.08


def heard(audio: np.ndarray, sr: int, words: Sequence[dict[str, Any]],
          margin_db: float = MARGIN_DB) -> Coverage:
    """Every word checked by the recognizer's forced alignment (see the module's doc)."""
    words = parse_words(list(words))
    if not words:
        return Coverage(False, None, margin_db, [], "the words list is empty: nothing to check")
    x = np.asarray(audio, dtype=np.float64).ravel()
    al = recognizer.align(x, " ".join(w["word"] for w in words), sr)
    if not al["aligned"]:
        return Coverage(False, None, margin_db, [WordCheck(i, w["word"], w["start"], w["end"], None, False,
                                                           "the recognizer could not align the text")
                                                 for i, w in enumerate(words)],
                        "the recognizer could not align the text to the audio (a word missing or garbled)")
    placed = iter(al["words"])
    unknown = set(al["unknown"])
    spans = []
    for w in words:
        toks = [t for t in recognizer.words(w["word"]) if t not in unknown]
        got = [next(placed) for _ in toks]
        spans.append({"word": w["word"], "start": got[0]["start"], "end": got[-1]["end"]} if got else None)
    level = check(x, sr, [s for s in spans if s is not None], margin_db)
    by_span = iter(level.words)
    checks = []
    for i, (w, s) in enumerate(zip(words, spans)):
        if s is None:
            checks.append(WordCheck(i, w["word"], w["start"], w["end"], None, True,
                                    "not in the recognizer's dictionary: not checked"))
            continue
        lv = next(by_span)
        overlap = (min(w["end"], s["end"] + TOLERANCE_S) - max(w["start"], s["start"] - TOLERANCE_S))
        reason = lv.reason
        if overlap <= 0:
            reason = (f"given at {w['start']:.2f}-{w['end']:.2f} s, the recognizer places it at "
                      f"{s['start']:.2f}-{s['end']:.2f} s" + (f"; {reason}" if reason else ""))
        checks.append(WordCheck(i, w["word"], s["start"], s["end"], lv.level_db, not reason, reason))
    return Coverage(all(c.passed for c in checks), level.floor_db, margin_db, checks)


def load_words(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"words file {p} does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise WordsFileError(f"{p}: not JSON ({exc})") from exc
    return parse_words(data, str(p))


def verify(audio_path: str | Path, words_path: str | Path, margin_db: float = MARGIN_DB,
           listener: bool = True) -> tuple[Coverage, Coverage | None]:
    """``labkit verify``: :func:`check` (the model's spans hold speech) and, with
    ``listener``, :func:`heard` (the recognizer's alignment), on a wav file and a words
    JSON file."""
    import soundfile as sf  # heavy: only when a file is read

    p = Path(audio_path)
    if not p.exists():
        raise FileNotFoundError(f"audio file {p} does not exist")
    words = load_words(words_path)
    audio, sr = sf.read(str(p), dtype="float64", always_2d=True)
    x = audio.mean(axis=1)
    return check(x, sr, words, margin_db), (heard(x, sr, words, margin_db) if listener else None)
