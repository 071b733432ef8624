"""Text corpora under version control, in two roles that never share a sentence:

* the **development** set -- ``dev`` (choosing: block lists, sensitivity sweeps,
  thresholds) and ``calibration`` (static int8 activation ranges);
* the **held-out** set -- ``heldout``: the quality figures the journal reports, measured
  on sentences nothing was chosen or calibrated on. A variant tuned on the sentences it
  is judged on would look better than it is.

:func:`load` takes the purpose: ``load("heldout", purpose="choose")`` (or
``"calibrate"``) raises, and loading the held-out set needs ``purpose="report"`` spelled
out, so a choosing code path cannot read it by accident. :func:`overlap` finds shared
sentences and runs of six words between two corpora.

Corpora are YAML files (``labkit/data/<name>.yaml``): a list of utterances, each with an
id, a voice, a language (en-us / en-gb), an optional speed and an optional size band
(short < 60 tokens, medium 60-199, long 200-510).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import yaml
from labkit.config import DATA_DIR
from labkit.engine.g2p import get_g2p
from labkit.engine.phonemized import tokenize
from labkit.kokoro import MAX_TOKENS
from labkit.engine.sessions import kokoro_feeds, style_row

NAMES = ("calibration", "dev", "heldout")
#: corpus -> its role: development (may be chosen on) or held-out (reported only)
ROLES = {"calibration": "development", "dev": "development", "heldout": "held-out"}
#: why a corpus is loaded; the held-out set serves only "report"
PURPOSES = ("choose", "calibrate", "report")
SIZE_BANDS = {"short": (1, 59), "medium": (60, 199), "long": (200, MAX_TOKENS)}


class CorpusError(ValueError):
    pass


@dataclass(frozen=True)
class Utterance:
    id: str
    text: str
    voice: str
    lang: str = "en-us"
    speed: float = 1.0
    size: str | None = None


@dataclass
class Corpus:
    name: str
    utterances: list[Utterance]
    purpose: str = ""
    path: Path | None = None

    def __iter__(self):
        return iter(self.utterances)

    def __len__(self) -> int:
        return len(self.utterances)

    def ids(self) -> list[str]:
        return [u.id for u in self.utterances]

    def select(self, ids: Iterable[str] | None = None, sizes: Iterable[str] | None = None,
               limit: int | None = None) -> "Corpus":
        """A sub-corpus: only these ids / size bands, at most ``limit`` utterances."""
        utts = list(self.utterances)
        if ids is not None:
            if isinstance(ids, str):
                raise CorpusError(f"corpus {self.name}: ids must be a list of ids, got the "
                                  f"string {ids!r}")
            ids = list(ids)
            unknown = sorted(set(ids) - set(self.ids()))
            if unknown:
                raise CorpusError(f"corpus {self.name}: unknown id(s) {unknown}; "
                                  f"known: {self.ids()}")
            utts = [u for u in utts if u.id in ids]
        if sizes is not None:
            sizes = set(sizes)
            bad = sizes - set(SIZE_BANDS)
            if bad:
                raise CorpusError(f"size band(s) {sorted(bad)}: allowed are {list(SIZE_BANDS)}")
            utts = [u for u in utts if u.size in sizes]
        if limit is not None:
            utts = utts[:limit]
        return Corpus(self.name, utts, self.purpose, self.path)


def load(name_or_path: str | Path, purpose: str | None = None) -> Corpus:
    """``load("dev", purpose="choose")``, ``load("calibration", purpose="calibrate")``,
    ``load("heldout", purpose="report")`` or a YAML path. ``purpose`` is one of
    :data:`PURPOSES`; the held-out set (by name, or a file whose ``name`` is heldout)
    refuses every purpose but "report", and needs it said."""
    if purpose is not None and purpose not in PURPOSES:
        raise CorpusError(f"purpose {purpose!r}: allowed are {PURPOSES}")
    path = Path(name_or_path)
    if str(name_or_path) in NAMES:
        path = DATA_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise CorpusError(f"corpus {name_or_path!r} not found: use one of {NAMES} or a YAML path")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    utts = []
    for i, item in enumerate(data.get("utterances") or []):
        missing = {"id", "text", "voice"} - set(item)
        if missing:
            raise CorpusError(f"{path}: utterance #{i} lacks {sorted(missing)}")
        size = item.get("size")
        if size is not None and size not in SIZE_BANDS:
            raise CorpusError(f"{path}: {item['id']}: size {size!r}; allowed are {list(SIZE_BANDS)}")
        utts.append(Utterance(str(item["id"]), str(item["text"]), str(item["voice"]),
                              str(item.get("lang", "en-us")), float(item.get("speed", 1.0)), size))
    ids = [u.id for u in utts]
    if len(set(ids)) != len(ids):
        raise CorpusError(f"{path}: duplicate utterance ids")
    if not utts:
        raise CorpusError(f"{path}: no utterances")
    name = str(data.get("name", path.stem))
    if ROLES.get(name) == "held-out" and purpose != "report":
        raise CorpusError(
            f"corpus {name!r} is held out: it serves only reported figures "
            f"(load it with purpose='report'), never {purpose or 'an unstated purpose'!r}; "
            "choose and calibrate on the development set ('dev', 'calibration')")
    return Corpus(name, utts, str(data.get("purpose", "")), path)


def requirements(corpus: Corpus, min_utterances: int = 24, tokens: tuple[int, int] = (3, 400),
                 min_voices: int = 4, prepared: list | None = None) -> list[str]:
    """What a held-out corpus lacks (empty when it meets every requirement): at least
    ``min_utterances`` utterances, ``min_voices`` voices including en-gb ones (bf_/bm_),
    and, given its ``prepared`` utterances, every token count within ``tokens``."""
    problems = []
    if len(corpus) < min_utterances:
        problems.append(f"{len(corpus)} utterances < {min_utterances}")
    voices = {u.voice for u in corpus}
    if len(voices) < min_voices:
        problems.append(f"{len(voices)} voices < {min_voices}: {sorted(voices)}")
    if not any(v.startswith(("bf_", "bm_")) for v in voices):
        problems.append(f"no en-gb voice (bf_/bm_) among {sorted(voices)}")
    for p in prepared or []:
        if not tokens[0] <= p.n_tokens <= tokens[1]:
            problems.append(f"{p.utt.id}: {p.n_tokens} tokens outside {tokens[0]}-{tokens[1]}")
    return problems


# -- overlap ----------------------------------------------------------------------------
def sentences(text: str) -> list[str]:
    """Normalized sentences (lower case, letters/digits/spaces only)."""
    parts = re.split(r"(?<=[.!?;:])\s+", text)
    out = []
    for p in parts:
        norm = " ".join(re.sub(r"[^a-z0-9' ]+", " ", p.lower()).split())
        if norm:
            out.append(norm)
    return out


def shingles(text: str, n: int = 6) -> set[tuple[str, ...]]:
    words = " ".join(sentences(text)).split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def overlap(a: Corpus, b: Corpus, n: int = 6) -> dict[str, list]:
    """What two corpora share: identical sentences, and runs of ``n`` identical words."""
    sa = {s for u in a for s in sentences(u.text)}
    sb = {s for u in b for s in sentences(u.text)}
    ha = set().union(*(shingles(u.text, n) for u in a))
    hb = set().union(*(shingles(u.text, n) for u in b))
    return {"sentences": sorted(sa & sb), "shingles": sorted(" ".join(s) for s in ha & hb),
            "ids": sorted(set(a.ids()) & set(b.ids()))}


# -- preparation for the model -------------------------------------------------------------
@dataclass
class Prepared:
    """An utterance ready for the graph: phonemes, token ids, and the model's inputs."""

    utt: Utterance
    phonemes: str
    tokens: list[int]
    report: dict = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    def feeds(self, voices) -> dict[str, np.ndarray]:
        """ORT inputs: tokens [1, n+2] (0-padded), style = voice[n-1], speed [1]."""
        pack = voices.pack(self.utt.voice)
        return kokoro_feeds(self.tokens, style_row(pack, len(self.tokens)), self.utt.speed)


def prepare(corpus: Corpus | Iterable[Utterance]) -> list[Prepared]:
    """Phonemize every utterance with its language's G2P (misaki, espeak fallback)."""
    out = []
    for u in corpus:
        ph = get_g2p(u.lang)(u.text)
        tokens = tokenize(ph.phonemes)
        if not tokens:
            raise CorpusError(f"{u.id}: no phonemes from {u.text!r}")
        if len(tokens) > MAX_TOKENS:
            raise CorpusError(f"{u.id}: {len(tokens)} tokens > {MAX_TOKENS}; shorten it")
        out.append(Prepared(u, ph.phonemes, tokens, ph.report()))
    return out


def size_of(n_tokens: int) -> str:
    for name, (lo, hi) in SIZE_BANDS.items():
        if lo <= n_tokens <= hi:
            return name
    raise CorpusError(f"{n_tokens} tokens is outside every size band {SIZE_BANDS}")
