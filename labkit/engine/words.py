"""Word timings: each spoken word's start and end in the audio, from the model's durations,
and where it is in the input the user sent.

A graph edited by labkit.optimize.durations outputs the frames each token lasts
(``durations``: [pad, token 1, ..., token n, pad]); a token is one phoneme symbol, and
labkit.engine.g2p's ``Phonemized.spans`` say which symbols each word produced. So word w
covering tokens [a, b) starts at ``sum(durations[:a + 1])`` frames and ends at
``sum(durations[:b + 1])``, 600 samples a frame (the speed is already in the counts).

:func:`piece_samples` gives those sample offsets within one piece's raw audio;
:func:`place` moves them into stream time after the joiner trimmed the piece and put it
at ``base`` (labkit.engine.joining: pauses and crossfades only shift where a piece starts).
:func:`timed_model_path` names the cached model with the durations output, which
labkit.engine.runtime.Engine loads instead of the original when it has been built.

Where a word is in the input: the G2P says which characters of the piece each word was
read from (``Phonemized.chars``), the piece says where it is in the sanitized text, and
the sanitizer's map (labkit.engine.text.Sanitized.source) where those characters came
from in the input, in code points, before any clean-up. :class:`InputWords` turns the
spoken words into what a client highlights: one entry per stretch of the input, an
expansion ("40–60°C", "$3.50", a URL) one entry spanning what was written, nothing covered
twice, and what the sanitizer removed (an emoji, a skipped script) reported as skipped.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from labkit.engine.phonemized import Phonemized, even_spans
from labkit.kokoro import SAMPLE_RATE, SAMPLES_PER_FRAME



def timed_model_path(model: str | Path, cache_dir: str | Path) -> Path:
    """Where labkit.optimize.durations.ensure keeps ``model``'s copy with the ``durations``
    output: keyed by the source's resolved path, size and mtime (a changed model gets a
    new copy)."""
    src = Path(model)
    st = src.stat()
    key = hashlib.sha256(f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{src.stem}.{key}.durations.onnx"


def timed_cache_dir(cfg) -> Path:
    """The durations cache of a LabConfig: ``<artifacts>/cache/durations``."""
    return cfg.resolve(cfg.artifacts_dir) / "cache" / "durations"


@dataclass(frozen=True)
class WordTime:
    word: str
    #: seconds in the stream
    start: float
    end: float
    #: the span of the request's input it was read from (code points), when known
    input_start: int | None = None
    input_end: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.input_start is None:
            del d["input_start"], d["input_end"]
        return d


def spans_for(text: str, phonemes: str, phonemized: Phonemized | None
              ) -> tuple[list[tuple[str, int, int]], list[tuple[int, int]]]:
    """The word spans of a piece and where each word is in ``text``: the G2P's own when it
    phonemized exactly this piece's phonemes, else the words of ``text`` shared over
    ``phonemes`` (labkit.engine.phonemized.even_spans)."""
    if phonemized is not None and phonemized.phonemes == phonemes and phonemized.spans \
            and len(phonemized.chars) == len(phonemized.spans):
        return list(phonemized.spans), list(phonemized.chars)
    found = list(re.finditer(r"\S+", text))
    return even_spans([m.group() for m in found], phonemes), [m.span() for m in found]


def piece_samples(spans: Sequence[tuple[str, int, int]], durations: np.ndarray,
                  n_tokens: int) -> list[tuple[str, int, int]]:
    """(word, start, end) in samples of the piece's raw audio, from per-token frames."""
    d = np.asarray(durations, dtype=np.int64).ravel()
    if d.size != n_tokens + 2:
        raise ValueError(f"{d.size} durations for {n_tokens} tokens: expected {n_tokens + 2} "
                         "(one per token and the two pads)")
    if (d < 0).any():
        raise ValueError("negative durations")
    edges = np.concatenate([[0], np.cumsum(d)]) * SAMPLES_PER_FRAME  # edges[i + 1] = end of input i
    out = []
    for word, a, b in spans:
        if not 0 <= a <= b <= n_tokens:
            raise ValueError(f"word {word!r}: tokens [{a}, {b}) outside 0..{n_tokens}")
        out.append((word, int(edges[a + 1]), int(edges[b + 1])))
    return out


