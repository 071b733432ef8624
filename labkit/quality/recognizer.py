"""An independent listener: pocketsphinx's US-English recognizer (its PyPI wheel ships the
acoustic model, the dictionary and a language model; nothing is downloaded).

It is a modest recognizer -- it gets about a fifth of the words of Kokoro's own reference
audio wrong -- so its figures are relative: a variant is held against the reference's
word error rate on the same utterances, never against zero. What it adds is independence:
it does not read the model's durations, so a dropped or garbled word is caught where the
model itself would say the word was there.

* :func:`word_error_rate` -- recognize, then the word-level edit distance to the text,
  over the words of the text;
* :func:`align` -- forced alignment of the text to the audio (pocketsphinx's alignment
  search): each word's start and end as the recognizer hears them, for ``labkit verify``;
* :func:`words` -- the text as the recognizer's vocabulary spells it (lower case, digits
  spelt out, punctuation dropped).

Audio is resampled to 16 kHz and scaled to 90 % of full scale (the recognizer's features
are level-normalized per utterance, so the scale only avoids clipping).
"""
from __future__ import annotations

import re
import threading
from typing import Any, Sequence

import numpy as np
from num2words import num2words

from labkit.quality.signal import as_audio, resample

from labkit.kokoro import SAMPLE_RATE

RATE = 16_000
#: pocketsphinx counts frames of 10 ms
FRAME_S = 0.01
_lock = threading.Lock()
_decoders: dict[str, Any] = {}


def _decoder():
    """One decoder per process (loading the model takes about half a second)."""
    if "d" not in _decoders:
        from pocketsphinx import Decoder  # a native library: loaded when first needed
        _decoders["d"] = Decoder(samprate=RATE, loglevel="FATAL")
    return _decoders["d"]


def _pcm(audio: np.ndarray, sr: int) -> bytes:
    x = resample(as_audio(audio, "audio"), sr, RATE)
    peak = float(np.max(np.abs(x))) or 1.0
    return (np.clip(x / peak * 0.9, -1.0, 1.0) * 32767).astype(np.int16).tobytes()


def words(text: str) -> list[str]:
    """``text`` as lower-case words of letters and apostrophes, numbers spelt out."""
    text = re.sub(r"(\d+(?:\.\d+)?)", lambda m: f" {num2words(float(m.group(1)) if '.' in m.group(1) else int(m.group(1)))} ", text)
    text = text.lower().replace("-", " ").replace("\u2019", "'")
    return re.findall(r"[a-z]+(?:'[a-z]+)*", text)


def transcribe(audio: np.ndarray, sr: int = SAMPLE_RATE) -> str:
    """What the recognizer hears (its language model's best guess), lower case."""
    pcm = _pcm(audio, sr)
    with _lock:
        d = _decoder()
        d.activate_search()  # the language model, whatever ran before
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
    return hyp.hypstr if hyp is not None else ""


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Word-level Levenshtein distance (substitutions, deletions, insertions)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_error_rate(audio: np.ndarray, text: str, sr: int = SAMPLE_RATE) -> dict[str, Any]:
    """{"wer", "errors", "words", "heard"}: the recognizer's transcript of ``audio`` against
    ``text`` (errors over the text's words)."""
    want = words(text)
    heard = transcribe(audio, sr)
    errors = edit_distance(want, heard.split())
    return {"wer": errors / max(1, len(want)), "errors": errors, "words": len(want), "heard": heard}


def corpus_wer(results: Sequence[dict[str, Any]]) -> float | None:
    """Errors over words, summed over utterances (``word_error_rate`` results)."""
    n = sum(r["words"] for r in results)
    return sum(r["errors"] for r in results) / n if n else None


def align(audio: np.ndarray, text: str, sr: int = SAMPLE_RATE) -> dict[str, Any]:
    """Forced alignment of ``text`` to ``audio``: {"words": [{"word", "start", "end"}],
    "unknown": words the recognizer's dictionary lacks (left out of the alignment),
    "aligned": False when the recognizer could not align the text at all}. A word the
    audio does not hold is still placed, squeezed to a few frames or into silence: the
    caller checks each span (labkit.measure.coverage)."""
    want = words(text)
    pcm = _pcm(audio, sr)
    with _lock:
        d = _decoder()
        known = [w for w in want if d.lookup_word(w) is not None]
        unknown = [w for w in want if d.lookup_word(w) is None]
        if not known:
            return {"words": [], "unknown": unknown, "aligned": False}
        d.set_align_text(" ".join(known))
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        segs = [(s.word, s.start_frame, s.end_frame) for s in (d.seg() or [])]
        d.activate_search()
    spoken = [(re.sub(r"\(\d+\)$", "", w), a, b) for w, a, b in segs
              if not w.startswith("<") and not w.startswith("[") and w != "<sil>"]
    if len(spoken) != len(known):
        return {"words": [], "unknown": unknown, "aligned": False}
    return {"words": [{"word": w, "start": a * FRAME_S, "end": (b + 1) * FRAME_S} for w, a, b in spoken],
            "unknown": unknown, "aligned": True}
