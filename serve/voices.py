"""Voice names a request may use: Kokoro ids, blends, and OpenAI's names.

OpenAI's names (alloy, nova, ...) map to Kokoro voices through ``serve.voice_aliases``
(a setting: point ``nova`` at a blend if you like). Aliases also work inside a blend:
``nova(2)+af_sky(1)``. Unknown names get a 400 naming close matches.

Each voice reads its own language by default (its first letter, labkit.engine.g2p's
VOICE_LANGS: ``ff_siwis`` French, ``bf_emma`` British English); a request's ``lang`` wins.
``GET /v1/audio/voices`` lists each voice's language and whether it can be read here
(Japanese and Chinese need misaki's G2P for them, not installed by default: those voices
are listed as unavailable with the reason, and a request for them is a 400). The voice,
the language and the speed are checked once, by labkit.engine.voices.voicing; the
:class:`~labkit.engine.voices.Voicing` it returns goes to the synthesizer as it is.
"""
from __future__ import annotations

import difflib

from labkit.engine.languages import unavailable, voice_lang
from labkit.engine.voices import LanguageError, VoiceBank, VoiceError, Voicing, split_blend, voicing

from .errors import APIError

_LANGUAGES = {"a": "American English", "b": "British English", "e": "Spanish", "f": "French",
              "h": "Hindi", "i": "Italian", "j": "Japanese", "p": "Brazilian Portuguese",
              "z": "Mandarin Chinese"}
_GENDERS = {"f": "female", "m": "male"}


def request_voicing(spec: str, aliases: dict[str, str], bank: VoiceBank, speed: float = 1.0,
                    lang: str | None = None, default_lang: str | None = None) -> Voicing:
    """How a request is voiced: its ``voice`` with OpenAI's names replaced (:func:`kokoro_spec`),
    checked once by labkit.engine.voices.voicing with its ``lang`` (None: the voice's own,
    else ``default_lang``) and ``speed``; the engine's errors as 400s naming the reason
    (an unknown voice: close matches; a language this server cannot read: what is missing)."""
    try:
        return voicing(bank, kokoro_spec(spec, aliases), speed, lang, default_lang)
    except VoiceError as exc:
        raise APIError(400, _unknown_message(spec, str(exc), aliases, bank), param="voice",
                       code="voice_not_found") from None
    except LanguageError as exc:
        if exc.unavailable:
            raise APIError(400, str(exc), param="lang" if lang else "voice",
                           code="language_unavailable") from None
        raise APIError(400, str(exc)[:200], param="lang", code="invalid_value") from None
    except ValueError as exc:
        raise APIError(400, str(exc), param="speed", code="invalid_value") from None


def kokoro_spec(spec: str, aliases: dict[str, str]) -> str:
    """The Kokoro voice (id or blend) a request's ``voice`` names, aliases replaced, also
    inside a blend; its shape is read within labkit.engine.voices' caps (VoiceError)."""
    key = spec.strip()
    if key.lower() in aliases:
        return aliases[key.lower()]
    if "+" in key or "(" in key:  # a blend: aliases may stand for its terms
        return "+".join(aliases.get(name.lower(), name) + (f"({w})" if w is not None else "")
                        for name, w in split_blend(key))
    return key


def _unknown_message(spec: str, message: str, aliases: dict[str, str], bank: VoiceBank) -> str:
    hint = ""
    if "did you mean" not in message:
        names = bank.ids + sorted(aliases)
        close = difflib.get_close_matches(spec.strip().lower()[:64], names, n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
    shown = spec if len(spec) <= 64 else spec[:64] + f"... ({len(spec):,} characters)"
    head = "" if message.startswith("voice ") else f"voice {shown!r}: "  # named already
    return (f"{head}{message}{hint} (GET /v1/audio/voices lists the "
            f"{len(bank.ids)} voices and the OpenAI names)")


def describe(bank: VoiceBank, aliases: dict[str, str]) -> dict:
    """The ``GET /v1/audio/voices`` body."""
    voices = []
    for vid in bank.ids:
        lang = voice_lang(vid)
        why = unavailable(lang)
        entry = {"id": vid, "name": vid, "object": "voice",
                 "language": _LANGUAGES.get(vid[:1], "unknown"), "lang": lang,
                 "gender": _GENDERS.get(vid[1:2], "unknown"), "available": why is None}
        if why:
            entry["unavailable_reason"] = why
        voices.append(entry)
    for name, target in sorted(aliases.items()):
        voices.append({"id": name, "name": name, "object": "voice", "alias_of": target})
    return {"object": "list", "voices": voices, "aliases": dict(sorted(aliases.items())),
            "blends": "any weighted sum of ids, e.g. af_bella(2)+af_sky(1)"}
