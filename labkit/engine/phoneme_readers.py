"""The whole-text phoneme readers the G2P (labkit.engine.g2p) hands text to besides
misaki's English: espeak-ng in misaki's phoneme set (:class:`EspeakReader`: es, fr-fr, hi,
it, pt-br, and non-Latin runs) and misaki's own Japanese and Chinese G2P
(:class:`MisakiReader`, one per process: :func:`shared_misaki`).
"""
from __future__ import annotations

import importlib
import logging
import threading
from collections import OrderedDict

from labkit.engine.phonemized import ALNUM, Phonemized, clean_phonemes


_OPENING_MARKS = str.maketrans({"¿": " ", "¡": " "})


class EspeakReader:
    """Whole-text espeak G2P, in misaki's phoneme set."""

    def __init__(self, lang: str):
        from misaki import espeak

        self._g2p = espeak.EspeakG2P(language=lang)

    def __call__(self, text: str) -> str:
        # Spanish opening marks are no sound (espeak passes them through; Kokoro lacks them)
        ps, _ = self._g2p(text.translate(_OPENING_MARKS))
        return ps


class MisakiReader:
    """misaki's Japanese or Chinese G2P on a whole text, and its words: the G2P's own word
    segmentation (MeCab's for ja, jieba's for zh), each word's phonemes found in order in
    the text's (a word read differently in context shares the phonemes around it)."""

    def __init__(self, lang: str):
        self.lang = lang
        if lang == "ja":
            # JAG2P() runs Cutlet (its default reading); misaki.ja itself would also import
            # pyopenjtalk, which this reading never calls
            self._g2p = importlib.import_module("misaki.cutlet").Cutlet()
            self._g2p("日本")  # fugashi's dictionary: fails here, not on a request
        else:
            self._g2p = importlib.import_module("misaki.zh").ZHG2P()  # Kokoro v1.0's
            logging.getLogger("jieba").setLevel(logging.WARNING)
            self._jieba = importlib.import_module("jieba")
            self._jieba.initialize()
        self._lock = threading.Lock()
        self._word_cache: OrderedDict[str, str] = OrderedDict()

    def __call__(self, text: str) -> str:
        with self._lock:  # jieba and MeCab are not known to be thread-safe
            out = self._g2p(text)
        return out[0] if isinstance(out, tuple) else out

    def segments(self, text: str) -> list[tuple[int, int]]:
        """[start, end) of each word of ``text`` with a letter or digit in it, in order."""
        with self._lock:
            if self.lang == "zh":
                return [(a, b) for w, a, b in self._jieba.tokenize(text) if ALNUM.search(w)]
            surfaces = [w.surface for w in self._g2p.tagger(text)]
        out, cursor = [], 0
        for w in surfaces:
            at = text.find(w, cursor)
            if at < 0:
                continue
            cursor = at + len(w)
            if ALNUM.search(w):
                out.append((at, cursor))
        return out

    def _word(self, word: str) -> str:
        with self._lock:
            hit = self._word_cache.get(word)
        if hit is None:
            hit = clean_phonemes(self(word))[0].strip()
            with self._lock:
                self._word_cache[word] = hit
                while len(self._word_cache) > 4096:
                    self._word_cache.popitem(last=False)
        return hit

    def phonemize(self, text: str) -> "Phonemized":
        phonemes, dropped = clean_phonemes(self(text))
        segs = self.segments(text) if phonemes else []
        found: list[tuple[int, int] | None] = []
        cursor = 0
        for a, b in segs:
            own = self._word(text[a:b])
            at = phonemes.find(own, cursor) if own else -1
            if at >= 0:
                found.append((at, at + len(own)))
                cursor = at + len(own)
            else:
                found.append(None)
        spans = _fill_gaps(found, phonemes)
        words = [text[a:b] for a, b in segs]
        return Phonemized(text, phonemes, self.lang, dropped=dropped, engine=f"misaki-{self.lang}",
                          words=words, spans=[(w, a, b) for w, (a, b) in zip(words, spans)],
                          chars=list(segs))


def _fill_gaps(found: list[tuple[int, int] | None], phonemes: str) -> list[tuple[int, int]]:
    """Phoneme spans for words, where those not found share the symbols between their
    found neighbours evenly."""
    out: list[tuple[int, int]] = []
    k = 0
    while k < len(found):
        if found[k] is not None:
            out.append(found[k])
            k += 1
            continue
        j = k
        while j < len(found) and found[j] is None:
            j += 1
        lo = out[-1][1] if out else 0
        hi = found[j][0] if j < len(found) else len(phonemes)
        while lo < hi and phonemes[lo] == " ":
            lo += 1
        hi = max(lo, hi)
        n = j - k
        cuts = [lo + round(i * (hi - lo) / n) for i in range(n + 1)]
        out += [(cuts[i], cuts[i + 1]) for i in range(n)]
        k = j
    return out


_OTHER: dict[str, MisakiReader] = {}
_OTHER_LOCK = threading.Lock()


def shared_misaki(lang: str) -> MisakiReader:
    """The one built misaki ja / zh G2P of this process (building jieba's is ~0.5 s)."""
    with _OTHER_LOCK:
        if lang not in _OTHER:
            _OTHER[lang] = MisakiReader(lang)
        return _OTHER[lang]
