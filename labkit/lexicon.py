"""A personal lexicon: words -> phonemes, per language, read before the G2P
(``LabConfig.lexicon``).

The file is YAML: one mapping per language (keys ``en``, ``fr``, ``ja``, ... - a base
code covers its variants, ``en`` both en-us and en-gb; ``en-gb`` alone is also a key and
wins over ``en``), each of word to phonemes in Kokoro's symbols (misaki's set)::

    en:
      Kokoro: kˈOkəɹO
      nginx: ˈɛnʤɪnˌɛks
    fr:
      Siwis: siwˈis
    ja:
      東京: toːkʲoː

The older flat form (word -> phonemes at the top level) is English (``en``) and still
reads. It is checked when loaded: every phoneme symbol must be in Kokoro's vocabulary
(else :class:`LexiconError` names the entry and the symbol), words are single tokens
(letters, digits, ``'`` and ``-``), section keys are languages Kokoro speaks. Case: an
entry written in lower case matches the word in any case (``kokoro`` covers ``Kokoro``
and ``KOKORO``); an entry with capitals matches only that spelling, and wins over the
lower-case one. In Japanese and Chinese (no spaces between words) an entry matches
wherever its characters occur, longest entry first. :func:`load_lexicon` caches by
path, size and mtime, so an edited file is read again on its next use (a running server
picks it up at its next request).
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from labkit.kokoro import vocabulary


@lru_cache(maxsize=1)
def symbols() -> frozenset[str]:
    """Kokoro's phoneme vocabulary (read on first use: see labkit.kokoro.vocabulary)."""
    return frozenset(vocabulary())


WORD = re.compile(r"^[^\W_]+(?:['’-][^\W_]+)*$")
#: the languages Kokoro's voices speak (labkit.engine.g2p reads each of them)
LANGS = ("en-us", "en-gb", "es", "fr-fr", "hi", "it", "pt-br", "ja", "zh")
#: a lexicon's section keys: a language, or a base code covering its variants (en, fr, pt)
SECTIONS = tuple(dict.fromkeys([*LANGS, *(lang.split("-")[0] for lang in LANGS)]))
#: languages written without spaces between words: entries match inside a run of text
UNSPACED = ("ja", "zh")


class LexiconError(ValueError):
    """A lexicon file that cannot be used (the message names the entry and why)."""


@dataclass(frozen=True)
class Section:
    #: exact spellings (entries with capitals) and lower-case entries
    exact: dict[str, str] = field(default_factory=dict)
    folded: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.exact) + len(self.folded)


@dataclass(frozen=True)
class Entry:
    """A lexicon entry that applied: the section it is in, its key as written, its phonemes."""

    section: str
    key: str
    phonemes: str


@dataclass(frozen=True)
class Lexicon:
    path: str
    #: section key (en, en-gb, fr, ja, ...) -> its entries
    sections: dict[str, Section] = field(default_factory=dict)
    #: (size, mtime_ns) of the file it was read from
    stamp: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return sum(len(s) for s in self.sections.values())

    def keys_for(self, lang: str) -> tuple[str, ...]:
        """The sections that apply to ``lang`` (en-gb: en-gb, then en), in order."""
        base = lang.split("-")[0]
        return tuple(k for k in dict.fromkeys((lang, base)) if k in self.sections)

    def covers(self, lang: str) -> bool:
        return any(len(self.sections[k]) for k in self.keys_for(lang))

    def entry(self, word: str, lang: str = "en-us") -> Entry | None:
        """The entry ``word`` takes in ``lang``, or None."""
        for key in self.keys_for(lang):
            sec = self.sections[key]
            if word in sec.exact:
                return Entry(key, word, sec.exact[word])
            if word.lower() in sec.folded:
                return Entry(key, word.lower(), sec.folded[word.lower()])
        return None

    def lookup(self, word: str, lang: str = "en-us") -> str | None:
        hit = self.entry(word, lang)
        return hit.phonemes if hit is not None else None

    def words(self, lang: str) -> list[str]:
        """Every entry's word that applies to ``lang``, longest first."""
        out = {w for k in self.keys_for(lang) for d in (self.sections[k].exact,
                                                        self.sections[k].folded) for w in d}
        return sorted(out, key=lambda w: (-len(w), w))


def _section(data: dict, path: str, where: str) -> Section:
    exact: dict[str, str] = {}
    folded: dict[str, str] = {}
    for word, phonemes in data.items():
        if not isinstance(word, str) or not WORD.match(word.strip()):
            raise LexiconError(f"{path}: {where}entry {word!r}: a word is letters and digits "
                               "(with ' or - inside), one word per entry")
        if not isinstance(phonemes, str) or not phonemes.strip():
            raise LexiconError(f"{path}: {where}entry {word!r}: phonemes must be a non-empty "
                               f"string, got {phonemes!r}")
        ps = phonemes.strip()
        for ch in ps:
            if ch not in symbols() or ch == " ":
                what = "a space" if ch.isspace() else repr(ch)
                raise LexiconError(f"{path}: {where}entry {word!r}: phoneme symbol {what} "
                                   f"(U+{ord(ch):04X}) is not in Kokoro's vocabulary")
        w = word.strip()
        (folded if w == w.lower() else exact)[w] = ps
    return Section(exact, folded)


def parse_lexicon(data, path: str = "<lexicon>") -> Lexicon:
    """Check a loaded mapping; :class:`LexiconError` names the first bad entry. Sections
    per language, or the flat form (English)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise LexiconError(f"{path}: expected a mapping of language -> (word -> phonemes), "
                           f"got {type(data).__name__}")
    nested = [k for k, v in data.items() if isinstance(v, dict)]
    if not nested:  # the flat form: English
        return Lexicon(path, {"en": _section(data, path, "")})
    if len(nested) != len(data):
        flat = next(k for k in data if k not in nested)
        raise LexiconError(f"{path}: entry {flat!r} is a word at the top level beside language "
                           f"sections; put it under its language (e.g. en:)")
    sections = {}
    for key, entries in data.items():
        lang = str(key).strip().lower().replace("_", "-")
        if lang not in SECTIONS:
            raise LexiconError(f"{path}: section {key!r} is not a language Kokoro speaks; "
                               f"use one of {', '.join(SECTIONS)}")
        sections[lang] = _section(entries, path, f"{lang}: ")
    return Lexicon(path, sections)


_CACHE: dict[str, Lexicon] = {}
_LOCK = threading.Lock()


def load_lexicon(path: str | Path) -> Lexicon:
    """The checked lexicon at ``path``, read again when the file changed."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise LexiconError(f"lexicon {p}: cannot read it ({exc.strerror or exc})") from None
    stamp = (st.st_size, st.st_mtime_ns)
    key = str(p.resolve())
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None and hit.stamp == stamp:
            return hit
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise LexiconError(f"lexicon {p}: not readable YAML ({exc})") from None
    lex = parse_lexicon(data, str(p))
    lex = Lexicon(lex.path, lex.sections, stamp)
    with _LOCK:
        _CACHE[key] = lex
    return lex
