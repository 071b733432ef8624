"""``labkit compare REF.wav TEST.wav [--text ...] [--json]``: the ruler on two files.

:func:`compare_files` reads both (any rate; stereo is mixed to mono), measures every figure
(:func:`labkit.quality.ruler.measure`, the recognizer's word error rate on each when the
text is given) and the verdict against the calibrated bounds; :func:`text_report` prints it
for a person: one line per figure, its bound, and why the verdict is what it is. Files of
different lengths are aligned (time warping), not refused. Input the ruler cannot compare
-- a missing or unreadable file, no samples, NaN, a silent reference -- raises
:class:`CannotCompare` with one sentence saying why (the CLI's exit status 2).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from labkit.quality import recognizer, ruler
from labkit.quality.signal import QualityError, resample

#: figures printed beside the bounded ones: reported, never deciding
REPORTED = ("lag_ms", "length_diff_ms", "lsd_db", "pesq_wb", "stoi", "wer_ref", "wer_test")


class CannotCompare(ValueError):
    """The two files cannot be compared; the message says why in one sentence."""


def read(path: str | Path, what: str) -> tuple[np.ndarray, int]:
    p = Path(path)
    if not p.is_file():
        raise CannotCompare(f"{what} {p}: no such file")
    try:
        data, sr = sf.read(str(p), dtype="float64", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise CannotCompare(f"{what} {p}: not an audio file soundfile can read ({exc})") from exc
    if data.shape[0] == 0:
        raise CannotCompare(f"{what} {p}: no samples")
    return data.mean(axis=1), int(sr)


def compare_files(ref_path: str | Path, test_path: str | Path, text: str | None = None) -> dict[str, Any]:
    """{"verdict": "pass"|"fail", "reasons", "checks", "figures", "files", "ruler"}."""
    ref, sr_ref = read(ref_path, "reference")
    test, sr_test = read(test_path, "test")
    if not np.all(np.isfinite(ref)):
        raise CannotCompare(f"reference {ref_path}: NaN or infinite samples")
    if sr_test != sr_ref:
        test = resample(test, sr_test, sr_ref)
    try:
        fig = ruler.measure(ref, test, sr_ref, text=text,
                            recognize=(lambda a, t: recognizer.word_error_rate(a, t)) if text else None)
    except QualityError as exc:
        raise CannotCompare(str(exc)) from exc
    v = ruler.verdict(fig)
    return {**v.to_dict(), "figures": fig.to_dict(),
            "files": {"reference": str(ref_path), "test": str(test_path),
                      "rates": [sr_ref, sr_test]},
            "ruler": ruler.definition()}


def _num(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def text_report(rep: dict[str, Any]) -> str:
    f = rep["figures"]
    lines = [f"{rep['verdict'].upper()}: {rep['files']['test']} against {rep['files']['reference']}"]
    if not f.get("ok"):
        lines += [f"  not measured: {p}" for p in f.get("problems") or []]
        return "\n".join(lines)
    for name, c in rep["checks"].items():
        how = "±" if ruler.BOUNDED[name] == "abs" else "<="
        lines.append(f"  {name:20s} {_num(c['value']):>9s}   bound {how} {c['bound']:g}   "
                     f"{'ok' if c['passed'] else 'FAILS'}")
    lines.append("  reported (they never decide):")
    for name in REPORTED:
        if f.get(name) is not None:
            lines.append(f"  {name:20s} {_num(f[name]):>9s}")
    if f.get("warped"):
        lines.append("  the lengths differ: frames were matched by time warping before comparing")
    if f.get("heard_test") is not None:
        lines.append(f"  the recognizer heard in the test: {f['heard_test']!r}")
    lines.append("why: " + ("; ".join(rep["reasons"]) if rep["reasons"]
                            else "every bounded figure is within its bound"))
    return "\n".join(lines)