def place(samples: Sequence[tuple[str, int, int]], base: int, trim_start: int,
          trim_end: int, where: Sequence[tuple[int, int]] | None = None) -> list[WordTime]:
    """Words of a piece in stream seconds: raw sample k plays at ``base + k - trim_start``;
    what the trim cut off is clamped to the kept part. ``where``: each word's span in the
    input."""
    out = []
    for k, (word, s, e) in enumerate(samples):
        s2 = min(max(s, trim_start), trim_end) - trim_start + base
        e2 = min(max(e, trim_start), trim_end) - trim_start + base
        at = where[k] if where is not None else (None, None)
        out.append(WordTime(word, s2 / SAMPLE_RATE, e2 / SAMPLE_RATE, *at))
    return out


#: characters a word may be glued to its neighbour over and still be one written word
#: ("40–60°C", "3,5"): any but whitespace and brackets, slashes, quotes (markup, paths);
#: not next to a CJK character (no spaces between words there)
_APART = frozenset("()[]{}<>/\\|\"“”«»")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")


class InputWords:
    """Spoken words (a stream's :class:`WordTime` lists, piece by piece, in order) as a
    client highlights them in the input it sent.

    Each entry is one stretch of the input with the times of the words read from it:
    words whose input spans overlap (a URL read as "example dot com": each of its words
    came from the URL) or that are written together without a space ("40–60°C" read as
    "forty to sixty degrees C", "3,5" in French; not across Japanese or Chinese characters,
    which have no spaces between words) are one entry, ``word`` the input's characters
    ``input[input_start:input_end]``. Nothing is covered twice: a word of a later piece
    that falls inside an entry already given is folded away. What the sanitizer removed
    (``Sanitized.report["removed"]``: emoji, skipped scripts, URL query tokens, over-long
    words), and words of the input that reached the G2P but were not spoken, come as
    ``{"skipped": why, "text", "input_start", "input_end"}`` in their place in text order.
    Offsets are Unicode code points (Python string indices) of the input as sent."""

    def __init__(self, text: str, sanitized=None):
        self.text = text
        removed = sanitized.report.get("removed", []) if sanitized is not None else []
        self.removed = [r for r in removed if "input_start" in r]
        self.reached = sanitized.reached() if sanitized is not None else None
        #: the input before this is given (as a word or as skipped)
        self.covered = 0

    def _glued(self, end: int, start: int) -> bool:
        gap = self.text[end:start]
        if any(ch.isspace() or ch in _APART for ch in gap):
            return False
        left, right = self.text[end - 1:end], self.text[start:start + 1]
        return not (_CJK.match(left) or _CJK.match(right))

    def _skipped(self, a: int, b: int) -> list[dict]:
        """What in input[a:b] (given to no word) is to be reported."""
        out = []
        for m in re.finditer(r"\S+", self.text[a:b]):
            s, e = a + m.start(), a + m.end()
            why = next((r.get("why") or r["rule"] for r in self.removed
                        if r["input_start"] < e and s < r["input_end"]), None)
            if why is None:
                reached = self.reached is not None and any(
                    self.reached[k] for k in range(s, e) if self.text[k].isalnum())
                if not reached:
                    continue  # punctuation, or markup no clean character came from
                why = "not spoken (the G2P read no phonemes for it)"
            while e - s > 1 and unicodedata.category(self.text[s])[0] == "P":
                s += 1  # the punctuation around it is not what was left out
            while e - s > 1 and unicodedata.category(self.text[e - 1])[0] == "P":
                e -= 1
            out.append({"skipped": why, "text": self.text[s:e], "input_start": s, "input_end": e})
        return out

    def feed(self, words: Sequence[WordTime]) -> list[dict]:
        """The entries for one piece's words (never waiting for a later piece)."""
        groups: list[list] = []  # [start, end, t0, t1]
        for w in words:
            if w.input_start is None:
                continue
            s, e = w.input_start, w.input_end
            if groups and (s < groups[-1][1] or self._glued(groups[-1][1], s)):
                g = groups[-1]
                g[0], g[1], g[3] = min(g[0], s), max(g[1], e), max(g[3], w.end)
                continue
            groups.append([s, e, w.start, w.end])
        out: list[dict] = []
        for s, e, t0, t1 in groups:
            s = max(s, self.covered)
            if e <= s:
                continue  # inside what an earlier piece's entry gave
            out += self._skipped(self.covered, s)
            out.append({"word": self.text[s:e], "start": t0, "end": t1,
                        "input_start": s, "input_end": e})
            self.covered = e
        return out

    def finish(self) -> list[dict]:
        """What is left after the last word: reported as skipped where it should be."""
        out = self._skipped(self.covered, len(self.text))
        self.covered = len(self.text)
        return out
