"""A personal lexicon: words -> phonemes, read before misaki (``LabConfig.lexicon``).

The file is YAML, one mapping of word to phonemes in Kokoro's symbols (misaki's set)::

    Kokoro: kˈOkəɹO
    Siwis: siwˈis
    nginx: ˈɛnʤɪnˌɛks

It is checked when loaded: every phoneme symbol must be in Kokoro's vocabulary (else
:class:`LexiconError` names the entry and the symbol), words are single tokens (letters,
digits, ``'`` and ``-``). Case: an entry written in lower case matches the word in any
case (``kokoro`` covers ``Kokoro`` and ``KOKORO``); an entry with capitals matches only
that spelling, and wins over the lower-case one. :func:`load_lexicon` caches by path,
size and mtime, so an edited file is read again on its next use (a running server picks
it up at its next request).
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml


@lru_cache(maxsize=1)
def symbols() -> frozenset[str]:
    """Kokoro's phoneme vocabulary (kokoro-onnx's table)."""
    # heavy: importing kokoro_onnx loads onnxruntime and numpy, and labkit.config (which
    # validates a lexicon) must load with PyYAML alone (labkit.host.preflight runs before install)
    from kokoro_onnx.config import DEFAULT_VOCAB

    return frozenset(DEFAULT_VOCAB)


WORD = re.compile(r"^[^\W_]+(?:['’-][^\W_]+)*$")


class LexiconError(ValueError):
    """A lexicon file that cannot be used (the message names the entry and why)."""


@dataclass(frozen=True)
class Lexicon:
    path: str
    #: exact spellings (entries with capitals) and lower-case entries
    exact: dict[str, str] = field(default_factory=dict)
    folded: dict[str, str] = field(default_factory=dict)
    #: (size, mtime_ns) of the file it was read from
    stamp: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return len(self.exact) + len(self.folded)

    def lookup(self, word: str) -> str | None:
        hit = self.exact.get(word)
        return hit if hit is not None else self.folded.get(word.lower())


def parse_lexicon(data, path: str = "<lexicon>") -> Lexicon:
    """Check a loaded mapping; :class:`LexiconError` names the first bad entry."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise LexiconError(f"{path}: expected a mapping of word -> phonemes, "
                           f"got {type(data).__name__}")
    exact: dict[str, str] = {}
    folded: dict[str, str] = {}
    for word, phonemes in data.items():
        if not isinstance(word, str) or not WORD.match(word.strip()):
            raise LexiconError(f"{path}: entry {word!r}: a word is letters and digits "
                               "(with ' or - inside), one word per entry")
        if not isinstance(phonemes, str) or not phonemes.strip():
            raise LexiconError(f"{path}: entry {word!r}: phonemes must be a non-empty string, "
                               f"got {phonemes!r}")
        ps = phonemes.strip()
        for ch in ps:
            if ch not in symbols() or ch == " ":
                what = "a space" if ch.isspace() else repr(ch)
                raise LexiconError(f"{path}: entry {word!r}: phoneme symbol {what} "
                                   f"(U+{ord(ch):04X}) is not in Kokoro's vocabulary")
        w = word.strip()
        (folded if w == w.lower() else exact)[w if w != w.lower() else w.lower()] = ps
    return Lexicon(path, exact, folded)


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
    lex = Lexicon(lex.path, lex.exact, lex.folded, stamp)
    with _LOCK:
        _CACHE[key] = lex
    return lex
