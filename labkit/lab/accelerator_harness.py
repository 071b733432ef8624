"""What stage 04's experiments (labkit.lab.s04_coreml) share: the phoneme passage cut to
a token length, the reference audio of each length, the CoreML model cache of one
candidate and its removal, and the crash isolation of a candidate that can crash or hang
natively (labkit.procs.isolated).
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from labkit import procs
from labkit.config import LabConfig
from labkit.engine import assets, runtime
from labkit.engine.phonemized import clean_phonemes, tokenize
from labkit.kokoro import MAX_TOKENS
from labkit.optimize.coreml import cpu_session_config

#: where the static-shape copies go, under the stage's CoreML cache folder
STATIC_DIR = "static-models"


#: a phoneme passage (misaki's US set) cut to the requested token count
PASSAGE = ("ðə nˈɔɹθ wˈɪnd ænd ðə sˈʌn wɜɹ dɪspjˈuːtɪŋ wˌɪʧ wʌz ðə stɹˈɔŋɡɚ, wˌɛn ə tɹˈævəlɚ "
           "kˈeɪm əlˈɔŋ ɹˈæpt ɪn ə wˈɔɹm klˈOk. ðeɪ əɡɹˈiːd ðæt ðə wˈʌn hˌuː fˈɜːst səksˈiːdᵻd ɪn "
           "mˈeɪkɪŋ ðə tɹˈævəlɚ tˈeɪk hɪz klˈOk ˈɔf ʃʊd bi kənsˈɪdɚd stɹˈɔŋɡɚ ðɐn ðɪ ˈʌðɚ. ")


def tokens_of_length(n: int) -> list[int]:
    """``n`` phoneme tokens from :data:`PASSAGE` (repeated as needed), 1..510."""
    if not 1 <= int(n) <= MAX_TOKENS:
        raise ValueError(f"token length {n}: Kokoro takes 1 to {MAX_TOKENS} tokens per call")
    cleaned, _ = clean_phonemes(PASSAGE)
    base = tokenize(cleaned)
    reps = -(-int(n) // len(base))
    return (base * reps)[: int(n)]


def reference_audio(cfg: LabConfig, token_lengths: Iterable[int], voice: str | None = None
                    ) -> tuple[dict[int, np.ndarray], dict[str, str]]:
    """The reference variant's audio (CPU provider) for each token length, and what it is."""
    ref = assets.reference(cfg)
    assets.require(ref.path, f"reference model {ref.variant!r}")
    eng = runtime.Engine(cfg, variant=ref.variant, session=cpu_session_config(cfg))
    voice = voice or cfg.voice
    audio = {int(n): eng.run_tokens(tokens_of_length(int(n)), voice).audio for n in token_lengths}
    return audio, {"variant": ref.variant, "path": str(ref.path), "note": ref.note}


def point_cache(cache_root: str | os.PathLike, label: str) -> Path:
    """The CoreML model cache folder of one configuration or candidate."""
    return Path(cache_root) / re.sub(r"[^\w.-]+", "_", label)


def remove_cache(folder: Path) -> float:
    """Remove a candidate's model cache once it is measured; returns the MB it held."""
    if not folder.exists():
        return 0.0
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    shutil.rmtree(folder, ignore_errors=True)
    return round(size / 1e6, 1)


def isolate(kind: str, label: str, measure, isolated_call, timeout_s: float | None
            ) -> dict[str, Any]:
    """``measure()`` in process, or -- for a candidate that can crash or hang natively
    (a CoreML or plugin EP session build and its first runs) when ``timeout_s`` is set --
    ``isolated_call()`` through labkit.procs.isolated; a crash, a hang past the timeout or
    an error becomes the row's ``failed: <reason>`` and the sweep goes on."""
    if timeout_s is None:
        return measure()
    try:
        return isolated_call()
    except procs.IsolatedFailure as exc:
        return {"label": label, "status": f"failed: {exc.reason}", "isolated": kind}
