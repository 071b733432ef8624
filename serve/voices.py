"""Voice names a request may use: Kokoro ids, blends, and OpenAI's names.

OpenAI's names (alloy, nova, ...) map to Kokoro voices through ``serve.voice_aliases``
(a setting: point ``nova`` at a blend if you like). Aliases also work inside a blend:
``nova(2)+af_sky(1)``. Unknown names get a 400 naming close matches.

Each voice reads its own language by default (its first letter, labkit.engine.g2p's
VOICE_LANGS: ``ff_siwis`` French, ``bf_emma`` British English); a request's ``lang`` wins.
``GET /v1/audio/voices`` lists each voice's language and whether it can be read here
(Japanese and Chinese need misaki's G2P for them, not installed by default: those voices
are listed as unavailable with the reason, and a request for them is a 400).
"""
from __future__ import annotations

import difflib

from labkit.engine.languages import VOICE_LANGS, normalize_lang, unavailable, voice_lang
from labkit.engine.runtime import VoiceBank, VoiceError, split_blend

from .errors import APIError

_LANGUAGES = {"a": "American English", "b": "British English", "e": "Spanish", "f": "French",
              "h": "Hindi", "i": "Italian", "j": "Japanese", "p": "Brazilian Portuguese",
              "z": "Mandarin Chinese"}
_GENDERS = {"f": "female", "m": "male"}


def resolve(spec: str, aliases: dict[str, str], bank: VoiceBank) -> str:
    """The Kokoro voice (id or blend) a request's ``voice`` names; checks it exists
    (in linear time, within labkit.engine.runtime's caps) without resolving the blend:
    nothing is kept for a request that is then refused."""
    key = spec.strip()
    try:
        if key.lower() in aliases:
            key = aliases[key.lower()]
        elif "+" in key or "(" in key:  # a blend: aliases may stand for its terms
            key = "+".join(aliases.get(name.lower(), name) + (f"({w})" if w is not None else "")
                           for name, w in split_blend(key))
        bank.check(key)
    except VoiceError as exc:
        raise APIError(400, _unknown_message(spec, str(exc), aliases, bank), param="voice",
                       code="voice_not_found") from None
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


def lang_for(voice: str, default: str | None = None, requested: str | None = None) -> str:
    """The language a request reads in: ``requested`` (its ``lang``) when given, else the
    voice's own (first term of a blend: ``bf_emma`` en-gb, ``ff_siwis`` fr-fr), else
    ``default`` (the config's). A language this server cannot read, or does not know, is
    a 400 naming the reason."""
    first = voice.split("+")[0].strip()[:1].lower()
    chosen = requested or (None if first in VOICE_LANGS else default)
    try:
        lang = normalize_lang(chosen, voice)
    except ValueError as exc:
        raise APIError(400, str(exc)[:200], param="lang", code="invalid_value") from None
    why = unavailable(lang)
    if why:
        raise APIError(400, f"language {lang} (voice {voice[:64]!r}) cannot be read here: {why}",
                       param="lang" if requested else "voice", code="language_unavailable")
    return lang


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
