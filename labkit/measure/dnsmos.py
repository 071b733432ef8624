"""DNSMOS P.835: a no-reference MOS estimate (sig, bak, ovrl; 1-5, higher is better) from
Microsoft's DNSMOS models as bundled in the PyPI package ``speechmos``, run offline.
Pass :func:`score` to labkit.quality.compare as ``mos``.

It is the costliest figure the lab reads per sentence (a clip shorter than 9 s is repeated
to a 9 s window and read every second: a 4 s sentence is seven 9 s windows, ~3 s on one x86
core, where the recognizer takes ~1.3 s),
and it never decides anything. So its session uses the machine's threads (it never runs
inside a timed window), and each result is kept by the audio's content: the reference's
score, read beside every variant's, is computed once per utterance (issue #31).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from labkit.config import AUTO_THREADS, SessionConfig
from labkit.engine.sessions import new_session
from labkit.kokoro import SAMPLE_RATE
from labkit.quality import as_audio, resample

_SR = 16_000
_SECONDS = 9.01
# speechmos 0.0.1.1's polynomial fits (non-personalized DNSMOS P.835), from speechmos/dnsmos.py
_POLY = {
    "sig": (-0.08397278, 1.22083953, 0.0052439),
    "bak": (-0.13166888, 1.60915514, -0.39604546),
    "ovrl": (-0.06766283, 1.11546468, 0.04602535),
}
#: Why DNSMOS is computed the way it is here (shown in the stage records).
NOTE = (
    "DNSMOS P.835 (sig/bak/ovrl) from the sig_bak_ovr.onnx model bundled in the PyPI "
    "package speechmos, run offline with onnxruntime over 9.01 s windows at 16 kHz exactly "
    "as speechmos does. speechmos.dnsmos itself cannot be imported here because it imports "
    "librosa, which speechmos does not declare and this environment does not install; "
    "librosa is only needed for the P.808 mel model, so p808_mos is reported only when "
    "librosa is importable."
)



_dnsmos_sessions: dict[str, Any] = {}


def _dnsmos_session(name: str):
    if name not in _dnsmos_sessions:
        import speechmos  # heavy: only when DNSMOS is asked for

        path = Path(speechmos.__file__).parent / "dnsmos_models" / name
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: reinstall speechmos")
        _dnsmos_sessions[name] = new_session(path, SessionConfig(intra_op_threads=AUTO_THREADS))
    return _dnsmos_sessions[name]


#: scores already read, by the audio's content (the most recent :data:`KEPT`)
_scores: OrderedDict[str, dict[str, float]] = OrderedDict()
KEPT = 512


def score(audio: np.ndarray, sr: int = SAMPLE_RATE) -> dict[str, float] | None:
    """DNSMOS P.835 estimate {sig, bak, ovrl[, p808]} (1-5, higher is better), or None
    when the bundled models cannot be run (see NOTE). The same samples at the same rate
    are read once (a copy of the first reading is returned)."""
    a = as_audio(audio, "audio")
    key = hashlib.sha1(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest() + f"@{sr}"
    if key in _scores:
        _scores.move_to_end(key)
        return dict(_scores[key])
    out = _score(a, sr)
    if out is not None:
        _scores[key] = dict(out)
        while len(_scores) > KEPT:
            _scores.popitem(last=False)
    return out


def _score(a: np.ndarray, sr: int) -> dict[str, float] | None:
    try:
        sess = _dnsmos_session("sig_bak_ovr.onnx")
    except (ImportError, FileNotFoundError):
        return None
    x = resample(a, sr, _SR)
    peak = float(np.max(np.abs(x)))
    if peak > 1.0:  # DNSMOS expects [-1, 1]
        x = x / peak
    n = int(_SECONDS * _SR)
    while x.size < n:  # speechmos repeats short clips until one window is full
        x = np.concatenate([x, x])
    hops = int(np.floor(x.size / _SR) - _SECONDS) + 1
    segs = [x[i * _SR: i * _SR + n] for i in range(hops)]
    segs = np.stack([s for s in segs if s.size == n]).astype(np.float32)
    raw = sess.run(None, {"input_1": segs})[0]  # (N, 3): sig, bak, ovr
    out = {k: float(np.mean(np.poly1d(_POLY[k])(raw[:, i])))
           for i, k in enumerate(("sig", "bak", "ovrl"))}
    p808 = _dnsmos_p808(segs)
    if p808 is not None:
        out["p808"] = p808
    return out


def _dnsmos_p808(segs: np.ndarray) -> float | None:
    try:
        import librosa
    except ImportError:
        return None
    sess = _dnsmos_session("model_v8.onnx")
    vals = []
    for seg in segs:
        mel = librosa.feature.melspectrogram(y=seg[:-160], sr=_SR, n_fft=321,
                                             hop_length=160, n_mels=120)
        mel = ((librosa.power_to_db(mel, ref=np.max) + 40) / 40).T
        vals.append(float(sess.run(None, {"input_1": mel[None].astype(np.float32)})[0][0][0]))
    return float(np.mean(vals))
