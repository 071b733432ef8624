"""Kokoro-82M's facts: what the model is, in one place (the bottom layer; no project imports).

Every other module reads these names from here rather than writing the numbers again.
The graph's inputs and outputs, and how a call is fed, are in :mod:`labkit.engine.sessions`.
"""
from __future__ import annotations

from functools import lru_cache

#: the model's output rate, in samples per second
SAMPLE_RATE = 24_000
#: audio samples per predicted duration frame (the decoder's hop; ``sum(durations) * 600``
#: is the length of the audio)
SAMPLES_PER_FRAME = 600
#: phoneme tokens per call: position embeddings hold 512 rows, two of them the 0-pads
MAX_TOKENS = 510
#: the speeds the model is trained for (the OpenAI API's wider range is mapped into it)
SPEED_RANGE = (0.5, 2.0)
#: a voice pack: one 256-wide style row per token count 1..510
STYLE_DIM = 256
VOICE_SHAPE = (MAX_TOKENS, 1, STYLE_DIM)
#: names the token input goes by in Kokoro exports (kokoro-onnx: tokens; others: input_ids)
TOKEN_INPUTS = ("tokens", "input_ids")


@lru_cache(maxsize=1)
def vocabulary() -> dict[str, int]:
    """Phoneme symbol -> token id: kokoro-onnx's table, the model's own vocabulary. Read on
    first use: importing kokoro_onnx loads onnxruntime, and this module (read by
    labkit.lexicon, which labkit.config reads before anything is installed) must stay light."""
    from kokoro_onnx.config import DEFAULT_VOCAB  # third-party, deferred for the reason above

    return dict(DEFAULT_VOCAB)


def __getattr__(name: str):
    if name == "VOCAB":  # ``from labkit.kokoro import VOCAB`` reads the table then
        return vocabulary()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
