"""Audio as the quality figures take it: mono float64 at 24 kHz, finite, non-empty."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.signal import resample_poly

#: Kokoro's output rate: every figure works at it


class QualityError(ValueError):
    """Audio that cannot be compared: NaN/inf, empty, or lengths that differ."""


def as_audio(x: Any, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        a = a.squeeze()
        if a.ndim != 1:
            raise QualityError(f"{what}: expected mono audio (1-D), got shape {np.shape(x)}")
    if a.size == 0:
        raise QualityError(f"{what}: empty audio")
    bad = ~np.isfinite(a)
    if bad.any():
        raise QualityError(f"{what}: {int(bad.sum())} NaN/inf samples of {a.size}; "
                           "only finite audio can be compared")
    return a


def resample(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return np.asarray(x, dtype=np.float64)
    g = math.gcd(int(sr), int(target))
    return resample_poly(np.asarray(x, dtype=np.float64), target // g, sr // g)


