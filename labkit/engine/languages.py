"""The languages Kokoro's voices speak: a voice's language (:data:`VOICE_LANGS`), the
names a language may be given (:func:`normalize_lang`), which reader reads it
(:data:`ESPEAK_LANGS`, :data:`MISAKI_LANGS`, else misaki's English), and whether this
installation can read it (:func:`unavailable`, :func:`check_available`).
"""
from __future__ import annotations

from labkit.engine import phoneme_readers
from labkit.lexicon import LANGS


#: a Kokoro voice's first letter -> its language
VOICE_LANGS = {"a": "en-us", "b": "en-gb", "e": "es", "f": "fr-fr", "h": "hi", "i": "it",
               "p": "pt-br", "j": "ja", "z": "zh"}
ENGLISH = ("en-us", "en-gb")
#: read wholly by espeak-ng (misaki's English G2P is for English only)
ESPEAK_LANGS = ("es", "fr-fr", "hi", "it", "pt-br")
#: read by misaki's own G2P for the language
MISAKI_LANGS = ("ja", "zh")
#: what each needs, PyPI package -> the module it installs (all ship their data)
MISAKI_NEEDS = {"ja": {"fugashi": "fugashi", "unidic-lite": "unidic_lite", "jaconv": "jaconv",
                       "mojimoji": "mojimoji"},
                "zh": {"jieba": "jieba", "pypinyin": "pypinyin", "cn2an": "cn2an",
                       "ordered-set": "ordered_set"}}
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
    """Why ``lang`` cannot be phonemized here, or None when it can (checked once, by
    building misaki's G2P for it): the module that is missing and the packages to add."""
    lang = normalize_lang(lang)
    if lang not in MISAKI_LANGS:
        return None
    if lang not in _UNAVAILABLE:
        needs = MISAKI_NEEDS[lang]
        add = f"`pip install {' '.join(needs)}` (PyPI packages that ship their data: nothing " \
              "is downloaded when it runs)"
        try:
            phoneme_readers.shared_misaki(lang)
            _UNAVAILABLE[lang] = None
        except ModuleNotFoundError as exc:
            name = (exc.name or "?").split(".")[0]
            pkg = next((p for p, m in needs.items() if m == name), name)
            _UNAVAILABLE[lang] = (f"misaki's {lang} G2P needs the Python module {name!r} (PyPI "
                                  f"package {pkg}), which is not installed; add {add}")
        except Exception as exc:  # noqa: BLE001 - any failure: not available, say why
            hint = ("; fugashi finds its dictionary in unidic-lite (the unidic package needs "
                    "`python -m unidic download` first)" if lang == "ja" else "")
            _UNAVAILABLE[lang] = (f"misaki's {lang} G2P cannot be built ({type(exc).__name__}: "
                                  f"{str(exc)[:200]}){hint}; install {add}")
    return _UNAVAILABLE[lang]


def check_available(lang: str) -> str:
    """``lang`` normalized, or :class:`LanguageUnavailable` with the reason."""
    lang = normalize_lang(lang)
    why = unavailable(lang)
    if why:
        raise LanguageUnavailable(f"language {lang} is not available here: {why}")
    return lang
