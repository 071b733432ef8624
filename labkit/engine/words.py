"""Word timings: each spoken word's start and end in the audio, from the model's durations.

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
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from labkit.engine.g2p import Phonemized, even_spans

SAMPLE_RATE = 24_000
#: audio samples per predicted frame
SAMPLES_PER_FRAME = 600


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

    def to_dict(self) -> dict:
        return asdict(self)


def spans_for(text: str, phonemes: str, phonemized: Phonemized | None) -> list[tuple[str, int, int]]:
    """The word spans of a piece: the G2P's own when it phonemized exactly this piece's
    phonemes, else the words of ``text`` shared over ``phonemes`` (labkit.engine.g2p.even_spans)."""
    if phonemized is not None and phonemized.phonemes == phonemes and phonemized.spans:
        return list(phonemized.spans)
    return even_spans(text.split(), phonemes)


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
          trim_end: int) -> list[WordTime]:
    """Words of a piece in stream seconds: raw sample k plays at ``base + k - trim_start``;
    what the trim cut off is clamped to the kept part."""
    out = []
    for word, s, e in samples:
        s2 = min(max(s, trim_start), trim_end) - trim_start + base
        e2 = min(max(e, trim_start), trim_end) - trim_start + base
        out.append(WordTime(word, s2 / SAMPLE_RATE, e2 / SAMPLE_RATE))
    return out


#: how many of the original text's tokens a spoken word may skip ahead to find its match
ALIGN_LOOKAHEAD = 8
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")
_CLAUSE_END = tuple(".,;:!?\u2014\u2013)\"'\u201d\u2019")


def _norm(token: str) -> str:
    return _EDGE.sub("", token).casefold()


class TextAligner:
    """Maps spoken words (a stream's :class:`WordTime` lists, in order) back to the words
    as written in the original text, where they map back.

    The pipeline's words are the G2P's tokens of the *cleaned* text (``3:30`` became
    ``three thirty``). A spoken word that equals (edge punctuation and case aside) one of
    the next :data:`ALIGN_LOOKAHEAD` written tokens is that token, as written; spoken
    words between two matches are the written tokens between them, as one word spanning
    their times (``3:30`` from 'three' to 'thirty'). Unmatched words at the end of a
    piece take the written tokens up to the next clause end. Where no written token is
    left, the spoken word is kept as it was spoken. Feed one piece's words at a time:
    what :meth:`feed` returns never waits for a later piece."""

    def __init__(self, text: str):
        self.tokens = [(m.group(), _norm(m.group())) for m in re.finditer(r"\S+", text)]
        self.pos = 0

    def _written(self, token: str) -> str:
        return _EDGE.sub("", token) or token

    def _gap(self, pending: list[WordTime], end: int, out: list[WordTime]) -> None:
        gap = [self._written(t) for t, n in self.tokens[self.pos:end] if n]
        if pending and gap:
            out.append(WordTime(" ".join(gap), pending[0].start, pending[-1].end))
        else:
            out.extend(pending)
        pending.clear()

    def feed(self, words: Sequence[WordTime]) -> list[WordTime]:
        out: list[WordTime] = []
        pending: list[WordTime] = []
        for w in words:
            key = _norm(w.word)
            stop = min(len(self.tokens), self.pos + ALIGN_LOOKAHEAD)
            j = next((k for k in range(self.pos, stop) if key and self.tokens[k][1] == key), None)
            if j is None:
                pending.append(w)
                continue
            self._gap(pending, j, out)
            out.append(WordTime(self._written(self.tokens[j][0]), w.start, w.end))
            self.pos = j + 1
        if pending:  # the piece ends: its unmatched words are the tokens up to a clause end
            end = self.pos
            stop = min(len(self.tokens), self.pos + ALIGN_LOOKAHEAD)
            while end < stop:
                end += 1
                if self.tokens[end - 1][0].endswith(_CLAUSE_END):
                    break
            self._gap(pending, end, out)
            self.pos = end
        return out
